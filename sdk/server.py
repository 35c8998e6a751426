"""``featurestore serve``: online features over HTTP (Starlette on uvicorn).

Endpoints (sdk/openapi.py is the contract): ``POST /features/online``, ``GET /health``,
``GET /openapi.json``. Lookups run on worker threads; at most ``max_concurrency`` at once, a
request beyond that is refused at once with 503 ``overloaded`` (never queued without bound), and
one that takes longer than ``timeout_s`` gets 504. Errors are JSON
(``{"error": {"type", "message", "hint", "location", "service"}}``): 400 for a body that is not
a JSON object, 404 for an unknown table / feature / feature service, 422 for a body that breaks
the schema or a key or time of the wrong type, 503 naming the store that is down.
"""

from __future__ import annotations

import base64
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from featurestore.errors import (
    FeatureStoreError,
    NotFoundError,
    ServiceUnavailableError,
    TransientError,
    ValidationError,
)
from sdk.openapi import document

if TYPE_CHECKING:
    from sdk.features import FeatureFrame
    from sdk.store import FeatureStore

log = logging.getLogger(__name__)
_FIELDS = {"features", "feature_service", "entities", "as_of"}


def _default(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        # orjson writes NaN and infinities as null (JSON has no spelling for them);
        # it is several times faster than json.dumps on a 50-feature response.
        rendered: bytes = orjson.dumps(content, default=_default)
        return rendered


def error(status: int, kind: str, message: str, *, hint: str | None = None, location: str | None = None,
          service: str | None = None, headers: dict[str, str] | None = None) -> JSON:
    body = {"error": {"type": kind, "message": message, "hint": hint, "location": location, "service": service}}
    return JSON(body, status_code=status, headers=headers)


def _from_exception(exc: FeatureStoreError) -> JSON:
    if isinstance(exc, NotFoundError):
        return error(404, "not_found", exc.message, hint=exc.hint)
    if isinstance(exc, ValidationError):
        return error(422, "invalid", exc.message, hint=exc.hint, location=exc.location)
    if isinstance(exc, ServiceUnavailableError):
        return error(503, "service_unavailable", exc.message, hint=exc.hint, service=exc.service)
    if isinstance(exc, TransientError):
        return error(503, "service_unavailable", exc.message, hint=exc.hint)
    log.error("request failed: %s", exc)
    return error(500, "internal", exc.message, hint=exc.hint)


def _check_body(body: bytes) -> dict[str, Any] | JSON:
    """The request as a dict, or the 400/422 response that says what is wrong with it."""
    try:
        payload = orjson.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        return error(400, "malformed", f"the body is not JSON: {exc}")
    if not isinstance(payload, dict):
        return error(400, "malformed", "the body must be a JSON object")
    unknown = sorted(set(payload) - _FIELDS)
    if unknown:
        return error(422, "invalid", f"unknown fields {unknown}; known: {sorted(_FIELDS)}", location="body")
    has_features, has_service = "features" in payload, "feature_service" in payload
    if has_features == has_service:
        return error(422, "invalid", "give exactly one of 'features' and 'feature_service'", location="body")
    features = payload.get("features")
    if has_features and (not isinstance(features, list) or not features
                         or not all(isinstance(f, str) for f in features)):
        return error(422, "invalid", "'features' must be a non-empty list of 'table:feature'", location="features")
    if has_service and not isinstance(payload["feature_service"], str):
        return error(422, "invalid", "'feature_service' must be a string", location="feature_service")
    entities = payload.get("entities")
    columns_ok = isinstance(entities, dict) and all(isinstance(v, list) for v in entities.values())
    rows_ok = isinstance(entities, list) and all(isinstance(v, dict) for v in entities)
    if not (columns_ok or rows_ok):
        return error(422, "invalid", "'entities' must be an object of arrays or an array of objects",
                     location="entities")
    as_of = payload.get("as_of")
    if as_of is not None and (isinstance(as_of, bool) or not isinstance(as_of, int | str)):
        return error(422, "invalid", "'as_of' must be epoch milliseconds or an ISO-8601 string", location="as_of")
    return payload


class _Server:
    def __init__(self, store: FeatureStore, *, max_concurrency: int, timeout_s: float) -> None:
        self.store = store
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.in_flight = 0
        self.refused = 0
        self.openapi = document()

    async def _bounded(self, fn: Callable[[], Awaitable[JSON]]) -> JSON:
        if self.in_flight >= self.max_concurrency:
            self.refused += 1
            return error(503, "overloaded", f"{self.in_flight} requests in flight (the limit)",
                         hint="retry after a moment", headers={"Retry-After": "1"})
        self.in_flight += 1
        try:
            with anyio.fail_after(self.timeout_s):
                return await fn()
        except TimeoutError:
            return error(504, "timeout", f"the request took longer than {self.timeout_s} s")
        except FeatureStoreError as exc:
            return _from_exception(exc)
        finally:
            self.in_flight -= 1

    async def online(self, request: Request) -> JSON:
        checked = _check_body(await request.body())
        if isinstance(checked, JSON):
            return checked
        features = checked["features"] if "features" in checked else checked["feature_service"]
        entities, as_of = checked["entities"], checked.get("as_of")
        if as_of is None:
            # Answered here, on the event loop, when the in-process cache has every key: no
            # store is read, so the hop to a worker thread (and back) would be most of the time.
            try:
                frame = self.store.online.get_local(features, entities)
            except FeatureStoreError as exc:
                return _from_exception(exc)
            if frame is not None:
                return self._features(features, frame)
        get = functools.partial(self.store.online.get, features, entities, as_of=as_of)

        async def run() -> JSON:
            return self._features(features, await anyio.to_thread.run_sync(get, abandon_on_cancel=True))

        return await self._bounded(run)

    def _features(self, features: str | list[str], frame: FeatureFrame) -> JSON:
        refs = self.store.online.request(features).refs
        return JSON({"features": list(refs), "row_count": frame.num_rows, "columns": frame.to_pydict()})

    async def health(self, request: Request) -> JSON:
        async def run() -> JSON:
            stores = await anyio.to_thread.run_sync(self.store.health, abandon_on_cancel=True)
            down = any(s.status == "down" for s in stores)
            body = {"status": "down" if down else "ok", "stores": [s.__dict__ for s in stores]}
            return JSON(body, status_code=503 if down else 200)

        return await self._bounded(run)

    async def openapi_json(self, request: Request) -> JSON:
        return JSON(self.openapi)


def create_app(store: FeatureStore, *, max_concurrency: int = 64, timeout_s: float = 2.0) -> Starlette:
    """The ASGI app serving ``store`` (run it with uvicorn, or test it with httpx's ASGI transport)."""
    server = _Server(store, max_concurrency=max_concurrency, timeout_s=timeout_s)
    app = Starlette(
        routes=[
            Route("/features/online", server.online, methods=["POST"]),
            Route("/health", server.health, methods=["GET"]),
            Route("/openapi.json", server.openapi_json, methods=["GET"]),
        ],
    )
    app.state.server = server
    return app
