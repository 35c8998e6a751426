"""The VersionedStore contract: every backend must pass these tests.

A test module imports them (``from tests.contract.versioned_store_suite import *``) and defines a
``vstore`` fixture that yields a fresh store of its backend and, on teardown, calls
:func:`cleanup`. The reference for every answer is ``featurestore.time_semantics.pick_version``.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import NotFoundError, StoreError, ValidationError
from featurestore.schema import Field, TableSchema
from featurestore.storage.versioned import VersionedStore
from featurestore.time_semantics import pick_version
from featurestore.types import ValueType as V

__all__ = [
    "cleanup",
    "test_absent_column_is_not_a_write",
    "test_all_value_types_round_trip",
    "test_as_of_inclusive_at_version_time",
    "test_as_of_per_key_times",
    "test_delete_key",
    "test_drop_table",
    "test_empty_values_and_nulls_round_trip",
    "test_ensure_table_adds_features_and_rejects_new_keys",
    "test_equal_timestamps_highest_seq_wins_in_a_batch",
    "test_equal_timestamps_later_batch_wins",
    "test_equal_timestamps_with_a_null",
    "test_explicit_null_hides_older_value",
    "test_get_latest_honours_ttl_against_now",
    "test_idempotent_reput",
    "test_keys_without_history_are_null_rows",
    "test_list_versions_range",
    "test_max_versions_counts_nulls",
    "test_max_versions_keeps_newest",
    "test_missing_table",
    "test_multi_column_keys",
    "test_out_of_order_batches",
    "test_property_as_of_matches_pick_version",
    "test_read_before_first_version",
    "test_strict_excludes_version_at_t",
    "test_ttl_boundary",
    "test_ttl_on_a_null_version",
    "test_unknown_feature_and_bad_values",
    "test_wrong_key_type",
]

T0 = 1_700_000_000_000  # a realistic epoch-ms origin
_created: list[tuple[VersionedStore, str]] = []
_keys = itertools.count(1)


def cleanup() -> None:
    _property_tables.clear()
    while _created:
        store, name = _created.pop()
        store.drop_table(name)


def new_table(
    store: VersionedStore,
    *,
    ttl_ms: int | None = None,
    max_versions: int | None = None,
    features: tuple[Field, ...] = (Field("clicks", V.INT64), Field("ctr", V.DOUBLE)),
    keys: tuple[Field, ...] = (Field("user_id", V.INT64),),
) -> TableSchema:
    schema = TableSchema(f"ct_{uuid.uuid4().hex[:12]}", keys, features, ttl_ms=ttl_ms, max_versions=max_versions)
    store.ensure_table(schema)
    _created.append((store, schema.name))
    return schema


def batch(schema: TableSchema, rows: list[dict[str, Any]], features: tuple[str, ...] | None = None) -> pa.Table:
    """A versions batch with the feature columns ``features`` (default: those some row names); a
    row that does not name one of them writes an explicit null there; other features are absent
    from the batch: not written."""
    named = {name for r in rows for name in r} if features is None else set(features)
    arrow = schema.arrow_schema()
    fields = [f for f in arrow if f.name not in schema.feature_names or f.name in named]
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in fields}, schema=pa.schema(fields))


def put(store: VersionedStore, schema: TableSchema, *rows: dict[str, Any]) -> int:
    return store.put(schema.name, batch(schema, list(rows)))


def v(user: int, ts: int, seq: int, **features: Any) -> dict[str, Any]:
    return {"user_id": user, "version_ms": ts, "seq": seq, **features}


def cells(table: pa.Table, feature: str) -> list[tuple[Any, Any]]:
    return list(zip(table.column(feature).to_pylist(), table.column(f"{feature}__ts").to_pylist(), strict=True))


def test_as_of_inclusive_at_version_time(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    assert put(vstore, s, v(1, T0, 1, clicks=1, ctr=0.5)) + put(vstore, s, v(1, T0 + 10, 2, clicks=2)) == 3
    result = vstore.get_as_of(s.name, [1], T0 + 10)
    assert result.column_names == ["user_id", "clicks", "clicks__ts", "ctr", "ctr__ts"]
    assert cells(result, "clicks") == [(2, T0 + 10)]
    assert cells(result, "ctr") == [(0.5, T0)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 9), "clicks") == [(1, T0)]


def test_strict_excludes_version_at_t(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1), v(1, T0 + 10, 2, clicks=2))
    assert cells(vstore.get_as_of(s.name, [1], T0 + 10, ["clicks"], strict=True), "clicks") == [(1, T0)]
    assert cells(vstore.get_as_of(s.name, [1], T0, ["clicks"], strict=True), "clicks") == [(None, None)]


def test_read_before_first_version(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1))
    assert cells(vstore.get_as_of(s.name, [1], T0 - 1), "clicks") == [(None, None)]


def test_keys_without_history_are_null_rows(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(2, T0, 1, clicks=7))
    result = vstore.get_as_of(s.name, [3, 2, 3, 1], T0)
    assert result.column("user_id").to_pylist() == [3, 2, 3, 1]
    assert cells(result, "clicks") == [(None, None), (7, T0), (None, None), (None, None)]
    latest = vstore.get_latest(s.name, [(9,)], now_ms=T0)
    assert latest.num_rows == 1 and cells(latest, "clicks") == [(None, None)]
    assert vstore.get_as_of(s.name, [], T0).num_rows == 0


def test_equal_timestamps_highest_seq_wins_in_a_batch(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 5, clicks=50), v(1, T0, 3, clicks=30), v(1, T0, 4, clicks=40))
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(50, T0)]
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [{"version_ms": T0, "clicks": 50}]


def test_equal_timestamps_later_batch_wins(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=10))
    put(vstore, s, v(1, T0, 2, clicks=20))
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(20, T0)]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0), "clicks") == [(20, T0)]


def test_idempotent_reput(vstore: VersionedStore) -> None:
    s = new_table(vstore, max_versions=3)
    rows = [v(1, T0 + i, i, clicks=i) for i in range(5)] + [v(2, T0, 9, ctr=1.5)]
    put(vstore, s, *rows)
    before = [vstore.list_versions(s.name, 1, "clicks"), vstore.get_as_of(s.name, [1, 2], T0 + 3)]
    put(vstore, s, *rows)
    put(vstore, s, *rows)
    after = [vstore.list_versions(s.name, 1, "clicks"), vstore.get_as_of(s.name, [1, 2], T0 + 3)]
    assert [t.to_pylist() for t in before] == [t.to_pylist() for t in after]


def test_out_of_order_batches(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0 + 20, 3, clicks=3))
    put(vstore, s, v(1, T0, 1, clicks=1), v(1, T0 + 10, 2, clicks=2))
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 20), "clicks") == [(3, T0 + 20)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 15), "clicks") == [(2, T0 + 10)]
    assert [r["version_ms"] for r in vstore.list_versions(s.name, 1, "clicks").to_pylist()] == [T0, T0 + 10, T0 + 20]


def test_ttl_boundary(vstore: VersionedStore) -> None:
    s = new_table(vstore, ttl_ms=100)
    put(vstore, s, v(1, T0 - 50, 1, clicks=0), v(1, T0, 2, clicks=1))
    assert cells(vstore.get_as_of(s.name, [1], T0 + 99), "clicks") == [(1, T0)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 100), "clicks") == [(None, None)]  # exactly ttl old
    assert cells(vstore.get_as_of(s.name, [1], T0 + 100, strict=True), "clicks") == [(None, None)]
    assert cells(vstore.get_as_of(s.name, [1], T0 - 1), "clicks") == [(0, T0 - 50)]
    # a backfill of old history stays visible as of its own time, whatever the wall clock says
    put(vstore, s, v(1, 1_000_000, 3, clicks=9))
    assert cells(vstore.get_as_of(s.name, [1], 1_000_050), "clicks") == [(9, 1_000_000)]


def test_get_latest_honours_ttl_against_now(vstore: VersionedStore) -> None:
    s = new_table(vstore, ttl_ms=1_000)
    put(vstore, s, v(1, T0, 1, clicks=1))
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 999), "clicks") == [(1, T0)]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 1_000), "clicks") == [(None, None)]
    assert cells(vstore.get_latest(s.name, [1]), "clicks") == [(None, None)]  # wall clock: years later


def test_max_versions_keeps_newest(vstore: VersionedStore) -> None:
    s = new_table(vstore, max_versions=2)
    put(vstore, s, *[v(1, T0 + i, i, clicks=i) for i in range(4)])
    put(vstore, s, v(1, T0 + 10, 10, clicks=10))
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [
        {"version_ms": T0 + 3, "clicks": 3},
        {"version_ms": T0 + 10, "clicks": 10},
    ]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 10), "clicks") == [(10, T0 + 10)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 5), "clicks") == [(3, T0 + 3)]


def test_list_versions_range(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, *[v(1, T0 + 10 * i, i, clicks=i) for i in range(5)], v(2, T0, 9, clicks=99))
    listed = vstore.list_versions(s.name, 1, "clicks", start_ms=T0 + 10, end_ms=T0 + 30)
    assert listed.column_names == ["version_ms", "clicks"]
    assert listed.to_pylist() == [{"version_ms": T0 + 10 * i, "clicks": i} for i in (1, 2, 3)]
    assert vstore.list_versions(s.name, 1, "ctr").num_rows == 0
    assert vstore.list_versions(s.name, 3, "clicks").num_rows == 0
    assert vstore.list_versions(s.name, 1, "clicks", start_ms=T0 + 31, end_ms=T0 + 39).num_rows == 0


def test_absent_column_is_not_a_write(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1, ctr=0.1))
    assert put(vstore, s, v(1, T0 + 5, 2, ctr=0.2)) == 1  # a batch without the clicks column
    result = vstore.get_as_of(s.name, [1], T0 + 5)
    assert cells(result, "clicks") == [(1, T0)] and cells(result, "ctr") == [(0.2, T0 + 5)]
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [{"version_ms": T0, "clicks": 1}]


def test_explicit_null_hides_older_value(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1, ctr=0.1))
    assert put(vstore, s, v(1, T0 + 5, 2, clicks=None, ctr=0.2)) == 2  # the null is a cell
    result = vstore.get_as_of(s.name, [1], T0 + 5)
    assert cells(result, "clicks") == [(None, T0 + 5)] and cells(result, "ctr") == [(0.2, T0 + 5)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 4), "clicks") == [(1, T0)]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 5), "clicks") == [(None, T0 + 5)]
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [
        {"version_ms": T0, "clicks": 1}, {"version_ms": T0 + 5, "clicks": None}
    ]
    put(vstore, s, v(1, T0 + 9, 3, clicks=3))  # a later value hides the null
    assert cells(vstore.get_as_of(s.name, [1], T0 + 9), "clicks") == [(3, T0 + 9)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 8), "clicks") == [(None, T0 + 5)]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 9), "clicks") == [(3, T0 + 9)]
    # in one batch, in any row order: the newest version wins, null or not
    put(vstore, s, v(2, T0 + 1, 5, clicks=None), v(2, T0, 4, clicks=7))
    assert cells(vstore.get_as_of(s.name, [2, 2], [T0, T0 + 1], ["clicks"]), "clicks") == [(7, T0), (None, T0 + 1)]


def test_equal_timestamps_with_a_null(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 5, clicks=None), v(1, T0, 3, clicks=30))  # same batch: seq 5 wins
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(None, T0)]
    put(vstore, s, v(1, T0, 6, clicks=60))  # a later batch, higher seq: the value wins
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(60, T0)]
    put(vstore, s, v(1, T0, 7, clicks=None))  # and a null after it wins again
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(None, T0)]
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [{"version_ms": T0, "clicks": None}]


def test_ttl_on_a_null_version(vstore: VersionedStore) -> None:
    s = new_table(vstore, ttl_ms=100)
    put(vstore, s, v(1, T0, 1, clicks=1))
    put(vstore, s, v(1, T0 + 50, 2, clicks=None))
    assert cells(vstore.get_as_of(s.name, [1], T0 + 99), "clicks") == [(None, T0 + 50)]  # hides the live 1
    assert cells(vstore.get_as_of(s.name, [1], T0 + 149), "clicks") == [(None, T0 + 50)]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 150), "clicks") == [(None, None)]  # the null expired too
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 149), "clicks") == [(None, T0 + 50)]
    assert cells(vstore.get_latest(s.name, [1], now_ms=T0 + 150), "clicks") == [(None, None)]


def test_max_versions_counts_nulls(vstore: VersionedStore) -> None:
    s = new_table(vstore, max_versions=2)
    put(vstore, s, v(1, T0, 1, clicks=1), v(1, T0 + 1, 2, clicks=None), v(1, T0 + 2, 3, clicks=3))
    assert vstore.list_versions(s.name, 1, "clicks").to_pylist() == [
        {"version_ms": T0 + 1, "clicks": None}, {"version_ms": T0 + 2, "clicks": 3}
    ]
    assert cells(vstore.get_as_of(s.name, [1], T0 + 1), "clicks") == [(None, T0 + 1)]


def test_as_of_per_key_times(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, *[v(1, T0 + 10 * i, i, clicks=i) for i in range(3)])
    result = vstore.get_as_of(s.name, [1, 1, 1, 1], [T0 - 1, T0, T0 + 15, T0 + 99], ["clicks"])
    assert cells(result, "clicks") == [(None, None), (0, T0), (1, T0 + 10), (2, T0 + 20)]
    with pytest.raises(ValidationError):
        vstore.get_as_of(s.name, [1, 1], [T0])


def test_delete_key(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1), v(2, T0, 2, clicks=2), v(12, T0, 3, clicks=12))
    vstore.delete_key(s.name, 1)
    result = vstore.get_as_of(s.name, [1, 2, 12], T0)
    assert cells(result, "clicks") == [(None, None), (2, T0), (12, T0)]
    assert vstore.list_versions(s.name, 1, "clicks").num_rows == 0


def test_drop_table(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1))
    vstore.drop_table(s.name)
    with pytest.raises(NotFoundError):
        vstore.get_latest(s.name, [1])
    vstore.drop_table(s.name)  # dropping again is fine
    vstore.ensure_table(s)
    assert cells(vstore.get_as_of(s.name, [1], T0), "clicks") == [(None, None)]


def test_missing_table(vstore: VersionedStore) -> None:
    with pytest.raises(NotFoundError):
        vstore.put("ct_never_created", pa.table({"user_id": [1]}))
    with pytest.raises(NotFoundError):
        vstore.schema("ct_never_created")


def test_wrong_key_type(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    for bad in (["1"], [True], [1.5], [None], [(1, 2)]):
        with pytest.raises(ValidationError):
            vstore.get_as_of(s.name, bad, T0)
    with pytest.raises(ValidationError):
        vstore.put(s.name, pa.table({"user_id": ["1"], "version_ms": [T0], "seq": [1], "clicks": [1]}))
    with pytest.raises(ValidationError):
        vstore.delete_key(s.name, "1")
    st_ = new_table(vstore, keys=(Field("item_id", V.STRING),))
    with pytest.raises(ValidationError):
        vstore.get_latest(st_.name, [42])


def test_unknown_feature_and_bad_values(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    with pytest.raises(ValidationError):
        vstore.get_latest(s.name, [1], ["nope"])
    with pytest.raises(ValidationError):
        vstore.put(s.name, pa.table({"user_id": [1], "version_ms": [T0], "seq": [1], "nope": [1]}))
    with pytest.raises(ValidationError):
        vstore.put(s.name, pa.table({"user_id": [1], "version_ms": [T0], "seq": [1], "clicks": ["x"]}))
    with pytest.raises(ValidationError):  # not epoch milliseconds
        vstore.put(s.name, pa.table({"user_id": [1], "version_ms": [-5], "seq": [1], "clicks": [1]}))
    with pytest.raises(ValidationError):
        vstore.put(s.name, pa.table({"user_id": [1], "seq": [1], "clicks": [1]}))


def test_multi_column_keys(vstore: VersionedStore) -> None:
    s = new_table(vstore, keys=(Field("user_id", V.INT64), Field("item_id", V.STRING)))
    rows = [{"user_id": 1, "item_id": "a", "version_ms": T0, "seq": 1, "clicks": 1},
            {"user_id": 1, "item_id": "b", "version_ms": T0, "seq": 2, "clicks": 2}]
    vstore.put(s.name, batch(s, rows))
    result = vstore.get_as_of(s.name, [(1, "b"), (1, "a"), (2, "a")], T0, ["clicks"])
    assert result.column("item_id").to_pylist() == ["b", "a", "a"]
    assert cells(result, "clicks") == [(2, T0), (1, T0), (None, None)]
    keys = pa.table({"item_id": ["a"], "user_id": [1]})
    assert cells(vstore.get_as_of(s.name, keys, T0, ["clicks"]), "clicks") == [(1, T0)]
    with pytest.raises(ValidationError):
        vstore.get_as_of(s.name, [1], T0)


def test_all_value_types_round_trip(vstore: VersionedStore) -> None:
    features = tuple(Field(t.value, t) for t in V)
    s = new_table(vstore, features=features)
    values = {"int64": -3, "double": 2.5, "string": "héllo", "bool": False, "bytes": b"\x00\xff",
              "float_list": [0.25, -1.0], "string_list": ["a", "b,c"]}
    put(vstore, s, v(1, T0, 1, **values))
    result = vstore.get_as_of(s.name, [1], T0).to_pylist()[0]
    assert {k: result[k] for k in values} == values
    assert vstore.schema(s.name) == s


def test_empty_values_and_nulls_round_trip(vstore: VersionedStore) -> None:
    features = tuple(Field(t.value, t) for t in V)
    s = new_table(vstore, features=features)
    empty = {"int64": 0, "double": 0.0, "string": "", "bool": False, "bytes": b"", "float_list": [],
             "string_list": [""]}
    put(vstore, s, v(1, T0, 1, **empty))
    put(vstore, s, v(1, T0 + 1, 2, **{name: None for name in empty}))
    at_t0 = vstore.get_as_of(s.name, [1], T0).to_pylist()[0]
    assert {k: at_t0[k] for k in empty} == empty
    assert all(at_t0[f"{k}__ts"] == T0 for k in empty)
    later = vstore.get_as_of(s.name, [1], T0 + 1).to_pylist()[0]
    assert {k: later[k] for k in empty} == dict.fromkeys(empty)
    assert all(later[f"{k}__ts"] == T0 + 1 for k in empty)
    assert vstore.list_versions(s.name, 1, "string").column("string").to_pylist() == ["", None]


def test_ensure_table_adds_features_and_rejects_new_keys(vstore: VersionedStore) -> None:
    s = new_table(vstore)
    put(vstore, s, v(1, T0, 1, clicks=1))
    wider = TableSchema(s.name, s.keys, (*s.features, Field("views", V.INT64)))
    vstore.ensure_table(wider)
    put(vstore, wider, v(1, T0, 2, views=5))
    result = vstore.get_as_of(s.name, [1], T0, ["clicks", "views"])
    assert cells(result, "clicks") == [(1, T0)] and cells(result, "views") == [(5, T0)]
    with pytest.raises(StoreError):
        vstore.ensure_table(TableSchema(s.name, (Field("user_id", V.STRING),), s.features))


_maybe_int = st.one_of(st.none(), st.integers(-5, 5))
_version = st.tuples(st.integers(0, 30), _maybe_int, st.one_of(st.none(), st.sampled_from([0.5, -1.0])))
_columns = st.sampled_from([(), ("clicks",), ("ctr",), ("clicks", "ctr")])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    versions=st.lists(_version, max_size=12),
    cuts=st.lists(st.integers(0, 12), max_size=3),
    columns=st.lists(_columns, min_size=4, max_size=4),
    queries=st.lists(st.integers(-2, 34), min_size=1, max_size=6),
    ttl=st.one_of(st.none(), st.integers(1, 15)),
)
def test_property_as_of_matches_pick_version(
    vstore: VersionedStore,
    versions: list[tuple[int, int | None, float | None]],
    cuts: list[int],
    columns: list[tuple[str, ...]],
    queries: list[int],
    ttl: int | None,
) -> None:
    """Random versions in source order (seq = position), cut into batches that arrive in order,
    with any time order; each batch has a random subset of the feature columns (absent = not
    written) and random explicit nulls. Every read equals the reference rule."""
    s = _property_table(vstore, ttl)
    key = next(_keys)
    base = T0 + key * 1_000
    bounds = sorted({0, len(versions), *(min(c, len(versions)) for c in cuts)})
    written: dict[str, list[tuple[int, int, Any]]] = {"clicks": [], "ctr": []}
    for (lo, hi), names in zip(itertools.pairwise(bounds), columns, strict=False):
        rows = []
        for seq in range(lo, hi):
            ts, clicks, ctr = versions[seq]
            values = {"clicks": clicks, "ctr": ctr}
            rows.append(v(key, base + ts, seq, **{n: values[n] for n in names}))
            for n in names:
                written[n].append((base + ts, seq, values[n]))
        vstore.put(s.name, batch(s, rows, names))
    times = [base + q for q in queries]
    for strict in (False, True):
        result = vstore.get_as_of(s.name, [key] * len(times), times, strict=strict)
        for name in ("clicks", "ctr"):
            want = [pick_version(written[name], t, ttl, strict=strict) for t in times]
            assert cells(result, name) == [(None, None) if w is None else (w[2], w[0]) for w in want]


_property_tables: dict[tuple[int, int | None], TableSchema] = {}


def _property_table(store: VersionedStore, ttl: int | None) -> TableSchema:
    slot = (id(store), ttl)
    if slot not in _property_tables:
        _property_tables[slot] = new_table(store, ttl_ms=ttl)
    return _property_tables[slot]
