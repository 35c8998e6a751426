"""HBase 2.6 standalone (master + region server + ZooKeeper in one JVM) and its Thrift servers.

Jars come from Maven Central (`maven/hbase.xml`); the standalone master stores its data under
`.services/hbase/data` (file://). Two Thrift servers (buffered transport, binary protocol, what
happybase uses by default): Thrift v1 on HBASE_THRIFT_PORT (happybase: reads, admin) and Thrift2
on HBASE_THRIFT2_PORT (`putMultiple` with a timestamp per cell: the store's batch writes). One
server speaks one API, hence two processes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from featurestore.services import maven
from featurestore.services.base import Service
from featurestore.services.jvm import LOG4J_PROPERTIES, hadoop_xml, java_argv, write_if_changed
from featurestore.services.ports import (
    HBASE_MASTER_INFO_PORT,
    HBASE_MASTER_PORT,
    HBASE_REGIONSERVER_INFO_PORT,
    HBASE_REGIONSERVER_PORT,
    HBASE_THRIFT2_INFO_PORT,
    HBASE_THRIFT2_PORT,
    HBASE_THRIFT_INFO_PORT,
    HBASE_THRIFT_PORT,
    HOST,
    ZOOKEEPER_PORT,
)
from featurestore.services.process import Layout, port_open, spawn

MASTER_HEAP = "1g"
THRIFT_HEAP = "256m"

# (component, main class, port, info port): Thrift v1 for happybase, Thrift2 for per-cell timestamps.
THRIFT_SERVERS = (
    ("thrift", "org.apache.hadoop.hbase.thrift.ThriftServer", HBASE_THRIFT_PORT, HBASE_THRIFT_INFO_PORT),
    ("thrift2", "org.apache.hadoop.hbase.thrift2.ThriftServer", HBASE_THRIFT2_PORT, HBASE_THRIFT2_INFO_PORT),
)


def thrift_args(port: int, info_port: int) -> list[str]:
    """Command-line arguments of a Thrift server (v1 or v2: the same options) on the loopback."""
    return ["start", "-p", str(port), "-b", HOST, "--infoport", str(info_port)]


def hbase_site(root: Path) -> dict[str, str]:
    """hbase-site.xml for a standalone HBase whose state lives under `root`."""
    return {
        "hbase.cluster.distributed": "false",
        "hbase.rootdir": f"file://{root / 'data'}",
        "hbase.tmp.dir": str(root / "tmp"),
        "hbase.zookeeper.quorum": HOST,
        "hbase.zookeeper.property.clientPort": str(ZOOKEEPER_PORT),
        "hbase.zookeeper.property.dataDir": str(root / "zookeeper"),
        "hbase.unsafe.stream.capability.enforce": "false",
        "hbase.wal.provider": "filesystem",
        "hbase.localcluster.assign.random.ports": "false",
        "hbase.master.port": str(HBASE_MASTER_PORT),
        "hbase.master.info.port": str(HBASE_MASTER_INFO_PORT),
        "hbase.master.info.bindAddress": HOST,
        "hbase.master.ipc.address": HOST,
        "hbase.regionserver.port": str(HBASE_REGIONSERVER_PORT),
        "hbase.regionserver.info.port": str(HBASE_REGIONSERVER_INFO_PORT),
        "hbase.regionserver.info.bindAddress": HOST,
        "hbase.regionserver.ipc.address": HOST,
        "hbase.regionserver.thrift.port": str(HBASE_THRIFT_PORT),
        "hbase.regionserver.thrift.ipaddress": HOST,
        "hbase.regionserver.thrift.framed": "false",
        "hbase.regionserver.thrift.compact": "false",
        "hbase.thrift.info.port": str(HBASE_THRIFT_INFO_PORT),
        "hbase.thrift.info.bindAddress": HOST,
    }


class HBaseService(Service):
    name = "hbase"
    components: tuple[str, ...] = ("master", "thrift", "thrift2")
    timeout_s = 240.0

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._jars: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return f"{HOST}:{HBASE_THRIFT_PORT}"

    @property
    def ports(self) -> tuple[int, ...]:
        return (
            HBASE_THRIFT_PORT,
            HBASE_THRIFT_INFO_PORT,
            HBASE_THRIFT2_PORT,
            HBASE_THRIFT2_INFO_PORT,
            ZOOKEEPER_PORT,
            HBASE_MASTER_PORT,
            HBASE_MASTER_INFO_PORT,
            HBASE_REGIONSERVER_PORT,
            HBASE_REGIONSERVER_INFO_PORT,
        )

    def prepare(self) -> float:
        resolution = maven.resolve("hbase", self.layout, service=self.name)
        self._jars = resolution.jars
        return resolution.seconds

    def _write_conf(self) -> Path:
        conf = self.dir / "conf"
        write_if_changed(conf / "hbase-site.xml", hadoop_xml(hbase_site(self.dir)))
        write_if_changed(conf / "log4j.properties", LOG4J_PROPERTIES)
        return conf

    def launch(self) -> list[subprocess.Popen[bytes]]:
        if not self._jars:
            self.prepare()
        conf = self._write_conf()
        classpath = [str(conf), *self._jars]
        props = {"hbase.log.dir": str(self.dir / "logs"), "hbase.home.dir": str(self.dir)}
        master = spawn(
            java_argv(classpath, "org.apache.hadoop.hbase.master.HMaster", ["start"], heap=MASTER_HEAP, props=props),
            log_path=self.log_file("master"),
            pid_path=self.pid_file("master"),
            cwd=self.dir,
        )
        thrift = [
            spawn(
                java_argv(classpath, main_class, thrift_args(port, info_port), heap=THRIFT_HEAP, props=props),
                log_path=self.log_file(component),
                pid_path=self.pid_file(component),
                cwd=self.dir,
            )
            for component, main_class, port, info_port in THRIFT_SERVERS
        ]
        return [master, *thrift]

    def check(self) -> None:
        check_thrift(HBASE_THRIFT_PORT, HBASE_THRIFT2_PORT)


def check_thrift(thrift_port: int, thrift2_port: int) -> None:
    """Both Thrift servers answer: v1 lists tables (happybase), the other speaks Thrift2."""
    for port in (thrift_port, thrift2_port):
        if not port_open(HOST, port):
            raise ConnectionError(f"nothing listens on {HOST}:{port}")
    import happybase

    from featurestore.storage.hbase_thrift2 import is_thrift2_server

    conn = happybase.Connection(HOST, thrift_port, timeout=5000, autoconnect=True)
    try:
        conn.tables()
    finally:
        conn.close()
    if not is_thrift2_server(HOST, thrift2_port):
        raise ConnectionError(f"{HOST}:{thrift2_port} is not an HBase Thrift2 server")
