"""Webhooks without a broker or a network: the signature, WEBHOOK_SECRET, the retry schedule,
the durable queues (in memory and in RocksDB), the delivery loops under a virtual clock (order
per URL, other URLs not held up, give-up after 24 h, resume after a restart), the tenants' URLs
from `licenses` records, and the notifier's rules (dedupe, backfill) applied to webhooks."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams.config.settings import ConfigError, Settings
from streams.notifier.licenses import WebhookBook
from streams.notifier.service import Notifier
from streams.notifier.webhooks import (
    EVENT_HEADER,
    KV,
    SIGNATURE_HEADER,
    Answer,
    Delivery,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
    RocksKV,
    next_try,
    queue_id,
    request_headers,
    retry_delay_s,
    shown,
    signature,
    webhook_secret,
)
from streams.stages.store import Record

T0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
SECRET = b"s" * 32
HOOK_A = "https://a.example/hooks/acme?token=abc"
HOOK_B = "http://127.0.0.1:8080/b"


# -- the signature and WEBHOOK_SECRET ------------------------------------------------------------


def test_signature_is_the_hex_hmac_sha256_of_the_body() -> None:
    # RFC 4231-style vector, as published for HMAC-SHA256
    body = b"The quick brown fox jumps over the lazy dog"
    assert signature(b"key", body) == (
        "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    )


def test_headers_name_the_event_and_sign_only_with_a_secret() -> None:
    body = b'{"event_id": "e-1"}'
    signed = request_headers("e-1", body, SECRET)
    assert signed["Content-Type"] == "application/json"
    assert signed[EVENT_HEADER] == "e-1"
    assert signed[SIGNATURE_HEADER] == signature(SECRET, body)
    assert SIGNATURE_HEADER not in request_headers("e-1", body, None)


# env -> the key, or the words of the one-line ConfigError
SECRETS: list[tuple[dict[str, str], bytes | str | None]] = [
    ({}, None),
    ({"WEBHOOK_SECRET": ""}, None),
    ({"WEBHOOK_SECRET": "k" * 32}, b"k" * 32),
    ({"WEBHOOK_SECRET": "ß" * 32}, ("ß" * 32).encode()),  # UTF-8 bytes, as set
    ({"WEBHOOK_SECRET": "short-secret"}, "at least 32 characters, got 12"),
    ({"WEBHOOK_SECRET": "k" * 32 + "\n"}, "white space"),
    ({"WEBHOOK_SECRET": " " + "k" * 32}, "white space"),
    ({"WEBHOOK_SECRET": "k" * 16 + "\x00" + "k" * 16}, "control character"),
]


@pytest.mark.parametrize(("env", "expected"), SECRETS)
def test_webhook_secret(env: dict[str, str], expected: bytes | str | None) -> None:
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected) as info:
            webhook_secret(env)
        assert "\n" not in str(info.value) and env["WEBHOOK_SECRET"].strip() not in str(info.value)
        return
    assert webhook_secret(env) == expected


@pytest.mark.parametrize(
    ("url", "in_the_log"),
    [
        ("https://hooks.example.com/services/T0/B0/secret", "https://hooks.example.com/…"),
        ("https://a.example/hooks?token=abc", "https://a.example/…"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_the_log_shows_a_url_without_its_path_or_query(url: str, in_the_log: str) -> None:
    assert shown(url) == in_the_log


# -- when to try again ---------------------------------------------------------------------------


def test_backoff_doubles_from_1_s_to_at_most_10_min() -> None:
    delays = [retry_delay_s(failures) for failures in range(1, 14)]
    assert delays == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]
    assert retry_delay_s(10_000) == 600  # no overflow after days of failures


# (enqueued at, failed at, failures so far incl. this one) -> next try, or None: give up
H = timedelta(hours=1)
SCHEDULE = [
    (T0, T0, 1, T0 + timedelta(seconds=1)),
    (T0, T0 + timedelta(seconds=1), 2, T0 + timedelta(seconds=3)),
    (T0, T0 + 2 * H, 30, T0 + 2 * H + timedelta(minutes=10)),
    # the last wait is cut short: the last try is at 24 h exactly
    (T0, T0 + 24 * H - timedelta(minutes=3), 100, T0 + 24 * H),
    (T0, T0 + 24 * H, 101, None),  # that try failed too: given up
    (T0, T0 + 30 * H, 1, None),  # first try of one that waited behind others for 30 h
]


@pytest.mark.parametrize(("enqueued_at", "failed_at", "failures", "expected"), SCHEDULE)
def test_next_try_and_give_up(enqueued_at, failed_at, failures, expected) -> None:
    assert next_try(enqueued_at, failed_at, failures) == expected


# -- the queues ----------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "rocksdb"])
def kv_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], KV]]:
    """Opens the same store again and again (a restart), in memory or in RocksDB."""
    current: list[KV] = []
    memory = MemoryKV()

    def open_kv() -> KV:
        if current:
            current.pop().close()
        kv: KV = memory if request.param == "memory" else RocksKV(tmp_path / "webhooks.db")
        current.append(kv)
        return kv

    yield open_kv
    if current:
        current.pop().close()


def body(n: int) -> bytes:
    # bytes a re-serialization would change: key order, spacing, non-ASCII, an escaped newline
    return f'{{"z": 1,  "event_id": "e-{n}", "tenant_id": "acmé", "n": "a\\nb"}}'.encode()


def test_each_url_is_a_fifo_of_exact_bodies_that_survives_a_restart(kv_factory) -> None:
    queue = DeliveryQueue(kv_factory())
    for n in range(3):
        new = queue.enqueue(f"e-{n}", "acme", [HOOK_A, HOOK_B], body(n), T0 + n * H)
        assert [d.url for d in new] == [HOOK_A, HOOK_B]
    queue.enqueue("g-0", "globex", [HOOK_A], body(9), T0)  # same URL, another tenant's queue
    a, b = queue_id("acme", HOOK_A), queue_id("acme", HOOK_B)
    assert queue.pending() == {a: 3, b: 3, queue_id("globex", HOOK_A): 1}

    queue = DeliveryQueue(kv_factory())  # a restart
    head = queue.head(a)
    assert head is not None and (head.event_id, head.body, head.enqueued_at) == ("e-0", body(0), T0)
    failed = queue.failed(head, "HTTP 500")
    assert queue.head(a) == failed and (failed.failures, failed.last_error) == (1, "HTTP 500")
    queue.delivered(failed)
    assert [queue.head(q).event_id for q in (a, b)] == ["e-1", "e-0"]  # type: ignore[union-attr]

    queue = DeliveryQueue(kv_factory())
    queue.enqueue("e-3", "acme", [HOOK_A], body(3), T0 + 3 * H)  # numbered after the others
    seen = []
    while (delivery := queue.head(a)) is not None:
        seen.append(delivery.event_id)
        queue.delivered(delivery)
    assert seen == ["e-1", "e-2", "e-3"]


def test_a_redelivered_event_is_not_enqueued_again(kv_factory) -> None:
    queue = DeliveryQueue(kv_factory())
    assert len(queue.enqueue("e-1", "acme", [HOOK_A, HOOK_A], body(1), T0)) == 1  # one per URL
    assert queue.enqueue("e-1", "acme", [HOOK_A, HOOK_B], body(1), T0) == []
    assert DeliveryQueue(kv_factory()).enqueue("e-1", "acme", [HOOK_A], body(1), T0) == []
    assert sum(DeliveryQueue(kv_factory()).pending().values()) == 1
    assert queue.enqueue("e-2", "acme", [], body(2), T0) == []  # no URL: nothing recorded


def test_given_up_deliveries_are_kept_30_days(kv_factory) -> None:
    queue = DeliveryQueue(kv_factory())
    queue.enqueue("e-1", "acme", [HOOK_A], body(1), T0)
    queue.enqueue("e-2", "acme", [HOOK_A], body(2), T0)
    a = queue_id("acme", HOOK_A)
    first = queue.head(a)
    assert first is not None
    queue.give_up(first, "HTTP 503", T0 + 24 * H)
    ((state, kept_body),) = queue.given_up()
    assert (state["event_id"], state["last_error"], kept_body) == ("e-1", "HTTP 503", body(1))
    assert state["url"] == HOOK_A and state["gave_up_at"] == (T0 + 24 * H).isoformat()
    second = queue.head(a)
    assert second is not None and second.event_id == "e-2"
    queue.give_up(second, "HTTP 503", T0 + 31 * 24 * H)  # the first one is 30 days old by then
    assert [state["event_id"] for state, _ in queue.given_up()] == ["e-2"]
    assert queue.pending() == {}


# -- the delivery loops, under a virtual clock ---------------------------------------------------


class VirtualClock:
    """Time moves only when every delivery loop waits: to the earliest wake-up."""

    def __init__(self, start: datetime) -> None:
        self.t = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self.t

    async def sleep_until(self, when: datetime) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), future))
        await future

    async def run(self, dispatcher: Dispatcher, until: Callable[[], bool] | None = None) -> None:
        """Until every queue is empty (or `until()`)."""
        while dispatcher.busy and not (until and until()):
            await asyncio.sleep(0)
            if self._sleepers and len(self._sleepers) == dispatcher.busy:
                when, _, future = heapq.heappop(self._sleepers)
                self.t = max(self.t, when)
                future.set_result(None)


@dataclass(frozen=True)
class Call:
    at: datetime
    url: str
    event_id: str
    signature: str | None
    body: bytes
    status: int


class Receivers:
    """The transport double: every URL answers 200 after its first `failing[url]` tries."""

    def __init__(self, clock: VirtualClock, failing: Mapping[str, int] | None = None) -> None:
        self.clock = clock
        self.failing = dict(failing or {})
        self.calls: list[Call] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        await asyncio.sleep(0)
        tries = sum(1 for call in self.calls if call.url == url)
        status = 500 if tries < self.failing.get(url, 0) else 204
        self.calls.append(
            Call(
                self.clock.now(),
                url,
                headers[EVENT_HEADER],
                headers.get(SIGNATURE_HEADER),
                body,
                status,
            )
        )
        return Answer(200 <= status < 300, f"HTTP {status}")

    def delivered(self, url: str) -> list[str]:
        return [call.event_id for call in self.calls if call.url == url and call.status < 300]


def counted(outcome: str) -> float:
    sample = REGISTRY.get_sample_value(
        "active_learners_webhook_deliveries_total", {"outcome": outcome}
    )
    return sample or 0.0


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_a_failing_receiver_gets_its_events_in_order_and_holds_up_no_other() -> None:
    clock = VirtualClock(T0)
    receivers = Receivers(clock, failing={HOOK_A: 3})
    dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), receivers, SECRET, clock)

    async def scenario() -> None:
        for n in range(3):
            dispatcher.enqueue(f"e-{n}", "acme", [HOOK_A, HOOK_B], body(n), clock.now())
        dispatcher.enqueue("g-0", "globex", [HOOK_B], body(9), clock.now())
        await clock.run(dispatcher)

    run(scenario())
    # A failed 3 times (at 0 s, 1 s and 3 s) before it took e-0, then the rest in order
    a_calls = [
        (c.event_id, c.status, (c.at - T0).seconds) for c in receivers.calls if c.url == HOOK_A
    ]
    assert a_calls == [
        ("e-0", 500, 0),
        ("e-0", 500, 1),
        ("e-0", 500, 3),
        ("e-0", 204, 7),
        ("e-1", 204, 7),
        ("e-2", 204, 7),
    ]
    # the other URL and the other tenant got everything at once, while A was failing
    assert receivers.delivered(HOOK_B) in (
        ["g-0", "e-0", "e-1", "e-2"],  # two queues, one per tenant: either may go first
        ["e-0", "g-0", "e-1", "e-2"],
        ["e-0", "e-1", "g-0", "e-2"],
        ["e-0", "e-1", "e-2", "g-0"],
    )
    assert all(call.at == T0 for call in receivers.calls if call.url == HOOK_B)
    # every try carries the exact body and its signature
    for call in receivers.calls:
        assert call.signature == signature(SECRET, call.body)
    assert {call.body for call in receivers.calls if call.event_id == "e-0"} == {body(0)}


def test_a_delivery_failing_for_24_h_is_given_up_and_the_queue_goes_on() -> None:
    clock = VirtualClock(T0)
    receivers = Receivers(clock, failing={HOOK_A: 10**9})
    queue = DeliveryQueue(MemoryKV())
    dispatcher = Dispatcher(queue, receivers, None, clock)
    before = {outcome: counted(outcome) for outcome in ("gave_up", "retry", "delivered")}

    async def scenario() -> timedelta:
        dispatcher.enqueue("e-0", "acme", [HOOK_A], body(0), clock.now())
        await clock.run(dispatcher, until=lambda: clock.t >= T0 + 12 * H)
        dispatcher.enqueue("e-1", "acme", [HOOK_A], body(1), clock.now())  # waits behind e-0
        e1_enqueued = clock.now() - T0
        await clock.run(dispatcher)
        return e1_enqueued

    e1_enqueued = run(scenario())
    tries = [(call.event_id, call.at - T0) for call in receivers.calls]
    e0 = [at for event_id, at in tries if event_id == "e-0"]
    first = [timedelta(seconds=s) for s in (0, 1, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 1623)]
    assert e0[: len(first)] == first
    assert all(b - a <= timedelta(minutes=10) for a, b in itertools.pairwise(e0))
    assert e0[-1] == 24 * H  # the last try is at 24 h, then it is given up
    # e-1, enqueued 12 h in, is tried as soon as e-0 is given up, until its own 24 h are over
    e1 = [at for event_id, at in tries if event_id == "e-1"]
    assert e1[0] == 24 * H and e1[-1] == e1_enqueued + 24 * H
    assert [state["event_id"] for state, _ in queue.given_up()] == ["e-0", "e-1"]
    assert queue.given_up()[0][0]["failures"] == len(e0)
    assert counted("gave_up") - before["gave_up"] == 2
    assert counted("retry") - before["retry"] == len(tries) - 2
    assert counted("delivered") == before["delivered"]


def test_pending_deliveries_resume_after_a_restart(tmp_path: Path) -> None:
    clock = VirtualClock(T0)
    path = tmp_path / "webhooks.db"

    async def until_stopped() -> Receivers:
        receivers = Receivers(clock, failing={HOOK_A: 10**9})
        kv = RocksKV(path)
        dispatcher = Dispatcher(DeliveryQueue(kv), receivers, SECRET, clock)
        for n in range(2):
            dispatcher.enqueue(f"e-{n}", "acme", [HOOK_A], body(n), clock.now())
        # two failed tries of e-0, then a stop while it waits for the third
        await clock.run(dispatcher, until=lambda: len(receivers.calls) >= 2)
        await dispatcher.stop()
        kv.close()
        return receivers

    async def after_restart() -> tuple[Receivers, datetime]:
        receivers = Receivers(clock)
        kv = RocksKV(path)
        dispatcher = Dispatcher(DeliveryQueue(kv), receivers, SECRET, clock)
        assert dispatcher.start() == 2
        restarted_at = clock.now()
        await clock.run(dispatcher)
        kv.close()
        return receivers, restarted_at

    before = run(until_stopped())
    assert [(call.event_id, call.status) for call in before.calls] == [("e-0", 500)] * 2
    after, restarted_at = run(after_restart())
    assert after.delivered(HOOK_A) == ["e-0", "e-1"]
    assert [call.at for call in after.calls] == [restarted_at] * 2  # at once, no wait
    assert after.calls[0].signature == signature(SECRET, body(0))


# -- the tenants' URLs, from `licenses` records --------------------------------------------------


def license_record(tenant_id: str = "acme", **fields: Any) -> bytes:
    return json.dumps({"tenant_id": tenant_id, "learner_limit": 10, **fields}).encode()


def test_the_latest_valid_license_of_a_tenant_says_where_its_events_go() -> None:
    book = WebhookBook()
    book.apply(b"acme", license_record(webhooks=[HOOK_A, HOOK_B]))
    book.apply(b"globex", license_record("globex", webhooks=[HOOK_B]))
    assert book.urls("acme") == (HOOK_A, HOOK_B) and len(book) == 2
    # records the worker dead-letters change nothing: the earlier license still governs
    book.apply(b"acme", license_record(webhooks=["ftp://a.example/"]))
    book.apply(b"acme", license_record(webhooks=["https://user:pw@a.example/"]))
    book.apply(b"acme", b"{not json")
    book.apply(b"other", license_record(webhooks=[]))  # under another tenant's key
    assert book.urls("acme") == (HOOK_A, HOOK_B)
    book.apply(b"acme", license_record(webhooks=[HOOK_B]))
    assert book.urls("acme") == (HOOK_B,)
    book.apply(None, license_record(webhooks=[]))  # no key: the worker takes it too
    assert book.urls("acme") == ()
    book.apply(b"globex", None)  # a tombstone
    assert book.urls("globex") == () and len(book) == 0


# -- the notifier's rules, applied to webhooks ---------------------------------------------------

EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "window": {"start": "2026-11-01", "end": "2026-12-01", "months": 1},
    "threshold_pct": 90,
    "threshold_learners": 450,
    "direction": "up",
    "active_learners": 452,
    "learner_limit": 500,
    "notify": ["a@acme.example"],
    "occurred_at": "2026-11-20T10:00:00+00:00",
}


class Hanging:
    """A receiver that never answers (the real transport gives up after 10 s)."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        await asyncio.Event().wait()
        raise AssertionError("never answers")


class DeadLetters:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sent.append(json.loads(value))


def test_the_notifier_enqueues_each_new_event_once_backfills_included(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    # the day the events happened: their window is no backfill then, whatever today is
    notifier = Notifier(
        settings, None, SECRET, clock=lambda: datetime(2026, 11, 20, 12, tzinfo=UTC)
    )
    notifier.producer = DeadLetters()
    # the license the events were counted with (an event's `notify` is its license's)
    license_ = license_record(webhooks=[HOOK_A, HOOK_B], notify=EVENT["notify"])
    notifier.webhook_book.apply(b"acme", license_)
    queue = DeliveryQueue(MemoryKV())
    ends_in_2025 = {"start": "2025-01-01", "end": "2025-02-01", "months": 1}
    events = [
        {**EVENT, "event_id": "e-1"},
        {**EVENT, "event_id": "e-1"},  # a redelivery
        {**EVENT, "event_id": "old", "window": ends_in_2025},  # a backfill: no mail, a webhook
        {**EVENT, "event_id": "no-mail", "notify": []},  # no mail, the webhooks all the same
        {**EVENT, "event_id": "bad-address", "notify": ["Ann <a@acme.example>"]},  # likewise
        {**EVENT, "event_id": "g-1", "tenant_id": "globex"},  # a tenant without webhooks
        {**EVENT, "event_id": "bad", "learner_limit": 0},  # dead-lettered: not an event
    ]
    raws = [json.dumps(event, indent=1).encode() for event in events]

    async def scenario() -> list[str]:
        # receivers that never answer: the mail goes on, the deliveries stay pending
        notifier.webhooks = Dispatcher(queue, Hanging(), SECRET)
        outcomes = []
        for offset, raw in enumerate(raws):
            record = Record(b"acme", raw, "p-threshold-events", 0, offset, 0)
            outcomes.append(await notifier.handle(record))
        await notifier.webhooks.stop()
        return outcomes

    try:
        outcomes = run(scenario())
    finally:
        notifier.store.close()
    assert outcomes == [
        "outbox",
        "duplicate",
        "skipped_backfill",
        "no_recipients",
        "invalid",
        "outbox",
        "invalid",
    ]
    bodies = {}
    for url in (HOOK_A, HOOK_B):
        seen = []
        while (delivery := queue.head(queue_id("acme", url))) is not None:
            seen.append(delivery.event_id)
            bodies[delivery.event_id] = delivery.body
            queue.delivered(delivery)
        assert seen == ["e-1", "old", "no-mail", "bad-address"]
    assert bodies["e-1"] == raws[0]  # the record's bytes, as they were on the topic
    assert queue.pending() == {}


def test_delivery_state_round_trips_through_the_store() -> None:
    queue = DeliveryQueue(MemoryKV())
    (delivery,) = queue.enqueue("e-1", "acme", [HOOK_A], body(1), T0)
    assert delivery == Delivery(1, "e-1", "acme", HOOK_A, body(1), T0)
    assert queue.head(delivery.queue) == delivery


def test_a_bad_webhook_secret_stops_the_notifier_before_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streams.notifier.service import run_notifier

    monkeypatch.setenv("WEBHOOK_SECRET", "too-short")
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET must have at least 32 characters"):
        run_notifier(settings)  # before any log line, Kafka client or state file
    assert list(tmp_path.iterdir()) == []
