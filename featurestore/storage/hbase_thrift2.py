"""A minimal client of HBase's Thrift2 server (``THBaseService``), for writes with a timestamp per cell.

HBase's Thrift v1 API (happybase) carries one timestamp per ``mutateRowsTs`` call; the Thrift2
API's ``putMultiple(table, list<TPut>)`` carries one per cell (``TColumnValue.timestamp``). The two
APIs are served by two different servers (``org.apache.hadoop.hbase.thrift.ThriftServer`` and
``org.apache.hadoop.hbase.thrift2.ThriftServer``; one server speaks one of them), so the local
stack runs both (featurestore.services.hbase), with the same transport settings: buffered
transport, binary protocol.

Reads of many rows, each at its own time (``getMultiple``, one ``TGet`` per row with its time
range), go through thriftpy2 objects: :meth:`Thrift2Pool.get_multiple`.

Writes do not build thriftpy2 objects: :func:`put_multiple_call` writes the bytes of a whole
``putMultiple`` call from Arrow arrays (TBinaryProtocol, strict write, the field ids of the IDL
below), since a thriftpy2 ``TColumnValue`` per cell was the largest cost of a write on the Python
side; :class:`Thrift2Pool` sends those bytes and reads the reply with thriftpy2.

The IDL below is a subset of ``org/apache/hadoop/hbase/thrift2/hbase.thrift`` from
``hbase-thrift-2.6.1.jar`` (Apache License 2.0, copyright The Apache Software Foundation): only the
types and methods this module calls, with their field ids, types and names unchanged, which is
all Thrift's wire format depends on.
"""

from __future__ import annotations

import contextlib
import io
import struct
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featurestore.types import fixed_width_binary

_IDL = """
/* Subset of hbase-thrift-2.6.1.jar: org/apache/hadoop/hbase/thrift2/hbase.thrift.
 * Licensed to the Apache Software Foundation (ASF) under the Apache License, Version 2.0. */
namespace py hbase

struct TColumnValue {
  1: required binary family,
  2: required binary qualifier,
  3: required binary value,
  4: optional i64 timestamp,
  5: optional binary tags,
  6: optional byte type
}

enum TDurability {
  USE_DEFAULT = 0,
  SKIP_WAL = 1,
  ASYNC_WAL = 2,
  SYNC_WAL = 3,
  FSYNC_WAL = 4
}

struct TTimeRange {
  1: required i64 minStamp,
  2: required i64 maxStamp
}

struct TColumn {
  1: required binary family,
  2: optional binary qualifier,
  3: optional i64 timestamp
}

struct TGet {
  1: required binary row,
  2: optional list<TColumn> columns,
  3: optional i64 timestamp,
  4: optional TTimeRange timeRange,
  5: optional i32 maxVersions
}

struct TResult {
  1: optional binary row,
  2: required list<TColumnValue> columnValues,
  3: optional bool stale = false
  4: optional bool partial = false
}

struct TCellVisibility {
  1: optional string expression
}

struct TPut {
  1: required binary row,
  2: required list<TColumnValue> columnValues
  3: optional i64 timestamp,
  5: optional map<binary, binary> attributes,
  6: optional TDurability durability,
  7: optional TCellVisibility cellVisibility
}

exception TIOError {
  1: optional string message
  2: optional bool canRetry
}

exception TIllegalArgument {
  1: optional string message
}

struct TTableName {
  1: optional binary ns
  2: required binary qualifier
}

struct TColumnFamilyDescriptor {
  1: required binary name
  2: optional map<binary, binary> attributes
  3: optional map<string, string> configuration
  4: optional i32 blockSize
  10: optional i32 maxVersions
  11: optional i32 minVersions
  13: optional i32 timeToLive
}

struct TTableDescriptor {
 1: required TTableName tableName
 2: optional list<TColumnFamilyDescriptor> columns
 3: optional map<binary, binary> attributes
 4: optional TDurability durability
}

enum TThriftServerType {
  ONE = 1,
  TWO = 2
}

service THBaseService {
  void putMultiple(
    1: required binary table,
    2: required list<TPut> tputs
  ) throws (1: TIOError io)

  list<TResult> getMultiple(
    1: required binary table,
    2: required list<TGet> tgets
  ) throws (1: TIOError io)

  TThriftServerType getThriftServerType()

  void createTable(
    1: required TTableDescriptor desc
    2: optional list<binary> splitKeys
  ) throws (1: TIOError io)
}
"""

#: A connection idle longer than this is closed, not reused: the Thrift2 server drops connections
#: idle for 60 s (its socket read timeout), and the next call on one would fail.
IDLE_S = 45.0

_module: Any = None
_module_lock = threading.Lock()


def thrift2() -> Any:
    """The thriftpy2 module of the IDL subset (loaded once)."""
    global _module
    with _module_lock:
        if _module is None:
            import thriftpy2

            _module = thriftpy2.load_fp(io.StringIO(_IDL), module_name="hbase_thrift2_thrift")
        return _module


def connect(host: str, port: int, timeout_ms: int) -> Any:
    """A connected ``THBaseService`` client: buffered transport, binary protocol (the server defaults)."""
    from thriftpy2.protocol import TCyBinaryProtocolFactory
    from thriftpy2.rpc import make_client
    from thriftpy2.transport import TCyBufferedTransportFactory

    return make_client(
        thrift2().THBaseService, host, port, timeout=timeout_ms,
        proto_factory=TCyBinaryProtocolFactory(),  # type: ignore[no-untyped-call]
        trans_factory=TCyBufferedTransportFactory(),
    )


def is_thrift2_server(host: str, port: int, timeout_ms: int = 5000) -> bool:
    """True when a Thrift2 server answers on host:port (a health check: one round trip)."""
    client = connect(host, port, timeout_ms)
    try:
        return bool(client.getThriftServerType() == thrift2().TThriftServerType.TWO)
    finally:
        client.close()


# TBinaryProtocol, strict write: a call is the version and message type (VERSION_1 | CALL), the
# method name, a sequence id, then the arguments struct. A struct is its fields (a type byte, the
# i16 field id, the value) and a stop byte; binary is an i32 length and the bytes; a list is the
# element type byte, an i32 count and the elements.
_CALL = struct.pack(">I", 0x80010000 | 1)
_STOP = b"\x00"
_I64, _BINARY, _STRUCT, _LIST = 10, 11, 12, 15


def _field(kind: int, field_id: int) -> bytes:
    return struct.pack(">bh", kind, field_id)


def _binary(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _lengths(values: pa.Array) -> pa.Array:
    """The i32 length that goes before each value of a binary array."""
    return fixed_width_binary(pc.binary_length(values).to_numpy().astype(">i4"))


def put_multiple_call(
    table: bytes,
    rows: pa.Array,
    sizes: np.ndarray[Any, np.dtype[np.int64]],
    family: bytes,
    columns: Mapping[bytes, pa.Array],
    timestamps: np.ndarray[Any, np.dtype[np.int64]],
) -> bytes:
    """The bytes of the call ``putMultiple(table, tputs)`` (sequence id 0), as thriftpy2 writes it.

    TPut ``j`` is row ``rows[j]`` with the cells of the next ``sizes[j]`` version rows: per version
    row ``i``, one TColumnValue per entry of ``columns`` (qualifier -> one value per version row, no
    nulls) at timestamp ``timestamps[i]``.

    Written by Arrow, one binary value per version row: its cells, after its TPut's header when it
    is the first row of its TPut, and before the TPut's stop byte when it is the last. The values
    of the rows in order are then the TPuts in order, and one ``binary_join_element_wise`` makes
    them all (no Python call per cell; Arrow also lets other threads run meanwhile).
    """
    n, binary, empty = len(timestamps), pa.binary(), pa.scalar(b"", pa.binary())
    starts = np.cumsum(sizes) - sizes
    put_heads = pc.binary_join_element_wise(
        _field(_BINARY, 1), _lengths(rows), rows,
        _field(_LIST, 2) + bytes([_STRUCT]), fixed_width_binary((sizes * len(columns)).astype(">i4")), empty,
    )
    which = np.full(n, len(rows))  # the TPut whose header starts row i; len(rows): none does
    which[starts] = np.arange(len(rows))
    heads = pa.concat_arrays([put_heads, pa.array([b""], binary)]).take(pa.array(which))
    last = np.zeros(n, bool)
    last[starts + sizes - 1] = True
    tails = pc.if_else(pa.array(last), pa.scalar(_STOP, binary), empty)
    stamps = fixed_width_binary(timestamps.astype(">i8"))
    pieces: list[Any] = [heads]
    for qualifier, values in columns.items():
        head = _field(_BINARY, 1) + _binary(family) + _field(_BINARY, 2) + _binary(qualifier) + _field(_BINARY, 3)
        pieces += [head, _lengths(values), values, _field(_I64, 4), stamps, _STOP]
    body = pc.binary_join_element_wise(*pieces, tails, empty)
    offsets = np.frombuffer(body.buffers()[1], np.int32, n + 1, body.offset * 4)
    data = b"" if n == 0 else memoryview(body.buffers()[2])[offsets[0] : offsets[n]]
    call = _CALL + _binary(b"putMultiple") + struct.pack(">i", 0)
    arguments = _field(_BINARY, 1) + _binary(table) + _field(_LIST, 2) + struct.pack(">bi", _STRUCT, len(rows))
    return b"".join((call, arguments, data, _STOP))


class _Connection:
    """A socket to the Thrift2 server for calls written as bytes (:func:`put_multiple_call`): they
    go to the socket as they are; the reply is read through a buffered transport by thriftpy2."""

    def __init__(self, host: str, port: int, timeout_ms: int) -> None:
        from thriftpy2.protocol import TCyBinaryProtocol
        from thriftpy2.transport import TCyBufferedTransport, TSocket

        self._socket: Any = TSocket(host, port, socket_timeout=timeout_ms)  # type: ignore[no-untyped-call]
        self._transport: Any = TCyBufferedTransport(self._socket)
        self._transport.open()
        self._protocol: Any = TCyBinaryProtocol(self._transport)  # type: ignore[no-untyped-call]

    def put_multiple(self, call: bytes) -> None:
        """Send a call and read its reply, raising what thriftpy2's client would (TIOError, ...)."""
        self._socket.write(call)
        self._reply("putMultiple")

    def call(self, method: str, **arguments: Any) -> Any:
        """A call built by thriftpy2 (``<method>_args``); returns ``success``, raises ``io``."""
        from thriftpy2.thrift import TMessageType

        self._protocol.write_message_begin(method, TMessageType.CALL, 0)
        getattr(thrift2().THBaseService, f"{method}_args")(**arguments).write(self._protocol)
        self._protocol.write_message_end()
        self._transport.flush()
        return self._reply(method)

    def _reply(self, method: str) -> Any:
        """Read the reply to ``method``: its ``success``; the server's TApplicationException or the
        method's ``io`` error (TIOError) raised."""
        from thriftpy2.thrift import TApplicationException, TMessageType

        _, kind, _ = self._protocol.read_message_begin()
        if kind == TMessageType.EXCEPTION:
            error = TApplicationException()
            error.read(self._protocol)
            self._protocol.read_message_end()
            raise error
        result = getattr(thrift2().THBaseService, f"{method}_result")()
        result.read(self._protocol)
        self._protocol.read_message_end()
        if getattr(result, "io", None) is not None:
            raise result.io
        return getattr(result, "success", None)

    def close(self) -> None:
        self._transport.close()

    def __del__(self) -> None:
        # A store dropped without close(): PyFlink may discard a sink function without calling its
        # close() when a local job ends. Close the socket rather than leave it to the collector.
        with contextlib.suppress(Exception):  # nothing to report to during collection
            self._transport.close()


class Thrift2Pool:
    """Up to ``size`` idle connections, taken one per call; a connection that failed is dropped."""

    def __init__(self, host: str, port: int, size: int, timeout_ms: int) -> None:
        self.host, self.port, self._size, self._timeout_ms = host, port, size, timeout_ms
        self._idle: list[tuple[_Connection, float]] = []  # with when each was last used
        self._lock = threading.Lock()

    def put_multiple(self, call: bytes) -> None:
        """Send one ``putMultiple`` call written by :func:`put_multiple_call`."""
        self._with_connection(lambda client: client.put_multiple(call))

    def get_multiple(self, table: bytes, gets: list[Any]) -> list[Any]:
        """``getMultiple``: one ``TResult`` per ``TGet`` (build them with :func:`thrift2`), in order."""
        result: list[Any] = self._with_connection(lambda client: client.call("getMultiple", table=table, tgets=gets))
        return result

    def create_table(
        self, table: str, families: Mapping[str, Mapping[str, int]], split_keys: list[bytes]
    ) -> None:
        """``createTable``: ``table`` (``ns:name`` or ``name``) with ``families`` (name -> ``maxVersions``
        and ``timeToLive`` in seconds, when given) and one region per range between ``split_keys``."""
        t = thrift2()
        namespace, _, qualifier = table.rpartition(":")
        name = t.TTableName(ns=namespace.encode() or None, qualifier=qualifier.encode())
        columns = [
            t.TColumnFamilyDescriptor(
                name=family.encode(), maxVersions=options.get("max_versions"), timeToLive=options.get("time_to_live")
            )
            for family, options in families.items()
        ]
        descriptor = t.TTableDescriptor(tableName=name, columns=columns)
        self._with_connection(lambda client: client.call("createTable", desc=descriptor, splitKeys=split_keys))

    def _with_connection(self, action: Any) -> Any:
        """``action(connection)`` on an idle connection (a new one if none, or if the idle one sat
        longer than ``IDLE_S``: the server closes those); a connection that failed is dropped."""
        now = time.monotonic()
        client = None
        with self._lock:
            while self._idle:
                candidate, since = self._idle.pop()
                if now - since <= IDLE_S:
                    client = candidate
                    break
                candidate.close()
        if client is None:
            client = _Connection(self.host, self.port, self._timeout_ms)
        ok = False
        try:
            value = action(client)
            ok = True
            return value
        except thrift2().TIOError:
            ok = True  # an error HBase reported: the connection itself is fine
            raise
        finally:
            keep = False
            if ok:
                with self._lock:
                    if len(self._idle) < self._size:
                        self._idle.append((client, time.monotonic()))
                        keep = True
            if not keep:
                client.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client, _ in idle:
            client.close()
