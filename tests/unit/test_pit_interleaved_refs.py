"""Feature refs that interleave tables come out in the requested order, each with its own type."""

from __future__ import annotations

import pyarrow as pa

from featurestore.pit.engine import get_historical_features
from featurestore.pit.sources import FeatureSource
from featurestore.schema import Field, TableSchema
from featurestore.types import ValueType

USERS = TableSchema(
    "users",
    (Field("user_id", ValueType.STRING),),
    (Field("clicks", ValueType.INT64), Field("last_category", ValueType.STRING)),
)
ITEMS = TableSchema("items", (Field("item_id", ValueType.STRING),), (Field("views", ValueType.INT64),))


def test_interleaved_refs_keep_their_order_and_types() -> None:
    users = pa.table({"user_id": ["u1"], "version_ms": [10], "seq": [0], "clicks": [3], "last_category": ["c7"]})
    items = pa.table({"item_id": ["i1"], "version_ms": [10], "seq": [0], "views": [9]})
    samples = pa.table({"user_id": ["u1"], "item_id": ["i1"], "ts": [20]})
    refs = ["users:last_category", "items:views", "users:clicks"]
    out = get_historical_features(
        samples, refs, [FeatureSource(USERS, users), FeatureSource(ITEMS, items)], event_time="ts"
    )
    assert out.column_names == ["user_id", "item_id", "ts", "last_category", "views", "clicks"]
    assert out.to_pylist()[0] == {
        "user_id": "u1",
        "item_id": "i1",
        "ts": 20,
        "last_category": "c7",
        "views": 9,
        "clicks": 3,
    }
