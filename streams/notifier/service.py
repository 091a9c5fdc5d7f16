"""`active-learners notifier`: one e-mail per threshold event to the license's `notify` list.

A plain aiokafka consumer in its own consumer group (`{prefix}active-learners-notifier`), so it
runs and scales apart from the workers. For each event, in order:
  1. already handled (its `event_id` is in the notifier's RocksDB)?  skip: a redelivery;
  2. about a window that ended more than 7 days ago?  recorded as skipped, counted, and logged
     once per tenant: a backfill of history never floods administrators;
  3. otherwise delivered: over SMTP when `SMTP_HOST` is set, else as an `.eml` file in
     `STATE_DIR/outbox/`. SMTP failures are retried with backoff until they succeed; the offset
     is committed only after the event is recorded, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from prometheus_client import Counter

from schemas import topics
from streams.config.logs import configure as configure_logging
from streams.config.logs import log_format
from streams.config.settings import APP_NAME, ConfigError, Settings
from streams.worker.shutdown import ShutdownGuard

log = logging.getLogger("active_learners.notifier")

BACKFILL_AGE = timedelta(days=7)
MAX_BACKOFF_S = 30.0

notifications_total = Counter(
    "active_learners_notifications_total",
    "Threshold events handled by the notifier, by outcome",
    ["outcome"],
)


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None
    password: str | None
    starttls: bool

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> SmtpSettings | None:
        """None when SMTP_HOST is not set: mail then goes to the outbox folder."""
        host = env.get("SMTP_HOST", "").strip()
        if not host:
            return None
        starttls_text = env.get("SMTP_STARTTLS", "false").strip().lower()
        if starttls_text not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"SMTP_STARTTLS must be true or false, got {starttls_text!r}")
        starttls = starttls_text in ("true", "1", "yes")
        port_text = env.get("SMTP_PORT", "").strip() or ("587" if starttls else "25")
        try:
            port = int(port_text)
        except ValueError:
            raise ConfigError(f"SMTP_PORT must be a port number, got {port_text!r}") from None
        return cls(
            host=host,
            port=port,
            sender=env.get("SMTP_FROM", "").strip() or "active-learners@localhost",
            username=env.get("SMTP_USERNAME") or None,
            password=env.get("SMTP_PASSWORD") or None,
            starttls=starttls,
        )


def is_backfill(event: dict[str, Any], now: datetime) -> bool:
    """The event's window ended more than 7 days before `now`."""
    end = datetime.combine(date.fromisoformat(event["window"]["end"]), datetime.min.time(), UTC)
    return end + BACKFILL_AGE < now


def build_message(event: dict[str, Any], sender: str) -> EmailMessage:
    window = event["window"]
    pct, tenant = event["threshold_pct"], event["tenant_id"]
    active, limit = event["active_learners"], event["learner_limit"]
    used = 100.0 * active / limit
    if event["direction"] == "up":
        subject = f"Active Learners: {tenant} reached {pct}% of its limit ({active:,} of {limit:,})"
        what = (
            f"The Active Learners of {tenant} reached {active:,}, which is {used:.1f}% of the "
            f"licensed limit of {limit:,} learners. The {pct}% threshold is "
            f"{event['threshold_learners']:,} learners."
        )
    else:
        subject = (
            f"Active Learners: {tenant} is back below {pct}% of its limit ({active:,} of {limit:,})"
        )
        what = (
            f"The Active Learners of {tenant} went down to {active:,}, which is {used:.1f}% of "
            f"the licensed limit of {limit:,} learners, below the {pct}% threshold of "
            f"{event['threshold_learners']:,} learners."
        )
    body = (
        f"{what}\n\n"
        f"Active Window: {window['start']} to {window['end']} "
        f"({window['months']} month{'s' if window['months'] != 1 else ''}; the window ends "
        f"the day before {window['end']}).\n\n"
        "Active Learners are the unique learners with attempts on tracked content in the "
        "Active Window. Physically deleting attempt records lowers the count; logically "
        "deleted attempts still count.\n\n"
        f"Event {event['event_id']} at {event['occurred_at']}.\n"
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = ", ".join(event["notify"])
    message["Message-ID"] = f"<{event['event_id']}@{APP_NAME}>"
    message.set_content(body)
    return message


class SentStore:
    """Event ids already handled, in the notifier's own RocksDB (survives restarts)."""

    def __init__(self, path: Path) -> None:
        from rocksdict import Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def get(self, event_id: str) -> dict[str, Any] | None:
        value = self._db.get(event_id.encode())
        return None if value is None else json.loads(value)

    def put(self, event_id: str, outcome: str, now: datetime) -> None:
        # RocksDB's write-ahead log makes the put survive a crash of this process; no flush.
        self._db[event_id.encode()] = json.dumps(
            {"outcome": outcome, "at": now.isoformat()}
        ).encode()

    def close(self) -> None:
        self._db.close()


class Notifier:
    def __init__(self, settings: Settings, smtp: SmtpSettings | None) -> None:
        self.settings = settings
        self.smtp = smtp
        self.outbox = settings.state_dir / "outbox"
        self.store = SentStore(settings.state_dir / "notifier" / "sent.db")
        self._warned_backfill: set[str] = set()
        self._stopping = asyncio.Event()

    @property
    def group_id(self) -> str:
        return f"{self.settings.app_id}-notifier"

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.structs import OffsetAndMetadata

        consumer = AIOKafkaConsumer(
            self.settings.topic(topics.THRESHOLD_EVENTS),
            **self.settings.aiokafka(),
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        where = f"SMTP {self.smtp.host}:{self.smtp.port}" if self.smtp else f"outbox {self.outbox}"
        log.info("notifier ready: %s -> %s", self.settings.topic(topics.THRESHOLD_EVENTS), where)
        try:
            while not self._stopping.is_set():
                batches = await consumer.getmany(timeout_ms=500, max_records=100)
                for tp, records in batches.items():
                    # Committed once per batch: after a crash the uncommitted rest is delivered
                    # again and found in the store as duplicates, never mailed twice.
                    for record in records:
                        await self.handle(record.value)
                        if self._stopping.is_set():
                            return
                    await consumer.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "")})
        finally:
            await consumer.stop()
            self.store.close()

    async def handle(self, raw: bytes | None) -> str:
        """Handle one event; returns the outcome (also counted in metrics)."""
        try:
            event = json.loads(raw) if raw else None
            event_id = event["event_id"] if isinstance(event, dict) else None
        except (ValueError, KeyError):
            event_id = None
        if not isinstance(event, dict) or not isinstance(event_id, str):
            log.error(
                "threshold-events: a record that is not a threshold event (%d bytes), ignored",
                len(raw or b""),
            )
            notifications_total.labels("invalid").inc()
            return "invalid"
        now = datetime.now(UTC)
        if self.store.get(event_id) is not None:
            notifications_total.labels("duplicate").inc()
            return "duplicate"
        if is_backfill(event, now):
            outcome = "skipped_backfill"
            if event["tenant_id"] not in self._warned_backfill:
                self._warned_backfill.add(event["tenant_id"])
                log.warning(
                    "not mailing threshold events of tenant %s about windows that ended more "
                    "than 7 days ago (a backfill of history); they are counted as skipped",
                    event["tenant_id"],
                )
        elif not event.get("notify"):
            outcome = "no_recipients"
        else:
            outcome = await self.deliver(event)
        self.store.put(event_id, outcome, now)
        notifications_total.labels(outcome).inc()
        return outcome

    async def deliver(self, event: dict[str, Any]) -> str:
        import aiosmtplib

        sender = self.smtp.sender if self.smtp else "active-learners@localhost"
        message = build_message(event, sender)
        if self.smtp is None:
            self.outbox.mkdir(parents=True, exist_ok=True)
            path = self.outbox / f"{event['event_id']}.eml"
            path.write_bytes(bytes(message))
            log.info("no SMTP_HOST: wrote %s", path)
            return "outbox"
        delay = 1.0
        while True:
            try:
                await self.send_smtp(message)
                return "sent"
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if self._stopping.is_set():
                    raise
                log.warning(
                    "SMTP %s:%s failed for event %s (%s); retrying in %.0fs",
                    self.smtp.host,
                    self.smtp.port,
                    event["event_id"],
                    exc,
                    delay,
                )
                notifications_total.labels("smtp_retry").inc()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                delay = min(delay * 2, MAX_BACKOFF_S)

    async def send_smtp(self, message: EmailMessage) -> None:
        import aiosmtplib

        assert self.smtp is not None
        await aiosmtplib.send(
            message,
            hostname=self.smtp.host,
            port=self.smtp.port,
            username=self.smtp.username,
            password=self.smtp.password,
            start_tls=self.smtp.starttls,
            timeout=20,
        )


def run_notifier(settings: Settings) -> None:
    configure_logging(log_format())
    log.info("active-learners notifier: %s", settings.describe())
    notifier = Notifier(settings, SmtpSettings.from_env())

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
