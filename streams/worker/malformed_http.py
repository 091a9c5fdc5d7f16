"""Requests aiohttp cannot parse get a one-line JSON 400 and one log line, not a traceback.

aiohttp answers bytes that are not HTTP (a header line without a colon, a control character in
the path, TLS sent to the plain port, data after `Connection: close`) before any view or
middleware runs: a plain-text body of several lines with a caret under the bad byte, and an
ERROR with a traceback in the worker's log for every such request, so a port scanner filled the
log with tracebacks. No hook of aiohttp's server reaches that answer (faust builds the
`AppRunner` itself), so `install` wraps `RequestHandler.handle_error` for the client errors
only; a 5xx keeps aiohttp's own answer and log. The worker's web server and the notifier's probe
install it (it lives here, below both). tests/unit/test_malformed_requests.py pins it, so an
aiohttp that changes the method fails there first.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from aiohttp import web, web_protocol
from aiohttp.http_exceptions import (
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
)

log = logging.getLogger(__name__)

_aiohttp_handle_error = web_protocol.RequestHandler.handle_error
MAX_REASON = 200  # characters of aiohttp's message kept


# aiohttp's messages quote what the client sent: llhttp's errors as a line of its own under the
# description (`b'…'`, a caret under it), aiohttp's own after a colon (`: b'…'`,
# `: bytearray(b'…')`), a request line in quotes, a request target bare. It may hold a secret
# (`Authorization: Bearer …` with a stray control character after it, `?token=…`), so none of it
# is kept: helper-82 and helper-83 found it in the log and the 400.
_DATA_LINE = re.compile(r"""\s*(?:b['"]|bytearray\()""")
_INLINE_DATA = re.compile(r"""[:\s]*(?<!\w)(?:b['"]|bytearray\().*""", re.DOTALL)


def one_line(text: str) -> str:
    """aiohttp's words on one line, shortened: the lines before the first that quotes the
    request (the caret line under it means nothing without it), and of those, what comes before
    any bytes quoted inline."""
    kept = []
    for line in text.splitlines():
        if _DATA_LINE.match(line):
            break
        kept.append(line)
    words = _INLINE_DATA.sub("", " ".join(" ".join(kept).split())).rstrip(": ")
    words = words or "unreadable request"
    return words if len(words) <= MAX_REASON else words[: MAX_REASON - 1] + "…"


def reason(exc: HttpProcessingError, message: str | None = None) -> str:
    """What to say of a request aiohttp refused: its words without the request's bytes. Three
    of its one-line messages carry the request bare or in plain quotes; they are cut by kind
    (a message of llhttp spans lines, and its first line is llhttp's own)."""
    text = message or exc.message or ""
    if "\n" not in text:
        if isinstance(exc, InvalidURLError):
            return "invalid request target"  # the message is the target itself
        if isinstance(exc, InvalidHeader):
            return text.partition(": ")[0] or "invalid HTTP header"
        if isinstance(exc, BadStatusLine):  # `Bad status line 'GET /…'`
            return one_line(text.partition(" '")[0])
    return one_line(text)


def _handle_error(
    self: web_protocol.RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    if not 400 <= status < 500 or not isinstance(exc, HttpProcessingError):
        return _aiohttp_handle_error(self, request, status, exc, message)
    said = reason(exc, message)
    log.info("malformed HTTP request from %s: %s", request.remote, said)
    if request.writer.output_size > 0:  # as aiohttp: an answer is under way, the line is lost
        raise ConnectionError("a response is being sent: no room for the error")
    answer = web.json_response({"error": f"malformed HTTP request: {said}"}, status=status)
    answer.force_close()  # the rest of what the client sent cannot be trusted to frame
    return answer


def install() -> None:
    """Answer malformed requests of every aiohttp server of this process as above."""
    handler: Any = web_protocol.RequestHandler
    handler.handle_error = _handle_error
