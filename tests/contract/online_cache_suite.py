"""The OnlineCache contract: every backend must pass these tests.

A test module imports them (``from tests.contract.online_cache_suite import *``) and defines an
``ocache`` fixture that yields a fresh cache of its backend and calls :func:`cleanup` afterwards.
"""

from __future__ import annotations

import uuid
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import NotFoundError, ValidationError
from featurestore.schema import Field, TableSchema
from featurestore.storage.online import EXPIRED, MISSING, PRESENT, CachedOnlineStore, OnlineBase
from featurestore.types import ValueType as V

__all__ = [
    "cleanup",
    "test_absent_column_is_not_a_write",
    "test_cached_front_counts_hits_and_sees_own_writes",
    "test_delete_and_drop",
    "test_empty_values_and_nulls_round_trip",
    "test_equal_timestamps_seq_decides",
    "test_explicit_null_overwrites_older_value",
    "test_multi_key_order_duplicates_and_missing",
    "test_out_of_order_writes_never_regress",
    "test_property_cache_holds_newest_by_time_then_seq",
    "test_replay_lands_nothing",
    "test_ttl_boundary_status",
    "test_ttl_on_a_null_version",
    "test_types_and_schema_round_trip",
    "test_values_only_are_the_full_reads_values",
    "test_write_and_get",
    "test_wrong_key_type_and_unknown_feature",
]

T0 = 1_700_000_000_000
_created: list[tuple[OnlineBase, str]] = []


def cleanup() -> None:
    while _created:
        cache, name = _created.pop()
        cache.drop_table(name)


def new_table(
    cache: OnlineBase, *, ttl_ms: int | None = None, features: tuple[Field, ...] | None = None
) -> TableSchema:
    schema = TableSchema(
        f"oc_{uuid.uuid4().hex[:12]}",
        (Field("user_id", V.INT64),),
        features or (Field("clicks", V.INT64), Field("name", V.STRING)),
        ttl_ms=ttl_ms,
    )
    cache.ensure_table(schema)
    _created.append((cache, schema.name))
    return schema


def write(cache: OnlineBase, schema: TableSchema, *rows: dict[str, Any]) -> int:
    """Write a versions batch with the feature columns some row names (a row that does not name one
    writes an explicit null there); the other features are absent from the batch: not written."""
    named = {name for r in rows for name in r}
    fields = [f for f in schema.arrow_schema() if f.name not in schema.feature_names or f.name in named]
    return cache.write(schema.name, pa.table({f.name: [r.get(f.name) for r in rows] for f in fields},
                                             schema=pa.schema(fields)))


def v(user: int, ts: int, seq: int, **features: Any) -> dict[str, Any]:
    return {"user_id": user, "version_ms": ts, "seq": seq, **features}


def got(table: pa.Table, feature: str) -> list[tuple[Any, Any, str]]:
    columns = (feature, f"{feature}__ts", f"{feature}__status")
    return list(zip(*(table.column(c).to_pylist() for c in columns), strict=True))


def test_write_and_get(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    assert write(ocache, s, v(1, T0, 1, clicks=3, name="a")) == 2
    result = ocache.get(s.name, [1], now_ms=T0)
    assert result.column_names == [
        "user_id", "clicks", "clicks__ts", "clicks__status", "name", "name__ts", "name__status"
    ]
    assert got(result, "clicks") == [(3, T0, PRESENT)] and got(result, "name") == [("a", T0, PRESENT)]
    assert got(ocache.get(s.name, [1], ["name"]), "name") == [("a", T0, PRESENT)]  # no ttl: wall clock is fine


def test_out_of_order_writes_never_regress(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    assert write(ocache, s, v(1, T0 + 10, 5, clicks=2)) == 1
    assert write(ocache, s, v(1, T0, 9, clicks=1)) == 0
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0), "clicks") == [(2, T0 + 10, PRESENT)]
    # within one batch, the newest by time wins whatever the row order
    assert write(ocache, s, v(2, T0 + 10, 2, clicks=20), v(2, T0, 3, clicks=10)) == 1
    assert got(ocache.get(s.name, [2], ["clicks"]), "clicks") == [(20, T0 + 10, PRESENT)]


def test_equal_timestamps_seq_decides(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    write(ocache, s, v(1, T0, 2, clicks=2))
    assert write(ocache, s, v(1, T0, 1, clicks=1)) == 0
    assert write(ocache, s, v(1, T0, 3, clicks=3)) == 1
    write(ocache, s, v(2, T0, 7, clicks=7), v(2, T0, 6, clicks=6))
    assert got(ocache.get(s.name, [1, 2], ["clicks"]), "clicks") == [(3, T0, PRESENT), (7, T0, PRESENT)]


def test_replay_lands_nothing(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    rows = [v(k, T0 + k, k, clicks=k, name=str(k)) for k in range(10)]
    assert write(ocache, s, *rows) == 20
    before = ocache.get(s.name, list(range(10)))
    assert write(ocache, s, *rows) == 0
    assert ocache.get(s.name, list(range(10))).equals(before)


def test_ttl_boundary_status(ocache: OnlineBase) -> None:
    s = new_table(ocache, ttl_ms=100)
    write(ocache, s, v(1, T0, 1, clicks=1))
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0 + 99), "clicks") == [(1, T0, PRESENT)]
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0 + 100), "clicks") == [(None, None, EXPIRED)]
    assert got(ocache.get(s.name, [2], ["clicks"], now_ms=T0), "clicks") == [(None, None, MISSING)]


def test_absent_column_is_not_a_write(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    write(ocache, s, v(1, T0, 1, clicks=1, name="a"))
    assert write(ocache, s, v(1, T0 + 1, 2, name="b")) == 1  # a batch without the clicks column
    result = ocache.get(s.name, [1])
    assert got(result, "clicks") == [(1, T0, PRESENT)] and got(result, "name") == [("b", T0 + 1, PRESENT)]


def test_explicit_null_overwrites_older_value(ocache: OnlineBase) -> None:
    """A null value is served as present, with its version time; it regresses like any value."""
    s = new_table(ocache)
    write(ocache, s, v(1, T0, 1, clicks=1, name="a"))
    assert write(ocache, s, v(1, T0 + 1, 2, clicks=None, name="b")) == 2
    result = ocache.get(s.name, [1])
    assert got(result, "clicks") == [(None, T0 + 1, PRESENT)] and got(result, "name") == [("b", T0 + 1, PRESENT)]
    assert write(ocache, s, v(1, T0, 3, clicks=5)) == 0  # older than the null: never regresses
    assert write(ocache, s, v(1, T0 + 2, 4, clicks=7)) == 1  # a later value hides the null
    assert got(ocache.get(s.name, [1], ["clicks"]), "clicks") == [(7, T0 + 2, PRESENT)]
    # in one batch, whatever the row order, the newest version wins, null or not
    assert write(ocache, s, v(2, T0 + 1, 2, clicks=None), v(2, T0, 1, clicks=3)) == 1
    assert write(ocache, s, v(3, T0, 1, clicks=None), v(3, T0 + 1, 2, clicks=3)) == 1
    assert got(ocache.get(s.name, [2, 3], ["clicks"]), "clicks") == [(None, T0 + 1, PRESENT), (3, T0 + 1, PRESENT)]
    # equal times: seq decides, for nulls too
    write(ocache, s, v(4, T0, 1, clicks=4))
    assert write(ocache, s, v(4, T0, 2, clicks=None)) == 1
    assert write(ocache, s, v(4, T0, 1, clicks=4)) == 0
    assert got(ocache.get(s.name, [4], ["clicks"]), "clicks") == [(None, T0, PRESENT)]
    assert write(ocache, s, v(4, T0, 3, clicks=44)) == 1
    assert got(ocache.get(s.name, [4], ["clicks"]), "clicks") == [(44, T0, PRESENT)]


def test_ttl_on_a_null_version(ocache: OnlineBase) -> None:
    s = new_table(ocache, ttl_ms=100)
    write(ocache, s, v(1, T0, 1, clicks=1))
    write(ocache, s, v(1, T0 + 50, 2, clicks=None))
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0 + 99), "clicks") == [(None, T0 + 50, PRESENT)]
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0 + 149), "clicks") == [(None, T0 + 50, PRESENT)]
    assert got(ocache.get(s.name, [1], ["clicks"], now_ms=T0 + 150), "clicks") == [(None, None, EXPIRED)]


def test_values_only_are_the_full_reads_values(ocache: OnlineBase) -> None:
    """values_only: the keys and value columns of the full read, null where missing or expired."""
    s = new_table(ocache, ttl_ms=100)
    write(ocache, s, v(1, T0, 1, clicks=1, name="old"), v(2, T0 + 60, 2, clicks=2, name=None))
    write(ocache, s, v(3, T0 + 60, 3, clicks=3))  # writes clicks only
    for keys, features in (([1, 2, 3, 4], None), ([2], ["name", "clicks", "name"]), ([], None), ([3, 3], ["clicks"])):
        full = ocache.get(s.name, keys, features, now_ms=T0 + 100)
        values = ocache.get(s.name, keys, features, now_ms=T0 + 100, values_only=True)
        wanted = ["user_id", *(features or s.feature_names)]
        assert values.column_names == wanted
        assert values.schema == pa.schema([full.schema.field(i) for i in [0, *range(1, full.num_columns, 3)]])
        assert [c.to_pylist() for c in values.columns] == [full.column(i).to_pylist()
                                                           for i in [0, *range(1, full.num_columns, 3)]]
    values = ocache.get(s.name, [1, 2, 3, 4], now_ms=T0 + 100, values_only=True).to_pylist()
    assert values == [  # 1 expired at the TTL boundary; 2 an explicit null; 3 never wrote name; 4 none
        {"user_id": 1, "clicks": None, "name": None}, {"user_id": 2, "clicks": 2, "name": None},
        {"user_id": 3, "clicks": 3, "name": None}, {"user_id": 4, "clicks": None, "name": None},
    ]


def test_multi_key_order_duplicates_and_missing(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    write(ocache, s, *[v(k, T0, k, clicks=k) for k in range(100)])
    keys = [99, 5, 1000, 5, 0]
    result = ocache.get(s.name, keys, ["clicks"])
    assert result.column("user_id").to_pylist() == keys
    assert got(result, "clicks") == [(99, T0, PRESENT), (5, T0, PRESENT), (None, None, MISSING), (5, T0, PRESENT),
                                     (0, T0, PRESENT)]
    assert ocache.get(s.name, []).num_rows == 0
    assert ocache.get(s.name, pa.table({"user_id": [7]}), ["clicks"]).column("clicks").to_pylist() == [7]


def test_wrong_key_type_and_unknown_feature(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    for bad in (["1"], [True], [2.0]):
        with pytest.raises(ValidationError):
            ocache.get(s.name, bad)
    with pytest.raises(ValidationError):
        ocache.get(s.name, [1], ["nope"])
    with pytest.raises(ValidationError):
        ocache.write(s.name, pa.table({"user_id": ["x"], "version_ms": [T0], "seq": [1], "clicks": [1]}))
    with pytest.raises(NotFoundError):
        ocache.get("oc_never_created", [1])


def test_delete_and_drop(ocache: OnlineBase) -> None:
    s = new_table(ocache)
    write(ocache, s, v(1, T0, 1, clicks=1), v(2, T0, 2, clicks=2))
    ocache.delete_key(s.name, 1)
    assert got(ocache.get(s.name, [1, 2], ["clicks"]), "clicks") == [(None, None, MISSING), (2, T0, PRESENT)]
    assert write(ocache, s, v(1, T0 - 5, 3, clicks=9)) == 1  # after a delete, any version lands again
    ocache.drop_table(s.name)
    with pytest.raises(NotFoundError):
        ocache.get(s.name, [2])
    ocache.ensure_table(s)
    assert got(ocache.get(s.name, [2], ["clicks"]), "clicks") == [(None, None, MISSING)]


def test_types_and_schema_round_trip(ocache: OnlineBase) -> None:
    s = new_table(ocache, features=tuple(Field(t.value, t) for t in V))
    values = {"int64": -3, "double": 2.5, "string": "a,b", "bool": True, "bytes": b"1,2\x00",
              "float_list": [0.5], "string_list": ["x", ""]}
    write(ocache, s, v(1, T0, 1, **values))
    row = ocache.get(s.name, [1]).to_pylist()[0]
    assert {k: row[k] for k in values} == values
    assert ocache.schema(s.name) == s


def test_empty_values_and_nulls_round_trip(ocache: OnlineBase) -> None:
    s = new_table(ocache, features=tuple(Field(t.value, t) for t in V))
    empty = {"int64": 0, "double": 0.0, "string": "", "bool": False, "bytes": b"", "float_list": [],
             "string_list": [""]}
    assert write(ocache, s, v(1, T0, 1, **empty)) == len(empty)
    row = ocache.get(s.name, [1]).to_pylist()[0]
    assert {k: row[k] for k in empty} == empty and {row[f"{k}__status"] for k in empty} == {PRESENT}
    assert write(ocache, s, v(1, T0 + 1, 2, **dict.fromkeys(empty))) == len(empty)
    row = ocache.get(s.name, [1]).to_pylist()[0]
    assert {k: row[k] for k in empty} == dict.fromkeys(empty)
    assert {(row[f"{k}__ts"], row[f"{k}__status"]) for k in empty} == {(T0 + 1, PRESENT)}


def test_cached_front_counts_hits_and_sees_own_writes(ocache: OnlineBase) -> None:
    front = CachedOnlineStore(ocache, ttl_s=60.0)
    s = new_table(front)
    write(front, s, v(1, T0, 1, clicks=1))
    assert got(front.get(s.name, [1], ["clicks"]), "clicks") == [(1, T0, PRESENT)]
    assert got(front.get(s.name, [1, 1], ["clicks"]), "clicks") == [(1, T0, PRESENT)] * 2
    assert (front.stats.misses, front.stats.hits) == (1, 2)
    write(front, s, v(1, T0 + 1, 2, clicks=2))
    assert got(front.get(s.name, [1], ["clicks"]), "clicks") == [(2, T0 + 1, PRESENT)]
    assert front.stats.misses == 2
    s_ttl = new_table(front, ttl_ms=10)
    write(front, s_ttl, v(1, T0, 1, clicks=1))
    front.get(s_ttl.name, [1], now_ms=T0)
    assert got(front.get(s_ttl.name, [1], ["clicks"], now_ms=T0 + 10), "clicks") == [(None, None, EXPIRED)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.one_of(st.none(), st.integers(0, 99))),
                        max_size=6), max_size=5))
def test_property_cache_holds_newest_by_time_then_seq(
    ocache: OnlineBase, batches: list[list[tuple[int, int, int | None]]]
) -> None:
    """Batches of (version_ms, seq, value or explicit null) in any order: the cache ends at the max
    (version_ms, seq)."""
    s = new_table(ocache)
    seen: dict[tuple[int, int], int | None] = {}
    for rows in batches:
        unique = {(ts, seq): value for ts, seq, value in rows if (ts, seq) not in seen}
        seen.update(unique)
        write(ocache, s, *[v(1, T0 + ts, seq, clicks=value) for (ts, seq), value in unique.items()])
    want = [(seen[top], T0 + top[0], PRESENT)] if (top := max(seen, default=None)) else [(None, None, MISSING)]
    assert got(ocache.get(s.name, [1], ["clicks"]), "clicks") == want
