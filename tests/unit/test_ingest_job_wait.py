"""IngestJob.wait_watching: progress while a job runs, its end's progress or its failure."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from featurestore.errors import TerminalError
from ingestion.job import IngestJob
from ingestion.progress import Progress


class _Result:
    """Flink's TableResult as far as wait() uses it: ends when told to, or fails."""

    def __init__(self, error: str | None = None) -> None:
        self.end = threading.Event()
        self.error = error

    def wait(self) -> None:
        self.end.wait(10)
        if self.error:
            raise RuntimeError(self.error)


def test_progress_is_passed_on_while_the_job_runs_and_the_final_one_returned(tmp_path: Path) -> None:
    result = _Result()
    seen: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if len(seen) == 3:
            result.end.set()

    final = IngestJob(plans=[], result=result, progress_dir=str(tmp_path)).wait_watching(on_progress, poll_s=0.01)
    assert len(seen) >= 3 and final.total_rows == 0


def test_a_failed_job_raises_its_cause_in_the_callers_thread(tmp_path: Path) -> None:
    result = _Result("featurestore.errors.StoreError: HBase is gone")
    result.end.set()
    with pytest.raises(TerminalError, match="HBase is gone"):
        IngestJob(plans=[], result=result, progress_dir=str(tmp_path)).wait_watching(lambda _: None, poll_s=0.01)
