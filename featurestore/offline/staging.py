"""Staged appends to the offline log: each batch made durable as a file at once, committed to the
Iceberg table together with the others, one commit per interval.

Why. The streaming sink hands over one Arrow batch (~10k versions) per call, from several window
groups and workers at once. An Iceberg commit per batch costs a data file, a manifest, a manifest
list and a metadata file, and concurrent commits to one table race for the catalog's pointer and
retry. :class:`StagedAppender` turns many batches into one commit.

How. :meth:`StagedAppender.add` writes the batch, checked and laid out like the log
(:meth:`OfflineTable.conform`), as one Parquet file in the staging directory, and returns only
once the file is durable: written under a hidden temporary name, fsync'ed (local disk) or
hsync'ed (HDFS, closed in the background: :mod:`featurestore.offline.staging_fs`), then renamed.
A background thread (every ``interval_s``), :meth:`flush`
and :meth:`close` read the staged files, append them to the table in ONE commit, and delete them
only after that commit succeeded. A new appender first commits whatever a crashed predecessor
left staged (``recover``); files older than ``orphan_after_s`` are adopted by any appender, so a
predecessor that never comes back does not strand its files.

Exactly once. Several appenders (threads, processes, machines when the directory is on HDFS) may
share one staging directory, which belongs to ONE table. Every staged file has a unique name
(``<writer>-<seq>.parquet``: a random 64-bit writer id per appender, then a counter) and a commit
records the names it carries in its snapshot summary (``featurestore.staged``, runs of seqs per
writer: ``3f..a1:0-41,43``). A commit is prepared against the table as loaded: files whose name is
already in the snapshot history are dropped (and deleted), the rest are appended; the SQL
catalog commits with compare-and-swap, so when another appender committed in between, the commit
fails, the table is reloaded and the check runs again. A file is therefore committed by exactly
one appender, and deleted only after a commit holding it (or an equal batch, below) succeeded:
an ``add`` that returned is never lost. A file that vanishes while a commit is prepared was
committed and deleted by another appender. Should history ever lose the record (snapshots
expired between a commit and the deletion of its files, which both happen within one call), the
file would be appended again: harmless, since readers dedupe by version key
(``OfflineTable.scan(dedupe=True)``, and the point-in-time engine picks the same value from
duplicates).

Batch ids. ``add(batch, batch_id=...)`` keeps :meth:`OfflineTable.append`'s idempotency: an id
already in the log (``featurestore.batch-id`` of a per-batch append, or ``featurestore.batch-ids``,
the JSON list a staged commit records) or already staged by this appender is skipped at ``add``,
and checked again at commit time, under the same compare-and-swap, against the history and the
other files of the commit.

Commit path. Reading the staged files back and appending them as one Arrow table (used here)
was measured against ``Transaction.add_files`` on the staged files (which fits the day partition
spec when each file holds one day: pyiceberg 0.8.1 infers a file's partition from its
``_version_time`` bounds). ``add_files`` commits several times faster (it reads footers instead
of rewriting rows), but every batch stays a small data file, as many files as per-batch appends
make, and every read of the log (the point-in-time export) pays for each; the append writes one
file per day partition per commit, and runs in the background thread, off the ``add`` path.

A staging directory is a local path or ``file://`` (durable as that disk: batches on a machine
that never comes back wait for it) or ``hdfs://`` (durable as HDFS and adopted from any machine;
an ``add`` costs an hsync, not a close). The default is ``<warehouse>/_staging/<namespace>/<table>``,
on the warehouse's file system, beside the tables and never inside a table's location (orphan-file
removal would delete staged files).
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import ServiceUnavailableError, StoreError
from featurestore.offline.log import BATCH_IDS_PROPERTY, OfflineLog, OfflineTable
from featurestore.offline.staging_fs import open_staging_dir

log = logging.getLogger(__name__)

STAGED_PROPERTY = "featurestore.staged"
_BATCH_ID_KEY = b"featurestore.batch-id"
_TABLE_KEY = b"featurestore.table"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9]{10})\.parquet$")
_CLOCK_SKEW_MS = 3_600_000  # a staged file's mtime vs the commit's timestamp, across machines
_TMP_MAX_AGE_S = 3_600.0  # a hidden temporary file this old belongs to a dead add(): removed
_MAX_COMMIT_ROWS = 2_000_000  # a recovery backlog is committed in commits of about this size

__all__ = ["STAGED_PROPERTY", "AppenderStats", "CommitResult", "StagedAppender", "default_staging_dir"]


@dataclass(frozen=True)
class CommitResult:
    """What a flush did: the table's snapshot after it, and the staged files it settled."""

    snapshot_id: int | None
    commits: int = 0
    files: int = 0  # staged files appended by this call
    rows: int = 0
    dropped: int = 0  # staged files already in the log (another appender, a known batch id): deleted


@dataclass(frozen=True)
class AppenderStats:
    """Counters since the appender started (a metric source for the sink)."""

    staged_files: int = 0
    staged_rows: int = 0
    pending_files: int = 0  # staged by this appender, not yet committed
    commits: int = 0
    committed_files: int = 0
    committed_rows: int = 0
    dropped_files: int = 0
    failed_commits: int = 0
    last_error: str | None = None


def default_staging_dir(table: OfflineTable) -> str:
    """``<warehouse>/_staging/<namespace>/<table>``: on the warehouse's file system."""
    config = table.log.config
    warehouse = config.warehouse.rstrip("/")
    if "://" not in warehouse:
        warehouse = str(Path(warehouse).resolve())
    return f"{warehouse}/_staging/{config.namespace}/{table.schema.name}"


# -- names of staged files, as recorded in snapshot summaries ----------------------------------------

Runs = dict[str, list[tuple[int, int]]]  # writer -> sorted, disjoint [lo, hi] runs of seqs


def _parse(name: str) -> tuple[str, int] | None:
    match = _NAME.match(name)
    return None if match is None else (match.group(1), int(match.group(2)))


def encode_names(names: list[str]) -> str:
    """``w1:0-4,7;w2:3``: the staged file names of a commit, as runs of seqs per writer."""
    by_writer: dict[str, list[int]] = {}
    for name in names:
        parsed = _parse(name)
        if parsed is None:
            raise ValueError(f"not a staged file name: {name}")
        by_writer.setdefault(parsed[0], []).append(parsed[1])
    parts = []
    for writer in sorted(by_writer):
        seqs = sorted(set(by_writer[writer]))
        runs = []
        for _, group in itertools.groupby(enumerate(seqs), key=lambda p: p[1] - p[0]):
            run = [s for _, s in group]
            runs.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        parts.append(f"{writer}:{','.join(runs)}")
    return ";".join(parts)


def decode_names(value: str) -> Runs:
    out: Runs = {}
    for part in filter(None, value.split(";")):
        writer, _, runs = part.partition(":")
        for run in runs.split(","):
            lo, _, hi = run.partition("-")
            out.setdefault(writer, []).append((int(lo), int(hi or lo)))
    return out


def _recorded(runs: Runs, name: str) -> bool:
    parsed = _parse(name)
    if parsed is None:
        return False
    writer, seq = parsed
    return any(lo <= seq <= hi for lo, hi in runs.get(writer, ()))


# -- the appender ----------------------------------------------------------------------------------


@dataclass
class _Pending:
    rows: int
    batch_id: str | None
    staged_ms: int


@dataclass
class _Staged:
    """A staged file read back for a commit."""

    data: pa.Table
    batch_id: str | None


class _ForeignFile(Exception):
    """A staged file of another table (a shared directory): never committed, never deleted here."""


@dataclass
class _Attempt:
    """What the last prepared commit holds (prepare runs again after a lost race)."""

    todo: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


class StagedAppender:
    """Append batches of versions to one offline-log table through a staging directory.

    ``add`` returns once the batch is durable (see the module docstring); commits happen every
    ``interval_s`` in a background thread (``background=False``: only on :meth:`flush`), and on
    :meth:`close`. Thread-safe: any number of threads may ``add`` at once. Not closing loses
    nothing: the files stay staged and the next appender on the directory commits them.
    """

    def __init__(
        self,
        table: OfflineTable,
        *,
        staging_dir: str | None = None,
        interval_s: float = 5.0,
        orphan_after_s: float = 60.0,
        recover: bool = True,
        background: bool = True,
    ) -> None:
        # Our own handle (own catalog connection and table object): refreshed and committed
        # here from the background thread, never shared with the caller's threads.
        self.table = OfflineLog(table.log.config).table(table.schema)
        self.staging_dir = staging_dir or default_staging_dir(table)
        self.interval_s = interval_s
        self.orphan_after_s = orphan_after_s
        self._staging = open_staging_dir(self.staging_dir)
        self._writer = uuid.uuid4().hex[:16]
        self._seq = itertools.count()
        self._lock = threading.Lock()  # _pending, _known_batch_ids, _stats
        self._commit_lock = threading.Lock()  # one commit at a time
        self._pending: dict[str, _Pending] = {}
        self._known_batch_ids = self.table.batch_ids()
        self._decoded: dict[int, Runs] = {}  # snapshot id -> staged names it recorded
        self._stats = AppenderStats()
        self._stop = threading.Event()
        self._closed = False
        self._foreign_warned: set[str] = set()
        if recover:
            try:
                self._commit(adopt_all=True)
            except BaseException:
                self._staging.close()
                raise
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._run, name=f"staged-appender-{self.table.identifier}", daemon=True
            )
            self._thread.start()

    # -- public ---------------------------------------------------------------------------------

    def add(self, versions: pa.Table, *, batch_id: str | None = None) -> str | None:
        """Stage a batch of versions durably; the staged file's name, or ``None`` when nothing was
        staged (no rows, or ``batch_id`` already in the log or staged here).

        Raises :class:`~featurestore.errors.ValidationError` for a bad batch (as ``append`` does)
        and :class:`~featurestore.errors.ServiceUnavailableError` when HDFS cannot take the file.
        """
        if self._closed:
            raise StoreError(f"the staged appender of {self.table.identifier} is closed")
        data = self.table.conform(versions)
        if data.num_rows == 0:
            return None
        with self._lock:
            pending_ids = {p.batch_id for p in self._pending.values()}
            if batch_id is not None and (batch_id in self._known_batch_ids or batch_id in pending_ids):
                return None
            name = f"{self._writer}-{next(self._seq):010d}.parquet"
        metadata = {_TABLE_KEY: self.table.identifier.encode()}
        if batch_id is not None:
            metadata[_BATCH_ID_KEY] = batch_id.encode()
        sink = pa.BufferOutputStream()
        pq.write_table(data.replace_schema_metadata(metadata), sink)
        self._staging.put(name, sink.getvalue().to_pybytes())
        with self._lock:
            self._pending[name] = _Pending(data.num_rows, batch_id, _now_ms())
            self._stats = replace(
                self._stats,
                staged_files=self._stats.staged_files + 1,
                staged_rows=self._stats.staged_rows + data.num_rows,
                pending_files=len(self._pending),
            )
        return name

    def flush(self) -> CommitResult:
        """Commit every batch this appender staged (in one commit, or a few for a large backlog);
        raises when that fails (the files stay staged)."""
        return self._commit(adopt_all=False)

    def close(self) -> None:
        """Stop the background thread and flush. Idempotent; ``add`` refuses afterwards."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        finally:
            self._staging.close()

    def pending(self) -> int:
        """Files this appender staged that are not committed yet."""
        with self._lock:
            return len(self._pending)

    def stats(self) -> AppenderStats:
        with self._lock:
            return self._stats

    def __enter__(self) -> StagedAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the committing side ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._commit(adopt_all=False, adopt_orphans=True)
            except Exception as exc:  # keep trying; the files are durable
                log.warning(
                    "offline log %s: commit of %d staged files failed, retrying in %.0f s: %s",
                    self.table.identifier,
                    self.pending(),
                    self.interval_s,
                    exc,
                )

    def _candidates(self, adopt_all: bool, adopt_orphans: bool) -> dict[str, int]:
        """Staged files to settle -> the time they were staged (ms)."""
        with self._lock:
            out = {name: p.staged_ms for name, p in self._pending.items()}
        if not (adopt_all or adopt_orphans):
            return out
        now = _now_ms()
        for entry in self._staging.visible():
            if entry.name in out or _parse(entry.name) is None:
                continue
            if adopt_all or now - entry.mtime_ms >= self.orphan_after_s * 1000:
                out[entry.name] = entry.mtime_ms
        for entry in self._staging.temporary():
            if now - entry.mtime_ms >= _TMP_MAX_AGE_S * 1000:  # an add() that died before returning
                self._staging.delete(entry.name)
        return out

    def _commit(self, *, adopt_all: bool, adopt_orphans: bool = False) -> CommitResult:
        with self._commit_lock:
            try:
                result = self._commit_locked(adopt_all, adopt_orphans)
            except Exception as exc:
                with self._lock:
                    self._stats = replace(
                        self._stats, failed_commits=self._stats.failed_commits + 1, last_error=repr(exc)
                    )
                raise
        return result

    def _commit_locked(self, adopt_all: bool, adopt_orphans: bool) -> CommitResult:
        candidates = self._candidates(adopt_all, adopt_orphans)
        total = CommitResult(self.table.current_snapshot_id())
        order = sorted(candidates, key=lambda n: (candidates[n], n))
        at = 0
        while at < len(order):
            # Read files, oldest first, up to about _MAX_COMMIT_ROWS rows for this commit.
            loaded: dict[str, _Staged | None] = {}
            rows = 0
            while at < len(order) and (not loaded or rows < _MAX_COMMIT_ROWS):
                name = order[at]
                at += 1
                try:
                    staged = loaded[name] = self._read(name)
                except _ForeignFile as exc:
                    if name not in self._foreign_warned:
                        self._foreign_warned.add(name)
                        log.error("offline log %s: %s; left where it is", self.table.identifier, exc)
                    continue
                rows += 0 if staged is None else staged.data.num_rows
            if loaded:
                since_ms = min(candidates[n] for n in loaded) - _CLOCK_SKEW_MS
                total = self._commit_chunk(loaded, since_ms, total)
        return total

    def _commit_chunk(self, loaded: dict[str, _Staged | None], since_ms: int, total: CommitResult) -> CommitResult:
        attempt = _Attempt()

        def prepare() -> tuple[pa.Table, dict[str, str]] | None:
            recorded = self._recorded(since_ms)
            known_ids = self.table.batch_ids()
            attempt.todo, attempt.dropped = [], []
            batch_ids: list[str] = []
            for name, staged in loaded.items():
                if staged is None or _recorded(recorded, name):  # committed by someone (and deleted)
                    attempt.dropped.append(name)
                elif staged.batch_id is not None and (staged.batch_id in known_ids or staged.batch_id in batch_ids):
                    attempt.dropped.append(name)  # an equal batch is in the log, or in this commit
                else:
                    attempt.todo.append(name)
                    if staged.batch_id is not None:
                        batch_ids.append(staged.batch_id)
            with self._lock:
                self._known_batch_ids = known_ids
            if not attempt.todo:
                return None
            tables = [loaded[n].data for n in attempt.todo]  # type: ignore[union-attr]
            data = pa.concat_tables(tables, promote_options="default")
            properties = {STAGED_PROPERTY: encode_names(attempt.todo)}
            if batch_ids:
                properties[BATCH_IDS_PROPERTY] = json.dumps(batch_ids)
            return data, properties

        self.table.refresh()
        rows = self.table.commit(prepare)
        committed = attempt.todo if rows is not None else []
        for name in (*committed, *attempt.dropped):
            try:
                self._staging.delete(name)
            except ServiceUnavailableError as exc:  # recorded in the log: a later pass deletes it
                log.warning(
                    "offline log %s: could not delete committed staged file %s: %s", self.table.identifier, name, exc
                )
        settled = set(committed) | set(attempt.dropped)
        with self._lock:
            for name in settled:
                self._pending.pop(name, None)
            for name in committed:
                batch_id = loaded[name].batch_id  # type: ignore[union-attr]
                if batch_id is not None:
                    self._known_batch_ids.add(batch_id)
            self._stats = replace(
                self._stats,
                pending_files=len(self._pending),
                commits=self._stats.commits + (1 if committed else 0),
                committed_files=self._stats.committed_files + len(committed),
                committed_rows=self._stats.committed_rows + (rows or 0),
                dropped_files=self._stats.dropped_files + len(attempt.dropped),
            )
        return CommitResult(
            self.table.current_snapshot_id(),
            commits=total.commits + (1 if committed else 0),
            files=total.files + len(committed),
            rows=total.rows + (rows or 0),
            dropped=total.dropped + len(attempt.dropped),
        )

    def _read(self, name: str) -> _Staged | None:
        raw = self._staging.read(name)
        if raw is None:
            return None
        try:
            data = pq.read_table(pa.BufferReader(raw))
        except (pa.ArrowInvalid, OSError) as exc:
            raise StoreError(
                f"staged file {self.staging_dir}/{name} is unreadable: {exc}",
                hint="a visible staged file is always complete: check the disk; move the file away to go on",
            ) from exc
        metadata = data.schema.metadata or {}
        table = metadata.get(_TABLE_KEY, b"").decode()
        if table != self.table.identifier:
            raise _ForeignFile(
                f"staged file {self.staging_dir}/{name} belongs to {table or 'an unknown table'}, "
                "not this one: give every table its own staging directory"
            )
        batch_id = metadata.get(_BATCH_ID_KEY)
        return _Staged(data.replace_schema_metadata(None), None if batch_id is None else batch_id.decode())

    def _recorded(self, since_ms: int) -> Runs:
        """Staged names recorded by the snapshots (as loaded) committed after ``since_ms``."""
        merged: Runs = {}
        for snapshot in self.table.snapshots():
            if snapshot.timestamp_ms < since_ms or snapshot.summary is None:
                continue
            runs = self._decoded.get(snapshot.snapshot_id)
            if runs is None:
                value = snapshot.summary.get(STAGED_PROPERTY)
                runs = self._decoded[snapshot.snapshot_id] = {} if value is None else decode_names(str(value))
            for writer, spans in runs.items():
                merged.setdefault(writer, []).extend(spans)
        return merged


def _now_ms() -> int:
    return int(time.time() * 1000)
