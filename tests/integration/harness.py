"""Running real worker processes (streams/tools/worker_process.py, shared with the benchmark and
the soak) and waiting for conditions with a deadline."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from streams.config.settings import Settings
from streams.kafka.io import produce_records
from streams.tools.worker_process import WorkerProcess, free_port, wait_for, worker_env

__all__ = ["WorkerProcess", "free_port", "produce_json", "wait_for", "worker_env"]


def produce_json(settings: Settings, topic: str, records: Iterable[dict[str, Any]]) -> int:
    """Send dicts as JSON with the contract's recommended keys."""
    from streams.kafka.io import key_of

    return produce_records(
        settings,
        ((topic, key_of(topic, record), json.dumps(record).encode()) for record in records),
    )
