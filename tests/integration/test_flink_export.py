"""The point-in-time export on Flink (ingestion/flink_export.py) gives the DuckDB engine's rows.

Randomized versions (seeded) over three feature tables with different TTLs (none, 7 and 2
ms), equal version times broken by seq, explicit nulls, rows that write only some features
(``_written``), samples before any version, at exactly a version's time, exactly TTL after it,
and keys with no history; inclusive and strict. Each export is checked against the DuckDB engine
and against the ``pick_version`` oracle. Then the engine on the offline log's Iceberg files on
HDFS, and ``featurestore export --engine flink`` on a repo.
"""

from __future__ import annotations

import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.environment import child_environment
from featurestore.fs import open_fs
from featurestore.offline import OfflineLog
from featurestore.pit import ExportOptions, FeatureSource, get_historical_features
from featurestore.schema import WRITTEN, Field, TableSchema, write_set
from featurestore.services import ports
from featurestore.time_semantics import pick_version
from featurestore.types import ValueType
from ingestion.flink_export import FlinkJoin
from tests.unit.test_cli_export import C1D, C30D, Repo
from tests.unit.test_cli_export import repo as repo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")]

USERS = TableSchema("users", (Field("user_id", ValueType.INT64),),
                    (Field("clicks", ValueType.INT64), Field("ctr", ValueType.DOUBLE)), ttl_ms=7)
ITEMS = TableSchema("items", (Field("item_id", ValueType.STRING),), (Field("tag", ValueType.STRING),))
RECENT = TableSchema("recent", (Field("user_id", ValueType.INT64),), (Field("seen", ValueType.BOOL),), ttl_ms=2)


def _user_versions(rng: random.Random) -> list[dict[str, Any]]:
    out = []
    for seq in rng.sample(range(1000), 300):  # unique seqs in random order: ties on time by seq
        names = rng.choice([None, (), ("clicks",), ("ctr",), ("clicks", "ctr")])
        values = {"clicks": rng.choice([None, rng.randint(-5, 5)]), "ctr": rng.choice([None, rng.random()])}
        row = {"user_id": rng.randint(1, 20), "version_ms": rng.randint(100, 160), "seq": seq,
               WRITTEN: None if names is None else write_set(names)}
        row.update({n: values[n] if names is None or n in names else None for n in values})
        out.append(row)
    return out


def _oracle(versions: list[dict[str, Any]], key: str, feature: str, value: object, at: int, ttl: int | None,
            strict: bool) -> object:
    def writes(v: dict[str, Any]) -> bool:
        written = v.get(WRITTEN)
        return written is None or feature in written.split(",")

    cells = [(v["version_ms"], v["seq"], v[feature]) for v in versions if v[key] == value and writes(v)]
    picked = pick_version(cells, at, ttl, strict=strict)
    return None if picked is None else picked[2]


@pytest.fixture(scope="module")
def data() -> dict[str, Any]:
    return data_set()


def data_set() -> dict[str, Any]:
    """Samples, the three tables' versions and their sources (seeded: the same on every call)."""
    rng = random.Random(11)
    users = _user_versions(rng)
    items = [{"item_id": rng.choice("abc"), "version_ms": rng.randint(100, 160), "seq": 2000 + i,
              "tag": rng.choice([None, "x", "yy"])} for i in range(120)]
    recent = [{"user_id": rng.randint(1, 20), "version_ms": rng.randint(100, 160), "seq": 3000 + i,
               "seen": rng.choice([None, True, False])} for i in range(150)]
    # samples: random, plus exactly at versions' times, one TTL after them, and before any version
    points = [(rng.randint(1, 22), rng.choice("abcd"), rng.randint(97, 170)) for _ in range(500)]
    points += [(v["user_id"], "a", v["version_ms"] + d) for v in users[:40] for d in (0, 7, -1)]
    points += [(v["user_id"], "b", v["version_ms"] + d) for v in recent[:40] for d in (0, 1, 2)]
    samples = pa.table({
        "uid": pa.array([p[0] for p in points], pa.int64()),
        "item_id": [p[1] for p in points],
        "ts": pa.array([p[2] for p in points], pa.int64()),
    })
    sources = [
        FeatureSource(USERS, pa.Table.from_pylist(users, schema=USERS.arrow_schema().append(
            pa.field(WRITTEN, pa.string()))), join_keys={"user_id": "uid"}),
        FeatureSource(ITEMS, pa.Table.from_pylist(items, schema=ITEMS.arrow_schema())),  # no _written
        FeatureSource(RECENT, pa.Table.from_pylist(recent, schema=RECENT.arrow_schema()), join_keys={"user_id": "uid"}),
    ]
    return {"users": users, "items": items, "recent": recent, "points": points, "samples": samples,
            "sources": sources}


FEATURES = ["users:clicks", "users:ctr", "items:tag", "recent:seen"]


@pytest.mark.parametrize("strict", [False, True], ids=["inclusive", "strict"])
def test_flink_equals_duckdb_and_the_oracle(data: dict[str, Any], strict: bool) -> None:
    options = ExportOptions(strict=strict)
    duck = get_historical_features(data["samples"], FEATURES, data["sources"], event_time="ts", options=options)
    flink = get_historical_features(data["samples"], FEATURES, data["sources"], event_time="ts", options=options,
                                    join=FlinkJoin(parallelism=2))
    assert flink.schema.equals(duck.schema)
    assert flink.equals(duck)
    seen = {"clicks": 0, "tag": 0, "seen": 0}
    for row, (uid, item, at) in zip(flink.to_pylist(), data["points"], strict=True):
        assert row["clicks"] == _oracle(data["users"], "user_id", "clicks", uid, at, 7, strict)
        assert row["ctr"] == _oracle(data["users"], "user_id", "ctr", uid, at, 7, strict)
        assert row["tag"] == _oracle(data["items"], "item_id", "tag", item, at, None, strict)
        assert row["seen"] == _oracle(data["recent"], "user_id", "seen", uid, at, 2, strict)
        for name in seen:
            seen[name] += row[name] is not None
    assert all(count > 20 for count in seen.values()), seen  # the data exercises every table


@pytest.fixture
def flink_gateway() -> None:
    """PyFlink's gateway JVM, started before a test uses hdfs-native: PyFlink forks it with a
    preexec function, so the child runs fsspec's at-fork handler, which drops the cached
    filesystems, and hdfs-native's destructor deadlocks in a forked child."""
    from pyflink.java_gateway import get_gateway

    from ingestion.runner import hadoop_on_gateway

    hadoop_on_gateway()
    get_gateway()


@pytest.fixture
def hdfs_log(tmp_path: Path, services: object, flink_gateway: None) -> Iterator[OfflineLog]:
    root = f"{ports.HDFS_URI}/tests/flink-export-{uuid.uuid4().hex[:8]}"
    yield OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/catalog.db", warehouse=root))
    open_fs(root).delete(root)


# In a new process: PyFlink's gateway JVM starts once per process, and reaching hdfs:// needs
# Hadoop on its classpath from the start (an earlier test's job started this process's without).
# The job's work directory (samples, results) is on HDFS too, as a remote cluster needs it.
_EXPORT_FROM_HDFS = """
import sys
import pyarrow.parquet as pq
from featurestore.config import OfflineLogConfig
from featurestore.fs import open_fs
from featurestore.offline import OfflineLog
from featurestore.pit import FeatureSource, get_historical_features
from ingestion.flink_export import FlinkJoin
from tests.integration.test_flink_export import FEATURES, USERS
catalog, warehouse, samples, out = sys.argv[1:]
table = OfflineLog(OfflineLogConfig(catalog_uri=catalog, warehouse=warehouse)).table(USERS)
sources = [FeatureSource(USERS, table, join_keys={"user_id": "uid"})]
join = FlinkJoin(work_dir=f"{warehouse}/work")  # the job's inputs and results on HDFS too
result = get_historical_features(pq.read_table(samples), FEATURES[:2], sources, event_time="ts", join=join)
assert not [f for f in open_fs(warehouse).list_files(f"{warehouse}/work")], "work files left behind"
pq.write_table(result, out)
"""


def test_flink_reads_the_offline_log_on_hdfs(data: dict[str, Any], hdfs_log: OfflineLog, tmp_path: Path) -> None:
    table = hdfs_log.ensure_table(USERS)
    users = data["users"]
    schema = USERS.arrow_schema().append(pa.field(WRITTEN, pa.string()))
    table.append(pa.Table.from_pylist(users[:150], schema=schema))  # two commits: two data files
    table.append(pa.Table.from_pylist(users[150:], schema=schema))
    files = table.data_files()
    assert len(files) >= 2 and all(f.startswith("hdfs://") for f in files)
    sources = [FeatureSource(USERS, table, join_keys={"user_id": "uid"})]
    duck = get_historical_features(data["samples"], FEATURES[:2], sources, event_time="ts")
    pq.write_table(data["samples"], tmp_path / "samples.parquet")
    config = hdfs_log.config
    subprocess.run([sys.executable, "-c", _EXPORT_FROM_HDFS, config.catalog_uri, config.warehouse,
                    str(tmp_path / "samples.parquet"), str(tmp_path / "out.parquet")],
                   check=True, cwd=ROOT, env=child_environment(PYTHONPATH=str(ROOT)), timeout=600)
    flink = pq.read_table(tmp_path / "out.parquet")
    assert flink.equals(duck)
    assert flink["clicks"].null_count < flink.num_rows


def test_cli_export_engine_flink(repo: Repo, tmp_path: Path) -> None:
    outs = {}
    for engine in ("duckdb", "flink"):
        outs[engine] = tmp_path / f"{engine}.parquet"
        text = repo.ok("--features", f"{C1D},{C30D}", "--samples", str(repo.samples), "--out", str(outs[engine]),
                       "--engine", engine)
        assert f"engine {engine})" in text
    assert pq.read_table(outs["flink"]).equals(pq.read_table(outs["duckdb"]))
    assert pq.read_table(outs["flink"])["user_clicks_1d"].to_pylist() == [1, 2, None]


def test_list_features_come_through_the_same() -> None:
    """An embedding (a list of doubles) passes Flink's Parquet reader and writer unchanged."""
    schema = TableSchema("emb", (Field("user_id", ValueType.INT64),), (Field("vec", ValueType.FLOAT_LIST),))
    versions = pa.Table.from_pylist(
        [{"user_id": 1, "version_ms": 10, "seq": 1, "vec": [0.5, 1.0]},
         {"user_id": 1, "version_ms": 30, "seq": 2, "vec": None}], schema=schema.arrow_schema())
    samples = pa.table({"user_id": pa.array([1, 1, 1, 2], pa.int64()), "ts": pa.array([5, 20, 30, 20], pa.int64())})
    sources = [FeatureSource(schema, versions)]
    duck = get_historical_features(samples, ["emb:vec"], sources, event_time="ts")
    flink = get_historical_features(samples, ["emb:vec"], sources, event_time="ts", join=FlinkJoin())
    assert flink.equals(duck)
    assert flink["vec"].to_pylist() == [None, [0.5, 1.0], None, None]


def test_hdfs_inputs_on_a_gateway_without_hadoop_fail_before_the_job(
    monkeypatch: pytest.MonkeyPatch, data: dict[str, Any], tmp_path: Path
) -> None:
    """A process whose Flink gateway started without Hadoop cannot read hdfs://: a ConfigError
    that says what to do, before any job runs, and the export writes nothing."""
    import ingestion.runner
    from featurestore.errors import ConfigError
    from featurestore.pit import export

    monkeypatch.setattr(ingestion.runner, "hadoop_on_gateway", lambda: False)
    out = tmp_path / "out.parquet"
    with pytest.raises(ConfigError, match="HADOOP_CLASSPATH"):
        export(data["samples"], FEATURES[:2], data["sources"][:1], output=out, event_time="ts",
               join=FlinkJoin(work_dir=f"{ports.HDFS_URI}/tests/flink-export-nohadoop-{uuid.uuid4().hex[:8]}"))
    assert not out.exists()
