"""The OpenAPI 3 document of ``featurestore serve``, written by hand to match sdk/server.py.

tests/unit/test_http_api.py runs schemathesis (or, without it, jsonschema) against the app with
this document, so a change to an endpoint that is not made here too fails a test.
"""

from __future__ import annotations

from typing import Any

OBJECT: dict[str, Any] = {"type": "object"}
KEY_VALUE: dict[str, Any] = {"oneOf": [{"type": "string"}, {"type": "integer"}]}
ERROR_TYPES = ["malformed", "invalid", "not_found", "service_unavailable", "overloaded", "timeout", "internal"]


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("#/components/schemas/Error")}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": ref}}}


SCHEMAS: dict[str, Any] = {
    "OnlineRequest": {
        "type": "object",
        "description": "Give `features` (refs) or `feature_service` (a training set name), and `entities`.",
        "properties": {
            "features": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string", "description": "table:feature, or table:* for every feature"},
                "example": ["user_click_features:user_clicks_1d"],
            },
            "feature_service": {"type": "string", "description": "a TrainingSet name", "example": "ctr_deepfm_v1"},
            "entities": {
                "description": "entity keys: columns (object of arrays) or rows (array of objects)",
                "oneOf": [
                    {"type": "object", "additionalProperties": {"type": "array", "items": KEY_VALUE}},
                    {"type": "array", "items": {"type": "object", "additionalProperties": KEY_VALUE}},
                ],
                "example": {"user_id": ["u1", "u2"]},
            },
            "as_of": {
                "description": "read the values visible at this time: epoch ms, or ISO-8601 with a zone",
                "oneOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
            },
        },
        "required": ["entities"],
        "oneOf": [{"required": ["features"]}, {"required": ["feature_service"]}],
        "additionalProperties": False,
    },
    "OnlineResponse": {
        "type": "object",
        "required": ["features", "row_count", "columns"],
        "properties": {
            "features": {"type": "array", "items": {"type": "string"}, "description": "the refs read, expanded"},
            "row_count": {"type": "integer", "minimum": 0},
            "columns": {
                "type": "object",
                "description": "key columns, then per feature <name>, <name>__ts (ms) and <name>__status "
                "(present | missing | expired); one value per entity row",
                "additionalProperties": {"type": "array"},
            },
        },
    },
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string", "enum": ERROR_TYPES},
                    "message": {"type": "string"},
                    "hint": {"type": ["string", "null"]},
                    "location": {"type": ["string", "null"]},
                    "service": {"type": ["string", "null"], "description": "the store that is down (503)"},
                },
            }
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "stores"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "down"]},
            "stores": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "uri", "status"],
                    "properties": {
                        "name": {"type": "string"},
                        "uri": {"type": "string"},
                        "status": {"type": "string", "enum": ["ok", "down"]},
                        "service": {"type": ["string", "null"]},
                        "reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    },
}


def document(version: str = "0.1.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document of the HTTP API."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "featurestore online serving", "version": version},
        "paths": {
            "/features/online": {
                "post": {
                    "operationId": "getOnlineFeatures",
                    "summary": "Latest feature values (or values as of a time) for entity keys",
                    "requestBody": {
                        "required": True,
                        "content": _json("#/components/schemas/OnlineRequest"),
                    },
                    "responses": {
                        "200": {
                            "description": "one row per entity",
                            "content": _json("#/components/schemas/OnlineResponse"),
                        },
                        "400": _error_response("the body is not a JSON object"),
                        "404": _error_response("unknown feature table, feature or feature service"),
                        "422": _error_response("the body breaks the schema, or a key or time has the wrong type"),
                        "503": _error_response("a store is down (error.service names it), or the server is saturated"),
                        "504": _error_response("the request took longer than the server's timeout"),
                    },
                }
            },
            "/health": {
                "get": {
                    "operationId": "health",
                    "summary": "Each serving store: ok, or down with the service that is down",
                    "responses": {
                        "200": {"description": "every store is ok", "content": _json("#/components/schemas/Health")},
                        "503": {"description": "a store is down", "content": _json("#/components/schemas/Health")},
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document",
                    "responses": {
                        "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": OBJECT}}}
                    },
                }
            },
        },
        "components": {"schemas": SCHEMAS},
    }
