"""`featurestore backfill`: feature tables computed over a range of days of history, into the stores.

A backfill of ``[start, end)`` runs the live job's compiled plan on the replay of the sources'
history (:mod:`registry.replay_binding`), through the same sink as live ingestion
(:mod:`ingestion.job`). Two things make it a backfill rather than a replay of everything:

* **Warm-up.** A 30-day window at ``start`` needs the 30 days before it. The replay starts at
  ``start - warm-up``, where the warm-up is the longest window of the tables (the projections,
  ``last`` without a window, need no history: their value is the newest event's, which the
  warm-up still supplies if it falls inside it). Versions before ``start`` are computed, to fill
  the windows, but not written.
* **Write range.** Only versions with ``start <= version time < end`` are written. An expiry
  (an event leaving a window at ``t + W``) after ``end`` is left to whoever computes after
  ``end``: the live job, or the next backfill, which replays its own warm-up.

Rerunning a range is idempotent: the versioned store's puts at explicit timestamps overwrite the
same cells with the same values, the online cache only takes a version newer than the one it has,
and the offline log's readers drop duplicate versions (``OfflineTable.scan(dedupe=True)``, the
point-in-time engine). Hand-over to live ingestion: docs/backfill.md.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from featurestore.config import ProfileConfig
from featurestore.errors import ValidationError
from featurestore.time_semantics import from_millis, to_millis
from ingestion.job import History, WriteRange, submit, tables_with_binding
from ingestion.progress import Progress
from registry.compiler import group_name
from registry.models import Definitions

DAY_MS = 86_400_000


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill replays and writes."""

    tables: tuple[str, ...]
    start_ms: int  # first version time written (inclusive)
    end_ms: int  # last version time written (exclusive); the replay stops here too
    warmup_ms: int  # the longest window: the replay starts this much before start_ms
    groups: int  # window groups over all tables (progress needs every one to have written)

    @property
    def replay_from_ms(self) -> int:
        return self.start_ms - self.warmup_ms


@dataclass(frozen=True)
class BackfillProgress:
    """A snapshot for progress displays: versions written, the event-time position reached."""

    plan: BackfillPlan
    elapsed_s: float
    versions: int
    position_ms: int | None

    @property
    def fraction(self) -> float | None:
        if self.position_ms is None:
            return None
        span = self.plan.end_ms - self.plan.start_ms
        return min(1.0, max(0.0, (self.position_ms - self.plan.start_ms) / span))

    @property
    def eta_s(self) -> float | None:
        fraction = self.fraction
        if not fraction or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (1.0 - fraction) / fraction


@dataclass(frozen=True)
class BackfillResult:
    plan: BackfillPlan
    seconds: float
    versions: int
    versions_by_table: dict[str, int]
    samples_by_table: dict[str, int] = field(default_factory=dict)


def _day_ms(value: dt.date | dt.datetime | int, what: str) -> int:
    if isinstance(value, dt.datetime):
        return to_millis(value, what=what)
    if isinstance(value, dt.date):
        return to_millis(dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC), what=what)
    return to_millis(value, what=what)


def plan_backfill(
    definitions: Definitions,
    tables: Sequence[str] | None,
    start: dt.date | dt.datetime | int,
    end: dt.date | dt.datetime | int,
) -> BackfillPlan:
    """The backfill of ``tables`` (default: every table whose source has history) for ``[start, end)``:
    dates are UTC midnights, so ``--from 2026-10-01 --to 2026-10-02`` is one day."""
    start_ms, end_ms = _day_ms(start, "--from"), _day_ms(end, "--to")
    if end_ms <= start_ms:
        raise ValidationError(f"nothing to backfill: --to ({end}) is not after --from ({start})")
    names = tables_with_binding(definitions, "batch", tables)
    windows = [f.window_ms for name in names for f in definitions.feature_table(name).features if f.window_ms]
    groups = sum(
        len({group_name(f.window_ms) for f in definitions.feature_table(name).features}) for name in names
    )
    return BackfillPlan(tuple(names), start_ms, end_ms, max(windows, default=0), groups)


def run_backfill(
    config: ProfileConfig,
    definitions: Definitions,
    plan: BackfillPlan,
    *,
    partitions: int | None = None,
    on_progress: Callable[[BackfillProgress], None] | None = None,
    poll_s: float = 1.0,
    extra_options: dict[str, str] | None = None,
    samples: Sequence[str] = (),
    events_per_second: float | None = None,
    speed_up: float | None = None,
    pace_from: dt.date | dt.datetime | int | None = None,
) -> BackfillResult:
    """Run ``plan`` as one Flink job to its end, calling ``on_progress`` every ``poll_s`` seconds.
    ``samples``: sample tables to produce too, for the plan's days (``ingestion.samples``).
    Pacing the plan's days (not the warm-up before them), to play history back like a live stream
    or to catch up without starving other jobs: ``events_per_second`` per source, or ``speed_up``
    times faster than the events happened (event-time pacing: dense and sparse sources keep step once
    paced; each starts its clock when its own warm-up ends, docs/backfill.md). ``pace_from``: pace
    only the rows from this time on (default: the plan's start), so one job catches up at full speed
    and then plays the rest like a live stream."""
    paced_from_ms = plan.start_ms if pace_from is None else _day_ms(pace_from, "--pace-from")
    if pace_from is not None and events_per_second is None and speed_up is None:
        raise ValidationError("--pace-from needs a pace: --events-per-second or --speed-up")
    if not plan.start_ms <= paced_from_ms < plan.end_ms:
        raise ValidationError(
            f"--pace-from {from_millis(paced_from_ms).isoformat()} is outside the backfill's range "
            f"[{from_millis(plan.start_ms).isoformat()}, {from_millis(plan.end_ms).isoformat()})"
        )
    started = time.perf_counter()
    job = submit(
        config,
        definitions,
        plan.tables,
        history=History(
            plan.replay_from_ms, plan.end_ms, partitions, events_per_second, speed_up, paced_from_ms
        ),
        write_range=WriteRange(plan.start_ms, plan.end_ms),
        extra_options=extra_options,
        samples=list(samples),
    )

    def report(progress: Progress) -> BackfillProgress:
        elapsed = time.perf_counter() - started
        return BackfillProgress(plan, elapsed, progress.total_rows, progress.position_ms(plan.groups))

    def watch(progress: Progress) -> None:
        if on_progress is not None:
            on_progress(report(progress))

    final = job.wait_watching(watch, poll_s)  # the job has ended and its sinks have committed
    last = report(final)
    if on_progress is not None:
        on_progress(last)
    by_table: dict[str, int] = {}
    for (table, _), rows in final.rows.items():
        by_table[table] = by_table.get(table, 0) + rows
    return BackfillResult(plan, time.perf_counter() - started, last.versions, by_table, dict(final.samples))
