"""The DuckDB reference of window semantics against a brute-force loop written from the README."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.time_semantics import pick_version
from registry.models import BatchBinding, Entity, Feature, FeatureTable, JoinKey, SampleTable, Source
from registry.reference import feature_versions, samples
from registry.validate import build

EVENT_SCHEMA = {
    "type": "record",
    "name": "click",
    "fields": [
        {"name": "user_id", "type": "long"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "dwell", "type": "long"},
    ],
}
W = 60_000
BATCH = BatchBinding(path="events/x/dt={date}/*.avro")
FEATURES = (
    Feature(name="clicks", agg="count", window="1m"),
    Feature(name="dwell_sum", agg="sum", column="dwell", window="1m"),
    Feature(name="dwell_avg", agg="avg", column="dwell", window="1m"),
    Feature(name="dwell_max", agg="max", column="dwell", window="1m"),
    Feature(name="dwell_last", agg="last", column="dwell", window="1m"),
    Feature(name="dwell_distinct", agg="approx_count_distinct", column="dwell", window="1m"),
    Feature(name="last_dwell", agg="last", column="dwell"),
)


def definitions() -> Any:
    return build(
        [
            Entity(name="user", join_keys=(JoinKey(name="user_id", dtype="int64"),)),
            Source(name="clicks", avro_schema=EVENT_SCHEMA, event_time="ts", batch=BATCH),
            FeatureTable(name="user_clicks", entity="user", source="clicks", features=FEATURES),
        ]
    )


def expected(events: list[tuple[int, int, int]], feature: Feature, key: int, t: int) -> object:
    """Brute force: the value at ``t`` from the README's rules; events are (user, ts, dwell) in source order."""
    mine = [(ts, seq, dwell) for seq, (user, ts, dwell) in enumerate(events) if user == key]
    if not any(ts <= t for ts, _, _ in mine):
        return None  # no history yet: no version, whatever the aggregation
    if feature.window is None:
        chosen = pick_version(mine, t, None)
        return None if chosen is None else chosen[2]
    inside = [(ts, seq, dwell) for ts, seq, dwell in mine if t - W < ts <= t]
    values = [d for _, _, d in inside]
    if feature.agg == "count":
        return len(inside)
    if feature.agg == "sum":
        return sum(values)
    if feature.agg == "approx_count_distinct":
        return len(set(values))
    if not inside:
        return None
    if feature.agg == "avg":
        return sum(values) / len(values)
    if feature.agg == "max":
        return max(values)
    return max(inside)[2]  # last: newest by (ts, seq)


def value_at(groups: Any, feature: str, key: int, t: int) -> object:
    for group in groups:
        if feature in group.features:
            rows = [r for r in group.versions.to_pylist() if r["user_id"] == key]
            chosen = pick_version([(r["version_ms"], r["seq"], r[feature]) for r in rows], t, None)
            return None if chosen is None else chosen[2]
    raise AssertionError(feature)


@settings(max_examples=40, deadline=None)
@given(
    events=st.lists(
        st.tuples(st.integers(1, 3), st.integers(0, 24).map(lambda x: x * 10_000), st.integers(0, 5)),
        min_size=1,
        max_size=25,
    ),
    probes=st.lists(st.tuples(st.integers(1, 4), st.integers(-10, 400_000)), min_size=1, max_size=15),
)
def test_reference_versions_give_the_documented_value_at_any_time(
    events: list[tuple[int, int, int]], probes: list[tuple[int, int]]
) -> None:
    table = pa.table({"user_id": [e[0] for e in events], "ts": [e[1] for e in events], "dwell": [e[2] for e in events]})
    groups = feature_versions(definitions(), "user_clicks", table, until_ms=10**9)
    # probe event times, expiry times and their neighbours, plus random times
    edges = [(u, t + d) for u, t, _ in events for d in (-1, 0, 1, W - 1, W, W + 1)]
    for key, t in [*probes, *edges]:
        for feature in FEATURES:
            got = value_at(groups, feature.name, key, t)
            want = expected(events, feature, key, t)
            if isinstance(want, float):
                assert got is not None and abs(float(got) - want) < 1e-9, (feature.name, key, t, got, want)
            else:
                assert got == want, (feature.name, key, t, got, want)


def test_equal_timestamps_are_all_inside_and_the_later_in_source_order_is_last() -> None:
    table = pa.table({"user_id": [1, 1, 1], "ts": [10, 10, 10], "dwell": [5, 7, 6]})
    groups = feature_versions(definitions(), "user_clicks", table, until_ms=10**9)
    assert value_at(groups, "clicks", 1, 10) == 3
    assert value_at(groups, "dwell_last", 1, 10) == 6
    assert value_at(groups, "last_dwell", 1, 10) == 6
    # the window's start is open: at 110 the events at 10 have left it
    assert value_at(groups, "clicks", 1, 10 + W - 1) == 3
    assert value_at(groups, "clicks", 1, 10 + W) == 0
    assert value_at(groups, "dwell_avg", 1, 10 + W) is None
    assert value_at(groups, "last_dwell", 1, 10 + W) == 6  # a projection does not expire by window


def test_label_join_within_the_window_inclusive() -> None:
    imp_schema = {
        "type": "record",
        "name": "imp",
        "fields": [
            {"name": "impression_id", "type": "string"},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        ],
    }
    defs = build(
        [
            Source(name="impressions", avro_schema=imp_schema, event_time="ts", batch=BATCH),
            Source(name="clicks", avro_schema=imp_schema, event_time="ts", batch=BATCH),
            SampleTable(
                name="ctr", base_source="impressions", label_source="clicks", join_key="impression_id", window="10m"
            ),
        ]
    )
    imps = pa.table({"impression_id": ["a", "b", "c", "d"], "ts": [0, 0, 0, 0]})
    clicks = pa.table({"impression_id": ["a", "b", "c"], "ts": [600_000, 600_001, -1]})
    out = samples(defs, "ctr", imps, clicks)
    assert dict(zip(out["impression_id"].to_pylist(), out["label"].to_pylist(), strict=True)) == {
        "a": 1,
        "b": 0,
        "c": 0,
        "d": 0,
    }


def test_expiries_after_the_newest_event_have_not_happened_yet() -> None:
    table = pa.table({"user_id": [1, 1], "ts": [10, 20], "dwell": [5, 7]})
    groups = feature_versions(definitions(), "user_clicks", table)
    newest = max(max(g.versions["version_ms"].to_pylist()) for g in groups)
    assert newest == 20
    assert value_at(groups, "clicks", 1, 10 + W) == 2  # the expiry at 10 + W lies beyond what the input knows
