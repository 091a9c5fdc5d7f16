"""Every topic the service reads or writes, declared once: name, key, partitions, compaction.

Names are the contract's; `Settings.topic()` puts TOPIC_PREFIX in front. Internal topics carry
commands between the stages; table changelogs are declared here too so that `active-learners
topics` creates them compacted before any worker starts.
"""

from __future__ import annotations

from dataclasses import dataclass

# Contract topics (../shared/CONTRACT.md)
LAUNCHES = "launches"
LICENSES = "licenses"
ATTEMPT_DELETIONS = "attempt-deletions"
LEARNER_GROUPS = "learner-groups"
ACTIVE_LEARNER_COUNTS = "active-learner-counts"
THRESHOLD_EVENTS = "threshold-events"
ATTEMPTS = "attempts"
DELETION_RECEIPTS = "deletion-receipts"
DEAD_LETTERS = "dead-letters"

# Internal topics
LEARNER_COMMANDS = "learner-commands"
TENANT_COMMANDS = "tenant-commands"
CLUSTER_KEY = "cluster-key"  # the key workers sign their internal HTTP calls with

# Table changelogs (never rename: a table's state lives in its changelog)
LEARNER_STATE_CHANGELOG = "learner-state-changelog"
TENANT_STATE_CHANGELOG = "tenant-state-changelog"
ERASURES_CHANGELOG = "erasures-changelog"
LEARNER_GROUPS_CHANGELOG = "learner-groups-changelog"


# `delete.retention.ms` of the compacted topics: a hundred years, i.e. for good (not the
# largest long: the log cleaner adds it to a timestamp).
TOMBSTONES_KEPT_MS = str(100 * 365 * 86_400_000)
# `min.compaction.lag.ms` of the compacted topics: a day. (Why: TopicSpec.configs.)
COMPACTION_LAG_MS = str(86_400_000)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    key: str
    compacted: bool
    internal: bool
    purpose: str
    retained_forever: bool = False  # an audit trail: never deleted by age
    # never deleted by age either: the worker deletes what the stages have committed
    # (streams/worker/agents/purge.py), so a stage stopped for a week loses nothing
    purged_when_consumed: bool = False

    def configs(self) -> dict[str, str]:
        """The topic's configuration as the service creates it."""
        if self.compacted:
            # Compacted topics keep the latest value per key for good, and their tombstones
            # too (Kafka's default drops a tombstone a day after the log cleaner first saw
            # it). A state folder restores from the offset it stored, so a worker back after
            # more than a day would miss a deletion's tombstone and bring the row back; a
            # consumer of `attempts` or `active-learner-counts` behind by a day would miss
            # one too. A key's tombstone costs a few bytes, once per key ever written.
            # Nothing is cleaned within a day of being written: a deposed owner's late record
            # of a key is the later one for Kafka, and the cleaner would remove the rightful
            # owner's record before the owner, or the next, wrote the key again (a day is
            # plenty while any worker runs; docs/architecture.md "What Kafka removes").
            return {
                "cleanup.policy": "compact",
                "delete.retention.ms": TOMBSTONES_KEPT_MS,
                "min.compaction.lag.ms": COMPACTION_LAG_MS,
            }
        if self.retained_forever or self.purged_when_consumed:
            return {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
        return {"cleanup.policy": "delete"}


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(LAUNCHES, "tenant_id/learner_id (recommended)", False, False, "launch events in"),
    TopicSpec(LICENSES, "tenant_id", True, False, "tenant licenses in"),
    # kept for good like the receipts: a request that expired unread would never be carried out
    TopicSpec(
        ATTEMPT_DELETIONS,
        "tenant_id",
        False,
        False,
        "deletion commands in",
        retained_forever=True,
    ),
    TopicSpec(LEARNER_GROUPS, "tenant_id/learner_id", True, False, "teams and roles in"),
    TopicSpec(
        ACTIVE_LEARNER_COUNTS, "tenant_id/window_start", True, False, "counts per tenant window"
    ),
    TopicSpec(THRESHOLD_EVENTS, "tenant_id", False, False, "threshold crossings"),
    TopicSpec(
        ATTEMPTS, "tenant_id/learner_id/attempt_id", True, False, "attempt records (a changelog)"
    ),
    TopicSpec(
        DELETION_RECEIPTS,
        "tenant_id",
        False,
        False,
        "one receipt per deletion request (the audit trail)",
        retained_forever=True,
    ),
    TopicSpec(DEAD_LETTERS, "source key", False, False, "rejected input, with the reason"),
    TopicSpec(
        LEARNER_COMMANDS,
        "tenant_id/learner_id",
        False,
        True,
        "ingest -> learner stage",
        purged_when_consumed=True,
    ),
    TopicSpec(
        TENANT_COMMANDS,
        "tenant_id",
        False,
        True,
        "learner stage -> tenant stage",
        purged_when_consumed=True,
    ),
    TopicSpec(
        LEARNER_STATE_CHANGELOG, "tenant_id[/learner_id]", True, True, "licenses, memberships"
    ),
    TopicSpec(TENANT_STATE_CHANGELOG, "tenant_id/...", True, True, "tenant stage state"),
    TopicSpec(ERASURES_CHANGELOG, "kind/tenant_id/...", True, True, "erasure markers"),
    TopicSpec(LEARNER_GROUPS_CHANGELOG, "tenant_id/learner_id", True, True, "teams and roles"),
    TopicSpec(CLUSTER_KEY, "key/<random>", True, True, "workers' shared key (partition 0)"),
)

TOPICS_BY_NAME = {spec.name: spec for spec in TOPICS}

# What the LMS (and operators) write: the service creates them with its settings, and leaves the
# settings of existing ones to their operator.
INPUTS = (LAUNCHES, LICENSES, ATTEMPT_DELETIONS, LEARNER_GROUPS)

# Topics co-partitioned with the stages: a worker refuses to start when their counts differ.
# The tenant stage's outputs are among them: partition n of each is written by the owner of
# tenant-commands partition n alone (streams/stages/tenants.py).
COPARTITIONED = (
    ACTIVE_LEARNER_COUNTS,
    THRESHOLD_EVENTS,
    DELETION_RECEIPTS,
    LEARNER_COMMANDS,
    TENANT_COMMANDS,
    ATTEMPTS,
    LEARNER_STATE_CHANGELOG,
    ERASURES_CHANGELOG,
    LEARNER_GROUPS_CHANGELOG,
    TENANT_STATE_CHANGELOG,
)
