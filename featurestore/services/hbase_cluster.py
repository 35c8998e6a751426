"""HBase in pseudo-distributed mode: ZooKeeper, a master and two region servers as separate
processes, plus the two Thrift servers the store talks to (`featurestore services up hbase-cluster`).

The standalone `hbase` service runs ZooKeeper, the master and one region server in one JVM; this
one runs them as a cluster does, so regions are assigned over two region servers, a table
pre-split on the salt buckets spreads its writes over both, and a region server that dies has
its regions reassigned to the other. Same jars (`maven/hbase.xml`), its own ports (beside the
standalone service, which may run at the same time) and state under `.services/hbase-cluster/`
(`file://`: the region servers share this machine's disk, as they would share HDFS).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

from featurestore.services.hbase import THRIFT_SERVERS, HBaseService, check_thrift, thrift_args
from featurestore.services.jvm import LOG4J_PROPERTIES, hadoop_xml, java_argv, write_if_changed
from featurestore.services.ports import HOST
from featurestore.services.process import spawn

ZOOKEEPER_PORT = 2182
MASTER_PORT = 16100
MASTER_INFO_PORT = 16110
#: (component, RPC port, info port) of each region server
REGION_SERVERS = (("regionserver-1", 16120, 16130), ("regionserver-2", 16220, 16230))
THRIFT_PORT = 9190
THRIFT_INFO_PORT = 9195
THRIFT2_PORT = 9191
THRIFT2_INFO_PORT = 9196
URI = f"hbase://{HOST}:{THRIFT_PORT}?thrift2={HOST}:{THRIFT2_PORT}"
ZOOKEEPER_SESSION_TIMEOUT_MS = 10_000  # a region server that dies is noticed within this


def cluster_site(root: Path) -> dict[str, str]:
    """hbase-site.xml shared by every process of the cluster (each region server gets its ports
    on its command line)."""
    return {
        "hbase.cluster.distributed": "true",
        "hbase.rootdir": f"file://{root / 'data'}",
        "hbase.tmp.dir": str(root / "tmp"),
        "hbase.zookeeper.quorum": HOST,
        "hbase.zookeeper.property.clientPort": str(ZOOKEEPER_PORT),
        "hbase.zookeeper.property.dataDir": str(root / "zookeeper"),
        "hbase.zookeeper.property.maxSessionTimeout": str(ZOOKEEPER_SESSION_TIMEOUT_MS * 2),
        "zookeeper.session.timeout": str(ZOOKEEPER_SESSION_TIMEOUT_MS),
        "hbase.unsafe.stream.capability.enforce": "false",
        "hbase.wal.provider": "filesystem",
        "hbase.master.port": str(MASTER_PORT),
        "hbase.master.info.port": str(MASTER_INFO_PORT),
        "hbase.master.info.bindAddress": HOST,
        "hbase.master.ipc.address": HOST,
        "hbase.regionserver.ipc.address": HOST,
        "hbase.regionserver.info.bindAddress": HOST,
        "hbase.regionserver.thrift.ipaddress": HOST,
        "hbase.regionserver.thrift.framed": "false",
        "hbase.regionserver.thrift.compact": "false",
    }


def master_state() -> tuple[int, bool]:
    """How many region servers the master counts as live, and whether it finished initializing
    (before that, table creation is refused with "Master is initializing"): its JMX endpoint."""
    query = f"http://{HOST}:{MASTER_INFO_PORT}/jmx?qry=Hadoop:service=HBase,name=Master,sub=Server"
    with urllib.request.urlopen(query, timeout=5) as response:
        beans = json.load(response)["beans"]
    if not beans:
        return 0, False
    return int(beans[0]["numRegionServers"]), int(beans[0]["masterFinishedInitializationTime"]) > 0


class HBaseClusterService(HBaseService):
    """The standalone service's jars (`prepare`), other processes, ports and health check."""

    name = "hbase-cluster"
    components = ("zookeeper", "master", *(rs for rs, _, _ in REGION_SERVERS), "thrift", "thrift2")

    @property
    def address(self) -> str:
        return f"{HOST}:{THRIFT_PORT}"

    @property
    def ports(self) -> tuple[int, ...]:
        servers = tuple(p for _, rpc, info in REGION_SERVERS for p in (rpc, info))
        return (ZOOKEEPER_PORT, MASTER_PORT, MASTER_INFO_PORT, *servers,
                THRIFT_PORT, THRIFT_INFO_PORT, THRIFT2_PORT, THRIFT2_INFO_PORT)

    def launch(self) -> list[subprocess.Popen[bytes]]:
        if not self._jars:
            self.prepare()
        conf = self.dir / "conf"
        write_if_changed(conf / "hbase-site.xml", hadoop_xml(cluster_site(self.dir)))
        write_if_changed(conf / "log4j.properties", LOG4J_PROPERTIES)
        classpath = [str(conf), *self._jars]
        props = {"hbase.log.dir": str(self.dir / "logs"), "hbase.home.dir": str(self.dir)}

        def start(component: str, main_class: str, args: list[str], heap: str) -> subprocess.Popen[bytes]:
            argv = java_argv(classpath, main_class, args, heap=heap, props=props)
            return spawn(argv, log_path=self.log_file(component), pid_path=self.pid_file(component), cwd=self.dir)

        procs = [start("zookeeper", "org.apache.hadoop.hbase.zookeeper.HQuorumPeer", [], "128m"),
                 start("master", "org.apache.hadoop.hbase.master.HMaster", ["start"], "512m")]
        for component, rpc, info in REGION_SERVERS:
            ports = ["-D", f"hbase.regionserver.port={rpc}", "-D", f"hbase.regionserver.info.port={info}"]
            procs.append(start(component, "org.apache.hadoop.hbase.regionserver.HRegionServer", [*ports, "start"],
                               "512m"))
        thrift_ports = {"thrift": (THRIFT_PORT, THRIFT_INFO_PORT), "thrift2": (THRIFT2_PORT, THRIFT2_INFO_PORT)}
        for component, main_class, _, _ in THRIFT_SERVERS:
            port, info_port = thrift_ports[component]
            procs.append(start(component, main_class, thrift_args(port, info_port), "256m"))
        return procs

    def check(self) -> None:
        live, initialized = master_state()
        if live < len(REGION_SERVERS):
            raise ConnectionError(f"{live} of {len(REGION_SERVERS)} region servers are live")
        if not initialized:
            raise ConnectionError("the master is initializing")
        check_thrift(THRIFT_PORT, THRIFT2_PORT)
