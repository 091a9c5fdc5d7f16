"""A `threshold-events` record the notifier dead-letters goes out under its key cut to
`MAX_KEY_BYTES`, as every stage's dead letter does (helper-113: the notifier sent the input's
whole key, so a record keyed with most of Kafka's 1 MiB made a dead letter above aiokafka's
`max_request_size`, and the notifier failed on it at every start)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from streams.config.settings import Settings
from streams.domain.dead_letters import MAX_KEY_BYTES
from streams.notifier.service import Notifier
from streams.stages.store import Record


class Keys:
    def __init__(self) -> None:
        self.keys: list[bytes | None] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.keys.append(key)


def test_a_dead_letter_of_the_notifier_has_its_key_cut(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), state_dir=tmp_path)
    now = datetime(2026, 12, 6, tzinfo=UTC)
    notifier = Notifier(settings, None, clock=lambda: now)
    producer = Keys()
    notifier.producer = producer  # type: ignore[assignment]
    key = b"k" * 900_000
    record = Record(key, b"not json", "threshold-events", 0, 7, 0)
    try:
        outcome = asyncio.run(notifier.handle(record))
    finally:
        notifier.close()
    assert outcome == "invalid"  # (and dead-lettered)
    assert producer.keys == [key[:MAX_KEY_BYTES]]
