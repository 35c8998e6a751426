"""The offline log's FileIO: hdfs:// through hdfs-native, everything else as pyiceberg does it.
No server here: constructing hdfs-native clients does not connect (tests/integration has the rest)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from featurestore.config import OfflineLogConfig
from featurestore.offline import OfflineLog
from featurestore.offline.hdfs import FILE_IO_IMPL, HdfsNativeFileIO, register_duckdb
from featurestore.offline.log import PY_IO_IMPL
from featurestore.schema import Field, TableSchema
from featurestore.types import ValueType

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pyiceberg.*")  # pyparsing 3.3 vs pyiceberg 0.8


def test_hdfs_gets_hdfs_native_and_file_stays_pyarrows() -> None:
    io = HdfsNativeFileIO()
    hdfs = io.fs_by_scheme("hdfs", "127.0.0.1:1")
    assert hdfs.type_name == "py::fsspec+hdfs"  # PyFileSystem(FSSpecHandler(hdfs-native)), not HadoopFileSystem
    assert io.fs_by_scheme("file", None).type_name == "local"
    # pyiceberg 0.8.1 passes hdfs paths without scheme and authority; the authority picks the client
    location = io.parse_location("hdfs://127.0.0.1:1/wh/t/data/x.parquet")
    assert location == ("hdfs", "127.0.0.1:1", "/wh/t/data/x.parquet")
    assert io.fs_by_scheme("hdfs", "127.0.0.1:1") is hdfs  # cached per authority


def test_the_catalog_selects_it_and_local_tables_still_work(tmp_path: Path) -> None:
    log = OfflineLog(OfflineLogConfig(catalog_uri=f"sqlite:///{tmp_path}/c.db", warehouse=str(tmp_path / "wh")))
    assert log.catalog.properties[PY_IO_IMPL] == FILE_IO_IMPL
    schema = TableSchema("t", (Field("k", ValueType.INT64),), (Field("a", ValueType.INT64),))
    table = log.ensure_table(schema)
    assert isinstance(log.catalog.load_table(table.identifier).io, HdfsNativeFileIO)
    table.append(pa.table({"k": [1], "version_ms": [10], "seq": [1], "a": [5]}))
    assert table.scan().column("a").to_pylist() == [5]
    assert table.data_files()[0].startswith("file://")


def test_duckdb_gets_one_name_node_per_connection() -> None:
    con = duckdb.connect()
    assert not register_duckdb(con, ["hdfs://a:1/x", "hdfs://b:1/y"])  # two name nodes in one read
    assert not register_duckdb(con, ["file:///x"])
    assert register_duckdb(con, ["hdfs://a:1/x", "hdfs://a:1/y"])
    assert "hdfs" in con.list_filesystems()
    assert register_duckdb(con, ["hdfs://a:1/z"])  # already there, same name node
    assert not register_duckdb(con, ["hdfs://b:1/z"])  # another name node: the caller scans through Arrow
    other = duckdb.connect()
    assert register_duckdb(other, ["hdfs://b:1/z"])  # connections are independent


def test_a_shared_reader_serves_threads_each_at_its_own_position() -> None:
    # DuckDB reads one file from several threads: each keeps its own position, every read is a
    # positional read_range (hdfs-native's seek/read borrow its reader mutably: "Already borrowed").
    import threading

    from featurestore.offline.hdfs import SharedReader

    data = bytes(range(256)) * 64

    class Reader:
        def __len__(self) -> int:
            return len(data)

        def read_range(self, offset: int, length: int) -> bytes:
            return data[offset : offset + length]

        def seek(self, *_: object) -> None:
            raise AssertionError("seek would move the other threads' reads")

        read = seek

        def close(self) -> None:
            pass

    shared = SharedReader(Reader())
    errors: list[str] = []

    def work(start: int) -> None:
        for i in range(200):
            offset = (start * 997 + i * 61) % (len(data) - 100)
            shared.seek(offset)
            if shared.read(100) != data[offset : offset + 100] or shared.tell() != offset + 100:
                errors.append(f"thread {start} read {i} at {offset}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    shared.seek(-10, 2)
    assert shared.read() == data[-10:] and shared.read(5) == b""
    buffer = bytearray(4)
    shared.seek(3)
    assert shared.readinto(buffer) == 4 and bytes(buffer) == data[3:7]
