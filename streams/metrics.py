"""Prometheus metrics of a worker, served at GET /metrics."""

from __future__ import annotations

from prometheus_client import Counter

launches_total = Counter(
    "active_learners_launches_total",
    "Launch records read, by outcome (tracked, untracked, dead_lettered)",
    ["outcome"],
)
dead_letters_total = Counter(
    "active_learners_dead_letters_total",
    "Records sent to dead-letters, by source topic and reason",
    ["source", "reason"],
)
attempts_total = Counter(
    "active_learners_attempts_total",
    "Tracked launches applied by the learner stage, by outcome (new, repeat, conflict)",
    ["outcome"],
)
licenses_total = Counter(
    "active_learners_licenses_total",
    "License records applied, by kind (license, tombstone)",
    ["kind"],
)
count_records_total = Counter(
    "active_learners_count_records_total",
    "Records written to active-learner-counts, by kind (update, tombstone)",
    ["kind"],
)
deletion_requests_total = Counter(
    "active_learners_deletion_requests_total",
    "Deletion requests routed, by mode (physical, logical, preview) or error",
    ["mode"],
)
receipts_total = Counter(
    "active_learners_deletion_receipts_total", "Deletion receipts completed by the tenant stage"
)
threshold_events_total = Counter(
    "active_learners_threshold_events_total", "Threshold events fired, by direction", ["direction"]
)
partials_total = Counter(
    "active_learners_partial_counts_total", "Partial counts sent by the learner stage"
)
stage_errors_total = Counter(
    "active_learners_stage_errors_total",
    "Commands a stage failed to apply (a bug, logged with the record's position), by stage",
    ["stage"],
)
