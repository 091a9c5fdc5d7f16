"""One request sent twice through the HTTP API, by two administrators or one client's retry,
while the first is still under way: both calls are answered with the request's one receipt
(the contract: the same mode, selector and `requested_at` is a redelivery, whoever sends it).

Found in review: a second administrator's call waited the whole RECEIPT_WAIT_S and got 202,
because its receipt names the first requester; and a retry without `requested_at` got 409,
because the retry's own `requested_at` made it another request to the stages.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.domain.deletions import reused_id_error
from streams.domain.selectors import Selector
from streams.http import api_views
from streams.stages.ingest import error_receipt
from tests.unit.web_harness import ADMIN_ALL, Server, Views, bearer, isolate

JSON = {"Content-Type": "application/json"}
FIRST = "admin-acme"  # the token whose request took the id first (tests/unit/web_harness.py)
REQUESTED_AT = (datetime.now(UTC) - timedelta(minutes=1)).replace(microsecond=0)
WAIT_S = 3.0  # a call that waits this long is answered 202 (below the client's TIMEOUT_S)


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    monkeypatch.setattr(api_views, "RECEIPT_WAIT_S", WAIT_S)
    return isolate(monkeypatch, tmp_path)


def receipt_of(record: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        **error_receipt(
            {**record, "selector": Selector.of_fields(record).as_json()}, "", datetime.now(UTC)
        ),
        "error": None,
        **fields,
    }


def stages(
    monkeypatch: pytest.MonkeyPatch,
    isolated: Views,
    answer: Callable[[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """Kafka and the stages: each request sent is answered, a moment later (its call waits
    by then), with the receipts `answer` gives for it."""

    class Batch:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def emit(self, topic: str, key: bytes, value: bytes, *args: Any) -> None:
            self.sent.append(json.loads(value))

        async def flush(self) -> None:
            loop = asyncio.get_running_loop()
            for record in self.sent:
                for n, receipt in enumerate(answer(record)):
                    encoded = json.dumps(receipt).encode()
                    loop.call_later(0.05 * (n + 1), isolated.model.apply_receipt, encoded)

    monkeypatch.setattr(api_views, "new_input_batch", Batch)


def post(server: Server, body: dict[str, Any]) -> Any:
    return server.call(
        "POST",
        "/api/tenants/acme/deletions",
        headers={**bearer(ADMIN_ALL), **JSON},
        data=json.dumps(body),
    )


BODY = {"request_id": "nightly", "mode": "preview", "learner_ids": ["l1", "l2"]}


def test_the_same_request_from_another_admin_is_answered_with_its_receipt(
    server: Server, isolated: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first administrator's request is under way; the second one's is a redelivery, which
    # the stages answer with the request's receipt: it names the first requester
    stages(monkeypatch, isolated, lambda record: [receipt_of(record, requested_by=FIRST)])

    answer = post(server, {**BODY, "requested_at": REQUESTED_AT.isoformat()})

    assert answer.status == 200, answer.text
    assert answer.json()["requested_by"] == FIRST


def test_a_retry_without_requested_at_is_answered_with_the_receipt_of_the_first_call(
    server: Server, isolated: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first call is under way (its requested_at chosen by the API a moment before): the
    # retry's requested_at differs, so the stages send it a reused-id error receipt, then the
    # first call's receipt
    def answer(record: dict[str, Any]) -> list[dict[str, Any]]:
        first = {**record, "requested_at": REQUESTED_AT.isoformat(), "requested_by": FIRST}
        return [
            error_receipt(
                {**record, "selector": Selector.of_fields(record).as_json()},
                reused_id_error(record["request_id"]),
                datetime.now(UTC),
            ),
            receipt_of(first),
        ]

    stages(monkeypatch, isolated, answer)

    answer_ = post(server, BODY)

    assert answer_.status == 200, answer_.text
    assert answer_.json()["requested_by"] == FIRST
    assert answer_.json()["requested_at"] == REQUESTED_AT.isoformat()


def test_another_request_under_the_id_is_still_a_409(
    server: Server, isolated: Views, monkeypatch: pytest.MonkeyPatch
) -> None:
    def answer(record: dict[str, Any]) -> list[dict[str, Any]]:
        first = {
            **record,
            "learner_ids": ["l9"],
            "requested_at": REQUESTED_AT.isoformat(),
            "requested_by": FIRST,
        }
        return [
            error_receipt(
                {**record, "selector": Selector.of_fields(record).as_json()},
                reused_id_error(record["request_id"]),
                datetime.now(UTC),
            ),
            receipt_of(first),
        ]

    stages(monkeypatch, isolated, answer)

    without_requested_at = post(server, BODY)
    assert without_requested_at.status == 409, without_requested_at.text
    assert "already used for another request" in without_requested_at.json()["error"]

    other = {**BODY, "request_id": "nightly-2", "requested_at": REQUESTED_AT.isoformat()}
    with_requested_at = post(server, other)
    assert with_requested_at.status == 409, with_requested_at.text
