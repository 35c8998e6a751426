"""Value types and their conversions, in one table.

A feature value has one :class:`ValueType`. Every representation the store uses (Arrow, Avro,
Flink SQL, the bytes in an HBase cell or a Redis hash field) is derived from the row of that type
in :data:`_TYPES`, so a new type is added in exactly one place.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from featurestore.errors import ValidationError


class ValueType(str, enum.Enum):
    INT64 = "int64"
    DOUBLE = "double"
    STRING = "string"
    BOOL = "bool"
    BYTES = "bytes"
    FLOAT_LIST = "float_list"  # embeddings
    STRING_LIST = "string_list"

    @classmethod
    def parse(cls, text: str, *, location: str | None = None) -> ValueType:
        try:
            return cls(text)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise ValidationError(f"unknown value type {text!r}; one of: {names}", location=location) from None


@dataclass(frozen=True)
class _TypeInfo:
    arrow: pa.DataType
    avro: Any
    flink_sql: str
    duckdb: str
    python: tuple[type, ...]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


def _json_list(value: Any) -> bytes:
    return json.dumps(list(value), separators=(",", ":")).encode()


_TYPES: dict[ValueType, _TypeInfo] = {
    ValueType.INT64: _TypeInfo(
        pa.int64(), "long", "BIGINT", "BIGINT", (int,), lambda v: _I64.pack(int(v)), lambda b: _I64.unpack(b)[0]
    ),
    ValueType.DOUBLE: _TypeInfo(
        pa.float64(),
        "double",
        "DOUBLE",
        "DOUBLE",
        (float, int),
        lambda v: _F64.pack(float(v)),
        lambda b: _F64.unpack(b)[0],
    ),
    ValueType.STRING: _TypeInfo(
        pa.string(), "string", "STRING", "VARCHAR", (str,), lambda v: str(v).encode(), lambda b: b.decode()
    ),
    ValueType.BOOL: _TypeInfo(
        pa.bool_(),
        "boolean",
        "BOOLEAN",
        "BOOLEAN",
        (bool,),
        lambda v: b"\x01" if v else b"\x00",
        lambda b: b == b"\x01",
    ),
    ValueType.BYTES: _TypeInfo(pa.binary(), "bytes", "BYTES", "BLOB", (bytes,), bytes, bytes),
    ValueType.FLOAT_LIST: _TypeInfo(
        pa.list_(pa.float64()),
        {"type": "array", "items": "double"},
        "ARRAY<DOUBLE>",
        "DOUBLE[]",
        (list, tuple),
        _json_list,
        lambda b: [float(x) for x in json.loads(b)],
    ),
    ValueType.STRING_LIST: _TypeInfo(
        pa.list_(pa.string()),
        {"type": "array", "items": "string"},
        "ARRAY<STRING>",
        "VARCHAR[]",
        (list, tuple),
        _json_list,
        lambda b: [str(x) for x in json.loads(b)],
    ),
}

# Arrow types seen in data (e.g. int32 columns of a sample file) mapped to the value type they fit.
_FROM_ARROW: dict[pa.DataType, ValueType] = {
    pa.int8(): ValueType.INT64,
    pa.int16(): ValueType.INT64,
    pa.int32(): ValueType.INT64,
    pa.int64(): ValueType.INT64,
    pa.uint8(): ValueType.INT64,
    pa.uint16(): ValueType.INT64,
    pa.uint32(): ValueType.INT64,
    pa.float32(): ValueType.DOUBLE,
    pa.float64(): ValueType.DOUBLE,
    pa.string(): ValueType.STRING,
    pa.large_string(): ValueType.STRING,
    pa.bool_(): ValueType.BOOL,
    pa.binary(): ValueType.BYTES,
    pa.large_binary(): ValueType.BYTES,
}

# Avro primitive names as they appear in a source schema.
_FROM_AVRO: dict[str, ValueType] = {
    "int": ValueType.INT64,
    "long": ValueType.INT64,
    "float": ValueType.DOUBLE,
    "double": ValueType.DOUBLE,
    "string": ValueType.STRING,
    "boolean": ValueType.BOOL,
    "bytes": ValueType.BYTES,
}


def arrow_type(value_type: ValueType) -> pa.DataType:
    return _TYPES[value_type].arrow


def avro_type(value_type: ValueType) -> Any:
    return _TYPES[value_type].avro


def flink_sql_type(value_type: ValueType) -> str:
    return _TYPES[value_type].flink_sql


def duckdb_type(value_type: ValueType) -> str:
    return _TYPES[value_type].duckdb


# A list of values of the element type on the left is the value type on the right.
_LIST_OF = {ValueType.DOUBLE: ValueType.FLOAT_LIST, ValueType.STRING: ValueType.STRING_LIST}


def from_arrow(data_type: pa.DataType) -> ValueType | None:
    """The value type an Arrow column maps to, or ``None`` when none fits."""
    if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
        inner = from_arrow(data_type.value_type)
        return None if inner is None else _LIST_OF.get(inner)
    return _FROM_ARROW.get(data_type)


def from_avro(avro: Any) -> ValueType | None:
    """The value type of an Avro field type (a primitive name, a nullable union, an array, or a
    logical type), or ``None`` when none fits."""
    if isinstance(avro, list):  # a union: ["null", T]
        non_null = [t for t in avro if t != "null"]
        return from_avro(non_null[0]) if len(non_null) == 1 else None
    if isinstance(avro, dict):
        if avro.get("logicalType") in ("timestamp-millis", "timestamp-micros"):
            return ValueType.INT64
        if avro.get("type") == "array":
            inner = from_avro(avro.get("items"))
            return None if inner is None else _LIST_OF.get(inner)
        return from_avro(avro.get("type"))
    if isinstance(avro, str):
        return _FROM_AVRO.get(avro)
    return None


def encode_value(value_type: ValueType, value: Any) -> bytes:
    """A value as the bytes stored in an HBase cell or a Redis hash field."""
    info = _TYPES[value_type]
    if not isinstance(value, info.python) or (value_type is not ValueType.BOOL and isinstance(value, bool)):
        raise ValidationError(f"value {value!r} is a {type(value).__name__}, not {value_type.value}")
    return info.encode(value)


def decode_value(value_type: ValueType, data: bytes) -> Any:
    return _TYPES[value_type].decode(data)
