"""The OnlineCache contract on Redis (127.0.0.1:6379), with and without the in-process front."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from featurestore.errors import ServiceUnavailableError
from featurestore.services import ports
from featurestore.storage.online import OnlineBase, open_online_cache
from featurestore.storage.redis_cache import RedisCache
from tests.contract import online_cache_suite as suite
from tests.contract.online_cache_suite import *  # noqa: F403

PREFIX = f"fstest{uuid.uuid4().hex[:8]}"


@pytest.fixture(params=["", "&local_cache_s=30"])
def ocache(services: object, request: pytest.FixtureRequest) -> Iterator[OnlineBase]:
    cache = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}{request.param}")
    yield cache
    suite.cleanup()
    cache.close()


def test_writes_from_two_clients_never_regress(services: object) -> None:
    """The compare-and-set runs in Redis, so it holds across processes, not just in one client."""
    a = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    b = open_online_cache(f"{ports.REDIS_URI}?prefix={PREFIX}")
    s = suite.new_table(a)
    assert suite.write(a, s, suite.v(1, suite.T0 + 5, 1, clicks=5)) == 1
    assert suite.write(b, s, suite.v(1, suite.T0, 2, clicks=0)) == 0
    assert suite.got(b.get(s.name, [1], ["clicks"]), "clicks") == [(5, suite.T0 + 5, "present")]
    suite.cleanup()
    a.close()
    b.close()


def test_unreachable_redis_is_a_transient_error() -> None:
    cache = RedisCache("127.0.0.1", 1, timeout_s=0.5)
    with pytest.raises(ServiceUnavailableError) as info:
        cache.schema("anything")
    assert info.value.transient and info.value.service == "redis"
