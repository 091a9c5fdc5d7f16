"""The notifier's own HTTP port: `/metrics` and `/health`.

The notifier runs apart from the workers (its own process, container or pod), so the workers'
`/metrics` cannot hold its counters: the e-mails sent, deferred and given up, the webhook
deliveries. It serves them itself on `NOTIFIER_PORT` (default 6068; 0: no port) at `WEB_HOST`,
with the worker's rule for `METRICS_TOKEN`: when it is set, `/metrics` needs
`Authorization: Bearer <it>`; a wrong one is logged with the client's address (never the
secret) and counted against it, and an address with 10 wrong ones within a minute gets 429 for
the next minute (streams/worker/failed_secrets.py, as the worker's guard does). Its series
name no tenant (outcomes only); the worker's are not among them (streams/notifier/metrics.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.notifier.metrics import NOTIFIER
from streams.worker import malformed_http
from streams.worker.failed_secrets import (
    TOO_MANY,
    FailureLimiter,
    bearer,
    client_address,
    same_secret,
)

log = logging.getLogger("active_learners.notifier")

EVERY_ANSWER = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}


def probe_app(
    metrics_token: str,
    trusted_proxies: Iterable[str] = (),
    failures: FailureLimiter | None = None,
) -> web.Application:
    limiter = failures or FailureLimiter()
    proxies = tuple(trusted_proxies)

    async def metrics(request: web.Request) -> web.Response:
        if metrics_token:
            forwarded = ",".join(request.headers.getall("X-Forwarded-For", [])) or None
            address = client_address(request.remote, forwarded, proxies)
            wait = limiter.blocked_for(address)
            if wait > 0:
                return web.json_response(
                    {"error": TOO_MANY},
                    status=429,
                    headers={**EVERY_ANSWER, "Retry-After": str(int(wait) + 1)},
                )
            presented = bearer(request.headers.get("Authorization"))
            if not same_secret(metrics_token, presented):
                if presented is not None:  # no header is no guess at the secret
                    limiter.failed(address)
                    log.warning(
                        "refused a metrics token from %s (%s %s)",
                        address,
                        request.method,
                        request.path,
                    )
                return web.json_response(
                    {"error": "/metrics needs Authorization: Bearer <METRICS_TOKEN>"},
                    status=401,
                    headers={**EVERY_ANSWER, "WWW-Authenticate": "Bearer"},
                )
        return web.Response(
            body=generate_latest(NOTIFIER),
            headers={**EVERY_ANSWER, "Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "notifier"}, headers=EVERY_ANSWER)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/health", health)
    return app


async def start_probe(
    host: str, port: int, trusted_proxies: Iterable[str] = ()
) -> web.AppRunner | None:
    """Serve the probe app at host:port (None: port 0, no port); `cleanup()` stops it."""
    if port == 0:
        return None
    malformed_http.install()
    token = os.environ.get("METRICS_TOKEN", "").strip()
    runner = web.AppRunner(probe_app(token, trusted_proxies))
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
