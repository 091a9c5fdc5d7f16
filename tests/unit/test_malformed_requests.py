"""Bytes aiohttp cannot parse as HTTP: a one-line JSON 400, one INFO line, no traceback.

aiohttp answered them before any view ran, with a plain-text body of several lines (a caret
under the bad byte) and an ERROR with a traceback in the worker's log for each request, so a
port scanner filled the log (streams/worker/malformed_http.py).
"""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from streams.worker.malformed_http import MAX_REASON, one_line, reason
from tests.unit.web_harness import Server, Views, isolate


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Views:
    return isolate(monkeypatch, tmp_path)


HOST = b"Host: localhost\r\n"
CLOSE = b"Connection: close\r\n"


@pytest.mark.parametrize(
    ("request_bytes", "words"),
    [
        (b"GET / HTTP/1.1\r\n" + HOST + b"Bad Header\r\n" + CLOSE + b"\r\n", "header"),
        (b"GET /\x01 HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n", "url"),
        (b"\x16\x03\x01 / HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n", "HTTPS"),
        (
            b"POST /api/tenants HTTP/1.1\r\n" + HOST + b"Content-Length: abc\r\n" + CLOSE + b"\r\n",
            "Content-Length",
        ),
        (
            b"GET / HTTP/1.1\r\n" + HOST + CLOSE + b"\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n",
            "Connection: close",
        ),
    ],
    ids=["header-without-colon", "control-character-in-path", "tls", "length", "after-close"],
)
def test_a_request_aiohttp_cannot_parse_is_a_one_line_json_400(
    server: Server, request_bytes: bytes, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    status, answer = server.raw(request_bytes)
    assert status == 400, answer[:300]
    head, _, body = answer.rpartition(b"\r\n\r\n")
    assert b"application/json" in head, answer[:300]
    error = json.loads(body)["error"]
    assert error.startswith("malformed HTTP request: ") and words in error, error
    assert "\n" not in error and "^" not in error, error
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    lines = [r for r in caplog.records if r.name == "streams.worker.malformed_http"]
    assert len(lines) == 1 and lines[0].exc_info is None, caplog.text


def test_a_well_formed_request_still_reaches_the_app(server: Server) -> None:
    status, answer = server.raw(b"GET /health HTTP/1.1\r\n" + HOST + CLOSE + b"\r\n")
    assert status == 200, answer[:300]


def test_a_reason_is_kept_short_and_on_one_line() -> None:
    # llhttp's description, never the bytes it quotes under it; aiohttp's own sentences, never
    # the line they quote after a colon (it may hold a secret)
    assert reason(BadHttpMessage("Invalid header token:\n\n  b'Bad Header'\n       ^")) == (
        "Invalid header token"
    )
    assert reason(LineTooLong(b"GET /?token=x", 8190)) == "Got more than 8190 bytes when reading"
    assert reason(BadHttpMessage("b'\\x16\\x03'")) == "malformed request"
    long = one_line("x " * 1000)
    assert len(long) == MAX_REASON and long.endswith("…")
