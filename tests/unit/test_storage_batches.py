"""Batches to cells: the online cache's pre-filter and what a batch writes (absent vs null)."""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.schema import Field, TableSchema
from featurestore.storage.batches import (
    batch_to_cells,
    encode_cells,
    latest_per_cell,
    pack_value,
    rows_with_newest_cells,
    unpack_value,
)
from featurestore.types import ValueType

SCHEMA = TableSchema(
    "users", (Field("user_id", ValueType.STRING),), (Field("a", ValueType.INT64), Field("b", ValueType.STRING))
)


def test_prefilter_keeps_what_latest_per_cell_would_pick() -> None:
    batch = pa.table(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u1"],
            "version_ms": [10, 30, 30, 5, 20],
            "seq": [0, 1, 1, 0, 0],
            "a": [1, 2, 3, 4, None],  # rows 1 and 2 tie on (30, 1): the later row (3) wins
            "b": ["x", None, None, None, "y"],  # nulls are values: u1's newest b is row 2's null
        },
        schema=SCHEMA.arrow_schema(),
    )
    kept = rows_with_newest_cells(SCHEMA, batch)
    assert kept.to_pylist() == [batch.slice(2, 1).to_pylist()[0], batch.slice(3, 1).to_pylist()[0]]
    newest = latest_per_cell(encode_cells(SCHEMA, kept))
    assert newest == latest_per_cell(encode_cells(SCHEMA, batch))
    assert newest[(next(iter(newest))[0], "b")] == (30, 1, None)


def test_absent_columns_yield_no_cells_and_nulls_are_cells() -> None:
    only_a = pa.table({"user_id": ["u1", "u2"], "version_ms": [1, 2], "seq": [0, 1], "a": [None, 5]})
    cells = batch_to_cells(SCHEMA, only_a)
    assert list(cells.values) == ["a"] and cells.values["a"][0] is None and cells.count() == 2
    nothing = pa.table({"user_id": ["u1"], "version_ms": [1], "seq": [0]})
    assert batch_to_cells(SCHEMA, nothing).count() == 0
    assert rows_with_newest_cells(SCHEMA, nothing).num_rows == 0


def test_stored_values_tell_null_from_empty() -> None:
    for value in (None, b"", b"\x00", b"\x01", b"abc"):
        assert unpack_value(pack_value(value)) == value
    assert pack_value(None) != pack_value(b"")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["u1", "u2"]), st.integers(0, 4), st.integers(0, 3),
                          st.one_of(st.none(), st.integers(0, 9))), max_size=12))
def test_prefilter_property(rows: list[tuple[str, int, int, int | None]]) -> None:
    batch = pa.table({"user_id": [r[0] for r in rows], "version_ms": pa.array([r[1] for r in rows], pa.int64()),
                      "seq": pa.array([r[2] for r in rows], pa.int64()),
                      "a": pa.array([r[3] for r in rows], pa.int64())})
    kept = rows_with_newest_cells(SCHEMA, batch)
    assert latest_per_cell(encode_cells(SCHEMA, kept)) == latest_per_cell(encode_cells(SCHEMA, batch))
