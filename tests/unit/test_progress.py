"""Progress files: summed over sink instances; after a failover the instances of the previous
attempt (which may never close) no longer hold back the watermark nor count as open, while the
rows they wrote still count."""

from __future__ import annotations

import time
from pathlib import Path

from ingestion.progress import CLOSED, ProgressWriter, read_progress


def test_instances_are_summed_and_the_oldest_watermark_holds(tmp_path: Path) -> None:
    a = ProgressWriter(str(tmp_path), "t", "g")
    b = ProgressWriter(str(tmp_path), "t", "g")
    a.add(10, newest_ms=500, watermark_ms=400)
    progress = read_progress(tmp_path)
    assert progress.rows[("t", "g")] == 10 and progress.newest_ms[("t", "g")] == 500
    assert progress.watermark_ms[("t", "g")] is None  # b has reported no watermark yet
    b.add(5, newest_ms=300, watermark_ms=200)
    assert read_progress(tmp_path).watermark_ms[("t", "g")] == 200
    b.close()
    progress = read_progress(tmp_path)
    assert progress.watermark_ms[("t", "g")] == 400 and progress.open_sinks == ("t.g",)
    a.close()
    assert read_progress(tmp_path).watermark_ms[("t", "g")] == CLOSED


def test_after_a_failover_only_the_newest_instances_count_for_watermarks_and_open_sinks(tmp_path: Path) -> None:
    first = [ProgressWriter(str(tmp_path), "t", "g", parallelism=2) for _ in range(2)]
    first[0].add(3, newest_ms=100, watermark_ms=50)
    first[1].add(4, newest_ms=120, watermark_ms=60)
    assert read_progress(tmp_path).watermark_ms[("t", "g")] == 50
    time.sleep(0.01)
    # the job restarted from its checkpoint: two new instances; the old ones died without closing
    second = [ProgressWriter(str(tmp_path), "t", "g", parallelism=2) for _ in range(2)]
    progress = read_progress(tmp_path)
    assert progress.watermark_ms[("t", "g")] is None  # the new ones have reported none yet
    assert progress.instances[("t", "g")] == 2 and progress.open_sinks == ("t.g", "t.g")
    second[0].add(5, newest_ms=300, watermark_ms=250)
    second[1].add(6, newest_ms=320, watermark_ms=260)
    progress = read_progress(tmp_path)
    assert progress.watermark_ms[("t", "g")] == 250  # not held back at 50 by the dead instance
    assert progress.rows[("t", "g")] == 18  # what the old ones wrote was written
    for writer in second:
        writer.close()
    assert read_progress(tmp_path).open_sinks == ()  # the old ones never closed: they do not count


def test_without_a_parallelism_every_instance_counts(tmp_path: Path) -> None:
    old = ProgressWriter(str(tmp_path), "t", "g")
    old.add(1, newest_ms=10, watermark_ms=5)
    new = ProgressWriter(str(tmp_path), "t", "g")
    new.add(1, newest_ms=20, watermark_ms=15)
    assert read_progress(tmp_path).watermark_ms[("t", "g")] == 5
