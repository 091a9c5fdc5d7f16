"""The notifier process on the real broker (helper-67, 2026-12-04; the unit tests are in
tests/unit/test_notifier_retry_leftovers_review.py): a deferred e-mail whose address a later
license removed is dropped, one whose address is still listed is mailed after a restart (the
deferred e-mail resumes before the notifier has read `licenses`), and a webhook URL aiohttp
will not request is given up at its first try."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.kafka.io import produce_records
from tests.integration.harness import WorkerProcess, wait_for
from tests.integration.test_notifier import Mailbox, threshold_event
from tests.integration.test_thresholds import notifier_done, smtp_env

pytestmark = pytest.mark.integration

FULL = "full@acme.example"
OPS = "ops@acme.example"
UNREQUESTABLE = "http://127.1/hooks"


class FullMailbox(Mailbox):
    """Answers `452 4.2.2 mailbox full` to the addresses in `full`, and records each refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.full: set[str] = set()
        self.refused: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.full:
            self.refused.append(address)
            return "452 4.2.2 mailbox full"
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    def mailed(self, address: str) -> list[str]:
        return [
            line.split(": ", 1)[1]
            for message in self.messages
            if address in message["to"]
            for line in message["text"].splitlines()
            if line.startswith("Message-ID: ")
        ]


def license_(*notify: str, **more: Any) -> tuple[str, bytes, bytes]:
    value = {"tenant_id": "acme", "learner_limit": 10, "notify": list(notify), **more}
    return (topics.LICENSES, b"acme", json.dumps(value).encode())


def event(event_id: str, *notify: str) -> tuple[str, bytes, bytes]:
    return (topics.THRESHOLD_EVENTS, b"acme", threshold_event(event_id, notify=list(notify)))


def test_deferred_mail_follows_the_latest_license_and_a_url_aiohttp_refuses_is_given_up(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    produce_records(settings, [license_(FULL, OPS, webhooks=[UNREQUESTABLE])])
    with FullMailbox() as mailbox:
        mailbox.full.add(FULL)

        def notifier() -> WorkerProcess:
            env = smtp_env(mailbox.port) | {"SMTP_TLS": "none"}
            log = tmp_path / "notifier.log"
            return WorkerProcess(settings, log, command="notifier", extra_env=env).start()

        process = notifier()
        try:
            produce_records(settings, [event("e-1", FULL, OPS)])
            wait_for(lambda: notifier_done(settings), 120, "the notifier to commit e-1")
            wait_for(lambda: mailbox.refused.count(FULL) >= 2, 60, "a retry of the full mailbox")
            assert mailbox.mailed(OPS) == ["<e-1@active-learners>"]
            # given up at its first try, not retried for 24 h
            wait_for(
                lambda: "gave up event e-1 for http://127.1" in process.log_text(), 30, "give-up"
            )
            assert "the HTTP client cannot request this URL" in process.log_text()
            assert "event e-1 to http://127.1/… (queue" not in process.log_text()  # no retry

            # the address is taken off the license, and the mailbox would take the mail now
            produce_records(settings, [license_(OPS)])
            mailbox.full.clear()
            wait_for(lambda: "dropped event e-1" in process.log_text(), 120, "e-1 dropped")
            assert "no longer in the license's notify list" in process.log_text()
            assert mailbox.mailed(FULL) == []

            # listed again; an e-mail deferred before a restart resumes before `licenses` is read
            produce_records(settings, [license_(FULL, OPS)])
            mailbox.full.add(FULL)
            refused_before = mailbox.refused.count(FULL)
            produce_records(settings, [event("e-2", FULL, OPS)])
            wait_for(lambda: notifier_done(settings), 120, "the notifier to commit e-2")
            wait_for(lambda: mailbox.refused.count(FULL) > refused_before, 60, "e-2 deferred")
        finally:
            process.stop()
        mailbox.full.clear()
        process = notifier()
        try:
            wait_for(lambda: mailbox.mailed(FULL) == ["<e-2@active-learners>"], 120, "e-2 mailed")
            assert "dropped event e-2" not in process.log_text()
            assert process.alive(), process.log_tail()
        finally:
            process.stop()
    log = process.log_text()
    assert "Traceback" not in log and FULL not in log
