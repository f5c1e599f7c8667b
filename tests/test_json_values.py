"""The shortcut that decides from a document's text whether its JSON is storable agrees
with the full walk, whatever the document and however it is encoded."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from batchd.json_values import MAX_DEPTH, load_json, storable, storable_document

texts = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=40,
)


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@settings(max_examples=400, deadline=None)
@given(json_values, st.booleans(), st.sampled_from(["utf-8", "utf-16", "utf-32"]))
@example({"text": "a\x00b"}, False, "utf-8")
@example({"text": "\ud800"}, True, "utf-8")
@example({"text": "a\x00b"}, False, "utf-16")
@example(nested(MAX_DEPTH + 1), True, "utf-8")
@example(nested(MAX_DEPTH), True, "utf-8")
def test_the_text_shortcut_agrees_with_the_full_walk(
    value: Any, ascii_only: bool, encoding: str
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        return  # a lone surrogate has no UTF-8 form: such text never arrives as UTF-8
    try:
        parsed = load_json(raw)
    except ValueError:
        return  # NaN, infinities and numbers beyond a double never get this far
    assert storable_document(raw, parsed) == storable(parsed)


@given(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
def test_numbers_json_cannot_spell_are_not_storable(number: float) -> None:
    assert not storable({"nested": [number]})
