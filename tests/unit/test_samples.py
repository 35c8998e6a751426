"""The sample table's compiled label join and the sink's steps that need no Flink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from featurestore.errors import ValidationError
from ingestion import samples
from ingestion.progress import ProgressWriter, read_progress
from registry.models import SampleTable
from registry.replay_binding import ReplaySpec
from registry.repo import load_repo
from registry.sample_compiler import LABEL_MS, SAMPLE_MS, SAMPLE_SEQ, compile_samples, output_schema
from registry.validate import build

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def definitions() -> Any:
    return load_repo(ROOT / "examples" / "ctr")


def test_the_join_is_the_same_text_for_both_bindings(definitions: Any) -> None:
    stream = compile_samples(definitions, "ctr_samples", "stream", kafka_bootstrap="127.0.0.1:9092")
    batch = compile_samples(definitions, "ctr_samples", "batch", history_root="/tmp/history")
    assert stream.select == batch.select
    assert stream.source_ddl != batch.source_ddl
    assert "LEFT JOIN" in stream.select
    # both ends included: a click at the impression's time or exactly 10 minutes later counts
    assert "l.`__rt` BETWEEN b.`__rt` AND b.`__rt` + INTERVAL '0 00:10:00.000' DAY(2) TO SECOND(3)" in stream.select
    assert stream.arrow_schema.names[-4:] == ["clicked", SAMPLE_MS, SAMPLE_SEQ, LABEL_MS]


def test_a_bounded_replay_reads_labels_one_window_past_its_end(definitions: Any) -> None:
    # An impression a minute before the end is labelled by a click a minute after it.
    replay = ReplaySpec(key_fields=("user_id",), start_ms=1_000, end_ms=86_400_000)
    plan = compile_samples(definitions, "ctr_samples", "batch", history_root="/tmp/history", replay=replay)
    base, label = (d for d in plan.source_ddl if "'connector' = 'hdfs-replay'" in d)
    assert "'scan.end-ms' = '86400000'" in base and "impressions" in base
    assert f"'scan.end-ms' = '{86_400_000 + 600_000}'" in label and "clicks" in label
    assert "'scan.start-ms' = '1000'" in base and "'scan.start-ms' = '1000'" in label


def test_a_sample_column_cannot_shadow_what_the_join_sets(definitions: Any) -> None:
    table: SampleTable = definitions.sample_table("ctr_samples")
    assert output_schema(table, definitions.source("impressions")).names[0] == "impression_id"
    objects = [o.model_copy(update={"label": "sample_ms"}) if o.name == "ctr_samples" else o
               for o in definitions.objects()]
    with pytest.raises(ValidationError, match="label 'sample_ms' is a column every sample has"):
        build(objects, project=definitions.project)


def _batch(seqs: list[int], times: list[int]) -> pa.Table:
    return pa.table({SAMPLE_SEQ: pa.array(seqs, pa.int64()), SAMPLE_MS: pa.array(times, pa.int64())})


def test_a_sample_joined_twice_is_kept_once() -> None:
    seen = samples.SeenSamples(retain_ms=1_000)
    first = seen.keep_new(_batch([1, 2, 2, 3], [10, 20, 20, 30]))
    assert first.column(SAMPLE_SEQ).to_pylist() == [1, 2, 3]
    assert seen.keep_new(_batch([2, 4], [20, 40])).column(SAMPLE_SEQ).to_pylist() == [4]


def test_progress_reports_the_oldest_watermark_of_a_groups_open_instances(tmp_path: Path) -> None:
    a = ProgressWriter(str(tmp_path), "t", "w_1h")
    b = ProgressWriter(str(tmp_path), "t", "w_1h")
    assert read_progress(tmp_path).watermark_ms[("t", "w_1h")] is None  # b has reported none yet
    a.add(5, 100, 90)
    a.flush()
    b.add(5, 200, 150)
    b.flush()
    assert read_progress(tmp_path).watermark_ms[("t", "w_1h")] == 90
    a.close()  # a closed instance has written everything
    assert read_progress(tmp_path).watermark_ms[("t", "w_1h")] == 150
    assert read_progress(tmp_path).instances[("t", "w_1h")] == 2


def _spec(tmp_path: Path, wait_for: tuple[tuple[str, str], ...], timeout_s: float) -> samples.SampleSinkSpec:
    from featurestore.schema import Field, TableSchema
    from featurestore.types import ValueType

    schema = TableSchema(name="t", keys=(Field("user_id", ValueType.STRING),), features=(Field("f", ValueType.INT64),))
    return samples.SampleSinkSpec(
        name="s", input_schema=pa.schema([]), join_key="id",
        reads=(samples.FeatureRead("t", schema, ("f",), wait_for),), strict=False, retain_ms=0,
        versioned_store="embedded:///x", offline_log=None, kafka_bootstrap=None, progress_dir=str(tmp_path),
        settle_timeout_s=timeout_s,
    )


def test_samples_wait_for_the_feature_groups_they_read(tmp_path: Path) -> None:
    writer = ProgressWriter(str(tmp_path), "t", "w_1h")
    writer.add(1, 100, 100)
    writer.flush()
    spec = _spec(tmp_path, (("t", "w_1h"),), timeout_s=0.2)
    assert samples.wait_for_features(spec, 100) == []
    assert samples.wait_for_features(spec, 101) == ["t.w_1h"]  # behind after the timeout: reported
    writer.close()
    assert samples.wait_for_features(spec, 10**12) == []
    assert samples.wait_for_features(_spec(tmp_path, (("t", "other"),), 0.1), 1) == ["t.other"]  # not started
    assert samples.wait_for_features(_spec(tmp_path, (), 0.1), 1) == []  # a table outside the job


def test_range_keeps_samples_of_the_written_days() -> None:
    spec = _spec(Path("/nonexistent"), (), 0.1)
    spec = samples.SampleSinkSpec(**{**spec.__dict__, "write_start_ms": 20, "write_end_ms": 40})
    kept = samples.in_range(spec, _batch([1, 2, 3, 4], [10, 20, 39, 40]))
    assert kept.column(SAMPLE_MS).to_pylist() == [20, 39]


def test_a_group_has_written_through_its_watermark_or_just_before_its_newest_version() -> None:
    from ingestion.store_sink import written_through

    assert written_through(None, None) is None
    assert written_through(None, 100) == 99  # right after a restore the rows carry no watermark
    assert written_through(150, 100) == 150
    assert written_through(50, 100) == 99  # a burst released by a watermark its rows do not carry
