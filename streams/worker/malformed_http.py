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
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

log = logging.getLogger(__name__)

_aiohttp_handle_error = web_protocol.RequestHandler.handle_error
MAX_REASON = 200  # characters of aiohttp's message kept


# aiohttp's messages quote what the client sent, in more ways than can be cut out reliably (a
# target bare or with a line break in it, a request line in either quotes, a chunk-size line
# bare, bytes after a colon): it may hold a secret (`Authorization: Bearer …` with a stray
# control character, `?token=…`), found in the log and the 400 by helper-82, helper-83 and
# helper-85. So only words known not to come from the request are kept: llhttp's description
# of its error (the C parser's message is that, a colon, and the bytes on lines of their own;
# llhttp's descriptions are its own fixed texts), aiohttp's own fixed sentences, and otherwise a
# fixed reason for the kind of error.
_LLHTTP = re.compile(r"(?:Bad status line:\s+)?([^\n]+):\n\n  (?:b['\"]|bytearray\()")
_LLHTTP_KINDS = frozenset((BadHttpMessage, BadHttpMethod, BadStatusLine, InvalidURLError))
_AIOHTTP_OWN = re.compile(
    r"Duplicate '[A-Za-z0-9-]+' header found\."
    r"|Missing 'Host' header in request\."
    r"|Too many headers received"
    r"|Data after `Connection: close`"
    r"|Bad line ending, expected CRLF"
    r"|Request has invalid `Transfer-Encoding`"
    r"|Transfer-Encoding can't be present with Content-Length"
    r"|Not enough data to satisfy transfer length header\."
    r"|Not enough data to satisfy content length header \(received \d+ of \d+ bytes\)\."
    r"|Received HTTPS traffic on an HTTP port"
    r"|Got more than \d+ bytes when reading"  # the rest is the line read
)
_BY_KIND: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (InvalidURLError, "invalid request target"),
    (InvalidHeader, "invalid HTTP header"),
    (BadHttpMethod, "invalid HTTP method"),
    (BadStatusLine, "invalid request line"),
    (LineTooLong, "a line of the request is too long"),
    (TransferEncodingError, "invalid chunked body"),
    (ContentLengthError, "a body shorter than its Content-Length"),
)


def one_line(text: str) -> str:
    """A reason on one line, at most MAX_REASON characters."""
    words = " ".join(text.split())
    return words if len(words) <= MAX_REASON else words[: MAX_REASON - 1] + "…"


def reason(exc: HttpProcessingError, message: str | None = None) -> str:
    """What to say of a request aiohttp refused: its own words, never the request's bytes."""
    text = message or exc.message or ""
    # only the kinds the C parser makes of llhttp's errors: a pure-Python parser's chunk-size
    # line (a TransferEncodingError) can take the same shape with the client's text (helper-87)
    llhttp = _LLHTTP.match(text) if type(exc) in _LLHTTP_KINDS else None
    if llhttp is not None:
        return one_line(llhttp.group(1))
    own = _AIOHTTP_OWN.match(text)
    if own is not None:
        return one_line(own.group(0))
    for kind, said in _BY_KIND:
        if isinstance(exc, kind):
            return said
    return "malformed request"


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
