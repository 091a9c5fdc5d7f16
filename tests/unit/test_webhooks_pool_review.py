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
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from streams.notifier import smtp, webhooks
from streams.notifier.smtp import SmtpSettings
from streams.notifier.webhooks import (
    AiohttpTransport,
    Answer,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
)
from tests.unit.test_notifier_hostile_addresses_review import GOOD, Mailboxes, free_port

T0 = datetime.now(UTC)  # the Dispatcher runs on the wall clock: enqueued now
TIMEOUT_S = 2.0


async def receivers() -> tuple[web.AppRunner, int, asyncio.Event]:
    """`/hang/...` answers only once the event returned is set; `/ok` answers 204 at once."""
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=503)

    async def ok(request: web.Request) -> web.Response:
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hang/{n}", hang)
    app.router.add_post("/ok", ok)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port, release


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


async def cancel_for_sure(dispatcher: Dispatcher) -> None:
    """Dispatcher.stop(), without its hang (see the test below): cancelled until they end."""
    while dispatcher._loops:
        loops = list(dispatcher._loops.values())
        for loop in loops:
            loop.cancel()
        await asyncio.wait(loops, timeout=0.1)


def test_receivers_that_hang_do_not_hold_up_another_tenants_webhook() -> None:
    async def scenario() -> tuple[list[str], float]:
        runner, port, release = await receivers()
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
            release.set()
            await cancel_for_sure(dispatcher)
            await transport.close()
            await runner.cleanup()

    answers, waited = asyncio.run(scenario())
    assert answers == ["HTTP 204"], f"small's receiver answers at once, its tries got {answers}"
    assert waited < 1.0, f"small's event reached its receiver after {waited:.1f} s"


def test_a_stop_while_tries_time_out_ends_every_delivery_loop() -> None:
    """Dispatcher.stop() cancels each loop once and gathers them. A try that ends (its answer
    comes, its timeout runs out) as the cancel comes returns its answer all the same, the
    cancellation gone (aiohttp uncancels the task): that loop records a failed try and goes on
    to its backoff sleep and its next try, and stop() waits for it for ever. The notifier's
    run() awaits it before it stops its consumer and producer: a SIGTERM then ends only by
    ShutdownGuard's os._exit after 12 s, with exit code 1 and 'did not stop ... (is the Kafka
    broker reachable?)'."""

    async def scenario() -> tuple[bool, int]:
        runner, port, release = await receivers()
        base = f"http://127.0.0.1:{port}"
        transport = AiohttpTransport(timeout_s=1.0)
        dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), transport, None)
        try:
            urls = [f"{base}/hang/{n}" for n in range(webhooks.MAX_CONNECTIONS)]
            dispatcher.enqueue("e-1", "acme", urls, b"{}", T0)
            await asyncio.sleep(1.0)  # as their timeouts run out,
            release.set()  # the receivers answer (503), and the notifier is told to stop
            stop = asyncio.ensure_future(dispatcher.stop())
            done, _ = await asyncio.wait([stop], timeout=3.0)
            return bool(done), len(dispatcher._loops)
        finally:
            release.set()
            await cancel_for_sure(dispatcher)
            await transport.close()
            await runner.cleanup()

    stopped, running = asyncio.run(scenario())
    assert stopped, f"stop() still waits after 3 s: {running} delivery loops went on"


def test_webhook_names_that_never_resolve_do_not_hold_up_the_e_mail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiohttp's default resolver looks names up with the event loop's getaddrinfo(), in
    asyncio's default executor: min(32, CPUs + 4) threads, 6 on a 2-core machine, shared with
    aiosmtplib's connection to SMTP_HOST and aiokafka's to the brokers. A license whose URLs
    name hosts whose name server does not answer (each lookup holds its thread for the
    resolver's timeouts, 10 s and more, after the try itself gave up) takes every thread: the
    consumer's e-mail to SMTP_HOST waits behind them (past aiosmtplib's 20 s, a failed try of
    the server, waited out before every later event)."""
    real = socket.getaddrinfo

    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".blackhole.example"):
            time.sleep(3)  # a name server that does not answer
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    mailboxes = Mailboxes()
    port = free_port()
    controller = Controller(mailboxes, hostname="127.0.0.1", port=port)
    controller.start()
    settings = SmtpSettings(host="localhost", port=port, sender="al@localhost", tls="none")

    async def scenario() -> float:
        transport = AiohttpTransport(timeout_s=10.0)
        dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), transport, None)
        urls = [f"http://h{n}.blackhole.example/hook" for n in range(16)]
        dispatcher.enqueue("e-1", "acme", urls, b"{}", T0)
        await asyncio.sleep(0.2)  # their lookups are under way
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "al@localhost", GOOD, "x"
        message.set_content("x")
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await smtp.send(message, settings, None)
            return loop.time() - started
        finally:
            await cancel_for_sure(dispatcher)
            await transport.close()

    try:
        took = asyncio.run(scenario())
    finally:
        controller.stop()
    assert mailboxes.envelopes == [[GOOD]]
    assert took < 1.5, f"the e-mail waited {took:.1f} s for threads the webhooks' lookups held"
