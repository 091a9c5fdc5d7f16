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
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

_aiohttp_handle_error = web_protocol.RequestHandler.handle_error
MAX_REASON = 200  # characters of aiohttp's message kept


# where aiohttp's message starts quoting the client's bytes (`: b'…'`, `'…'`)
_QUOTE = re.compile(r"""[:\s]*(?:(?<!\w)b)?['"]""")


def one_line(text: str) -> str:
    """aiohttp's message on one line, shortened, without what it quotes of the request: the
    caret line means nothing without the line above it, and that line is the client's bytes,
    which may hold a secret (`Authorization: Bearer …` with a stray control character after
    it was logged and echoed whole: helper-82). Only aiohttp's own words are kept."""
    words = " ".join(part for part in text.split() if part != "^")
    quote = _QUOTE.search(words)
    if quote is not None:
        words = words[: quote.start()]
    words = words or "unreadable request"
    return words if len(words) <= MAX_REASON else words[: MAX_REASON - 1] + "…"


def _handle_error(
    self: web_protocol.RequestHandler,
    request: web.BaseRequest,
    status: int = 500,
    exc: BaseException | None = None,
    message: str | None = None,
) -> web.StreamResponse:
    if not 400 <= status < 500 or not isinstance(exc, HttpProcessingError):
        return _aiohttp_handle_error(self, request, status, exc, message)
    reason = one_line(message or exc.message or "")
    log.info("malformed HTTP request from %s: %s", request.remote, reason)
    if request.writer.output_size > 0:  # as aiohttp: an answer is under way, the line is lost
        raise ConnectionError("a response is being sent: no room for the error")
    answer = web.json_response({"error": f"malformed HTTP request: {reason}"}, status=status)
    answer.force_close()  # the rest of what the client sent cannot be trusted to frame
    return answer


def install() -> None:
    """Answer malformed requests of every aiohttp server of this process as above."""
    handler: Any = web_protocol.RequestHandler
    handler.handle_error = _handle_error
