"""Throughput over time: what a job has written at each second while it runs, for the report's
plots (bench/report.py draws every ``<measure>_timeline`` it finds: ``[[elapsed_s, rows], ...]``).

    progress, points = wait_recording(submit(config, defs, tables, bounded=True))
    out["ingest_timeline"] = points
"""

from __future__ import annotations

import time

from ingestion.job import IngestJob
from ingestion.progress import Progress


def wait_recording(job: IngestJob, every_s: float = 1.0) -> tuple[Progress, list[list[float]]]:
    """Wait for a bounded ``job`` like ``job.wait()``, sampling the rows its sinks have written
    every ``every_s`` seconds (time counted from this call); the final progress and the samples."""
    started = time.perf_counter()
    points: list[list[float]] = [[0.0, 0]]

    def record(progress: Progress) -> None:
        points.append([round(time.perf_counter() - started, 2), progress.total_rows])

    final = job.wait_watching(record, every_s)
    record(final)
    return final, points
