"""The key workers sign their requests to each other with, kept in Kafka.

A report gathers rows from the learner partitions of other workers over HTTP
(streams/http/reports.py); those internal calls need no API token, so each is signed with a key
every worker of the deployment shares. It lives in the `cluster-key` topic (compacted): the first
worker writes a random key, and every worker takes the *first* record of partition 0, so workers
racing at their first start agree (each write has a key of its own, so compaction keeps them
all, in their order). Whoever may read the topics may read the key, and may read
the attempts themselves: the trust boundary is the Kafka cluster, as for everything else.
"""

from __future__ import annotations

import secrets

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.io import new_producer, read_topic


def first_key(settings: Settings) -> bytes | None:
    for key, value in read_topic(settings, topics.CLUSTER_KEY):
        if key is not None and key.startswith(b"key/") and value:
            return value
    return None


def obtain_cluster_key(settings: Settings) -> bytes:
    """The deployment's key: the existing one, else a new one (the first written wins)."""
    found = first_key(settings)
    if found is not None:
        return found
    producer = new_producer(settings)
    try:
        producer.send(
            settings.topic(topics.CLUSTER_KEY),
            key=b"key/" + secrets.token_hex(8).encode(),
            value=secrets.token_bytes(32),
            partition=0,
        ).get(timeout=30)
    finally:
        producer.close()
    found = first_key(settings)
    if found is None:
        raise RuntimeError(f"{settings.topic(topics.CLUSTER_KEY)}: the key written is not there")
    return found
