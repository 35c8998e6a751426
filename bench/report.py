"""Build bench/REPORT.md and its plots from the figures the benchmarks saved in bench/results/.

Every number comes from a bench/results/*.json file written by a benchmark run; this program only
reads them, compares each against its target, and draws pictures. `make bench` runs every
benchmark and then this.

    python bench/report.py [--results bench/results] [--out bench]
"""

from __future__ import annotations

import argparse
import json
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Target:
    benchmark: str  # results file stem
    key: str
    label: str
    bound: float
    better: str  # "lower" or "higher"
    unit: str = ""

    def met(self, value: float) -> bool:
        compare: Callable[[float, float], bool] = operator.le if self.better == "lower" else operator.ge
        return compare(value, self.bound)


TARGETS = (
    Target("compile", "apply_500_tables_s", "apply, 500 feature tables", 2.0, "lower", "s"),
    Target("pit_export", "ratio_vs_duckdb_asof", "point-in-time export vs raw DuckDB ASOF", 1.5, "lower", "x"),
    Target("pit_export_scale", "peak_rss_mb", "point-in-time export, 10M samples x 100M versions, peak RSS", 8192,
           "lower", "MB"),
    Target("online", "redis_1key_p99_ms", "Redis latest, 1 key x 50 features, p99", 1.0, "lower", "ms"),
    Target("online", "redis_100key_p99_ms", "Redis latest, 100 keys, p99", 3.0, "lower", "ms"),
    Target("online", "hbase_asof_p99_ms", "HBase as-of, 1 key, p99", 10.0, "lower", "ms"),
    Target("online", "hbase_put_cells_per_s", "HBase batch put", 50_000, "higher", "cells/s"),
    Target("online", "embedded_put_cells_per_s", "embedded batch put", 50_000, "higher", "cells/s"),
    Target("serving", "local_cache_1x50_p99_ms", "SDK in-process, 1 key x 50 features, p99", 1.0, "lower", "ms"),
    Target("serving", "http_process_1x50_p99_ms", "HTTP (`featurestore serve`), 1 key x 50 features, p99", 2.0,
           "lower", "ms"),
    Target("serving", "local_cache_100x50_p99_ms", "SDK in-process, 100 keys x 50 features, p99", 3.0, "lower", "ms"),
    Target("serving", "redis_1x50_p99_ms", "SDK through Redis (no in-process cache), 1 key x 50, p99", 1.0,
           "lower", "ms"),
    Target("serving", "redis_100x50_p99_ms", "SDK through Redis (no in-process cache), 100 keys x 50, p99", 3.0,
           "lower", "ms"),
    Target("preload", "speedup_with_latency", "preloading speed-up, 20 ms per read", 5.0, "higher", "x"),
    Target("preload", "hit_rate", "preloader hit rate", 0.95, "higher", ""),
    Target("ingest", "events_per_s", "streaming ingestion end to end", 50_000, "higher", "events/s"),
    Target("ingest", "freshness_p99_s", "freshness p99 at 20k events/s", 2.0, "lower", "s"),
    Target("backfill", "replay_events_per_s", "replay source alone", 500_000, "higher", "events/s"),
    Target("backfill", "backfill_events_per_s", "backfill end to end", 100_000, "higher", "events/s"),
)


def load_results(results: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(results.glob("*.json")):
        try:
            found[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise SystemExit(f"{path}: not valid JSON ({exc}); rerun that benchmark") from exc
    return found


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table_rows(results: dict[str, dict[str, Any]]) -> list[tuple[Target, float | None]]:
    rows: list[tuple[Target, float | None]] = []
    for target in TARGETS:
        value = results.get(target.benchmark, {}).get(target.key)
        rows.append((target, float(value) if isinstance(value, int | float) else None))
    return rows


def _series(results: dict[str, dict[str, Any]], suffix: str) -> list[tuple[str, Any]]:
    """Every figure whose key ends with ``suffix`` (a distribution or a timeline), as
    ``("<benchmark>.<key>", value)``."""
    return [
        (f"{name}.{key}", value)
        for name, figures in results.items()
        for key, value in figures.items()
        if key.endswith(suffix) and value
    ]


#: Throughput is drawn as the rate over windows of this many seconds: the sinks flush in bursts, so
#: per-second rates swing between 0 and several times the mean.
RATE_WINDOW_S = 5.0


def _rates(points: list[list[float]], window_s: float) -> tuple[list[float], list[float]]:
    """Rows per second over consecutive windows of at least ``window_s`` of ``[[elapsed_s, rows], ...]``,
    each placed at its window's end."""
    at: list[float] = []
    rates: list[float] = []
    start_t, start_n = float(points[0][0]), float(points[0][1])
    for t, n in points[1:]:
        if float(t) - start_t >= window_s:
            at.append(float(t))
            rates.append((float(n) - start_n) / (float(t) - start_t))
            start_t, start_n = float(t), float(n)
    return at, rates


def _short(label: str) -> str:
    return label.removesuffix("_percentiles_ms").removesuffix("_percentiles_s").removesuffix("_timeline")


def plot(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    """Latency p50/p99 bars and distributions, throughput over time, every figure against its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = []
    latency = {
        key.removesuffix("_ms"): float(value)
        for name in ("online", "serving")
        for key, value in results.get(name, {}).items()
        if key.endswith(("_p50_ms", "_p99_ms")) and isinstance(value, int | float)
    }
    if latency:
        fig, ax = plt.subplots(figsize=(9, 4))
        ax.barh(list(latency), list(latency.values()), color="#4c72b0")
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_title("online lookup latency, p50 and p99")
        fig.tight_layout()
        pictures.append(out / "latency.png")
        fig.savefig(pictures[-1], dpi=110)
        plt.close(fig)
    distributions = _series(results, "_percentiles_ms") + _series(results, "_percentiles_s")
    if distributions:
        fig, ax = plt.subplots(figsize=(9, 5))
        for n, (label, percentiles) in enumerate(distributions):
            scale = 1000.0 if label.endswith("_percentiles_s") else 1.0  # freshness: seconds
            ranks = [float(q) for q in percentiles]
            style = ("-", "--", ":")[n // 10 % 3]  # the colours repeat after ten lines
            ax.plot([float(v) * scale for v in percentiles.values()], ranks, style, marker=".", label=_short(label))
        ax.set_xscale("log")
        ax.set_xlabel("milliseconds (log scale)")
        ax.set_ylabel("percentile")
        ax.set_yticks([1, 10, 25, 50, 75, 90, 99])
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title("latency distributions: lookups (online, serving) and ingestion freshness")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        pictures.append(out / "latency_distribution.png")
        fig.savefig(pictures[-1], dpi=110)
        plt.close(fig)
    timelines = _series(results, "_timeline")
    if timelines:
        fig, ax = plt.subplots(figsize=(9, 4))
        for label, points in timelines:
            at, rates = _rates(points, RATE_WINDOW_S)
            ax.plot(at, rates, label=_short(label))
        ax.set_xlabel("seconds since the job was submitted")
        ax.set_ylabel(f"versions written per second ({RATE_WINDOW_S:g} s windows)")
        ax.set_title("throughput over time (start-up, steady state, final commit)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        pictures.append(out / "throughput.png")
        fig.savefig(pictures[-1], dpi=110)
        plt.close(fig)
    rows = [(t, v) for t, v in table_rows(results) if v is not None]
    if rows:
        fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1))
        share = [v / t.bound if t.better == "higher" else t.bound / v if v else 1.0 for t, v in rows]
        colours = ["#55a868" if t.met(v) else "#c44e52" for t, v in rows]
        ax.barh([t.label for t, _ in rows], share, color=colours)
        ax.axvline(1.0, color="black", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("measured / target (>= 1 meets the target)")
        ax.set_title("every figure against its target")
        fig.tight_layout()
        pictures.append(out / "targets.png")
        fig.savefig(pictures[-1], dpi=110)
        plt.close(fig)
    return pictures


def report(results_dir: Path, out: Path) -> Path:
    results = load_results(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    pictures = plot(results, out)
    lines = [
        "# Benchmark report",
        "",
        "Generated by `python bench/report.py` from `bench/results/*.json`; every figure comes from the",
        "last run of its benchmark (`make bench` runs them all, then this).",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for target, value in table_rows(results):
        bound = f"{'<=' if target.better == 'lower' else '>='} {_fmt(target.bound)} {target.unit}".strip()
        if value is None:
            lines.append(f"| {target.label} | not measured yet (`{target.benchmark}.{target.key}`) | {bound} | |")
        else:
            lines.append(
                f"| {target.label} | {_fmt(value)} {target.unit} | {bound} | {'yes' if target.met(value) else 'NO'} |"
            )
    lines += ["", *[f"![{p.stem}]({p.name})" for p in pictures], "", "## Raw figures", ""]
    for name, figures in results.items():
        shown = {k: "(plotted)" if k.endswith("_timeline") else v for k, v in figures.items()}
        lines += [f"### {name}", "", "```json", json.dumps(shown, indent=2, sort_keys=True), "```", ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    path = report(args.results, args.out)
    met = sum(1 for t, v in table_rows(load_results(args.results)) if v is not None and t.met(v))
    measured = sum(1 for _, v in table_rows(load_results(args.results)) if v is not None)
    print(f"wrote {path}: {measured} figures measured, {met} meet their targets")
    print(json.dumps({"report": str(path), "measured": measured, "met": met}))


if __name__ == "__main__":
    main()
