"""`active-learners notifier`: each threshold event e-mailed to the license's `notify` list and
POSTed to its `webhooks`.

A plain aiokafka consumer in its own consumer group (`{prefix}active-learners-notifier`), so it
runs and scales apart from the workers. For each event, in order:
  1. not a threshold event at all (not JSON, a missing field, ...)?  dead-lettered
     (`reason: invalid`) and counted: one bad record never stops the mail of the events behind
     it (a replay dead-letters it again, as the worker does its input);
  2. already handled (its `event_id` is in the notifier's RocksDB, for as long as Kafka may hand
     it out again: streams/notifier/forgetting.py)?  skip: a redelivery;
  3. about a window that ended more than 7 days ago?  recorded as skipped, counted, and logged
     once per tenant: a backfill of history never floods administrators (nor webhooks);
  4. otherwise enqueued durably for each URL of the tenant license's `webhooks` (delivered by
     loops of their own, streams/notifier/webhooks.py; the URLs come from the `licenses` topic,
     streams/notifier/licenses.py), and mailed to each usable `notify` address: over SMTP when
     `SMTP_HOST` is set (streams/notifier/smtp.py), else as an `.eml` file in
     `STATE_DIR/outbox/`. An event whose mail cannot be written (a tenant id that cannot be in
     a Subject header) is dead-lettered after its webhooks are queued. An address that is not
     one bare e-mail address, or that the SMTP server refuses for good (5xx), costs only
     itself: the others are mailed and the event is dead-lettered saying which entries were
     not. An address refused for now (a 4xx answer about that mailbox: full, greylisted), or
     with e-mail of earlier events still pending, costs only itself too: it is enqueued
     durably and retried on its own for 24 h (streams/notifier/deferred_mail.py), and the
     next event goes on; so is an address refused with a policy answer (5.7.x) while the
     server took no recipient (that address's policy, or relaying denied to this notifier),
     and so is every address of a message refused with a 5xx at the end of DATA (a content
     filter reading one tenant's id, or the notifier's settings), with no deadline until the
     server is seen taking other mail. A failure of the server
     itself (no connection, a timeout, 421) is waited out with backoff however long it takes,
     before the next event; the offset is committed only after the event is recorded, so
     nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from prometheus_client import Counter

from schemas import topics
from streams.config.logs import configure as configure_logging
from streams.config.logs import log_format
from streams.config.settings import Settings
from streams.domain.dead_letters import dead_letter, dead_letter_key, encode
from streams.domain.decoding import Rejected
from streams.kafka.admin import topic_configs
from streams.notifier import forgetting, metrics, smtp
from streams.notifier.deferred_mail import MailTaken, SmtpCourier, deferred_mail_channel
from streams.notifier.licenses import LicenseReader, WebhookBook
from streams.notifier.mail import (
    MailableEvent,
    compose,
    decode_event,
    is_backfill,
    split_recipients,
)
from streams.notifier.probe import start_probe
from streams.notifier.smtp import SmtpSettings
from streams.notifier.webhooks import (
    WEBHOOKS,
    AiohttpTransport,
    Clock,
    DeliveryQueue,
    Dispatcher,
    RocksKV,
    WallClock,
    webhook_secret,
)
from streams.notifier.webhooks import Delivery as WebhookDelivery
from streams.stages.ingest import InputRecord
from streams.worker.shutdown import ShutdownGuard

log = logging.getLogger("active_learners.notifier")

FIRST_BACKOFF_S = 1.0  # while the SMTP server itself fails, before the next event
MAX_BACKOFF_S = 30.0
OUTBOX_SENDER = "active-learners@localhost"

notifications_total = metrics.own(
    Counter(
        "active_learners_notifications_total",
        "Threshold events handled by the notifier, by outcome: per event sent, outbox, deferred "
        "(no address took it yet, some are retried on their own), duplicate, skipped_backfill, "
        "no_recipients, invalid or refused (both dead-lettered); per address address_invalid, "
        "address_refused or address_deferred; per failed SMTP try of the server smtp_retry",
        ["outcome"],
    )
)


class Producer(Protocol):
    """Where dead letters go (aiokafka's producer; a list in the unit tests)."""

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> Any: ...


class Stopped(Exception):
    """A stop came while an event waited for SMTP: it stays uncommitted, nothing is recorded."""


@dataclass(frozen=True)
class Delivery:
    outcome: str  # sent | outbox | deferred | refused
    mailed: int  # addresses that took the message
    problems: list[str] = field(default_factory=list)  # why others never will
    deferred: list[str] = field(default_factory=list)  # addresses retried on their own


def first_start(path: Path, now: datetime) -> datetime:
    """When the notifier of this state folder first started (written then, read after): events
    written before it are judged a backfill by that time, those written after by their own, so a
    restart during an SMTP outage does not turn the alerts that waited into a backfill
    (helper-87). A wiped folder is a new notifier."""
    try:
        stored = datetime.fromisoformat(path.read_text(encoding="ascii").strip())
        if stored.tzinfo is None:
            raise ValueError("no offset")
        return stored
    except (OSError, ValueError, UnicodeDecodeError):
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        partial.write_text(now.isoformat(), encoding="ascii")
        partial.replace(path)
        return now


class SentStore:
    """Event ids already handled, in the notifier's own RocksDB (survives restarts)."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def get(self, event_id: str) -> dict[str, Any] | None:
        value = self._db.get(event_id.encode())
        return None if value is None else json.loads(value)

    def put(
        self, event_id: str, outcome: str, now: datetime, dead_letter: str | None = None
    ) -> None:
        # RocksDB's write-ahead log makes the put survive a crash of this process; no flush.
        # `dead_letter`: the detail of a dead letter owed for this event and not yet sent (it is
        # recorded with the outcome, before it is sent: the e-mail went out already)
        entry: dict[str, Any] = {"outcome": outcome, "at": now.isoformat()}
        if dead_letter is not None:
            entry["dead_letter"] = dead_letter
        self._db[event_id.encode()] = json.dumps(entry).encode()

    def forget_before(self, cutoff: datetime) -> int:
        """Drop the events handled before `cutoff` (Kafka can no longer hand them out again:
        streams/notifier/forgetting.py); how many. One whose dead letter is still owed stays."""
        old = []
        for key, value in self._db.items():
            entry = json.loads(value)
            if "dead_letter" not in entry and datetime.fromisoformat(entry["at"]) < cutoff:
                old.append(key)
        for key in old:
            del self._db[key]
        return len(old)

    def close(self) -> None:
        self._db.close()


class Notifier:
    def __init__(
        self,
        settings: Settings,
        smtp_settings: SmtpSettings | None,
        webhook_secret: bytes | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        retry_clock: Clock | None = None,  # the deferred mail's waits (wall clock by default)
    ) -> None:
        self.settings = settings
        self.clock = clock  # what decides a backfill, and the time of outcomes and dead letters
        self.started_at = first_start(settings.state_dir / "notifier" / "first-start", clock())
        self.smtp = smtp_settings
        self.tls_context = smtp_settings.tls_context() if smtp_settings else None
        self.sender = smtp_settings.sender if smtp_settings else OUTBOX_SENDER
        self.outbox = settings.state_dir / "outbox"
        self.store = SentStore(settings.state_dir / "notifier" / "sent.db")
        self.producer: Producer | None = None  # set by run()
        self.webhook_secret = webhook_secret
        self.webhook_book = WebhookBook()  # filled by the license reader
        self.licenses = LicenseReader(settings, self.webhook_book)  # started by run()
        self.webhooks: Dispatcher | None = None  # set by run()
        self.mail_taken = MailTaken(retry_clock.now if retry_clock else WallClock().now)
        self.deferred_mail = self.deferred_mail_dispatcher(retry_clock)
        self._warned_backfill: set[str] = set()
        self._said_unlimited = False
        self._stopping = asyncio.Event()

    def deferred_mail_dispatcher(self, clock: Clock | None) -> Dispatcher | None:
        """The queues of e-mail a mailbox refused for now; none for the outbox, which takes
        every e-mail at once."""
        if self.smtp is None:
            return None
        kv = RocksKV(self.settings.state_dir / "notifier" / "deferred-mail.db")
        courier = SmtpCourier(self.smtp, self.tls_context, self.sender, self.mail_taken)
        channel = replace(deferred_mail_channel(self.mail_taken), unwanted=self.no_longer_listed)
        return Dispatcher(DeliveryQueue(kv), courier, None, clock, channel=channel)

    async def no_longer_listed(self, delivery: WebhookDelivery) -> str | None:
        """Why a deferred e-mail is not to be tried again, or None: its address is no longer
        in the `notify` list of the tenant's latest license (or the license was removed). The
        first send's rule (`still_listed`): a tenant the book knows nothing of keeps its list,
        where a retry once dropped what the first send had mailed (helper-87)."""
        book = self.webhook_book

        def named(tenant_id: str, address: str) -> bool:
            return not book.stopped_listing(tenant_id, address)

        return await self._unless_named(delivery, named, "no longer in the license's notify list")

    async def no_longer_configured(self, delivery: WebhookDelivery) -> str | None:
        """Why a webhook delivery is not to be tried (again), or None: the tenant's latest
        license no longer names its URL in `webhooks` (or the tenant has no license). An
        operator takes a URL off when its receiver is gone or no longer trusted: the events
        queued for it are not POSTed there for up to 24 h more."""
        book = self.webhook_book
        return await self._unless_named(
            delivery, book.names_url, "no longer in the license's webhooks"
        )

    async def _unless_named(
        self, delivery: WebhookDelivery, named: Callable[[str, str], bool], reason: str
    ) -> str | None:
        """`reason`, unless the tenant's latest license names the delivery's address or URL.
        Decided on every license written before this call, read now: the book may be behind
        (right after a start nothing is read; between events nothing new is), and a book that
        is behind must never drop a delivery the latest license still asks for."""
        if not await self.licenses.catch_up(self._stopping):
            # a stop came first: neither dropped nor tried, it stays pending for the next start
            raise asyncio.CancelledError
        return None if named(delivery.tenant_id, delivery.url) else reason

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-notifier"

    def stop(self) -> None:
        self._stopping.set()

    def close(self) -> None:
        """The RocksDB files (after run(), or a test's own handling)."""
        self.store.close()
        if self.deferred_mail is not None:
            self.deferred_mail.queue.kv.close()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
        from aiokafka.structs import OffsetAndMetadata

        consumer = AIOKafkaConsumer(
            self.settings.topic(topics.THRESHOLD_EVENTS),
            **self.settings.aiokafka(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = AIOKafkaProducer(**self.settings.aiokafka(), acks="all")
        licenses = self.licenses
        transport = AiohttpTransport()
        deliveries = RocksKV(self.settings.state_dir / "notifier" / "webhooks.db")
        self.webhooks = Dispatcher(
            DeliveryQueue(deliveries),
            transport,
            self.webhook_secret,
            channel=replace(WEBHOOKS, unwanted=self.no_longer_configured),
        )
        probe = await start_probe(
            self.settings.web_host,
            self.settings.notifier_port,
            self.settings.web_trusted_proxies,
        )
        if probe is not None:
            where = f"{self.settings.web_host}:{self.settings.notifier_port}"
            log.info("notifier: /metrics and /health on http://%s", where)
        await consumer.start()
        await producer.start()
        await licenses.start()
        self.producer = producer
        resumed = self.webhooks.start()  # pending deliveries go on at once, whatever else waits
        resumed_mail = self.deferred_mail.start() if self.deferred_mail else 0
        try:
            if not await licenses.catch_up(self._stopping):
                return
            self.log_ready(resumed, resumed_mail)
            forget_at = 0.0
            while not self._stopping.is_set():
                if time.monotonic() >= forget_at:
                    forget_at = time.monotonic() + forgetting.EVERY_S
                    await self.forget_old_events()
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                # every license written before these events is applied before them
                if batches and not await licenses.catch_up(self._stopping):
                    return
                for tp, records in batches.items():
                    # Committed once per batch: after a crash the uncommitted rest is delivered
                    # again and found in the store as duplicates, never mailed twice.
                    for record in records:
                        await self.handle(record)
                        if self._stopping.is_set():
                            return
                    await consumer.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "")})
        except Stopped:
            log.info("stopped while retrying SMTP: that event is handled again on the next start")
        finally:
            await self.webhooks.stop()  # a try under way stays pending, resumed on next start
            if self.deferred_mail is not None:
                await self.deferred_mail.stop()  # likewise
            await transport.close()
            deliveries.close()
            await licenses.stop()
            await consumer.stop()
            await producer.stop()
            if probe is not None:
                await probe.cleanup()
            self.close()

    async def forget_old_events(self) -> tuple[int, int]:
        """Forget the events Kafka can no longer hand out again (streams/notifier/forgetting.py):
        (handled events, delivery markers) dropped."""
        horizon = await asyncio.to_thread(self.redelivery_horizon)
        if horizon is None:
            return 0, 0
        cutoff = self.clock() - horizon
        events = self.store.forget_before(cutoff)
        markers = sum(
            dispatcher.queue.forget_events_before(cutoff)
            for dispatcher in (self.webhooks, self.deferred_mail)
            if dispatcher is not None
        )
        if events or markers:
            log.info(
                "notifier: forgot %d events handled before %s and %d delivery markers: %s can "
                "no longer hand them out again",
                events,
                cutoff.isoformat(timespec="seconds"),
                markers,
                self.settings.topic(topics.THRESHOLD_EVENTS),
            )
        return events, markers

    def redelivery_horizon(self) -> timedelta | None:
        """How long Kafka may hand a handled event out again; None: for ever, or not known (a
        blocking call to the broker)."""
        topic = self.settings.topic(topics.THRESHOLD_EVENTS)
        try:
            configs = topic_configs(self.settings, topic)
        except Exception as exc:  # an outage, or no DescribeConfigs right: remember everything
            log.warning(
                "notifier: could not read the settings of %s (%s); every handled event is "
                "remembered until they can be read",
                topic,
                exc,
            )
            return None
        horizon = forgetting.redelivery_horizon(configs)
        if horizon is None and not self._said_unlimited:
            self._said_unlimited = True
            log.info(
                "notifier: %s may keep an event for ever (unlimited retention, compacted, or "
                "settings the broker did not give): every handled event is remembered",
                topic,
            )
        return horizon

    def log_ready(self, resumed: int, resumed_mail: int) -> None:
        where = self.smtp.describe() if self.smtp else f"outbox {self.outbox}"
        log.info("notifier ready: %s -> %s", self.settings.topic(topics.THRESHOLD_EVENTS), where)
        if resumed_mail:
            log.info("e-mail: %d deliveries a mailbox refused for now are pending", resumed_mail)
        signed = "signed" if self.webhook_secret else "NOT signed (no WEBHOOK_SECRET)"
        log.info(
            "webhooks: %d tenants have URLs, %d deliveries pending, %s",
            len(self.webhook_book),
            resumed,
            signed,
        )
        if not self.webhook_secret and len(self.webhook_book):
            log.warning("WEBHOOK_SECRET is not set: receivers cannot tell deliveries are ours")

    async def handle(self, record: InputRecord) -> str:
        """Handle one event; returns the outcome (also counted in metrics)."""
        now = self.clock()
        event = decode_event(record.value)
        if isinstance(event, Rejected):
            await self.dead_letter(record, event.detail, now)
            outcome = "invalid"
        elif (stored := self.store.get(event.event_id)) is not None:
            outcome = "duplicate"
            if stored.get("dead_letter"):  # recorded, mailed, its dead letter not sent yet
                await self.dead_letter(record, stored["dead_letter"], now)
                self.store.put(event.event_id, stored["outcome"], now)
        else:
            self.enqueue_webhooks(record, event, now)
            outcome, owed = await self.notify(record, event, now)
            # recorded before its dead letter is sent: once mailed, a crash must not mail again
            self.store.put(event.event_id, outcome, now, owed)
            if owed is not None:
                await self.dead_letter(record, owed, now)
                self.store.put(event.event_id, outcome, now)
        notifications_total.labels(outcome).inc()
        return outcome

    def enqueue_webhooks(self, record: InputRecord, event: MailableEvent, now: datetime) -> None:
        """Recorded before the e-mail, which may wait for SMTP, and so before the offset is
        committed; a redelivery adds none. Unlike the e-mail, a backfill is POSTed too: the
        contract POSTs every threshold event, and receivers are programs that dedupe by event id
        (a `down` after last year's attempts were deleted is news to them, not noise)."""
        urls = self.webhook_book.urls(event.tenant_id)
        if self.webhooks is None or not urls or record.value is None:
            return
        self.webhooks.enqueue(event.event_id, event.tenant_id, urls, record.value, now)

    async def notify(
        self, record: InputRecord, event: MailableEvent, now: datetime
    ) -> tuple[str, str | None]:
        """Mail the event: its outcome, and the detail of a dead letter due after the e-mail
        went out (the caller records the event first, then sends it)."""
        if is_backfill(event, self.judged_at(record, now)):
            self.warn_backfill(event.tenant_id)
            return "skipped_backfill", None
        if not event.notify:
            return "no_recipients", None
        recipients, problems = split_recipients(event.notify)
        notifications_total.labels("address_invalid").inc(len(problems))
        if not recipients:
            await self.dead_letter(record, "no usable address: " + "; ".join(problems), now)
            return "invalid", None
        recipients = self.still_listed(event, recipients)
        if not recipients:
            return "no_recipients", None
        waiting = self.behind_earlier_mail(event.tenant_id, recipients)
        to_send = [address for address in recipients if address not in waiting]
        # composed also when every address waits: an event no e-mail can hold is dead-lettered
        message = compose(event, self.sender, to_send or recipients)
        if isinstance(message, Rejected):
            await self.dead_letter(record, message.detail, now)
            return "invalid", None
        delivery = await self.deliver(event, message, to_send, waiting)
        self.defer(record, event, delivery.deferred, now)
        problems += delivery.problems
        if not problems:
            return delivery.outcome, None
        summary = f"mailed {delivery.mailed} of {len(event.notify)} addresses"
        if delivery.deferred:
            summary += f" ({len(delivery.deferred)} more retried later)"
        return delivery.outcome, "; ".join([summary, *problems])

    def still_listed(self, event: MailableEvent, recipients: list[str]) -> list[str]:
        """The addresses the tenant's latest license has not taken off: the latest license
        governs (the contract), so an address an administrator took off after the crossing, or
        a license removed meanwhile, is not mailed; a retry drops it the same way
        (`no_longer_listed`), and so did it only there (helper-86). The book holds every
        license written before this event (run() reads the licenses after it fetched the
        batch); a tenant it knows nothing of keeps the event's list."""
        book = self.webhook_book
        listed = [a for a in recipients if not book.stopped_listing(event.tenant_id, a)]
        if len(listed) < len(recipients):
            log.info(
                "event %s of tenant %s: %d of its addresses are no longer in the license's "
                "notify list, not mailed",
                event.event_id,
                event.tenant_id,
                len(recipients) - len(listed),
            )
        return listed

    def judged_at(self, record: InputRecord, now: datetime) -> datetime:
        """When the event is judged a backfill or not: when it was written, or when the
        notifier of this state folder first started if that was later (a new notifier
        reading old events judges them by its start), never after now. Judged by the moment
        it is handled, the events that waited behind one the SMTP server kept failing were
        skipped once the outage passed the 7 days after their window (helper-86): those were
        live alerts, also across a restart during the outage (helper-87)."""
        if record.timestamp <= 0:  # no time of writing (-1): as handled
            return now
        try:
            written = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        except (OverflowError, ValueError, OSError):  # a time no datetime holds: as handled
            return now
        return min(now, max(written, self.started_at))

    def behind_earlier_mail(self, tenant_id: str, recipients: list[str]) -> list[str]:
        """The addresses with e-mail of this tenant's earlier events still pending: the next
        one goes behind it, so a full mailbox is not asked again for every event, and gets
        them in order."""
        if self.deferred_mail is None:
            return []
        return [address for address in recipients if self.deferred_mail.waiting(tenant_id, address)]

    def defer(
        self, record: InputRecord, event: MailableEvent, addresses: list[str], now: datetime
    ) -> None:
        """Recorded, in one write, before the event is and so before its offset is committed;
        a redelivery adds none (nor does it mail these addresses: they are still pending)."""
        if addresses and self.deferred_mail is not None and record.value is not None:
            self.deferred_mail.enqueue(
                event.event_id, event.tenant_id, addresses, record.value, now
            )

    def warn_backfill(self, tenant_id: str) -> None:
        if tenant_id not in self._warned_backfill:
            self._warned_backfill.add(tenant_id)
            log.warning(
                "not mailing threshold events of tenant %s about windows that ended more "
                "than 7 days ago (a backfill of history); they are counted as skipped",
                tenant_id,
            )

    async def dead_letter(self, record: InputRecord, detail: str, now: datetime) -> None:
        value = dead_letter(
            "invalid", detail, record.value, record.topic, record.partition, record.offset, now
        )
        assert self.producer is not None, "run() sets the producer"
        await self.producer.send_and_wait(
            self.settings.topic(topics.DEAD_LETTERS), encode(value), key=dead_letter_key(record.key)
        )
        log.warning(
            "%s/%d@%d dead-lettered: %s",
            record.topic,
            record.partition,
            record.offset,
            value["detail"],
        )

    async def deliver(
        self, event: MailableEvent, message: EmailMessage, to_send: list[str], waiting: list[str]
    ) -> Delivery:
        """`message` goes to `to_send` now; `waiting` are deferred behind earlier mail."""
        if self.smtp is None:
            return self.write_to_outbox(event, message, len(to_send))
        sent = (
            await self.send_through_outages(event, message, to_send) if to_send else smtp.Refusals()
        )
        if isinstance(sent, smtp.Refusals) and sent.unclear:
            log.warning(
                "SMTP %s:%s refused every address of event %s with a policy answer, or its "
                "message (%s): the notifier's settings (relaying denied? signing?) or these "
                "addresses' or this message's own; each address is retried on its own, and "
                "later events go on",
                self.smtp.host,
                self.smtp.port,
                event.event_id,
                next(iter(sent.unclear.values())),
            )
        if isinstance(sent, str):  # the server will never take this message
            notifications_total.labels("address_refused").inc(len(to_send))
            notifications_total.labels("address_deferred").inc(len(waiting))
            return Delivery("deferred" if waiting else "refused", 0, [sent], waiting)
        return sorted_out(len(to_send), sent, waiting)

    def write_to_outbox(self, event: MailableEvent, message: EmailMessage, to: int) -> Delivery:
        self.outbox.mkdir(parents=True, exist_ok=True)
        path = self.outbox / f"{event.event_id}.eml"
        path.write_bytes(bytes(message))
        log.info("no SMTP_HOST: wrote %s", path)
        return Delivery("outbox", to)

    async def send_through_outages(
        self, event: MailableEvent, message: EmailMessage, recipients: list[str]
    ) -> smtp.Refusals | str:
        """The recipients the server refused, or why it will never take the message. A failure
        of the server itself is retried with backoff however long it lasts, and the next event
        waits: a server that is down for everyone loses no e-mail (the offset is not committed
        meanwhile). Whatever concerns one address is returned instead: it holds up nothing."""
        assert self.smtp is not None
        delay = FIRST_BACKOFF_S
        while not self._stopping.is_set():
            try:
                refused = await smtp.send(message, self.smtp, self.tls_context)
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                answer = smtp.answer_about_the_mail(exc, recipients)
                if answer is not None:
                    return answer
                self.log_retry(event, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
            else:
                self.mail_taken.taken()  # aiosmtplib raises when no recipient took it
                return smtp.sort_refusals(refused)
        raise Stopped

    def log_retry(self, event: MailableEvent, exc: Exception, delay: float) -> None:
        assert self.smtp is not None
        # A server without STARTTLS will not change by itself: an operator has to act.
        level = logging.ERROR if isinstance(exc, smtp.CleartextRefused) else logging.WARNING
        log.log(
            level,
            "SMTP %s:%s failed for event %s (%s); retrying in %.0fs",
            self.smtp.host,
            self.smtp.port,
            event.event_id,
            exc,
            delay,
        )
        notifications_total.labels("smtp_retry").inc()


def sorted_out(tried: int, refusals: smtp.Refusals, waiting: list[str]) -> Delivery:
    """An SMTP transaction's result: the addresses refused for good are the event's problems;
    those refused for now, and those still `waiting` behind earlier mail, are deferred."""
    deferred = [*waiting, *refusals.retried]
    notifications_total.labels("address_refused").inc(len(refusals.final))
    notifications_total.labels("address_deferred").inc(len(deferred))
    mailed = tried - len(refusals)
    outcome = "sent" if mailed else "deferred" if deferred else "refused"
    problems = [f"the SMTP server refused an address ({why})" for why in refusals.final.values()]
    return Delivery(outcome, mailed, problems, deferred)


def run_notifier(settings: Settings) -> None:
    secret = webhook_secret()  # a bad WEBHOOK_SECRET is a one-line error before anything starts
    configure_logging(log_format())
    log.info("active-learners notifier: %s", settings.describe())
    notifier = Notifier(settings, SmtpSettings.from_env(), secret)

    guard = ShutdownGuard("notifier")

    def on_signal(signum: int) -> None:
        guard.signalled(signum)
        notifier.stop()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        await notifier.run()

    asyncio.run(main())
