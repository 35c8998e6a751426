"""bench/report.py reads only what the benchmarks saved and judges each figure against its target."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import TARGETS, report, table_rows


def test_report_compares_saved_figures_with_targets(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "online.json").write_text(json.dumps({"redis_1key_p99_ms": 0.8, "hbase_asof_p99_ms": 12.0}))
    rows = dict(
        ((t.benchmark, t.key), v) for t, v in table_rows({"online": json.loads((results / "online.json").read_text())})
    )
    assert rows[("online", "redis_1key_p99_ms")] == 0.8
    assert rows[("pit_export", "ratio_vs_duckdb_asof")] is None
    path = report(results, tmp_path)
    text = path.read_text()
    assert "| Redis latest, 1 key x 50 features, p99 | 0.8 ms | <= 1 ms | yes |" in text
    assert "| HBase as-of, 1 key, p99 | 12 ms | <= 10 ms | NO |" in text
    assert "not measured yet (`pit_export.ratio_vs_duckdb_asof`)" in text
    assert (tmp_path / "targets.png").exists() and (tmp_path / "latency.png").exists()


def test_every_target_names_a_direction() -> None:
    assert all(t.better in ("lower", "higher") and t.bound > 0 for t in TARGETS)


def test_every_target_is_a_figure_its_benchmark_saves() -> None:
    # The saved results of the last runs: a target whose key no benchmark writes would read
    # "not measured yet" forever.
    results = Path(__file__).parents[2] / "bench" / "results"
    saved = {p.stem: json.loads(p.read_text()) for p in results.glob("*.json")}
    missing = [f"{t.benchmark}.{t.key}" for t in TARGETS if t.key not in saved.get(t.benchmark, {})]
    assert not missing, missing


def test_distributions_and_timelines_are_plotted_not_dumped(tmp_path: Path) -> None:
    from bench.latency import timed

    results = tmp_path / "results"
    results.mkdir()
    online: dict[str, object] = {}
    timed(300, lambda i: sum(range(i)), warmup=10).record(online, "redis_1key")
    assert online["redis_1key_p50_ms"] == online["redis_1key_percentiles_ms"]["50"]  # type: ignore[index]
    (results / "online.json").write_text(json.dumps(online))
    ingest = {"freshness_percentiles_s": {"50": 1.1, "99": 1.9}, "versions_timeline": [[0, 0], [1.0, 500], [2.0, 1500]]}
    (results / "ingest.json").write_text(json.dumps(ingest))
    text = report(results, tmp_path).read_text()
    assert "![latency_distribution](latency_distribution.png)" in text and "![throughput](throughput.png)" in text
    assert (tmp_path / "latency_distribution.png").stat().st_size > 0 and (tmp_path / "throughput.png").exists()
    assert '"versions_timeline": "(plotted)"' in text
