"""How far a running job has written: small JSON files the sink functions leave behind.

PyFlink offers a Python job no metrics it can read while the job runs, and the sink functions
may run in other processes (Python worker processes, TaskManagers). So each sink function
instance writes, at most once a second and when it closes, ``<dir>/<table>.<group>.<pid>.<id>.json``
with the rows it wrote and the newest version time it saw; the driver sums them
(:func:`read_progress`). Files are replaced atomically (write, then rename), so a reader never sees
half a file. Nothing here imports PyFlink.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

WRITE_EVERY_S = 1.0


@dataclass
class ProgressWriter:
    """One sink function instance's counters, flushed to its own file."""

    directory: str
    table: str
    group: str
    rows: int = 0
    newest_ms: int | None = None
    _path: Path = field(init=False)
    _last_write: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        Path(self.directory).mkdir(parents=True, exist_ok=True)
        name = f"{self.table}.{self.group}.{os.getpid()}.{uuid.uuid4().hex[:8]}.json"
        self._path = Path(self.directory) / name

    def add(self, rows: int, newest_ms: int | None) -> None:
        self.rows += rows
        if newest_ms is not None and (self.newest_ms is None or newest_ms > self.newest_ms):
            self.newest_ms = newest_ms
        if time.monotonic() - self._last_write >= WRITE_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._last_write = time.monotonic()
        record = {"table": self.table, "group": self.group, "rows": self.rows, "newest_ms": self.newest_ms}
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text(json.dumps(record))
        temporary.replace(self._path)


@dataclass(frozen=True)
class Progress:
    """The sum over a job's sink functions: rows written per (table, group), newest version time."""

    rows: dict[tuple[str, str], int]
    newest_ms: dict[tuple[str, str], int]

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


def read_progress(directory: str | os.PathLike[str]) -> Progress:
    rows: dict[tuple[str, str], int] = {}
    newest: dict[tuple[str, str], int] = {}
    root = Path(directory)
    if root.is_dir():
        for path in root.glob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # replaced while we read it: the next poll gets it
            key = (str(record["table"]), str(record["group"]))
            rows[key] = rows.get(key, 0) + int(record["rows"])
            if record.get("newest_ms") is not None:
                newest[key] = max(newest.get(key, int(record["newest_ms"])), int(record["newest_ms"]))
    return Progress(rows, newest)
