"""The `licenses` topic as the notifier's LicenseReader sees it, without a broker: aiokafka's
consumer over one partition that a test writes licenses to as it goes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from streams.notifier.mail import split_recipients
from streams.notifier.service import Notifier


@dataclass
class LicenseRecord:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    timestamp: int


class LicensesTopic:
    """One partition of license records, kept across restarts of the notifier."""

    def __init__(self) -> None:
        self.records: list[LicenseRecord] = []

    def publish(self, tenant_id: str, **fields: Any) -> None:
        value = json.dumps({"tenant_id": tenant_id, **fields}).encode()
        self._append(tenant_id, value)

    def remove(self, tenant_id: str) -> None:
        self._append(tenant_id, None)  # a tombstone

    def _append(self, tenant_id: str, value: bytes | None) -> None:
        offset = len(self.records)
        self.records.append(LicenseRecord(tenant_id.encode(), value, 0, offset, 1_000 + offset))

    def consumer(self) -> LicensesConsumer:
        return LicensesConsumer(self)


class LicensesConsumer:
    """What LicenseReader calls of aiokafka's consumer, reading a LicensesTopic from its start;
    `fetches` counts the reads that found records."""

    def __init__(self, topic: LicensesTopic) -> None:
        self.topic = topic
        self.at = 0
        self.fetches = 0

    def assignment(self) -> set[int]:
        return {0}

    async def end_offsets(self, tps: list[int]) -> dict[int, int]:
        return {tp: len(self.topic.records) for tp in tps}

    async def position(self, tp: int) -> int:
        return self.at

    async def getmany(self, *tps: int, timeout_ms: int = 0) -> dict[int, list[LicenseRecord]]:
        self.fetches += 1
        fetched = self.topic.records[self.at :]
        self.at = len(self.topic.records)
        return {0: fetched}


def listing_licenses(notifier: Notifier, topic: LicensesTopic, **more: dict[str, Any]) -> None:
    """The notifier reads `topic`, which gets, before each event the test hands the notifier,
    the license the worker would have counted it with: its tenant licensed with every usable
    address its events named so far (and `more[tenant]`'s fields). For the tests about the SMTP
    server, not about licenses changing."""
    notifier.licenses.consumer = topic.consumer()
    handle = notifier.handle

    async def handle_licensed(record: Any) -> str:
        try:
            event = json.loads(record.value)
            tenant_id, notify = event["tenant_id"], list(event["notify"])
        except (TypeError, ValueError, KeyError):
            return await handle(record)  # not an event: no license to write
        good, _ = split_recipients(tuple(notify))
        listed = [address for address in _listed(topic, tenant_id) if address not in good]
        fields = {**more.get(tenant_id, {}), "learner_limit": 500, "notify": [*listed, *good]}
        topic.publish(tenant_id, **fields)
        notifier.webhook_book.apply(topic.records[-1].key, topic.records[-1].value)
        return await handle(record)

    notifier.handle = handle_licensed  # type: ignore[method-assign]


def _listed(topic: LicensesTopic, tenant_id: str) -> list[str]:
    for record in reversed(topic.records):
        if record.key == tenant_id.encode():
            return list(json.loads(record.value)["notify"]) if record.value else []
    return []
