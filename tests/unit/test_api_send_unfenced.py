"""A deletion request of the HTTP API is an input record, owned by no partition: a rebalance of
the worker's consumer group while Kafka refuses its send must not stop the send. (A review
found the API answering 500 and the request never sent: it went through the stages' log, whose
flushes a rebalance fences.)"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError

from schemas import topics
from streams.http import api_views
from streams.worker import state
from streams.worker.app import app, input_log, kafka_log, settings


class RefusingProducer:
    """Refuses the first `refusals` sends (a leader election); the first refusal comes with a
    rebalance of the app's consumer group (a new generation)."""

    def __init__(self, refusals: int) -> None:
        self.refusals = refusals
        self.calls = 0
        self.sent: list[tuple[str, Any, Any]] = []

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(settings.partitions))

    def create_batch(self) -> Any:
        rows: list[tuple[Any, Any]] = []

        def append(**record: Any) -> bool:
            rows.append((record["key"], record["value"]))
            return True

        return SimpleNamespace(rows=rows, append=append, close=lambda: None)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.calls += 1
        if self.calls == 1:
            app.consumer_generation_id += 1  # another worker joined meanwhile
        if self.calls <= self.refusals:
            raise KafkaTimeoutError()
        self.sent.extend((topic, key, value) for key, value in batch.rows)
        self.partition = partition
        future = asyncio.get_running_loop().create_future()
        future.set_result(SimpleNamespace(offset=0))
        return future


def test_a_rebalance_does_not_stop_the_send_of_a_deletion_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(state, "RETRY_FIRST_S", 0.0)
    monkeypatch.setattr(state, "RETRY_MAX_S", 0.0)
    monkeypatch.setattr(app, "consumer_generation_id", 7)
    producer = RefusingProducer(refusals=3)
    for log in (input_log, kafka_log):  # the stages' log would stop at the rebalance
        monkeypatch.setattr(log, "_producer", lambda: producer)
    receipt = {"request_id": "r1", "tenant_id": "acme", "attempts_affected": 0}

    async def wait_for_receipt(*args: Any) -> dict[str, Any]:
        return receipt

    monkeypatch.setattr(api_views.model, "wait_for_receipt", wait_for_receipt)
    request = {
        "request_id": "r1",
        "tenant_id": "acme",
        "mode": "preview",
        "requested_at": "2026-12-02T00:00:00+00:00",
        "older_than": "2026-01-01T00:00:00+00:00",
    }

    answer = asyncio.run(api_views.submit(request))

    assert answer == receipt
    assert app.consumer_generation_id == 8, "the group rebalanced during the retries"
    assert producer.calls == 4, "three refusals, then the send"
    assert producer.sent == [
        (settings.topic(topics.ATTEMPT_DELETIONS), b"acme", orjson.dumps(request))
    ]
