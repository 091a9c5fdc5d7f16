"""Three leftovers of the notifier's retries (helper-67, 2026-12-04), each against what it runs
on: the real aiohttp client and a real aiohttp receiver on localhost, the real aiosmtplib and a
real SMTP server (aiosmtpd on a free localhost port), the queues in memory and in RocksDB. The
delivery loops' waits run on the webhook tests' virtual clock.

1. A webhook URL the license takes but aiohttp will not request (`http://127.1/`) was retried
   as a receiver that is away, for 24 h, and the tenant's later events to it waited as long.
2. A deferred e-mail went to its address even after a later license took the address off the
   tenant's `notify` list (or the license was removed).
3. The given-up deliveries were swept in enqueue order, stopping at the first one kept: one
   enqueued early and given up late kept every one given up before it past its 30 days."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from prometheus_client import REGISTRY
from pydantic import TypeAdapter

from schemas.licenses import WebhookUrl
from streams.config.settings import Settings
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings
from streams.notifier.webhooks import (
    AiohttpTransport,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
    _encode,
    _meta,
    queue_id,
)
from streams.stages.store import Record
from tests.unit.licenses_double import LicensesTopic
from tests.unit.test_notifier_hostile_addresses_review import (
    EVENT,
    NOW,
    DeadLetters,
    Mailboxes,
    free_port,
)
from tests.unit.test_webhooks import T0, VirtualClock, body, kv_factory  # noqa: F401 (a fixture)

DAY = timedelta(days=1)
GUARD_S = 30  # only so that a loop that never ends fails the test instead of hanging it


def counted(metric: str, outcome: str) -> float:
    return REGISTRY.get_sample_value(metric, {"outcome": outcome}) or 0.0


def guarded(coroutine: Any) -> Any:
    async def run() -> Any:
        return await asyncio.wait_for(coroutine, GUARD_S)

    return asyncio.run(run())


# -- 1. a URL the HTTP client will not request -----------------------------------------------------

# Each an http(s):// URL the license takes (urlsplit reads a host), each refused by yarl before
# any connection: not a canonical IPv4 address, a backslash, text after an IPv6 literal, a soft
# hyphen (an IDNA-disallowed character) in the host.
UNREQUESTABLE = [
    "http://127.1/hooks",
    "https://256.256.256.256/hooks",
    "http://1.2.3.4.5/",
    "http://ex\\ample.com/",
    "http://[::1]x/",
    "http://ex\u00adample.com/hooks?token=secret",
]


@pytest.mark.parametrize("url", UNREQUESTABLE)
def test_a_url_the_http_client_refuses_is_given_up_at_once_and_the_next_events_go_on(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """CONTRACT 'webhooks: list of http(s):// URLs': the license keeps them (refusing the whole
    license for one would keep the tenant's previous limit and addresses in force), so the
    notifier gives each delivery to such a URL up at its first try, as any delivery no try can
    cure: no 24 h of tries, and the tenant's next event to it (and to its good URL) goes on."""
    assert TypeAdapter(WebhookUrl).validate_python(url) == url  # the license takes it
    clock = VirtualClock(T0)
    before = {outcome: counted_hooks(outcome) for outcome in ("gave_up", "retry", "delivered")}
    caplog.set_level(logging.WARNING, "active_learners.notifier.webhooks")

    async def scenario() -> tuple[DeliveryQueue, list[str]]:
        received: list[str] = []

        async def receiver(request: web.Request) -> web.Response:
            received.append(request.headers["X-Active-Learners-Event"])
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/ok", receiver)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        good = f"http://127.0.0.1:{runner.addresses[0][1]}/ok"
        transport = AiohttpTransport(timeout_s=2.0)
        dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), transport, None, clock)
        try:
            for n in range(2):
                dispatcher.enqueue(f"e-{n}", "acme", [url, good], body(n), clock.now())
            await clock.run(dispatcher, until=lambda: clock.t > T0 + timedelta(minutes=5))
            return dispatcher.queue, received
        finally:
            await dispatcher.stop()
            await transport.close()
            await runner.cleanup()

    queue, received = guarded(scenario())
    assert received == ["e-0", "e-1"]  # the tenant's good URL, in order
    assert queue.pending() == {}
    given_up = [state for state, _ in queue.given_up()]
    # both given up at their first try, at once: the second never waited behind the first
    assert [(s["event_id"], s["failures"], s["gave_up_at"]) for s in given_up] == [
        ("e-0", 1, T0.isoformat()),
        ("e-1", 1, T0.isoformat()),
    ]
    assert all("the HTTP client cannot request this URL" in s["last_error"] for s in given_up)
    assert counted_hooks("gave_up") - before["gave_up"] == 2
    assert counted_hooks("retry") == before["retry"]  # not one try again
    assert counted_hooks("delivered") - before["delivered"] == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("no try can deliver it" in line for line in errors)
    assert all("the HTTP client cannot request this URL" in line for line in errors)
    assert not any("token=secret" in r.getMessage() for r in caplog.records)  # path not shown


def counted_hooks(outcome: str) -> float:
    return counted("active_learners_webhook_deliveries_total", outcome)


# -- 2. deferred mail to an address a later license removed ----------------------------------------

FULL = "full@acme.example"
OPS = "ops@acme.example"


@pytest.fixture
def mailboxes() -> Iterator[tuple[Mailboxes, int]]:
    boxes = Mailboxes()
    port = free_port()
    controller = Controller(boxes, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield boxes, port
    finally:
        controller.stop()


class Site:
    """A notifier (its state folder, the SMTP server, the `licenses` topic) that a test can
    restart; its deferred e-mail waits on `clock`."""

    def __init__(self, tmp_path: Path, port: int) -> None:
        self.settings = replace(Settings.from_env({}), state_dir=tmp_path)
        self.smtp = SmtpSettings.from_env(
            {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_TLS": "none"}
        )
        self.clock = VirtualClock(NOW)
        self.licenses = LicensesTopic()

    def notifier(self) -> Notifier:
        notifier = Notifier(self.settings, self.smtp, clock=lambda: NOW, retry_clock=self.clock)
        notifier.producer = DeadLetters()
        notifier.licenses.consumer = self.licenses.consumer()
        return notifier

    def license(self, *notify: str) -> None:
        self.licenses.publish("acme", learner_limit=500, notify=list(notify))

    async def run_deferred(self, notifier: Notifier) -> None:
        assert notifier.deferred_mail is not None
        await self.clock.run(notifier.deferred_mail)


def threshold_event(event_id: str, *notify: str) -> Record:
    value = json.dumps({**EVENT, "event_id": event_id, "notify": list(notify)}).encode()
    return Record(b"acme", value, "threshold-events", 0, 7, 0)


def deferred_mail(outcome: str) -> float:
    return counted("active_learners_deferred_mail_total", outcome)


async def defer_full_mailbox(site: Site, boxes: Mailboxes, notifier: Notifier) -> None:
    """acme licensed with FULL and OPS; an event mailed to OPS, FULL's mailbox full for now."""
    site.license(FULL, OPS)
    assert await notifier.licenses.catch_up(asyncio.Event())  # as run() does at its start
    boxes.refusing[FULL] = "452 4.2.2 mailbox full"
    assert await notifier.handle(threshold_event("e-1", FULL, OPS)) == "sent"
    assert boxes.envelopes == [[OPS]]
    assert notifier.deferred_mail is not None
    assert notifier.deferred_mail.waiting("acme", FULL)
    del boxes.refusing[FULL]  # the mailbox would take it now


@pytest.mark.parametrize("later", ["address removed", "license removed"])
def test_deferred_mail_is_dropped_once_the_license_no_longer_lists_its_address(
    later: str,
    tmp_path: Path,
    mailboxes: tuple[Mailboxes, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    boxes, port = mailboxes
    site = Site(tmp_path, port)
    before = {o: deferred_mail(o) for o in ("dropped", "delivered", "gave_up")}
    caplog.set_level(logging.WARNING, "active_learners.notifier.webhooks")

    async def scenario() -> None:
        notifier = site.notifier()
        try:
            await defer_full_mailbox(site, boxes, notifier)
            # the administrator takes the address off (no event comes meanwhile: the book
            # learns it only if the deferred e-mail's turn reads the licenses)
            if later == "address removed":
                site.license(OPS)
            else:
                site.licenses.remove("acme")
            await site.run_deferred(notifier)
            assert notifier.deferred_mail is not None
            assert notifier.deferred_mail.queue.pending() == {}
            assert notifier.deferred_mail.queue.given_up() == []  # dropped, not given up
        finally:
            assert notifier.deferred_mail is not None
            await notifier.deferred_mail.stop()
            notifier.close()

    guarded(scenario())
    assert boxes.envelopes == [[OPS]]  # never mailed to FULL
    assert deferred_mail("dropped") - before["dropped"] == 1
    assert deferred_mail("delivered") == before["delivered"]
    assert deferred_mail("gave_up") == before["gave_up"]
    (line,) = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert "mail: dropped event e-1 for notify[0] (tenant acme)" in line
    assert "no longer in the license's notify list" in line
    assert FULL not in caplog.text  # masked, as every line of the channel


def test_deferred_mail_is_not_dropped_by_a_notifier_that_has_not_read_the_licenses_yet(
    tmp_path: Path, mailboxes: tuple[Mailboxes, int]
) -> None:
    """After a restart the deferred e-mail resumes at once (run() starts its loops before it
    reads `licenses`): an empty book must not read as 'no longer listed'. Nor may a book that
    read a license removing the address when a later one puts it back."""
    boxes, port = mailboxes
    site = Site(tmp_path, port)
    before = deferred_mail("dropped")

    async def scenario() -> None:
        first = site.notifier()
        try:
            await defer_full_mailbox(site, boxes, first)
            boxes.refusing[FULL] = "452 4.2.2 mailbox full"  # still full before the restart
            first.stop()
        finally:
            assert first.deferred_mail is not None
            await first.deferred_mail.stop()
            first.close()
        del boxes.refusing[FULL]
        site.license(OPS)  # removed...
        again = site.notifier()  # a restart: its book is empty, nothing read
        try:
            assert await again.licenses.catch_up(asyncio.Event())  # ...read (the address gone)
            assert not again.webhook_book.lists("acme", FULL)
            site.license(OPS, FULL.upper())  # ...and put back (in capitals) before its turn
            assert again.deferred_mail is not None
            assert again.deferred_mail.start() == 1
            await site.run_deferred(again)
        finally:
            assert again.deferred_mail is not None
            await again.deferred_mail.stop()
            again.close()

    guarded(scenario())
    assert boxes.envelopes == [[OPS], [FULL]]
    assert deferred_mail("dropped") == before


# -- 3. the sweep of given-up deliveries ----------------------------------------------------------

HOOKS = [f"https://hooks.example/{n}" for n in range(6)]


def test_given_up_deliveries_are_each_kept_30_days_from_when_they_were_given_up(
    kv_factory,  # noqa: F811 (the fixture imported above)
) -> None:
    """Deliveries are given up in another order than they were enqueued: one to a receiver
    that fails is given up 24 h after it was enqueued, one to an address whose server is away
    waits with no deadline, one refused for good goes at once. Sketch (days from T0):

        seq 1  enqueued 0, given up 10    kept until 40
        seq 2  enqueued 0, given up  0    kept until 30   (swept at 31 though seq 1 is kept)
        seq 3  enqueued 0, given up 31    kept until 61
        seq 4  enqueued 0, pending for ever               (never swept)
    """
    queue = DeliveryQueue(kv_factory())
    for n in range(4):
        queue.enqueue(f"e-{n + 1}", "acme", [HOOKS[n]], body(n), T0)

    def give_up(n: int, at: timedelta) -> None:
        delivery = queue.head(queue_id("acme", HOOKS[n - 1]))
        assert delivery is not None
        queue.give_up(delivery, "HTTP 503", T0 + at)

    def kept() -> list[str]:
        return [state["event_id"] for state, _ in queue.given_up()]

    give_up(2, 0 * DAY)
    give_up(1, 10 * DAY)
    assert sorted(kept()) == ["e-1", "e-2"]
    queue = DeliveryQueue(kv_factory())  # a restart
    give_up(3, 31 * DAY)
    assert kept() == ["e-1", "e-3"]  # e-2 is 31 days old; e-1 only 21
    # (an enqueue sweeps too: this one comes when e-1 is still a microsecond short of it)
    queue.enqueue("e-5", "acme", [HOOKS[4]], body(5), T0 + 40 * DAY - timedelta(microseconds=1))
    give_up(5, 40 * DAY - timedelta(microseconds=1))  # e-1 one microsecond short of 30 days
    assert kept() == ["e-1", "e-3", "e-5"]
    queue.enqueue("e-6", "acme", [HOOKS[5]], body(6), T0 + 40 * DAY)
    give_up(6, 40 * DAY)  # e-1 exactly 30 days old
    assert kept() == ["e-3", "e-5", "e-6"]
    queue.enqueue("e-7", "acme", [HOOKS[0]], body(7), T0 + 400 * DAY)
    give_up(1, 400 * DAY)
    assert kept() == ["e-7"]
    assert queue.pending() == {queue_id("acme", HOOKS[3]): 1}  # e-4, pending all along
    head = queue.head(queue_id("acme", HOOKS[3]))
    assert head is not None and head.event_id == "e-4"


def test_given_up_deliveries_kept_by_an_older_version_are_swept_in_the_same_order(
    kv_factory,  # noqa: F811 (the fixture imported above)
) -> None:
    """Versions before this one kept them under x/<seq>, in enqueue order: opening the queue
    moves them, so that they are swept by when they were given up too."""
    kv = kv_factory()
    queue = DeliveryQueue(kv)
    deliveries = [queue.enqueue(f"e-{n}", "acme", [HOOKS[n]], body(n), T0)[0] for n in range(3)]
    # as the older version wrote them: e-0 given up on day 10, e-1 on day 0
    for delivery, at in zip(deliveries[:2], (10 * DAY, 0 * DAY), strict=True):
        record = _encode(_meta(delivery, gave_up_at=(T0 + at).isoformat()), delivery.body)
        kv.write(
            {b"x/%016x" % delivery.seq: record},
            [b"q/%s/%016x" % (delivery.queue.encode(), delivery.seq)],
        )
    queue = DeliveryQueue(kv_factory())  # the new version starts
    assert [state["event_id"] for state, _ in queue.given_up()] == ["e-1", "e-0"]
    assert list(queue.kv.scan(b"x/")) == []
    head = queue.head(deliveries[2].queue)
    assert head is not None
    queue.give_up(head, "HTTP 503", T0 + 31 * DAY)
    assert [state["event_id"] for state, _ in queue.given_up()] == ["e-0", "e-2"]


@pytest.mark.parametrize("sweeper", ["an enqueue", "a start"])
def test_given_up_deliveries_go_after_30_days_though_nothing_else_is_given_up(
    sweeper,
    kv_factory,  # noqa: F811 (the fixture imported above)
) -> None:
    """A notifier that gives nothing up for months keeps no delivery (an address, a body) past
    its 30 days for longer than until its next event or its next start."""
    kv = kv_factory()
    queue = DeliveryQueue(kv)
    queue.enqueue("e-1", "acme", [HOOKS[0]], body(1), T0)
    delivery = queue.head(queue_id("acme", HOOKS[0]))
    assert delivery is not None
    queue.give_up(delivery, "HTTP 410", T0)
    later = T0 + 30 * DAY
    if sweeper == "an enqueue":
        queue.enqueue("e-2", "acme", [HOOKS[1]], body(2), later - timedelta(microseconds=1))
        assert [state["event_id"] for state, _ in queue.given_up()] == ["e-1"]  # not yet
        queue.enqueue("e-3", "acme", [HOOKS[2]], body(3), later)
    else:

        async def start() -> int:  # the notifier's restart, 30 days on
            clock = VirtualClock(later)
            return Dispatcher(DeliveryQueue(kv), AiohttpTransport(), None, clock).start()

        assert asyncio.run(start()) == 0
        queue = DeliveryQueue(kv)
    assert queue.given_up() == []
