"""An `attempts` topic whose `max.message.bytes` is below what the producer packs in a batch.

Kafka's limit bounds a whole producer batch, not a record. The worker's producer packs up to
1 MiB a batch, so a topic whose limit was lowered refused the learner stage's flushes of many
small attempt records, each far below the limit: until 2026-12-06 the stage took that for a
record too large and applied its group again one event at a time, and then each command one
launch at a time (a flush a launch); a flush that cannot be taken apart had no such way out.
Now the worker's `KafkaLog` cuts that topic's batches smaller and sends the group again
(`BatchCaps`, streams/stages/store.py): every launch counted, no group taken apart.
"""

from __future__ import annotations

import pytest

from schemas import topics
from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.kafka.io import read_records, read_topic
from streams.stages import keys
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_launch_reader_limits import NOW, launches, set_max_message_bytes
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

LIMIT = "20000"  # bytes: an attempt record fits many times over, a flush's batch does not


def test_batches_the_broker_refuses_for_size_are_cut_smaller(
    settings: Settings, worker: WorkerProcess
) -> None:
    worker.start()
    worker.wait_ready()
    set_max_message_bytes(settings, topics.ATTEMPTS, LIMIT)
    # a backlog: the restarted worker's first group holds every launch, and its attempt records
    # (about 150 a learner partition, some 200 bytes each) make batches above the limit
    worker.stop()
    sent = launches(600)
    produce_json(settings, "launches", sent)
    worker.start()
    wait_for(counts_match(settings, recount(sent, {}, NOW)), 180, "every launch counted")
    stored = {record.key for record in read_records(settings, topics.ATTEMPTS, timeout_s=30)}
    assert stored >= {keys.attempt("acme", one["learner_id"], one["attempt_id"]) for one in sent}
    assert read_topic(settings, topics.DEAD_LETTERS, timeout_s=10) == []
    log = worker.log_path.read_text(errors="replace")
    assert "batches are cut to" in log  # the broker did refuse a batch
    # and no group was taken apart for it (what the stage does with a record too large)
    assert "one event at a time" not in log
    assert "parts one at a time" not in log
