"""The synthetic CTR log: deterministic, out of order in known ways, and with signal."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc

from featurestore.datagen import CtrLogSpec, generate

SPEC = CtrLogSpec(days=4, users=300, items=200, impressions_per_day=5_000, seed=3)


def test_same_seed_same_logs_other_seed_other_logs() -> None:
    assert generate(SPEC).impressions.equals(generate(SPEC).impressions)
    other = generate(CtrLogSpec(days=4, users=300, items=200, impressions_per_day=5_000, seed=4))
    assert not other.impressions.equals(generate(SPEC).impressions)


def test_rows_are_in_arrival_order_and_out_of_event_time_order() -> None:
    logs = generate(SPEC)
    arrival = logs.impressions["arrival_ms"].to_numpy()
    ts = logs.impressions["ts"].to_numpy()
    assert (np.diff(arrival) >= 0).all()
    assert (arrival >= ts).all()
    assert (np.diff(ts) < 0).any(), "event times must be out of order in the log"


def test_clicks_follow_their_impressions() -> None:
    logs = generate(SPEC)
    imp = dict(zip(logs.impressions["impression_id"].to_pylist(), logs.impressions["ts"].to_pylist(), strict=True))
    for impression_id, ts in zip(logs.clicks["impression_id"].to_pylist(), logs.clicks["ts"].to_pylist(), strict=True):
        assert ts > imp[impression_id]
    ctr = logs.clicks.num_rows / logs.impressions.num_rows
    assert 0.01 < ctr < 0.2


def test_late_and_malformed_fractions_are_marked() -> None:
    logs = generate(SPEC)
    counts = dict(zip(*[c.to_pylist() for c in pc.value_counts(logs.impressions["defect"]).flatten()], strict=True))
    assert counts.get("late", 0) > 0 and counts.get("malformed", 0) > 0
    late = logs.impressions.filter(pc.equal(logs.impressions["defect"], "late"))
    lag = pc.subtract(late["arrival_ms"], late["ts"]).to_numpy()
    assert (lag > SPEC.allowed_lateness_ms).all()


def test_history_predicts_clicks() -> None:
    """Users' click rate in the first half correlates with their rate in the second half."""
    logs = generate(CtrLogSpec(days=6, users=200, items=200, impressions_per_day=20_000, seed=5))
    mid = int(np.median(logs.impressions["ts"].to_numpy()))
    clicked = set(logs.clicks["impression_id"].to_pylist())
    users = np.array([int(u[1:]) for u in logs.impressions["user_id"].to_pylist()])
    ts = logs.impressions["ts"].to_numpy()
    label = np.array([i in clicked for i in logs.impressions["impression_id"].to_pylist()])
    rates = []
    for half in (ts < mid, ts >= mid):
        shown = np.bincount(users[half], minlength=200)
        clicks = np.bincount(users[half], weights=label[half], minlength=200)
        rates.append(clicks / np.maximum(shown, 1))
    active = np.bincount(users, minlength=200) > 200
    assert np.corrcoef(rates[0][active], rates[1][active])[0, 1] > 0.3
