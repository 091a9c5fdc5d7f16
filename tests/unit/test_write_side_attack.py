"""What an attack on the write side and on access control found (2026-12), in the pure functions
of streams/http (the rest, through the served app: tests/unit/test_web_guards.py).

- The failure limiter counted a client behind a trusted proxy by the first `X-Forwarded-For`
  header line only. A proxy that adds its own line (HAProxy's `option forwardfor`) leaves the
  client's line first: a client then chose the address its failures counted against, guessing
  without limit and blocking any other client's address at will.
- A peer reported as an IPv4-mapped IPv6 address (`::ffff:10.0.0.5`: a worker listening on `::`
  with IPv4 clients) was never a trusted proxy of `10.0.0.0/8`: every client behind the proxy
  shared the proxy's address, so one client's failed guesses locked out all of them.
- A hop written `address:port` (Azure's Application Gateway) was an address of its own for
  every connection (a new source port each time): no limit at all.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
from multidict import CIMultiDict, CIMultiDictProxy

import streams.http.views as views
from streams.worker.failed_secrets import client_address

PROXY = "10.0.0.5"
PROXIES = ("10.0.0.0/8",)


def request_from(peer: str, *forwarded_for: str) -> SimpleNamespace:
    """What `views.address` reads of a request: its peer and its headers."""
    headers = CIMultiDict([("X-Forwarded-For", value) for value in forwarded_for])
    return SimpleNamespace(remote=peer, headers=CIMultiDictProxy(headers))


@pytest.fixture
def behind_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    trusting = dataclasses.replace(views.settings, web_trusted_proxies=PROXIES)
    monkeypatch.setattr(views, "settings", trusting)


def test_a_client_cannot_choose_its_address_with_a_header_line_of_its_own(
    behind_proxy: None,
) -> None:
    # the client sent "X-Forwarded-For: 198.51.100.7"; the proxy added a line with the real one
    request = request_from(PROXY, "198.51.100.7", "203.0.113.9")
    assert views.address(request) == "203.0.113.9"  # type: ignore[arg-type]


def test_header_lines_read_as_one_list_in_order(behind_proxy: None) -> None:
    request = request_from(PROXY, "198.51.100.7, 203.0.113.9", "10.1.1.1")
    assert views.address(request) == "203.0.113.9"  # type: ignore[arg-type]


def test_without_trusted_proxies_forwarded_for_is_ignored() -> None:
    request = request_from("203.0.113.9", "198.51.100.7", "192.0.2.1")
    assert views.address(request) == "203.0.113.9"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "peer, forwarded_for, expected",
    [
        ("::ffff:10.0.0.5", "203.0.113.9", "203.0.113.9"),  # the proxy, IPv4-mapped
        ("10.0.0.5", "203.0.113.9, ::ffff:10.9.9.9", "203.0.113.9"),  # a proxy hop, mapped
        ("::ffff:203.0.113.9", "198.51.100.7", "::ffff:203.0.113.9"),  # not a proxy
    ],
)
def test_an_ipv4_mapped_proxy_address_is_the_proxy(
    peer: str, forwarded_for: str, expected: str
) -> None:
    assert client_address(peer, forwarded_for, PROXIES) == expected


@pytest.mark.parametrize(
    "forwarded_for, expected",
    [
        ("203.0.113.9:5555", "203.0.113.9"),
        ("[2001:db8::1]:5555", "2001:db8::1"),
        ("203.0.113.9:5555, 10.9.9.9:80", "203.0.113.9"),  # a proxy hop with its port too
        ("2001:db8::1", "2001:db8::1"),  # colons of an IPv6 address are no port
    ],
)
def test_a_forwarded_source_port_does_not_make_each_connection_a_new_address(
    forwarded_for: str, expected: str
) -> None:
    """Some proxies (Azure's Application Gateway) write `address:port`: the port changes with
    every connection, so each connection counted as an address of its own: no limit at all."""
    assert client_address(PROXY, forwarded_for, PROXIES) == expected
