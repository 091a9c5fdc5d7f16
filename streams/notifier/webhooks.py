"""Webhooks: every threshold event POSTed to each URL of the tenant license's `webhooks`.

How a delivery goes (docs/webhooks.md says it for receivers):
  1. The notifier's consumer enqueues the event once per URL of the tenant's latest license
     (streams/notifier/licenses.py) in the notifier's RocksDB, in one atomic write, before it
     commits the event's offset: a crash or a stop loses no delivery, and a redelivered event is
     not enqueued twice. The body is the event's record value, byte for byte.
  2. One delivery loop per (tenant, URL) queue POSTs the queue's head, signed with
     WEBHOOK_SECRET. A 2xx answer delivers it; any other answer, a connection error or 10 s
     without an answer is a failed try, tried again after 1 s, 2 s, 4 s, ... at most 10 min
     apart. The next event of that queue waits: a receiver sees a tenant's events in order. A
     failing receiver holds up only its own queue, never another URL, tenant or the e-mails.
  3. A delivery that still fails 24 h after it was enqueued is given up: logged (ERROR),
     counted, and kept 30 days in RocksDB with its body and last error; the queue goes on. So
     is, at its first try, one to a URL the HTTP client refuses to request (`http://127.1/`,
     which the license takes as the http:// URL it is): no later try can do better.
  4. A delivery whose URL the tenant's latest license no longer names is dropped, untried, at
     its next try (the channel's `unwanted`: streams/notifier/service.py).
On start the loops resume every pending delivery, trying each queue's head at once.

Pure parts (no I/O): the signature and headers, the retry schedule, the queue over a small
key-value protocol (`MemoryKV` is its in-process double), and the dispatcher, which gets its
transport and clock injected. The shell: `RocksKV` and `AiohttpTransport`.

The queues and the dispatcher serve the e-mail a mailbox refused for now as well (a `Channel`
names what is delivered; streams/notifier/deferred_mail.py): an SMTP server's answer can also
say that no try will help (`Answer.final`), that the whole server is away (`server_down`), or
that it may be either the address's or the server's (`unclear`: the channel's `proven` decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import re
import socket
from collections import Counter as Tally
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge

from streams.config.settings import APP_NAME, ConfigError
from streams.notifier import metrics

log = logging.getLogger("active_learners.notifier.webhooks")

TIMEOUT_S = 10.0  # one try: connecting, sending and the answer's status line
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 600.0
GIVE_UP_AFTER = timedelta(hours=24)  # counted from when the event was enqueued
KEEP_GIVEN_UP = timedelta(days=30)
FORGET_CHUNK = 10_000  # keys deleted in one write when old events are forgotten
MIN_SECRET_LENGTH = 32
MAX_CONNECTIONS = 256
# Tries under way at once for one tenant: a license may list any number of URLs, and receivers
# that hang would otherwise take every connection while other tenants' tries wait for one.
TRIES_PER_TENANT = 16
# Threads of the webhooks' own name lookups (asyncio's default executor has CPUs + 4).
DNS_THREADS = 16

EVENT_HEADER = "X-Active-Learners-Event"
SIGNATURE_HEADER = "X-Active-Learners-Signature"
USER_AGENT = f"{APP_NAME}-webhooks"

webhook_deliveries_total = metrics.own(
    Counter(
        "active_learners_webhook_deliveries_total",
        "Webhook deliveries (one per event and URL), by outcome: enqueued, delivered, gave_up "
        "(still failing 24 h after it was enqueued, or to a URL the HTTP client will not request), "
        "dropped (its URL no longer in the license's webhooks); retry counts each failed try tried "
        "again",
        ["outcome"],
    )
)
webhook_pending = metrics.own(
    Gauge("active_learners_webhook_pending", "Webhook deliveries enqueued and not yet delivered")
)


# -- settings ------------------------------------------------------------------------------------

_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def webhook_secret(env: Mapping[str, str] = os.environ) -> bytes | None:
    """The HMAC key: WEBHOOK_SECRET's UTF-8 bytes, exactly as set; None when it is not set.
    A value the receivers would likely get wrong is a one-line ConfigError (never echoed)."""
    text = env.get("WEBHOOK_SECRET", "")
    if not text:
        return None
    if text != text.strip() or _UNPRINTABLE.search(text):
        raise ConfigError(
            "WEBHOOK_SECRET must not begin or end with white space nor contain a control "
            "character (receivers use the same bytes to check signatures)"
        )
    if len(text) < MIN_SECRET_LENGTH:
        raise ConfigError(
            f"WEBHOOK_SECRET must have at least {MIN_SECRET_LENGTH} characters, got {len(text)}"
        )
    return text.encode("utf-8")


# -- what is sent --------------------------------------------------------------------------------


def signature(secret: bytes, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of the body>`: the X-Active-Learners-Signature header."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def request_headers(event_id: str, body: bytes, secret: bytes | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        EVENT_HEADER: event_id,
        "User-Agent": USER_AGENT,
    }
    if secret is not None:
        headers[SIGNATURE_HEADER] = signature(secret, body)
    return headers


def shown(url: str) -> str:
    """A URL as the log shows it: scheme and host only, since many webhook URLs carry the
    receiver's own secret in their path or query (`https://hooks.example.com/…`)."""
    parts = urlsplit(url)
    rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
    return f"{parts.scheme}://{parts.netloc}" + ("/…" if rest.strip("/") else rest)


def queue_id(tenant_id: str, url: str) -> str:
    """The name of the (tenant, URL) queue: a hash, so that any id and URL make a safe key."""
    return hashlib.sha256(f"{tenant_id}\n{url}".encode()).hexdigest()[:32]


# -- when to try again ---------------------------------------------------------------------------


def retry_delay_s(failures: int) -> float:
    """The wait after the `failures`-th failed try in a row: 1 s, 2 s, 4 s, ... at most 10 min."""
    return min(FIRST_DELAY_S * 2 ** min(max(failures, 1) - 1, 32), MAX_DELAY_S)


def next_try(enqueued_at: datetime, failed_at: datetime, failures: int) -> datetime | None:
    """When to try again after a failed try, or None: give up. Every delivery gets one try at
    least; the last one is at 24 h after it was enqueued (no wait goes past that)."""
    deadline = enqueued_at + GIVE_UP_AFTER
    if failed_at >= deadline:
        return None
    return min(failed_at + timedelta(seconds=retry_delay_s(failures)), deadline)


def retry_at(
    enqueued_at: datetime, failed_at: datetime, failures: int, answer: Answer
) -> datetime | None:
    """`next_try` after a failed try that `answer` describes, or None: give up. An answer no
    try can cure gives up at once. While the whole server is away the backoff goes on with no
    deadline: the outage is not the delivery's fault, and e-mail waits for its server however
    long it takes (the notifier stops handling events meanwhile). Given up, then, only once
    the server is back and still refuses it."""
    if answer.final:
        return None
    if answer.server_down:
        return failed_at + timedelta(seconds=retry_delay_s(failures))
    return next_try(enqueued_at, failed_at, failures)


# -- the queues ----------------------------------------------------------------------------------


class KV(Protocol):
    """Ordered bytes keys and values: RocksDB (RocksKV) or a dict (MemoryKV)."""

    def get(self, key: bytes) -> bytes | None: ...

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()) -> None:
        """All of it or nothing (one RocksDB write batch)."""
        ...

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """The keys that start with `prefix` and their values, in key order."""
        ...

    def close(self) -> None: ...


class MemoryKV:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()) -> None:
        for key in deletes:
            self.data.pop(key, None)
        self.data.update(puts)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key in sorted(k for k in self.data if k.startswith(prefix)):
            yield key, self.data[key]

    def close(self) -> None:
        pass


class RocksKV:
    """The notifier's RocksDB file of webhook deliveries (its write-ahead log makes every write
    survive a crash of this process, as the notifier's store of mailed events does)."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))
        self._closed = False

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return None if value is None else bytes(value)

    def write(self, puts: Mapping[bytes, bytes], deletes: Iterable[bytes] = ()) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch()
        for key in deletes:
            batch.delete(key)
        for key, value in puts.items():
            batch.put(key, value)
        self._db.write(batch)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, bytes(value)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()


@dataclass(frozen=True)
class Delivery:
    """One event for one URL, pending."""

    seq: int  # enqueue order, over every queue
    event_id: str
    tenant_id: str
    url: str
    body: bytes  # the threshold event's record value, byte for byte
    enqueued_at: datetime
    failures: int = 0  # failed tries so far
    last_error: str = ""

    @property
    def queue(self) -> str:
        return queue_id(self.tenant_id, self.url)


def _meta(delivery: Delivery, **more: Any) -> dict[str, Any]:
    return {
        "seq": delivery.seq,
        "event_id": delivery.event_id,
        "tenant_id": delivery.tenant_id,
        "url": delivery.url,
        "enqueued_at": delivery.enqueued_at.isoformat(),
        "failures": delivery.failures,
        "last_error": delivery.last_error,
        **more,
    }


def _encode(meta: dict[str, Any], body: bytes) -> bytes:
    # one JSON line (json.dumps never writes a raw newline), then the body as it is
    return json.dumps(meta, sort_keys=True).encode() + b"\n" + body


def _decode(value: bytes) -> tuple[dict[str, Any], bytes]:
    meta, _, body = value.partition(b"\n")
    return json.loads(meta), body


class DeliveryQueue:
    """Pending deliveries, one FIFO per (tenant, URL), over a KV. Keys:
    q/<queue>/<seq, 16 hex>   a pending delivery: its state as a JSON line, then the body
    e/<event_id>              that event's deliveries were enqueued (so, never again), kept
                              until Kafka can no longer hand the event out again
    g/<gave_up_at, 16 hex µs since 1970>/<seq, 16 hex>
                              a delivery given up, kept 30 days: in the order they were given
                              up, which is not the order they were enqueued in (a delivery to
                              a server that is away waits with no deadline)
    seq                       the last sequence number used
    (x/<seq, 16 hex>: how versions before 2026-12-04 kept the given-up deliveries; moved to
    g/ when the queue is opened)
    """

    def __init__(self, kv: KV) -> None:
        self.kv = kv
        last = kv.get(b"seq")
        self._seq = int(last) if last else 0
        self._move_old_given_up()

    def enqueue(
        self, event_id: str, tenant_id: str, urls: Iterable[str], body: bytes, now: datetime
    ) -> list[Delivery]:
        """The new deliveries, one per URL; none when this event's were enqueued before."""
        marker = b"e/" + event_id.encode()
        urls = list(dict.fromkeys(urls))
        if not urls or self.kv.get(marker) is not None:
            return []
        deliveries, puts = [], {}
        for url in urls:
            self._seq += 1
            delivery = Delivery(self._seq, event_id, tenant_id, url, body, now)
            puts[_pending_key(delivery)] = _encode(_meta(delivery), body)
            deliveries.append(delivery)
        puts[marker] = json.dumps({"at": now.isoformat(), "urls": len(urls)}).encode()
        puts[b"seq"] = str(self._seq).encode()
        self.kv.write(puts, self._expired(now))
        return deliveries

    def head(self, queue: str) -> Delivery | None:
        for _, value in self.kv.scan(b"q/" + queue.encode() + b"/"):
            meta, body = _decode(value)
            return Delivery(
                seq=meta["seq"],
                event_id=meta["event_id"],
                tenant_id=meta["tenant_id"],
                url=meta["url"],
                body=body,
                enqueued_at=datetime.fromisoformat(meta["enqueued_at"]),
                failures=meta["failures"],
                last_error=meta["last_error"],
            )
        return None

    def pending(self) -> dict[str, int]:
        """Pending deliveries per queue."""
        return dict(Tally(key.split(b"/")[1].decode() for key, _ in self.kv.scan(b"q/")))

    def failed(self, delivery: Delivery, error: str) -> Delivery:
        failed = replace(delivery, failures=delivery.failures + 1, last_error=error)
        self.kv.write({_pending_key(failed): _encode(_meta(failed), failed.body)})
        return failed

    def delivered(self, delivery: Delivery) -> None:
        self.kv.write({}, [_pending_key(delivery)])

    def drop(self, delivery: Delivery) -> None:
        """Off its queue, untried: no longer wanted (the channel's `unwanted` says why)."""
        self.kv.write({}, [_pending_key(delivery)])

    def give_up(self, delivery: Delivery, error: str, now: datetime) -> None:
        """Off its queue, into the record of given-up deliveries (older ones than 30 days go)."""
        failed = replace(delivery, failures=delivery.failures + 1, last_error=error)
        record = _encode(_meta(failed, gave_up_at=now.isoformat()), failed.body)
        key = _given_up_key(now, failed.seq)
        self.kv.write({key: record}, [_pending_key(failed), *self._expired(now)])

    def sweep(self, now: datetime) -> int:
        """Remove the given-up deliveries 30 days old; how many. Done on start, on every
        enqueue and on every give-up: a notifier that gives nothing up for months keeps none
        (with its addresses and bodies) past its 30 days for longer than until its next event."""
        expired = self._expired(now)
        if expired:
            self.kv.write({}, expired)
        return len(expired)

    def forget_events_before(self, cutoff: datetime) -> int:
        """Drop the markers of events enqueued before `cutoff` (Kafka can no longer hand them
        out again: streams/notifier/forgetting.py); how many. Pending deliveries stay."""
        old = [
            key
            for key, value in self.kv.scan(b"e/")
            if datetime.fromisoformat(json.loads(value)["at"]) < cutoff
        ]
        for start in range(0, len(old), FORGET_CHUNK):
            self.kv.write({}, old[start : start + FORGET_CHUNK])
        return len(old)

    def given_up(self) -> list[tuple[dict[str, Any], bytes]]:
        """The deliveries given up in the last 30 days, in the order they were given up:
        (state, body)."""
        return [_decode(value) for _, value in self.kv.scan(b"g/")]

    def _expired(self, now: datetime) -> list[bytes]:
        """The given-up deliveries 30 days old: the first ones of g/, which is in the order
        they were given up (so the first one kept ends the scan, and nothing pending is in it)."""
        expired = []
        for key, value in self.kv.scan(b"g/"):
            if datetime.fromisoformat(_decode(value)[0]["gave_up_at"]) + KEEP_GIVEN_UP > now:
                break
            expired.append(key)
        return expired

    def _move_old_given_up(self) -> None:
        # x/ was in enqueue order: a delivery enqueued early and given up late held back the
        # sweep of every one enqueued after it (kept for as long as it was pending, and more)
        puts, deletes = {}, []
        for key, value in self.kv.scan(b"x/"):
            meta = _decode(value)[0]
            puts[_given_up_key(datetime.fromisoformat(meta["gave_up_at"]), meta["seq"])] = value
            deletes.append(key)
        if deletes:
            self.kv.write(puts, deletes)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _given_up_key(gave_up_at: datetime, seq: int) -> bytes:
    return b"g/%016x/%016x" % ((gave_up_at - _EPOCH) // timedelta(microseconds=1), seq)


def _pending_key(delivery: Delivery) -> bytes:
    return b"q/%s/%016x" % (delivery.queue.encode(), delivery.seq)


# -- sending -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    delivered: bool  # a 2xx status
    detail: str  # "HTTP 204", "HTTP 503", "no answer within 10 s", "ClientConnectorError: ..."
    # A failed try is tried again until 24 h after the delivery was enqueued, unless:
    final: bool = False  # no try will help (a mailbox that does not exist): given up at once
    server_down: bool = False  # the whole server is away: tried again with no deadline
    # about the delivery's target, or the server's for every target (an SMTP policy answer):
    # `server_down` unless the channel's `proven` says the server served others since
    unclear: bool = False


@dataclass(frozen=True)
class Channel:
    """What a Dispatcher delivers, as its log lines and metrics name it."""

    name: str  # the first word of its log lines: "webhook", "mail"
    deliveries_total: Counter  # by outcome: enqueued, delivered, retry, gave_up
    pending: Gauge  # enqueued, not yet delivered or given up
    target: Callable[[Delivery], str]  # where a delivery goes, as the log may show it
    # whether an `unclear` answer is the target's own, given when its delivery was enqueued
    proven: Callable[[datetime], bool] = lambda enqueued_at: True
    # asked before each try: why the delivery is no longer wanted (dropped untried), or None
    unwanted: Callable[[Delivery], Awaitable[str | None]] | None = None


def _webhook_target(delivery: Delivery) -> str:
    return f"{shown(delivery.url)} (queue {delivery.queue[:8]}, tenant {delivery.tenant_id})"


WEBHOOKS = Channel("webhook", webhook_deliveries_total, webhook_pending, _webhook_target)


class Transport(Protocol):
    """One try at one delivery: a POST (AiohttpTransport; a list of canned answers in the unit
    tests), or for deferred mail one SMTP transaction to the delivery's address."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer: ...


class Clock(Protocol):
    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class WallClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))


class Dispatcher:
    """One delivery loop (an asyncio task) per queue with pending deliveries: it POSTs the head
    until it is delivered or given up, then the next one; it ends when its queue is empty and
    is started again by the next enqueue."""

    def __init__(
        self,
        queue: DeliveryQueue,
        transport: Transport,
        secret: bytes | None,
        clock: Clock | None = None,
        channel: Channel = WEBHOOKS,
    ) -> None:
        self.queue = queue
        self.transport = transport
        self.secret = secret
        self.clock: Clock = clock or WallClock()
        self.channel = channel
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._tenant_slots: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}
        self._stopping = False

    def start(self) -> int:
        """Resume every pending delivery; returns how many there are."""
        self._stopping = False
        self.queue.sweep(self.clock.now())
        pending = self.queue.pending()
        self.channel.pending.set(sum(pending.values()))
        for queue in pending:
            self._ensure_loop(queue)
        return sum(pending.values())

    def enqueue(
        self, event_id: str, tenant_id: str, urls: Iterable[str], body: bytes, now: datetime
    ) -> int:
        """Record the event's deliveries durably (returns how many are new) and start their
        queues' loops. A redelivered event adds none."""
        deliveries = self.queue.enqueue(event_id, tenant_id, urls, body, now)
        self.channel.deliveries_total.labels("enqueued").inc(len(deliveries))
        self.channel.pending.inc(len(deliveries))
        for delivery in deliveries:
            self._ensure_loop(delivery.queue)
        return len(deliveries)

    def waiting(self, tenant_id: str, url: str) -> bool:
        """Deliveries of this tenant to this URL are pending: the next one goes behind them."""
        return self.queue.head(queue_id(tenant_id, url)) is not None

    @property
    def busy(self) -> int:
        """Queues whose loop is running (has deliveries pending)."""
        return len(self._loops)

    async def stop(self) -> None:
        """Cancel every loop: a try under way is not counted, its delivery stays pending. A
        loop can lose its cancellation (aiohttp uncancels a task whose request ended as the
        cancel came, and the try returns its answer): it is cancelled again until it ends."""
        self._stopping = True
        loops = list(self._loops.values())
        while running := [loop for loop in loops if not loop.done()]:
            for loop in running:
                loop.cancel()
            await asyncio.wait(running, timeout=0.1)
        await asyncio.gather(*loops, return_exceptions=True)  # each has ended: its error read
        # a loop cancelled before its first step never ran its `finally`
        for queue, loop in list(self._loops.items()):
            if loop.done():
                del self._loops[queue]

    def _ensure_loop(self, queue: str) -> None:
        if queue not in self._loops:
            self._loops[queue] = asyncio.get_running_loop().create_task(
                self._run(queue), name=f"webhook queue {queue}"
            )

    async def _run(self, queue: str) -> None:
        try:
            # No await between the last head() and the pop below: an enqueue either sees this
            # loop running (and its delivery is found here) or starts a new one.
            while not self._stopping and (delivery := self.queue.head(queue)) is not None:
                await self._try(delivery)
        finally:
            self._loops.pop(queue, None)

    async def _try(self, delivery: Delivery) -> None:
        answer = await self._post(delivery)
        if answer is None:
            return  # dropped untried
        if answer.unclear and not self.channel.proven(delivery.enqueued_at):
            answer = replace(answer, server_down=True)
        now = self.clock.now()
        channel, where = self.channel, self.channel.target(delivery)
        if answer.delivered:
            self.queue.delivered(delivery)
            channel.deliveries_total.labels("delivered").inc()
            channel.pending.dec()
            log.info("%s: event %s delivered to %s", channel.name, delivery.event_id, where)
            return
        next_at = retry_at(delivery.enqueued_at, now, delivery.failures + 1, answer)
        if next_at is None:
            self._give_up(delivery, answer, now)
            return
        delivery = self.queue.failed(delivery, answer.detail)
        channel.deliveries_total.labels("retry").inc()
        log.warning(
            "%s: event %s to %s failed (%s); try %d again at %s",
            channel.name,
            delivery.event_id,
            where,
            answer.detail,
            delivery.failures + 1,
            next_at.isoformat(timespec="seconds"),
        )
        await self.clock.sleep_until(next_at)

    def _drop(self, delivery: Delivery, reason: str) -> None:
        self.queue.drop(delivery)
        self.channel.deliveries_total.labels("dropped").inc()
        self.channel.pending.dec()
        log.warning(
            "%s: dropped event %s for %s: %s (after %d failed tries)",
            self.channel.name,
            delivery.event_id,
            self.channel.target(delivery),
            reason,
            delivery.failures,
        )

    def _give_up(self, delivery: Delivery, answer: Answer, now: datetime) -> None:
        self.queue.give_up(delivery, answer.detail, now)
        self.channel.deliveries_total.labels("gave_up").inc()
        self.channel.pending.dec()
        why = (
            "no try can deliver it" if answer.final else "still failing 24 h after it was enqueued"
        )
        log.error(
            "%s: gave up event %s for %s: %s (%d tries, the last: %s); it is kept in the "
            "notifier's RocksDB for 30 days",
            self.channel.name,
            delivery.event_id,
            self.channel.target(delivery),
            why,
            delivery.failures + 1,
            answer.detail,
        )

    async def _post(self, delivery: Delivery) -> Answer | None:
        """The try's answer, or None when the delivery is no longer wanted (dropped). Asked
        once the slot is held: the wait for it has no bound (the tenant's receivers that hang),
        and a license that takes the URL off meanwhile must stop this try."""
        async with self._tenant_slot(delivery.tenant_id):  # waiting here is no part of a try
            if self.channel.unwanted is not None:
                reason = await self.channel.unwanted(delivery)
                if reason is not None:
                    self._drop(delivery, reason)
                    return None
            headers = request_headers(delivery.event_id, delivery.body, self.secret)
            return await self._post_now(delivery, headers)

    @contextlib.asynccontextmanager
    async def _tenant_slot(self, tenant_id: str) -> AsyncIterator[None]:
        """One of the tenant's TRIES_PER_TENANT slots (forgotten when no loop uses it)."""
        slot = self._tenant_slots.get(tenant_id)
        if slot is None:
            slot = self._tenant_slots[tenant_id] = (asyncio.Semaphore(TRIES_PER_TENANT), [0])
        semaphore, users = slot
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._tenant_slots[tenant_id]

    async def _post_now(self, delivery: Delivery, headers: Mapping[str, str]) -> Answer:
        try:
            return await self.transport.post(delivery.url, delivery.body, headers)
        except Exception as exc:  # a failed try, whatever it was: this queue's loop goes on
            log.exception(
                "%s: unexpected error delivering event %s", self.channel.name, delivery.event_id
            )
            return Answer(False, f"{type(exc).__name__}")


class AiohttpTransport:
    """POST with aiohttp: 10 s for the whole try, no redirects followed (a 3xx is a failed
    try), certificates verified. One connection pool of MAX_CONNECTIONS for every queue; a try
    waits for a free connection before its 10 s begin, so that receivers that hang (each
    tenant's take at most TRIES_PER_TENANT) delay the others' tries but never fail them."""

    def __init__(self, timeout_s: float = TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._session: Any = None
        self._connections: asyncio.Semaphore | None = None
        self._dns: ThreadPoolExecutor | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        import aiohttp

        if self._session is None:
            # Name lookups in threads of their own: a lookup holds its thread until the name
            # server answers or the resolver gives up (10 s and more, after the try gave up),
            # and in asyncio's default executor they would hold up the e-mail to SMTP_HOST and
            # the connections to Kafka, which look names up there too.
            self._dns = ThreadPoolExecutor(DNS_THREADS, thread_name_prefix="webhook-dns")
            lookups = _OwnThreads(asyncio.get_running_loop(), self._dns)
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=MAX_CONNECTIONS,
                    resolver=aiohttp.ThreadedResolver(cast(asyncio.AbstractEventLoop, lookups)),
                ),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
            self._connections = asyncio.Semaphore(MAX_CONNECTIONS)
        assert self._connections is not None
        async with self._connections:
            return await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        import aiohttp

        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), allow_redirects=False
            ) as response:
                return Answer(200 <= response.status < 300, f"HTTP {response.status}")
        except TimeoutError:
            return Answer(False, f"no answer within {self.timeout_s:g} s")
        except aiohttp.InvalidURL as exc:
            # A URL the license takes (an http:// URL) that yarl will not request: `127.1` or
            # `1.2.3.4.5` (not canonical IPv4), a backslash, `[::1]x`, a soft hyphen in the
            # host. It is refused before any connection, the same way at every try: given up
            # at once, never waited on for 24 h (the queue's next deliveries wait behind it).
            # Its message may quote the URL, and with it a secret in its path.
            reason = str(exc).replace(url, shown(url))[:200]
            return Answer(False, f"the HTTP client cannot request this URL ({reason})", final=True)
        except ValueError as exc:  # it might quote the URL too
            return Answer(False, f"{type(exc).__name__}: the HTTP client cannot use this URL")
        except (aiohttp.ClientError, OSError) as exc:
            # an error may quote the URL, and with it a secret in its path: the log shows less
            name, reason = type(exc).__name__, str(exc).replace(url, shown(url))[:200]
            return Answer(False, f"{name}: {reason}" if reason else name)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._dns is not None:
            self._dns.shutdown(wait=False, cancel_futures=True)  # a stuck lookup is not waited for
            self._dns = None


class _OwnThreads:
    """The event loop as aiohttp's ThreadedResolver uses it (getaddrinfo, getnameinfo), with
    the lookups in an executor of their own."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> None:
        self._loop = loop
        self._executor = executor

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        lookup = functools.partial(socket.getaddrinfo, host, port, family, type, proto, flags)
        return await self._loop.run_in_executor(self._executor, lookup)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> Any:
        return await self._loop.run_in_executor(self._executor, socket.getnameinfo, sockaddr, flags)
