"""What the notifier's `/metrics` lists: its own series and the process's, not the worker's.

The notifier shares code with the worker (streams.stages: the dead letters it writes), and with
it the module that declares the worker's counters and gauges in prometheus_client's default
registry: the notifier's `/metrics` listed every one of them, at 0 for ever (a dashboard or alert
that selects on a worker's series by name then saw one more target, always idle). The
notifier's own series are registered here as well (`own`), beside the process, platform and
garbage-collector collectors, and the probe (streams/notifier/probe.py) serves this registry.
"""

from __future__ import annotations

from typing import TypeVar

from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR
from prometheus_client.registry import Collector, CollectorRegistry

NOTIFIER = CollectorRegistry()
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    NOTIFIER.register(_collector)

M = TypeVar("M", bound=Collector)


def own(metric: M) -> M:
    """A metric of the notifier's (declared in the default registry, as every metric is):
    listed by its `/metrics` too."""
    NOTIFIER.register(metric)
    return metric
