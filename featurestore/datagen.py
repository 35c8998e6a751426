"""Synthetic CTR logs: impressions and clicks, deterministic by seed.

Users and items have Zipf-skewed activity and popularity. Each user has a click propensity that
drifts slowly from day to day and each item a quality, so a user's and an item's click history
predict their next click: features computed from history carry signal, and features that peek at
the future carry more (which is what a leaky export does).

Clicks follow impressions after a log-normal delay (most within a minute, a tail beyond the
10-minute label window). Delivery is out of order: every event gets an ``arrival_ms`` after its
event time, a fraction arrives later than the allowed lateness (``defect == "late"``), and a
fraction is marked ``defect == "malformed"`` for writers to corrupt (bad bytes on Kafka, a schema
violation in files). Rows come out in arrival order, which is the order a log holds them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from featurestore.time_semantics import to_millis

DAY_MS = 86_400_000
DEVICES = np.array(["ios", "android", "web"])
PAGES = np.array(["home", "search", "detail"])
CATEGORIES = 24

IMPRESSION_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("ts", pa.int64()),
        ("position", pa.int32()),
        ("device", pa.string()),
        ("page", pa.string()),
        ("bid_price", pa.float64()),
        ("arrival_ms", pa.int64()),
        ("defect", pa.string()),
    ]
)
CLICK_SCHEMA = pa.schema(
    [
        ("impression_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("ts", pa.int64()),
        ("dwell_ms", pa.int64()),
        ("category", pa.string()),
        ("arrival_ms", pa.int64()),
        ("defect", pa.string()),
    ]
)


@dataclass(frozen=True)
class CtrLogSpec:
    """What to generate. Defaults make a small, quick log; scale ``impressions_per_day`` up."""

    start: dt.date = dt.date(2026, 10, 1)
    days: int = 30
    users: int = 5_000
    items: int = 2_000
    impressions_per_day: int = 20_000
    seed: int = 7
    user_zipf: float = 1.05
    item_zipf: float = 1.15
    base_logit: float = -2.6
    click_delay_median_s: float = 20.0
    click_delay_sigma: float = 1.6
    max_disorder_ms: int = 30_000
    allowed_lateness_ms: int = 300_000
    late_fraction: float = 0.002
    malformed_fraction: float = 0.001


@dataclass(frozen=True)
class CtrLogs:
    impressions: pa.Table
    clicks: pa.Table


def _zipf_weights(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    rng.shuffle(weights)  # popularity is not in id order
    normalised: np.ndarray[Any, Any] = weights / weights.sum()
    return normalised


def _deliver(
    rng: np.random.Generator, ts: np.ndarray[Any, Any], spec: CtrLogSpec
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Arrival times (out of order within ``max_disorder_ms``) and defect labels."""
    n = len(ts)
    arrival = ts + rng.integers(0, spec.max_disorder_ms + 1, n)
    draw = rng.random(n)
    late = draw < spec.late_fraction
    arrival[late] = ts[late] + spec.allowed_lateness_ms + rng.integers(1, 3 * spec.allowed_lateness_ms, late.sum())
    malformed = (draw >= spec.late_fraction) & (draw < spec.late_fraction + spec.malformed_fraction)
    defect = np.full(n, "", dtype=object)
    defect[late] = "late"
    defect[malformed] = "malformed"
    return arrival, defect


def generate(spec: CtrLogSpec = CtrLogSpec()) -> CtrLogs:
    """Impressions and clicks for ``spec.days`` days from ``spec.start`` (UTC), in arrival order."""
    rng = np.random.default_rng(spec.seed)
    start_ms = to_millis(dt.datetime.combine(spec.start, dt.time(), tzinfo=dt.UTC))
    user_weights = _zipf_weights(spec.users, spec.user_zipf, rng)
    item_weights = _zipf_weights(spec.items, spec.item_zipf, rng)
    propensity = rng.normal(0.0, 0.8, spec.users)
    quality = rng.normal(0.0, 0.6, spec.items)
    drift = rng.normal(0.0, 0.15, (spec.days, spec.users)).cumsum(axis=0)

    n = spec.impressions_per_day * spec.days
    day = np.repeat(np.arange(spec.days), spec.impressions_per_day)
    # a diurnal shape: more traffic in the evening (UTC), none of it exactly periodic
    hour_weights = 1.0 + 0.6 * np.sin((np.arange(24) - 14) / 24 * 2 * np.pi)
    hours = rng.choice(24, n, p=hour_weights / hour_weights.sum())
    ts = start_ms + day * DAY_MS + hours * 3_600_000 + rng.integers(0, 3_600_000, n)
    users = rng.choice(spec.users, n, p=user_weights)
    items = rng.choice(spec.items, n, p=item_weights)
    position = rng.integers(0, 10, n)
    device = rng.integers(0, len(DEVICES), n)
    logit = (
        spec.base_logit
        + propensity[users]
        + drift[day, users]
        + quality[items]
        - 0.12 * position
        + np.array([0.1, 0.0, -0.2])[device]
    )
    clicked = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    impression_ids = np.char.add("imp-", np.arange(n).astype(str)).astype(object)
    user_ids = np.char.add("u", np.arange(spec.users).astype(str)).astype(object)
    item_ids = np.char.add("i", np.arange(spec.items).astype(str)).astype(object)
    category = np.char.add("c", (np.arange(spec.items) % CATEGORIES).astype(str)).astype(object)
    page = PAGES[rng.integers(0, len(PAGES), n)].astype(object)
    page[rng.random(n) < 0.05] = None
    bid = np.round(rng.gamma(2.0, 0.5, n), 3)
    imp_arrival, imp_defect = _deliver(rng, ts, spec)

    click_idx = np.flatnonzero(clicked)
    delay_ms = (rng.lognormal(np.log(spec.click_delay_median_s), spec.click_delay_sigma, len(click_idx)) * 1000).astype(
        np.int64
    ) + 1
    click_ts = ts[click_idx] + delay_ms
    click_arrival, click_defect = _deliver(rng, click_ts, spec)
    dwell = rng.lognormal(np.log(8_000), 0.9, len(click_idx)).astype(np.int64)

    impressions = pa.table(
        {
            "impression_id": impression_ids,
            "user_id": user_ids[users],
            "item_id": item_ids[items],
            "ts": ts.astype(np.int64),
            "position": position.astype(np.int32),
            "device": DEVICES[device].astype(object),
            "page": page,
            "bid_price": bid,
            "arrival_ms": imp_arrival.astype(np.int64),
            "defect": imp_defect,
        },
        schema=IMPRESSION_SCHEMA,
    )
    clicks = pa.table(
        {
            "impression_id": impression_ids[click_idx],
            "user_id": user_ids[users[click_idx]],
            "item_id": item_ids[items[click_idx]],
            "ts": click_ts.astype(np.int64),
            "dwell_ms": dwell,
            "category": category[items[click_idx]],
            "arrival_ms": click_arrival.astype(np.int64),
            "defect": click_defect,
        },
        schema=CLICK_SCHEMA,
    )
    return CtrLogs(
        impressions=impressions.take(np.argsort(imp_arrival, kind="stable")),
        clicks=clicks.take(np.argsort(click_arrival, kind="stable")),
    )
