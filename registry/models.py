"""The concepts of a feature repo as typed, immutable pydantic models.

Every model forbids unknown fields and is frozen. Names, topics, path layouts, windows and
durations are checked when a model is built (see :mod:`registry.rules`); checks that need more
than one object (references, column types against a source's Avro schema, duplicates) live in
:mod:`registry.validate`.

Durations are stored in their shortest exact spelling ('600s' becomes '10m'); every duration has
a ``*_ms`` property so a compiler never parses text. A windowed aggregation at time ``T`` covers
the events with event time in ``(T - window, T]``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, Literal

from featurestore.errors import NotFoundError, ValidationError
from featurestore.schema import NAME_PATTERN, TableSchema
from featurestore.schema import Field as SchemaField
from featurestore.time_semantics import parse_duration_ms
from featurestore.types import ValueType
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from registry import avro, rules

Name = Annotated[
    str, AfterValidator(rules.safe_name), Field(json_schema_extra={"pattern": NAME_PATTERN.pattern})
]
Duration = Annotated[
    str, BeforeValidator(rules.duration), Field(json_schema_extra={"pattern": r"^\d+(ms|s|m|h|d|w)$"})
]
Window = Annotated[
    str, BeforeValidator(rules.window), Field(json_schema_extra={"pattern": r"^\d+(ms|s|m|h|d|w)$"})
]
FeatureRef = Annotated[
    str, AfterValidator(rules.feature_ref), Field(json_schema_extra={"pattern": r"^[a-z][a-z0-9_]*:[a-z][a-z0-9_]*$"})
]
Tags = Annotated[dict[str, str], Field(default_factory=dict, description="free-form labels, e.g. team: ads")]
Aggregation = Literal["last", "count", "sum", "avg", "min", "max", "approx_count_distinct"]
KEY_TYPES = (ValueType.INT64, ValueType.STRING)
_NUMERIC = (ValueType.INT64, ValueType.DOUBLE)
_SCALAR = (ValueType.INT64, ValueType.DOUBLE, ValueType.STRING, ValueType.BOOL, ValueType.BYTES)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


# ---------------------------------------------------------------------------------------------- entity


class JoinKey(_Model):
    """One key column of an entity; sources carry it under the same name."""

    name: Name
    dtype: ValueType = Field(ValueType.STRING, description="int64 or string")

    @field_validator("dtype")
    @classmethod
    def _key_type(cls, value: ValueType) -> ValueType:
        if value not in KEY_TYPES:
            raise ValueError(f"a join key must be int64 or string, not {value.value}")
        return value


class Entity(_Model):
    """What features describe (a user, an item), identified by its join key(s)."""

    name: Name
    join_keys: tuple[JoinKey, ...] = Field(min_length=1)
    description: str = ""

    @property
    def key_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.join_keys)


# ---------------------------------------------------------------------------------------------- source


class StreamBinding(_Model):
    """Where live events arrive: a Kafka topic."""

    topic: Annotated[str, AfterValidator(rules.topic_name)]
    format: Literal["avro", "json"] = "avro"
    partitions: int = Field(1, ge=1, le=10_000)


class BatchBinding(_Model):
    """Where history lies, relative to the profile's history root, e.g.
    ``events/clicks/dt={date}/hour={hour}/*.avro`` ({date} is YYYY-MM-DD, {hour} is HH, UTC)."""

    path: Annotated[str, AfterValidator(rules.batch_layout)]
    format: Literal["avro", "parquet"] = "avro"


class Source(_Model):
    """One logical event table: one Avro record schema, an event-time column, and bindings to a
    stream (live) and a batch layout (history). Features on a source run unchanged on either."""

    name: Name
    avro_schema: Annotated[dict[str, Any], AfterValidator(avro.check_record)] = Field(
        description="an Avro record schema, inline; in YAML also a path to an .avsc file next to the YAML file"
    )
    event_time: Name = Field(description="column holding the event time: a long with logicalType timestamp-millis")
    stream: StreamBinding | None = None
    batch: BatchBinding | None = None
    allowed_lateness: Duration = Field("0s", description="events later than this behind the watermark are dead letters")
    description: str = ""
    owner: str | None = None

    @property
    def allowed_lateness_ms(self) -> int:
        return parse_duration_ms(self.allowed_lateness)

    @property
    def columns(self) -> dict[str, avro.Column]:
        return avro.columns(self.avro_schema)


# ---------------------------------------------------------------------------------------------- features


class Condition(_Model):
    """One condition of a feature table's filter; the conditions of a filter are ANDed."""

    column: Name
    op: Literal["==", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "not_null"]
    value: int | float | str | bool | tuple[int | float | str | bool, ...] | None = None


class Feature(_Model):
    """A projection (``last`` of a column, no window) or an aggregation over an event-time window."""

    name: Name
    agg: Aggregation = "last"
    column: Name | None = Field(None, description="input column; optional for count (counts events)")
    window: Window | None = Field(None, description="event-time window, 1m..30d; required except for last")
    description: str = ""

    @property
    def window_ms(self) -> int | None:
        return None if self.window is None else parse_duration_ms(self.window)

    @property
    def is_projection(self) -> bool:
        return self.window is None


def aggregate_type(agg: str, column: ValueType | None) -> ValueType:
    """The value type an aggregation yields over a column of type ``column`` (None: no column).

    Raises ValueError with the reason when the aggregation does not apply to that type.
    """
    if agg in ("count", "approx_count_distinct"):
        if agg == "approx_count_distinct" and column not in _SCALAR:
            raise ValueError(f"approx_count_distinct needs a scalar column, not {_type_name(column)}")
        return ValueType.INT64
    if column is None:
        raise ValueError(f"{agg} needs a column")
    if agg == "last":
        return column
    if agg == "avg":
        if column not in _NUMERIC:
            raise ValueError(f"avg needs a numeric column (int64 or double), not {_type_name(column)}")
        return ValueType.DOUBLE
    if column not in _NUMERIC:  # sum, min, max
        raise ValueError(f"{agg} needs a numeric column (int64 or double), not {_type_name(column)}")
    return column


def _type_name(dtype: ValueType | None) -> str:
    return "an unsupported type" if dtype is None else dtype.value


class FeatureTable(_Model):
    """Features of one entity computed from one source."""

    name: Name
    entity: Name
    source: Name
    filter: tuple[Condition, ...] = Field((), description="conditions on source columns, ANDed")
    features: tuple[Feature, ...] = Field(min_length=1)
    ttl: Duration | None = Field(None, description="a version older than this is not served; none = never expires")
    online_versions: int | None = Field(None, ge=1, description="versions kept in the versioned store; none = all")
    online: bool = True
    offline: bool = True
    owner: str | None = None
    description: str = ""
    tags: Tags

    @property
    def ttl_ms(self) -> int | None:
        return None if self.ttl is None else parse_duration_ms(self.ttl)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        hint = rules.suggest(name, self.feature_names)
        raise NotFoundError(f"feature table {self.name!r} has no feature {name!r}" + (f"; {hint}" if hint else ""))

    def feature_type(self, feature: Feature, source: Source) -> ValueType:
        column = None if feature.column is None else source.columns[feature.column].dtype
        try:
            return aggregate_type(feature.agg, column)
        except ValueError as exc:
            raise ValidationError(f"feature {self.name}:{feature.name}: {exc}") from None

    def to_table_schema(self, entity: Entity, source: Source) -> TableSchema:
        """The storage view: the entity's keys, one typed column per feature, TTL and versions kept.

        ``entity`` and ``source`` are the definitions this table names (``Definitions.table_schema``
        looks them up for you)."""
        if entity.name != self.entity or source.name != self.source:
            raise ValidationError(f"feature table {self.name!r} is defined on {self.entity}/{self.source}")
        return TableSchema(
            name=self.name,
            keys=tuple(SchemaField(k.name, k.dtype) for k in entity.join_keys),
            features=tuple(SchemaField(f.name, self.feature_type(f, source)) for f in self.features),
            ttl_ms=self.ttl_ms,
            max_versions=self.online_versions,
        )


# ---------------------------------------------------------------------------------------------- samples


class SampleTable(_Model):
    """A label join: one sample per event of ``base_source`` (an impression), labelled 1 when an
    event of ``label_source`` (a click) with the same ``join_key`` arrives within ``window`` after
    it, else 0 when the window closes. Each referenced feature is attached as of the sample's event
    time. The sample's columns are the base columns (``columns``, default all), the label and the
    features (named by their feature name)."""

    name: Name
    base_source: Name
    label_source: Name
    join_key: Name
    window: Window = "10m"
    label: Name = "label"
    columns: tuple[Name, ...] | None = Field(None, description="base columns to keep; none = all")
    features: tuple[FeatureRef, ...] = ()
    as_of: Literal["inclusive", "strict"] = "inclusive"
    description: str = ""
    owner: str | None = None
    tags: Tags

    @property
    def window_ms(self) -> int:
        return parse_duration_ms(self.window)


class TrainingSet(_Model):
    """Samples (a sample table, or the events of a source) with features attached as of each
    sample's event time: newest version at or before it (``inclusive``) or strictly before (``strict``)."""

    name: Name
    sample_table: Name | None = None
    source: Name | None = None
    features: tuple[FeatureRef, ...] = Field(min_length=1)
    as_of: Literal["inclusive", "strict"] = "inclusive"
    description: str = ""
    owner: str | None = None
    tags: Tags

    @property
    def strict(self) -> bool:
        return self.as_of == "strict"


# ---------------------------------------------------------------------------------------------- repo

Definition = Entity | Source | FeatureTable | SampleTable | TrainingSet
KINDS: dict[str, type[_Model]] = {
    "Entity": Entity,
    "Source": Source,
    "FeatureTable": FeatureTable,
    "SampleTable": SampleTable,
    "TrainingSet": TrainingSet,
}
SECTIONS: dict[str, str] = {
    "entities": "Entity",
    "sources": "Source",
    "feature_tables": "FeatureTable",
    "sample_tables": "SampleTable",
    "training_sets": "TrainingSet",
}


def kind_of(obj: Definition) -> str:
    return type(obj).__name__


class Sections(_Model):
    """A YAML document of keyed sections, each a list of objects of one kind."""

    entities: tuple[Entity, ...] = ()
    sources: tuple[Source, ...] = ()
    feature_tables: tuple[FeatureTable, ...] = ()
    sample_tables: tuple[SampleTable, ...] = ()
    training_sets: tuple[TrainingSet, ...] = ()

    @field_validator(*SECTIONS, mode="after")
    @classmethod
    def _by_name(cls, value: tuple[Definition, ...]) -> tuple[Definition, ...]:
        return tuple(sorted(value, key=lambda o: o.name))

    def objects(self) -> Iterator[Definition]:
        for section in SECTIONS:
            yield from getattr(self, section)


class Definitions(Sections):
    """Every object of a project, sorted by name within each kind: what a registry version holds.

    Build one with :func:`registry.validate.build` (checks references) or load one from YAML with
    :func:`registry.repo.load_repo`."""

    project: Name = "default"

    def _find(self, section: str, name: str) -> Any:
        for obj in getattr(self, section):
            if obj.name == name:
                return obj
        kind = SECTIONS[section]
        hint = rules.suggest(name, (o.name for o in getattr(self, section)))
        raise NotFoundError(f"no {kind} named {name!r} in project {self.project!r}", hint=hint)

    def entity(self, name: str) -> Entity:
        result: Entity = self._find("entities", name)
        return result

    def source(self, name: str) -> Source:
        result: Source = self._find("sources", name)
        return result

    def feature_table(self, name: str) -> FeatureTable:
        result: FeatureTable = self._find("feature_tables", name)
        return result

    def sample_table(self, name: str) -> SampleTable:
        result: SampleTable = self._find("sample_tables", name)
        return result

    def training_set(self, name: str) -> TrainingSet:
        result: TrainingSet = self._find("training_sets", name)
        return result

    def table_schema(self, name: str) -> TableSchema:
        """The storage view of the feature table ``name``."""
        table = self.feature_table(name)
        return table.to_table_schema(self.entity(table.entity), self.source(table.source))

    def table_schemas(self) -> dict[str, TableSchema]:
        return {t.name: self.table_schema(t.name) for t in self.feature_tables}
