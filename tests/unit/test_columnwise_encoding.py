"""Column-wise encoding of versions batches: byte for byte what the per-value path gives.

``types.encode_array``, ``keys.encode_key_columns``, ``batches.pack_values`` and
``batches.encode_cells`` against ``types.encode_value``, ``keys.encode_key`` and
``batches.pack_value`` applied value by value, on random batches of every value type with nulls,
unicode and the edge values of each type; the same errors for values of the wrong type.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featurestore.errors import ValidationError
from featurestore.keys import encode_key, encode_key_columns
from featurestore.schema import Field, TableSchema
from featurestore.storage.batches import (
    Cells,
    encode_cells,
    encode_keys,
    normalize_keys,
    pack_value,
    pack_values,
)
from featurestore.types import ValueType, arrow_type, encode_array, encode_value

TEXT = ["", "a", "naïve ☃", "商品", "é" * 40, "\x00nul", "emoji 🎉", "x,y", "line\nbreak"]
FLOATS = [0.0, -0.0, 1.5, -2.25, math.inf, -math.inf, math.nan, 5e-324, 1.7976931348623157e308, 0.1]
INTS = [0, 1, -1, 2**63 - 1, -(2**63), 2**53 + 1, 42]


def per_value(value_type: ValueType, values: pa.Array | pa.ChunkedArray) -> list[bytes | None]:
    return [None if v is None else encode_value(value_type, v) for v in values.to_pylist()]


def random_column(value_type: ValueType, n: int, rng: np.random.Generator) -> pa.Array:
    """n values of ``value_type`` (about a fifth null), edge values included."""
    pick = rng.integers(0, 1_000_000, n)
    values: list[Any]
    if value_type is ValueType.INT64:
        values = [INTS[i % len(INTS)] if i % 3 == 0 else int(i) - 500_000 for i in pick]
    elif value_type is ValueType.DOUBLE:
        values = [FLOATS[i % len(FLOATS)] if i % 3 == 0 else float(rng.normal()) * 10 ** int(i % 30) for i in pick]
    elif value_type is ValueType.STRING:
        values = [TEXT[i % len(TEXT)] + str(i) * int(i % 2) for i in pick]
    elif value_type is ValueType.BOOL:
        values = [bool(i % 2) for i in pick]
    elif value_type is ValueType.BYTES:
        values = [bytes(rng.integers(0, 256, int(i % 9), dtype=np.uint8)) for i in pick]
    elif value_type is ValueType.FLOAT_LIST:
        values = [[FLOATS[(i + j) % len(FLOATS)] for j in range(int(i % 4))] for i in pick]
    else:
        values = [[TEXT[(i + j) % len(TEXT)] for j in range(int(i % 4))] for i in pick]
    nulls = rng.random(n) < 0.2
    data = [None if null else v for v, null in zip(values, nulls, strict=True)]
    return pa.array(data, arrow_type(value_type))


@pytest.mark.parametrize("value_type", list(ValueType))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_encode_array_is_encode_value_byte_for_byte(value_type: ValueType, seed: int) -> None:
    rng = np.random.default_rng(seed)
    column = random_column(value_type, 2_000, rng)
    assert encode_array(value_type, column).to_pylist() == per_value(value_type, column)
    sliced = column.slice(17, 1_500)  # an offset into the buffers
    assert encode_array(value_type, sliced).to_pylist() == per_value(value_type, sliced)
    chunked = pa.chunked_array([column.slice(0, 300), column.slice(300)])
    assert encode_array(value_type, chunked).to_pylist() == per_value(value_type, chunked)
    assert encode_array(value_type, column.slice(0, 0)).to_pylist() == []
    assert encode_array(value_type, pa.nulls(3, column.type)).to_pylist() == [None] * 3


@pytest.mark.parametrize(
    ("value_type", "column"),
    [
        (ValueType.INT64, pa.array([-128, 0, None, 127], pa.int8())),
        (ValueType.INT64, pa.array([0, 2**32 - 1, None], pa.uint32())),
        (ValueType.INT64, pa.array([0, 2**63 - 1, None], pa.uint64())),
        (ValueType.INT64, pa.array([-(2**31), None], pa.int32())),
        (ValueType.DOUBLE, pa.array([0.1, None, -0.0, math.nan], pa.float32())),
        (ValueType.DOUBLE, pa.array([2**53 + 1, -(2**63), None, 7], pa.int64())),  # float(int) rounds
        (ValueType.DOUBLE, pa.array([1, None, 255], pa.uint8())),
        (ValueType.STRING, pa.array([*TEXT, None], pa.large_string())),
        (ValueType.STRING, pa.array([*TEXT, None, "a", "a"], pa.string()).dictionary_encode()),
        (ValueType.BYTES, pa.array([b"", b"\x00", None, b"\xff\xfe"], pa.large_binary())),
        (ValueType.BYTES, pa.array([b"ab", None, b"\x00\x01"], pa.binary(2))),
        (ValueType.FLOAT_LIST, pa.array([[1.0, None], [], None], pa.large_list(pa.float64()))),
        (ValueType.FLOAT_LIST, pa.array([[1, 2], None], pa.list_(pa.int64()))),  # ints stay ints in JSON
        (ValueType.STRING, pa.nulls(2)),
    ],
)
def test_other_arrow_types_give_the_per_value_bytes(value_type: ValueType, column: pa.Array) -> None:
    assert encode_array(value_type, column).to_pylist() == per_value(value_type, column)


@pytest.mark.parametrize(
    ("value_type", "column"),
    [
        (ValueType.INT64, pa.array([1.0, 2.5])),
        (ValueType.INT64, pa.array([True, None])),
        (ValueType.INT64, pa.array(["5"])),
        (ValueType.DOUBLE, pa.array([False])),
        (ValueType.DOUBLE, pa.array(["0.5"])),
        (ValueType.STRING, pa.array([5])),
        (ValueType.STRING, pa.array([b"bytes"])),
        (ValueType.BOOL, pa.array([0, 1])),
        (ValueType.BYTES, pa.array(["text"])),
        (ValueType.FLOAT_LIST, pa.array([1.0])),
    ],
)
def test_values_of_the_wrong_type_are_the_same_errors(value_type: ValueType, column: pa.Array) -> None:
    with pytest.raises(ValidationError) as expected:
        per_value(value_type, column)
    with pytest.raises(ValidationError) as got:
        encode_array(value_type, column)
    assert got.value.message == expected.value.message


def test_uint64_beyond_int64_fails_as_before() -> None:
    column = pa.array([2**63], pa.uint64())
    with pytest.raises(struct.error):
        per_value(ValueType.INT64, column)
    with pytest.raises(struct.error):
        encode_array(ValueType.INT64, column)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), max_size=20),
    st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)), max_size=20),
    st.lists(st.one_of(st.none(), st.text()), max_size=20),
    st.lists(st.one_of(st.none(), st.binary()), max_size=20),
    st.lists(st.one_of(st.none(), st.booleans()), max_size=20),
)
def test_encode_array_property(
    ints: list[int | None],
    floats: list[float | None],
    texts: list[str | None],
    blobs: list[bytes | None],
    bools: list[bool | None],
) -> None:
    for value_type, values in [
        (ValueType.INT64, pa.array(ints, pa.int64())),
        (ValueType.DOUBLE, pa.array(floats, pa.float64())),
        (ValueType.STRING, pa.array(texts, pa.string())),
        (ValueType.BYTES, pa.array(blobs, pa.binary())),
        (ValueType.BOOL, pa.array(bools, pa.bool_())),
    ]:
        encoded = encode_array(value_type, values)
        assert encoded.to_pylist() == per_value(value_type, values)
        assert pack_values(encoded).to_pylist() == [pack_value(v) for v in per_value(value_type, values)]


def test_pack_values_is_pack_value() -> None:
    encoded = pa.array([None, b"", b"\x00", b"\x01", b"abc", None], pa.binary())
    assert pack_values(encoded).to_pylist() == [pack_value(v) for v in encoded.to_pylist()]
    assert pack_values(encoded.slice(2)).to_pylist() == [pack_value(v) for v in encoded.slice(2).to_pylist()]
    assert pack_values(pa.array([], pa.binary())).to_pylist() == []


# -- keys --------------------------------------------------------------------------------------
def test_encode_key_columns_is_encode_key_per_row() -> None:
    ints = pa.array([0, -1, 2**63 - 1, -(2**63), 42], pa.int64())
    texts = pa.array(["u1", "", "naïve ☃", "商品", "a,b"], pa.large_string())
    small = pa.array([1, 2, 3, 4, 255], pa.uint8())
    for columns in ([ints], [texts], [ints, texts], [texts, small, ints], [pa.chunked_array([ints[:2], ints[2:]])]):
        expected = [encode_key(row) for row in zip(*(c.to_pylist() for c in columns), strict=True)]
        encoded = encode_key_columns(columns)
        assert encoded is not None and encoded.to_pylist() == expected


@pytest.mark.parametrize(
    "column",
    [pa.array([1, None]), pa.array([True, False]), pa.array([1.0]), pa.array(["a\x1fb"]), pa.array([b"x"])],
)
def test_keys_that_need_checks_go_row_by_row(column: pa.Array) -> None:
    assert encode_key_columns([column]) is None


SCHEMA = TableSchema(
    "users",
    (Field("user_id", ValueType.INT64), Field("country", ValueType.STRING)),
    tuple(Field(f"f_{t.value}", t) for t in ValueType),
)


def reference_cells(schema: TableSchema, batch: pa.Table) -> Cells:
    """encode_cells as it was: every key checked and encoded row by row, every value by value."""
    key_rows = list(zip(*(batch.column(k).to_pylist() for k in schema.key_names), strict=True))
    _, keys = encode_keys(schema, key_rows)
    values: dict[str, list[bytes | None]] = {}
    for feature in schema.features:
        if feature.name in batch.column_names:
            try:
                values[feature.name] = per_value(feature.dtype, batch.column(feature.name))
            except ValidationError as exc:
                raise ValidationError(exc.message, location=f"{schema.name}.{feature.name}") from None
    return Cells(keys, batch.column("version_ms").to_pylist(), batch.column("seq").to_pylist(), values)


def random_batch(schema: TableSchema, n: int, seed: int, features: list[str] | None = None) -> pa.Table:
    rng = np.random.default_rng(seed)
    columns: dict[str, Any] = {
        "user_id": pa.array(rng.integers(-50, 50, n), pa.int64()),
        "country": pa.array([TEXT[i % len(TEXT)] for i in rng.integers(0, 100, n)], pa.string()),
        "version_ms": pa.array(1_700_000_000_000 + rng.integers(0, 20, n), pa.int64()),
        "seq": pa.array(rng.integers(0, 5, n), pa.int64()),
    }
    for feature in schema.features:
        if features is None or feature.name in features:
            columns[feature.name] = random_column(feature.dtype, n, rng)
    return pa.table(columns)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_encode_cells_is_the_per_value_path(seed: int) -> None:
    batch = random_batch(SCHEMA, 3_000, seed)
    assert encode_cells(SCHEMA, batch) == reference_cells(SCHEMA, batch)
    part = random_batch(SCHEMA, 50, seed, features=["f_int64", "f_string"])
    assert encode_cells(SCHEMA, part) == reference_cells(SCHEMA, part)
    chunked = pa.concat_tables([batch.slice(0, 10), batch.slice(10)])
    assert encode_cells(SCHEMA, chunked) == reference_cells(SCHEMA, batch)


@pytest.mark.parametrize(
    ("column", "values"),
    [
        ("user_id", pa.array([1.5, 2.0])),
        ("user_id", pa.array([True, False])),
        ("user_id", pa.array(["1", "2"])),
        ("country", pa.array([1, 2])),
        ("country", pa.array(["ok", "bad\x1fkey"])),
        ("f_int64", pa.array([1.0, 2.0])),
        ("f_string", pa.array([b"a", b"b"])),
    ],
)
def test_encode_cells_refuses_what_the_per_value_path_refuses(column: str, values: pa.Array) -> None:
    batch = random_batch(SCHEMA, 2, 5, features=["f_int64", "f_string"])
    batch = batch.set_column(batch.column_names.index(column), column, values)
    with pytest.raises(ValidationError) as expected:
        reference_cells(SCHEMA, batch)
    with pytest.raises(ValidationError) as got:
        encode_cells(SCHEMA, batch)
    assert (got.value.message, got.value.location) == (expected.value.message, expected.value.location)


def test_normalize_keys_from_arrow_is_the_checked_path() -> None:
    batch = random_batch(SCHEMA, 500, 9, features=[])
    keys = batch.select(["user_id", "country"])
    rows = list(zip(keys.column(0).to_pylist(), keys.column(1).to_pylist(), strict=True))
    assert normalize_keys(SCHEMA, keys) == normalize_keys(SCHEMA, rows) == rows
    assert all(type(r[0]) is int and type(r[1]) is str for r in normalize_keys(SCHEMA, keys))
    with pytest.raises(ValidationError, match="is a float"):
        normalize_keys(SCHEMA, pa.table({"user_id": [1.5], "country": ["a"]}))
    with pytest.raises(ValidationError, match="NoneType"):
        normalize_keys(SCHEMA, pa.table({"user_id": pa.array([None, 1], pa.int64()), "country": ["a", "b"]}))
