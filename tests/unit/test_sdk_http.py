"""The HTTP API in-process (httpx ASGI transport) and its OpenAPI contract."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from sdk.openapi import document
from sdk.server import create_app
from sdk.store import FeatureStore
from tests.unit.test_sdk_online import C1D, NOW, make_repo, open_store, seed

URL = "http://fs.test"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FeatureStore]:
    fs = open_store(make_repo(tmp_path_factory.mktemp("http")))
    seed(fs)
    yield fs
    fs.close()


def _check(response: httpx.Response, path: str, method: str = "post") -> Any:
    """Validate a response against the OpenAPI document (jsonschema, Draft 2020-12 as in OAS 3.1)."""
    doc = document()
    operation = doc["paths"][path][method]
    assert str(response.status_code) in operation["responses"], response.text
    schema = operation["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(response.json(), {**schema, "components": doc["components"]},
                        cls=jsonschema.Draft202012Validator)
    return response.json()


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def run() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=URL) as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(run())


def test_online_lookup(store: FeatureStore) -> None:
    app = create_app(store)
    request = {"features": [C1D], "entities": {"user_id": ["u1", "u3"]}}
    body = _check(call(app, "POST", "/features/online", json=request), "/features/online")
    assert body["row_count"] == 2 and body["features"] == [C1D]
    assert body["columns"]["user_clicks_1d"][0] == 3
    assert body["columns"]["user_clicks_1d__status"] == ["present", "missing"]
    rows = _check(call(app, "POST", "/features/online",
                       json={"feature_service": "ctr_deepfm_v1", "entities": [{"user_id": "u1", "item_id": "i1"}]}),
                  "/features/online")
    assert rows["columns"]["item_id"] == ["i1"]
    as_of = _check(call(app, "POST", "/features/online",
                        json={"features": [C1D], "entities": {"user_id": ["u2"]}, "as_of": NOW - 86_400_000}),
                   "/features/online")
    assert as_of["columns"]["user_clicks_1d"] == [1]


@pytest.mark.parametrize(("body", "status", "kind"), [
    (b"{not json", 400, "malformed"),
    (b"[1, 2]", 400, "malformed"),
    (b'{"features": ["user_click_features:nope"], "entities": {"user_id": ["u1"]}}', 404, "not_found"),
    (b'{"feature_service": "nope", "entities": {"user_id": ["u1"]}}', 404, "not_found"),
    (b'{"features": ["user_click_features:user_clicks_1d"], "entities": {"user_id": [1]}}', 422, "invalid"),
    (b'{"features": ["user_click_features:user_clicks_1d"], "entities": {"item_id": ["i"]}}', 422, "invalid"),
    (b'{"features": ["user_click_features:user_clicks_1d"], "entities": 3}', 422, "invalid"),
    (b'{"features": [], "entities": {"user_id": ["u1"]}}', 422, "invalid"),
    (b'{"entities": {"user_id": ["u1"]}}', 422, "invalid"),
    (b'{"features": ["user_click_features:user_clicks_1d"], "entities": {}, "extra": 1}', 422, "invalid"),
    (b'{"features": ["user_click_features:user_clicks_1d"], "entities": {"user_id": ["u1"]}, "as_of": "soon"}',
     422, "invalid"),
])
def test_caller_mistakes_are_structured(store: FeatureStore, body: bytes, status: int, kind: str) -> None:
    response = call(create_app(store), "POST", "/features/online", content=body,
                    headers={"content-type": "application/json"})
    assert response.status_code == status
    assert _check(response, "/features/online")["error"]["type"] == kind


def test_health_and_openapi(store: FeatureStore) -> None:
    app = create_app(store)
    health = _check(call(app, "GET", "/health"), "/health", "get")
    assert health["status"] == "ok" and {s["name"] for s in health["stores"]} == {"online_cache", "versioned_store"}
    spec = call(app, "GET", "/openapi.json").json()
    assert spec["openapi"].startswith("3.") and set(spec["paths"]) == {"/features/online", "/health", "/openapi.json"}


def test_saturation_is_a_503_not_a_queue(store: FeatureStore) -> None:
    """With one slot taken by a slow lookup, the next request is refused at once with 503 (the
    key is not in the in-process cache: a lookup it answers takes no slot)."""
    app = create_app(store, max_concurrency=1, timeout_s=5)
    entered, release = threading.Event(), threading.Event()
    original = store.online.get

    def slow(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(5)
        return original(*args, **kwargs)

    body = {"features": [C1D], "entities": {"user_id": [f"uncached-{uuid.uuid4().hex}"]}}

    async def run() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=URL) as client:
            first = asyncio.create_task(client.post("/features/online", json=body))
            for _ in range(500):
                if entered.is_set():
                    break
                await asyncio.sleep(0.01)
            assert entered.is_set(), "the slow lookup was never called"
            second = await client.post("/features/online", json=body)
            release.set()
            return await first, second

    store.online.get = slow  # type: ignore[method-assign]
    try:
        first, second = asyncio.run(run())
    finally:
        store.online.get = original  # type: ignore[method-assign]
    assert first.status_code == 200
    assert second.status_code == 503 and _check(second, "/features/online")["error"]["type"] == "overloaded"
    assert second.headers["retry-after"] == "1"


def test_slow_lookup_times_out_with_504(store: FeatureStore) -> None:
    app = create_app(store, timeout_s=0.1)
    release = threading.Event()
    original = store.online.get

    def stuck(*args: Any, **kwargs: Any) -> Any:
        release.wait(5)
        return original(*args, **kwargs)

    store.online.get = stuck  # type: ignore[method-assign]
    body = {"features": [C1D], "entities": {"user_id": [f"uncached-{uuid.uuid4().hex}"]}}
    try:
        response = call(app, "POST", "/features/online", json=body)
    finally:
        release.set()
        store.online.get = original  # type: ignore[method-assign]
    assert response.status_code == 504 and _check(response, "/features/online")["error"]["type"] == "timeout"


def test_store_down_is_a_503_naming_it(tmp_path: Path) -> None:
    from sdk.online import ServingOptions
    from tests.unit.test_sdk_online import _Down

    fs = open_store(make_repo(tmp_path), options=ServingOptions(on_cache_down="raise"))
    fs.stores._online = _Down(fs.stores.online_cache)
    app = create_app(fs)
    response = call(app, "POST", "/features/online", json={"features": [C1D], "entities": {"user_id": ["u1"]}})
    assert response.status_code == 503
    assert _check(response, "/features/online")["error"]["service"] == "redis"
    health = call(app, "GET", "/health")
    assert health.status_code == 503
    down = [s for s in _check(health, "/health", "get")["stores"] if s["status"] == "down"]
    assert [(s["name"], s["service"]) for s in down] == [("online_cache", "redis")]
    fs.close()


schemathesis = pytest.importorskip("schemathesis")


def test_openapi_contract_with_schemathesis(store: FeatureStore) -> None:
    """Property-based: every generated request gets a documented status, content type and body
    (schemathesis' default checks; schema-valid bodies name random features, so a 404 is right and
    positive_data_acceptance does not apply)."""
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(store))
    excluded = [schemathesis.checks.positive_data_acceptance]
    for operation in schema.get_all_operations():
        op = operation.ok()

        @given(case=op.as_strategy())
        @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(excluded_checks=excluded)

        run()
