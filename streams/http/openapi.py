"""The OpenAPI 3.1 document of the HTTP API (GET /api/openapi.json)."""

from __future__ import annotations

from typing import Any

from schemas.deletions import DeletionReceipt, DeletionRequest


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string", "description": "one line"}},
}
WINDOW = {
    "type": "object",
    "properties": {
        "start": {"type": "string", "format": "date"},
        "end": {"type": "string", "format": "date", "description": "exclusive"},
        "months": {"type": "integer", "enum": [1, 3, 12]},
    },
}
SUMMARY = {
    "type": "object",
    "properties": {
        "tenant_id": {"type": "string"},
        "licensed": {"type": "boolean"},
        "window": WINDOW,
        "active_learners": {"type": "integer"},
        "total_learners": {"type": "integer"},
        "learner_limit": {"type": ["integer", "null"]},
        "utilization_pct": {"type": ["number", "null"]},
    },
}
DETAILS = {
    "type": "object",
    "properties": {
        "tenant_id": {"type": "string"},
        "licensed": {"type": "boolean"},
        "license": {
            "type": "object",
            "properties": {
                "cycle_start": {"type": "string", "format": "date"},
                "window_months": {"type": "integer", "enum": [1, 3, 12]},
                "learner_limit": {"type": ["integer", "null"]},
                "thresholds": {"type": "array", "items": {"type": "integer"}},
                "notify": {"type": "array", "items": {"type": "string"}},
                "timezone": {"type": "string"},
                "surcharge_pct": {"type": "integer", "enum": [0, 25, 50]},
            },
        },
        "window": WINDOW,
        "active_learners": {"type": "integer"},
        "total_learners": {"type": "integer"},
        "utilization_pct": {"type": ["number", "null"]},
        "thresholds": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pct": {"type": "integer"},
                    "learners": {"type": "integer"},
                    "reached": {"type": "boolean"},
                },
            },
        },
        "updated_at": {"type": ["string", "null"], "format": "date-time"},
    },
}
WINDOWS = {
    "type": "object",
    "properties": {
        "tenant_id": {"type": "string"},
        "windows": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "window": WINDOW,
                    "active_learners": {"type": "integer"},
                    "total_learners": {"type": "integer"},
                    "updated_at": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}


def document() -> dict[str, Any]:
    request = DeletionRequest.model_json_schema()
    request["properties"].pop("tenant_id", None)
    request["required"] = [r for r in request.get("required", []) if r in ("mode",)]
    receipt = DeletionReceipt.model_json_schema(mode="serialization")
    tenant = {"name": "tenant_id", "in": "path", "required": True, "schema": {"type": "string"}}
    errors = {
        "401": {"description": "no valid token", **_json(ERROR)},
        "403": {"description": "a read token on an admin call", **_json(ERROR)},
    }
    not_found = {"404": {"description": "unknown tenant", **_json(ERROR)}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "active-learners",
            "version": "1",
            "description": "Active and Total Learners of every tenant, their licenses, and "
            "deletions of attempt records. Figures trail active-learner-counts by seconds.",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"DeletionRequest": request, "DeletionReceipt": receipt},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/tenants": {
                "get": {
                    "summary": "every tenant's current window, Active and Total Learners",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"tenants": {"type": "array", "items": SUMMARY}},
                            }
                        ),
                        **errors,
                    },
                }
            },
            "/api/tenants/{tenant_id}": {
                "get": {
                    "summary": "the License Key details of one tenant",
                    "parameters": [tenant],
                    "responses": {"200": _json(DETAILS), **errors, **not_found},
                }
            },
            "/api/tenants/{tenant_id}/windows": {
                "get": {
                    "summary": "every window of the tenant, oldest first",
                    "parameters": [tenant],
                    "responses": {"200": _json(WINDOWS), **errors, **not_found},
                }
            },
            "/api/tenants/{tenant_id}/deletions": {
                "post": {
                    "summary": "delete attempt records (admin token): physical, logical or preview",
                    "parameters": [tenant],
                    "requestBody": {
                        "required": True,
                        **_json({"$ref": "#/components/schemas/DeletionRequest"}),
                    },
                    "responses": {
                        "200": {
                            "description": "the receipt",
                            **_json({"$ref": "#/components/schemas/DeletionReceipt"}),
                        },
                        "202": {
                            "description": "no receipt within 60 s; ask again by its request_id",
                            **_json(
                                {"type": "object", "properties": {"request_id": {"type": "string"}}}
                            ),
                        },
                        "400": {"description": "not a valid request", **_json(ERROR)},
                        "503": {
                            "description": "Kafka did not take the request within 30 s (it may "
                            "still be carried out; its receipt tells)",
                            **_json(ERROR),
                        },
                        **errors,
                    },
                }
            },
            "/api/tenants/{tenant_id}/deletions/{request_id}": {
                "get": {
                    "summary": "a deletion receipt",
                    "parameters": [
                        tenant,
                        {
                            "name": "request_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": _json({"$ref": "#/components/schemas/DeletionReceipt"}),
                        "404": {"description": "no receipt (yet)", **_json(ERROR)},
                        **errors,
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }
