"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def server() -> Iterator[Any]:
    """The worker's real HTTP app served in-process (tests/unit/web_harness.py), once for the
    whole session: aiohttp binds an app to the first event loop that serves it."""
    from tests.unit.web_harness import Server  # imports the worker's app: only when asked for

    served = Server()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def submitted(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The deletion requests the API sends to Kafka, kept here instead: none is sent, and each
    is answered 202 (no receipt yet)."""
    from streams.http import api_views

    sent: list[dict[str, Any]] = []

    async def submit(record: dict[str, Any]) -> None:
        sent.append(record)

    monkeypatch.setattr(api_views, "submit", submit)
    return sent
