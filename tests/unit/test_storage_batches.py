"""The online cache's pre-filter keeps exactly the rows that hold a newest cell."""

from __future__ import annotations

import pyarrow as pa

from featurestore.schema import Field, TableSchema
from featurestore.storage.batches import encode_cells, latest_per_cell, rows_with_newest_cells
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
            "b": ["x", None, None, None, "y"],  # u1's newest b is row 4 at 20
        },
        schema=SCHEMA.arrow_schema(),
    )
    kept = rows_with_newest_cells(SCHEMA, batch)
    assert sorted(kept["a"].to_pylist(), key=str) == sorted([3, 4, None], key=str)
    assert latest_per_cell(encode_cells(SCHEMA, kept)) == latest_per_cell(encode_cells(SCHEMA, batch))
