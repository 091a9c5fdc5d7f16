"""Who may call what, and the guards every request passes (pure: no I/O, the clock given).

- `Caller`: the identity a request acts as: a token (streams/http/tokens.py), or, in open mode
  (no token configured), `OPEN`: reads and previews only, never a deletion.
- `FailureLimiter`: an address with 10 failed sign-ins or bearer tokens within a minute gets 429
  for the next minute, so a secret cannot be guessed at line speed (a browser signed in from
  there goes on while its requests carry no secret: streams/http/views.py, `signed_in`).
- `Sessions`: the dashboard's server-side sessions. Signing in exchanges the secret for a random
  session id (the cookie) and a CSRF token (in every form); the secret itself is never stored
  in the browser. Sessions end after 8 hours, at sign-out, when their token is removed or
  rotated, and when the worker restarts (sign in again: they are held in memory).
- `host_allowed`, `is_json`, the security headers of every answer.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import re
import secrets
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from streams.http.tokens import ALL_TENANTS, Token

FAILURES_ALLOWED = 10
FAILURE_WINDOW_S = 60.0
SESSION_LIFETIME_S = 8 * 3600.0
MAX_TRACKED = 10_000  # addresses or sessions remembered at most (the oldest go first)
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


class FailureLimiter:
    def __init__(
        self,
        allowed: int = FAILURES_ALLOWED,
        window_s: float = FAILURE_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = allowed
        self.window_s = window_s
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._blocked_until: OrderedDict[str, float] = OrderedDict()

    def blocked_for(self, address: str) -> float:
        """Seconds this address must still wait (0: it may try)."""
        address = limited_as(address)
        until = self._blocked_until.get(address)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked_until[address]
            return 0.0
        return left

    def failed(self, address: str) -> None:
        address = limited_as(address)
        now = self.clock()
        recent = self._failures.pop(address, None) or deque()
        recent.append(now)
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        if len(recent) >= self.allowed:
            self._blocked_until[address] = now + self.window_s
            _bound(self._blocked_until)
            return
        self._failures[address] = recent  # re-inserted: the most recent address is last
        _bound(self._failures)


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: an IPv4 client behind a translator
UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")  # RFC 4193: private, but a host's /64 all the same


def limited_as(address: str) -> str:
    """What failures are counted against: a global or unique-local (fc00::/7) IPv6 client's /64
    network (a host is given a whole /64 and picks addresses in it at will: limited per
    address, it could try without end); an IPv6 address that carries an IPv4 client's
    (IPv4-mapped, NAT64, Teredo, 6to4) as that IPv4 address, since the clients behind one
    translator or 6to4 site share it, unless no client can have it (`_never_a_client`: then
    as itself); any other address (link-local, loopback) as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if not isinstance(ip, ipaddress.IPv6Address):
        return address
    if ip.ipv4_mapped is not None:  # how a dual-stack socket shows an IPv4 peer
        return str(ip.ipv4_mapped)
    carried = None
    if ip in NAT64:
        carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    elif ip.teredo is not None:
        carried = ip.teredo[1]  # (server, client)
    elif ip.sixtofour is not None:
        carried = ip.sixtofour  # 2002:V4ADDR::/48: the site's public IPv4 address
    if carried is not None:  # as itself, never as its /64: that holds every other client's
        return str(ip) if _never_a_client(carried) else str(carried)
    if ip.is_global or ip in UNIQUE_LOCAL:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _never_a_client(ip: ipaddress.IPv4Address) -> bool:
    """An IPv4 address no translated client can have: carried in an IPv6 address, it is the
    sender's choice, and counted as itself it would block this host's own (loopback) clients."""
    return ip.is_loopback or ip.is_unspecified or ip.is_link_local or ip.is_multicast


def _bound(remembered: OrderedDict) -> None:  # type: ignore[type-arg]
    while len(remembered) > MAX_TRACKED:
        remembered.popitem(last=False)


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


def same_secret(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    # a header or form value that was not UTF-8 arrives with surrogates: not equal, no error
    encoded = presented.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode(), encoded)


@functools.lru_cache(maxsize=8)
def _networks(
    proxies: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The trusted proxies as networks, parsed once (the settings give the same tuple each time)."""
    return tuple(ipaddress.ip_network(proxy, strict=False) for proxy in proxies)


def client_address(peer: str | None, forwarded_for: str | None, proxies: Iterable[str]) -> str:
    """The address failures are counted against: the peer, or, when the peer is a trusted
    reverse proxy, the last address of `X-Forwarded-For` it did not add itself (a client can
    put anything before it, nothing after). Proxies are addresses or networks (10.0.0.0/8)."""
    networks = _networks(tuple(proxies))

    def trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        # an IPv4 peer of a server listening on "::" shows as ::ffff:10.0.0.5: still the proxy
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in networks)

    address = peer or "unknown"
    if not trusted(address) or not forwarded_for:
        return address
    for hop in reversed([_without_port(part.strip()) for part in forwarded_for.split(",")]):
        if hop and not trusted(hop):
            return hop
    return address


def _without_port(hop: str) -> str:
    """A hop of `X-Forwarded-For` without the source port some proxies add (`203.0.113.9:5555`,
    `[2001:db8::1]:5555`, Azure's Application Gateway): the port changes with every connection,
    so with it each connection would be an address of its own, never limited."""
    if hop.startswith("["):
        inner, _, rest = hop[1:].partition("]")
        return inner if rest == "" or (rest[:1] == ":" and rest[1:].isdigit()) else hop
    if hop.count(":") == 1:
        host, _, port = hop.partition(":")
        return host if port.isdigit() else hop
    return hop


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
