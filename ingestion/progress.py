"""How far a running job has written: small JSON files the sink functions leave behind.

PyFlink offers a Python job no metrics it can read while the job runs, and the sink functions
may run in other processes (Python worker processes, TaskManagers). So each sink function
instance writes ``<dir>/<table>.<group>.<pid>.<id>.json`` when it opens, after each batch it writes
and when it closes (marked ``closed``): the rows it wrote and the newest version
time it saw. The driver sums them (:func:`read_progress`). Files are replaced atomically (write,
then rename), so a reader never sees half a file.

The ``closed`` mark matters beyond progress: Flink may report a bounded job FINISHED before its
Python workers have run their functions' ``close()`` (in a local MiniCluster the workers are
threads of the driver, stopped asynchronously), and ``close()`` is where a sink commits its last
offline batch. :func:`wait_closed` lets the driver wait for that.

A failover (a TaskManager killed, a store down past the sink's retries) restarts every task of
the job from its last checkpoint with new sink instances; the old ones may never close (their
process died) or close late. Each file records when its instance opened and the job's
parallelism P, and only the P newest instances of a (table, group) are current: older ones are
left out of what is open and of the watermarks, while the rows they wrote still count. The driver creates the
directory and removes it; a writer whose directory is gone (a worker outliving its driver, a
TaskManager on another machine) reports nothing. Nothing here imports PyFlink.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass
class ProgressWriter:
    """One sink function instance's counters, flushed to its own file."""

    directory: str
    table: str
    group: str
    rows: int = 0
    newest_ms: int | None = None
    watermark_ms: int | None = None  # every version at or before it has been written
    error: str | None = None  # the last write error while it is being retried; None once one succeeds
    closed: bool = False
    parallelism: int | None = None  # of the job: the instances of one attempt (None: unknown)
    opened_ms: int = field(init=False)
    _path: Path = field(init=False)

    def __post_init__(self) -> None:
        name = f"{self.table}.{self.group}.{os.getpid()}.{uuid.uuid4().hex[:8]}.json"
        self._path = Path(self.directory) / name
        self.opened_ms = time.time_ns() // 1_000_000
        self.flush()  # the driver sees this instance from its start, so it can wait for its close

    def add(self, rows: int, newest_ms: int | None, watermark_ms: int | None = None) -> None:
        """Count ``rows`` written; ``watermark_ms``: the operator's watermark when it emitted the
        newest of them. Reported at once: a sink is called once per Arrow batch (thousands of
        rows, a store write of tens of ms), so one small file write per call costs little, and a
        job that writes a burst and then waits must not keep its last batch unreported."""
        self.rows += rows
        if newest_ms is not None and (self.newest_ms is None or newest_ms > self.newest_ms):
            self.newest_ms = newest_ms
        if watermark_ms is not None and (self.watermark_ms is None or watermark_ms > self.watermark_ms):
            self.watermark_ms = watermark_ms
        self.flush()

    def flush(self) -> None:
        record = {
            "table": self.table,
            "group": self.group,
            "rows": self.rows,
            "newest_ms": self.newest_ms,
            "watermark_ms": self.watermark_ms,
            "error": self.error,
            "closed": self.closed,
            "opened_ms": self.opened_ms,
            "parallelism": self.parallelism,
        }
        temporary = self._path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(record))
            temporary.replace(self._path)
        except FileNotFoundError:
            pass  # the driver is gone or on another machine: nobody to report to

    def report_error(self, error: str | None) -> None:
        """The write error being retried now (None: writes succeed again), reported at once."""
        self.error = error
        self.flush()

    def close(self) -> None:
        self.closed = True
        self.flush()


@dataclass(frozen=True)
class Progress:
    """The sum over a job's sink functions: rows written per (table, group), newest version time."""

    rows: dict[tuple[str, str], int]
    newest_ms: dict[tuple[str, str], int]
    open_sinks: tuple[str, ...] = ()  # "table.group" of each instance that has not closed yet
    #: per (table, group): the oldest watermark of its open instances (a closed one is complete:
    #: ``CLOSED``), None while one has reported none; with ``instances`` per group.
    watermark_ms: dict[tuple[str, str], int | None] = field(default_factory=dict)
    instances: dict[tuple[str, str], int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)  # samples written per sample table
    errors: dict[str, str] = field(default_factory=dict)  # "table.group" -> the write error being retried

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    def position_ms(self, groups: int) -> int | None:
        """How far in event time every group has written: the oldest of the groups' newest version
        times, once all ``groups`` have written (a windowed group writes a version at each event
        time and at expiries up to its watermark, so its newest version is its event-time position)."""
        if len(self.newest_ms) < groups:
            return None
        return min(self.newest_ms.values())


#: The group a sample table's sink reports under (its rows are samples, not versions).
SAMPLES_GROUP = "__samples"
#: The watermark of a sink instance that has closed: it has written everything it will.
CLOSED = 1 << 62


def read_progress(directory: str | os.PathLike[str]) -> Progress:
    rows: dict[tuple[str, str], int] = {}
    newest: dict[tuple[str, str], int] = {}
    watermarks: dict[tuple[str, str], int | None] = {}
    instances: dict[tuple[str, str], int] = {}
    samples: dict[str, int] = {}
    errors: dict[str, str] = {}
    open_sinks: list[str] = []
    records = _records(Path(directory))
    for record in records:
        key = (str(record["table"]), str(record["group"]))
        if key[1] == SAMPLES_GROUP:
            samples[key[0]] = samples.get(key[0], 0) + int(record["rows"])
        else:
            rows[key] = rows.get(key, 0) + int(record["rows"])
        if record.get("newest_ms") is not None and key[1] != SAMPLES_GROUP:
            newest[key] = max(newest.get(key, int(record["newest_ms"])), int(record["newest_ms"]))
    for record in _current(records):
        key = (str(record["table"]), str(record["group"]))
        closed = bool(record.get("closed", False))
        if record.get("error") and not closed:
            errors[".".join(key)] = str(record["error"])
        if not closed:
            open_sinks.append(".".join(key))
        mark = CLOSED if closed else record.get("watermark_ms")
        before = watermarks.get(key, CLOSED) if key in instances else CLOSED
        watermarks[key] = None if mark is None or before is None else min(int(mark), before)
        instances[key] = instances.get(key, 0) + 1
    return Progress(rows, newest, tuple(sorted(open_sinks)), watermarks, instances, samples, errors)


def _records(root: Path) -> list[dict[str, Any]]:
    records = []
    if root.is_dir():
        for path in root.glob("*.json"):
            try:
                records.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # replaced while we read it: the next poll gets it
    return records


def _current(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The instances of the job's current attempt: per (table, group), the ``parallelism`` most
    recently opened (all of them when the parallelism is unknown)."""
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in records:
        by_key.setdefault((str(record["table"]), str(record["group"])), []).append(record)
    current = []
    for group in by_key.values():
        parallelism = group[0].get("parallelism")
        if isinstance(parallelism, int) and len(group) > parallelism:
            group = sorted(group, key=lambda r: int(r.get("opened_ms") or 0), reverse=True)[:parallelism]
        current += group
    return current


def wait_closed(directory: str | os.PathLike[str], timeout_s: float, poll_s: float = 0.1) -> Progress:
    """The progress once every sink function that reported has closed (its writes committed), or
    after ``timeout_s`` with a warning naming those still open (a worker killed without closing)."""
    deadline = time.monotonic() + timeout_s
    while True:
        progress = read_progress(directory)
        if not progress.open_sinks:
            return progress
        if time.monotonic() >= deadline:
            logger.warning(
                "the job ended but %d sink function(s) did not close within %.0f s: %s",
                len(progress.open_sinks),
                timeout_s,
                ", ".join(progress.open_sinks),
            )
            return progress
        time.sleep(poll_s)


def remove(directory: str | os.PathLike[str]) -> None:
    """Remove a progress directory, even while a late writer renames a file into it."""
    for _ in range(20):
        shutil.rmtree(directory, ignore_errors=True)
        if not os.path.exists(directory):
            return
        time.sleep(0.05)
