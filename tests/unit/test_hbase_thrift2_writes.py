"""HBase writes without a server: the hand-written Thrift2 ``putMultiple`` call and what it holds.

* ``hbase_thrift2.put_multiple_call`` is decoded by thriftpy2 (pure Python and Cython binary
  protocols) into the TPuts it should hold, and those TPuts written by thriftpy2 are the same bytes.
* ``HBaseStore.put`` (and ``_write``) with a pool that keeps the calls instead of sending them:
  the cells decoded from the calls are those of the per-cell path the store used before (highest
  seq per (row, feature, version_ms), the later row among equal seqs; explicit nulls are cells),
  each row in one TPut.
* ``Thrift2Pool`` against a socket that answers like the Thrift2 server: replies, TIOError and
  TApplicationException are read as thriftpy2's client reads them.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from thriftpy2.protocol import TBinaryProtocol, TCyBinaryProtocol
from thriftpy2.thrift import TApplicationException, TMessageType
from thriftpy2.transport import TMemoryBuffer

from featurestore.keys import salted_row_key
from featurestore.schema import Field, TableSchema
from featurestore.storage import hbase_thrift2
from featurestore.storage.batches import Cells, batch_to_cells, pack_value
from featurestore.storage.hbase import HBaseStore
from featurestore.types import ValueType

T = hbase_thrift2.thrift2()


def decode(call: bytes, protocol: Any = TBinaryProtocol) -> tuple[bytes, list[Any]]:
    proto = protocol(TMemoryBuffer(call))
    name, kind, seqid = proto.read_message_begin()
    assert (name, kind, seqid) == ("putMultiple", TMessageType.CALL, 0)
    args = T.THBaseService.putMultiple_args()
    args.read(proto)
    proto.read_message_end()
    return args.table, args.tputs


def thriftpy2_call(table: bytes, tputs: list[Any], protocol: Any = TBinaryProtocol) -> bytes:
    """What thriftpy2's client sends for ``putMultiple(table, tputs)``."""
    buffer = TMemoryBuffer()
    proto = protocol(buffer)
    proto.write_message_begin("putMultiple", TMessageType.CALL, 0)
    T.THBaseService.putMultiple_args(table=table, tputs=tputs).write(proto)
    proto.write_message_end()
    return bytes(buffer.getvalue())


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("protocol", [TBinaryProtocol, TCyBinaryProtocol])
def test_put_multiple_call_is_what_thriftpy2_writes(seed: int, protocol: Any) -> None:
    rng = np.random.default_rng(seed)
    puts = int(rng.integers(1, 60))
    sizes = rng.integers(1, 5, puts).astype(np.int64)
    n = int(sizes.sum())
    rows = pa.array([salted_row_key(f"k{i}-ü".encode() * int(rng.integers(1, 3))) for i in range(puts)], pa.binary())
    timestamps = rng.integers(-(2**62), 2**62, n).astype(np.int64)
    values = {
        b"clicks": pa.array([bytes(rng.integers(0, 256, int(rng.integers(1, 12)), dtype=np.uint8)) for _ in range(n)]),
        b"ctr": pa.array([b"\x00"] * n, pa.binary()),
        "名".encode(): pa.array([b"\x01" + "é".encode() * i for i in range(n)], pa.binary()),
    }
    call = hbase_thrift2.put_multiple_call(b"fs_users", rows, sizes, b"f", values, timestamps)

    expected, i = [], 0
    for row, size in zip(rows.to_pylist(), sizes.tolist(), strict=True):
        cells = [
            T.TColumnValue(family=b"f", qualifier=q, value=v[j].as_py(), timestamp=int(timestamps[j]))
            for j in range(i, i + size)
            for q, v in values.items()
        ]
        expected.append(T.TPut(row=row, columnValues=cells))
        i += size
    assert decode(call, protocol) == (b"fs_users", expected)
    assert call == thriftpy2_call(b"fs_users", expected, protocol)


def test_put_multiple_call_of_one_row() -> None:
    call = hbase_thrift2.put_multiple_call(
        b"t", pa.array([b"00:k"]), np.array([1]), b"f", {b"a": pa.array([b"\x00"])}, np.array([7])
    )
    tput = T.TPut(row=b"00:k", columnValues=[T.TColumnValue(family=b"f", qualifier=b"a", value=b"\x00", timestamp=7)])
    assert call == thriftpy2_call(b"t", [tput])


# -- HBaseStore.put without a server --------------------------------------------------------------
SCHEMA = TableSchema(
    "users",
    (Field("user_id", ValueType.INT64),),
    (
        Field("clicks", ValueType.INT64),
        Field("ctr", ValueType.DOUBLE),
        Field("item", ValueType.STRING),
        Field("tags", ValueType.STRING_LIST),
    ),
)


class KeptCalls:
    """A Thrift2Pool stand-in that keeps each call (from any put thread)."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []
        self._lock = threading.Lock()

    def put_multiple(self, call: bytes) -> None:
        with self._lock:
            self.calls.append(call)

    def close(self) -> None:
        pass

    def cells(self) -> dict[tuple[bytes, bytes, int], bytes]:
        """(row, qualifier, timestamp) -> value of every cell sent; each row in one TPut."""
        found: dict[tuple[bytes, bytes, int], bytes] = {}
        rows: list[bytes] = []
        for call in self.calls:
            table, tputs = decode(call)
            assert table == b"fs_users"
            for tput in tputs:
                rows.append(tput.row)
                for cell in tput.columnValues:
                    assert cell.family == b"f" and (tput.row, cell.qualifier, cell.timestamp) not in found
                    found[(tput.row, cell.qualifier, cell.timestamp)] = cell.value
        assert len(rows) == len(set(rows))
        return found


def per_cell_write(cells: Cells) -> dict[tuple[bytes, bytes, int], bytes]:
    """The cells ``HBaseStore._write`` sent before it went column-wise (its dict, as it was)."""
    best: dict[tuple[bytes, str, int], tuple[int, bytes]] = {}
    rows = [salted_row_key(k) for k in cells.keys]
    for feature, values in cells.values.items():
        for i, value in enumerate(values):
            slot = (rows[i], feature, cells.ts[i])
            old = best.get(slot)
            if old is None or cells.seq[i] >= old[0]:
                best[slot] = (cells.seq[i], pack_value(value))
    return {(row, feature.encode(), ts): value for (row, feature, ts), (_, value) in best.items()}


def random_batch(n: int, seed: int, features: tuple[str, ...] = ("clicks", "ctr", "item", "tags")) -> pa.Table:
    """Few keys and times, so (key, version_ms) repeats often, with ties on seq too."""
    rng = np.random.default_rng(seed)
    nulls = rng.random(n) < 0.2
    columns: dict[str, Any] = {
        "user_id": pa.array(rng.zipf(1.5, n) % 40, pa.int64()),
        "version_ms": pa.array(1_700_000_000_000 + rng.integers(0, 8, n), pa.int64()),
        "seq": pa.array(rng.integers(0, 3, n), pa.int64()),
        "clicks": pa.array(rng.integers(-5, 5, n), pa.int64(), mask=nulls),
        "ctr": pa.array(rng.random(n), pa.float64(), mask=rng.random(n) < 0.2),
        "item": pa.array([None if x else ["", "a", "ünï", "商品"][i % 4] for i, x in enumerate(nulls)], pa.string()),
        "tags": pa.array([None if i % 7 == 0 else ["x", "é"][: i % 3] for i in range(n)], pa.list_(pa.string())),
    }
    return pa.table({name: columns[name] for name in ("user_id", "version_ms", "seq", *features)})


@pytest.fixture
def store() -> Iterator[HBaseStore]:
    hbase = HBaseStore(put_chunk=7, put_threads=3)  # connects to nothing until it sends
    hbase._thrift2 = KeptCalls()  # type: ignore[assignment]
    hbase._schemas[SCHEMA.name] = SCHEMA
    yield hbase
    hbase.close()


@pytest.mark.parametrize("seed", range(6))
def test_put_sends_the_cells_of_the_per_cell_path(store: HBaseStore, seed: int) -> None:
    batch = random_batch(500, seed)
    assert store.put(SCHEMA.name, batch) == 500 * 4
    kept: Any = store._thrift2
    assert len(kept.calls) > 1  # several chunks, sent from several threads
    assert kept.cells() == per_cell_write(batch_to_cells(SCHEMA, batch))


def test_write_from_cells_sends_the_same(store: HBaseStore) -> None:
    batch = random_batch(300, 11, features=("ctr", "item"))
    store._write(SCHEMA, batch_to_cells(SCHEMA, batch))
    kept: Any = store._thrift2
    assert kept.cells() == per_cell_write(batch_to_cells(SCHEMA, batch))


def test_the_later_row_wins_a_tie_and_nulls_are_cells(store: HBaseStore) -> None:
    batch = pa.table(
        {
            "user_id": [1, 1, 1, 2],
            "version_ms": [10, 10, 10, 10],
            "seq": [5, 7, 7, 0],
            "clicks": pa.array([1, 2, None, 4], pa.int64()),
        }
    )
    assert store.put(SCHEMA.name, batch) == 4
    kept: Any = store._thrift2
    assert kept.cells() == {
        (salted_row_key(b"1"), b"clicks", 10): b"\x00",
        (salted_row_key(b"2"), b"clicks", 10): b"\x01" + (4).to_bytes(8, "big"),
    }


def test_a_batch_without_feature_columns_sends_nothing(store: HBaseStore) -> None:
    assert store.put(SCHEMA.name, random_batch(20, 1, features=())) == 0
    assert store.put(SCHEMA.name, random_batch(0, 1)) == 0
    kept: Any = store._thrift2
    assert kept.calls == []


# -- Thrift2Pool against a socket that answers like the server ----------------------------------
def reply(result: Any = None, error: TApplicationException | None = None) -> bytes:
    buffer = TMemoryBuffer()
    proto = TBinaryProtocol(buffer)
    if error is not None:
        proto.write_message_begin("putMultiple", TMessageType.EXCEPTION, 0)
        error.write(proto)
    else:
        proto.write_message_begin("putMultiple", TMessageType.REPLY, 0)
        result.write(proto)
    proto.write_message_end()
    return bytes(buffer.getvalue())


def answering(call: bytes, replies: list[bytes], received: list[bytes]) -> int:
    """A port whose one connection reads ``call`` once per reply and answers each in turn."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection, listener:
            for answer in replies:
                data = b""
                while len(data) < len(call):
                    data += connection.recv(len(call) - len(data))
                received.append(data)
                connection.sendall(answer)

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def test_pool_sends_the_call_and_reads_the_replies() -> None:
    call = hbase_thrift2.put_multiple_call(
        b"t", pa.array([b"00:k"]), np.array([1]), b"f", {b"a": pa.array([b"\x01x"])}, np.array([7])
    )
    ok = reply(T.THBaseService.putMultiple_result())
    io_error = reply(T.THBaseService.putMultiple_result(io=T.TIOError(message="region offline")))
    received: list[bytes] = []
    pool = hbase_thrift2.Thrift2Pool("127.0.0.1", answering(call, [ok, io_error, ok], received), 2, 5_000)
    try:
        pool.put_multiple(call)
        with pytest.raises(T.TIOError, match="region offline"):
            pool.put_multiple(call)
        pool.put_multiple(call)  # the connection survived the error HBase reported
        assert received == [call] * 3
    finally:
        pool.close()


def test_pool_raises_an_application_exception() -> None:
    call = hbase_thrift2.put_multiple_call(
        b"t", pa.array([b"00:k"]), np.array([1]), b"f", {b"a": pa.array([b"\x00"])}, np.array([7])
    )
    error = TApplicationException(TApplicationException.INTERNAL_ERROR, "no such table")
    pool = hbase_thrift2.Thrift2Pool("127.0.0.1", answering(call, [reply(error=error)], []), 2, 5_000)
    try:
        with pytest.raises(TApplicationException, match="no such table"):
            pool.put_multiple(call)
    finally:
        pool.close()
