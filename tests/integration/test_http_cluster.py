"""The HTTP API on the cluster profile: real Redis and HBase, then Redis unreachable."""

from __future__ import annotations

from pathlib import Path

from sdk.online import ServingOptions
from sdk.server import create_app
from sdk.store import FeatureStore
from tests.integration.test_sdk_cluster import cluster_store, drop_all
from tests.unit.test_sdk_http import _check, call
from tests.unit.test_sdk_online import C1D, seed


def test_http_on_redis_and_hbase(services: object, tmp_path: Path) -> None:
    fs = cluster_store(tmp_path)
    seed(fs)
    try:
        app = create_app(fs)
        body = _check(call(app, "POST", "/features/online",
                           json={"features": [C1D], "entities": [{"user_id": "u1"}, {"user_id": "u2"}]}),
                      "/features/online")
        assert body["columns"]["user_clicks_1d"] == [3, 4]
        health = _check(call(app, "GET", "/health"), "/health", "get")
        assert health["status"] == "ok"
    finally:
        drop_all(fs)


def test_http_names_the_store_that_is_down(services: object, tmp_path: Path) -> None:
    fs = cluster_store(tmp_path)
    seed(fs)
    down = FeatureStore(fs.repo, "cluster", serving=ServingOptions(on_cache_down="raise"),
                        online_cache="redis://127.0.0.1:1/0?timeout_s=0.3", versioned_store=fs.config.versioned_store)
    try:
        app = create_app(down)
        response = call(app, "POST", "/features/online", json={"features": [C1D], "entities": {"user_id": ["u1"]}})
        assert response.status_code == 503
        assert _check(response, "/features/online")["error"]["service"] == "redis"
        health = call(app, "GET", "/health")
        assert health.status_code == 503
        stores = {s["name"]: s for s in _check(health, "/health", "get")["stores"]}
        assert stores["online_cache"]["service"] == "redis" and stores["versioned_store"]["status"] == "ok"
    finally:
        down.close()
        drop_all(fs)
