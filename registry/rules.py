"""The naming rules every definition follows, as plain functions that raise ``ValueError``.

They run inside pydantic validators (which turn a ``ValueError`` into an error with a location),
so a name, a topic, a path layout or a duration is checked once, when the object is built,
whichever way in (YAML or Python) it came. Anything that can reach generated SQL, an HBase
qualifier, a Redis key or a file path passes one of these first.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from featurestore.errors import ValidationError
from featurestore.schema import NAME_PATTERN, check_name
from featurestore.time_semantics import MS_PER_UNIT, parse_duration_ms

# Kafka's own rule for topic names, minus the names "." and ".." and anything containing "..".
TOPIC_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,248}$")
# A batch layout: relative path segments of safe characters plus the {date} and {hour} placeholders.
_LAYOUT_CHARS = re.compile(r"^[A-Za-z0-9_.=*{}/-]+$")
LAYOUT_PLACEHOLDERS = ("date", "hour")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_AVSC_PATH = re.compile(r"^[A-Za-z0-9_./-]+\.avsc$")
REF_SEPARATOR = ":"
# Event-time windows: at least a minute, at most 30 days, in whole minutes.
MIN_WINDOW_MS = 60_000
MAX_WINDOW_MS = 30 * 86_400_000


def safe_name(value: str, what: str = "name") -> str:
    """featurestore.schema.check_name, as a ValueError for pydantic."""
    try:
        return check_name(value, what=what)
    except ValidationError as exc:
        raise ValueError(exc.message if exc.hint is None else f"{exc.message} ({exc.hint})") from None


def topic_name(value: str) -> str:
    if not TOPIC_PATTERN.match(value) or ".." in value:
        raise ValueError(
            f"topic {value!r} is not a safe Kafka topic name (letters, digits, '.', '_', '-'; "
            "starts with a letter or digit; no '..'; at most 249 characters)"
        )
    return value


def _relative_path(value: str, what: str) -> list[str]:
    if not value or value.startswith("/") or "\\" in value or "://" in value:
        raise ValueError(f"{what} {value!r} must be a relative path with '/' separators")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{what} {value!r} must not contain empty, '.' or '..' segments")
    return parts


def batch_layout(value: str) -> str:
    """A batch path layout such as ``events/clicks/dt={date}/hour={hour}/*.avro``."""
    _relative_path(value, "path layout")
    if not _LAYOUT_CHARS.match(value):
        raise ValueError(
            f"path layout {value!r} has characters that are not allowed "
            "(letters, digits, '_', '.', '=', '*', '-', '/' and {date} / {hour} only)"
        )
    placeholders = _PLACEHOLDER.findall(value)
    for name in placeholders:
        if name not in LAYOUT_PLACEHOLDERS:
            raise ValueError(f"path layout {value!r} has an unknown placeholder {{{name}}}; use {{date}} or {{hour}}")
    if value.count("{") != len(placeholders) or value.count("}") != len(placeholders):
        raise ValueError(f"path layout {value!r} has an unbalanced '{{' or '}}'")
    if "date" not in placeholders:
        raise ValueError(f"path layout {value!r} must contain {{date}} so a backfill can select days")
    if len(set(placeholders)) != len(placeholders):
        raise ValueError(f"path layout {value!r} repeats a placeholder")
    return value


def avsc_path(value: str) -> str:
    """A path to an .avsc file, relative to the YAML file that names it, inside the repo."""
    _relative_path(value, "schema path")
    if not _AVSC_PATH.match(value):
        raise ValueError(f"schema path {value!r} must end in .avsc and use letters, digits, '_', '.', '-', '/' only")
    return value


def duration(value: str | int, what: str = "duration") -> str:
    """Any duration spelling, normalised to its shortest exact form ('600s' -> '10m')."""
    try:
        ms = parse_duration_ms(value, what=what)
    except ValidationError as exc:
        raise ValueError(exc.message if exc.hint is None else f"{exc.message} ({exc.hint})") from None
    for unit in ("d", "h", "m", "s"):  # days, not weeks: '7d' stays '7d'
        if ms and ms % MS_PER_UNIT[unit] == 0:
            return f"{ms // MS_PER_UNIT[unit]}{unit}"
    return f"{ms}ms" if ms else "0s"


def window(value: str | int) -> str:
    text = duration(value, "window")
    ms = parse_duration_ms(text)
    if not MIN_WINDOW_MS <= ms <= MAX_WINDOW_MS or ms % MIN_WINDOW_MS:
        raise ValueError(f"window {text!r} must be whole minutes between 1m and 30d (e.g. '10m', '1h', '1d', '30d')")
    return text


def feature_ref(value: str) -> str:
    """``table:feature``."""
    table, sep, feature = value.partition(REF_SEPARATOR)
    if not sep or not NAME_PATTERN.match(table) or not NAME_PATTERN.match(feature):
        raise ValueError(f"feature reference {value!r} must be 'table:feature' with two lower_snake_case names")
    return value


def split_ref(value: str) -> tuple[str, str]:
    table, _, feature = value.partition(REF_SEPARATOR)
    return table, feature


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """A 'did you mean' hint for a misspelt name, or None."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f"did you mean {matches[0]!r}?" if matches else None
