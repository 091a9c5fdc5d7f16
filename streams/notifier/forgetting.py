"""How long the notifier remembers a threshold event it handled.

The notifier keeps a few hundred bytes per event: the outcome in its store of handled events (so
that a redelivery is not mailed again) and a marker in each delivery queue (so that it is not
POSTed or queued again). A redelivery comes from Kafka only, and Kafka hands an event out again
only while the `threshold-events` topic still holds it: after a crash (the uncommitted rest of a
batch), or after the notifier's committed offsets expired (a notifier stopped for longer than the
broker's `offsets.retention.minutes`, a week by default, reads the topic from its start again).

So what is remembered of an event goes once the topic can no longer hold it. Kafka deletes a
record with its segment: once the newest record of the segment is older than `retention.ms`
(checked every few minutes), and a segment spans at most `segment.ms` of records. A record
written at T is gone by T + `segment.ms` + `retention.ms`; the notifier handled it at T or later
(its clock, against the worker's that wrote T: a day of slack covers both the skew and the
broker's checks). A topic with unlimited retention, or compacted, may hold an event for ever:
then every event is remembered, and the notifier's store grows as the topic does.

An event is remembered for at least 30 days whatever the topic's retention: a worker that
crashed right after it wrote an event writes it again when it comes back (the same `event_id`,
a new record), and only a worker down for longer than that has its repeat mailed again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

SLACK = timedelta(days=1)
AT_LEAST = timedelta(days=30)
KAFKA_DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000  # segment.ms when the broker does not say
EVERY_S = 6 * 3600.0  # how often the notifier forgets (and on start)


def redelivery_horizon(configs: Mapping[str, str | None]) -> timedelta | None:
    """How long after it was handled Kafka may still hand an event out again, from the
    `threshold-events` topic's configs (as the broker applies them); None: for as long as the
    topic lives (compacted, unlimited retention, or configs the broker did not give)."""
    if "compact" in (configs.get("cleanup.policy") or ""):
        return None
    try:
        retention_ms = int(configs["retention.ms"] or "")
        segment_ms = int(configs.get("segment.ms") or KAFKA_DEFAULT_SEGMENT_MS)
    except (KeyError, ValueError):
        return None
    if retention_ms < 0:
        return None
    return max(timedelta(milliseconds=retention_ms + max(segment_ms, 0)) + SLACK, AT_LEAST)
