"""The OnlineCache contract on the in-process memory:// backend (and the cached front on it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from featurestore.errors import ConfigError
from featurestore.storage.memory_cache import MemoryCache
from featurestore.storage.online import CachedOnlineStore, OnlineBase, OnlineCache, open_online_cache
from tests.contract import online_cache_suite as suite
from tests.contract.online_cache_suite import *  # noqa: F403


@pytest.fixture(params=["memory://", "memory://?local_cache_s=30"])
def ocache(request: pytest.FixtureRequest) -> Iterator[OnlineBase]:
    cache = open_online_cache(request.param)
    yield cache
    suite.cleanup()
    cache.close()


def test_factory() -> None:
    assert isinstance(open_online_cache("memory://"), MemoryCache)
    front = open_online_cache("memory://?local_cache_s=0.5")
    assert isinstance(front, CachedOnlineStore) and isinstance(front, OnlineCache) and front.ttl_s == 0.5
    for bad in ("memcached://x", "memory://?x=1", "memory://?local_cache_s=soon"):
        with pytest.raises(ConfigError):
            open_online_cache(bad)
