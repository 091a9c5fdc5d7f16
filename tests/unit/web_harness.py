"""The worker's real HTTP app (streams/http/web.py: the guard, the JSON API, the dashboard)
served in-process by aiohttp's test server: no broker, no worker process, no environment changed.

- `Server` serves the app on an event loop of its own (a test module holds one in a fixture of
  module scope) and makes requests to it: `call` through aiohttp's client, `raw` as bytes
  written by hand (header bytes that are not UTF-8, a malformed body).
- `isolate` (from a test's fixture, with its monkeypatch) gives the views what they would read
  from the environment and the output topics: their own tokens file, sessions, failure limiter,
  read model and settings. monkeypatch puts everything back after the test, so nothing leaks
  into the other tests of the session (which also import streams.worker.app in-process).
- No test reaches Kafka (a broker may be running on localhost:9092): the cluster key is never
  fetched (`Views.kafka_asked` records who tried) and a deletion's producer refuses to send; a
  test of deletions replaces `streams.http.api_views.submit` itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import ClientTimeout, DummyCookieJar
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDictProxy

import streams.http.web as web
from streams.http import api_views, outputs_reader, pages, report_views, reports, views
from streams.http.access import Sessions
from streams.http.read_model import ReadModel
from streams.http.tokens import TokenBook
from streams.worker.app import app
from streams.worker.failed_secrets import FailureLimiter
from tests.unit.test_api import LICENSE, count

T = TypeVar("T")

READ_ACME = "read-acme-secret-0123456789abcdef0123456789"  # read, tenants [acme]
ADMIN_ACME = "admin-acme-secret-0123456789abcdef012345678"  # admin, tenants [acme]
READ_ALL = "read-all-secret-0123456789abcdef0123456789ab"  # read, every tenant
ADMIN_ALL = "admin-all-secret-0123456789abcdef0123456789a"  # admin, every tenant
HOST = "localhost"  # the Host header of every request (settings allow it: `isolate`)
TIMEOUT_S = 10.0  # a request that takes longer fails its test (nothing here waits that long)


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


TOKENS: list[dict[str, Any]] = [
    {"name": "reader-acme", "sha256": sha(READ_ACME), "role": "read", "tenants": ["acme"]},
    {"name": "admin-acme", "sha256": sha(ADMIN_ACME), "role": "admin", "tenants": ["acme"]},
    {"name": "reader-all", "sha256": sha(READ_ALL), "role": "read", "tenants": ["*"]},
    {"name": "admin-all", "sha256": sha(ADMIN_ALL), "role": "admin", "tenants": ["*"]},
]


def read_model() -> ReadModel:
    """acme, licensed, and globex, counted without a license."""
    model = ReadModel()
    model.apply_license(b"acme", json.dumps(LICENSE).encode())
    model.caught_up.set()  # as a worker's once it has read the output topics
    model.apply_count(b"acme/2026-10-01", count("acme", "2026-10-01", "2027-01-01", 452, 842))
    model.apply_count(
        b"globex/2026-01-01", count("globex", "2026-01-01", "2027-01-01", 12, 30, months=12)
    )
    return model


def write_tokens(path: Path, tokens: list[dict[str, Any]]) -> None:
    """A tokens file written whole at once (renamed into place: a new inode, so the views'
    TokenBook sees the change at once, whatever the file system's clock resolution)."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({"tokens": tokens}))
    os.replace(partial, path)


@dataclass
class Views:
    """What `isolate` gave the views for one test."""

    tokens_path: Path
    tokens: TokenBook
    sessions: Sessions
    failures: FailureLimiter
    model: ReadModel
    kafka_asked: list[str] = field(default_factory=list)  # who wanted the cluster key


class NoKafka:
    """The producer of a deletion request in these tests: it never sends."""

    def emit(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a unit test tried to produce to Kafka")

    async def flush(self) -> None:
        raise AssertionError("a unit test tried to produce to Kafka")


def isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    """The views' module globals for one test (put back by monkeypatch afterwards)."""
    tokens_path = tmp_path / "tokens.json"
    write_tokens(tokens_path, TOKENS)
    isolated = Views(
        tokens_path=tokens_path,
        tokens=TokenBook.from_env({"API_TOKENS_FILE": str(tokens_path)}),
        sessions=Sessions(),
        failures=FailureLimiter(),
        model=read_model(),
    )
    # streams.http.pages and streams.http.web import these by name: patched there too
    for module in (views, pages, web):
        monkeypatch.setattr(module, "tokens", isolated.tokens)
    for module in (views, pages):
        monkeypatch.setattr(module, "sessions", isolated.sessions)
    monkeypatch.setattr(views, "failures", isolated.failures)
    for module in (outputs_reader, api_views, pages, report_views, web):
        monkeypatch.setattr(module, "model", isolated.model)

    # Settings as a deployment with tokens has them, whatever this process's environment says:
    # `Host: localhost` is answered, no proxy is trusted, the guard rail at 50 %.
    settings = dataclasses.replace(
        views.settings,
        web_allowed_hosts=(HOST,),
        web_advertised_host=HOST,
        web_trusted_proxies=(),
        deletion_max_share=50,
    )
    for module in (views, api_views, pages):
        monkeypatch.setattr(module, "settings", settings)
    monkeypatch.setattr(web, "METRICS_TOKEN", "")

    def no_cluster_key(settings: Any) -> bytes:
        isolated.kafka_asked.append("the cluster key")
        raise TimeoutError("no Kafka in the unit tests")  # what kafka-python raises

    monkeypatch.setattr(reports, "_key", None)
    monkeypatch.setattr(reports, "obtain_cluster_key", no_cluster_key)
    monkeypatch.setattr(api_views, "new_input_batch", NoKafka)
    return isolated


@dataclass(frozen=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)

    def cookie(self, name: str) -> str:
        """The value of a cookie this answer sets."""
        for header in self.headers.getall("Set-Cookie", []):
            pair = header.split(";", 1)[0]
            key, _, value = pair.partition("=")
            if key.strip() == name:
                return value.strip()
        raise AssertionError(f"no {name} cookie in {self.status} {self.headers!r}")

    def csrf(self) -> str:
        """The CSRF token of the forms of this page."""
        found = re.search(r'name="csrf" value="([^"]+)"', self.text)
        assert found is not None, f"no form with a CSRF token in {self.status} {self.text[:300]}"
        return found.group(1)


class Server:
    """The app served on a loop of its own; `close` at the end (the client and the loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.client = self.run(self._start())

    @staticmethod
    async def _start() -> TestClient:
        # no cookie jar: each request carries exactly the cookies its test gives it
        web_app = app.web.web_app  # type: ignore[attr-defined]
        client = TestClient(TestServer(web_app), cookie_jar=DummyCookieJar())
        await client.start_server()
        return client

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        try:
            self.run(self.client.close())
            self.run(self.loop.shutdown_asyncgens())
            self.run(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    @property
    def address(self) -> tuple[str, int]:
        server = self.client.server
        assert server.port is not None
        return str(server.host), server.port

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Answer:
        """A request through aiohttp's client (`Host: localhost`), no redirect followed."""

        async def request() -> Answer:
            response = await self.client.request(
                method,
                path,
                headers={"Host": HOST, **(headers or {})},
                allow_redirects=False,
                timeout=ClientTimeout(total=TIMEOUT_S),
                **kwargs,
            )
            async with response:
                return Answer(response.status, response.headers, await response.read())

        return self.run(request())

    def raw(self, request: bytes) -> tuple[int, bytes]:
        """A request written by hand (it should say `Connection: close`): the answer's status
        and every byte of the answer."""
        answer = self.run(self.exchange(request))
        return int(answer.split(b" ", 2)[1]), answer

    async def exchange(self, request: bytes) -> bytes:
        """Writes `request` on a connection of its own and reads the answer up to the close."""
        reader, writer = await asyncio.open_connection(*self.address)
        try:
            writer.write(request)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), TIMEOUT_S)
        finally:
            writer.close()
            await writer.wait_closed()

    # -- the dashboard ----------------------------------------------------------------------------
    def post_sign_in(self, secret: str, with_csrf: bool = True) -> Answer:
        """The sign-in form, as a browser that just loaded it posts it (its CSRF token left out
        with `with_csrf=False`)."""
        page = self.call("GET", "/signin")
        form = {"csrf": page.csrf(), "token": secret} if with_csrf else {"token": secret}
        return self.call(
            "POST", "/signin", headers={"Cookie": f"al_form={page.cookie('al_form')}"}, data=form
        )

    def sign_in(self, secret: str) -> str:
        """Signs in through the sign-in form: the session cookie's value."""
        answer = self.post_sign_in(secret)
        assert answer.status == 303, f"{answer.status} {answer.text[:300]}"
        return answer.cookie("al_session")

    def page(self, path: str, session: str) -> Answer:
        return self.call("GET", path, headers={"Cookie": f"al_session={session}"})

    def post_form(self, path: str, session: str, form: dict[str, str]) -> Answer:
        """A form of a signed-in browser, with its session's CSRF token."""
        csrf = self.page("/", session).csrf()
        return self.call(
            "POST", path, headers={"Cookie": f"al_session={session}"}, data={"csrf": csrf, **form}
        )


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}
