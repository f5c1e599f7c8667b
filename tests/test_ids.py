"""Object ids: version 7 UUIDs, so that ids made together sit together in indexes; read
from callers in their canonical form."""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.batch_commands import new_ids
from service.errors import ApiError
from service.validation import object_id


def test_ids_are_distinct_version_7_uuids() -> None:
    ids = new_ids(1000)
    assert len(set(ids)) == 1000
    for raw in ids:
        parsed = uuid.UUID(raw)
        assert str(parsed) == raw
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122


def test_ids_lead_with_their_millisecond_so_later_ones_sort_after() -> None:
    before = time.time_ns() // 1_000_000
    [first] = new_ids(1)
    time.sleep(0.002)
    [later] = new_ids(1)
    assert later > first
    millisecond = int(uuid.UUID(first).hex[:12], 16)
    assert before <= millisecond <= time.time_ns() // 1_000_000


def test_ids_made_together_sort_in_the_order_made() -> None:
    # More than the 4,096 a millisecond's 12-bit counter holds.
    ids = new_ids(10_000)
    assert sorted(ids) == ids
    first = int(uuid.UUID(ids[0]).hex[:12], 16)
    assert int(uuid.UUID(ids[-1]).hex[:12], 16) - first <= 2


# Ids as callers may write them: canonical, other spellings UUID reads, and not ids at all.
written_ids = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: f"{u}\n"),
    st.text(alphabet="0123456789abcdef-", max_size=40),
    st.text(max_size=40),
)


@given(written_ids)
def test_an_id_reads_as_its_canonical_uuid_or_names_nothing(raw: str) -> None:
    try:
        canonical = str(uuid.UUID(raw))
    except ValueError:
        with pytest.raises(ApiError) as raised:
            object_id("batch", raw)
        assert raised.value.status == grpc.StatusCode.NOT_FOUND
    else:
        assert object_id("batch", raw) == canonical
