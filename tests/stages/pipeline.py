"""The real stages in-process, over memory: the simulator's world without random faults.

A test produces records, lets a worker's task work (`run`), places a crash exactly where it
wants one (`crash_at`, with `landing` deciding what a dying send reached), and reads the topics
back. Partitions are assigned explicitly, so a test can make one learner partition lag.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from zlib import crc32

from schemas import topics
from streams.stages.store import LogRecord, TopicPartition
from streams.tools.simulate import runner
from streams.tools.simulate.world import APP_TOPICS, CrashPlan, SimWorker, World

START = datetime(2026, 3, 20, 12, tzinfo=UTC)


class Pipeline:
    def __init__(
        self,
        partitions: int = 2,
        workers: int = 1,
        assignment: dict[str, list[int]] | None = None,
        start: datetime = START,
    ) -> None:
        self.world = World(0, partitions, 1, start)
        for index in range(workers):
            name = f"w{index}"
            self.world.workers[name] = SimWorker(self.world, name)
        self.assignment = assignment or {"w0": list(range(partitions))}
        self.rebalance()

    # -- time, input, work ----------------------------------------------------------------------
    @property
    def now(self) -> datetime:
        return self.world.now()

    def advance(self, seconds: float) -> None:
        self.world.clock_ms += int(seconds * 1000)

    def produce(
        self, topic: str, value: dict[str, Any] | bytes | None, key: bytes | None = None
    ) -> None:
        raw = value if isinstance(value, bytes | type(None)) else json.dumps(value).encode()
        if key is None and isinstance(value, dict):
            key = (
                f"{value['tenant_id']}/{value['learner_id']}".encode()
                if topic in (topics.LAUNCHES, topics.LEARNER_GROUPS)
                else str(value.get("tenant_id", "")).encode()
            )
        count = self.world.partitions_of(topic)
        self.world.produce(topic, key, raw, crc32(key or b"") % count)

    def worker(self, name: str = "w0") -> SimWorker:
        return self.world.workers[name]

    def run(self, task: str, worker: str = "w0", limit: int = 1_000) -> None:
        """Let one task of a worker work until it has nothing left (or it crashed)."""
        w = self.worker(worker)
        for _ in range(100):
            if not w.alive:
                return
            runner.run_task(self.world, w, task, limit)
            while task in w.activities or "takeover" in w.activities:
                self.world.advance()
            if task in ("partials", "tick", "check") or not runner._pending(self.world, w, task):
                return

    def flow(self, worker: str = "w0", rounds: int = 4) -> None:
        """Every task of a worker, in pipeline order, a few times; then a commit."""
        for _ in range(rounds):
            for task in ("launches", *APP_TOPICS, "partials"):
                self.run(task, worker)
        self.world.commit(self.worker(worker))

    def settle(self) -> None:
        """Every worker works until nothing is left; the timers tick at the current clock."""
        runner.drain(self.world)
        for kind in ("tick", "check"):
            for w in self.world.workers.values():
                runner.run_task(self.world, w, kind, 1)
        runner.drain(self.world)

    def rebalance(self, assignment: dict[str, list[int]] | None = None) -> None:
        """A new assignment (the same one again by default), and every takeover done."""
        if assignment is not None:
            self.assignment = assignment
        self.world.rebalance(self.assignment)
        for w in self.world.workers.values():
            if w.alive and w.aware:
                runner.run_task(self.world, w, "takeover", 1)
                while w.activities:
                    self.world.advance()

    # -- faults -----------------------------------------------------------------------------------
    def crash_at(
        self,
        worker: str,
        point: str,
        task: str = "any",
        countdown: int = 1,
        landing: Callable[[TopicPartition, Sequence[LogRecord]], int] | None = None,
    ) -> None:
        """Kill `worker` at the `countdown`-th `point` (send, apply, ack) of `task`; `landing`
        says how many records of each of the dying send's groups reach Kafka."""
        self.worker(worker).crash_plans.append(CrashPlan(point, countdown, task))
        self.world.landing = landing

    def recover(self, worker: str = "w0") -> bool:
        """After a `crash_at` and the work it aimed at: whether the worker died; its plans are
        dropped, it is restarted if it died, and sends land whole again."""
        w = self.worker(worker)
        crashed = not w.alive
        w.crash_plans.clear()
        if crashed:
            self.restart(worker)
        self.world.landing = None
        return crashed

    def restart(self, worker: str = "w0", lose_state: bool = False) -> None:
        w = self.worker(worker)
        if lose_state:
            w.state = type(w.state)(w)
        w.start()
        self.world.landing = None
        self.rebalance()

    # -- reading the topics -----------------------------------------------------------------------
    def records(self, topic: str) -> list[LogRecord]:
        return [record for _, record in self.world.log.all_records(topic)]

    def values(self, topic: str) -> list[dict[str, Any]]:
        return [json.loads(r.value) for r in self.records(topic) if r.value is not None]

    def counts(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The last count record of every (tenant, window start), as the compacted topic keeps."""
        out = {}
        for key, value in self.world.log.latest(topics.ACTIVE_LEARNER_COUNTS).items():
            tenant, _, start = key.decode().rpartition("/")
            out[(tenant, start)] = json.loads(value)
        return out

    def active(self, tenant: str, start: str) -> int | None:
        record = self.counts().get((tenant, start))
        return None if record is None else record["active_learners"]

    def history(self, tenant: str, start: str) -> list[int]:
        """Every count ever published for a window, in order."""
        return [
            v["active_learners"]
            for v in self.values(topics.ACTIVE_LEARNER_COUNTS)
            if v["tenant_id"] == tenant and v["window"]["start"] == start
        ]

    def events(self, tenant: str) -> list[dict[str, Any]]:
        return [v for v in self.values(topics.THRESHOLD_EVENTS) if v["tenant_id"] == tenant]

    def receipts(self, request_id: str) -> list[dict[str, Any]]:
        return [v for v in self.values(topics.DELETION_RECEIPTS) if v["request_id"] == request_id]

    def attempts(self) -> dict[str, dict[str, Any]]:
        return {
            k.decode(): json.loads(v) for k, v in self.world.log.latest(topics.ATTEMPTS).items()
        }

    def dead_letters(self) -> list[dict[str, Any]]:
        return self.values(topics.DEAD_LETTERS)

    def check(self) -> list[str]:
        """Every check of the simulator on this run (the model, the states)."""
        from streams.tools.simulate import oracle

        model, problems = oracle.check(
            self.world.log,
            self.world.partitions,
            self.now,
            evaluations=self.world.evaluations,
            evaluated=self.world.evaluated,
        )
        expected = {
            "/".join(i): (a.element_id, a.launched_at, a.logically_deleted)
            for i, a in model.attempts().items()
        }
        return problems + runner.check_states(self.world, expected) + self.world.bugs


def launch(
    tenant: str,
    learner: str,
    attempt: str,
    at: str,
    element: str = "e",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "event_id": f"{tenant}-{learner}-{attempt}-{at}",
        "tenant_id": tenant,
        "learner_id": learner,
        "element_id": element,
        "attempt_id": attempt,
        "launched_at": at,
        "content_type": "scorm",
        **extra,
    }


def license_(tenant: str, **fields: Any) -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "cycle_start": "2026-01-01",
        "window_months": 12,
        "learner_limit": None,
        "thresholds": [],
        "notify": [],
        "timezone": "UTC",
        **fields,
    }


def deletion(
    tenant: str, request_id: str, mode: str, at: datetime, **selector: Any
) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "tenant_id": tenant,
        "mode": mode,
        "requested_at": at.isoformat(),
        **selector,
    }


def partition_of(tenant: str, learner: str, partitions: int) -> int:
    return crc32(f"{tenant}/{learner}".encode()) % partitions


def learners_in(tenant: str, partition: int, partitions: int, count: int) -> list[str]:
    """`count` learner ids of `tenant` that live in learner partition `partition`."""
    out = []
    n = 0
    while len(out) < count:
        learner = f"l{n}"
        if partition_of(tenant, learner, partitions) == partition:
            out.append(learner)
        n += 1
    return out


def prefix_landing(n: int) -> Callable[[TopicPartition, Sequence[LogRecord]], int]:
    """A crash's send lands the first `n` records of each of its groups."""

    def landing(tp: TopicPartition, records: Sequence[LogRecord]) -> int:
        return min(n, len(records))

    return landing


PREFIX_LANDINGS = {
    "none": prefix_landing(0),
    "one": prefix_landing(1),
    "two": prefix_landing(2),
    "all": prefix_landing(1_000),
}
