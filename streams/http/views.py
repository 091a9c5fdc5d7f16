"""What every HTTP view shares: who is calling, the guard every request passes, the answers.

`guard` is an aiohttp middleware (it sees every request, also one for a path nobody serves):
an unknown `Host` is a 400, an address that failed too often a 429, a non-JSON POST to the API
a 415, aiohttp's own refusals (404, 405, 413) the one-line JSON error of the API on every path,
an unexpected exception a 500 that names no internals; every answer gets the security headers.
The views then ask `caller()` who is calling (streams/http/access.py says what each caller may
do) and raise `ApiError` for any refusal; `dispatch` turns it into the answer.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable
from html import escape
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web as aiohttp_web
from faust.web import Request, Response, View

from streams.http import dashboard
from streams.http.access import (
    EVERY_ANSWER,
    HTML_ANSWER,
    OPEN,
    Caller,
    Session,
    Sessions,
    host_allowed,
    is_json,
)
from streams.http.api import ApiError
from streams.http.tokens import Token, TokenBook
from streams.worker.app import settings
from streams.worker.failed_secrets import (
    TOO_MANY,
    FailureLimiter,
    bearer,
    client_address,
    same_secret,
)

log = logging.getLogger("active_learners.http")

tokens = TokenBook.from_env()
sessions = Sessions()
failures = FailureLimiter()
SESSION_COOKIE = "al_session"
FORM_COOKIE = "al_form"  # the CSRF token of a browser without a session (sign-in, open mode)
UNGUARDED = ("/health", "/ready")  # probes: never rate limited
FORM_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # what secrets.token_urlsafe(32) gives


# aiohttp's pattern for a `{name}` path segment is `[^{}/]+`; an id may hold `{` and `}`
ANY_ID = "[^/]+"


def id_path(path: str) -> str:
    """A route's path whose `{tenant_id}` and `{request_id}` take any id (`/` aside, which no
    tenant id holds and a request id's URL escapes): with aiohttp's pattern, every call and page
    of a tenant `acme{eu}` answered 404 "not found", though the tenants page listed it."""
    for name in ("tenant_id", "request_id"):
        path = path.replace("{" + name + "}", "{" + name + ":" + ANY_ID + "}")
    return path


def address(request: Request) -> str:
    peer = request.remote  # type: ignore[attr-defined]
    # every line of the header, in order (RFC 9110: lines of one field join with commas): a proxy
    # that adds its own line leaves the client's first, and the client must not pick its address
    lines = request.headers.getall("X-Forwarded-For", [])  # type: ignore[attr-defined]
    return client_address(peer, ",".join(lines) or None, settings.web_trusted_proxies)


def over_tls(request: Request) -> bool:
    """Whether the browser reached us over TLS, directly or through a TLS-terminating proxy.

    `X-Forwarded-Proto` is believed from any peer, not only the trusted proxies: it only decides
    whether our cookies are `Secure` and `__Host-` named, so a client that claims https falsely
    only gets cookies its own browser will not send back over plain HTTP. Believing it from
    anyone keeps cookies Secure behind a proxy that nobody listed in WEB_TRUSTED_PROXIES."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
    return bool(request.secure) or forwarded == "https"  # type: ignore[attr-defined]


def cookie_name(name: str, request: Request) -> str:
    """The name of a cookie of ours for this request: `__Host-` + name over TLS. A browser keeps
    a `__Host-` cookie only when it is Secure, for path / and set by this very host, so a sibling
    subdomain (same-site for SameSite) cannot plant a session or a CSRF token here. Plain HTTP
    (a laptop) keeps the bare name, which a browser would refuse with that prefix."""
    return f"__Host-{name}" if over_tls(request) else name


def our_cookie(request: Request, name: str) -> str | None:
    """The value of our cookie `name` (as `cookie_name` gives it), read from the raw headers.

    aiohttp's parser strips Unicode whitespace around names, so a cookie a sibling subdomain
    sets as "\u2000__Host-al_session" (a browser sees no prefix in it, so it takes a Domain)
    would read as ours; and of two with one name it keeps the last. Names are matched exactly
    here (only spaces and tabs around them are dropped, as RFC 6265 says), and a near match or
    a second one means no cookie at all."""
    found: list[str] = []
    for header in request.headers.getall("Cookie", []):  # type: ignore[attr-defined]
        for pair in header.split(";"):
            raw_name, _, value = pair.partition("=")
            if raw_name.strip(" \t") == name:
                found.append(value.strip(" \t"))
            elif raw_name.strip() == name:
                return None  # a name dressed up as ours
    return found[0] if len(found) == 1 else None


def presents_no_secret(request: Request) -> bool:
    """No bearer token and no sign-in form: nothing in this request is a guess at a secret."""
    return "Authorization" not in request.headers and request.path != "/signin"  # type: ignore[attr-defined]


def signed_in(request: Request) -> Session | None:
    """The dashboard session this request's cookie names, while its token is still valid.

    With no secret in the request (`presents_no_secret`), a session also lets a browser through
    an address that failed too often: its id was issued by this worker (32 random bytes, nothing
    to guess), and admins behind one NAT address must not be locked out by somebody else's
    failures there. Bearer tokens and sign-ins from that address stay blocked."""
    session = sessions.get(our_cookie(request, cookie_name(SESSION_COOKIE, request)))
    if session is not None and tokens.named(session.token_name, session.token_sha256) is None:
        sessions.close(session.id)  # its token was removed or rotated: signed out
        return None
    return session


def find_token(request: Request, secret: str | None) -> Token | None:
    """`tokens.find`, once more after the rate limit: the guard decided when the headers
    arrived, and a client can send the headers of many sign-ins before any of their bodies, so
    the address is checked again right before a secret is compared (429 while it is blocked)."""
    wait = failures.blocked_for(address(request))
    if wait > 0:
        raise ApiError(429, TOO_MANY, {"Retry-After": str(int(wait) + 1)})
    return tokens.find(secret)


def refused_secret(request: Request, what: str) -> None:
    """A wrong secret: counted against the address, logged with it, never with the secret."""
    failures.failed(address(request))
    path = request.path  # type: ignore[attr-defined]
    log.warning("refused %s from %s (%s %s)", what, address(request), request.method, path)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    return aiohttp_web.json_response({"error": message}, status=status, headers=headers)


@aiohttp_web.middleware
async def guard(request: Any, handler: Any) -> Any:
    if not host_allowed(request.headers.get("Host"), settings.allowed_hosts):
        return _with_headers(_error(400, "unknown host: set WEB_ALLOWED_HOSTS to answer for it"))
    wait = 0.0 if request.path in UNGUARDED else failures.blocked_for(address(request))
    if wait > 0 and not (signed_in(request) is not None and presents_no_secret(request)):
        return _with_headers(_error(429, TOO_MANY, {"Retry-After": str(int(wait) + 1)}))
    if (
        request.method == "POST"
        and request.path.startswith("/api/")
        and not is_json(request.headers.get("Content-Type"))
    ):
        return _with_headers(_error(415, "send the body as Content-Type: application/json"))
    try:
        response = await handler(request)
    except StreamBroken:
        raise
    except aiohttp_web.HTTPException as exc:  # aiohttp's own answers (404, 405, 413, ...)
        # one error shape on every path, not aiohttp's plain text ("405: Method Not Allowed")
        if exc.status >= 400:
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _with_headers(_error(exc.status, exc.reason.lower(), allow))
        _with_headers(exc)
        raise
    except aiohttp_web.RequestPayloadError:
        # A body that does not decode as its Content-Encoding says (`gzip` over plain bytes):
        # aiohttp raises this from the view's read of the body. The client's fault, not a 500.
        response = _error(400, "the body could not be read: it is not in its Content-Encoding")
        # The rest of it cannot be read either: the connection ends with this answer, and
        # aiohttp does not drain the body afterwards (it would log the error as unhandled).
        response.force_close()
        request.content.feed_eof()
    except Exception:
        log.exception("HTTP %s %s failed", request.method, request.path)
        response = _error(500, "internal error; the worker's log has the details")
    return _with_headers(response)


def _with_headers(response: Any) -> Any:
    html = (response.content_type or "").startswith("text/html")
    for name, value in (HTML_ANSWER if html else EVERY_ANSWER).items():
        response.headers[name] = value if name == "Server" else response.headers.get(name, value)
    return response


class StreamBroken(Exception):
    """A streamed answer failed after its status line went out: no error answer can follow,
    so the connection is closed (the client sees an incomplete body, never a complete-looking
    one). The guard lets it through untouched."""


def break_stream(request: Any, exc: BaseException) -> StreamBroken:
    if isinstance(exc, ConnectionResetError | StreamBroken):
        log.info("HTTP %s %s: the client went away", request.method, request.path)
    else:
        log.error("HTTP %s %s broke off: %r", request.method, request.path, exc)
    if request.transport is not None:
        request.transport.close()
    return StreamBroken()


class ApiView(View):
    """JSON in and out; an ApiError raised by a handler is its `{"error": ...}` answer."""

    async def dispatch(self, request: Any) -> Any:
        try:
            return await super().dispatch(request)
        except ApiError as exc:
            return self.json(exc.answer(), status=exc.status, headers=exc.headers)

    def caller(self, request: Request) -> Caller:
        """Who calls: the bearer token's holder (401 without a valid one), or OPEN."""
        if not tokens.configured:
            return OPEN
        secret = bearer(request.headers.get("Authorization"))
        token = find_token(request, secret)
        if token is None:
            if secret is not None:
                refused_secret(request, "a bearer token")
            raise ApiError(
                401,
                "a valid bearer token is needed (Authorization: Bearer <secret>)",
                {"WWW-Authenticate": "Bearer"},
            )
        return Caller.of(token)

    async def body(self, request: Request) -> Any:
        """The JSON body; 400 for one that is not JSON (also one nested too deep to parse)."""
        try:
            return json.loads(await request.read() or b"null")
        except (ValueError, RecursionError):
            raise ApiError(400, "the body is not JSON (or is nested too deeply)") from None


class SignInFirst(Exception):
    """A dashboard page asked for without a session: to the sign-in form."""


class Page(View):
    """A dashboard page: a session (or a bearer header), else to the sign-in form; every form
    it posts carries the CSRF token of its session (or of its browser, without one)."""

    def get_methods(self) -> set[str]:
        """The methods its route takes. faust adds HEAD to every view, also to one without a
        GET (`/signout`), whose HEAD then answered 405 with no `Allow` while a GET's 405 said
        HEAD was allowed: a HEAD is a GET without its body, so only a view with a GET has one."""
        methods = set(super().get_methods())
        return methods if "GET" in methods else methods - {"HEAD"}

    async def dispatch(self, request: Any) -> Any:
        try:
            return await super().dispatch(request)
        except SignInFirst:
            return self.to("/signin")
        except ApiError as exc:
            return await self.refused(request, exc)

    async def refused(self, request: Request, exc: ApiError) -> Response:
        body = f'<h1>{exc.status}</h1><div class="error">{escape(exc.message)}</div>'
        # the error's headers too: a 429's Retry-After
        return self.html(dashboard.page("Refused", body), status=exc.status, headers=exc.headers)

    def to(self, location: str) -> Response:
        return self.html("", status=303, headers={"Location": location})

    def session(self, request: Request) -> Session | None:
        return signed_in(request)

    def caller(self, request: Request) -> Caller:
        if not tokens.configured:
            return OPEN
        session = self.session(request)
        if session is not None:
            token = tokens.named(session.token_name, session.token_sha256)
            if token is not None:
                return Caller.of(token)
        secret = bearer(request.headers.get("Authorization"))
        if secret is not None:
            token = find_token(request, secret)
            if token is not None:
                return Caller.of(token)
            refused_secret(request, "a bearer token")
        raise SignInFirst()

    def csrf(self, request: Request) -> tuple[str, bool]:
        """The CSRF token this browser's forms carry, and whether it is new (then `answer`
        sets it as a cookie: a browser without a session checks forms against that cookie)."""
        session = self.session(request)
        if session is not None:
            return session.csrf, False
        known = our_cookie(request, cookie_name(FORM_COOKIE, request))
        if known and FORM_TOKEN.fullmatch(known):
            return known, False
        # none, or not one we could have set (it would be echoed into every form)
        return secrets.token_urlsafe(32), True

    def answer(self, request: Request, render: Callable[[str], str], status: int = 200) -> Response:
        """An HTML page whose forms carry this browser's CSRF token."""
        csrf, new = self.csrf(request)
        response = self.html(render(csrf), status=status)
        if new:
            response.set_cookie(  # type: ignore[attr-defined]
                cookie_name(FORM_COOKIE, request),
                csrf,
                httponly=True,
                samesite="Strict",
                secure=over_tls(request),
                path="/",
            )
        return response

    async def form(self, request: Request) -> dict[str, str]:
        """A posted form, once its origin and CSRF token are checked (403 otherwise)."""
        origin = request.headers.get("Origin")
        if origin is not None and _netloc(origin) != request.headers.get("Host"):
            raise ApiError(403, "a form posted from another site is refused")
        if request.content_type != "application/x-www-form-urlencoded":  # type: ignore[attr-defined]
            # the dashboard's forms are urlencoded; multipart parsing has failure modes of its
            # own (an unknown transfer encoding or _charset_ raises RuntimeError in aiohttp)
            raise ApiError(415, "send the form as application/x-www-form-urlencoded")
        try:
            posted = await request.post()
        except (ValueError, LookupError, UnicodeError):  # not UTF-8, an unknown charset
            raise ApiError(400, "the form could not be read") from None
        form = {k: v for k, v in posted.items() if isinstance(v, str)}
        expected, new = self.csrf(request)
        if new or not same_secret(expected, form.get("csrf")):
            raise ApiError(403, "this form has no valid CSRF token: reload the page")
        return form


def _netloc(origin: str) -> str | None:
    """The host[:port] of an Origin header; None for one that is not a URL."""
    try:
        return urlsplit(origin).netloc
    except ValueError:  # "http://[::1" and the like
        return None
