"""The notifier against bad events on the real broker, and its SMTP connection's TLS against a
real SMTP server (aiosmtpd) with certificates made by openssl."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from kafka.admin import ConfigResource, ConfigResourceType

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import admin_client, ensure_topics, topic_config
from streams.kafka.io import produce_records, read_topic
from streams.notifier import smtp
from streams.notifier.service import Notifier
from streams.notifier.smtp import SmtpSettings
from tests.integration.harness import WorkerProcess, free_port, wait_for
from tests.integration.test_security import make_certificates
from tests.integration.test_thresholds import (
    ADDRESSES,
    NOW,
    notifier_done,
    smtp_env,
    synthetic_event,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class Mailbox:
    """A real SMTP server on localhost: what it received, over TLS or not, and who logged in.
    It answers `unknown` addresses with 550, as a server does for a mailbox it does not have."""

    def __init__(self, unknown: tuple[str, ...] = (), **server: Any) -> None:
        self.unknown = unknown
        self.port = free_port()
        self.messages: list[dict[str, Any]] = []
        self.logins: list[dict[str, Any]] = []
        self.controller = Controller(
            self, hostname="127.0.0.1", port=self.port, authenticator=self.authenticate, **server
        )

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address in self.unknown:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            {
                "to": list(envelope.rcpt_tos),
                "tls": server.transport.get_extra_info("ssl_object") is not None,
                "text": envelope.content.decode("utf-8", errors="replace"),
            }
        )
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.logins.append({"login": auth_data.login.decode(), "tls": tls})
        return AuthResult(success=True)

    def message_ids(self) -> list[str]:
        return [
            line.split(": ", 1)[1]
            for message in self.messages
            for line in message["text"].splitlines()
            if line.startswith("Message-ID: ")
        ]

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    folder = tmp_path / "certs"
    folder.mkdir()
    make_certificates(folder)  # ca.pem; broker.crt and broker.key for localhost and 127.0.0.1
    return folder


def server_context(certificates: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "broker.crt", certificates / "broker.key")
    return context


# -- bad events on the real broker ---------------------------------------------------------------


def threshold_event(event_id: str, **changes: Any) -> bytes:
    value = {**synthetic_event(0, NOW.date() + timedelta(days=20)), "event_id": event_id}
    return json.dumps({**value, **changes}).encode()


def dead_letters(settings: Settings) -> list[dict[str, Any]]:
    return [json.loads(value) for _, value in read_topic(settings, topics.DEAD_LETTERS) if value]


def test_a_bad_event_is_dead_lettered_and_the_next_good_one_still_mailed(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    # Events the topic's schema holds (every record of it is checked after the test) that cannot
    # be mailed, or not to everyone: a tenant id no header can hold, notify entries of licenses
    # accepted before the one-address rule, mailboxes the SMTP server does not have.
    records = [
        # a valid tenant id that no Subject header can hold (U+2028 is a line break there)
        threshold_event("bad-tenant", tenant_id="acme\u2028Bcc: everyone@example.com"),
        # an address the e-mail library refuses, and nothing else to mail
        threshold_event("bad-address", notify=["a@acme.example\r\nBcc:everyone@example.com"]),
        # one entry with a display name, one good address: the good one is mailed
        threshold_event("half-bad", notify=["Ann <ann@acme.example>", "b@acme.example"]),
        # the SMTP server has no such mailbox: the other address is mailed; then none is left
        threshold_event("one-unknown", notify=["a@acme.example", "nobody@acme.example"]),
        threshold_event("all-unknown", notify=["nobody@acme.example"]),
        threshold_event("good"),
    ]
    # one key, so one partition: the good events wait behind the bad ones
    produce_records(settings, ((topics.THRESHOLD_EVENTS, b"acme", raw) for raw in records))
    with Mailbox(unknown=("nobody@acme.example",)) as mailbox:
        notifier = WorkerProcess(
            settings,
            tmp_path / "notifier.log",
            command="notifier",
            extra_env=smtp_env(mailbox.port),
        ).start()
        try:
            wait_for(lambda: notifier_done(settings), 120, "the notifier to commit every event")
            assert notifier.alive(), notifier.log_tail()
        finally:
            notifier.stop()
    assert mailbox.message_ids() == [
        "<half-bad@active-learners>",
        "<one-unknown@active-learners>",
        "<good@active-learners>",
    ]
    assert [message["to"] for message in mailbox.messages] == [
        ["b@acme.example"],
        ["a@acme.example"],
        ADDRESSES,
    ]
    letters = dead_letters(settings)
    source = settings.topic(topics.THRESHOLD_EVENTS)
    assert [(letter["reason"], letter["source"]["topic"]) for letter in letters] == [
        ("invalid", source)
    ] * 5
    assert [letter["source"]["offset"] for letter in letters] == [0, 1, 2, 3, 4]
    assert len({letter["source"]["partition"] for letter in letters}) == 1
    details = [letter["detail"] for letter in letters]
    assert details[0].startswith("cannot be made into an e-mail: Header values may not contain")
    assert details[1].startswith("no usable address: notify[0]: contains a control character")
    assert details[2].startswith("mailed 1 of 2 addresses; notify[0]: not an e-mail address")
    assert (
        details[3]
        == "mailed 1 of 2 addresses; the SMTP server refused an address (550 5.1.1 no such mailbox)"
    )
    assert details[4] == "mailed 0 of 1 addresses; the SMTP server refused every recipient (550)"
    assert [letter["raw"] for letter in letters] == [raw.decode() for raw in records[:5]]
    log = notifier.log_text()
    assert "Traceback" not in log and "@acme.example" not in log
    assert log.count(" dead-lettered: ") == 5


def test_credentials_never_go_over_a_server_without_starttls(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    produce_records(settings, [(topics.THRESHOLD_EVENTS, b"acme", threshold_event("e-1"))])
    # a server that would take a login in clear
    with Mailbox(auth_require_tls=False) as mailbox:
        env = {**smtp_env(mailbox.port), "SMTP_USERNAME": "lms", "SMTP_PASSWORD": "secret"}
        notifier = WorkerProcess(
            settings, tmp_path / "notifier.log", command="notifier", extra_env=env
        ).start()
        try:
            wait_for(lambda: "does not offer STARTTLS" in notifier.log_text(), 60, "the refusal")
            assert notifier.alive(), notifier.log_tail()
        finally:
            notifier.stop()
    assert mailbox.logins == [] and mailbox.messages == []
    refusal = next(line for line in notifier.log_text().splitlines() if "STARTTLS" in line)
    assert "[ERROR]" in refusal and "retrying" in refusal and "secret" not in refusal
    assert "Traceback" not in notifier.log_text()  # stopped while retrying: a clean stop


# -- the SMTP connection's TLS -------------------------------------------------------------------


def message() -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "lms@example.com", "a@acme.example", "hello"
    mail.set_content("hello")
    return mail


def send(mailbox: Mailbox, **settings: Any) -> dict[str, str]:
    smtp_settings = SmtpSettings(
        host="127.0.0.1", port=mailbox.port, sender="lms@example.com", **settings
    )
    return asyncio.run(smtp.send(message(), smtp_settings, smtp_settings.tls_context()))


@pytest.mark.parametrize("credentials", [{}, {"username": "lms", "password": "secret"}])
def test_starttls_is_used_whenever_the_server_offers_it(
    certificates: Path, credentials: dict[str, str]
) -> None:
    with Mailbox(tls_context=server_context(certificates)) as mailbox:
        send(mailbox, tls="starttls", cafile=str(certificates / "ca.pem"), **credentials)
    assert [message["tls"] for message in mailbox.messages] == [True]
    expected_logins = [{"login": "lms", "tls": True}] if credentials else []
    assert mailbox.logins == expected_logins


def test_without_credentials_a_server_without_starttls_gets_plain_mail() -> None:
    with Mailbox() as mailbox:
        send(mailbox, tls="starttls")
    assert [message["tls"] for message in mailbox.messages] == [False]


def test_credentials_are_refused_over_a_plain_connection_in_one_line() -> None:
    with Mailbox(auth_require_tls=False) as mailbox, pytest.raises(smtp.CleartextRefused) as info:
        send(mailbox, tls="starttls", username="lms", password="secret")
    assert mailbox.logins == [] and mailbox.messages == []
    assert "\n" not in str(info.value) and "does not offer STARTTLS" in str(info.value)
    assert smtp.permanent(info.value) is None  # retried: the server may be fixed


def test_implicit_tls_from_the_first_byte(certificates: Path) -> None:
    # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS from its first byte
    with Mailbox(ssl_context=server_context(certificates), auth_require_tls=False) as mailbox:
        send(
            mailbox,
            tls="implicit",
            cafile=str(certificates / "ca.pem"),
            username="lms",
            password="secret",
        )
    assert [message["tls"] for message in mailbox.messages] == [True]
    assert mailbox.logins == [{"login": "lms", "tls": True}]


def test_a_certificate_the_notifier_does_not_trust_is_never_used(certificates: Path) -> None:
    with (
        Mailbox(tls_context=server_context(certificates)) as mailbox,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        send(mailbox, tls="starttls", username="lms", password="secret")  # no SMTP_CAFILE
    assert mailbox.logins == [] and mailbox.messages == []


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"SMTP_TLS": "tls1.3"}, "SMTP_TLS must be starttls, implicit or none, got 'tls1.3'"),
        ({"SMTP_TLS": "none", "SMTP_PASSWORD": "secret"}, "SMTP_TLS=none would send"),
    ],
)
def test_a_bad_tls_setting_stops_the_notifier_at_start_in_one_line(env, error) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "streams", "notifier"],
        env={**os.environ, "SMTP_HOST": "127.0.0.1", **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("active-learners notifier: error: ")
    assert error in lines[0] and "secret" not in lines[0]


def test_the_notifier_remembers_events_for_as_long_as_the_topic_may_hold_them(
    settings: Settings,
) -> None:
    # streams/notifier/forgetting.py, with the settings a real broker gives for the topic
    ensure_topics(settings)
    notifier = Notifier(settings, None)
    topic = settings.topic(topics.THRESHOLD_EVENTS)
    day_ms = 24 * 3600 * 1000

    def set_topic(**configs: str) -> None:
        admin = admin_client(settings)
        try:
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
        finally:
            admin.close()
        wait_for(
            lambda: all(topic_config(settings, topic, k) == v for k, v in configs.items()),
            30,
            f"{topic} set to {configs}",
        )

    try:
        set_topic(**{"retention.ms": str(60 * day_ms), "segment.ms": str(day_ms)})
        assert notifier.redelivery_horizon() == timedelta(days=62)  # 60 + 1, and a day's slack
        set_topic(**{"retention.ms": "-1"})
        assert notifier.redelivery_horizon() is None  # unlimited: every event remembered
    finally:
        notifier.store.close()
