"""Feature references, entity keys and results: what every read path shares.

A request names features as ``table:feature`` references (``table:*`` for all of a table) or as
a feature service: the name of a TrainingSet (its sample table's features, then its own). Entity
keys are given as a list of dicts, a dict of columns, a list of values (one key column) or of
tuples (key columns in order), or an Arrow table. Results are :class:`FeatureFrame` s: the key
columns, then per feature ``<name>``, ``<name>__ts`` (version time, ms) and ``<name>__status``
(``present``, ``missing``, ``expired``). A feature name found in two tables is output as
``<table>__<feature>``.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import pyarrow as pa

from featurestore.errors import NotFoundError, ValidationError
from featurestore.schema import TableSchema
from featurestore.storage.batches import status_column, ts_column
from featurestore.types import arrow_type

if TYPE_CHECKING:
    import pandas as pd

    from registry.models import Definitions

FeaturesInput: TypeAlias = str | Sequence[str]
EntitiesInput: TypeAlias = Sequence[Any] | Mapping[str, Sequence[Any]] | pa.Table


@dataclass(frozen=True)
class TablePart:
    """The features a request reads from one table, with their output column names."""

    schema: TableSchema
    features: tuple[str, ...]
    names: tuple[str, ...]

    @functools.cached_property
    def pick(self) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
        """Picks this part's features out of a row aligned with ``schema.feature_names``."""
        index = [self.schema.feature_names.index(f) for f in self.features]
        if len(index) == 1:
            only = index[0]
            return lambda row: (row[only],)
        return operator.itemgetter(*index)


@dataclass(frozen=True)
class FeatureRequest:
    refs: tuple[str, ...]  # expanded, in request order
    parts: tuple[TablePart, ...]
    key_columns: tuple[str, ...]
    layout: Layout  # of the result

    def key_type(self, column: str) -> pa.DataType:
        return self.layout.schema.field(column).type


@dataclass(frozen=True)
class Layout:
    """The result's Arrow schema, and per column a group id shared by the columns of one type."""

    schema: pa.Schema
    groups: tuple[int, ...]
    group_types: tuple[pa.DataType, ...]

    @classmethod
    def of(cls, fields: Sequence[tuple[str, pa.DataType]]) -> Layout:
        ids: dict[str, int] = {}
        types: list[pa.DataType] = []
        groups = []
        for _, t in fields:
            if str(t) not in ids:
                ids[str(t)] = len(types)
                types.append(t)
            groups.append(ids[str(t)])
        return cls(pa.schema([pa.field(n, t) for n, t in fields]), tuple(groups), tuple(types))


def expand_refs(definitions: Definitions, features: FeaturesInput) -> list[str]:
    """References of a request: a list of refs, one ref, or a feature service (TrainingSet) name."""
    if isinstance(features, str):
        if ":" in features:
            return [features]
        try:
            service = definitions.training_set(features)
        except NotFoundError as exc:
            raise NotFoundError(f"no feature service (training set) named {features!r}", hint=exc.hint) from None
        base = definitions.sample_table(service.sample_table).features if service.sample_table else ()
        return list(dict.fromkeys([*base, *service.features]))
    if not isinstance(features, Sequence) or not features or not all(isinstance(f, str) for f in features):
        raise ValidationError("features must be a feature service name or a non-empty list of 'table:feature'")
    return list(features)


def resolve(definitions: Definitions, features: FeaturesInput) -> FeatureRequest:
    schemas: dict[str, TableSchema] = {}
    wanted: dict[str, list[str]] = {}
    refs: list[str] = []
    for ref in expand_refs(definitions, features):
        table, sep, feature = ref.partition(":")
        if not sep or not table or not feature:
            raise ValidationError("a feature reference is written table:feature", location=ref)
        if table not in schemas:
            try:
                schemas[table] = definitions.table_schema(table)
            except NotFoundError as exc:
                raise NotFoundError(f"unknown feature table {table!r}", hint=exc.hint) from None
        names: Sequence[str] = schemas[table].feature_names if feature == "*" else (feature,)
        for name in names:
            if name not in schemas[table].feature_names:
                raise NotFoundError(f"feature table {table!r} has no feature {name!r}")
            if name not in wanted.setdefault(table, []):
                wanted[table].append(name)
                refs.append(f"{table}:{name}")
    counts: dict[str, int] = {}
    for names in wanted.values():
        for name in names:
            counts[name] = counts.get(name, 0) + 1
    parts = tuple(
        TablePart(schemas[t], tuple(fs), tuple(f if counts[f] == 1 else f"{t}__{f}" for f in fs))
        for t, fs in wanted.items()
    )
    keys = tuple(dict.fromkeys(k for p in parts for k in p.schema.key_names))
    key_types = {k.name: arrow_type(k.dtype) for p in reversed(parts) for k in p.schema.keys}
    fields = [(k, key_types[k]) for k in keys]
    for part in parts:
        for feature, name in zip(part.features, part.names, strict=True):
            fields += [(name, arrow_type(part.schema.feature(feature).dtype)), (ts_column(name), pa.int64()),
                       (status_column(name), pa.string())]
    return FeatureRequest(tuple(refs), parts, keys, Layout.of(fields))


def entity_columns(entities: EntitiesInput, key_columns: Sequence[str]) -> dict[str, list[Any]]:
    """The key columns of the request, one value per entity row."""
    if isinstance(entities, pa.Table):
        given: dict[str, list[Any]] = {c: entities.column(c).to_pylist() for c in entities.column_names}
    elif isinstance(entities, Mapping):
        given = {str(k): list(v) for k, v in entities.items()}
        lengths = {len(v) for v in given.values()}
        if len(lengths) > 1:
            raise ValidationError("entity columns have different lengths", location="entities")
    elif isinstance(entities, str | bytes) or not isinstance(entities, Sequence):
        raise ValidationError(f"entities must be a list or a dict of columns, got {type(entities).__name__}")
    elif entities and all(isinstance(e, Mapping) for e in entities):
        given = {c: [row.get(c) for row in entities] for c in key_columns}
    elif len(key_columns) == 1 and not any(isinstance(e, tuple | list | Mapping) for e in entities):
        given = {key_columns[0]: list(entities)}
    else:
        rows = [tuple(e) if isinstance(e, tuple | list) else e for e in entities]
        if not all(isinstance(r, tuple) and len(r) == len(key_columns) for r in rows):
            raise ValidationError(f"entity keys must be tuples of {list(key_columns)}", location="entities")
        given = {c: [r[i] for r in rows] for i, c in enumerate(key_columns)}
    missing = [c for c in key_columns if c not in given]
    if missing:
        raise ValidationError(f"entity key columns {missing} are missing; the features need {list(key_columns)}",
                              location="entities")
    return {c: given[c] for c in key_columns}


class FeatureFrame:
    """A result: columns of Python values in a :class:`Layout`; Arrow is built on first use."""

    def __init__(self, columns: dict[str, list[Any]], layout: Layout, num_rows: int) -> None:
        self._columns = columns
        self._layout = layout
        self.num_rows = num_rows
        self._table: pa.Table | None = None

    @property
    def column_names(self) -> list[str]:
        return list(self._columns)

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        return f"FeatureFrame({self.num_rows} rows x {len(self._columns)} columns)"

    def to_pydict(self) -> dict[str, list[Any]]:
        return self._columns

    def to_dicts(self) -> list[dict[str, Any]]:
        names = list(self._columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*self._columns.values(), strict=True)]

    @property
    def table(self) -> pa.Table:
        if self._table is None:
            self._table = _to_arrow(self._columns, self._layout, self.num_rows)
        return self._table

    def to_arrow(self) -> pa.Table:
        return self.table

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


def _to_arrow(columns: dict[str, list[Any]], layout: Layout, n: int) -> pa.Table:
    """One ``pa.array`` per type, sliced per column (a 1 x 150 result is a few conversions)."""
    buckets: dict[int, list[Any]] = {}
    offsets = []
    for group, values in zip(layout.groups, columns.values(), strict=True):
        bucket = buckets.setdefault(group, [])
        offsets.append(len(bucket))
        bucket.extend(values)
    arrays = {g: pa.array(values, type=layout.group_types[g]) for g, values in buckets.items()}
    return pa.Table.from_arrays(
        [arrays[g].slice(o, n) for g, o in zip(layout.groups, offsets, strict=True)], schema=layout.schema
    )
