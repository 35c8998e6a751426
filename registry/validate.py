"""Checks that span objects: names unique, references resolved, columns and types checked
against each source's Avro schema. Every problem is collected, with its file and line.

Single-object rules (safe names, windows, durations, unknown fields) are checked by the models
themselves when they are built; see :mod:`registry.models` and :mod:`registry.rules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from featurestore.types import ValueType
from pydantic import ValidationError as PydanticValidationError

from registry import rules, sample_compiler
from registry.avro import Column
from registry.models import (
    KINDS,
    SECTIONS,
    Condition,
    Definition,
    Definitions,
    Entity,
    FeatureTable,
    SampleTable,
    Source,
    TrainingSet,
    aggregate_type,
    kind_of,
)
from registry.problems import Origin, Path, Problem, format_path, from_pydantic, raise_if
from registry.yaml_io import RawObject

# Feature, sample and training tables all become stored tables: one namespace for the three.
_TABLE_KINDS = ("FeatureTable", "SampleTable", "TrainingSet")
_PY_TYPES: dict[ValueType, tuple[type, ...]] = {
    ValueType.INT64: (int,), ValueType.DOUBLE: (int, float), ValueType.STRING: (str,), ValueType.BOOL: (bool,),
}


def to_models(
    raw_objects: Iterable[RawObject],
) -> tuple[list[tuple[Definition, Origin]], list[Problem], set[str]]:
    """Build each raw YAML object into its model; problems for those that do not fit, and their names."""
    built: list[tuple[Definition, Origin]] = []
    problems: list[Problem] = []
    broken: set[str] = set()
    for raw in raw_objects:
        model = KINDS[raw.kind]
        subject = f"{raw.kind} {raw.raw.get('name', '?')}"
        try:
            obj: Any = model.model_validate(raw.raw)
        except PydanticValidationError as exc:
            problems.extend(from_pydantic(exc, model, raw.origin, subject))
            broken.add(str(raw.raw.get("name")))
            continue
        built.append((obj, raw.origin))
    return built, problems, broken


def build(objects: Iterable[Definition], *, project: str = "default") -> Definitions:
    """The Python way in: check objects built in code exactly as YAML ones are, then bundle them."""
    located = [(obj, Origin()) for obj in objects]
    raise_if(check(located))
    return bundle(project, [obj for obj, _ in located])


def check_definitions(definitions: Definitions) -> None:
    """Raise RepoValidationError unless a bundle of definitions is consistent."""
    raise_if(check([(obj, Origin()) for obj in definitions.objects()]))


def bundle(project: str, objects: Sequence[Definition]) -> Definitions:
    by_kind: dict[str, list[Definition]] = {kind: [] for kind in KINDS}
    for obj in objects:
        by_kind[kind_of(obj)].append(obj)
    sections = {section: by_kind[kind] for section, kind in SECTIONS.items()}
    return Definitions.model_validate({"project": project, **sections})


@dataclass
class _Checker:
    objects: Sequence[tuple[Definition, Origin]]
    problems: list[Problem] = field(default_factory=list)
    entities: dict[str, Entity] = field(default_factory=dict)
    sources: dict[str, Source] = field(default_factory=dict)
    tables: dict[str, FeatureTable] = field(default_factory=dict)
    samples: dict[str, SampleTable] = field(default_factory=dict)
    columns: dict[str, dict[str, Column]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)

    def report(self, obj: Definition, origin: Origin, path: Path, reason: str, hint: str | None = None) -> None:
        subject = f"{kind_of(obj)} {obj.name}"
        self.problems.append(Problem(origin.location(path), subject, format_path(path), reason, hint))

    def resolve(
        self, obj: Definition, origin: Origin, path: Path, what: str, name: str, known: dict[str, Any]
    ) -> Any:
        if name in known:
            return known[name]
        if name in self.broken:
            return None
        self.report(obj, origin, path, f"unknown {what} {name!r}", rules.suggest(name, known))
        return None

    def column(self, obj: Definition, origin: Origin, path: Path, source: Source, name: str) -> Column | None:
        cols = self.columns[source.name]
        if name in cols:
            return cols[name]
        self.report(obj, origin, path, f"unknown column {name!r} in source {source.name!r}", rules.suggest(name, cols))
        return None


def check(objects: Sequence[tuple[Definition, Origin]], *, broken: Iterable[str] = ()) -> list[Problem]:
    """Every cross-object problem of a set of definitions.

    ``broken`` names objects that failed to build (already reported): references to them are not
    reported again, so one mistake gives one error."""
    c = _Checker(objects, broken=set(broken))
    seen: dict[tuple[str, str], Origin] = {}
    for obj, origin in objects:
        kind = kind_of(obj)
        namespace = "table" if kind in _TABLE_KINDS else kind
        first = seen.get((namespace, obj.name))
        if first is not None:
            where = first.location(("name",))
            c.report(obj, origin, ("name",), f"duplicate name {obj.name!r}: also defined at {where}")
            # Which of the two is meant is unknown: check references to neither, so one mistake is one error.
            c.broken.add(obj.name)
            for index in (c.entities, c.sources, c.tables, c.samples):
                index.pop(obj.name, None)
            continue
        seen[(namespace, obj.name)] = origin
        if isinstance(obj, Entity):
            c.entities[obj.name] = obj
        elif isinstance(obj, Source):
            c.sources[obj.name] = obj
            c.columns[obj.name] = obj.columns
        elif isinstance(obj, FeatureTable):
            c.tables[obj.name] = obj
        elif isinstance(obj, SampleTable):
            c.samples[obj.name] = obj
    for obj, origin in objects:
        if isinstance(obj, Source):
            _check_source(c, obj, origin)
        elif isinstance(obj, FeatureTable):
            _check_feature_table(c, obj, origin)
        elif isinstance(obj, SampleTable):
            _check_sample_table(c, obj, origin)
        elif isinstance(obj, TrainingSet):
            _check_training_set(c, obj, origin)
    return c.problems


def _check_source(c: _Checker, source: Source, origin: Origin) -> None:
    column = c.column(source, origin, ("event_time",), source, source.event_time)
    if column is not None and not column.is_event_time:
        c.report(
            source, origin, ("event_time",),
            f"event-time column {source.event_time!r} must be a non-null long with logicalType timestamp-millis",
            f'declare it as {{"name": "{source.event_time}", '
            '"type": {"type": "long", "logicalType": "timestamp-millis"}}',
        )
    if source.stream is None and source.batch is None:
        c.report(source, origin, (), "a source needs a stream binding, a batch binding, or both")


def _check_condition(
    c: _Checker, table: FeatureTable, origin: Origin, index: int, cond: Condition, src: Source
) -> None:
    path: Path = ("filter", index)
    column = c.column(table, origin, (*path, "column"), src, cond.column)
    if column is None:
        return
    if cond.op in ("is_null", "not_null"):
        if cond.value is not None:
            c.report(table, origin, (*path, "value"), f"{cond.op} takes no value")
        return
    values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
    if cond.op in ("in", "not_in") and not isinstance(cond.value, tuple):
        c.report(table, origin, (*path, "value"), f"{cond.op} needs a list of values")
    elif cond.op not in ("in", "not_in") and isinstance(cond.value, tuple):
        c.report(table, origin, (*path, "value"), f"{cond.op} needs one value, not a list")
    allowed = _PY_TYPES.get(column.dtype) if column.dtype is not None else None
    if allowed is None:
        c.report(table, origin, (*path, "column"), f"column {cond.column!r} cannot be filtered on")
        return
    for value in values:
        wrong_bool = isinstance(value, bool) and column.dtype is not ValueType.BOOL
        if value is None or wrong_bool or not isinstance(value, allowed):
            c.report(
                table, origin, (*path, "value"),
                f"value {value!r} does not match column {cond.column!r} of type {column.dtype.value}",  # type: ignore[union-attr]
            )


def _check_feature_table(c: _Checker, table: FeatureTable, origin: Origin) -> None:
    entity = c.resolve(table, origin, ("entity",), "entity", table.entity, c.entities)
    source = c.resolve(table, origin, ("source",), "source", table.source, c.sources)
    if source is None:
        return
    keys = entity.key_names if entity is not None else ()
    if entity is not None:
        for key in entity.join_keys:
            column = c.column(table, origin, ("entity",), source, key.name)
            if column is not None and column.dtype is not key.dtype:
                c.report(
                    table, origin, ("entity",),
                    f"join key {key.name!r} of entity {entity.name!r} is {key.dtype.value} "
                    f"but source {source.name!r} has it as {_type(column)}",
                )
    for index, condition in enumerate(table.filter):
        _check_condition(c, table, origin, index, condition, source)
    names: dict[str, int] = {}
    for index, feature in enumerate(table.features):
        path: Path = ("features", index)
        if feature.name in names:
            first_index = names[feature.name]
            reason = f"duplicate feature {feature.name!r} (also features[{first_index}])"
            c.report(table, origin, (*path, "name"), reason)
        elif feature.name in keys:
            c.report(table, origin, (*path, "name"), f"feature {feature.name!r} has the name of a join key")
        names.setdefault(feature.name, index)
        if feature.window is None and feature.agg != "last":
            c.report(table, origin, (*path, "window"), f"{feature.agg} needs a window, e.g. window: 1d")
        column_type: ValueType | None = None
        if feature.column is not None:
            column = c.column(table, origin, (*path, "column"), source, feature.column)
            if column is None:
                continue
            column_type = column.dtype
        elif feature.agg != "count":
            c.report(table, origin, (*path, "column"), f"{feature.agg} needs a column")
            continue
        try:
            aggregate_type(feature.agg, column_type)
        except ValueError as exc:
            c.report(table, origin, (*path, "agg"), f"{exc} (column {feature.column!r})")


def _type(column: Column) -> str:
    return "an unsupported type" if column.dtype is None else column.dtype.value


def sample_columns(table: SampleTable, sources: dict[str, Source]) -> dict[str, ValueType | None]:
    """The columns of a sample table before its features: kept base columns, then the label."""
    base = sources[table.base_source].columns
    kept = table.columns if table.columns is not None else tuple(base)
    out: dict[str, ValueType | None] = {name: base[name].dtype for name in kept if name in base}
    out[table.label] = ValueType.INT64
    return out


def _check_refs(
    c: _Checker, obj: Definition, origin: Origin, refs: Sequence[str], columns: dict[str, ValueType | None]
) -> None:
    """Each ``table:feature`` resolves, its keys are among ``columns``, and names do not collide."""
    taken = dict.fromkeys(columns, "a sample column")
    for index, ref in enumerate(refs):
        path: Path = ("features", index)
        table_name, feature_name = rules.split_ref(ref)
        table = c.resolve(obj, origin, path, "feature table", table_name, c.tables)
        if table is None:
            continue
        if feature_name not in table.feature_names:
            hint = rules.suggest(feature_name, table.feature_names)
            c.report(obj, origin, path, f"feature table {table_name!r} has no feature {feature_name!r}", hint)
            continue
        entity = c.entities.get(table.entity)
        for key in entity.join_keys if entity is not None else ():
            if key.name not in columns:
                c.report(obj, origin, path, f"samples have no column {key.name!r} to look up {ref!r} by")
            elif columns[key.name] is not key.dtype:
                reason = f"sample column {key.name!r} is not {key.dtype.value}, the key type of {ref!r}"
                c.report(obj, origin, path, reason)
        if feature_name in taken:
            reason = f"{ref!r} would be a second column named {feature_name!r} ({taken[feature_name]})"
            c.report(obj, origin, path, reason)
        taken[feature_name] = ref


def _check_sample_table(c: _Checker, table: SampleTable, origin: Origin) -> None:
    base = c.resolve(table, origin, ("base_source",), "source", table.base_source, c.sources)
    label = c.resolve(table, origin, ("label_source",), "source", table.label_source, c.sources)
    if base is None or label is None:
        return
    left = c.column(table, origin, ("join_key",), base, table.join_key)
    right = c.column(table, origin, ("join_key",), label, table.join_key)
    if left is not None and right is not None and left.dtype is not right.dtype:
        c.report(table, origin, ("join_key",), f"join key {table.join_key!r} is {_type(left)} in {base.name!r} "
                 f"but {_type(right)} in {label.name!r}")
    if table.label in c.columns[base.name]:
        c.report(table, origin, ("label",), f"label {table.label!r} is already a column of {base.name!r}")
    if table.label in sample_compiler.RESERVED:
        c.report(table, origin, ("label",), f"label {table.label!r} is a column every sample has "
                 f"({', '.join(sample_compiler.RESERVED)})")
    if table.columns is not None:
        for index, name in enumerate(table.columns):
            c.column(table, origin, ("columns", index), base, name)
        if base.event_time not in table.columns:
            c.report(table, origin, ("columns",), f"columns must keep the event-time column {base.event_time!r}")
    _check_refs(c, table, origin, table.features, sample_columns(table, c.sources))


def _check_training_set(c: _Checker, tset: TrainingSet, origin: Origin) -> None:
    if (tset.sample_table is None) == (tset.source is None):
        c.report(tset, origin, (), "a training set needs exactly one of sample_table or source")
        return
    columns: dict[str, ValueType | None]
    if tset.sample_table is not None:
        samples = c.resolve(tset, origin, ("sample_table",), "sample table", tset.sample_table, c.samples)
        if samples is None or samples.base_source not in c.sources:
            return
        columns = sample_columns(samples, c.sources)
        for ref in samples.features:
            table_name, feature_name = rules.split_ref(ref)
            table = c.tables.get(table_name)
            if table is not None and feature_name in table.feature_names:
                source = c.sources.get(table.source)
                feature = table.feature(feature_name)
                column = None if source is None or feature.column is None else source.columns.get(feature.column)
                try:
                    columns[feature_name] = aggregate_type(feature.agg, column.dtype if column else None)
                except ValueError:
                    columns[feature_name] = None
    elif tset.source is not None:
        source = c.resolve(tset, origin, ("source",), "source", tset.source, c.sources)
        if source is None:
            return
        columns = {name: col.dtype for name, col in c.columns[source.name].items()}
    _check_refs(c, tset, origin, tset.features, columns)
