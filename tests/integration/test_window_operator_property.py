"""Property test: the compiled plan on Flink equals the reference for streams hypothesis makes up.

test_compiler_flink.py runs seeded random streams; here hypothesis draws the streams (and shrinks a
failing one to a small counterexample): keys with bursts of equal timestamps, gaps that hit window
edges exactly, repeated values (the min/max operator rescans when an extreme leaves, the distinct
count drops a value when its last copy leaves), nulls, negative and fractional numbers. Each
example is one Flink job over the history replay of the drawn events, every aggregation and window
of test_compiler_flink's tables, compared with `registry.reference` at every version time +-1 ms.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingestion.runner import run_tables
from tests.integration.test_compiler_flink import BASE, DAY, GAPS, PARTITIONS, compare, definitions, land

pytestmark = pytest.mark.integration

_counter = itertools.count()
HOUR = 3_600_000


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for k in range(draw(st.integers(1, 4))):
        # land() stamps partition p's files at BASE + p hours; the replay takes no event more than
        # its lateness (1 h) before its file's hour, so the stream starts after the last file's hour
        t = BASE + 3 * HOUR + draw(st.integers(0, DAY))
        for _ in range(draw(st.integers(1, 30))):
            t += draw(st.sampled_from(GAPS) | st.integers(0, 2 * DAY))
            events.append(
                {
                    "user_id": f"u{k}",
                    "ts": t,
                    "v": draw(st.sampled_from([-3, 0, 1, 20, 21, 25])),  # repeats, ties; >= 20 passes `filtered`
                    "x": draw(st.none() | st.sampled_from([-1.5, -0.25, 0.0, 0.1, 2.75, 1e6])),
                    "item": draw(st.none() | st.sampled_from(["a", "b", "it's"])),
                    "partition": k % PARTITIONS,
                }
            )
    return events  # per key in time order: the replay keeps each partition in (time, file, row) order


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=streams())
def test_flink_equals_the_reference_on_drawn_streams(
    events: list[dict[str, Any]], tmp_path: Path, services: object
) -> None:
    work = tmp_path / f"example-{next(_counter)}"
    defs = definitions("unused.topic")
    landed = land(work / "history", events)
    run = run_tables(
        defs, ["all_aggs", "filtered"], "batch", history_root=str(work / "history"), work_dir=work / "out"
    )
    compare(defs, run.versions, landed, None)
