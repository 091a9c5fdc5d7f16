"""Review of the session of 2026-12-05 from 13:55 (`082a6c6..`), helper-93: each test failed
on the code it came with."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from streams.http import outputs_reader
from streams.http.gauges import tenant_counts_changed
from streams.http.read_model import ReadModel
from tests.unit.test_api import LICENSE, count
from tests.unit.test_read_model_review import PartialMetadataConsumer, reader_of, record


def test_a_count_record_not_of_the_service_does_not_stop_the_reader_at_catch_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A record on the count topic that is not the service's (no `active_learners`) is kept
    and its tenant's gauges skipped with a warning, as the reader skips what it cannot apply:
    the gauges set at catch-up (and every 15 s) raised its KeyError out of the reader's task,
    which mode answers by crashing the service, at every start (the topic keeps the record)."""
    model = ReadModel()
    model.on_counts = tenant_counts_changed(model)
    monkeypatch.setattr(outputs_reader, "model", model)
    year = datetime.now(UTC).year
    start, end = f"{year}-01-01", f"{year + 1}-01-01"
    good, foreign = "h93-good", "h93-foreign"
    licenses, counts = TopicPartition("licenses", 0), TopicPartition("active-learner-counts", 0)
    consumer = PartialMetadataConsumer(
        {licenses: 1, counts: 2},
        [
            {
                licenses: [record(0, 0, 0, b"acme", json.dumps(LICENSE).encode())],
                counts: [
                    record(0, 0, 0, f"{foreign}/{start}".encode(), b'{"tenant_id": "x"}'),
                    record(0, 1, 0, f"{good}/{start}".encode(), count(good, start, end, 7, 9, 12)),
                ],
            }
        ],
    )
    reader = reader_of(model, consumer)

    asyncio.run(outputs_reader.OutputsReader._read_once(reader))

    assert model.caught_up.is_set()
    assert REGISTRY.get_sample_value("active_learners_tenant_active", {"tenant": good}) == 7
    outputs_reader.counts_changed()  # the round of every 15 s too
