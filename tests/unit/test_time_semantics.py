"""The time rule at its edges: equal timestamps, TTL boundary, strict reads, naive times."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurestore.errors import TimeSemanticsError
from featurestore.time_semantics import (
    epoch_column,
    format_duration,
    from_millis,
    is_visible,
    parse_duration_ms,
    pick_version,
    to_millis,
)

UTC = dt.UTC


def test_to_millis_accepts_aware_datetimes_iso_and_millis() -> None:
    moment = dt.datetime(2026, 11, 1, 3, 0, 0, 123000, tzinfo=UTC)
    ms = 1_793_502_000_123
    assert to_millis(moment) == ms
    assert to_millis("2026-11-01T03:00:00.123Z") == ms
    assert to_millis("2026-11-01T04:00:00.123+01:00") == ms
    assert to_millis(ms) == ms
    assert from_millis(ms) == moment


@pytest.mark.parametrize("bad", [dt.datetime(2026, 11, 1), "2026-11-01T03:00:00", 1_793_502_000_123_000, -5, True])
def test_to_millis_rejects_naive_and_wrong_units(bad: object) -> None:
    with pytest.raises(TimeSemanticsError):
        to_millis(bad)


def test_naive_error_says_what_to_do() -> None:
    with pytest.raises(TimeSemanticsError, match="no time zone") as info:
        to_millis(dt.datetime(2026, 1, 1), what="sample time")
    assert "tzinfo" in str(info.value)
    assert "sample time" in str(info.value)


@pytest.mark.parametrize(
    ("text", "ms"), [("10m", 600_000), ("1h", 3_600_000), ("1d", 86_400_000), ("30d", 2_592_000_000), ("500ms", 500)]
)
def test_durations_round_trip(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms
    assert parse_duration_ms(format_duration(ms)) == ms


@pytest.mark.parametrize("bad", ["10", "m", "1.5h", "-1d", "1y", ""])
def test_bad_durations_are_errors(bad: str) -> None:
    with pytest.raises(TimeSemanticsError):
        parse_duration_ms(bad)


def test_visibility_edges() -> None:
    # inclusive by default, strict excludes a version exactly at T
    assert is_visible(100, 100, None)
    assert not is_visible(100, 100, None, strict=True)
    assert not is_visible(101, 100, None)
    # a version exactly ttl old has expired; one ms younger is visible
    assert not is_visible(0, 10, 10)
    assert is_visible(1, 10, 10)


def test_equal_timestamps_later_in_source_order_wins() -> None:
    versions = [(100, 2, "b"), (100, 7, "c"), (100, 1, "a")]
    assert pick_version(versions, 100, None) == (100, 7, "c")


def test_keys_with_no_history_and_reads_before_first_version() -> None:
    assert pick_version([], 100, None) is None
    assert pick_version([(200, 0, "x")], 100, None) is None


@given(
    versions=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 5), st.integers()), max_size=20),
    query=st.integers(0, 60),
    ttl=st.none() | st.integers(1, 30),
    strict=st.booleans(),
)
def test_pick_version_is_the_newest_visible(
    versions: list[tuple[int, int, int]], query: int, ttl: int | None, strict: bool
) -> None:
    chosen = pick_version(versions, query, ttl, strict=strict)
    visible = [v for v in versions if is_visible(v[0], query, ttl, strict=strict)]
    if not visible:
        assert chosen is None
    else:
        assert chosen is not None
        assert (chosen[0], chosen[1]) == max((v[0], v[1]) for v in visible)


def test_epoch_column_floors_to_the_unit_and_refuses_naive_timestamps() -> None:
    zoned = pa.chunked_array([pa.array([-1_500, 1_500, None], pa.timestamp("us", "Asia/Shanghai"))])
    assert epoch_column(zoned).to_pylist() == [-2, 1, None]  # floored, whatever the zone prints
    assert epoch_column(zoned, unit="us").to_pylist() == [-1_500, 1_500, None]
    assert epoch_column(pa.array([2], pa.timestamp("s", "UTC"))).to_pylist() == [2_000]
    assert epoch_column(pa.array([7], pa.int32())).type == pa.int64()  # integers are epochs already
    with pytest.raises(TimeSemanticsError, match=r"clicks\.ts: timestamps without a time zone"):
        epoch_column(pa.array([1], pa.timestamp("ms")), what="clicks.ts")
    with pytest.raises(TimeSemanticsError, match="string values are not times"):
        epoch_column(pa.array(["x"]))
