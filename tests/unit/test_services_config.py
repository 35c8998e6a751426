"""Generated configs and command lines of the local services (pure: nothing is started)."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

from featurestore.services import ports
from featurestore.services.hbase import THRIFT_SERVERS, HBaseService, hbase_site, thrift_args
from featurestore.services.hdfs import core_site, hdfs_site
from featurestore.services.jvm import JDK17_FLAGS, hadoop_xml, java_argv
from featurestore.services.kafka import new_cluster_id, render_properties, server_properties
from featurestore.services.redis import redis_conf


def _parse_site(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)
    return {p.findtext("name") or "": p.findtext("value") or "" for p in root.iter("property")}


def test_hadoop_xml_round_trips_and_escapes() -> None:
    props = {"a.b": "x<y&z", "c": "file:///tmp/d"}
    assert _parse_site(hadoop_xml(props)) == props


def test_hbase_site_standalone_on_loopback(tmp_path: Path) -> None:
    site = hbase_site(tmp_path)
    assert site["hbase.cluster.distributed"] == "false"
    assert site["hbase.rootdir"] == f"file://{tmp_path}/data"
    assert site["hbase.unsafe.stream.capability.enforce"] == "false"
    assert site["hbase.zookeeper.property.clientPort"] == str(ports.ZOOKEEPER_PORT)
    assert site["hbase.regionserver.thrift.port"] == str(ports.HBASE_THRIFT_PORT)
    # happybase's defaults: buffered transport, binary protocol.
    assert site["hbase.regionserver.thrift.framed"] == "false"
    assert site["hbase.regionserver.thrift.compact"] == "false"
    assert site["hbase.master.info.port"] == str(ports.HBASE_MASTER_INFO_PORT)
    assert all(v == ports.HOST for k, v in site.items() if k.endswith(("ipc.address", "bindAddress", "ipaddress")))


def test_hbase_runs_thrift_v1_and_thrift2_on_their_ports(tmp_path: Path) -> None:
    from featurestore.services.process import Layout

    svc = HBaseService(Layout(tmp_path))
    assert svc.components == ("master", "thrift", "thrift2")
    by_component = {c: (main, port, info) for c, main, port, info in THRIFT_SERVERS}
    assert by_component == {
        "thrift": (
            "org.apache.hadoop.hbase.thrift.ThriftServer", ports.HBASE_THRIFT_PORT, ports.HBASE_THRIFT_INFO_PORT
        ),
        "thrift2": (
            "org.apache.hadoop.hbase.thrift2.ThriftServer", ports.HBASE_THRIFT2_PORT, ports.HBASE_THRIFT2_INFO_PORT
        ),
    }
    assert {ports.HBASE_THRIFT2_PORT, ports.HBASE_THRIFT2_INFO_PORT} <= set(svc.ports)
    assert len(set(svc.ports)) == len(svc.ports)
    assert thrift_args(ports.HBASE_THRIFT2_PORT, ports.HBASE_THRIFT2_INFO_PORT) == [
        "start", "-p", str(ports.HBASE_THRIFT2_PORT), "-b", ports.HOST, "--infoport", str(ports.HBASE_THRIFT2_INFO_PORT)
    ]
    # Both servers read the same hbase-site: buffered transport, binary protocol (the Thrift2 client's too).
    site = hbase_site(tmp_path)
    assert site["hbase.regionserver.thrift.framed"] == "false" and site["hbase.regionserver.thrift.compact"] == "false"


def test_hbase_store_thrift2_address_from_uri() -> None:
    from featurestore.storage.hbase import HBaseStore

    default = HBaseStore.from_uri("hbase://10.0.0.5:9090")
    assert default.thrift2_address == f"10.0.0.5:{ports.HBASE_THRIFT2_PORT}"
    assert HBaseStore.from_uri("hbase://10.0.0.5:9090?thrift2=10.0.0.6:9191").thrift2_address == "10.0.0.6:9191"
    assert HBaseStore.from_uri("hbase://10.0.0.5:9090?thrift2=:9191").thrift2_address == "10.0.0.5:9191"


def test_hbase_store_rejects_a_bad_thrift2_option() -> None:
    import pytest

    from featurestore.errors import ConfigError
    from featurestore.storage.hbase import HBaseStore

    with pytest.raises(ConfigError, match="thrift2"):
        HBaseStore.from_uri("hbase://127.0.0.1:9090?thrift2=somewhere")


def test_hdfs_sites(tmp_path: Path) -> None:
    core, hdfs = core_site(tmp_path), hdfs_site(tmp_path)
    assert core["fs.defaultFS"] == f"hdfs://{ports.HOST}:{ports.HDFS_NAMENODE_PORT}"
    assert hdfs["dfs.replication"] == "1"
    assert hdfs["dfs.permissions.enabled"] == "false"
    assert hdfs["dfs.namenode.name.dir"] == f"file://{tmp_path}/name"
    assert hdfs["dfs.datanode.address"] == f"{ports.HOST}:{ports.HDFS_DATANODE_PORT}"
    assert hdfs["dfs.datanode.ipc.address"] == f"{ports.HOST}:{ports.HDFS_DATANODE_IPC_PORT}"
    assert hdfs["dfs.datanode.http.address"] == f"{ports.HOST}:{ports.HDFS_DATANODE_HTTP_PORT}"
    assert hdfs["dfs.namenode.http-address"] == f"{ports.HOST}:{ports.HDFS_NAMENODE_HTTP_PORT}"


def test_kafka_kraft_combined_node(tmp_path: Path) -> None:
    props = server_properties(tmp_path, partitions=3)
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == (
        f"PLAINTEXT://{ports.HOST}:{ports.KAFKA_PORT},CONTROLLER://{ports.HOST}:{ports.KAFKA_CONTROLLER_PORT}"
    )
    assert props["advertised.listeners"] == f"PLAINTEXT://{ports.KAFKA_BOOTSTRAP}"
    assert props["auto.create.topics.enable"] == "true"
    assert props["num.partitions"] == "3"
    assert props["log.dirs"] == str(tmp_path)
    text = render_properties(props)
    assert f"node.id={props['node.id']}\n" in text
    assert not text.splitlines()[0].partition("#")[0].strip()  # a header comment only


def test_kafka_cluster_id_is_a_kafka_uuid() -> None:
    cluster_id = new_cluster_id()
    assert len(cluster_id) == 22 and "=" not in cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
    assert new_cluster_id() != cluster_id
    # 1 in 64 random ids starts with "-", which the format command would read as an option
    assert not any(new_cluster_id().startswith("-") for _ in range(2_000))


def test_redis_conf_loopback_no_persistence() -> None:
    conf = redis_conf(port=6400, data_dir="/tmp/r")
    lines = set(conf.splitlines())
    assert {"bind 127.0.0.1", "port 6400", "daemonize no", 'save ""', "appendonly no", 'dir "/tmp/r"'} <= lines


def test_java_argv_has_heap_jdk17_flags_props_and_classpath() -> None:
    argv = java_argv(["/c", "/a.jar"], "org.Main", ["start"], heap="1g", props={"x.y": "z"})
    assert argv[-2:] == ["org.Main", "start"]
    assert argv[argv.index("-cp") + 1] == "/c:/a.jar"
    assert "-Xmx1g" in argv and "-Dx.y=z" in argv
    assert set(JDK17_FLAGS) <= set(argv)
    assert argv.index("-Dx.y=z") < argv.index("org.Main")


def test_flink_cluster_config_is_yaml_on_loopback_ports(tmp_path: Path) -> None:
    import yaml

    from featurestore.services.flink import cluster_config, render_config
    from featurestore.services.ports import FLINK_REST_PORT, HOST

    parsed = yaml.safe_load(render_config(cluster_config(tmp_path / "checkpoints")))
    assert parsed["rest.port"] == str(FLINK_REST_PORT)
    assert parsed["jobmanager.rpc.address"] == HOST and parsed["taskmanager.host"] == HOST
    assert parsed["execution.checkpointing.dir"].startswith("file:///")
