"""helper-85's review of the session's fixes to the HTTP answers and the settings (2026-12-05):
each test here failed when written: the client's bytes kept under aiohttp's pure-Python parser,
`SMTP_FROM` texts the e-mail parser raises IndexError on, an IPv6 broker the changelog restore
could not reach, a refused tokens file not named in the log, `--older-than` and `--now` reading
digits and timestamps their own way."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from tests.unit.web_harness import ADMIN_ALL, Server, Views, isolate


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    return isolate(monkeypatch, tmp_path)


# -- malformed requests under aiohttp's pure-Python parser (AIOHTTP_NO_EXTENSIONS=1) ----------

PY_PARSER_LEAKS = {
    # a bare LF inside the request target: InvalidURLError(target) holds a "\n", so `reason`
    # skips its "invalid request target" case and `one_line` keeps both lines of it
    "target-with-bare-lf": b"GET /api/tenants?token=%s\nX HTTP/1.1\r\nHost: localhost\r\n"
    b"Connection: close\r\n\r\n",
    # a request line with an apostrophe: repr() quotes it in double quotes, so
    # `partition(" '")` finds nothing and the whole line is kept
    "status-line-with-apostrophe": b"GET /api/tenants?q=o'brien&token=%s HTTP/1.x\r\n"
    b"Host: localhost\r\nConnection: close\r\n\r\n",
    "method-line-with-apostrophe": b"GET /api/tenants?q=o'brien&token=%s\r\n"
    b"Host: localhost\r\nConnection: close\r\n\r\n",
    # a body that is not chunked after `Transfer-Encoding: chunked`: TransferEncodingError
    # carries the first body line bare (no b'...' to cut at)
    "chunk-size-line": b"POST /api/tenants/t1/deletions HTTP/1.1\r\nHost: localhost\r\n"
    b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
    b'\r\n{"token": "%s"}\r\n',
}


@pytest.mark.parametrize("request_bytes", PY_PARSER_LEAKS.values(), ids=PY_PARSER_LEAKS.keys())
def test_the_pure_python_parser_never_puts_the_clients_bytes_in_the_log_or_answer(
    server: Server,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    request_bytes: bytes,
) -> None:
    from aiohttp import http_parser, web_protocol

    monkeypatch.setattr(web_protocol, "HttpRequestParser", http_parser.HttpRequestParserPy)
    caplog.set_level(logging.INFO)
    status, answer = server.raw(request_bytes % ADMIN_ALL.encode())
    assert status == 400, answer[:300]
    error = json.loads(answer.rpartition(b"\r\n\r\n")[2])["error"]
    assert ADMIN_ALL not in error, error
    assert ADMIN_ALL not in caplog.text, caplog.text


@pytest.mark.parametrize(
    "exc",
    [
        ("InvalidURLError", "/api/tenants?token=%s\nX"),
        ("BadStatusLine", "GET /?q=o'brien&token=%s HTTP/1.x"),
        ("BadHttpMethod", "GET /?q=o'brien&token=%s"),
        ("TransferEncodingError", "token=%s"),
    ],
    ids=lambda e: e[0],
)
def test_reason_drops_the_request_whatever_its_quotes_and_line_breaks(exc: Any) -> None:
    from aiohttp import http_exceptions

    from streams.worker.malformed_http import reason

    kind, text = exc
    said = reason(getattr(http_exceptions, kind)(text % ADMIN_ALL))
    assert ADMIN_ALL not in said, said


# -- SMTP_FROM: the e-mail library's parser fails in more ways than AttributeError ------------


@pytest.mark.parametrize("sender", ['"', 'Active Learners <"'])
def test_an_smtp_from_the_email_parser_chokes_on_is_a_one_line_error(sender: str) -> None:
    """IndexError (email/_header_value_parser.py:632 local_part) escapes `_sender`
    (streams/notifier/smtp.py:156 catches ValueError, AttributeError, MessageError): the
    notifier stops with a traceback instead of `SMTP_FROM must be one e-mail address`."""
    from streams.config.settings import ConfigError
    from streams.notifier.smtp import SmtpSettings

    with pytest.raises(ConfigError, match="SMTP_FROM"):
        SmtpSettings.from_env({"SMTP_HOST": "mail.example.com", "SMTP_FROM": sender})


# -- an IPv6 broker: the changelog restore's consumer is given the address without brackets --


def test_the_restore_consumer_reaches_a_bracketed_ipv6_broker() -> None:
    """KAFKA_BOOTSTRAP_SERVERS=[fd00::5]:9092 passes the settings and faust (its server_list
    puts the brackets back); streams/worker/recovery.py `bootstrap_servers` writes
    `fd00::5:9092`, which aiokafka reads as the host `fd00::5:9092` on port 9092."""
    from types import SimpleNamespace

    from aiokafka.conn import get_ip_port_afi
    from yarl import URL

    from streams.worker.app import _broker_url
    from streams.worker.recovery import bootstrap_servers

    urls = [URL(u) for u in _broker_url("[fd00::5]:9093,kafka-1:9092").split(";")]
    app = SimpleNamespace(conf=SimpleNamespace(broker=urls))
    hosts = [get_ip_port_afi(server)[:2] for server in bootstrap_servers(app)]
    assert hosts == [("fd00::5", 9093), ("kafka-1", 9092)], hosts


# -- API_TOKENS_FILE re-read with a secret an env token has ----------------------------------


def test_a_reread_refused_for_a_shared_secret_names_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every token of the file is refused (fail closed, as for a doubled name), and the one
    line said of it is `API tokens: 'ops' and 'ops-file' have the same secret; each token needs
    its own; its tokens are refused until the file is fixed`: not which file, nor that the
    other holder is an env token that only the file can give way to."""
    import hashlib

    from streams.http import tokens as tokens_module

    env_secret, ci_secret = "a" * 40, "c" * 40
    path = tmp_path / "tokens.json"

    def write(entries: list[dict[str, Any]]) -> None:
        path.write_text(json.dumps({"tokens": entries}))

    ci = {"name": "ci", "role": "admin", "tenants": ["*"]}
    ci["sha256"] = hashlib.sha256(ci_secret.encode()).hexdigest()
    write([ci])
    book = tokens_module.TokenBook.from_env(
        {"API_ADMIN_TOKENS": f"ops:{env_secret}", "API_TOKENS_FILE": str(path)}
    )
    assert book.find(ci_secret) is not None
    shared = {"name": "ops-file", "role": "read", "tenants": ["t1"]}
    shared["sha256"] = hashlib.sha256(env_secret.encode()).hexdigest()
    write([ci, shared])
    book._read_at = 0.0  # the next look re-reads
    caplog.set_level(logging.ERROR)
    assert book.find(ci_secret) is None  # fail closed: the whole file
    assert str(path) in caplog.text or "API_TOKENS_FILE" in caplog.text, caplog.text


# -- numbers and timestamps read twice, by rules that now differ ------------------------------


def test_older_than_reads_ascii_digits_only_as_every_other_option() -> None:
    """`_int_at_least` refused other scripts' digits; `--older-than` (RELATIVE's `\\d` in
    streams/cli/deletions.py) still read Arabic-Indic and full-width digits as 90 days."""
    from datetime import UTC, datetime

    from streams.cli.deletions import parse_cutoff

    for text in ("\u0669\u0660d", "\uff19\uff10d"):
        with pytest.raises(ValueError):
            parse_cutoff(text, datetime(2026, 6, 1, tzinfo=UTC))


def test_now_reads_a_timestamp_as_older_than_does() -> None:
    """`delete --older-than` reads the contract's Timestamp now; `generate --now`
    (streams/cli/common.py parse_instant) still uses `fromisoformat`: it refuses a leap second
    and a lower-case `z` the contract takes."""
    from streams.cli.common import parse_instant

    assert parse_instant("2016-12-31T23:59:60Z").year == 2016
    assert parse_instant("2026-01-01t00:00:00z").year == 2026


def test_an_smtp_username_with_a_control_character_is_refused() -> None:
    from streams.config.settings import ConfigError
    from streams.notifier.smtp import SmtpSettings

    env = {"SMTP_HOST": "mail.example", "SMTP_USERNAME": "ops\r", "SMTP_PASSWORD": "pw"}
    with pytest.raises(ConfigError, match="SMTP_USERNAME"):
        SmtpSettings.from_env(env)


@pytest.mark.parametrize("text", ["2026-W01-1", "\u0661\u0662d", "1_000d"])
def test_older_than_refuses_week_dates_and_other_digits(text: str) -> None:
    from datetime import UTC, datetime

    from streams.cli.deletions import parse_cutoff

    with pytest.raises(ValueError, match="--older-than"):
        parse_cutoff(text, datetime(2026, 11, 28, tzinfo=UTC))


@pytest.mark.parametrize("text", ["\u0661\u0662", "1_000", "+12", "0x10"])
def test_a_seconds_option_reads_ascii_decimals_only(text: str) -> None:
    import argparse

    from streams.cli.common import positive_float

    with pytest.raises(argparse.ArgumentTypeError, match="expected a number"):
        positive_float(text)
    assert positive_float("2.5") == 2.5 and positive_float(" 10 ") == 10.0
