"""The notifier's own /metrics and /health (streams/notifier/probe.py): its counters are in its
process, which the workers' /metrics cannot show. Served on a real local port, no broker."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine
from typing import Any

import aiohttp
import pytest

import streams.notifier.service  # noqa: F401  (registers the notifier's counters)
from streams.notifier.probe import start_probe

TOKEN = "m" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def get(port: int, path: str, token: str | None = None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as answer,
    ):
        return answer.status, answer.headers.get("Content-Type", ""), await answer.text()


def served(calls: Coroutine[Any, Any, Any], port: int) -> Any:
    async def run() -> Any:
        probe = await start_probe("127.0.0.1", port)
        assert probe is not None
        try:
            return await calls
        finally:
            await probe.cleanup()

    return asyncio.run(run())


def test_metrics_show_the_notifiers_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    port = free_port()
    status, kind, text = served(get(port, "/metrics"), port)
    assert status == 200 and kind.startswith("text/plain")
    for name in (
        "active_learners_notifications_total",
        "active_learners_deferred_mail_total",
        "active_learners_deferred_mail_pending",
        "active_learners_webhook_deliveries_total",
    ):
        assert name in text


def test_metrics_need_the_token_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_TOKEN", TOKEN)
    port = free_port()

    async def calls() -> list[tuple[int, str, str]]:
        return [
            await get(port, "/metrics"),
            await get(port, "/metrics", "x" * 40),
            await get(port, "/metrics", TOKEN),
            await get(port, "/health"),  # a probe: no token
        ]

    (none, wrong, right, health) = served(calls(), port)
    assert none[0] == wrong[0] == 401 and "METRICS_TOKEN" in none[2]
    assert right[0] == 200 and "active_learners_notifications_total" in right[2]
    assert health[0] == 200 and '"status": "ok"' in health[2]


def test_port_zero_serves_nothing() -> None:
    assert asyncio.run(start_probe("127.0.0.1", 0)) is None


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


def test_bytes_that_are_not_http_are_a_one_line_json_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    answer = served(raw(port, b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n"), port)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 400") and b"application/json" in head, answer[:300]
    assert b"malformed HTTP request" in body and b"\n" not in body.strip(), body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
