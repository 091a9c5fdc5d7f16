"""The HTTP side of every worker: the guard, the JSON API, the dashboard, health and metrics.

Importing this module registers everything on the worker's app (the `worker` command does).
Answers come from the read model (streams/http/read_model.py), never from the agents' tables, so
no request waits for or blocks the stream processing. Who may call what: streams/http/access.py.
"""

from __future__ import annotations

import os

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.http import (  # noqa: F401  (register the API, the reports and the dashboard)
    api_views,
    pages,
    report_views,
)
from streams.http.outputs_reader import flush_gauges, model
from streams.http.views import guard, refused_secret, tokens
from streams.stages import keys
from streams.worker import malformed_http
from streams.worker.app import app, settings
from streams.worker.failed_secrets import bearer, same_secret
from streams.worker.runtime import local_state

app.web.web_app.middlewares.append(guard)  # type: ignore[attr-defined]
malformed_http.install()
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "").strip()


def describe() -> str:
    """The access rules in one line, for the banner at start."""
    metrics = "token" if METRICS_TOKEN else "open"
    return f"{tokens.describe()}; /metrics {metrics}"


def warnings() -> list[str]:
    """What the worker warns of at start."""
    if tokens.configured:
        return []
    return [
        "no API token configured: open mode, bound to 127.0.0.1, reads and previews only "
        "(set API_TOKENS_FILE or API_ADMIN_TOKENS to delete and to serve other hosts)"
    ]


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        presented = bearer(request.headers.get("Authorization"))
        if METRICS_TOKEN and not same_secret(METRICS_TOKEN, presented):
            if presented is not None:
                refused_secret(request, "a metrics token")
            return self.json(
                {"error": "/metrics needs Authorization: Bearer <METRICS_TOKEN>"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        flush_gauges()  # (the tenants' gauges are set when asked for: streams/http/gauges.py)
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/health")
class Health(View):
    """Liveness: the process answers."""

    async def get(self, request: Request) -> Response:
        return self.json(
            {"status": "ok", "app": app.conf.id, "read_model": model.caught_up.is_set()}
        )


@app.page("/ready")
class Ready(View):
    """Readiness: 503 until this worker holds its partitions, restored them, and its read
    model caught up with the output topics (so its answers are current)."""

    async def get(self, request: Request) -> Response:
        recovery = app.tables.recovery  # type: ignore[attr-defined]
        checks = {
            "partitions_restored": recovery.completed.is_set() and not app.in_recovery,
            "read_model": model.caught_up.is_set(),
        }
        ready = all(checks.values())
        held = [p for p in range(settings.partitions) if local_state.owns(keys.ATTEMPTS, p)]
        return self.json(
            {"status": "ready" if ready else "starting", **checks, "learner_partitions": held},
            status=200 if ready else 503,
        )
