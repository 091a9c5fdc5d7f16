"""Hostile input to the CLI, the settings and the HTTP API, found by a review on 2026-12-02: a
`--timeout` too large for a millisecond count ended commands with an OverflowError traceback;
a JSON line whose id is an escaped lone surrogate (`"\\ud800"`) ended `produce` with a
UnicodeEncodeError traceback; an INGEST_LINGER_MS of hundreds of digits passed the settings and
stopped the worker at start with a traceback; a body whose Content-Encoding does not decode
answered 500; and a learner id with a Unicode line separator (U+2028, U+0085: valid in an id)
was cut in two by the learners file and by the dashboard's form, so a deletion selected other
learners than the ones named."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from typing import Any

import pytest

import streams.cli.common as common
import streams.cli.data as data
import streams.cli.deletions as deletions
import streams.kafka.io as kafka_io
from streams.cli.main import run
from streams.config.settings import ConfigError, Settings
from tests.unit.web_harness import ADMIN_ALL, Server, Views, bearer, isolate

# -- the CLI and its settings (no broker: every Kafka step is stubbed) -------------------------


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    for name in ("TOPIC_PREFIX", "API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS"):
        monkeypatch.delenv(name, raising=False)


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize(
    "argv",
    [
        ["topics", "--timeout", "1e308"],
        ["counts", "--timeout", "1e306"],
        ["worker", "--timeout", "1e308"],
        ["produce", "-", "--timeout", "1e308"],
        ["notifier", "--timeout=1e308"],
        ["bench", "--latency-seconds", "1e308"],
    ],
)
def test_a_timeout_too_large_to_count_in_milliseconds_is_one_line(
    argv: list[str], no_broker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """int(1e308 * 1000) is int(inf): an OverflowError traceback out of the admin client."""
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    one_line_error(capsys, "at most")


def test_a_reasonable_long_timeout_is_still_taken() -> None:
    assert common.positive_float("86400") == 86400.0  # a day


class _Topics:
    def list_topics(self) -> list[str]:
        return ["launches", "licenses", "attempt-deletions", "learner-groups"]

    def close(self) -> None:
        pass


@pytest.mark.parametrize("field", ["tenant_id", "learner_id"])
def test_produce_of_an_id_that_is_a_lone_surrogate_is_no_traceback(
    field: str,
    tmp_path: Path,
    no_broker: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`"\\ud800"` is valid JSON but no UTF-8 text: encoding it as the record's key raised a
    UnicodeEncodeError out of `produce`. As with --topic, the line goes as it is, keyless, and
    the worker dead-letters it (nothing is dropped without a trace)."""
    record = {"event_id": "e", "tenant_id": "t", "learner_id": "l", field: "\ud800"}
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(record) + "\n")  # json.dumps writes "\ud800" escaped: ASCII
    sent: list[tuple[str, Any, bytes]] = []

    def produce(settings: Settings, records: Any, progress: Any) -> int:
        sent.extend(records)
        return len(sent)

    monkeypatch.setattr(data, "require_broker", lambda settings, timeout_s: None)
    monkeypatch.setattr(common, "admin_client", lambda settings, timeout_s=15.0: _Topics())
    monkeypatch.setattr(kafka_io, "produce_records", produce)
    assert run(["produce", str(path)]) == 0, capsys.readouterr().err
    assert [(topic, key) for topic, key, _ in sent] == [("launches", None)]


def test_a_linger_no_float_can_hold_is_a_config_error() -> None:
    """INGEST_LINGER_MS / 1000 of a 400-digit number raised OverflowError when the worker
    imported its launch reader: a traceback after the topics were made."""
    with pytest.raises(ConfigError, match="INGEST_LINGER_MS must be at most"):
        Settings.from_env({"INGEST_LINGER_MS": "1" + "0" * 400})
    assert Settings.from_env({"INGEST_LINGER_MS": "5000"}).ingest_linger_ms == 5000


# Valid in an id (the contract forbids U+0000-U+001F and U+007F only), and a line boundary to
# str.splitlines: a file's "l-1<U+2028>x" was read as the two learners "l-1" and "x".
ODD_IDS = ["l-1\u2028x", "l-2\u2029y", "l-3\x85z"]


def test_a_learners_file_keeps_ids_with_unicode_line_separators(tmp_path: Path) -> None:
    path = tmp_path / "learners.txt"
    path.write_bytes(("\n".join(ODD_IDS) + "\r\nl-4\n").encode())
    assert deletions.read_learners(str(path)) == [*ODD_IDS, "l-4"]


# -- the HTTP side ----------------------------------------------------------------------------


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    return isolate(monkeypatch, tmp_path)


def post(path: bytes, content_type: bytes, body: bytes, *headers: bytes) -> bytes:
    """A POST written by hand, its body said to be gzip."""
    lines = b"".join(
        [
            b"Host: localhost\r\n",
            b"Content-Type: " + content_type + b"\r\n",
            b"Content-Encoding: gzip\r\n",
            *headers,
            b"Content-Length: %d\r\n" % len(body),
            b"Connection: close\r\n",
        ]
    )
    return b"POST " + path + b" HTTP/1.1\r\n" + lines + b"\r\n" + body


AUTHORIZATION = f"Authorization: Bearer {ADMIN_ALL}\r\n".encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        post(b"/api/tenants/acme/deletions", b"application/json", b"not gzip", AUTHORIZATION),
        post(b"/signin", b"application/x-www-form-urlencoded", b"not gzip"),
        post(b"/tenants/acme/preview", b"application/x-www-form-urlencoded", b"not gzip"),
    ],
    ids=["api", "sign-in", "dashboard-form"],
)
def test_a_body_whose_content_encoding_does_not_decode_is_a_400(
    server: Server, isolated: Views, request_bytes: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp raises RequestPayloadError when the handler reads such a body: it was a 500,
    with two tracebacks in the worker's log for one client's bad bytes."""
    status, answer = server.raw(request_bytes)
    assert status == 400, answer[:300]
    message = json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert "Content-Encoding" in message and "\n" not in message, message
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_body_in_gzip_is_still_read(
    server: Server, isolated: Views, submitted: list[Any]
) -> None:
    body = gzip.compress(json.dumps({"mode": "preview", "learner_ids": ["l-1"]}).encode())
    status, answer = server.raw(
        post(b"/api/tenants/acme/deletions", b"application/json", body, AUTHORIZATION)
    )
    assert status == 202, answer[:300]
    assert submitted[0]["learner_ids"] == ["l-1"]


def test_the_dashboards_form_keeps_ids_with_unicode_line_separators(
    server: Server, isolated: Views, submitted: list[dict[str, Any]]
) -> None:
    session = server.sign_in(ADMIN_ALL)
    typed = "\r\n".join([*ODD_IDS, "l-4"])  # a browser sends a textarea's lines with CRLF
    answer = server.post_form("/tenants/acme/preview", session, {"learner_ids": typed})
    assert answer.status == 200, answer.text[:300]
    assert sorted(submitted[0]["learner_ids"]) == sorted([*ODD_IDS, "l-4"])
    assert server.call("GET", "/api/tenants", headers=bearer(ADMIN_ALL)).status == 200


def test_report_shows_learners_whose_ids_hold_unicode_line_separators(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worker writes JSON lines with orjson, which leaves U+2028 and U+0085 unescaped: the
    table cut such a row in two and refused the whole answer as "not JSON lines"."""
    import orjson

    import streams.cli.reports as reports

    rows = [
        {
            "learner_id": learner,
            "first_attempt_at": "2026-10-02T10:00:00+00:00",
            "last_attempt_at": "2026-10-03T10:00:00+00:00",
            "attempts": 1,
            "teams": [],
            "roles": [],
        }
        for learner in ODD_IDS
    ]
    body = b"".join(orjson.dumps(row) + b"\n" for row in rows)
    assert "\u2028".encode() in body  # as a worker sends it
    monkeypatch.setattr(reports, "fetch", lambda base, path, timeout_s=300.0: body)
    argv = ["report", "--tenant", "acme", "--window", "2026-10-01", "--api", "http://127.0.0.1:1"]
    assert run(argv) == 0, capsys.readouterr().err
    assert "counted in window 2026-10-01: 3" in capsys.readouterr().out
