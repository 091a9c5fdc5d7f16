"""The faust application: one app, three stages (ingest, learners, tenants), settings from the env.

Importing this module builds the app from the environment once. The agents (streams/worker/agents)
and the HTTP side (streams/http/web.py) register themselves on it when they are imported; the
`active-learners worker` command imports them and runs the app (streams/cli/ops.py).
"""

from __future__ import annotations

from typing import Any

import faust

from streams.config.settings import Settings
from streams.stages.ownership import Ownership
from streams.stages.store import PRODUCER_BATCH_BYTES
from streams.worker.state import KafkaLog
from streams.worker.transport import Transport

settings = Settings.from_env()


def _broker_url(servers: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in servers.split(",") if server.strip())


class _App(faust.App):
    """faust's app, its consumer reading committed records only (streams/worker/transport.py)."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


app = _App(
    settings.app_id,
    broker=_broker_url(settings.bootstrap_servers),
    broker_credentials=settings.security.faust_credentials(),
    store="rocksdb://",
    datadir=str(settings.state_dir),
    web_port=settings.web_port,
    # 127.0.0.1 unless tokens are configured and WEB_HOST says otherwise (open mode stays local)
    web_bind=settings.web_bind,
    web_host=settings.advertised_host,  # the URL other workers call (streams/http/reports.py)
    # faust's own /router/ and /table/ views answer without any token: not served
    web_router_enabled=False,
    web_tables_enabled=False,
    topic_partitions=settings.partitions,
    topic_replication_factor=settings.replication_factor,
    # A new deployment reads its inputs from the beginning: licenses and launches written before
    # the first worker started must count.
    consumer_auto_offset_reset="earliest",
    producer_acks=-1,
    # State survives restarts on local disk and moves with partitions through the changelogs;
    # standby replicas would double the changelog reads on a 2-core host.
    table_standby_replicas=0,
    # The service never relies on exactly-once (see docs/architecture.md).
    processing_guarantee="at_least_once",
    # A crashed worker's partitions move after 15 s instead of faust's default minute.
    broker_session_timeout=15.0,
    broker_heartbeat_interval=3.0,
    # Commands between stages carry whole batches, so faust sees few, larger messages.
    stream_buffer_maxsize=32_768,
    # ...but other commands are small and come in bursts (a license is one command to every
    # learner partition: 10,000 licenses are 120,000 of them). faust asks aiokafka for every
    # record fetched at once by default, up to 1 MiB a partition, and aiokafka builds a Python
    # object of each: 262,000 of them, 70 MB, at once in the 10,000-tenant bench (tracemalloc).
    # Bounded, the rest waits as the fetched bytes it is (docs/benchmarks.md).
    broker_max_poll_records=2_000,
    broker_check_crcs=False,
    producer_linger_ms=5,
    producer_max_batch_size=PRODUCER_BATCH_BYTES,
    producer_max_request_size=2 * 1024 * 1024,
    # Restores changelogs in bulk before faust's per-record recovery looks (worker/recovery.py).
    TableManager="streams.worker.recovery:BulkTableManager",
    logging_config=None,
    # faust reads some settings from the environment too (WEB_BIND, WEB_HOST, ...), over these
    # arguments: an env `WEB_BIND=0.0.0.0` would bind beyond this host in open mode. Our settings
    # come from streams/config/settings.py alone.
    env={},
)

# Every stage sends through the app's own aiokafka producer (see streams/worker/state.py); a flush
# waiting for Kafka stops when the consumer group's generation changes or a revocation begins.
kafka_log = KafkaLog(
    settings,
    lambda: app.producer._ensure_producer(),  # type: ignore[attr-defined]
    lambda: app.consumer_generation_id,
    # faust's flow control is off from the start of a revocation until the recovery resumes it
    lambda: not app.flow_control.is_active(),
)
# Input records this worker writes on a user's behalf (the HTTP API's deletion requests) belong to
# no partition it owns: no rebalance fences their send, which goes on until Kafka takes it.
input_log = KafkaLog(settings, lambda: app.producer._ensure_producer())  # type: ignore[attr-defined]
# The stage partitions this worker owns and their epochs (streams/stages/batch.py).
ownership = Ownership()
