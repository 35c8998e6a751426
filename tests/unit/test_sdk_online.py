"""The SDK facade and its online read path on the local profile (embedded store, memory cache)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.errors import NotFoundError, ServiceUnavailableError, ValidationError
from featurestore.schema import TableSchema
from featurestore.storage import packed_rows
from featurestore.storage.online import CellColumns, OnlineBase, Stored
from sdk import FeatureStore
from sdk.online import ServingOptions, _rows_cell_by_cell, _rows_of
from tests.unit import test_online_columns as online_columns

ROOT = Path(__file__).resolve().parent.parent.parent
USERS = "user_click_features"
C1D, C30D = f"{USERS}:user_clicks_1d", f"{USERS}:user_clicks_30d"
NOW = 1_800_000_000_000
DAY = 86_400_000


def make_repo(tmp: Path) -> Path:
    repo = tmp / "repo"
    shutil.copytree(ROOT / "examples" / "ctr", repo)
    return repo


def open_store(repo: Path, profile: str | None = None, *, options: ServingOptions | None = None,
               **overrides: Any) -> FeatureStore:
    fs = FeatureStore(repo, profile, serving=options, **overrides)
    fs.registry.apply()
    for schema in fs.registry.definitions().table_schemas().values():
        fs.stores.versioned.ensure_table(schema)
        fs.stores.online_cache.ensure_table(schema)
    return fs


def versions(schema: TableSchema, rows: list[dict[str, Any]]) -> pa.Table:
    """A batch of versions with the features the rows name (others not written)."""
    names = [n for n in schema.feature_names if any(n in r for r in rows)]
    fields = [f for f in schema.arrow_schema() if f.name in (*schema.key_names, "version_ms", "seq", *names)]
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in fields}, schema=pa.schema(fields))


def seed(fs: FeatureStore, *, cache: bool = True) -> TableSchema:
    """u1 in both stores; u2 only in the versioned store; u3 nowhere; u4 expired (31 days old)."""
    schema = fs.registry.definitions().table_schema(USERS)
    both = versions(schema, [{"user_id": "u1", "version_ms": NOW - 1000, "seq": 1, "user_clicks_1d": 3,
                              "user_clicks_30d": 30}])
    only_store = versions(schema, [
        {"user_id": "u2", "version_ms": NOW - 2 * DAY, "seq": 2, "user_clicks_1d": 1, "user_clicks_30d": 10},
        {"user_id": "u2", "version_ms": NOW - 2000, "seq": 3, "user_clicks_1d": 4, "user_clicks_30d": 40},
    ])
    old = versions(schema, [{"user_id": "u4", "version_ms": NOW - 31 * DAY, "seq": 4, "user_clicks_1d": 9,
                             "user_clicks_30d": 9}])
    for batch in (both, only_store, old):
        fs.stores.versioned.put(USERS, batch)
    if cache:
        fs.stores.online_cache.write(USERS, both)
        fs.stores.online_cache.write(USERS, old)
    return schema


def cells(frame: Any, name: str) -> list[tuple[Any, Any, str]]:
    d = frame.to_pydict()
    return list(zip(d[name], d[f"{name}__ts"], d[f"{name}__status"], strict=True))


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[FeatureStore]:
    store = open_store(make_repo(tmp_path))
    seed(store)
    yield store
    store.close()


def test_constructing_opens_nothing(tmp_path: Path) -> None:
    store = FeatureStore(make_repo(tmp_path))
    assert store.stores.opened == ()
    assert store.registry._registry is None
    code = (
        "import sys; from sdk import FeatureStore; FeatureStore(sys.argv[1]).close();"
        "print(any(m.startswith(('pyflink', 'py4j')) for m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"  # in a fresh interpreter: no JVM, no Flink
    assert "FeatureStore" in repr(store)
    store.close()


def test_read_path_fallbacks_are_counted(fs: FeatureStore) -> None:
    got = fs.online.get([C1D], ["u1", "u2", "u3"], now_ms=NOW)
    assert cells(got, "user_clicks_1d") == [
        (3, NOW - 1000, "present"), (4, NOW - 2000, "present"), (None, None, "missing")
    ]
    s = fs.online.stats()
    assert (s.lookups, s.local_hits, s.local_misses) == (3, 0, 3)
    assert (s.cache_hits, s.cache_misses, s.store_reads, s.store_found) == (1, 2, 2, 1)
    fs.online.get([C1D], ["u1", "u2", "u3"], now_ms=NOW)
    s = fs.online.stats()
    assert (s.local_hits, s.cache_hits, s.store_reads, s.requests) == (3, 1, 2, 2)  # second time: all local


def test_get_local_answers_only_from_the_in_process_cache(fs: FeatureStore) -> None:
    assert fs.online.get_local([C1D], ["u1", "u2"]) is None  # the request is not resolved yet
    assert fs.online.stats().requests == 0
    fs.online.get([C1D], ["u1"])  # resolves the request, caches u1 in process
    before = fs.online.stats()
    assert fs.online.get_local([C1D], ["u1", "u2"]) is None  # u2 needs the online cache
    assert fs.online.stats() == before  # a refusal counts nothing and reads no store
    local = fs.online.get_local([C1D], ["u1"])
    assert local is not None and local.to_pydict() == fs.online.get([C1D], ["u1"]).to_pydict()
    s = fs.online.stats()
    assert (s.requests, s.local_hits, s.cache_hits) == (before.requests + 2, before.local_hits + 2, before.cache_hits)


def test_local_cache_disabled_goes_to_the_cache_each_time(tmp_path: Path) -> None:
    store = open_store(make_repo(tmp_path), options=ServingOptions(local_cache_s=0))
    seed(store)
    for _ in range(3):
        store.online.get([C1D], ["u1"], now_ms=NOW)
    s = store.online.stats()
    assert (s.local_hits, s.cache_hits, s.store_reads) == (0, 3, 0)
    store.close()


def test_local_cache_entries_expire(tmp_path: Path) -> None:
    store = open_store(make_repo(tmp_path), options=ServingOptions(local_cache_s=0.05))
    seed(store)
    store.online.get([C1D], ["u1"], now_ms=NOW)
    time.sleep(0.1)
    store.online.get([C1D], ["u1"], now_ms=NOW)
    assert store.online.stats().cache_hits == 2
    store.close()


def test_feature_ttl_is_honoured_on_every_tier(fs: FeatureStore) -> None:
    # u4's version is 31 days old: the table's TTL is 30 days
    assert cells(fs.online.get([C1D], ["u4"], now_ms=NOW), "user_clicks_1d") == [(None, None, "expired")]
    # u1 is served from the local cache now; 30 days later it has expired there too
    fs.online.get([C1D], ["u1"], now_ms=NOW)
    assert cells(fs.online.get([C1D], ["u1"], now_ms=NOW + 30 * DAY), "user_clicks_1d")[0][2] == "expired"
    assert fs.online.stats().local_hits == 1


def test_as_of_reads_the_versioned_store(fs: FeatureStore) -> None:
    got = fs.online.get([C1D, C30D], ["u2", "u3"], as_of=NOW - DAY)
    assert cells(got, "user_clicks_1d") == [(1, NOW - 2 * DAY, "present"), (None, None, "missing")]
    assert fs.online.get([C1D], ["u2"], as_of="2027-01-15T08:00:00+00:00").to_dicts()[0]["user_clicks_1d"] == 4
    assert fs.online.stats().as_of_lookups == 3
    assert fs.online.get([C1D], ["u2", "u1"], as_of=[NOW - DAY, NOW]).to_dicts()[1]["user_clicks_1d"] == 3
    with pytest.raises(ValidationError):
        fs.online.get([C1D], ["u2"], as_of=NOW // 1000 * 10**6)  # nanoseconds by mistake


def test_feature_service_and_many_tables(fs: FeatureStore) -> None:
    got = fs.online.get("ctr_deepfm_v1", [{"user_id": "u1", "item_id": "i9"}], now_ms=NOW)
    row = got.to_dicts()[0]
    assert row["user_id"] == "u1" and row["item_id"] == "i9"
    assert row["user_clicks_1d"] == 3 and row["item_clicks_1h__status"] == "missing"
    assert got.table.num_rows == 1 and got.to_pandas().shape[0] == 1
    assert "user_click_features:user_clicks_1d" in fs.online.request("ctr_deepfm_v1").refs


def test_entities_in_every_shape(fs: FeatureStore) -> None:
    expected = fs.online.get([C1D], ["u1", "u2"], now_ms=NOW).to_pydict()
    for entities in ({"user_id": ["u1", "u2"]}, [{"user_id": "u1"}, {"user_id": "u2"}], [("u1",), ("u2",)],
                     pa.table({"user_id": ["u1", "u2"]})):
        assert fs.online.get([C1D], entities, now_ms=NOW).to_pydict() == expected
    assert fs.online.get_one([C1D], "u1")["user_clicks_1d"] == 3
    assert fs.online.get([C1D], [], now_ms=NOW).num_rows == 0


def test_wildcard_and_arrow_types(fs: FeatureStore) -> None:
    got = fs.online.get([f"{USERS}:*"], ["u1"], now_ms=NOW)
    table = got.table
    assert table.schema.field("user_clicks_1d").type == pa.int64()
    assert table.schema.field("user_avg_dwell_1d__status").type == pa.string()
    assert len(got.column_names) == 1 + 3 * 9


@pytest.mark.parametrize(("features", "entities", "error"), [
    (["user_click_features:nope"], ["u1"], NotFoundError),
    (["no_such_table:x"], ["u1"], NotFoundError),
    ("no_such_service", ["u1"], NotFoundError),
    (["user_click_features"], ["u1"], ValidationError),
    ([C1D], [1], ValidationError),  # the key column is a string
    ([C1D], {"item_id": ["i1"]}, ValidationError),  # the key column is missing
    ([C1D], "u1", ValidationError),
])
def test_caller_mistakes(fs: FeatureStore, features: Any, entities: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        fs.online.get(features, entities)


class _Down(OnlineBase):
    """An online cache whose server is down."""

    uri = "redis://127.0.0.1:1/0"

    def __init__(self, schemas: OnlineBase) -> None:
        super().__init__()
        self._inner = schemas

    def _fail(self) -> None:
        raise ServiceUnavailableError("redis", "127.0.0.1:1", "connection refused")

    def _load_schema(self, table: str) -> Any:
        return self._inner.schema(table)

    def _save_schema(self, schema: TableSchema) -> None: ...

    def _apply(self, table: str, updates: Any) -> int:
        self._fail()
        return 0

    def read_stored(self, table: str, keys: Any, features: Any) -> Any:
        self._fail()

    def _delete(self, table: str, key: bytes) -> None: ...

    def _drop(self, table: str) -> None: ...

    def schema(self, table: str) -> TableSchema:
        self._fail()
        raise AssertionError

    def get(self, *args: Any, **kwargs: Any) -> pa.Table:
        self._fail()
        raise AssertionError

    def close(self) -> None: ...


def test_cache_down_falls_back_to_the_store_counted(fs: FeatureStore) -> None:
    fs.stores._online = _Down(fs.stores.online_cache)
    got = fs.online.get([C1D], ["u1", "u2"], now_ms=NOW)
    assert [c[0] for c in cells(got, "user_clicks_1d")] == [3, 4]
    s = fs.online.stats()
    assert (s.cache_errors, s.store_reads, s.store_found, s.cache_hits) == (2, 2, 2, 0)
    health = {h.name: h for h in fs.health()}
    assert health["online_cache"].status == "down" and health["online_cache"].service == "redis"
    assert health["versioned_store"].status == "ok"


def test_cache_down_raises_when_asked_to(tmp_path: Path) -> None:
    store = open_store(make_repo(tmp_path), options=ServingOptions(on_cache_down="raise"))
    seed(store)
    store.stores._online = _Down(store.stores.online_cache)
    with pytest.raises(ServiceUnavailableError) as info:
        store.online.get([C1D], ["u1"])
    assert info.value.service == "redis"
    store.close()


def test_apply_through_the_facade_refreshes_readers(fs: FeatureStore) -> None:
    assert fs.registry.plan().unchanged
    assert [v.id for v in fs.registry.log()] == [1]
    fs.online.get([C1D], ["u1"], now_ms=NOW)
    fs.registry.apply()
    assert fs.online._requests == {}


def test_an_unknown_export_engine_is_a_validation_error(fs: FeatureStore, tmp_path: Path) -> None:
    samples = pa.table({"user_id": ["u1"], "ts": pa.array([1_700_000_000_000], pa.int64())})
    with pytest.raises(ValidationError, match="unknown export engine 'spark'") as info:
        fs.offline.export(samples, [f"{USERS}:user_clicks_1d"], output=tmp_path / "out.parquet", engine="spark")
    assert "duckdb or flink" in str(info.value)
    assert not (tmp_path / "out.parquet").exists()


@settings(max_examples=100, deadline=None)
@given(online_columns.stored_rows(max_keys=8), st.randoms(use_true_random=False))
def test_a_many_key_read_decodes_column_wise_as_cell_by_cell(rows: list[dict[str, Stored]], rng: Any) -> None:
    """The SDK's read of many keys (decoded by type, column-wise) and of a key or two (cell by
    cell, ``types.decode_value``) give the same values, times and statuses, for every value type,
    explicit nulls and cells never written; from Redis's packed rows too."""
    schema, names = online_columns.SCHEMA, online_columns.NAMES
    want = _rows_cell_by_cell(schema, rows)
    replies = online_columns.packed(rows, rng, extra=True)
    for cells in (CellColumns.from_rows(rows, names), packed_rows.cell_columns(replies, names),
                  CellColumns.from_rows(packed_rows.rows(replies, names), names)):
        values, times, statuses = _rows_of(schema, cells)
        assert ([list(v) for v in values], times, statuses) == want


def test_a_version_at_epoch_zero_expires_like_any_other(fs: FeatureStore) -> None:
    """A cell whose version time is 0 (1970-01-01T00:00Z) is a time like any other: 30 days past
    it the feature has expired, even when the key's other feature is fresh."""
    schema = fs.registry.definitions().table_schema(USERS)
    for row in ({"user_id": "u5", "version_ms": 0, "seq": 5, "user_clicks_1d": 7},
                {"user_id": "u5", "version_ms": NOW - 1000, "seq": 6, "user_clicks_30d": 8}):
        fs.stores.online_cache.write(USERS, versions(schema, [row]))
    got = fs.online.get([C1D, C30D], ["u5"], now_ms=NOW)
    assert cells(got, "user_clicks_1d") == [(None, None, "expired")]
    assert cells(got, "user_clicks_30d") == [(8, NOW - 1000, "present")]
