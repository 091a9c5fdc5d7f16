"""helper-87 (2026-12-05): a client's chunk-size line shaped like llhttp's message passed `_LLHTTP`
under the pure-Python parser, and its text reached the 400 and the log (failed when written)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.unit.web_harness import ADMIN_ALL, Server, Views, isolate


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    return isolate(monkeypatch, tmp_path)


def test_reason_keeps_no_client_text_shaped_like_an_llhttp_message() -> None:
    """Pure-Python parser: TransferEncodingError(<the chunk-size line, bare>). A line
    `SECRET:\\n\\n  b'x` (bare LFs; the line ends at CRLF) matches _LLHTTP, whose group 1
    (`SECRET`) is returned as llhttp's 'own fixed text'."""
    from aiohttp.http_exceptions import TransferEncodingError

    from streams.worker.malformed_http import reason

    said = reason(TransferEncodingError(f"token={ADMIN_ALL}:\n\n  b'x"))
    assert ADMIN_ALL not in said, said


def test_the_pure_python_parser_keeps_no_llhttp_shaped_chunk_line(
    server: Server, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiohttp import http_parser, web_protocol

    monkeypatch.setattr(web_protocol, "HttpRequestParser", http_parser.HttpRequestParserPy)
    caplog.set_level(logging.INFO)
    request = (
        b"POST /api/tenants/t1/deletions HTTP/1.1\r\nHost: localhost\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
        b"\r\ntoken=%s:\n\n  b'x\r\n"
    )
    status, answer = server.raw(request % ADMIN_ALL.encode())
    assert status == 400, answer[:300]
    error = json.loads(answer.rpartition(b"\r\n\r\n")[2])["error"]
    assert ADMIN_ALL not in error, error
    assert ADMIN_ALL not in caplog.text, caplog.text
