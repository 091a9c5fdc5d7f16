"""The contract check that runs after every integration test (tests/integration/contract.py):
it reads every output topic back and holds each record against the topic's JSON Schema. Here it
is shown to pass a record the models make and to name the ones that break the schema."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from schemas import topics
from schemas.common import WindowRef
from schemas.counts import CountRecord
from streams.config.settings import Settings
from streams.kafka.admin import delete_topics_with_prefix, ensure_topics
from streams.kafka.io import produce_records
from tests.integration.contract import contract_violations

pytestmark = pytest.mark.integration


def test_the_contract_check_passes_model_records_and_names_the_others(settings: Settings) -> None:
    own = replace(settings, topic_prefix=settings.topic_prefix + "contract-")
    ensure_topics(own)
    try:
        good = CountRecord(
            tenant_id="t1",
            window=WindowRef(start=date(2026, 1, 1), end=date(2027, 1, 1), months=12),
            active_learners=3,
            total_learners=4,
            learner_limit=10,
            utilization_pct=30.0,
            licensed=True,
            updated_at=datetime(2026, 11, 29, tzinfo=UTC),
        )
        produce_records(
            own,
            [
                (topics.ACTIVE_LEARNER_COUNTS, b"t1/2026-01-01", good.model_dump_json().encode()),
                (topics.ACTIVE_LEARNER_COUNTS, b"t1/2025-01-01", None),  # a tombstone
                (topics.ACTIVE_LEARNER_COUNTS, b"t2/2026-01-01", b'{"tenant_id": "t2"}'),
                (topics.DEAD_LETTERS, b"k", b'{"reason": 5}'),
            ],
        )
        checked, problems = contract_violations(own)
        assert checked == 3
        assert len(problems) == 2, problems
        assert any(p.startswith("active-learner-counts[") and "window" in p for p in problems)
        assert any(p.startswith("dead-letters[") for p in problems)
    finally:
        delete_topics_with_prefix(settings, own.topic_prefix)
