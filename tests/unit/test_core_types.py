"""Value types, table schemas and entity keys."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pytest

from featurestore.errors import ValidationError
from featurestore.keys import encode_key, murmur2, partition_for, salted_row_key, unsalt_row_key
from featurestore.schema import SEQ, VERSION_MS, Field, TableSchema, check_name
from featurestore.types import ValueType, decode_value, encode_value, from_arrow, from_avro


@pytest.mark.parametrize(
    ("value_type", "value"),
    [
        (ValueType.INT64, -(2**63)),
        (ValueType.DOUBLE, 0.1),
        (ValueType.STRING, "naïve ☃"),
        (ValueType.BOOL, False),
        (ValueType.BYTES, b"\x00\xff"),
        (ValueType.FLOAT_LIST, [0.5, -1.0]),
        (ValueType.STRING_LIST, ["a", "b"]),
    ],
)
def test_bytes_codec_round_trips(value_type: ValueType, value: object) -> None:
    assert decode_value(value_type, encode_value(value_type, value)) == value


@pytest.mark.parametrize(
    ("value_type", "value"), [(ValueType.INT64, "5"), (ValueType.INT64, True), (ValueType.STRING, 5)]
)
def test_wrong_python_type_is_a_validation_error(value_type: ValueType, value: object) -> None:
    with pytest.raises(ValidationError, match=value_type.value):
        encode_value(value_type, value)


def test_type_mapping_from_arrow_and_avro() -> None:
    assert from_arrow(pa.int32()) is ValueType.INT64
    assert from_arrow(pa.list_(pa.float32())) is ValueType.FLOAT_LIST
    assert from_arrow(pa.timestamp("ms")) is None
    assert from_avro(["null", "double"]) is ValueType.DOUBLE
    assert from_avro({"type": "long", "logicalType": "timestamp-millis"}) is ValueType.INT64
    assert from_avro({"type": "array", "items": "string"}) is ValueType.STRING_LIST
    assert from_avro(["null", "int", "string"]) is None


def test_unknown_value_type_lists_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="int64"):
        ValueType.parse("integer", location="repo/users.yaml:4")


@pytest.mark.parametrize("bad", ["Clicks", "1d_clicks", "x; DROP TABLE t", "a-b", "", "a" * 64, VERSION_MS, SEQ])
def test_unsafe_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValidationError):
        check_name(bad, what="feature")


def test_table_schema_arrow_layout() -> None:
    schema = TableSchema(
        "user_stats", (Field("user_id", ValueType.INT64),), (Field("clicks_1d", ValueType.INT64),), ttl_ms=10
    )
    assert schema.arrow_schema().names == ["user_id", VERSION_MS, SEQ, "clicks_1d"]
    with pytest.raises(ValidationError, match="two columns"):
        TableSchema("t", (Field("a", ValueType.INT64),), (Field("a", ValueType.INT64),))


def test_keys_encode_salt_and_partition_like_kafka() -> None:
    assert encode_key([42]) == b"42"
    assert encode_key(["u1", 7]) == b"u1\x1f7"
    row = salted_row_key(b"42")
    assert row.endswith(b":42") and unsalt_row_key(row) == b"42"
    assert murmur2(b"21") == -973932308  # Kafka's own test vector
    assert 0 <= partition_for(b"42", 8) < 8
    with pytest.raises(ValidationError):
        encode_key([None])
    with pytest.raises(ValidationError):
        encode_key([1.5])


def test_importing_the_product_starts_no_jvm() -> None:
    code = (
        "import sys, featurestore.config, featurestore.schema, featurestore.keys, sdk.cli;"
        "bad = [m for m in sys.modules if m.startswith(('pyflink', 'py4j', 'apache_beam'))];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
