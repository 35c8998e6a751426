"""The online cache's column-wise reads, against the cell-by-cell statement of the same rules.

``online.cells_to_result`` (TTL, statuses, decoding by type in bulk) and the Redis reply parser
(``packed_rows.cell_columns``, no server needed: rows are packed here as the write script packs
them) must give exactly what the per-cell loop with ``batches.build_result`` and
``types.decode_value`` gives.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import StoreError
from featurestore.schema import Field, TableSchema
from featurestore.storage import online, packed_rows
from featurestore.storage.batches import Cell, build_result
from featurestore.storage.memory_cache import MemoryCache
from featurestore.storage.online import (
    EXPIRED,
    MISSING,
    PRESENT,
    CellColumns,
    Stored,
    cells_to_result,
)
from featurestore.types import ValueType as V
from featurestore.types import arrow_type, encode_value

T0 = 1_700_000_000_000
SCHEMA = TableSchema(
    "cols", (Field("user_id", V.INT64),), (*(Field(f"{t.value}_f", t) for t in V), Field("n2", V.INT64)),
    ttl_ms=1_000,
)
NAMES = SCHEMA.feature_names

_VALUES: dict[V, st.SearchStrategy[Any]] = {
    V.INT64: st.integers(-(2**63), 2**63 - 1),
    V.DOUBLE: st.floats(allow_nan=False) | st.just(float("inf")),
    V.STRING: st.text(max_size=6),
    V.BOOL: st.booleans(),
    V.BYTES: st.binary(max_size=6),
    V.FLOAT_LIST: st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=3),
    V.STRING_LIST: st.lists(st.text(max_size=3), max_size=3),
}


@st.composite
def stored_rows(draw: st.DrawFn, max_keys: int = 6) -> list[dict[str, Stored]]:
    """Per key, per feature: no cell, an explicit null or a value, at a time around T0."""
    rows = []
    for _ in range(draw(st.integers(0, max_keys))):
        row: dict[str, Stored] = {}
        for f in SCHEMA.features:
            kind = draw(st.sampled_from(["absent", "null", "value", "value"]))
            if kind == "absent":
                continue
            ts = T0 + draw(st.integers(-2_000, 2_000))
            value = None if kind == "null" else encode_value(f.dtype, draw(_VALUES[f.dtype]))
            row[f.name] = (ts, draw(st.integers(0, 10**12)), value)
        rows.append(row)
    return rows


def reference(rows: list[dict[str, Stored]], names: tuple[str, ...], now: int) -> pa.Table:
    """The rules cell by cell (what ``OnlineBase.get`` did before reads were column-wise)."""
    found: dict[str, list[Cell]] = {n: [] for n in names}
    statuses: dict[str, list[str]] = {n: [] for n in names}
    for row in rows:
        for name in names:
            cell = row.get(name)
            if cell is None:
                found[name].append(None)
                statuses[name].append(MISSING)
            elif SCHEMA.ttl_ms is not None and cell[0] <= now - SCHEMA.ttl_ms:
                found[name].append(None)
                statuses[name].append(EXPIRED)
            else:
                found[name].append((cell[0], cell[2]))
                statuses[name].append(PRESENT)
    return build_result(SCHEMA, [(i,) for i in range(len(rows))], names, found, statuses)


def packed(rows: list[dict[str, Stored]], rng: random.Random, extra: bool = False) -> list[bytes | None]:
    """One GET reply per key: its packed row (None for a key with no cell), fields in any order."""
    replies: list[bytes | None] = []
    for row in rows:
        cells = list(row.items())
        if extra:
            cells.append(("dropped_feature", (5, 1, b"x")))
        rng.shuffle(cells)  # a row lists its fields in the order they were first written
        replies.append(packed_rows.pack(dict(cells)) if cells or rng.random() < 0.5 else None)
    return replies


def result(cells: CellColumns, names: tuple[str, ...], now: int) -> pa.Table:
    return cells_to_result(SCHEMA, [(i,) for i in range(cells.keys)], names, cells, now)


@settings(max_examples=150, deadline=None)
@given(stored_rows(), st.integers(-1_500, 2_500), st.randoms(use_true_random=False))
def test_columns_read_as_the_cell_by_cell_rules(rows: list[dict[str, Stored]], at: int, rng: random.Random) -> None:
    now = T0 + at
    for names in (NAMES, tuple(rng.sample(NAMES, rng.randint(1, len(NAMES))))):
        want = reference(rows, names, now)
        assert result(CellColumns.from_rows(rows, names), names, now).equals(want)
        replies = packed(rows, rng, extra=rng.random() < 0.5)
        assert result(packed_rows.cell_columns(replies, names), names, now).equals(want)
        # the per-row unpacking a read of few keys takes, and read_stored's rows
        assert packed_rows.rows(replies, names) == [{n: r[n] for n in names if n in r} for r in rows]
        for i, (row, reply) in enumerate(zip(rows, replies, strict=True)):  # a read of one key
            want_one = reference([row], names, now)
            assert result(packed_rows.read_cells([reply], names), names, now).equals(want_one), i


def test_many_keys_one_type_and_every_status() -> None:
    """The bulk path at the bench's shape (one decoder for every feature) with all three statuses."""
    schema = TableSchema("wide", (Field("user_id", V.INT64),), tuple(Field(f"f{i}", V.DOUBLE) for i in range(20)),
                         ttl_ms=100)
    rows: list[dict[str, Stored]] = [
        {f"f{i}": (T0 + (k % 3) * 100, k, None if (k + i) % 7 == 0 else encode_value(V.DOUBLE, k * 0.5 + i))
         for i in range(20) if (k + i) % 5}
        for k in range(300)
    ]
    names = schema.feature_names
    got = cells_to_result(schema, [(k,) for k in range(300)], names,
                          packed_rows.cell_columns(packed(rows, random.Random(1)), names), T0 + 150)
    f3 = list(zip(*(got.column(c).to_pylist() for c in ("f3", "f3__ts", "f3__status")), strict=True))
    assert f3[0] == (None, None, EXPIRED) and f3[1] == (1 * 0.5 + 3, T0 + 100, PRESENT)
    assert f3[2] == (None, None, MISSING) and f3[4] == (None, T0 + 100, PRESENT)  # (4 + 3) % 7: explicit null
    assert {s for c in names for s in got.column(f"{c}__status").to_pylist()} == {PRESENT, MISSING, EXPIRED}


def test_empty_reads() -> None:
    empty_row = packed_rows.pack({})
    for cells in (CellColumns.from_rows([], NAMES), packed_rows.cell_columns([], NAMES),
                  packed_rows.cell_columns([None, None], NAMES), packed_rows.cell_columns([empty_row], NAMES)):
        got = result(cells, NAMES, T0)
        assert got.num_rows == cells.keys and got.schema == reference([{}] * cells.keys, NAMES, T0).schema
    only_missing = result(packed_rows.cell_columns([packed_rows.pack({"n2": (T0, 1, None)})], ("int64_f", "string_f")),
                          ("int64_f", "string_f"), T0)
    assert only_missing.to_pylist() == [{"user_id": 0, "int64_f": None, "int64_f__ts": None,
                                         "int64_f__status": MISSING, "string_f": None, "string_f__ts": None,
                                         "string_f__status": MISSING}]


def _corrupt() -> list[bytes]:
    """Rows the write script did not write: cut short, grown, another version, bad lengths, bad names."""
    good = packed_rows.pack({"int64_f": (1, 1, encode_value(V.INT64, 1)), "string_f": (2, 2, b"abc")})
    empty_value = packed_rows.pack({"string_f": (2, 2, b"")})  # its last 4 bytes: the length
    head = 7 + len(b"int64_f\0string_f\0")
    second_length = head + 20 + 16  # the second record's length field
    return [
        b"", b"x", b"\x01\x02", good[:-1], good + b"z", b"\x02" + good[1:], good[: head - 1] + b"!" + good[head:],
        good[:second_length] + (-2).to_bytes(4, "little", signed=True) + good[second_length + 4 :],
        # an empty value's length made -2: nothing is left over, the length alone is wrong
        empty_value[:-4] + (-2).to_bytes(4, "little", signed=True),
        good[:second_length] + (9).to_bytes(4, "little") + good[second_length + 4 :],
        good[:7] + b"\xff\xfe\0string_f\0" + good[head:],
        b"\x01\x03" + good[2:],  # three fields counted, two named
        packed_rows.pack({}) + b"z",  # no field, yet more bytes
    ]


@pytest.mark.parametrize("row", _corrupt())
def test_rows_no_writer_wrote_are_store_errors(row: bytes) -> None:
    """A corrupt row: a StoreError on both read paths, never a crash or a wrong value."""
    names = ("int64_f", "string_f")
    with pytest.raises(StoreError, match="not a packed row"):
        packed_rows.rows([row], names)
    with pytest.raises(StoreError, match="not a packed row"):
        packed_rows.one_row_cells(row, names)
    with pytest.raises(StoreError, match="not a packed row"):
        packed_rows.cell_columns([packed_rows.pack({"n2": (1, 1, None)}), row] * 50, names)


def test_negative_times_and_explicit_nulls() -> None:
    row = packed_rows.pack({"int64_f": (-5, 3, None)})
    assert packed_rows.rows([row], ("int64_f",)) == [{"int64_f": (-5, 3, None)}]
    got = result(packed_rows.cell_columns([row], ("int64_f",)), ("int64_f",), -5)
    assert got.column("int64_f__ts").to_pylist() == [-5]
    assert got.column("int64_f").to_pylist() == [None] and got.column("int64_f__status").to_pylist() == [PRESENT]


@pytest.mark.parametrize(("dtype", "value", "what"), [
    (V.INT64, b"1234567", "int64"), (V.DOUBLE, b"123456789", "double"), (V.STRING, b"\xff\xfe", "utf-8"),
])
def test_values_that_no_codec_wrote_are_store_errors(dtype: V, value: bytes, what: str) -> None:
    schema = TableSchema("bad", (Field("user_id", V.INT64),), (Field("x", dtype),))
    cells = CellColumns.from_rows([{"x": (T0, 1, value)}] * 3, ("x",))
    with pytest.raises(StoreError, match=what):
        cells_to_result(schema, [(1,), (2,), (3,)], ("x",), cells, T0)
    expired = TableSchema("bad", schema.keys, schema.features, ttl_ms=1)  # not served: not decoded
    assert cells_to_result(expired, [(1,)], ("x",), CellColumns.from_rows([{"x": (T0, 1, value)}], ("x",)),
                           T0 + 5).column("x__status").to_pylist() == [EXPIRED]


def test_a_feature_asked_twice() -> None:
    cache = MemoryCache()
    schema = TableSchema("twice", (Field("user_id", V.INT64),), (Field("a", V.INT64), Field("b", V.STRING)))
    cache.ensure_table(schema)
    cache.write("twice", pa.table({"user_id": [1, 2], "version_ms": [T0, T0], "seq": [1, 2], "a": [5, None],
                                   "b": ["x", "y"]}))
    got = cache.get("twice", [2, 1, 3], ["a", "b", "a"], now_ms=T0)
    assert got.column_names == ["user_id", "a", "a__ts", "a__status", "b", "b__ts", "b__status", "a", "a__ts",
                                "a__status"]
    assert got.column(1).to_pylist() == got.column(7).to_pylist() == [None, 5, None]
    assert got.column(3).to_pylist() == [PRESENT, PRESENT, MISSING]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(list(V)), st.data())
def test_bulk_decoders_match_decode_value(dtype: V, data: st.DataObject) -> None:
    """Each type's column decoder gives what ``types.decode_value`` gives, nulls and gaps included."""
    values = data.draw(st.lists(st.none() | _VALUES[dtype], max_size=12))
    rows: list[dict[str, Stored]] = [
        {} if v is None and i % 2 else {"x": (T0, i, None if v is None else encode_value(dtype, v))}
        for i, v in enumerate(values)
    ]
    schema = TableSchema("dec", (Field("user_id", V.INT64),), (Field("x", dtype),))
    got = cells_to_result(schema, [(i,) for i in range(len(rows))], ("x",), CellColumns.from_rows(rows, ("x",)), T0)
    assert got.column("x").to_pylist() == pa.array(values, got.schema.field("x").type).to_pylist()
    assert np.array_equal(np.asarray(got.column("x__status").to_pylist()) == MISSING,
                          np.array([v is None and i % 2 == 1 for i, v in enumerate(values)], bool))


@pytest.mark.parametrize("dtype", list(V))
def test_python_values_are_to_pylist(dtype: V) -> None:
    """The fast Arrow-to-Python conversion of the SDK's many-key reads gives what to_pylist gives,
    nulls as None and a NaN as a NaN, for every value type."""
    samples = {V.INT64: [0, -(2**63), 2**63 - 1], V.DOUBLE: [1.5, float("nan"), -0.0, float("inf")],
               V.STRING: ["", "a,b", "é"], V.BOOL: [True, False], V.BYTES: [b"", b"\x00,"],
               V.FLOAT_LIST: [[], [1.5, 2.0]], V.STRING_LIST: [["a"], []]}[dtype]
    for values in (samples, [None, *samples, None], [None, None], []):
        array = pa.array(values, arrow_type(dtype))
        got, want = online.python_values(array), array.to_pylist()
        assert repr(got) == repr(want) and [type(v) for v in got] == [type(v) for v in want]
