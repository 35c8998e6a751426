"""What storage needs to know about a feature table, independent of how it was registered.

The registry compiles each FeatureTable into a :class:`TableSchema`; storage backends, the
offline log and the point-in-time engine only ever see this.

Versions travel between layers as Arrow tables ("versions batches") with the key columns, the
two reserved columns :data:`VERSION_MS` (event time of the version, epoch ms UTC) and :data:`SEQ`
(position in source order, the tie-breaker for equal timestamps), and feature columns.

Which features a version writes is said by the batch's *columns*, not by its nulls:

* A batch writes exactly the feature columns it contains. A feature column ABSENT from the batch
  is not written by these versions: older versions of that feature stay visible.
* A null in a PRESENT feature column is an explicit null value at that version time. Readers see
  it like any other value (it hides older values; TTL and equal-timestamp ties apply to it as to
  any value): an emptied window's ``avg`` reads as null, not as the last non-empty average.

So groups of a table that write different features at different times (one window group per
batch, ``registry/reference.py`` ``VersionGroup.versions``) send one batch per group, each with
only its own feature columns. Readers return ``<feature>__ts`` with every value, so "null at
ts" (``__ts`` set) is told apart from "no visible version" (``__ts`` null).

Where versions of several write-sets share one table (the offline log), the column
:data:`WRITTEN` names the features each row writes (:func:`write_set`); a row whose
:data:`WRITTEN` is null writes every feature of the table (data appended before the column
existed, and versions tables given without it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa

from featurestore.errors import ValidationError
from featurestore.types import ValueType, arrow_type

VERSION_MS = "version_ms"
SEQ = "seq"
RESERVED_COLUMNS = frozenset({VERSION_MS, SEQ})
# The write-set column of a stored versions table (offline log, point-in-time inputs). Not a
# valid feature name (leading underscore), so it can never collide with one.
WRITTEN = "_written"
WRITE_SET_SEPARATOR = ","
# Names reach SQL, HBase qualifiers, Redis keys and file paths: keep them boring.
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def check_name(name: str, *, what: str, location: str | None = None) -> str:
    """Raise unless ``name`` is a safe identifier (lower snake case, starts with a letter)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValidationError(
            f"{what} {name!r} is not a valid name",
            location=location,
            hint="use lower_snake_case: a letter, then letters, digits or '_', at most 63 characters",
        )
    if name in RESERVED_COLUMNS:
        raise ValidationError(f"{what} {name!r} is reserved by the feature store", location=location)
    return name


@dataclass(frozen=True)
class Field:
    name: str
    dtype: ValueType


@dataclass(frozen=True)
class TableSchema:
    """A feature table as storage sees it."""

    name: str
    keys: tuple[Field, ...]
    features: tuple[Field, ...]
    ttl_ms: int | None = None
    max_versions: int | None = None  # versions kept in the versioned store; None = all

    def __post_init__(self) -> None:
        check_name(self.name, what="feature table")
        if not self.keys:
            raise ValidationError(f"feature table {self.name!r} has no key column")
        seen: set[str] = set()
        for column in (*self.keys, *self.features):
            check_name(column.name, what=f"column of {self.name}")
            if column.name in seen:
                raise ValidationError(f"feature table {self.name!r} has two columns named {column.name!r}")
            seen.add(column.name)

    @functools.cached_property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.keys)

    @functools.cached_property
    def feature_names(self) -> tuple[str, ...]:
        # one tuple per schema: reads look their layouts up by it (its hash is computed once)
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> Field:
        for f in self.features:
            if f.name == name:
                return f
        raise ValidationError(f"feature table {self.name!r} has no feature {name!r}")

    def arrow_schema(self) -> pa.Schema:
        """Schema of a batch of versions of this table."""
        return pa.schema(
            [pa.field(k.name, arrow_type(k.dtype), nullable=False) for k in self.keys]
            + [pa.field(VERSION_MS, pa.int64(), nullable=False), pa.field(SEQ, pa.int64(), nullable=False)]
            + [pa.field(f.name, arrow_type(f.dtype)) for f in self.features]
        )


def write_set(features: Iterable[str]) -> str:
    """The :data:`WRITTEN` value of rows writing ``features``: the names sorted, comma-separated.

    One canonical string per set (names cannot contain commas), so equal sets compare equal and
    a column of them is dictionary-encoded to almost nothing. ``""`` writes no feature.
    """
    return WRITE_SET_SEPARATOR.join(sorted(set(features)))


def parse_write_set(value: str | None, schema: TableSchema) -> frozenset[str]:
    """The features a :data:`WRITTEN` value writes; ``None`` (not recorded) = every feature."""
    if value is None:
        return frozenset(schema.feature_names)
    return frozenset(name for name in value.split(WRITE_SET_SEPARATOR) if name)


def batch_features(schema: TableSchema, column_names: Iterable[str]) -> tuple[str, ...]:
    """The features a versions batch with these columns writes, in the schema's order."""
    present = set(column_names)
    return tuple(name for name in schema.feature_names if name in present)
