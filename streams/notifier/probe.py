"""The notifier's own HTTP port: `/metrics` and `/health`.

The notifier runs apart from the workers (its own process, container or pod), so the workers'
`/metrics` cannot hold its counters: the e-mails sent, deferred and given up, the webhook
deliveries. It serves them itself on `NOTIFIER_PORT` (default 6068; 0: no port) at `WEB_HOST`,
with the worker's rule for `METRICS_TOKEN`: when it is set, `/metrics` needs
`Authorization: Bearer <it>`. Its series name no tenant (outcomes only).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from streams.worker import malformed_http

EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def probe_app(metrics_token: str) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        if metrics_token and not _bearer_is(request.headers, metrics_token):
            return web.json_response(
                {"error": "/metrics needs Authorization: Bearer <METRICS_TOKEN>"},
                status=401,
                headers={**EVERY_ANSWER, "WWW-Authenticate": "Bearer"},
            )
        return web.Response(
            body=generate_latest(REGISTRY),
            headers={**EVERY_ANSWER, "Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "notifier"}, headers=EVERY_ANSWER)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


def _bearer_is(headers: Mapping[str, str], secret: str) -> bool:
    scheme, _, presented = headers.get("Authorization", "").partition(" ")
    # a header's bytes that are not UTF-8 arrive as surrogates: a wrong token (401), never a
    # 500 with a traceback in the log for every such request
    return scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode("utf-8", "surrogateescape"),
        secret.encode("utf-8", "surrogateescape"),
    )


async def start_probe(host: str, port: int) -> web.AppRunner | None:
    """Serve the probe app at host:port (None: port 0, no port); `cleanup()` stops it."""
    if port == 0:
        return None
    malformed_http.install()
    runner = web.AppRunner(probe_app(os.environ.get("METRICS_TOKEN", "").strip()))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
