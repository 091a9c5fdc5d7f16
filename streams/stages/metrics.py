"""Prometheus metrics of a worker, served at GET /metrics (streams/http/web.py); the tenant
gauges are set from the read model by streams/http/gauges.py."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
tick_tenants_total = Counter(
    "active_learners_tick_tenants_total",
    "Tenants a tick of the tenant stage looked at, by outcome (published; skipped: published "
    "in the current window already, and no command about them since)",
    ["outcome"],
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
    "active_learners_deletion_receipts_total",
    "Deletion receipts sent by the tenant stage, by tenant (empty without a license) and mode",
    ["tenant", "mode"],
)
threshold_events_total = Counter(
    "active_learners_threshold_events_total",
    "Threshold events fired, by tenant and direction",
    ["tenant", "direction"],
)
partials_total = Counter(
    "active_learners_partial_counts_total", "Partial counts sent by the learner stage"
)
stage_errors_total = Counter(
    "active_learners_stage_errors_total",
    "Commands a stage failed to apply (a bug, logged with the record's position), by stage",
    ["stage"],
)
timer_failures_total = Counter(
    "active_learners_timer_failures_total",
    "Runs of a worker's timer that failed and were left to its next interval (partials, tick, "
    "check, purge, memory; streams/worker/agents/timers.py), by timer",
    ["timer"],
)
stage_retries_total = Counter(
    "active_learners_stage_retries_total",
    "Tries of a command (or of one of its parts) that failed and were tried again, by stage: "
    "a transient failure that passed; one that keeps failing ends in stage_errors_total",
    ["stage"],
)
stage_splits_total = Counter(
    "active_learners_stage_splits_total",
    "Commands a stage failed to apply whole and applied part by part (a learner command's "
    "launches, a partials command's tenants), by stage",
    ["stage"],
)

# Per tenant, from the read model of every worker (any worker exports every tenant)
tenant_active = Gauge(
    "active_learners_tenant_active", "Active Learners of the current window", ["tenant"]
)
tenant_total = Gauge("active_learners_tenant_total", "Total Learners", ["tenant"])
tenant_limit = Gauge(
    "active_learners_tenant_limit", "Licensed Active Learner limit (absent: no limit)", ["tenant"]
)
tenant_utilization = Gauge(
    "active_learners_tenant_utilization_pct",
    "Active Learners of the current window in percent of the limit",
    ["tenant"],
)
# Tenants without a license, summed: beyond UNLICENSED_SERIES_MAX of them (streams/http/gauges.py)
# they have no series of their own, so that tenant ids a producer makes up cannot grow /metrics
unlicensed_tenants = Gauge(
    "active_learners_unlicensed_tenants", "Tenants counted without a license (every 15 s)"
)
unlicensed_active = Gauge(
    "active_learners_unlicensed_active",
    "Active Learners of the current window, summed over the tenants without a license",
)
unlicensed_total = Gauge(
    "active_learners_unlicensed_total",
    "Total Learners, summed over the tenants without a license",
)
consumer_lag = Gauge(
    "active_learners_consumer_lag",
    "Records of an input topic not yet committed by the service's consumer group (transaction "
    "markers and aborted records, never read, left out)",
    ["topic"],
)
rocksdb_memory = Gauge(
    "active_learners_rocksdb_memory_bytes",
    "Memory of the RocksDB databases of the partitions this worker owns, summed per table: "
    "memtables, table_readers (what of the SST files' index and filter blocks is outside the "
    'block cache); and block_cache, the one cache all tables share (table="all"), holding '
    "data, index and filter blocks",
    ["table", "kind"],
)
malloc_bytes = Gauge(
    "active_learners_malloc_bytes",
    "glibc malloc over all arenas: in_use (allocated) and free (freed, kept for reuse)",
    ["kind"],
)
malloc_trim_seconds = Counter(
    "active_learners_malloc_trim_seconds",
    "Seconds spent giving malloc's free pages back to the OS (malloc_trim, every 10 s)",
)
largest_record_bytes = Gauge(
    "active_learners_largest_record_bytes",
    "The largest record (key and value) this process emitted to each output or command topic "
    "since it started: Kafka refuses records over 1 MiB, and the service splits what could "
    "grow past it",
    ["topic"],
)
launches_expired_total = Counter(
    "active_learners_launches_expired_total",
    "Launches Kafka deleted (the launches topic's retention) before the worker read them: "
    "found when a partition is assigned and its committed offset is below its first offset",
)
commands_purged_total = Counter(
    "active_learners_commands_purged_total",
    "Records of learner-commands and tenant-commands deleted from Kafka once the stages had "
    "committed them (streams/worker/agents/purge.py)",
)
python_blocks = Gauge(
    "active_learners_python_allocated_blocks",
    "Memory blocks Python's allocator has handed out (sys.getallocatedblocks)",
)
count_latency = Histogram(
    "active_learners_count_latency_seconds",
    "From a launch (its Kafka timestamp) to the count record that counts it",
    buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30, 60, 300),
)
report_parts_total = Counter(
    "active_learners_report_parts_total",
    "One partition's part of a forecast or advisor answer, by kind and source (tallies: kept "
    "in memory; scan: the attempts read, when the tallies cannot answer)",
    ["kind", "source"],
)
