"""Value types and their conversions, in one table.

A feature value has one :class:`ValueType`. Every representation the store uses (Arrow, Avro,
Flink SQL, the bytes in an HBase cell or in a Redis packed row) is derived from the row of that type
in :data:`_TYPES`, so a new type is added in exactly one place.

Values are encoded one by one (:func:`encode_value`) or a whole Arrow column at a time
(:func:`encode_array`, what the store's writes use): the types whose bytes are Arrow's own buffers
(big-endian numbers, utf-8 strings, bytes, bools) have a column-wise encoder in their row that
gives the same bytes without a Python object per value; the others go value by value.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    # ``encode`` of a whole Arrow array (nulls kept), or None when the array's Arrow type is not
    # one it handles; None here: value by value. Must give exactly the bytes of ``encode``.
    encode_arrow: Callable[[pa.Array], pa.Array | None] | None = None


_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")


def _json_list(value: Any) -> bytes:
    return json.dumps(list(value), separators=(",", ":")).encode()


def fixed_width_binary(numbers: np.ndarray[Any, Any]) -> pa.Array:
    """Each number's bytes (in the array's byte order: ``astype(">i8")`` gives ``struct``'s
    ``>q``) as a binary array, sliced from the one numpy buffer without a Python object each."""
    width = numbers.dtype.itemsize
    data = pa.py_buffer(np.ascontiguousarray(numbers).view(np.uint8))
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(numbers), [None, data]).cast(pa.binary())


def _with_nulls(encoded: pa.Array, values: pa.Array) -> pa.Array:
    if not values.null_count:
        return encoded
    return pc.if_else(values.is_null(), pa.scalar(None, pa.binary()), encoded)


def _big_endian(dtype: str, accepts: Callable[[pa.DataType], bool]) -> Callable[[pa.Array], pa.Array | None]:
    """The column-wise ``struct.pack(">q"/">d", int/float(v))``: numpy converts (C casts, rounding
    as ``float()`` of each value would) and byte-swaps. Arrow types whose values the per-value path
    refuses (bool, decimal, ...) are left to it for its error, and so is uint64: past 2**63 - 1,
    ``>q`` fails, and must fail as it did."""

    def encode(values: pa.Array) -> pa.Array | None:
        if not accepts(values.type):
            return None
        filled = values.fill_null(0) if values.null_count else values
        return _with_nulls(fixed_width_binary(filled.to_numpy().astype(dtype)), values)

    return encode


def _is_int(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) and not pa.types.is_uint64(t)


def _is_number(t: pa.DataType) -> bool:
    return _is_int(t) or pa.types.is_float32(t) or pa.types.is_float64(t)


def _as_binary(accepts: Callable[[pa.DataType], bool]) -> Callable[[pa.Array], pa.Array | None]:
    """Strings as their utf-8 buffer (what ``str.encode()`` gives), bytes as themselves."""
    return lambda values: values.cast(pa.binary()) if accepts(values.type) else None


def _bools(values: pa.Array) -> pa.Array | None:
    if not pa.types.is_boolean(values.type):
        return None
    return pc.if_else(values, pa.scalar(b"\x01", pa.binary()), pa.scalar(b"\x00", pa.binary()))


_TYPES: dict[ValueType, _TypeInfo] = {
    ValueType.INT64: _TypeInfo(
        pa.int64(),
        "long",
        "BIGINT",
        "BIGINT",
        (int,),
        lambda v: _I64.pack(int(v)),
        lambda b: _I64.unpack(b)[0],
        _big_endian(">i8", _is_int),
    ),
    ValueType.DOUBLE: _TypeInfo(
        pa.float64(),
        "double",
        "DOUBLE",
        "DOUBLE",
        (float, int),
        lambda v: _F64.pack(float(v)),
        lambda b: _F64.unpack(b)[0],
        _big_endian(">f8", _is_number),
    ),
    ValueType.STRING: _TypeInfo(
        pa.string(),
        "string",
        "STRING",
        "VARCHAR",
        (str,),
        lambda v: str(v).encode(),
        lambda b: b.decode(),
        _as_binary(lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)),
    ),
    ValueType.BOOL: _TypeInfo(
        pa.bool_(),
        "boolean",
        "BOOLEAN",
        "BOOLEAN",
        (bool,),
        lambda v: b"\x01" if v else b"\x00",
        lambda b: b == b"\x01",
        _bools,
    ),
    ValueType.BYTES: _TypeInfo(
        pa.binary(),
        "bytes",
        "BYTES",
        "BLOB",
        (bytes,),
        bytes,
        bytes,
        _as_binary(
            lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t)
        ),
    ),
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
    """A value as the bytes stored in an HBase cell or a Redis packed row."""
    info = _TYPES[value_type]
    if not isinstance(value, info.python) or (value_type is not ValueType.BOOL and isinstance(value, bool)):
        raise ValidationError(f"value {value!r} is a {type(value).__name__}, not {value_type.value}")
    return info.encode(value)


def encode_array(value_type: ValueType, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """:func:`encode_value` of every value of an Arrow column, as a binary array (nulls stay null).

    Column-wise where the type's row has an ``encode_arrow`` for the column's Arrow type (a write of
    10k rows then costs a few Arrow calls instead of 10k ``encode_value`` calls); value by value
    otherwise, with the same checks and errors.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    column_wise = _TYPES[value_type].encode_arrow
    encoded = None if column_wise is None else column_wise(values)
    if encoded is None:
        one_by_one = [None if v is None else encode_value(value_type, v) for v in values.to_pylist()]
        encoded = pa.array(one_by_one, pa.binary())
    return encoded


def decode_value(value_type: ValueType, data: bytes) -> Any:
    return _TYPES[value_type].decode(data)
