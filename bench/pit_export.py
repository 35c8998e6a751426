"""Point-in-time export vs a raw DuckDB ASOF JOIN, side by side on the same generated data.

    .venv/bin/python bench/pit_export.py --quick    # 100k samples x 1M versions per table, < 1 min
    .venv/bin/python bench/pit_export.py            # 1M samples x 10M versions per table (3 tables, 20 features)
    .venv/bin/python bench/pit_export.py --scale    # 10M samples x 100M versions per table: ours only, 8 GiB bound
    ... --written one      # versions carry the offline log's _written column, one write-set per table
    ... --written groups   # each table's features in 2 window groups, each row written by one group

Data (numpy, seeded) is written once as Parquet; each measured run is a fresh subprocess reading
those files and writing Parquet, so its wall time and peak RSS (getrusage) are its own. The
baseline is the plain ASOF JOIN query with only what it needs to give the same output (TTL as a
CASE, ORDER BY sample row); the generated versions have unique (key, time) and no null cells,
so it needs no seq tie-break or null handling. With ``--written groups`` the baseline runs one
ASOF JOIN per (table, group) over the rows of that group (``WHERE _written = ...``), which is
what the data needs. Both outputs are compared row for row. Beside them (not with ``--scale``),
the same export on the Flink engine (``--engine flink``: a batch job on the local MiniCluster,
parallelism 2; peak RSS of its JVM reported), compared row for row with ours.
Prints a table and, as the last line, a JSON object (also saved to bench/results/pit_export.json).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = 86_400_000
START = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPAN_DAYS = 30
# (table, key, number of features, ttl)
TABLES = [("user", "user_id", 8, 30 * DAY), ("item", "item_id", 7, 7 * DAY), ("ctx", "ctx_id", 5, None)]
SIZES = {"quick": (100_000, 1_000_000, 20_000), "full": (1_000_000, 10_000_000, 200_000),
         "scale": (10_000_000, 100_000_000, 2_000_000)}
MEMORY_LIMIT = "4GB"


def schemas() -> list[Any]:
    from featurestore.schema import Field, TableSchema
    from featurestore.types import ValueType

    return [
        TableSchema(name, (Field(key, ValueType.INT64),),
                    tuple(Field(f"{name}_f{i}", ValueType.DOUBLE) for i in range(n)), ttl_ms=ttl)
        for name, key, n, ttl in TABLES
    ]


def groups_of(name: str, n: int, written: str) -> list[list[str]]:
    """The write groups of a table's features: one, or the first and second half (``groups``)."""
    names = [f"{name}_f{i}" for i in range(n)]
    return [names[: n // 2], names[n // 2:]] if written == "groups" else [names]


def generate(work: Path, samples: int, versions: int, keys: int, written: str = "none", seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(START + DAY, START + SPAN_DAYS * DAY, samples))
    cols = {"sample_id": np.arange(samples), "event_time": pa.array(t, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}
    for _, key, _, _ in TABLES:
        cols[key] = rng.integers(0, keys, samples)
    cols["label"] = rng.integers(0, 2, samples).astype(np.int8)
    pq.write_table(pa.table(cols), work / "samples.parquet")
    seq = 0
    for name, key, n, _ in TABLES:
        out = work / name
        out.mkdir()
        part_rows = 10_000_000
        for part, lo in enumerate(range(0, versions, part_rows)):
            rows = min(part_rows, versions - lo)
            k = rng.integers(0, keys, rows)
            vt = rng.integers(START, START + SPAN_DAYS * DAY, rows)
            # unique (key, time) per part; across parts offset times by the part number (still unique)
            vt = vt - vt % 16 + part
            _, first = np.unique(k * (1 << 32) + (vt - START), return_index=True)  # span < 2**32 ms
            k, vt = k[first], vt[first]
            data = {key: k, "version_ms": vt, "seq": np.arange(seq, seq + len(k))}
            seq += len(k)
            for i in range(n):
                data[f"{name}_f{i}"] = rng.random(len(k))
            if written != "none":
                groups = groups_of(name, n, written)
                which = np.arange(len(k)) % len(groups)  # each row written by one group
                for g, features in enumerate(groups):
                    for f in features:
                        data[f] = pa.array(data[f], mask=which != g)  # not written: null
                labels = np.array([",".join(sorted(f)) for f in groups], dtype=object)
                data["_written"] = pa.array(labels[which], pa.string())
            pq.write_table(pa.table(data), out / f"part-{part:04d}.parquet")


def run_ours(work: Path, out: Path) -> dict[str, Any]:
    from featurestore.pit import ExportOptions, FeatureSource, export

    sources = [FeatureSource(s, work / s.name) for s in schemas()]
    refs = [f"{s.name}:*" for s in schemas()]
    manifest = export(work / "samples.parquet", refs, sources, output=out,
                      options=ExportOptions(memory_limit=MEMORY_LIMIT, spill_dir=str(work)))
    return {"rows": manifest.row_count}


def run_flink(work: Path, out: Path) -> dict[str, Any]:
    from featurestore.pit import ExportOptions, FeatureSource, export
    from ingestion.flink_export import FlinkJoin

    sources = [FeatureSource(s, work / s.name) for s in schemas()]
    refs = [f"{s.name}:*" for s in schemas()]
    join = FlinkJoin(parallelism=2)
    manifest = export(work / "samples.parquet", refs, sources, output=out,
                      options=ExportOptions(memory_limit=MEMORY_LIMIT, spill_dir=str(work)), join=join)
    return {"rows": manifest.row_count, "job_seconds": join.seconds}


def run_baseline(work: Path, out: Path) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect(config={"memory_limit": MEMORY_LIMIT, "temp_directory": str(work),
                                 "preserve_insertion_order": False})
    written = (work / "written").read_text()
    select, joins = ["s.*"], []
    for (name, key, n, ttl) in TABLES:
        groups = groups_of(name, n, written)
        for g, features in enumerate(groups):
            view = f"{name}_{g}"
            where = f"WHERE _written = '{','.join(sorted(features))}'" if len(groups) > 1 else ""
            con.execute(f"CREATE VIEW {view} AS SELECT * FROM read_parquet('{work / name}/*.parquet') {where}")
            joins.append(f"ASOF LEFT JOIN {view} ON s.{key} = {view}.{key} AND s.t >= {view}.version_ms")
        for i in range(n):
            view = f"{name}_{next(g for g, fs in enumerate(groups) if f'{name}_f{i}' in fs)}"
            col = f"{view}.{name}_f{i}"
            visible = f"CASE WHEN {view}.version_ms > s.t - {ttl} THEN {col} END"
            select.append(f"{col} AS {name}_f{i}" if ttl is None else f"{visible} AS {name}_f{i}")
    sql = (f"SELECT {', '.join(select)} FROM (SELECT *, epoch_ms(event_time) AS t, row_number() OVER () AS rid "
           f"FROM read_parquet('{work}/samples.parquet')) s {' '.join(joins)} ORDER BY s.rid")
    con.execute(f"COPY (SELECT * EXCLUDE (t, rid) FROM ({sql})) TO '{out}' (FORMAT parquet)")
    return {"rows": pq.read_metadata(out).num_rows}


def _children_peak_rss_mb() -> float:
    """Peak RSS (VmHWM) of this process's live children: the Flink engine's JVM (PyFlink's
    gateway, which runs the local job) is still running when the export returns."""
    import psutil

    peak = 0
    for proc in psutil.Process().children(recursive=True):
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]))
    return peak / 1024


def child(which: str, work: Path, out: Path) -> None:
    start = time.perf_counter()
    info = {"ours": run_ours, "flink": run_flink, "baseline": run_baseline}[which](work, out)
    info["seconds"] = time.perf_counter() - start
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info["children_peak_rss_mb"] = _children_peak_rss_mb()
    print(json.dumps(info))


def measure(which: str, work: Path) -> dict[str, Any]:
    out = work / f"out_{which}.parquet"
    proc = subprocess.run([sys.executable, __file__, "--child", which, "--work", str(work)],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{which} run failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["output"] = str(out)
    return result


def same_output(a: Path, b: Path) -> bool:
    left, right = pq.ParquetFile(a), pq.ParquetFile(b)
    la = left.iter_batches(1_000_000)
    rb = pa.Table.from_batches(list(right.iter_batches(1_000_000)))
    offset = 0
    for batch in la:
        part = rb.slice(offset, batch.num_rows)
        offset += batch.num_rows
        if not pa.Table.from_batches([batch]).cast(part.schema).equals(part):  # same names, maybe other units
            return False
    return bool(offset == rb.num_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true")
    size.add_argument("--scale", action="store_true")
    parser.add_argument("--written", choices=["none", "one", "groups"], default="none",
                        help="versions without _written (default), with one write-set, or 2 groups per table")
    parser.add_argument("--skip-flink", action="store_true", help="leave out the Flink engine")
    parser.add_argument("--child", choices=["ours", "flink", "baseline"])
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.work), Path(args.work) / f"out_{args.child}.parquet")
        return
    mode = "quick" if args.quick else "scale" if args.scale else "full"
    samples, versions, keys = SIZES[mode]
    with tempfile.TemporaryDirectory(prefix="pit-bench-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        generate(work, samples, versions, keys, args.written)
        (work / "written").write_text(args.written)
        gen_seconds = time.perf_counter() - start
        ours = measure("ours", work)
        base = None if mode == "scale" else measure("baseline", work)
        equal = None if base is None else same_output(Path(ours["output"]), Path(base["output"]))
        flink = None if mode == "scale" or args.skip_flink else measure("flink", work)
        flink_equal = None if flink is None else same_output(Path(flink["output"]), Path(ours["output"]))
    result = {
        "mode": mode, "written": args.written, "samples": samples, "versions_per_table": versions,
        "tables": len(TABLES),
        "features": sum(t[2] for t in TABLES), "generate_seconds": round(gen_seconds, 2),
        "ours_seconds": round(ours["seconds"], 2), "duckdb_asof_seconds": None if base is None else round(
            base["seconds"], 2),
        "ratio_vs_duckdb_asof": None if base is None else round(ours["seconds"] / base["seconds"], 3),
        "peak_rss_mb": round(ours["peak_rss_mb"], 1),
        "duckdb_asof_peak_rss_mb": None if base is None else round(base["peak_rss_mb"], 1),
        "outputs_equal": equal, "memory_limit": MEMORY_LIMIT,
        # the same export on Flink (ingestion/flink_export.py, local MiniCluster, parallelism 2)
        "flink_seconds": None if flink is None else round(flink["seconds"], 2),
        "flink_job_seconds": None if flink is None else round(flink["job_seconds"], 2),
        "flink_vs_duckdb_engine_ratio": None if flink is None else round(flink["seconds"] / ours["seconds"], 3),
        "flink_python_peak_rss_mb": None if flink is None else round(flink["peak_rss_mb"], 1),
        "flink_jvm_peak_rss_mb": None if flink is None else round(flink["children_peak_rss_mb"], 1),
        "flink_outputs_equal": flink_equal,
    }
    print(f"{'run':<14}{'seconds':>10}{'peak RSS MB':>14}")
    print(f"{'ours':<14}{ours['seconds']:>10.2f}{ours['peak_rss_mb']:>14.0f}")
    if base is not None:
        print(f"{'duckdb asof':<14}{base['seconds']:>10.2f}{base['peak_rss_mb']:>14.0f}")
        print(f"ratio {result['ratio_vs_duckdb_asof']}  outputs equal: {equal}")
    if flink is not None:
        print(f"{'flink engine':<14}{flink['seconds']:>10.2f}{flink['children_peak_rss_mb']:>14.0f}  (JVM; job "
              f"{flink['job_seconds']:.2f} s)  outputs equal to ours: {flink_equal}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    name = "pit_export.json" if mode != "scale" else "pit_export_scale.json"
    if args.written != "none":
        name = name.replace(".json", f"_written_{args.written}.json")
    (out_dir / name).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
