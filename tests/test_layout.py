"""The layers import downwards only: `batchd/` is the ground floor every side stands on,
the gateway only translates, and only the composition root (`allinone/`) sees everything."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_packages(package: str) -> dict[str, set[str]]:
    """Each module of a package (generated code aside) with the top-level packages it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        if "_pb2" in path.name:
            continue
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("batchd", {"service", "gateway", "batchctl", "allinone"}),
        ("gateway", {"service", "batchctl", "allinone"}),
        ("service", {"gateway", "batchctl", "allinone"}),
        ("batchctl", {"service", "gateway", "allinone"}),
    ],
)
def test_a_package_imports_nothing_above_or_beside_it(package: str, forbidden: set[str]) -> None:
    modules = imported_packages(package)
    assert modules, f"{package}/ has no modules"
    crossings = {
        module: names & forbidden for module, names in modules.items() if names & forbidden
    }
    assert crossings == {}
