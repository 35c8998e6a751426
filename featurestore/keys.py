"""Entity keys as bytes: one encoding for HBase row keys, Redis keys and partitioning.

An entity key is a tuple of key values (one per key column). It is encoded as the values'
text joined by ``\\x1f`` (unit separator), which keeps single-column keys readable
(``user_id=42`` -> ``b"42"``). HBase row keys are prefixed by a short salt, two hex digits of a
CRC32 bucket, so sequential ids spread over regions: ``b"0a:42"``.

:func:`encode_key_columns` encodes the keys of a whole batch in Arrow (the write path), with the
same bytes as :func:`encode_key` row by row.

Partitioning of live (Kafka) and replayed (HDFS) streams uses :func:`partition_for`, Kafka's own
murmur2 partitioner over the encoded key, so an entity lands in the same partition number on both.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.errors import ValidationError

SEPARATOR = "\x1f"
SALT_BUCKETS = 16


def encode_key(values: Sequence[object]) -> bytes:
    parts = []
    for value in values:
        if value is None:
            raise ValidationError("an entity key value is null")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValidationError(f"entity key value {value!r} must be an int or a string, not {type(value).__name__}")
        text = str(value)
        if SEPARATOR in text:
            raise ValidationError(f"entity key value {text!r} contains the reserved character \\x1f")
        parts.append(text)
    return SEPARATOR.join(parts).encode()


def encode_key_columns(columns: Sequence[pa.Array | pa.ChunkedArray]) -> pa.Array | None:
    """:func:`encode_key` of every row of the key columns (one array per key column), as a binary
    array computed in Arrow: integers as their decimal text (Arrow's cast to string writes what
    ``str(int)`` does), strings as their utf-8 bytes, joined by :data:`SEPARATOR`.

    None when a row needs :func:`encode_key`'s checks (a null, a type other than integer or
    string, the separator inside a string): the caller then goes row by row and gets its error.
    """
    texts = []
    for column in columns:
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        string = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
        if column.null_count or not (string or pa.types.is_integer(column.type)):
            return None
        if string and pc.any(pc.match_substring(column, SEPARATOR)).as_py():
            return None
        texts.append(column.cast(pa.string()))
    if not texts:
        return None
    joined = texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, SEPARATOR)
    return joined.cast(pa.binary())


def salt_bucket(encoded_key: bytes) -> int:
    return zlib.crc32(encoded_key) % SALT_BUCKETS


def salted_row_key(encoded_key: bytes) -> bytes:
    return b"%02x:" % salt_bucket(encoded_key) + encoded_key


def unsalt_row_key(row_key: bytes) -> bytes:
    return row_key[3:]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit int."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    length4 = length // 4
    for i in range(length4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length & ~3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(encoded_key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner picks for a record with this key."""
    return (murmur2(encoded_key) & 0x7FFFFFFF) % partitions
