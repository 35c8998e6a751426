"""A backfill's plan: the range it writes, the warm-up it replays, the groups it waits for."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from backfill.run import BackfillPlan, BackfillProgress, plan_backfill
from featurestore.errors import FeatureStoreError
from registry.repo import load_repo

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ctr"
DAY_MS = 86_400_000


def test_the_warm_up_is_the_longest_window_and_dates_are_utc_midnights() -> None:
    definitions = load_repo(EXAMPLE)
    plan = plan_backfill(definitions, ["user_click_features"], dt.date(2026, 10, 2), dt.date(2026, 10, 3))
    midnight = int(dt.datetime(2026, 10, 2, tzinfo=dt.UTC).timestamp() * 1000)
    assert (plan.start_ms, plan.end_ms) == (midnight, midnight + DAY_MS)
    assert plan.warmup_ms == 30 * DAY_MS and plan.replay_from_ms == midnight - 30 * DAY_MS
    assert plan.groups == 5  # 10m, 1d, 7d, 30d and the projections


def test_every_table_with_history_by_default() -> None:
    definitions = load_repo(EXAMPLE)
    plan = plan_backfill(definitions, None, dt.date(2026, 10, 1), dt.date(2026, 10, 2))
    assert set(plan.tables) == {t.name for t in definitions.feature_tables}


@pytest.mark.parametrize(
    ("tables", "start", "end", "message"),
    [
        (["user_click_features"], dt.date(2026, 10, 2), dt.date(2026, 10, 2), "nothing to backfill"),
        (["user_click_features"], dt.date(2026, 10, 3), dt.date(2026, 10, 2), "nothing to backfill"),
        (["no_such_table"], dt.date(2026, 10, 1), dt.date(2026, 10, 2), "no_such_table"),
    ],
)
def test_bad_ranges_and_tables_are_refused(tables: list[str], start: dt.date, end: dt.date, message: str) -> None:
    with pytest.raises(FeatureStoreError, match=message):
        plan_backfill(load_repo(EXAMPLE), tables, start, end)


def test_progress_fraction_and_eta() -> None:
    plan = BackfillPlan(("t",), 0, 100, 10, 1)
    half = BackfillProgress(plan, elapsed_s=20.0, versions=5, position_ms=50)
    assert half.fraction == 0.5 and half.eta_s == 20.0
    warming = BackfillProgress(plan, elapsed_s=3.0, versions=0, position_ms=None)
    assert warming.fraction is None and warming.eta_s is None


@pytest.mark.parametrize(
    ("pace", "pace_from", "message"),
    [
        ({}, dt.date(2026, 10, 3), "needs a pace"),  # a pace start with no pace does nothing: refused
        ({"speed_up": 10.0}, dt.date(2026, 10, 1), "outside the backfill's range"),
        ({"speed_up": 10.0}, dt.date(2026, 10, 4), "outside the backfill's range"),  # the end is exclusive
    ],
)
def test_a_pace_start_outside_the_range_or_without_a_pace_is_refused_before_submitting(
    pace: dict[str, float], pace_from: dt.date, message: str
) -> None:
    from backfill.run import run_backfill
    from featurestore.config import load_config

    definitions = load_repo(EXAMPLE)
    plan = plan_backfill(definitions, ["user_click_features"], dt.date(2026, 10, 2), dt.date(2026, 10, 4))
    with pytest.raises(FeatureStoreError, match=message):
        run_backfill(load_config(EXAMPLE, profile="local"), definitions, plan, pace_from=pace_from, **pace)  # type: ignore[arg-type]
