"""A service that dies is reported unhealthy, `require` names it, and `up` brings it back.

A throwaway Redis (own port, own state dir) stands in for the real one, so the shared services
other tests and engineers use are never disturbed.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from featurestore.errors import ServiceUnavailableError
from featurestore.services import manager
from featurestore.services.process import Layout, kill_hard
from featurestore.services.redis import RedisService


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_killed_service_is_unhealthy_and_require_names_it(tmp_path: Path) -> None:
    svc = RedisService(Layout(tmp_path), name="redis-throwaway", port=_free_port())
    report = manager.up([svc])
    restarted = None
    try:
        first = report.get("redis-throwaway")
        assert first.started and first.healthy and first.pid is not None
        assert manager.require(svc) == svc.address

        kill_hard(first.pid)  # a crash: no shutdown, no cleanup

        [status] = manager.status([svc])
        assert not status.healthy
        assert status.pid is None  # the pid file no longer points at a live process of ours
        assert status.reason
        with pytest.raises(ServiceUnavailableError) as info:
            manager.require(svc)
        err = info.value
        assert err.service == "redis-throwaway"
        assert err.address == svc.address
        assert err.transient
        assert str(err).startswith(f"redis-throwaway at {svc.address} is unavailable")
        assert "Traceback" not in str(err)

        restarted = manager.up([svc])  # the stale pid file is recognised: started again
        again = restarted.get("redis-throwaway")
        assert again.started and again.healthy and again.pid != first.pid
        assert manager.require(svc) == svc.address
    finally:
        manager.down(only_started_by=report)
        if restarted is not None:
            manager.down(only_started_by=restarted)
    [status] = manager.status([svc])
    assert not status.healthy
