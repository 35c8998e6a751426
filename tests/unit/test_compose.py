"""docker-compose.yml describes the same stack as featurestore/services: same ports, same settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from featurestore.services import ports
from featurestore.services.hbase import hbase_site
from featurestore.services.hdfs import core_site, hdfs_site
from featurestore.services.kafka import new_cluster_id, server_properties

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _env(compose: dict[str, Any], service: str, prefix: str) -> dict[str, str]:
    env: dict[str, Any] = compose["services"][service]["environment"]
    return {k[len(prefix) :]: str(v) for k, v in env.items() if k.startswith(prefix)}


def test_same_services_on_the_host_network(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "hbase", "hdfs-namenode", "hdfs-datanode", "kafka"}
    # Host networking: containers bind the loopback ports of ports.py exactly as the local scripts do.
    assert all(s["network_mode"] == "host" for s in services.values())


def test_redis_port_and_settings(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    args = dict(zip(command[1::2], command[2::2], strict=True))
    assert args["--port"] == str(ports.REDIS_PORT)
    assert args["--bind"] == ports.HOST
    assert args["--save"] == "" and args["--appendonly"] == "no"  # as featurestore.services.redis.redis_conf


def test_hbase_site_is_what_the_local_script_writes(compose: dict[str, Any]) -> None:
    assert _env(compose, "hbase", "HBASE-SITE.XML_") == hbase_site(Path("/data/hbase"))
    hbase = compose["services"]["hbase"]
    assert hbase["environment"]["HBASE_VERSION"] == "2.6.1"
    script = hbase["command"][-1]
    assert f"thrift start -p {ports.HBASE_THRIFT_PORT}" in script
    assert f"--infoport {ports.HBASE_THRIFT_INFO_PORT}" in script
    # The Thrift2 server (per-cell timestamps: the store's writes) beside Thrift v1, as services.hbase runs it.
    assert f"thrift2 start -p {ports.HBASE_THRIFT2_PORT}" in script
    assert f"--infoport {ports.HBASE_THRIFT2_INFO_PORT}" in script
    assert f"/dev/tcp/{ports.HOST}/{ports.HBASE_THRIFT2_PORT}" in hbase["healthcheck"]["test"][-1]
    assert hbase_site(Path("/x"))["hbase.regionserver.thrift.framed"] == "false"  # happybase's default transport


def test_hdfs_sites_are_what_the_local_script_writes(compose: dict[str, Any]) -> None:
    for node in ("hdfs-namenode", "hdfs-datanode"):
        assert _env(compose, node, "CORE-SITE.XML_") == core_site(Path("/data/hdfs"))
        assert _env(compose, node, "HDFS-SITE.XML_") == hdfs_site(Path("/data/hdfs"))
    site = hdfs_site(Path("/data/hdfs"))
    assert site["dfs.namenode.rpc-address"] == f"{ports.HOST}:{ports.HDFS_NAMENODE_PORT}"
    assert site["dfs.datanode.address"].endswith(f":{ports.HDFS_DATANODE_PORT}")
    assert site["dfs.replication"] == "1" and site["dfs.permissions.enabled"] == "false"
    assert core_site(Path("/x"))["fs.defaultFS"] == ports.HDFS_URI


def test_kafka_properties_are_what_the_local_script_writes(compose: dict[str, Any]) -> None:
    env = _env(compose, "kafka", "KAFKA_")
    expected = server_properties(Path("/var/lib/kafka/data"))
    # The apache/kafka image maps KAFKA_A_B to a.b (none of our keys has '_' or '-').
    assert env == {k.upper().replace(".", "_"): v for k, v in expected.items()}
    assert f"PLAINTEXT://{ports.HOST}:{ports.KAFKA_PORT}" in expected["advertised.listeners"]
    assert f":{ports.KAFKA_CONTROLLER_PORT}" in expected["controller.quorum.voters"]
    assert expected["auto.create.topics.enable"] == "true"
    cluster_id = compose["services"]["kafka"]["environment"]["CLUSTER_ID"]
    assert len(cluster_id) == len(new_cluster_id())
