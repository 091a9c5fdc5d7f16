"""Found by a review (2026-12-02): the notifier across a crash, and the webhook URLs after
`licenses` gained partitions. No broker: the SMTP transaction and Kafka's consumer are doubles."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streams.config.settings import Settings
from streams.notifier import smtp
from streams.notifier.licenses import LicenseReader, WebhookBook
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings
from streams.stages.store import Record
from tests.unit.licenses_double import LicenseRecord as KafkaRecord

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "window": {"start": "2026-11-01", "end": "2026-12-01", "months": 1},
    "threshold_pct": 100,
    "threshold_learners": 500,
    "direction": "up",
    "active_learners": 500,
    "learner_limit": 500,
    "notify": ["Ann <a@acme.example>", "b@acme.example"],  # one entry is not a bare address
    "occurred_at": "2026-11-20T10:00:00+00:00",
}


class FlakyDeadLetters:
    """The dead-letters topic while Kafka is away: the first send times out."""

    def __init__(self) -> None:
        self.tries = 0
        self.sent: list[dict[str, Any]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.tries += 1
        if self.tries == 1:
            raise TimeoutError("KafkaTimeoutError: the broker did not answer")  # as aiokafka's
        self.sent.append(json.loads(value))


def test_an_event_whose_dead_letter_fails_is_not_mailed_again_after_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DESIGN: the notifier 'remembers sent event ids so a redelivered event is not mailed
    twice'. An event with one unusable `notify` entry is mailed to the others, then its dead
    letter is sent. When that send fails (Kafka away for a while), the event is not recorded:
    the notifier stops, and on its restart the event is redelivered and mailed again to every
    address that already took it."""
    mailed: list[list[str]] = []

    async def server_takes_it(message: Any, settings: Any, tls: Any) -> dict[str, Any]:
        mailed.append([str(a) for a in message["To"].addresses])
        return {}

    monkeypatch.setattr(smtp, "send", server_takes_it)
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    smtp_settings = SmtpSettings.from_env({"SMTP_HOST": "mail", "SMTP_TLS": "none"})
    record = Record(b"acme", json.dumps(EVENT).encode(), "threshold-events", 0, 7, 0)
    letters = FlakyDeadLetters()

    async def first_run() -> None:
        notifier = Notifier(settings, smtp_settings, clock=lambda: NOW)
        notifier.producer = letters
        try:
            with pytest.raises(TimeoutError):
                await notifier.handle(record)  # the process dies here, offset uncommitted
        finally:
            notifier.close()

    async def after_restart() -> str:
        notifier = Notifier(settings, smtp_settings, clock=lambda: NOW)
        notifier.producer = letters
        try:
            return await notifier.handle(record)  # the uncommitted event, delivered again
        finally:
            notifier.close()

    asyncio.run(first_run())
    asyncio.run(after_restart())
    assert mailed == [["b@acme.example"]], f"b@acme.example got the e-mail {len(mailed)} times"
    assert len(letters.sent) == 1, "the dead letter is still sent once"


# -- webhooks: which license is the tenant's latest -----------------------------------------------


def license_value(**fields: Any) -> bytes:
    return json.dumps({"tenant_id": "acme", "learner_limit": 10, **fields}).encode()


class LicensesTopic:
    """aiokafka's consumer over a `licenses` topic that grew from 1 to 2 partitions: acme's
    first license stays in partition 0 (compaction keeps it: no later record of its key is
    there), its later ones land in partition 1. A fetch returns partition 1's records before
    partition 0's (aiokafka gives no order across partitions)."""

    def __init__(self, partitions: dict[int, list[KafkaRecord]]) -> None:
        self.partitions = partitions
        self.positions = dict.fromkeys(partitions, 0)

    def assignment(self) -> set[int]:
        return set(self.partitions)

    async def end_offsets(self, tps: list[int]) -> dict[int, int]:
        return {tp: len(self.partitions[tp]) for tp in tps}

    async def position(self, tp: int) -> int:
        return self.positions[tp]

    async def getmany(self, *tps: int, timeout_ms: int = 0) -> dict[int, list[KafkaRecord]]:
        fetched = {}
        for tp in sorted(tps, reverse=True):
            fetched[tp] = self.partitions[tp][self.positions[tp] :]
            self.positions[tp] = len(self.partitions[tp])
        return fetched


OLD_HOOK = "https://old.example/hook"
NEW_HOOK = "https://new.example/hook"


@pytest.mark.parametrize(
    ("latest", "urls"),
    [
        (license_value(webhooks=[NEW_HOOK]), (NEW_HOOK,)),  # the URL moved
        (license_value(), ()),  # the tenant removed its webhooks
        (None, ()),  # the license itself was removed (a tombstone)
    ],
    ids=["moved", "removed-webhooks", "tombstone"],
)
def test_the_latest_license_governs_the_webhooks_after_licenses_gained_partitions(
    latest: bytes | None, urls: tuple[str, ...]
) -> None:
    """CONTRACT: 'The latest license of a tenant governs'. The worker orders two licenses of a
    tenant in different partitions by their Kafka timestamps (streams/domain/sources.py), so
    it applies the new one. The notifier applies them in the order a fetch hands them over, so
    acme's old URL (kept for good in partition 0) wins: its threshold events are POSTed to a
    receiver the tenant no longer names, and never to the one it does."""
    topic = LicensesTopic(
        {
            0: [KafkaRecord(b"acme", license_value(webhooks=[OLD_HOOK]), 0, 0, 1_000)],
            1: [KafkaRecord(b"acme", latest, 1, 0, 2_000)],
        }
    )
    book = WebhookBook()
    reader = LicenseReader(replace(Settings.from_env({})), book)
    reader.consumer = topic
    assert asyncio.run(reader.catch_up(asyncio.Event())) is True
    assert book.urls("acme") == urls
