"""Secrets presented over HTTP, and the addresses that guess at them: the worker's web server
(streams/http) and the notifier's probe (streams/notifier/probe.py) share these, so a wrong
token is refused, counted and answered alike on both (it lives here, below both).

- `bearer`: the secret of an `Authorization: Bearer <secret>` header; `same_secret` compares
  it in constant time (a header that was not UTF-8 is a wrong secret, never an error).
- `client_address`: the address failures are counted against (the peer, or behind a trusted
  reverse proxy, the client it names).
- `FailureLimiter`: an address with 10 failed secrets within a minute gets 429 for the next
  minute, so a secret cannot be guessed at line speed. Pure: no I/O, the clock given.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

FAILURES_ALLOWED = 10
FAILURE_WINDOW_S = 60.0
MAX_TRACKED = 10_000  # addresses remembered at most (the oldest go first)
TOO_MANY = "too many failed attempts from this address; try again in a minute"


def bearer(header: str | None) -> str | None:
    """The secret of an `Authorization: Bearer <secret>` header."""
    if not header:
        return None
    scheme, _, secret = header.strip().partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


def same_secret(expected: str, presented: str | None) -> bool:
    if presented is None:
        return False
    # a header or form value that was not UTF-8 arrives with surrogates: not equal, no error
    encoded = presented.encode("utf-8", "surrogateescape")
    return hmac.compare_digest(expected.encode("utf-8", "surrogateescape"), encoded)


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
