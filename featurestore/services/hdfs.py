"""HDFS 3.4: one NameNode (formatted once) and one DataNode, replication 1, permissions off."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from featurestore.services import maven
from featurestore.services.base import Service
from featurestore.services.jvm import LOG4J_PROPERTIES, hadoop_xml, java_argv, write_if_changed
from featurestore.services.ports import (
    HDFS_DATANODE_HTTP_PORT,
    HDFS_DATANODE_IPC_PORT,
    HDFS_DATANODE_PORT,
    HDFS_NAMENODE_HTTP_PORT,
    HDFS_NAMENODE_PORT,
    HDFS_URI,
    HOST,
)
from featurestore.services.process import Layout, port_open, run_once, spawn

NAMENODE_HEAP = "512m"
DATANODE_HEAP = "256m"
CLUSTER_ID = "featurestore-local"
# The NameNode and DataNode HTTP servers look up `webapps/<name>` on the classpath; Hadoop's
# distribution ships these directories beside the jars, Maven Central's jars do not contain them.
WEBAPPS = ("hdfs", "datanode", "secondary", "journal", "static")
WEB_XML = '<?xml version="1.0" encoding="UTF-8"?>\n<web-app version="2.5" xmlns="http://java.sun.com/xml/ns/javaee"/>\n'


def core_site(root: Path) -> dict[str, str]:
    return {
        "fs.defaultFS": HDFS_URI,
        "hadoop.tmp.dir": str(root / "tmp"),
        "hadoop.security.authentication": "simple",
        "hadoop.security.authorization": "false",
    }


def hdfs_site(root: Path) -> dict[str, str]:
    """hdfs-site.xml: loopback addresses from ports.py, replication 1, permissions off."""
    return {
        "dfs.replication": "1",
        "dfs.permissions.enabled": "false",
        "dfs.namenode.name.dir": f"file://{root / 'name'}",
        "dfs.datanode.data.dir": f"file://{root / 'data'}",
        "dfs.namenode.rpc-address": f"{HOST}:{HDFS_NAMENODE_PORT}",
        "dfs.namenode.rpc-bind-host": HOST,
        "dfs.namenode.http-address": f"{HOST}:{HDFS_NAMENODE_HTTP_PORT}",
        "dfs.namenode.secondary.http-address": f"{HOST}:0",
        "dfs.datanode.address": f"{HOST}:{HDFS_DATANODE_PORT}",
        "dfs.datanode.http.address": f"{HOST}:{HDFS_DATANODE_HTTP_PORT}",
        "dfs.datanode.ipc.address": f"{HOST}:{HDFS_DATANODE_IPC_PORT}",
        "dfs.datanode.hostname": HOST,
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.namenode.safemode.threshold-pct": "0",
        "dfs.namenode.safemode.extension": "0",
        "dfs.webhdfs.enabled": "true",
    }


def _jmx(bean: str) -> dict[str, Any]:
    url = f"http://{HOST}:{HDFS_NAMENODE_HTTP_PORT}/jmx?qry={bean}"
    with urllib.request.urlopen(url, timeout=3) as resp:
        beans: list[dict[str, Any]] = json.load(resp).get("beans", [])
    if not beans:
        raise ConnectionError(f"NameNode JMX has no bean {bean}")
    return beans[0]


class HdfsService(Service):
    name = "hdfs"
    components = ("namenode", "datanode")
    timeout_s = 180.0

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self._jars: tuple[str, ...] = ()

    @property
    def address(self) -> str:
        return HDFS_URI

    @property
    def ports(self) -> tuple[int, ...]:
        return (
            HDFS_NAMENODE_PORT,
            HDFS_NAMENODE_HTTP_PORT,
            HDFS_DATANODE_PORT,
            HDFS_DATANODE_HTTP_PORT,
            HDFS_DATANODE_IPC_PORT,
        )

    def prepare(self) -> float:
        resolution = maven.resolve("hadoop", self.layout, service=self.name)
        self._jars = resolution.jars
        return resolution.seconds

    def _classpath(self) -> list[str]:
        conf = self.dir / "conf"
        write_if_changed(conf / "core-site.xml", hadoop_xml(core_site(self.dir)))
        write_if_changed(conf / "hdfs-site.xml", hadoop_xml(hdfs_site(self.dir)))
        write_if_changed(conf / "log4j.properties", LOG4J_PROPERTIES)
        for app in WEBAPPS:
            write_if_changed(conf / "webapps" / app / "WEB-INF" / "web.xml", WEB_XML)
        return [str(conf), *self._jars]

    def launch(self) -> list[subprocess.Popen[bytes]]:
        if not self._jars:
            self.prepare()
        classpath = self._classpath()
        namenode_main = "org.apache.hadoop.hdfs.server.namenode.NameNode"
        props = {"hadoop.log.dir": str(self.dir / "logs"), "hadoop.home.dir": str(self.dir)}
        if not (self.dir / "name" / "current" / "VERSION").exists():
            run_once(
                java_argv(
                    classpath,
                    namenode_main,
                    ["-format", "-nonInteractive", "-clusterid", CLUSTER_ID],
                    heap=NAMENODE_HEAP,
                    props=props,
                ),
                log_path=self.log_file("namenode"),
                timeout=120,
                what="formatting the NameNode",
                service=self.name,
            )
        namenode = spawn(
            java_argv(classpath, namenode_main, heap=NAMENODE_HEAP, props=props),
            log_path=self.log_file("namenode"),
            pid_path=self.pid_file("namenode"),
            cwd=self.dir,
        )
        datanode = spawn(
            java_argv(classpath, "org.apache.hadoop.hdfs.server.datanode.DataNode", heap=DATANODE_HEAP, props=props),
            log_path=self.log_file("datanode"),
            pid_path=self.pid_file("datanode"),
            cwd=self.dir,
        )
        return [namenode, datanode]

    def check(self) -> None:
        """Lists `/` through hdfs-native, then asks the NameNode for a live DataNode and no safe mode."""
        if not port_open(HOST, HDFS_NAMENODE_PORT):
            raise ConnectionError(f"nothing listens on {HOST}:{HDFS_NAMENODE_PORT}")
        from hdfs_native import Client

        list(Client(HDFS_URI).list_status("/"))
        state = _jmx("Hadoop:service=NameNode,name=FSNamesystemState")
        if int(state.get("NumLiveDataNodes", 0)) < 1:
            raise ConnectionError("the NameNode has no live DataNode yet")
        info = _jmx("Hadoop:service=NameNode,name=NameNodeInfo")
        if info.get("Safemode"):
            raise ConnectionError(f"the NameNode is in safe mode: {info['Safemode']}")
