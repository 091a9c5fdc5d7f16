"""Found by a review (2026-12-03, helper-65): receivers that hang hold up other tenants' webhooks.

docs/webhooks.md: 'A receiver that fails holds up only its own queue: never another URL,
another tenant, or the e-mails.' AiohttpTransport shares one connection pool of
MAX_CONNECTIONS (256) over every queue, and its 10 s timeout (`ClientTimeout(total=...)`)
counts the wait for a free connection too. A license may list any number of `webhooks` (there
is no cap), and many tenants may use one integrator's receiver: 256 tries that hang take every
connection, and another tenant's delivery to a receiver that answers at once waits for a
connection until its own timeout runs out: a failed try, tried again with backoff while the
hanging ones, on the same schedule, take the pool again.

A real aiohttp server on a free localhost port; the transport's timeout is shortened to 2 s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime

from aiohttp import web

from streams.notifier import webhooks
from streams.notifier.webhooks import (
    AiohttpTransport,
    Answer,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
)

T0 = datetime.now(UTC)  # the Dispatcher runs on the wall clock: enqueued now
TIMEOUT_S = 2.0


async def receivers() -> tuple[web.AppRunner, int, list[str]]:
    """`/hang/...` never answers; `/ok` answers 204 at once."""
    answered: list[str] = []

    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        return web.Response(status=204)

    async def ok(request: web.Request) -> web.Response:
        answered.append(request.headers[webhooks.EVENT_HEADER])
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hang/{n}", hang)
    app.router.add_post("/ok", ok)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port, answered


class Recording:
    """The real transport, with each answer the `/ok` receiver's tries got."""

    def __init__(self, transport: AiohttpTransport) -> None:
        self.transport = transport
        self.answers: list[str] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        answer = await self.transport.post(url, body, headers)
        if url.endswith("/ok"):
            self.answers.append(answer.detail)
        return answer


def test_receivers_that_hang_do_not_hold_up_another_tenants_webhook() -> None:
    async def scenario() -> tuple[list[str], float]:
        runner, port, _ = await receivers()
        base = f"http://127.0.0.1:{port}"
        transport = AiohttpTransport(timeout_s=TIMEOUT_S)
        recording = Recording(transport)
        dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), recording, None)
        try:
            # one license with as many URLs as the pool has connections, all of them hanging
            hanging = [f"{base}/hang/{n}" for n in range(webhooks.MAX_CONNECTIONS)]
            dispatcher.enqueue("big-1", "big", hanging, b"{}", T0)
            await asyncio.sleep(0.3)  # their tries are under way
            loop = asyncio.get_running_loop()
            started = loop.time()
            dispatcher.enqueue("small-1", "small", [f"{base}/ok"], b"{}", T0)
            while "HTTP 204" not in recording.answers and loop.time() - started < 3 * TIMEOUT_S:
                await asyncio.sleep(0.05)
            return recording.answers, loop.time() - started
        finally:
            await dispatcher.stop()
            await transport.close()
            await runner.cleanup()

    answers, waited = asyncio.run(scenario())
    assert answers == ["HTTP 204"], f"small's receiver answers at once, its tries got {answers}"
    assert waited < 1.0, f"small's event reached its receiver after {waited:.1f} s"
