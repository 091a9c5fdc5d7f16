"""The faust topic objects of the specs in schemas/topics.py (names with TOPIC_PREFIX).

Input topics are read as raw bytes: decoding is the ingest stage's job, so that a record that is
not even JSON reaches the dead-letter topic instead of crashing the worker in a codec.
"""

from __future__ import annotations

from faust.types import TopicT

from schemas import topics
from streams.worker.app import app, settings


def _raw(name: str) -> TopicT:
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )


def _json(
    name: str, *, compacting: bool | None = None, deleting: bool | None = None, acks: bool = True
) -> TopicT:
    """An internal topic with raw keys and JSON values (commands, changelogs)."""
    return app.topic(
        settings.topic(name),
        key_type=bytes,
        key_serializer="raw",
        value_serializer="json",
        partitions=settings.partitions,
        internal=True,
        compacting=compacting,
        deleting=deleting,
        acks=acks,
    )


launches = _raw(topics.LAUNCHES)
licenses = _raw(topics.LICENSES)
attempt_deletions = _raw(topics.ATTEMPT_DELETIONS)
learner_groups = _raw(topics.LEARNER_GROUPS)

active_learner_counts = _raw(topics.ACTIVE_LEARNER_COUNTS)
threshold_events = _raw(topics.THRESHOLD_EVENTS)
deletion_receipts = _raw(topics.DELETION_RECEIPTS)
dead_letters = _raw(topics.DEAD_LETTERS)

# Commands between the stages: JSON the stages decode themselves (streams/stages/commands.py)
learner_commands = _raw(topics.LEARNER_COMMANDS)
tenant_commands = _raw(topics.TENANT_COMMANDS)


def changelog(name: str) -> TopicT:
    """A compacted changelog topic for a table, with the name declared in schemas/topics.py."""
    return _json(name, compacting=True, deleting=False, acks=False)
