"""Who may call what, and the guards every request passes (pure: no I/O, the clock given).

- `Caller`: the identity a request acts as: a token (streams/http/tokens.py), or, in open mode
  (no token configured), `OPEN`: reads and previews only, never a deletion.
- `FailureLimiter` (streams/worker/failed_secrets.py, shared with the notifier's probe): an
  address with 10 failed sign-ins or bearer tokens within a minute gets 429 for the next minute,
  so a secret cannot be guessed at line speed (a browser signed in from there goes on while its
  requests carry no secret: streams/http/views.py, `signed_in`).
- `Sessions`: the dashboard's server-side sessions. Signing in exchanges the secret for a random
  session id (the cookie) and a CSRF token (in every form); the secret itself is never stored
  in the browser. Sessions end after 8 hours, at sign-out, when their token is removed or
  rotated, and when the worker restarts (sign in again: they are held in memory).
- `host_allowed`, `is_json`, the security headers of every answer.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from streams.http.tokens import ALL_TENANTS, Token

SESSION_LIFETIME_S = 8 * 3600.0
MAX_TRACKED = 10_000  # sessions remembered at most (the oldest go first)
MAX_SESSIONS_PER_TOKEN = 100  # browsers signed in with one token at once

OPEN_MODE_DELETE = "configure an admin token to delete (the service runs in open mode)"


@dataclass(frozen=True)
class Caller:
    name: str  # what deletion requests record as requested_by
    admin: bool
    tenants: frozenset[str]

    @classmethod
    def of(cls, token: Token) -> Caller:
        return cls(token.name, token.admin, token.tenants)

    def sees(self, tenant_id: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant_id in self.tenants

    def visible(self, tenant_ids: Iterable[str]) -> list[str]:
        return [tenant for tenant in tenant_ids if self.sees(tenant)]


OPEN = Caller("open-mode", admin=False, tenants=frozenset({ALL_TENANTS}))


ADMIN_CALL = "this call needs an admin token"


def deletion_refusal(caller: Caller, mode: str | None) -> str | None:
    """Why this caller may not ask for this deletion, or None. With tokens, every deletion
    request (previews too) is an admin call; open mode serves previews, which change nothing,
    and refuses the rest. `mode` None: the body is not read yet (only a token's role counts)."""
    if caller.admin:
        return None
    if caller is not OPEN:
        return ADMIN_CALL
    return None if mode in (None, "preview") else OPEN_MODE_DELETE


@dataclass(frozen=True)
class Session:
    id: str
    token_name: str
    token_sha256: bytes
    csrf: str
    expires_at: float


class Sessions:
    def __init__(
        self, lifetime_s: float = SESSION_LIFETIME_S, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def open(self, token: Token) -> Session:
        session = Session(
            secrets.token_urlsafe(32),
            token.name,
            token.sha256,
            secrets.token_urlsafe(32),
            self.clock() + self.lifetime_s,
        )
        # Sessions are bounded per token and overall, and what makes way is always the oldest
        # session of the token holding the most: a holder who signs in over and over (a read
        # token among them) pushes out only its own sessions, never an admin's.
        self._sessions[session.id] = session
        mine = [s.id for s in self._sessions.values() if s.token_name == token.name]
        for old in mine[: max(0, len(mine) - MAX_SESSIONS_PER_TOKEN)]:
            del self._sessions[old]
        while len(self._sessions) > MAX_TRACKED:
            holders = Counter(s.token_name for s in self._sessions.values())
            busiest = holders.most_common(1)[0][0]
            oldest = next(s.id for s in self._sessions.values() if s.token_name == busiest)
            del self._sessions[oldest]
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if session.expires_at <= self.clock():
            del self._sessions[session.id]
            return None
        return session

    def close(self, session_id: str | None) -> None:
        self._sessions.pop(session_id or "", None)


def host_name(header: str | None) -> str:
    """The host of a `Host` header, without its port, lower case (`[::1]:6066` -> `::1`)."""
    host = (header or "").strip().lower()
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        return inner if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else ""
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name if port.isdigit() else ""
    return host


def host_allowed(header: str | None, allowed: Iterable[str]) -> bool:
    host = host_name(header)
    return bool(host) and host in allowed


def is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return media_type == "application/json"


# No script runs on the dashboard; its styles are inline; forms post only to itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
EVERY_ANSWER = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Server": "active-learners",  # not aiohttp's name and version
    # learner ids and counts: no shared or browser cache keeps them (a CSV download included)
    "Cache-Control": "no-store",
}
HTML_ANSWER = {
    **EVERY_ANSWER,
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
}


# -- workers' calls to each other ----------------------------------------------------------------
INTERNAL_HEADER = "X-Active-Learners-Internal"
INTERNAL_MAX_AGE_S = 300.0
MAX_STAMP_DIGITS = 12  # epoch seconds until the year 33658
_HEX_MAC = re.compile("[0-9a-f]{64}")


def internal_message(path: str, params: Mapping[str, str]) -> str:
    """What a worker's call signs: its path and parameters, decoded and in one order (a URL's
    quoting may change on the way; this does not)."""
    return path + "?" + urlencode(sorted(params.items()))


def sign_internal(key: bytes, path_and_query: str, now: float) -> str:
    """The header value of a worker's call to another: when, and an HMAC of when and what."""
    stamp = f"{now:.0f}"
    mac = hmac.new(key, f"{stamp}\n{path_and_query}".encode(), "sha256").hexdigest()
    return f"{stamp}:{mac}"


def internal_call_fresh(header: str | None, now: float) -> bool:
    """Whether a call's signature header is well formed and of the last five minutes: checked
    before the cluster key is fetched, so an unsigned call never makes a worker ask Kafka."""
    stamp, _, mac = (header or "").partition(":")
    # ASCII digits, at most as many as a time of ours has: `isdigit` takes `²`, which `int`
    # refuses, and 400 digits made `now - int(stamp)` overflow: an unsigned caller got a 500
    # and a traceback (helper-82)
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= MAX_STAMP_DIGITS):
        return False
    # and the MAC as `hexdigest` writes it: `compare_digest` raises for text that is not ASCII
    # (64 `é` got a 500: helper-83)
    return abs(now - int(stamp)) <= INTERNAL_MAX_AGE_S and _HEX_MAC.fullmatch(mac) is not None


def internal_call_valid(key: bytes, header: str | None, path_and_query: str, now: float) -> bool:
    """A signed call of another worker, made within the last five minutes (no older replay)."""
    if not internal_call_fresh(header, now):
        return False
    stamp, _, mac = (header or "").partition(":")
    expected = hmac.new(key, f"{stamp}\n{path_and_query}".encode(), "sha256").hexdigest()
    return hmac.compare_digest(expected, mac)
