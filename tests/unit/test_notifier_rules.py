"""The notifier without a broker: which events are a backfill, which can be mailed and to whom,
the e-mail text, the SMTP settings, and one bad event among good ones (dead letters in a list)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from prometheus_client import REGISTRY

from streams.config.settings import ConfigError, Settings
from streams.domain.decoding import Rejected
from streams.notifier.mail import (
    MailableEvent,
    build_message,
    compose,
    decode_event,
    is_backfill,
    split_recipients,
)
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings, permanent
from streams.stages.store import Record

EVENT: dict[str, Any] = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "window": {"start": "2026-11-01", "end": "2026-12-01", "months": 1},
    "threshold_pct": 90,
    "threshold_learners": 450,
    "direction": "up",
    "active_learners": 452,
    "learner_limit": 500,
    "notify": ["a@acme.example", "b@acme.example"],
    "occurred_at": "2026-11-20T10:00:00+00:00",
}
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def event(**changes: Any) -> MailableEvent:
    return MailableEvent.model_validate({**EVENT, **changes})


@pytest.mark.parametrize(
    ("end", "now", "backfill"),
    [
        ("2026-12-01", datetime(2026, 11, 20, tzinfo=UTC), False),  # the current window
        ("2026-11-01", datetime(2026, 11, 7, tzinfo=UTC), False),  # ended 6 days ago
        ("2026-11-01", datetime(2026, 11, 8, 0, 0, 1, tzinfo=UTC), True),  # over 7 days
    ],
)
def test_backfill_is_a_window_that_ended_over_7_days_ago(end, now, backfill) -> None:
    assert is_backfill(event(window={**EVENT["window"], "end": end}), now) is backfill


def test_message_tells_tenant_window_count_limit_and_percentage() -> None:
    message = build_message(event(), "lms@example.com", ["a@acme.example", "b@acme.example"])
    assert message["To"] == "a@acme.example, b@acme.example"
    assert message["Subject"] == "Active Learners: acme reached 90% of its limit (452 of 500)"
    body = message.get_content()
    for words in ("452", "90.4% of the licensed limit of 500", "2026-11-01 to 2026-12-01", "450"):
        assert words in body
    down = build_message(event(direction="down", active_learners=400), "x@y.z", ["a@acme.example"])
    assert "back below 90%" in down["Subject"]


# (changes to the event, words of the reason it cannot be mailed)
UNMAILABLE = [
    ({"learner_limit": 0}, "learner_limit"),  # nothing to divide by
    ({"notify": None}, "notify"),
    ({"window": {"start": "2026-11-01", "months": 1}}, "window.end"),
    ({"event_id": "../../etc/passwd"}, "event_id"),  # a file name in the outbox
    ({"threshold_pct": "90"}, "threshold_pct"),
]


@pytest.mark.parametrize(("changes", "words"), UNMAILABLE)
def test_events_that_cannot_be_mailed_are_rejected_with_the_reason(changes, words) -> None:
    rejected = decode_event(json.dumps({**EVENT, **changes}).encode())
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid"
    assert words in rejected.detail


@pytest.mark.parametrize(
    "raw", [b"", b"{not json", b"[1, 2]", b'{"tenant_id": "a\\ud800"}', None, b"\xff\xfe"]
)
def test_records_that_are_no_event_at_all_are_rejected(raw) -> None:
    assert isinstance(decode_event(raw), Rejected)


@pytest.mark.parametrize(
    "tenant_id",
    ["acme\u2028Bcc: everyone@example.com", "acme\x85", "acme\u2029"],  # valid ids, bad headers
)
def test_a_tenant_id_that_cannot_be_a_subject_is_rejected_not_raised(tenant_id) -> None:
    rejected = compose(event(tenant_id=tenant_id), "lms@example.com", ["a@acme.example"])
    assert isinstance(rejected, Rejected) and "cannot be made into an e-mail" in rejected.detail


def test_each_notify_entry_is_one_address_or_refused_alone() -> None:
    notify = (
        "a@acme.example",
        "a@x.example, b@y.example",  # a list
        "a@x.example,b@y.example",
        "Ann <ann@acme.example>",  # a display name
        "<ann@acme.example>",
        "ann@acme.example\r\nBcc: everyone@example.com",  # a header injection
        "josé@acme.example",  # the e-mail library refuses a non-ASCII local part
        ["nested@acme.example"],
        42,
        "b@acme.example",
    )
    good, problems = split_recipients(notify)
    assert good == ["a@acme.example", "b@acme.example"]
    assert [problem.split(":")[0] for problem in problems] == [f"notify[{i}]" for i in range(1, 9)]
    assert all("\n" not in problem for problem in problems)


# env -> (tls, port, has_credentials) or the words of the one-line ConfigError
SMTP_SETTINGS: list[tuple[dict[str, str], tuple[str, int, bool] | str]] = [
    ({}, ("starttls", 25, False)),
    ({"SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"}, ("starttls", 25, True)),
    ({"SMTP_TLS": "implicit"}, ("implicit", 465, False)),
    ({"SMTP_TLS": "IMPLICIT", "SMTP_PORT": "2465"}, ("implicit", 2465, False)),
    ({"SMTP_TLS": "none"}, ("none", 25, False)),
    ({"SMTP_STARTTLS": "true"}, ("starttls", 587, False)),  # the old setting, as before
    ({"SMTP_STARTTLS": "false"}, ("none", 25, False)),
    ({"SMTP_TLS": "ssl"}, "SMTP_TLS must be starttls, implicit or none"),
    ({"SMTP_TLS": "none", "SMTP_PASSWORD": "p"}, "would send SMTP_USERNAME/SMTP_PASSWORD in clear"),
    ({"SMTP_STARTTLS": "false", "SMTP_USERNAME": "u"}, "in clear"),
    ({"SMTP_TLS": "starttls", "SMTP_STARTTLS": "true"}, "set only SMTP_TLS"),
    ({"SMTP_STARTTLS": "maybe"}, "SMTP_STARTTLS must be true or false"),
    ({"SMTP_PORT": "twenty-five"}, "SMTP_PORT"),
    ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
    ({"SMTP_CAFILE": "/nonexistent/ca.pem"}, "SMTP_CAFILE=/nonexistent/ca.pem: not a readable"),
    ({"SMTP_TLS": "none", "SMTP_CAFILE": "/etc/hostname"}, "SMTP_CAFILE needs"),
    ({"SMTP_FROM": "a@x.example, b@y.example"}, "SMTP_FROM must be one e-mail address"),
    ({"SMTP_FROM": "lms@x.example\r\nBcc: e@v.example"}, "SMTP_FROM"),
    # half a login fails at every event, and the notifier would wait for ever
    ({"SMTP_USERNAME": "u"}, "SMTP_USERNAME and SMTP_PASSWORD go together"),
    ({"SMTP_PASSWORD": "p"}, "SMTP_USERNAME and SMTP_PASSWORD go together"),
    ({"SMTP_USERNAME": "u", "SMTP_PASSWORD": "p"}, ("starttls", 25, True)),
    # a host, not a URL or host:port (the port is SMTP_PORT)
    ({"SMTP_HOST": "mail.example:25"}, "SMTP_HOST"),
    ({"SMTP_HOST": "smtp://mail.example"}, "SMTP_HOST"),
    ({"SMTP_HOST": "[2001:db8::25]"}, ("starttls", 25, False)),
]


@pytest.mark.parametrize(("env", "expected"), SMTP_SETTINGS)
def test_smtp_settings(env, expected) -> None:
    full_env = {"SMTP_HOST": "mail", **env}  # (an SMTP_HOST of env's own replaces it)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected) as info:
            SmtpSettings.from_env(full_env)
        assert "\n" not in str(info.value)
        return
    smtp = SmtpSettings.from_env(full_env)
    assert smtp is not None and (smtp.tls, smtp.port, smtp.has_credentials) == expected


def test_without_smtp_host_mail_goes_to_the_outbox() -> None:
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"SMTP_HOST": " ", "SMTP_USERNAME": "", "PATH": "/bin"}) is None


def test_smtp_from_may_carry_a_name_and_the_start_line_no_password() -> None:
    smtp = SmtpSettings.from_env(
        {
            "SMTP_HOST": "mail",
            "SMTP_FROM": "Active Learners <lms@x.example>",
            "SMTP_USERNAME": "lms",
            "SMTP_PASSWORD": "pw",
        }
    )
    assert smtp is not None and smtp.sender == "Active Learners <lms@x.example>"
    assert smtp.describe() == "SMTP mail:25 (TLS: starttls, required)"


def refused(*answers: tuple[int, str]) -> aiosmtplib.SMTPRecipientsRefused:
    return aiosmtplib.SMTPRecipientsRefused(
        [aiosmtplib.SMTPRecipientRefused(code, text, "r@x.example") for code, text in answers]
    )


@pytest.mark.parametrize(
    ("exc", "is_permanent"),
    [
        # every recipient refused for good: no retry will help
        (refused((550, "5.1.1 unknown user"), (553, "mailbox name not allowed")), True),
        (refused((550, "5.1.1 unknown user"), (450, "4.2.0 greylisted")), False),  # try again
        (refused((554, "5.7.1 Relay access denied")), False),  # the settings, for every event
        (aiosmtplib.SMTPNotSupported("SMTPUTF8 is not supported by this server"), True),
        (aiosmtplib.SMTPServerDisconnected("gone"), False),
        (ConnectionRefusedError(111, "refused"), False),
        (aiosmtplib.SMTPSenderRefused(550, "bad sender", "lms@x.example"), False),  # settings
    ],
)
def test_only_refusals_of_this_message_are_permanent(exc, is_permanent) -> None:
    assert (permanent(exc) is not None) is is_permanent


class Producer:
    """The dead-letters topic, as a list."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bytes | None]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None) -> None:
        self.sent.append((topic, json.loads(value), key))


def outcomes() -> dict[str, float]:
    names = ("sent", "outbox", "invalid", "duplicate", "address_invalid")
    return {
        name: REGISTRY.get_sample_value("active_learners_notifications_total", {"outcome": name})
        or 0.0
        for name in names
    }


def test_a_bad_event_is_dead_lettered_and_the_next_one_still_mailed(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}), topic_prefix="p-", state_dir=tmp_path)
    notifier = Notifier(settings, None, clock=lambda: NOW)  # the events' window is NOW's
    notifier.producer = producer = Producer()
    records = [
        {**EVENT, "event_id": "bad-subject", "tenant_id": "acme\u2028x"},
        {**EVENT, "event_id": "no-good-address", "notify": ["a@x.example, b@y.example"]},
        {**EVENT, "event_id": "one-bad-address", "notify": ["Ann <a@x.example>", "b@y.example"]},
        {**EVENT, "event_id": "good"},
        {**EVENT, "event_id": "one-bad-address"},  # a redelivery
    ]
    before = outcomes()

    async def handle_all() -> list[str]:
        results = []
        for offset, value in enumerate(records):
            raw = json.dumps(value).encode()
            results.append(
                await notifier.handle(Record(b"acme", raw, "p-threshold-events", 3, offset, 0))
            )
        return results

    try:
        assert asyncio.run(handle_all()) == ["invalid", "invalid", "outbox", "outbox", "duplicate"]
    finally:
        notifier.store.close()
    assert sorted(path.name for path in (tmp_path / "outbox").iterdir()) == [
        "good.eml",
        "one-bad-address.eml",
    ]
    assert "To: b@y.example\n" in (tmp_path / "outbox" / "one-bad-address.eml").read_text()
    letters = [value for _, value, _ in producer.sent]
    assert {topic for topic, _, _ in producer.sent} == {"p-dead-letters"}
    assert [(letter["reason"], letter["source"]["offset"]) for letter in letters] == [
        ("invalid", 0),
        ("invalid", 1),
        ("invalid", 2),
    ]
    assert letters[0]["source"] == {"topic": "p-threshold-events", "partition": 3, "offset": 0}
    assert "cannot be made into an e-mail" in letters[0]["detail"]
    assert letters[1]["detail"].startswith("no usable address: notify[0]")
    assert letters[2]["detail"].startswith("mailed 1 of 2 addresses; notify[0]")
    assert json.loads(letters[2]["raw"])["event_id"] == "one-bad-address"
    after = outcomes()
    assert {name: after[name] - before[name] for name in after} == {
        "sent": 0,
        "outbox": 2,
        "invalid": 2,
        "duplicate": 1,
        "address_invalid": 2,
    }
