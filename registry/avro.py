"""A source's Avro record schema, read once into the columns the registry checks features against."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException
from featurestore.types import ValueType, from_avro

from registry import rules

TIMESTAMP_MILLIS = "timestamp-millis"


@dataclass(frozen=True)
class Column:
    """One top-level field of a source's record schema."""

    name: str
    dtype: ValueType | None  # None: a type no feature can use (a nested record, a map, ...)
    avro: Any
    nullable: bool
    logical_type: str | None

    @property
    def is_event_time(self) -> bool:
        """A non-null long with logicalType timestamp-millis."""
        return not self.nullable and self.logical_type == TIMESTAMP_MILLIS and base_type(self.avro) == "long"


def base_type(avro: Any) -> Any:
    """The type under a nullable union and a logical type: "long" for ["null", {"type": "long", ...}]."""
    if isinstance(avro, list):
        non_null = [t for t in avro if t != "null"]
        return base_type(non_null[0]) if len(non_null) == 1 else None
    if isinstance(avro, dict) and avro.get("type") not in ("array", "map", "record", "enum", "fixed"):
        return base_type(avro.get("type"))
    return avro


def _logical(avro: Any) -> str | None:
    if isinstance(avro, list):
        non_null = [t for t in avro if t != "null"]
        return _logical(non_null[0]) if len(non_null) == 1 else None
    if isinstance(avro, dict):
        value = avro.get("logicalType")
        return str(value) if value is not None else None
    return None


def check_record(schema: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError unless ``schema`` is a valid Avro record whose field names are safe names."""
    if schema.get("type") != "record":
        raise ValueError("the Avro schema must be a record (\"type\": \"record\") with fields")
    try:
        fastavro.parse_schema(dict(schema))
    except (SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"not a valid Avro schema: {exc}") from None
    fields = schema.get("fields")
    if not isinstance(fields, list) or not fields:
        raise ValueError("the Avro record has no fields")
    for field in fields:
        rules.safe_name(str(field.get("name")), "Avro field")
    return schema


def columns(schema: dict[str, Any]) -> dict[str, Column]:
    """The columns of a (checked) record schema, by name, in schema order."""
    out: dict[str, Column] = {}
    for field in schema.get("fields", []):
        avro = field.get("type")
        nullable = isinstance(avro, list) and "null" in avro
        out[str(field["name"])] = Column(str(field["name"]), from_avro(avro), avro, nullable, _logical(avro))
    return out
