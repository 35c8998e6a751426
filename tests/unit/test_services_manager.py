"""Report formatting, pid files, process-group stops and error paths of the services manager.

Nothing here needs a server: the processes are `sleep`s and the "services" answer on free ports
where nothing listens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from featurestore.errors import ConfigError, ServiceStartError, ServiceUnavailableError
from featurestore.services import manager, maven
from featurestore.services.process import Layout, read_pid, spawn, stop_pid_file, wait_healthy
from featurestore.services.redis import RedisService
from featurestore.services.report import Report, ServiceResult, ServiceStatus, format_report, format_status


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _report() -> Report:
    return Report(
        services=(
            ServiceResult("redis", "redis://127.0.0.1:6379/0", True, 11, True, 0.25, 0.0, 12 * 2**20),
            ServiceResult("hbase", "127.0.0.1:9090", True, 22, False, 0.0, 0.0, 0),
        ),
        resolve_seconds=66.7,
        total_seconds=77.4,
        extra_resolutions={"flink-connectors": 37.9},
    )


def test_format_report_shows_seconds_to_healthy_and_download_time() -> None:
    text = format_report(_report())
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["service", "address", "healthy"]
    assert "s to healthy" in lines[0]
    redis_line = next(line for line in lines if line.startswith("redis"))
    assert "started" in redis_line and "0.2" in redis_line and "12 MiB" in redis_line
    hbase_line = next(line for line in lines if line.startswith("hbase"))
    assert "already up" in hbase_line
    assert "downloads/resolution: 66.7s" in lines[-1] and "flink-connectors 37.9s" in lines[-1]
    assert "total: 77.4s" in lines[-1]
    assert _report().started == ["redis"]
    assert _report().get("hbase").pid == 22


def test_format_status() -> None:
    text = format_status(
        [ServiceStatus("redis", "r", True, 5, "", 0), ServiceStatus("kafka", "k", False, None, "ConnectionError: x")]
    )
    assert "ConnectionError: x" in text
    assert next(line for line in text.splitlines() if line.startswith("kafka")).split()[2] == "NO"


def test_spawn_writes_pid_and_stop_kills_the_whole_group(tmp_path: Path) -> None:
    pid_path = tmp_path / "run" / "x.pid"
    # A parent that starts a child in the same group, like a JVM launcher script would.
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    proc = spawn([sys.executable, "-c", script], log_path=tmp_path / "x.log", pid_path=pid_path)
    assert read_pid(pid_path) == proc.pid
    deadline = time.monotonic() + 5
    while not psutil.Process(proc.pid).children() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = psutil.Process(proc.pid).children()[0]
    assert stop_pid_file(pid_path, grace=5)
    assert proc.poll() is not None
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert not pid_path.exists()
    assert not stop_pid_file(pid_path)  # idempotent


def test_a_reused_pid_is_never_ours(tmp_path: Path) -> None:
    pid_path = tmp_path / "y.pid"
    pid_path.write_text(f"{os.getpid()} 12345.0\n")  # this process, but another start time
    assert read_pid(pid_path) is None
    pid_path.write_text("garbage")
    assert read_pid(pid_path) is None


def test_wait_healthy_fails_fast_with_the_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    proc = spawn(
        [sys.executable, "-c", "print('boom: bad config'); raise SystemExit(3)"],
        log_path=log,
        pid_path=tmp_path / "svc.pid",
    )

    def never() -> None:
        raise ConnectionError("nope")

    with pytest.raises(ServiceStartError) as info:
        wait_healthy("svc", never, procs=[proc], timeout=30, logs=[log])
    assert info.value.service == "svc"
    assert "exited with code 3" in str(info.value)
    assert "boom: bad config" in info.value.log_tail


def test_wait_healthy_times_out_naming_the_last_check(tmp_path: Path) -> None:
    def never() -> None:
        raise ConnectionError("still booting")

    with pytest.raises(ServiceStartError, match="still booting"):
        wait_healthy("svc", never, procs=[], timeout=0.3, logs=[])


def test_require_names_the_service_when_nothing_listens(tmp_path: Path) -> None:
    svc = RedisService(Layout(tmp_path), name="redis-nowhere", port=_free_port())
    with pytest.raises(ServiceUnavailableError) as info:
        manager.require(svc)
    assert info.value.service == "redis-nowhere"
    assert info.value.address == svc.address
    assert info.value.transient
    [status] = manager.status([svc])
    assert not status.healthy and status.pid is None and status.reason


def test_unknown_service_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown service"):
        manager.require("cassandra")


def test_classpath_cache_is_reused_only_while_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pom_dir = tmp_path / "poms"
    pom_dir.mkdir()
    (pom_dir / "x.xml").write_text("<project/>")
    monkeypatch.setattr(maven, "POM_DIR", pom_dir)
    jar = tmp_path / "a.jar"
    jar.write_bytes(b"")
    cp_dir = tmp_path / ".cache" / "classpath"
    cp_dir.mkdir(parents=True)
    (cp_dir / "x.txt").write_text(str(jar))
    resolution = maven.resolve("x", Layout(tmp_path))
    assert resolution.jars == (str(jar),) and not resolution.downloaded
    jar.unlink()  # a jar vanished: the cache is stale, Maven must run (and fails on this fake POM)
    monkeypatch.setattr("featurestore.services.maven.shutil.which", lambda _: None)
    with pytest.raises(ServiceStartError, match="mvn"):
        maven.resolve("x", Layout(tmp_path))


def test_up_starts_and_down_stops_a_throwaway_redis(tmp_path: Path) -> None:
    if subprocess.run(["which", "redis-server"], capture_output=True, check=False).returncode != 0:
        pytest.skip("redis-server is not installed (make system-deps)")
    svc = RedisService(Layout(tmp_path), name="redis-unit", port=_free_port())
    report = manager.up([svc])
    try:
        result = report.get("redis-unit")
        assert result.started and result.healthy and result.pid
        again = manager.up([svc])
        assert not again.get("redis-unit").started  # idempotent
        assert manager.require(svc) == svc.address
    finally:
        stopped = manager.down(only_started_by=report)
    assert stopped == [str(svc.pid_file("redis-server"))]
    assert not psutil.pid_exists(result.pid) or psutil.Process(result.pid).status() == psutil.STATUS_ZOMBIE
