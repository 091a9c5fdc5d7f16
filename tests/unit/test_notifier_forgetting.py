"""The notifier forgets the events Kafka can no longer hand out again
(streams/notifier/forgetting.py): its store of handled events and its delivery markers stay
bounded by the `threshold-events` topic's retention, and a redelivery Kafka can still make is
never mailed or queued twice."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.config.settings import Settings
from streams.notifier.forgetting import redelivery_horizon
from streams.notifier.service import Notifier
from streams.notifier.webhooks import DeliveryQueue, Dispatcher, MemoryKV, queue_id
from streams.stages.store import Record
from tests.unit.test_notifier_rules import EVENT, Producer
from tests.unit.test_webhooks import HOOK_A, SECRET, Hanging, license_record

DAY_MS = 24 * 3600 * 1000
WEEK_MS = 7 * DAY_MS


@pytest.mark.parametrize(
    ("configs", "horizon"),
    [
        # 60 days of retention, segments of up to a week, and a day of slack
        (
            {
                "cleanup.policy": "delete",
                "retention.ms": str(60 * DAY_MS),
                "segment.ms": str(WEEK_MS),
            },
            timedelta(days=68),
        ),
        ({"retention.ms": str(60 * DAY_MS)}, timedelta(days=68)),  # segment.ms not given: a week
        # Kafka's defaults (a week, segments of a week) and shorter: 30 days at least
        (
            {"cleanup.policy": "delete", "retention.ms": str(WEEK_MS), "segment.ms": str(WEEK_MS)},
            timedelta(days=30),
        ),
        ({"retention.ms": str(DAY_MS), "segment.ms": "3600000"}, timedelta(days=30)),
        ({"cleanup.policy": "delete", "retention.ms": "-1"}, None),  # unlimited
        ({"cleanup.policy": "compact", "retention.ms": str(DAY_MS)}, None),  # kept per key
        ({"cleanup.policy": "compact,delete", "retention.ms": str(DAY_MS)}, None),
        ({}, None),  # the broker did not say
        ({"retention.ms": None}, None),
        ({"retention.ms": "soon"}, None),
    ],
)
def test_an_event_is_remembered_while_the_topic_may_hold_it(
    configs: dict[str, str | None], horizon: timedelta | None
) -> None:
    assert redelivery_horizon(configs) == horizon


T0 = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the day of the events (their window's)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def record(offset: int, **changes: Any) -> Record:
    raw = json.dumps({**EVENT, **changes}).encode()
    return Record(b"acme", raw, "p-threshold-events", 0, offset, 0)


def test_events_and_markers_go_once_the_topic_can_no_longer_hold_them(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    clock = Clock()
    notifier = Notifier(settings, None, SECRET, clock=clock)
    notifier.producer = Producer()
    # the license the events were counted with (an event's `notify` is its license's)
    notifier.webhook_book.apply(b"acme", license_record(webhooks=[HOOK_A], notify=EVENT["notify"]))
    horizon = timedelta(days=30)
    notifier.redelivery_horizon = lambda: horizon  # type: ignore[method-assign]
    queue = DeliveryQueue(MemoryKV())

    async def scenario() -> list[Any]:
        notifier.webhooks = Dispatcher(queue, Hanging(), SECRET)  # receivers that never answer
        seen: list[Any] = [await notifier.handle(record(0, event_id="e-1"))]
        clock.now = T0 + timedelta(days=3)
        seen.append(await notifier.handle(record(1, event_id="e-2")))
        clock.now = T0 + horizon - timedelta(seconds=1)
        seen.append(await notifier.forget_old_events())  # e-1 may still come again
        seen.append(await notifier.handle(record(0, event_id="e-1")))  # and it does
        clock.now = T0 + horizon + timedelta(seconds=1)
        seen.append(await notifier.forget_old_events())  # e-1 can no longer come
        seen.append(notifier.store.get("e-1"))
        seen.append(notifier.store.get("e-2") is not None)
        clock.now = T0 + timedelta(days=3) + horizon + timedelta(seconds=1)
        seen.append(await notifier.forget_old_events())
        await notifier.webhooks.stop()
        return seen

    try:
        seen = asyncio.run(scenario())
        assert notifier.store.get("e-2") is None
    finally:
        notifier.store.close()
    assert seen == ["outbox", "outbox", (0, 0), "duplicate", (1, 1), None, True, (1, 1)]
    assert sorted(path.name for path in (tmp_path / "outbox").iterdir()) == ["e-1.eml", "e-2.eml"]
    # the pending deliveries themselves stay until delivered or given up: only markers went
    assert queue.pending() == {queue_id("acme", HOOK_A): 2}


def test_an_event_whose_dead_letter_is_still_owed_is_remembered(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    clock = Clock()
    notifier = Notifier(settings, None, clock=clock)
    notifier.redelivery_horizon = lambda: timedelta(days=30)  # type: ignore[method-assign]
    try:
        # mailed, its dead letter not sent yet (a crash in between): a redelivery sends it
        notifier.store.put("owed", "outbox", T0, "mailed 1 of 2 addresses")
        notifier.store.put("done", "outbox", T0)
        clock.now = T0 + timedelta(days=400)
        assert asyncio.run(notifier.forget_old_events()) == (1, 0)
        assert notifier.store.get("done") is None
        assert notifier.store.get("owed") == {
            "outcome": "outbox",
            "at": T0.isoformat(),
            "dead_letter": "mailed 1 of 2 addresses",
        }
    finally:
        notifier.store.close()


def test_a_topic_that_may_keep_events_for_ever_keeps_them_remembered(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    clock = Clock()
    notifier = Notifier(settings, None, clock=clock)
    notifier.redelivery_horizon = lambda: None  # type: ignore[method-assign]
    try:
        notifier.store.put("e-1", "outbox", T0)
        clock.now = T0 + timedelta(days=3650)
        assert asyncio.run(notifier.forget_old_events()) == (0, 0)
        assert notifier.store.get("e-1") is not None
    finally:
        notifier.store.close()


def test_settings_the_broker_will_not_give_keep_every_event(tmp_path: Path, monkeypatch) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    notifier = Notifier(settings, None)

    def refused(*_: Any, **__: Any) -> dict[str, str | None]:
        raise PermissionError("TopicAuthorizationFailed")

    monkeypatch.setattr("streams.notifier.service.topic_configs", refused)
    try:
        assert notifier.redelivery_horizon() is None
    finally:
        notifier.store.close()
