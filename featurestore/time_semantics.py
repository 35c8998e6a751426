"""The one time rule every path follows (see README "Time semantics").

* Time is an ``int`` of milliseconds since the Unix epoch, UTC, everywhere inside the store.
  Conversions from datetimes happen at the edges with :func:`to_millis`; a naive datetime is an
  error, never silently taken as local time.
* A version's timestamp is the event time of the event that produced it.
* A read at time ``T`` sees, per feature, the newest version with timestamp ``<= T`` (``< T`` when
  ``strict``), and nothing older than ``T - ttl``: a version at ``ts`` is visible iff
  ``ts <= T`` (or ``ts < T``) and ``ts > T - ttl``. So a version exactly ``ttl`` old has expired.
* Two versions with the same key, feature and timestamp: the one later in source order (higher
  ``seq``) wins, in live and in replay alike.

:func:`pick_version` is the reference implementation of the rule; backends and engines are tested
against it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from typing import Any, TypeVar

from featurestore.errors import TimeSemanticsError

UTC = dt.UTC
MS_PER_UNIT = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
# Millisecond epochs for 1970-01-01 .. 9999-12-31; anything outside is almost surely seconds,
# micros or nanos passed by mistake.
_MIN_MS, _MAX_MS = 0, 253_402_300_799_999


def to_millis(value: object, *, what: str = "timestamp") -> int:
    """Convert an aware datetime, an ISO-8601 string with a zone, or epoch millis to epoch millis.

    Raises :class:`TimeSemanticsError` for naive datetimes and for integers that cannot be
    milliseconds (seconds or nanoseconds passed by mistake).
    """
    if isinstance(value, bool):
        raise TimeSemanticsError(f"{what} must be a time, got a bool")
    if isinstance(value, int):
        if not _MIN_MS <= value <= _MAX_MS:
            raise TimeSemanticsError(
                f"{what} {value} is not epoch milliseconds (between 1970 and 9999)",
                hint="pass milliseconds since the Unix epoch, UTC, or an aware datetime",
            )
        return value
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise TimeSemanticsError(f"{what} {value!r} is not an ISO-8601 time") from exc
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise TimeSemanticsError(
                f"{what} {value.isoformat()} has no time zone",
                hint="use an aware datetime, e.g. datetime(..., tzinfo=timezone.utc)",
            )
        delta = value - dt.datetime(1970, 1, 1, tzinfo=UTC)
        return delta // dt.timedelta(milliseconds=1)
    raise TimeSemanticsError(
        f"{what} must be epoch millis, an aware datetime or ISO string, got {type(value).__name__}"
    )


def from_millis(ms: int) -> dt.datetime:
    """Epoch millis to an aware UTC datetime."""
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(milliseconds=ms)


#: The unit of each Avro logical type of a time on the UTC timeline (:func:`epoch_column`'s ``unit``).
AVRO_TIME_UNITS = {"timestamp-millis": "ms", "timestamp-micros": "us"}


def epoch_column(values: Any, *, unit: str = "ms", what: str = "times") -> Any:
    """Zoned Arrow timestamps (an Array or ChunkedArray) as int64 epoch ``unit`` (``ms`` or ``us``).

    The column-wise :func:`to_millis`: a naive timestamp type raises :class:`TimeSemanticsError`
    (it has no place on the UTC timeline); integers are taken as epoch ``unit`` already; nulls stay
    null. A finer unit is floored (``timestamp[us]`` to ms drops the microseconds).
    """
    import pyarrow as pa

    if pa.types.is_integer(values.type):
        return values.cast(pa.int64())
    if not pa.types.is_timestamp(values.type):
        raise TimeSemanticsError(f"{what}: {values.type} values are not times")
    if values.type.tz is None:
        raise TimeSemanticsError(
            f"{what}: timestamps without a time zone ({values.type}) cannot be placed on the UTC timeline",
            hint="store them as UTC timestamps or as epoch milliseconds",
        )
    if unit not in ("ms", "us"):
        raise ValueError(f"unit must be ms or us, not {unit!r}")
    import pyarrow.compute as pc

    per_second = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
    raw = values.cast(pa.int64())  # epoch in the type's unit (the zone only says how to print it)
    have, want = per_second[values.type.unit], per_second[unit]
    if have <= want:
        return pc.multiply(raw, want // have)
    factor = have // want
    truncated = pc.divide(raw, factor)  # toward zero; a time before 1970 floors one lower
    return pc.subtract(truncated, pc.less(raw, pc.multiply(truncated, factor)).cast(pa.int64()))


def parse_duration_ms(text: str | int, *, what: str = "duration") -> int:
    """``"10m"``, ``"1h"``, ``"30d"``, ``"500ms"`` (or an int of millis) to milliseconds."""
    if isinstance(text, bool):
        raise TimeSemanticsError(f"{what} must be a duration like '10m' or '30d', got a bool")
    if isinstance(text, int):
        if text < 0:
            raise TimeSemanticsError(f"{what} must not be negative, got {text}")
        return text
    match = _DURATION.match(text)
    if not match:
        raise TimeSemanticsError(
            f"{what} {text!r} is not a duration",
            hint="write a number and a unit: ms, s, m, h, d or w, e.g. '10m', '1d', '30d'",
        )
    return int(match.group(1)) * MS_PER_UNIT[match.group(2)]


def format_duration(ms: int) -> str:
    """The shortest exact spelling of a duration, the inverse of :func:`parse_duration_ms`."""
    for unit in ("w", "d", "h", "m", "s"):
        size = MS_PER_UNIT[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def is_visible(version_ms: int, query_ms: int, ttl_ms: int | None, *, strict: bool = False) -> bool:
    """Whether a version at ``version_ms`` may be seen by a read at ``query_ms``."""
    if version_ms > query_ms or (strict and version_ms == query_ms):
        return False
    return ttl_ms is None or version_ms > query_ms - ttl_ms


V = TypeVar("V")


def pick_version(
    versions: Iterable[tuple[int, int, V]], query_ms: int, ttl_ms: int | None, *, strict: bool = False
) -> tuple[int, int, V] | None:
    """Reference rule: from ``(version_ms, seq, value)`` triples, the one a read at ``query_ms`` sees.

    Newest visible timestamp wins; among equal timestamps the highest ``seq`` (latest in source
    order) wins. Returns ``None`` when nothing is visible.
    """
    best: tuple[int, int, V] | None = None
    for version in versions:
        if is_visible(version[0], query_ms, ttl_ms, strict=strict) and (
            best is None or (version[0], version[1]) > (best[0], best[1])
        ):
            best = version
    return best
