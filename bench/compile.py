"""Registry benchmark: validate and apply a generated repo of 500 feature tables.

    .venv/bin/python bench/compile.py [--quick] [--tables N]

Prints a table, saves bench/results/compile.json and prints, as its last line, one JSON object
with ``apply_500_tables_s`` (first apply of the generated repo into a fresh SQLite registry:
read YAML, validate everything, diff, write one version). Target: < 2 s. The compiler to Flink SQL
will add its own figures here.
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one repeat instead of five (well under a minute)")
    parser.add_argument("--tables", type=int, default=500)
    args = parser.parse_args(argv)
    result = run(args.tables, 1 if args.quick else 5)
    result["quick"] = args.quick
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
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
