"""Registry benchmark: validate and apply a generated repo of 500 feature tables.

    .venv/bin/python bench/compile.py [--quick] [--tables N]

Prints a table, saves bench/results/compile.json and prints, as its last line, one JSON object
with ``apply_500_tables_s`` (first apply of the generated repo into a fresh SQLite registry:
read YAML, validate everything, diff, write one version). Target: < 2 s.

A second measurement (:func:`run_flink_vs_oracle`): examples/ctr computed from ~1M synthetic
events (featurestore.datagen: impressions + clicks, landed as Avro history files) by the compiled
Flink plan on the batch binding (one job, every table, local MiniCluster, wall time including JVM
start, compile and reading the versions back) and by the oracle (registry.reference, DuckDB,
reading the same files). Keys ``flink_batch_1m_s``, ``oracle_1m_s``, ``flink_vs_oracle_ratio``
(``--quick``: ~100k events, same keys). ``--skip-flink`` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from registry import Registry, load_repo

RESULTS = Path(__file__).resolve().parent / "results" / "compile.json"
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ctr"
TABLES_PER_FILE = 10
_WINDOWS = ("10m", "1h", "1d", "7d", "30d")


def _table_yaml(index: int) -> str:
    entity, source = ("user", "clicks") if index % 2 == 0 else ("item", "impressions")
    key_col = "user_id" if entity == "user" else "item_id"
    other = "item_id" if entity == "user" else "user_id"
    numeric = "dwell_ms" if source == "clicks" else "position"
    lines = [
        "---", "kind: FeatureTable", f"name: t{index:04d}_{entity}_{source}", f"entity: {entity}", f"source: {source}",
        "owner: bench", "ttl: 30d", "online_versions: 50", "tags: {generated: 'true'}", "features:",
    ]
    for window in _WINDOWS:
        lines.append(f"  - {{name: f_count_{window}, agg: count, window: {window}}}")
    lines += [
        f"  - {{name: f_avg_1d, agg: avg, column: {numeric}, window: 1d}}",
        f"  - {{name: f_sum_7d, agg: sum, column: {numeric}, window: 7d}}",
        f"  - {{name: f_max_1h, agg: max, column: {numeric}, window: 1h}}",
        f"  - {{name: f_distinct_7d, agg: approx_count_distinct, column: {other}, window: 7d}}",
        f"  - {{name: f_last_{key_col[0]}, column: {other}}}",
    ]
    return "\n".join(lines) + "\n"


def generate(root: Path, tables: int) -> Path:
    """A repo with the example's entities and sources and ``tables`` feature tables of 10 features."""
    root.mkdir(parents=True)
    shutil.copy(EXAMPLE / "featurestore.yaml", root / "featurestore.yaml")
    shutil.copytree(EXAMPLE / "schemas", root / "schemas")
    for name in ("entities.yaml", "sources.yaml"):
        shutil.copy(EXAMPLE / name, root / name)
    for start in range(0, tables, TABLES_PER_FILE):
        text = "".join(_table_yaml(i) for i in range(start, min(start + TABLES_PER_FILE, tables)))
        (root / f"tables_{start // TABLES_PER_FILE:03d}.yaml").write_text(text)
    return root


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(tables: int, repeats: int) -> dict[str, object]:
    load_s: list[float] = []
    apply_s: list[float] = []
    noop_s: list[float] = []
    change_s: list[float] = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            repo = generate(Path(tmp) / "repo", tables)
            load_s.append(_timed(lambda: load_repo(repo)))  # noqa: B023 - used at once
            registry = Registry.for_repo(repo)
            apply_s.append(_timed(lambda: registry.apply(repo)))  # noqa: B023
            noop_s.append(_timed(lambda: registry.apply(repo)))  # noqa: B023
            first = repo / "tables_000.yaml"
            first.write_text(first.read_text().replace("window: 30d}", "window: 14d}", 1))
            change_s.append(_timed(lambda: registry.apply(repo)))  # noqa: B023
            versions = len(registry.log())
            registry.close()
    features = tables * 10
    return {
        "benchmark": "registry_compile",
        "tables": tables,
        "features": features,
        "repeats": repeats,
        "load_validate_s": round(statistics.median(load_s), 4),
        f"apply_{tables}_tables_s": round(statistics.median(apply_s), 4),
        "apply_unchanged_s": round(statistics.median(noop_s), 4),
        "apply_one_change_s": round(statistics.median(change_s), 4),
        "versions_after_run": versions,
        "target_apply_s": 2.0,
        "python": platform.python_version(),
    }


def run_flink_vs_oracle(events: int) -> dict[str, object]:
    """Wall time of examples/ctr over ``events`` synthetic events: Flink batch binding vs the oracle."""
    import pyarrow.compute as pc

    from featurestore import eventlog
    from featurestore.datagen import CtrLogSpec, generate
    from ingestion.runner import run_tables
    from registry import reference

    definitions = load_repo(EXAMPLE)
    # ~1 click per 9 impressions: impressions_per_day sized so impressions + clicks ~= events
    days = 30
    logs = generate(CtrLogSpec(days=days, impressions_per_day=max(1, int(events / 1.11 / days))))
    tables = {
        "impressions": logs.impressions.filter(pc.not_equal(logs.impressions["defect"], "malformed")),
        "clicks": logs.clicks.filter(pc.not_equal(logs.clicks["defect"], "malformed")),
    }
    total = sum(t.num_rows for t in tables.values())
    with tempfile.TemporaryDirectory() as tmp:
        history = str(Path(tmp) / "history")
        for name, table in tables.items():
            source = definitions.source(name)
            assert source.batch is not None
            eventlog.land(table, history, source.batch.path, fmt=source.batch.format,
                          avro_schema=source.avro_schema, landing_column="arrival_ms")
        names = [t.name for t in definitions.feature_tables]
        started = time.perf_counter()
        run = run_tables(definitions, names, "batch", history_root=history, work_dir=Path(tmp) / "out")
        flink_s = time.perf_counter() - started
        flink_rows = sum(t.num_rows for groups in run.versions.values() for t in groups.values())
        started = time.perf_counter()
        oracle_rows = 0
        read = {}
        for name in tables:
            source = definitions.source(name)
            assert source.batch is not None
            read[name] = eventlog.read(history, source.batch.path, fmt=source.batch.format)
        for table in definitions.feature_tables:
            for group in reference.feature_versions(definitions, table.name, read[table.source]):
                oracle_rows += group.versions.num_rows
        oracle_s = time.perf_counter() - started
    return {
        "events": total,
        "flink_batch_1m_s": round(flink_s, 2),
        "flink_job_s": round(run.seconds, 2),
        "flink_version_rows": flink_rows,
        "oracle_1m_s": round(oracle_s, 2),
        "oracle_version_rows": oracle_rows,
        "flink_vs_oracle_ratio": round(flink_s / oracle_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five (well under a minute)")
    parser.add_argument("--tables", type=int, default=500)
    parser.add_argument("--skip-flink", action="store_true", help="only the registry apply timing")
    args = parser.parse_args(argv)
    result = run(args.tables, 1 if args.quick else 5)
    result["quick"] = args.quick
    if not args.skip_flink:
        result.update(run_flink_vs_oracle(100_000 if args.quick else 1_000_000))
    table = Table(title=f"registry: {args.tables} feature tables, {result['features']} features (median)")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    for key, label in (
        ("load_validate_s", "read YAML + validate"),
        (f"apply_{args.tables}_tables_s", "first apply (validate + diff + write)"),
        ("apply_unchanged_s", "apply, unchanged (no version)"),
        ("apply_one_change_s", "apply, one window changed"),
    ):
        table.add_row(label, f"{result[key]:.3f}")
    Console(stderr=False).print(table)
    if "flink_batch_1m_s" in result:
        flink = Table(title=f"examples/ctr over {result['events']:,} events: Flink batch binding vs oracle (wall)")
        flink.add_column("engine")
        flink.add_column("seconds", justify="right")
        flink.add_column("version rows", justify="right")
        flink.add_row("Flink (MiniCluster, JVM start included)", f"{result['flink_batch_1m_s']:.1f}",
                      f"{result['flink_version_rows']:,}")
        flink.add_row("oracle (DuckDB)", f"{result['oracle_1m_s']:.1f}", f"{result['oracle_version_rows']:,}")
        flink.add_row("ratio Flink / oracle", f"{result['flink_vs_oracle_ratio']:.2f}", "")
        Console(stderr=False).print(flink)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
