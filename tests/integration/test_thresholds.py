"""Threshold events, the notifier with a real SMTP server, and new windows by the wall clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from schemas import topics
from streams.cli.deletions import send_and_wait
from streams.config.settings import Settings
from streams.domain.deletions import build_request
from streams.domain.selectors import Selector
from streams.domain.windows import Cut, window_of
from streams.kafka.admin import admin_client, ensure_topics
from streams.kafka.io import current_counts, read_topic
from streams.stages import commands
from tests.integration.harness import WorkerProcess, free_port, produce_json, wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
ADDRESSES = ["a@acme.example", "b@acme.example"]


class Mailbox:
    """A real SMTP server on localhost that keeps what it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[dict[str, Any]] = []
        self.controller: Controller | None = None

    async def handle_DATA(self, server, session, envelope) -> str:
        text = envelope.content.decode("utf-8", errors="replace")
        headers = dict(
            line.split(": ", 1) for line in text.split("\n\n")[0].splitlines() if ": " in line
        )
        self.messages.append({"to": list(envelope.rcpt_tos), "headers": headers, "text": text})
        return "250 OK"

    def start(self) -> Mailbox:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def message_ids(self) -> list[str]:
        return [m["headers"].get("Message-ID", "") for m in self.messages]


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    yield box
    box.stop()


def smtp_env(port: int) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_FROM": "lms@example.com"}


def events(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(v) for _, v in read_topic(settings, topics.THRESHOLD_EVENTS) if v]


def notifier_done(settings: Settings) -> bool:
    """The notifier's consumer group has committed every threshold event."""
    admin = admin_client(settings)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        group = f"{settings.app_id}-notifier"
        committed = admin.list_group_offsets(group).get(group, {})
        name = settings.topic(topics.THRESHOLD_EVENTS)
        tps = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        ends = consumer.end_offsets(tps)
        return all(
            ends[tp] == 0 or (tp in committed and committed[tp].offset >= ends[tp]) for tp in tps
        )
    finally:
        consumer.close()
        admin.close()


def launches_for(learners: range, at: datetime, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"{tag}-{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n}",
            "element_id": "course",
            "attempt_id": f"{tag}-{n}",
            "launched_at": at.isoformat(),
            "content_type": "scorm",
        }
        for n in learners
    ]


def test_crossings_fire_once_and_are_mailed_once_to_every_address(
    settings: Settings, tmp_path: Path, mailbox: Mailbox
) -> None:
    ensure_topics(settings)
    mailbox.start()
    month_start = NOW.date().replace(day=1)
    license_ = {
        "tenant_id": "acme",
        "cycle_start": month_start.isoformat(),
        "window_months": 1,
        "learner_limit": 10,
        "thresholds": [50, 100],
        "notify": ADDRESSES,
    }
    cut = Cut(month_start, 1, "UTC")
    now_window = window_of(cut, NOW).start.isoformat()
    recent = NOW - timedelta(minutes=1)
    if window_of(cut, recent).start.isoformat() != now_window:
        recent = NOW  # the month began a minute ago
    old = NOW - timedelta(days=100)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    notifier = WorkerProcess(
        settings, tmp_path / "notifier.log", command="notifier", extra_env=smtp_env(mailbox.port)
    ).start()
    try:
        produce_json(settings, "licenses", [license_])
        produce_json(settings, "launches", launches_for(range(6), old, "old"))
        produce_json(settings, "launches", launches_for(range(5), recent, "now"))

        def fired(expected: set[tuple[str, int, str]]):
            def check():
                found = {
                    (e["window"]["start"], e["threshold_pct"], e["direction"])
                    for e in events(settings)
                }
                return found if found >= expected else None

            return check

        wait_for(fired({(now_window, 50, "up")}), 120, "up 50% in the current window")
        produce_json(settings, "launches", launches_for(range(5, 10), recent, "more"))
        wait_for(fired({(now_window, 100, "up")}), 120, "up 100%")

        # a physical deletion brings the count below 100 %: down
        request = build_request(
            "acme", "physical", Selector.of("learner_ids", ["l0", "l1", "l2"]), datetime.now(UTC)
        )
        assert send_and_wait(settings, request, 120)["attempts_affected"] == 6
        wait_for(fired({(now_window, 100, "down")}), 120, "down 100%")

        all_events = events(settings)
        keys = [(e["window"]["start"], e["threshold_pct"], e["direction"]) for e in all_events]
        assert len(keys) == len(set(keys)), f"an event fired twice: {keys}"
        current = [e for e in all_events if e["window"]["start"] == now_window]
        old_window = [e for e in all_events if e["window"]["start"] != now_window]
        assert {(e["threshold_pct"], e["direction"]) for e in current} == {
            (50, "up"),
            (100, "up"),
            (100, "down"),
        }
        # the deletion also took l0-l2's attempts of the old window: it went below 50 % too
        assert {(e["threshold_pct"], e["direction"]) for e in old_window} == {
            (50, "up"),
            (50, "down"),
        }
        # l0-l2 live on different learner partitions, which apply their parts in their own
        # time; the thresholds wait for the whole deletion: the crossing names 7, what it left
        down = next(e for e in current if e["direction"] == "down")
        assert down["threshold_learners"] == 10
        assert down["active_learners"] == 7
        wait_for(
            lambda: (
                current_counts(settings).get(("acme", now_window), {}).get("active_learners") == 7
            ),
            120,
            "the window's count after the deletion",
        )

        # one mail per current-window event, to every address; the old window is not mailed
        wait_for(lambda: len(mailbox.messages) >= 3, 120, "three mails")
        wait_for(lambda: notifier_done(settings), 120, "the notifier to commit every event")
        assert sorted(mailbox.message_ids()) == sorted(
            f"<{e['event_id']}@active-learners>" for e in current
        )
        assert all(sorted(m["to"]) == ADDRESSES for m in mailbox.messages)
        assert "acme reached 100% of its limit (10 of 10)" in " ".join(
            m["headers"]["Subject"] for m in mailbox.messages
        )

        # restart the notifier and replay the whole topic: nothing is mailed again
        notifier.stop()
        admin = admin_client(settings)
        admin.delete_groups([f"{settings.app_id}-notifier"])
        admin.close()
        notifier.start()
        wait_for(lambda: notifier_done(settings), 120, "the replay to be handled")
        assert len(mailbox.messages) == 3
    finally:
        notifier.stop()
        worker.stop()


def synthetic_event(n: int, window_end: date) -> dict[str, Any]:
    return {
        "event_id": f"synthetic-{n}",
        "tenant_id": "acme",
        "window": {
            "start": (window_end - timedelta(days=30)).isoformat(),
            "end": window_end.isoformat(),
            "months": 1,
        },
        "threshold_pct": 80,
        "threshold_learners": 8,
        "direction": "up",
        "active_learners": 8,
        "learner_limit": 10,
        "notify": ADDRESSES,
        "occurred_at": NOW.isoformat(),
    }


def test_smtp_down_then_up_delivers_every_mail_exactly_once(
    settings: Settings, tmp_path: Path, mailbox: Mailbox
) -> None:
    ensure_topics(settings)
    future_end = NOW.date() + timedelta(days=20)
    produce_json(settings, "threshold-events", [synthetic_event(n, future_end) for n in range(5)])
    notifier = WorkerProcess(
        settings, tmp_path / "notifier.log", command="notifier", extra_env=smtp_env(mailbox.port)
    ).start()
    try:
        # nothing listens on the SMTP port yet: the notifier retries and loses nothing
        wait_for(lambda: "retrying" in notifier.log_tail(200), 60, "an SMTP retry")
        assert mailbox.messages == []
        mailbox.start()
        wait_for(lambda: len(mailbox.messages) >= 5, 120, "every mail after SMTP came back")
        wait_for(lambda: notifier_done(settings), 60, "every event committed")
        assert sorted(mailbox.message_ids()) == sorted(
            f"<synthetic-{n}@active-learners>" for n in range(5)
        )
    finally:
        notifier.stop()


def test_without_smtp_mail_goes_to_the_outbox_and_old_windows_are_skipped(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    produce_json(
        settings,
        "threshold-events",
        [
            synthetic_event(1, NOW.date() + timedelta(days=20)),
            synthetic_event(2, NOW.date() - timedelta(days=30)),  # a backfill of history
        ],
    )
    notifier = WorkerProcess(settings, tmp_path / "notifier.log", command="notifier").start()
    try:
        wait_for(lambda: notifier_done(settings), 60, "both events handled")
        outbox = settings.state_dir / "outbox"
        assert sorted(p.name for p in outbox.glob("*.eml")) == ["synthetic-1.eml"]
        assert (
            "Subject: Active Learners: acme reached 80%" in (outbox / "synthetic-1.eml").read_text()
        )
        assert "more than 7 days ago" in notifier.log_tail(100)
    finally:
        notifier.stop()


def test_a_new_window_gets_its_zero_record_before_any_launch(
    settings: Settings, tmp_path: Path
) -> None:
    """The wall clock is injected: a tick from 'the future' opens the next window."""
    ensure_topics(settings)
    month_start = NOW.date().replace(day=1)
    license_ = {
        "tenant_id": "acme",
        "cycle_start": month_start.isoformat(),
        "window_months": 1,
        "learner_limit": 4,
        "thresholds": [50],
    }
    cut = Cut(month_start, 1, "UTC")
    current = window_of(cut, NOW)
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        produce_json(settings, "licenses", [license_])
        produce_json(settings, "launches", launches_for(range(3), NOW - timedelta(seconds=5), "x"))
        wait_for(
            lambda: (
                current_counts(settings)
                .get(("acme", current.start.isoformat()), {})
                .get("active_learners")
                == 3
            ),
            120,
            "the current window counted",
        )
        next_start = current.end.isoformat()
        assert ("acme", next_start) not in current_counts(settings)
        # what the worker's timer sends: a tick to every tenant partition, here from the future
        tick = commands.Tick((current.end_at + timedelta(seconds=1)).isoformat())
        producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        for partition in range(settings.partitions):
            producer.send(
                settings.topic(topics.TENANT_COMMANDS),
                key=b"tick",
                value=commands.encode(tick),
                partition=partition,
            )
        producer.flush()
        producer.close()
        record = wait_for(
            lambda: current_counts(settings).get(("acme", next_start)), 120, "the zero record"
        )
        assert (record["active_learners"], record["total_learners"]) == (0, 3)
        assert record["window"]["start"] == next_start
        # the new window's thresholds start unarmed: no event about it
        assert not [e for e in events(settings) if e["window"]["start"] == next_start]
    finally:
        worker.stop()
