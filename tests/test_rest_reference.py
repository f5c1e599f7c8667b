"""docs/rest-api.md and gateway/openapi.json say the same: the endpoints and what each
answers, the error statuses, the objects' keys and statuses. Either changes with the other."""

from __future__ import annotations

import json
import re
from typing import Any

from gateway.openapi import DOCUMENT_PATH
from tests.processes import ROOT

REFERENCE = ROOT / "docs" / "rest-api.md"
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def document() -> Any:
    return json.loads(DOCUMENT_PATH.read_text())


def section(title: str) -> str:
    """The reference's text from the `## title` heading to the next one of its level."""
    text = REFERENCE.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_the_endpoint_table_lists_every_route_with_the_statuses_it_answers() -> None:
    rows = re.findall(r"^\| `([A-Z]+) (\S+)` \| .* \| ([0-9, ]+) \|$", section("Endpoints"), re.M)
    documented = {
        (method.upper(), path): sorted(operation["responses"])
        for path, item in document()["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    listed = {(method, path): sorted(statuses.split(", ")) for method, path, statuses in rows}
    assert len(rows) == len(listed), "an endpoint is listed twice"
    assert listed == documented


def test_the_error_table_is_the_documents_error_schemas() -> None:
    rows = re.findall(r"^\| (\d{3}) \| (\w+) \| .* \|$", section("Errors"), re.M)
    components = document()["components"]
    documented = set()
    for response in components["responses"].values():
        reference = response["content"]["application/json"]["schema"]["$ref"]
        narrowing = components["schemas"][reference.rsplit("/", 1)[1]]["allOf"][1]
        [http_status] = narrowing["properties"]["http_status"]["enum"]
        assert narrowing["properties"]["type"]["enum"] == [http_status]
        documented.add(http_status)
    used = {
        status
        for item in document()["paths"].values()
        for method, operation in item.items()
        if method in HTTP_METHODS
        for status in operation["responses"]
        if status >= "400"
    }
    assert {name for _, name in rows} == documented
    assert {code for code, _ in rows} == used


def object_text(title: str) -> str:
    """The text under `### title` in the Objects section."""
    text = section("Objects")
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start : end if end != -1 else len(text)]


def example_keys(title: str) -> list[str]:
    """The keys of the JSON example under `### title`."""
    text = object_text(title)
    opening = text.index("```json\n") + len("```json\n")
    example = text[opening : text.index("\n```", opening)]
    return list(json.loads(example))


def test_the_objects_examples_have_exactly_the_schemas_keys() -> None:
    schemas = document()["components"]["schemas"]
    for title, schema in (("batch_operation", "BatchOperation"), ("batch", "Batch")):
        assert example_keys(title) == schemas[schema]["required"]
        # Properties an example leaves out (the expandable ones) are described.
        for key in set(schemas[schema]["properties"]) - set(example_keys(title)):
            assert f"`{key}`" in object_text(title), key


def test_every_status_the_document_knows_is_described() -> None:
    schemas = document()["components"]["schemas"]
    objects = section("Objects")
    operation_part = objects[: objects.index("### batch\n")]
    batch_part = objects[objects.index("### batch\n") :]
    for status in schemas["BatchOperationStatus"]["enum"]:
        assert f"  - `{status}`" in operation_part, status
    for status in schemas["BatchStatus"]["enum"]:
        assert f"`{status}`" in batch_part, status


def test_the_readme_points_to_the_reference_in_the_repository() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "docs/rest-api.md" in readme
    assert "shared docs" not in readme and "../shared" not in readme
