"""Ingest in the worker: agents on licenses, attempt-deletions and learner-groups.

Launches arrive in bulk through streams/worker/agents/launch_reader.py. The rules are
streams/stages/ingest.py; these agents only hand it the records.
"""

from __future__ import annotations

from faust.types import StreamT

from streams.stages import ingest
from streams.stages.batch import DurableBatch
from streams.stages.ingest import IngestStage
from streams.stages.loop import apply_events
from streams.stages.store import Batch, Record
from streams.worker import channels
from streams.worker.agents import launch_reader  # noqa: F401  (registers the bulk launch reader)
from streams.worker.agents.loop import run_durably
from streams.worker.app import app, settings

stage = IngestStage(settings.partitions, topic_name=settings.topic)


async def _license(batch: Batch, record: Record) -> None:
    stage.on_license(batch, record)


async def _deletion(batch: Batch, record: Record) -> None:
    stage.on_deletion(batch, record)


def _give_up(batch: Batch, record: Record, exc: BaseException) -> None:
    ingest.give_up(batch, record, exc, stage.clock())


@app.agent(channels.licenses)
async def ingest_licenses(stream: StreamT) -> None:
    await run_durably(stream, "ingest-licenses", _license, _give_up)


@app.agent(channels.attempt_deletions)
async def ingest_deletions(stream: StreamT) -> None:
    await run_durably(stream, "ingest-deletions", _deletion, _give_up)


async def _groups(batch: DurableBatch, records: list[Record]) -> None:
    """Learner-groups records of one group, batched into one command per learner partition."""

    async def route(batch: Batch, group: list[Record]) -> None:
        stage.group_rows(batch, group)

    def give_up(batch: Batch, group: list[Record], exc: BaseException) -> None:
        for record in group:
            _give_up(batch, record, exc)

    def one_by_one(group: list[Record]) -> list[list[Record]]:
        # failing, or refused by Kafka for its size, the group goes record by record: only the
        # record that fails is dead-lettered, not the up to thousands routed with it
        return [[record] for record in group]

    await apply_events(batch, [records], route, give_up, "ingest-groups", split=one_by_one)


@app.agent(channels.learner_groups)
async def ingest_groups(stream: StreamT) -> None:
    await run_durably(stream, "ingest-groups", max_events=2_000, handle_group=_groups)
