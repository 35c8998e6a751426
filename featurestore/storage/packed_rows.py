"""The latest cells of one (feature table, entity key) in the online cache, packed into one
string: how the Redis cache stores a key (one ``GET`` reads it, a Lua script writes it) and how
the memory cache keeps one (a bytes object, which Python's garbage collector never scans).

Why packed. A read of 100 keys x 50 features from Redis hashes (``HGETALL``) had Redis walk 5,000
fields and send each as its own bulk string, the client make 10,000 bytes objects and find each
cell's commas: ~6 ms, where one string per key is 100 replies whose cells numpy reads in place.

Format (little-endian), version 1::

    u8  version (1)
    u16 m            the number of fields
    u32 names_len    then the field names, each followed by a NUL byte (names_len bytes)
    m x (i64 version_ms, i64 seq, i32 length)   length -1: an explicit null value
    the values of the fields with a length >= 0, in field order, back to back

The names come first and are the same bytes for every key a table's writers wrote in the same
order, so a reader parses them once per distinct header (:func:`_layout`) and views the records
of all keys with that header as one numpy record array. A field is found by name: a table whose
definition gained features since (``ensure_table`` merges definitions) keeps its older keys
readable.

Writes (:data:`WRITE_LUA`): per field, the new cell replaces the stored one only if its
(version_ms, seq) is greater, and the string is rewritten once per key and call, atomically on
the server: replays and out-of-order writes never regress a value, whichever process writes. The
script compares times and sequence numbers exactly over the whole int64 range (a replay's
``seq``, file index << 32 | row, can pass 2^53, past which Lua's doubles round). :func:`pack` is
the same encoding in Python (the tests check the script against it).
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from featurestore.errors import StoreError
from featurestore.storage.online import CellColumns, Stored

VERSION = 1
_HEAD = struct.Struct("<BHI")  # version, m, names_len
_RECORD = struct.Struct("<qqi")  # version_ms, seq, length
_RECORDS = np.dtype([("ts", "<i8"), ("seq", "<i8"), ("length", "<i4")])  # packed: 20 bytes, as _RECORD
assert _RECORDS.itemsize == _RECORD.size

# KEYS[1]: the key's string. ARGV: (field, version_ms and seq as 16 little-endian bytes,
# "," .. value or "" for a null) per cell (:func:`cell_args`). Returns how many cells landed.
# Lua's numbers are doubles, exact to 2^53 only: times and sequence numbers stay bytes, compared
# as signed high and unsigned low 32-bit halves (struct's i4/I4, exact), so every int64 orders
# as in Python. A stored field's 20-byte record is kept as it is unless the field is written.
WRITE_LUA = """
local function newer(new, old)
  local lo, hi, slo, shi = struct.unpack('<I4i4I4i4', new)
  local olo, ohi, oslo, oshi = struct.unpack('<I4i4I4i4', old)
  if hi ~= ohi then return hi > ohi end
  if lo ~= olo then return lo > olo end
  if shi ~= oshi then return shi > oshi end
  return slo > oslo
end
local blob = redis.call('GET', KEYS[1])
local names, recs, vals, index = {}, {}, {}, {}
local m = 0
if blob then
  local version, count, names_len, pos = struct.unpack('<BI2I4', blob)
  if version ~= 1 then
    return redis.error_reply('online cache: ' .. KEYS[1] .. ' is not a packed row of version 1')
  end
  m = count
  local i = 0
  for name in string.gmatch(string.sub(blob, pos, pos + names_len - 1), '([^%z]*)%z') do
    i = i + 1
    names[i] = name
    index[name] = i
  end
  pos = pos + names_len
  local at = pos + 20 * m
  for j = 1, m do
    recs[j] = string.sub(blob, pos, pos + 19)
    local len = struct.unpack('<i4', blob, pos + 16)
    pos = pos + 20
    if len >= 0 then
      vals[j] = string.sub(blob, at, at + len - 1)
      at = at + len
    else
      vals[j] = false
    end
  end
end
local landed = 0
for a = 1, #ARGV, 3 do
  local name = ARGV[a]
  local j = index[name]
  if not j then
    m = m + 1
    j = m
    names[j] = name
    index[name] = j
  end
  if recs[j] == nil or newer(ARGV[a + 1], recs[j]) then
    local v = ARGV[a + 2]
    if string.sub(v, 1, 1) == ',' then
      vals[j] = string.sub(v, 2)
      recs[j] = ARGV[a + 1] .. struct.pack('<i4', #v - 1)
    else
      vals[j] = false
      recs[j] = ARGV[a + 1] .. struct.pack('<i4', -1)
    end
    landed = landed + 1
  end
end
if landed == 0 then return 0 end
local text = table.concat(names, '\\0') .. '\\0'
local parts = {struct.pack('<BI2I4', 1, m, #text), text, table.concat(recs)}
for j = 1, m do
  if vals[j] then parts[#parts + 1] = vals[j] end
end
redis.call('SET', KEYS[1], table.concat(parts))
return landed
"""
_TIMES = struct.Struct("<qq")


def cell_args(cell: Stored) -> tuple[bytes, bytes]:
    """A cell as the last two of :data:`WRITE_LUA`'s three arguments per field: its times (16
    bytes) and its value (``,`` and the encoded value, or empty for an explicit null)."""
    ts, seq, value = cell
    return _TIMES.pack(ts, seq), b"" if value is None else b"," + value


def malformed(detail: str) -> StoreError:
    return StoreError(
        f"the online cache holds a value that is not a packed row: {detail}",
        hint="the key was not written by this store; delete it (delete_key) and let the writers rewrite it",
    )


def pack(cells: Mapping[str, Stored]) -> bytes:
    """The packed row of ``cells`` (field order kept), as the write script stores it."""
    text = b"".join(name.encode() + b"\0" for name in cells)
    records = [_RECORD.pack(ts, seq, -1 if value is None else len(value)) for ts, seq, value in cells.values()]
    values = [value for _, _, value in cells.values() if value is not None]
    return b"".join([_HEAD.pack(VERSION, len(cells), len(text)), text, *records, *values])


@dataclass(frozen=True)
class _Layout:
    """What a row's header says: its field names and where its records start."""

    names: tuple[str, ...]
    records_at: int  # the header's length

    @functools.cached_property
    def encoded(self) -> dict[str, int]:
        return {name: c for c, name in enumerate(self.names)}

    def columns(self, features: tuple[str, ...]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """(the row's fields that are asked for, their positions in ``features``)."""
        return _columns(self, features)


@functools.lru_cache(maxsize=256)
def _columns(layout: _Layout, features: tuple[str, ...]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    pairs = [(layout.encoded[name], j) for j, name in enumerate(features) if name in layout.encoded]
    fields = np.array([c for c, _ in pairs], np.int64)
    return fields, np.array([j for _, j in pairs], np.int64)


@functools.lru_cache(maxsize=256)
def _parse_header(header: bytes) -> _Layout:
    version, m, names_len = _HEAD.unpack_from(header)
    text = header[_HEAD.size :]
    if version != VERSION or len(text) != names_len or (text and not text.endswith(b"\0")):
        raise malformed("its header is not version 1 with NUL-terminated names")
    try:
        names = tuple(name.decode() for name in text[:-1].split(b"\0")) if text else ()
    except UnicodeDecodeError:
        raise malformed("a field name is not UTF-8") from None
    if len(names) != m:
        raise malformed(f"its header counts {m} fields and names {len(names)}")
    return _Layout(names, len(header))


def _layout(row: bytes) -> _Layout:
    """The layout of a row's header, parsed once per distinct header."""
    if len(row) < _HEAD.size or row[0] != VERSION:
        raise malformed(f"it starts {row[:8]!r}")
    (names_len,) = struct.unpack_from("<I", row, 3)
    return _parse_header(row[: _HEAD.size + names_len])


def unpack(row: bytes) -> dict[str, Stored]:
    """Every cell of a packed row, by field name."""
    layout = _layout(row)
    m = len(layout.names)
    at = layout.records_at + m * _RECORD.size
    if len(row) < at:
        raise malformed(f"{len(row)} bytes hold no {m} records")
    cells: dict[str, Stored] = {}
    for name, (ts, seq, length) in zip(layout.names, _RECORD.iter_unpack(row[layout.records_at : at]), strict=True):
        if length >= 0:
            cells[name] = (ts, seq, row[at : at + length])
            at += length
        elif length == -1:
            cells[name] = (ts, seq, None)
        else:
            raise malformed(f"field {name!r} has length {length}")
    if at != len(row):
        raise malformed(f"its values take {at} of {len(row)} bytes")
    return cells


def rows(replies: Sequence[bytes | None], features: Sequence[str]) -> list[dict[str, Stored]]:
    """The cells of ``features`` per key (``OnlineBase.read_stored``), from one row (or None) per key."""
    asked = set(features)
    return [{} if row is None else {n: c for n, c in unpack(row).items() if n in asked} for row in replies]


@dataclass
class _Group:
    """The rows of one read that share a header, and their keys."""

    layout: _Layout
    keys: list[int]
    rows: list[bytes]


def _groups(replies: Sequence[bytes | None]) -> list[_Group]:
    """The rows of a read by header (usually one: the rows of keys written alike)."""
    first = next((row for row in replies if row is not None), None)
    if first is None:
        return []
    layout = _layout(first)
    header = first[: layout.records_at]
    if all(row is not None and row.startswith(header) for row in replies):  # a memcmp per row
        return [_Group(layout, list(range(len(replies))), list(replies))]  # type: ignore[arg-type]
    groups: dict[bytes, _Group] = {}
    group = None
    for i, row in enumerate(replies):
        if row is None:
            continue
        if group is None or not row.startswith(header):
            layout = _layout(row)
            header = row[: layout.records_at]
            group = groups.setdefault(header, _Group(layout, [], []))
        group.keys.append(i)
        group.rows.append(row)
    return list(groups.values())


# Up to this many keys a read unpacks each row in Python: below it numpy's cost per call outweighs
# its gain per cell.
UNPACKED_MAX_KEYS = 2


def read_cells(replies: Sequence[bytes | None], features: Sequence[str]) -> CellColumns:
    """The cells of ``features`` for one packed row per key (None: the key has no row)."""
    if len(replies) == 1 and replies[0] is not None:
        return one_row_cells(replies[0], tuple(features))
    if len(replies) <= UNPACKED_MAX_KEYS:
        return CellColumns.from_rows(rows(replies, features), features)
    return cell_columns(replies, features)


def one_row_cells(row: bytes, features: tuple[str, ...]) -> CellColumns:
    """The cells of ``features`` in one key's row: its records viewed as numpy records in place
    (a quarter of the time of unpacking its cells in Python for 50 features)."""
    layout = _layout(row)
    m = len(layout.names)
    tail = layout.records_at + m * _RECORD.size
    if len(row) < tail:
        raise malformed(f"{len(row)} bytes hold no {m} records")
    records = np.frombuffer(row, _RECORDS, m, layout.records_at)
    lengths = records["length"].astype(np.int64)
    has_value = lengths >= 0
    if (m and lengths.min() < -1) or tail + int(lengths[has_value].sum()) != len(row):
        raise malformed("its values do not fill it to its end")
    lengths[~has_value] = 0
    starts = np.cumsum(lengths) - lengths + tail
    fields, columns = layout.columns(features)
    data = np.frombuffer(row, np.uint8)
    if len(columns) == len(features):  # every feature asked for is in the row (the usual read)
        order = fields[np.argsort(columns)]
        return CellColumns(1, np.ones(len(features), np.bool_), records["ts"][order], has_value[order],
                           starts[order], lengths[order], data)
    found = np.zeros(len(features), np.bool_)
    found[columns] = True
    times = np.zeros(len(features), np.int64)
    times[columns] = records["ts"][fields]
    valued = np.zeros(len(features), np.bool_)
    valued[columns] = has_value[fields]
    start = np.zeros(len(features), np.int64)
    start[columns] = starts[fields]
    length = np.zeros(len(features), np.int64)
    length[columns] = lengths[fields]
    return CellColumns(1, found, times, valued, start, length, data)


def cell_columns(replies: Sequence[bytes | None], features: Sequence[str]) -> CellColumns:
    """The cells of ``features`` for one row per key (None: the key has no row), without
    a Python object per cell: the rows are joined into one buffer (the values are read there), and
    the records of every key with one header are joined and viewed as numpy records at once."""
    n, m = len(replies), len(features)
    asked = tuple(features)
    groups = _groups(replies)
    data = np.frombuffer(b"".join([row for g in groups for row in g.rows]), np.uint8)
    parts = []
    offset = 0  # the buffer lists the rows group by group
    for g in groups:
        width = len(g.layout.names) * _RECORD.size
        head, tail = g.layout.records_at, g.layout.records_at + width
        sizes = np.fromiter(map(len, g.rows), np.int64, len(g.rows))
        if np.any(sizes < tail):
            raise malformed(f"a row of {len(g.layout.names)} fields is shorter than their records")
        records = np.frombuffer(b"".join([row[head:tail] for row in g.rows]), _RECORDS).reshape(len(g.rows), -1)
        lengths = records["length"].astype(np.int64)
        has_value = lengths >= 0
        lengths[~has_value] = 0
        ends = np.cumsum(lengths, axis=1)
        if np.any(tail + (ends[:, -1] if width else 0) != sizes) or np.any(records["length"] < -1):
            raise malformed("its values do not fill it to its end")
        bases = np.cumsum(sizes) - sizes + offset
        offset += int(sizes.sum())
        fields, columns = g.layout.columns(asked)
        # per cell, key-major: the row's fields that are asked for
        parts.append((g.keys, fields, columns, records["ts"][:, fields], has_value[:, fields],
                      (bases[:, None] + tail + ends - lengths)[:, fields], lengths[:, fields]))
    if len(parts) == 1 and len(parts[0][0]) == n and len(parts[0][2]) == m:
        # every key, every feature (the usual read): a transpose to feature-major, no scatter
        _, _, columns, *cells = parts[0]
        order = np.argsort(columns)
        ts, valued, start, length = (c[:, order].T.ravel() for c in cells)
        return CellColumns(n, np.ones(n * m, np.bool_), ts, valued, start, length, data)
    found = np.zeros(n * m, np.bool_)
    times = np.zeros(n * m, np.int64)
    valued = np.zeros(n * m, np.bool_)
    start = np.zeros(n * m, np.int64)
    length = np.zeros(n * m, np.int64)
    for keys, fields, columns, ts, has_value, first, size in parts:
        if not len(fields):
            continue
        cell = (columns[None, :] * n + np.array(keys, np.int64)[:, None]).ravel()
        found[cell] = True
        times[cell] = ts.ravel()
        valued[cell] = has_value.ravel()
        start[cell] = first.ravel()
        length[cell] = size.ravel()
    return CellColumns(n, found, times, valued, start, length, data)
