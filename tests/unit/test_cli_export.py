"""`featurestore export` and `featurestore export --reproduce`, with click's CliRunner on the
local profile (embedded store, local Iceberg log)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner, Result

from featurestore.offline import OfflineLog
from featurestore.pit.manifest import ContentHasher, Manifest, compare_hashes
from featurestore.pit.writers import FORMATS
from sdk.cli import main
from sdk.cli.export import FORMATS as CLI_FORMATS
from tests.unit.test_sdk_online import C1D, C30D, DAY, NOW, USERS, make_repo, open_store, versions

ITEMS = "item_click_features"


class Repo:
    """A repo applied on the local profile, with versions in the offline log and a samples file."""

    def __init__(self, root: Path, samples: Path) -> None:
        self.root = root
        self.samples = samples

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["export", "--repo", str(self.root), *args])

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def fails(self, *args: str, exit_code: int = 1) -> str:
        result = self.run(*args)
        assert result.exit_code == exit_code, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        return result.output

    def append(self, table: str, rows: list[dict[str, Any]]) -> None:
        fs = open_store(self.root)
        schema = fs.registry.definitions().table_schema(table)
        fs.stores.offline_log.ensure_table(schema).append(versions(schema, rows))
        fs.close()

    def log(self) -> OfflineLog:
        fs = open_store(self.root)
        log = fs.stores.offline_log
        fs.close()
        return log


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    root = make_repo(tmp_path)
    fs = open_store(root)
    definitions = fs.registry.definitions()
    for name in ("user_impression_features", "item_impression_features"):  # in the log, no versions
        fs.stores.offline_log.ensure_table(definitions.table_schema(name))
    fs.close()
    samples = tmp_path / "samples.parquet"
    pq.write_table(pa.table({
        "user_id": ["u1", "u1", "u2"],
        "item_id": ["i1", "i1", "i2"],
        "ts": pa.array([NOW - DAY - 1, NOW - DAY, NOW], pa.timestamp("ms", tz="UTC")),
        "label": [0, 1, 0],
    }), samples)
    found = Repo(root, samples)
    found.append(USERS, [
        {"user_id": "u1", "version_ms": NOW - 2 * DAY, "seq": 1, "user_clicks_1d": 1, "user_clicks_30d": 10},
    ])
    found.append(USERS, [{"user_id": "u1", "version_ms": NOW - DAY, "seq": 2, "user_clicks_1d": 2}])
    found.append(ITEMS, [{"item_id": "i1", "version_ms": NOW - 3 * DAY, "seq": 1, "item_clicks_30d": 7}])
    return found


def read_rows(fmt: str, target: str, log: OfflineLog) -> list[dict[str, Any]]:
    if fmt == "parquet":
        return pq.read_table(target).to_pylist()
    if fmt == "arrow":
        return pa.ipc.open_file(target).read_all().to_pylist()
    if fmt == "avro":
        with open(target, "rb") as f:
            return list(fastavro.reader(f))
    return log.catalog.load_table(target).scan().to_arrow().sort_by("ts").to_pylist()


def test_export_features_to_parquet_prints_rows_target_manifest_and_timings(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "out" / "train.parquet"
    text = repo.ok("--features", f"{C1D},{C30D}", "--samples", str(repo.samples), "--out", str(out))
    assert f"exported 3 rows x 2 features (features {C1D}, {C30D}, as of inclusive, engine duckdb)" in text
    assert f"to {out.resolve()} (parquet)" in text
    assert f"manifest: {out.resolve()}.manifest.json" in text
    assert "registry version 1" in text and f"{USERS}@" in text
    assert "timings: registry" in text and "join + write" in text
    table = pq.read_table(out)
    assert table.column_names == ["user_id", "item_id", "ts", "label", "user_clicks_1d", "user_clicks_30d"]
    assert table["user_clicks_1d"].to_pylist() == [1, 2, None]
    assert table["user_clicks_30d"].to_pylist() == [10, 10, None]  # not written by the second version
    manifest = Manifest.read(f"{out}.manifest.json")
    assert manifest.row_count == 3 and manifest.content_hash is not None
    assert manifest.registry_version == "1" and manifest.options["strict"] is False


def test_strict_as_of_and_repeated_features_and_chunks(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "strict.parquet"
    repo.ok("--features", C1D, "--features", f"{ITEMS}:item_clicks_30d", "--samples", str(repo.samples),
            "--out", str(out), "--as-of", "strict", "--chunk-rows", "1")
    table = pq.read_table(out)
    assert table["user_clicks_1d"].to_pylist() == [1, 1, None]  # the version at exactly ts is not seen
    assert table["item_clicks_30d"].to_pylist() == [7, 7, None]
    assert Manifest.read(f"{out}.manifest.json").options["chunk_rows"] == 1


def test_a_training_set_export_takes_its_features_and_as_of(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "deepfm.parquet"
    text = repo.ok("--training-set", "ctr_deepfm_v1", "--samples", str(repo.samples), "--out", str(out))
    assert "exported 3 rows x 12 features (training set ctr_deepfm_v1, as of inclusive, engine duckdb)" in text
    assert "user_impression_features@empty" in text  # in the log, no snapshot yet
    table = pq.read_table(out)
    assert table.num_rows == 3 and "item_impressions_30d" in table.column_names
    assert table["item_clicks_30d"].to_pylist() == [7, 7, None]
    # versions that land later in a table that was empty are not read by the reproduction either
    repo.append("user_impression_features",
                [{"user_id": "u1", "version_ms": NOW - 5 * DAY, "seq": 1, "user_impressions_30d": 4}])
    assert "rows equal the original's" in repo.ok("--reproduce", f"{out}.manifest.json")
    assert pq.read_table(tmp_path / "deepfm.reproduced.parquet").equals(table)


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "avro", "iceberg"])
def test_each_format_and_reproduce_gives_equal_rows(repo: Repo, tmp_path: Path, fmt: str) -> None:
    target = "exports.train" if fmt == "iceberg" else str(tmp_path / f"train.{fmt}")
    text = repo.ok("--features", C1D, "--samples", str(repo.samples), "--out", target, "--format", fmt)
    manifest_path = (repo.root / ".featurestore" / "exports" / "exports.train.manifest.json" if fmt == "iceberg"
                     else Path(f"{target}.manifest.json"))
    assert f"manifest: {manifest_path}" in text
    log = repo.log()
    rows = read_rows(fmt, target, log)
    assert [r["user_clicks_1d"] for r in rows] == [1, 2, None]

    # newer versions land after the export: a reproduction still reads the recorded snapshot
    repo.append(USERS, [{"user_id": "u1", "version_ms": NOW - DAY - 10, "seq": 3, "user_clicks_1d": 99},
                        {"user_id": "u2", "version_ms": NOW - 1, "seq": 4, "user_clicks_1d": 5}])
    again = repo.ok("--reproduce", str(manifest_path))
    assert "rows equal the original's: 3 rows then, 3 now" in again
    copy = "exports.train_reproduced" if fmt == "iceberg" else str(tmp_path / f"train.reproduced.{fmt}")
    assert (f"Iceberg table {copy}" if fmt == "iceberg" else f"to {copy} ({fmt})") in again
    assert read_rows(fmt, copy, log) == rows


def test_reproduce_to_another_format_and_path(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    repo.ok("--features", C1D, "--samples", str(repo.samples), "--out", str(out))
    copy = tmp_path / "elsewhere" / "copy.avro"
    text = repo.ok("--reproduce", f"{out}.manifest.json", "--out", str(copy), "--format", "avro")
    assert "rows equal the original's" in text  # the hash does not depend on the format
    assert Manifest.read(f"{copy}.manifest.json").output["format"] == "avro"
    assert "--out TABLE is required" in repo.fails("--reproduce", f"{out}.manifest.json", "--format", "iceberg",
                                                   exit_code=2)


def test_reproduce_says_when_rows_differ(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    repo.ok("--features", C1D, "--samples", str(repo.samples), "--out", str(out))
    changed = pq.read_table(repo.samples)
    pq.write_table(changed.set_column(3, "label", pa.array([1, 1, 1])), repo.samples)  # the samples changed
    text = repo.fails("--reproduce", f"{out}.manifest.json")
    assert "the reproduced rows differ from the original's: 3 rows then, 3 now; content hash" in text


def test_a_manifest_without_a_content_hash_compares_row_counts(repo: Repo, tmp_path: Path) -> None:
    out = tmp_path / "train.parquet"
    repo.ok("--features", C1D, "--samples", str(repo.samples), "--out", str(out))
    path = Path(f"{out}.manifest.json")
    data = json.loads(path.read_text())
    del data["content_hash"]  # as written before the hash was recorded
    path.write_text(json.dumps(data))
    text = repo.ok("--reproduce", str(path))
    assert "3 rows then, 3 now; values not compared: the original manifest records no content hash" in text


def test_bad_export_inputs_name_what_and_where(repo: Repo, tmp_path: Path) -> None:
    out = str(tmp_path / "x.parquet")
    samples = str(repo.samples)

    text = repo.fails("--features", C1D, "--samples", str(tmp_path / "nope.parquet"), "--out", out)
    assert f"error: --samples {tmp_path / 'nope.parquet'}: no such file or directory" in text

    no_key = tmp_path / "no_key.parquet"
    pq.write_table(pq.read_table(samples).drop_columns(["user_id"]), no_key)
    text = repo.fails("--features", C1D, "--samples", str(no_key), "--out", out)
    assert f"error: samples {no_key}: no key column ['user_id']" in text

    no_time = tmp_path / "no_time.parquet"
    pq.write_table(pq.read_table(samples).drop_columns(["ts"]), no_time)
    text = repo.fails("--features", C1D, "--samples", str(no_time), "--out", out)
    assert f"error: samples {no_time}: no event-time column 'ts'" in text and "--event-time" in text
    assert "no event-time column 'when'" in repo.fails(
        "--features", C1D, "--samples", samples, "--out", out, "--event-time", "when")

    not_parquet = tmp_path / "samples.csv"
    not_parquet.write_text("user_id,ts\nu1,1\n")
    assert f"samples {not_parquet}: not a readable Parquet file" in repo.fails(
        "--features", C1D, "--samples", str(not_parquet), "--out", out)

    assert "unknown feature table 'user_clicks'" in repo.fails(
        "--features", "user_clicks:user_clicks_1d", "--samples", samples, "--out", out)
    assert f"feature table {USERS!r} has no feature 'nope'" in repo.fails(
        "--features", f"{USERS}:nope", "--samples", samples, "--out", out)
    assert "a feature reference is written table:feature" in repo.fails(
        "--features", "user_clicks_1d", "--samples", samples, "--out", out)
    assert "no TrainingSet named 'ctr_deepfm_v9'" in repo.fails(
        "--training-set", "ctr_deepfm_v9", "--samples", samples, "--out", out)
    text = repo.fails("--training-set", "ctr_deepfm_v1", "--out", out)  # no --samples, none stored yet
    assert "the offline log has no samples of 'ctr_samples'" in text

    # usage errors: click's exit code 2
    assert "exactly one of --training-set" in repo.fails("--samples", samples, "--out", out, exit_code=2)
    assert "--out is required" in repo.fails("--features", C1D, "--samples", samples, exit_code=2)
    assert "drop --samples" in repo.fails("--reproduce", out, "--samples", samples, exit_code=2)
    assert not Path(out).exists()


def test_bad_manifests_name_what_and_where(repo: Repo, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    assert f"error: no export manifest at {missing}" in repo.fails("--reproduce", str(missing))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert f"error: {garbage}: not an export manifest: not JSON" in repo.fails("--reproduce", str(garbage))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"version": 1, "features": []}))
    assert f"error: {partial}: not an export manifest: fields missing" in repo.fails("--reproduce", str(partial))

    out = tmp_path / "train.parquet"
    repo.ok("--features", C1D, "--samples", str(repo.samples), "--out", str(out))
    good = json.loads(Path(f"{out}.manifest.json").read_text())

    bad_entry = tmp_path / "bad_entry.json"
    bad_entry.write_text(json.dumps({**good, "tables": [{"schema": {}}]}))
    assert f"{bad_entry}: not an export manifest: KeyError" in repo.fails("--reproduce", str(bad_entry))

    table = repo.log().identifier(USERS)
    gone = tmp_path / "gone.json"
    entry = good["tables"][0]
    gone.write_text(json.dumps({**good, "tables": [{**entry, "source": {**entry["source"], "snapshot_id": 12345}}]}))
    text = repo.fails("--reproduce", str(gone))
    assert f"error: {gone}: the offline log table {table!r} no longer has snapshot 12345" in text

    repo.log().catalog.drop_table(table)
    text = repo.fails("--reproduce", f"{out}.manifest.json")
    assert f"the offline log table {table!r} is gone from sqlite:///" in text

    catalog = repo.root / ".featurestore" / "catalog.db"
    catalog.unlink()
    text = repo.fails("--reproduce", str(gone))
    assert f"the Iceberg catalog of the offline log table {table!r} is gone (sqlite:///{catalog})" in text
    assert not catalog.exists()  # not re-created empty by the check

    repo.samples.unlink()
    text = repo.fails("--reproduce", f"{out}.manifest.json")
    assert f"the samples file {repo.samples.resolve()} read by this export is gone" in text


def test_the_content_hash_ignores_row_order_and_batches_not_values() -> None:
    def digest(*parts: pa.Table) -> dict[str, str]:
        hasher = ContentHasher(parts[0].schema)
        for part in parts:
            hasher.update(part)
        hasher.close()
        return hasher.digest()

    table = pa.table({"k": ["a", "b", None], "v": pa.array([1.5, None, 2.0]), "l": [[1.0], [], None]})
    same = digest(table)
    assert compare_hashes(same, digest(table.slice(2), table.slice(0, 2))) is True  # order and batches
    assert compare_hashes(same, digest(table.set_column(1, "v", pa.array([1.5, None, 2.5])))) is False
    assert compare_hashes(same, digest(table.slice(0, 2))) is False
    assert compare_hashes(same, digest(table.rename_columns(["k", "w", "l"]))) is False
    assert compare_hashes(same, {**same, "algorithm": "another"}) is None
    assert compare_hashes(None, same) is None


def test_the_cli_formats_are_the_writers_formats() -> None:
    assert CLI_FORMATS == FORMATS


def test_a_training_set_without_samples_reads_the_stored_sample_table(repo: Repo, tmp_path: Path) -> None:
    from featurestore.offline import samples as stored

    fs = open_store(repo.root)
    config = fs.config.offline_log
    fs.close()
    at = pa.array([NOW - DAY, NOW], pa.int64())
    written = pa.table({
        "impression_id": ["a", "b"], "user_id": ["u1", "u2"], "item_id": ["i1", "i2"], "ts": at,
        "position": pa.array([1, 2], pa.int32()), "device": ["ios", "web"], "clicked": pa.array([1, 0], pa.int32()),
        "sample_seq": pa.array([7, 8], pa.int64()), "user_clicks_1d": pa.array([2, None], pa.int64()),
        "sample_time": pa.compute.multiply(at, 1000).cast(pa.timestamp("us", tz="UTC")),
        "written_at": pa.compute.multiply(at, 1000).cast(pa.timestamp("us", tz="UTC")),
    })
    stored.ensure_table(config, "ctr_samples", written.schema)
    stored.append(config, "ctr_samples", written)
    stored.append(config, "ctr_samples", written.slice(0, 1))  # delivered twice: read once
    out = tmp_path / "train.parquet"
    text = repo.ok("--training-set", "ctr_deepfm_v1", "--out", str(out))
    assert "samples of ctr_samples from the offline log" in text
    rows = pq.read_table(out).to_pylist()
    assert [(r["impression_id"], r["clicked"]) for r in rows] == [("a", 1), ("b", 0)]
    assert rows[0]["user_clicks_1d"] == 2  # recomputed by the export from the log, as of the sample
