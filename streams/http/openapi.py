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

GUARD_RAILS = {
    "preview_request_id": {
        "type": "string",
        "description": "physical only, required: the request_id of a preview receipt of this "
        "tenant with the same selector, at most 15 minutes old",
    },
    "force": {
        "type": "boolean",
        "description": "physical only: required (true) when the preview removes more than "
        "DELETION_MAX_SHARE % of a window's active learners",
    },
}


CATCHING_UP = (
    "the worker is still reading the count topics after its start (`Retry-After` says when to "
    "ask again): until then it answers no count, no tenant and no receipt it may not have read yet"
)


def document() -> dict[str, Any]:
    request = DeletionRequest.model_json_schema()
    request["properties"].pop("tenant_id", None)
    request["required"] = [r for r in request.get("required", []) if r in ("mode",)]
    request["properties"]["requested_by"]["description"] = "set by the API: the token's name"
    request["properties"].update(GUARD_RAILS)
    receipt = DeletionReceipt.model_json_schema(mode="serialization")
    tenant = {"name": "tenant_id", "in": "path", "required": True, "schema": {"type": "string"}}
    errors = {
        "400": {"description": "a `Host` the server does not answer for", **_json(ERROR)},
        "401": {"description": "no valid token", **_json(ERROR)},
        "429": {"description": "10 failed attempts from this address within a minute"},
        "503": {"description": CATCHING_UP, **_json(ERROR)},
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
                "get": {
                    "summary": "the tenant's deletion receipts, newest first: the audit trail",
                    "parameters": [
                        tenant,
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 10_000},
                            "description": "at most this many (default 100)",
                        },
                    ],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "tenant_id": {"type": "string"},
                                    "deletions": {
                                        "type": "array",
                                        "items": {"$ref": "#/components/schemas/DeletionReceipt"},
                                    },
                                },
                            }
                        ),
                        **errors,
                        **not_found,
                    },
                },
                "post": {
                    "summary": "delete attempt records: physical or logical (admin token), or "
                    "preview (any token that sees the tenant)",
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
                        **errors,
                        "400": {"description": "not a valid request", **_json(ERROR)},
                        "403": {
                            "description": "a physical or logical deletion without an "
                            "admin token (or in open mode)",
                            **_json(ERROR),
                        },
                        **not_found,
                        "409": {
                            "description": "a physical deletion without a matching preview of "
                            "at most 15 minutes, or without force above DELETION_MAX_SHARE; or a "
                            "request_id already used for another request",
                            **_json(ERROR),
                        },
                        "415": {"description": "the body is not application/json", **_json(ERROR)},
                        "503": {
                            "description": "Kafka did not take the request within 30 s (it may "
                            "still be carried out; its receipt tells); or " + CATCHING_UP,
                            **_json(ERROR),
                        },
                    },
                },
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
                        **errors,
                        "404": {"description": "no receipt (yet)", **_json(ERROR)},
                    },
                }
            },
            **report_paths(tenant, errors, not_found),
            "/api/openapi.json": {
                "get": {
                    "summary": "this document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
    }


def report_paths(
    tenant: dict[str, Any], errors: dict[str, Any], not_found: dict[str, Any]
) -> dict[str, Any]:
    """The administrators' reports."""
    start = {
        "name": "start",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "format": "date"},
    }
    fmt = {
        "name": "format",
        "in": "query",
        "schema": {"type": "string", "enum": ["json", "jsonl", "csv"]},
        "description": 'json (default, `{"learners": [...]}`), JSON lines, or CSV with a '
        "header row (RFC 4180; teams and roles as JSON arrays)",
    }
    ids = {"type": "array", "items": {"type": "string"}}
    counted = {
        "type": "object",
        "properties": {
            "learner_id": {"type": "string"},
            "first_attempt_at": {"type": "string", "format": "date-time"},
            "last_attempt_at": {"type": "string", "format": "date-time"},
            "attempts": {"type": "integer", "description": "their attempts in the window"},
            "teams": ids,
            "roles": ids,
        },
    }
    learner = {
        "type": "object",
        "properties": {
            "learner_id": {"type": "string"},
            "status": {"type": "string", "enum": ["active", "inactive"]},
            "last_attempt_at": {"type": "string", "format": "date-time"},
            "teams": ids,
            "roles": ids,
        },
    }
    tally = {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "active_learners": {"type": "integer"}},
        },
    }
    streamed = {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"learners": {"type": "array", "items": counted}},
            }
        },
        "application/x-ndjson": {"schema": counted},
        "text/csv": {"schema": {"type": "string"}},
    }
    unavailable = {
        "503": {
            "description": "a learner partition has no worker (a rebalance); or " + CATCHING_UP,
            **_json(ERROR),
        }
    }
    return {
        "/api/tenants/{tenant_id}/windows/{start}/learners": {
            "get": {
                "summary": "the learners counted in a window, ordered by learner id (streamed, "
                "from every learner partition)",
                "parameters": [tenant, start, fmt],
                "responses": {
                    "200": {
                        "description": "as many rows as the window's active_learners once "
                        "input is quiet",
                        "content": streamed,
                    },
                    **errors,
                    **not_found,
                    **unavailable,
                },
            }
        },
        "/api/tenants/{tenant_id}/learners": {
            "get": {
                "summary": "every learner with attempts (the Total Learners), active in the "
                "current window or not",
                "parameters": [
                    tenant,
                    fmt,
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["active", "inactive"]},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"learners": {"type": "array", "items": learner}},
                        }
                    ),
                    **errors,
                    **not_found,
                    **unavailable,
                },
            }
        },
        "/api/tenants/{tenant_id}/windows/{start}/groups": {
            "get": {
                "summary": "active learners of a window per team and per learning role",
                "parameters": [tenant, start],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "tenant_id": {"type": "string"},
                                "window": WINDOW,
                                "teams": tally,
                                "roles": tally,
                                "unassigned": {"type": "integer"},
                            },
                        }
                    ),
                    **errors,
                    **not_found,
                    **unavailable,
                },
            }
        },
        "/api/tenants/{tenant_id}/forecast": {
            "get": {
                "summary": "the current window day by day, a linear projection to its end, and "
                "the day the limit is or will be reached",
                "parameters": [tenant],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "window": WINDOW,
                                "active_learners": {"type": "integer"},
                                "learner_limit": {"type": ["integer", "null"]},
                                "daily": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "date": {"type": "string", "format": "date"},
                                            "active_learners": {"type": "integer"},
                                        },
                                    },
                                },
                                "projected_at_window_end": {"type": "integer"},
                                "method": {"type": "string"},
                                "limit_reached_on": {"type": ["string", "null"], "format": "date"},
                            },
                        }
                    ),
                    **errors,
                    **not_found,
                    **unavailable,
                },
            }
        },
        "/api/tenants/{tenant_id}/advisor": {
            "get": {
                "summary": "what an older_than deletion at each month start would leave "
                "(nothing is changed)",
                "parameters": [tenant],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "window": WINDOW,
                                "active_learners": {"type": "integer"},
                                "learner_limit": {"type": ["integer", "null"]},
                                "options": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "older_than": {"type": "string", "format": "date-time"},
                                            "active_learners_after": {"type": "integer"},
                                            "attempts_removed": {"type": "integer"},
                                        },
                                    },
                                },
                                "smallest_under_limit": {"type": ["string", "null"]},
                            },
                        }
                    ),
                    **errors,
                    **not_found,
                    **unavailable,
                },
            }
        },
    }
