"""A minimal client of HBase's Thrift2 server (``THBaseService``), for writes with a timestamp per cell.

HBase's Thrift v1 API (happybase) carries one timestamp per ``mutateRowsTs`` call; the Thrift2
API's ``putMultiple(table, list<TPut>)`` carries one per cell (``TColumnValue.timestamp``). The two
APIs are served by two different servers (``org.apache.hadoop.hbase.thrift.ThriftServer`` and
``org.apache.hadoop.hbase.thrift2.ThriftServer``; one server speaks one of them), so the local
stack runs both (featurestore.services.hbase), with the same transport settings: buffered
transport, binary protocol.

The IDL below is a subset of ``org/apache/hadoop/hbase/thrift2/hbase.thrift`` from
``hbase-thrift-2.6.1.jar`` (Apache License 2.0, copyright The Apache Software Foundation): only the
types and methods this module calls, with their field ids, types and names unchanged, which is
all Thrift's wire format depends on.
"""

from __future__ import annotations

import io
import threading
from typing import Any

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

enum TThriftServerType {
  ONE = 1,
  TWO = 2
}

service THBaseService {
  void putMultiple(
    1: required binary table,
    2: required list<TPut> tputs
  ) throws (1: TIOError io)

  TThriftServerType getThriftServerType()
}
"""

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


class Thrift2Pool:
    """Up to ``size`` idle connections, taken one per call; a connection that failed is dropped."""

    def __init__(self, host: str, port: int, size: int, timeout_ms: int) -> None:
        self.host, self.port, self._size, self._timeout_ms = host, port, size, timeout_ms
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def put_multiple(self, table: bytes, puts: list[Any]) -> None:
        with self._lock:
            client = self._idle.pop() if self._idle else None
        if client is None:
            client = connect(self.host, self.port, self._timeout_ms)
        ok = False
        try:
            client.putMultiple(table, puts)
            ok = True
        except thrift2().TIOError:
            ok = True  # an error HBase reported: the connection itself is fine
            raise
        finally:
            keep = False
            if ok:
                with self._lock:
                    if len(self._idle) < self._size:
                        self._idle.append(client)
                        keep = True
            if not keep:
                client.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for client in idle:
            client.close()
