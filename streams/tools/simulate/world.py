"""Simulated Kafka and worker processes: everything a schedule acts on.

Nothing here reads the real clock: time is a step counter plus a simulated wall clock (ms) that
actions move forward. That clock is the brokers' and the producers' of the input; each worker's
machine reads it with a skew of its own (`skews`: NTP off, a clock stepped back), which its
stages see as their clock and Kafka stores in the timestamp of every record it sends (a
producer stamps CreateTime, the topics' default). The stages' coroutines are driven by hand:
when a send has to wait (Kafka refusing writes, a deposed owner's request still in flight) the
coroutine suspends on a `Wait`, and the world resumes it when its time comes. So one seed gives
exactly one run.

Kafka: partitioned logs with offsets (streams/stages/memory.py), two consumer groups (the app's,
which faust gives every stage topic, co-partitioned; the launch reader's own), generations,
committed offsets, eager rebalances. A commit from a stale generation is refused. An operator
may add partitions to an input topic while it runs (`grow`): producers hash keys over the new
count, and the group assigns that topic on its own from then on.

Workers: a state folder (MemoryState, restored from the changelogs at every assignment, with the
epoch fence of streams/worker/recovery.py), the real stages, consumer positions, acknowledged
offsets, and tasks (the launch reader, one agent per input topic, the timers, the takeover)
that run one unit of work at a time.

Why one module of this size: the simulated Kafka, the worker processes and their tasks act on
one another at every step; kept together, one step of the world reads in one place.
"""

from __future__ import annotations

import functools
import random
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextvars import Context, ContextVar, copy_context
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import unquote
from zlib import crc32

from schemas import topics
from schemas.licenses import License
from schemas.topics import TOPICS_BY_NAME
from streams.domain.decoding import Rejected
from streams.domain.windows import Window
from streams.stages import commands, ingest, keys
from streams.stages.batch import DurableBatch
from streams.stages.ingest import IngestStage
from streams.stages.learners import LearnerStage, send_partials
from streams.stages.loop import MAX_GROUP_PAUSES, apply_events
from streams.stages.memory import MemoryLog, MemoryState, present
from streams.stages.ownership import Ownership
from streams.stages.store import (
    FENCED_OUTPUTS,
    LEARNER,
    NO_EPOCH,
    TABLES,
    TENANT,
    Batch,
    BatchCaps,
    Fenced,
    Headers,
    LocalWriteFailed,
    LogRecord,
    Pair,
    Record,
    RecordTooLarge,
    TopicPartition,
    restore_rule,
    scan_all,
    starts_afresh,
)
from streams.stages.takeover_steps import take_over_learners, take_over_tenants
from streams.stages.tenant_deletions import stored_receipt
from streams.stages.tenants import TenantStage, stored_partials
from streams.tools.simulate.oracle import EvaluatedCounts

APP_TOPICS = (
    topics.LICENSES,
    topics.ATTEMPT_DELETIONS,
    topics.LEARNER_GROUPS,
    topics.LEARNER_COMMANDS,
    topics.TENANT_COMMANDS,
)
DAY_MS = 86_400_000  # the broker's default delete.retention.ms
GROWTH_MS = 1_000  # adding partitions to a topic takes the cluster a moment
TIMESTAMP_AFTER_MAX_MS = 3_600_000  # the broker's default message.timestamp.after.max.ms (4.0)
TIMERS = ("partials", "tick", "check")
TASKS = ("launches", *APP_TOPICS, *TIMERS)
# the parts of a command that failed, as the worker's agents name them
_SPLITS = {topics.LEARNER_COMMANDS: LearnerStage.split, topics.TENANT_COMMANDS: TenantStage.split}


class Crash(BaseException):
    """The process dies here, as with SIGKILL: no flush, no commit, no goodbye."""


GROUP_AGAIN_MAX = 5  # how often the simulated agent applies a group a glitch failed again


class Stumble(RuntimeError):
    """A failure the worker survives (SIMULATE_SURVIVED_FAILURES=1): a read of the log that
    timed out, a local read RocksDB failed once. Raised where the worker's Kafka and RocksDB
    calls raise, and met by the code the worker meets it with (`StumblePlan`)."""


class Rejoin(Exception):
    """A takeover failed for another reason than being deposed: the worker releases the
    stage's partitions and asks for a rebalance (streams/worker/takeovers.py `run`)."""


class Glitch(RuntimeError):
    """A handler's passing failure (a local read that failed once): the loop rolls the event
    back and tries it again (streams/stages/loop.py)."""


@dataclass
class Glitches:
    """Passing failures armed in one worker's learner and tenant stages, modelled in time: the
    next event handled fails (at its first, second or third write, or once it did all of them)
    every time it is handled until the loop has paused for it `lasts` times, then passes. The
    loop pauses twice for an event (0.5 s, then 1 s in the agents; MAX_TRIES tries), and
    twice for each part of one it takes apart (MAX_GROUP_PAUSES for a group in all); a
    failure that outlasts that is the fault's, not the service's, so `lasts` is at most 2.
    An earlier model counted failures instead; an event that could be split was given a
    budget of 3, which fitted a loop that had stopped pausing between its parts' tries: a
    review found that a failure of a few milliseconds then dead-lettered every launch of a
    command (seed 10803304 and 13 more of 400 with a budget of 5; kept in
    tests/simulation/test_seeds.py). The failure is the event's, however often it
    is applied and whatever the worker's other stage does meanwhile (seed 10667832: kept for
    the worker as a whole, a tick of the tenant stage suspended in its flush lost its budget to
    a learner command and drew a new one, and failed three times)."""

    MAX_LASTS: ClassVar[int] = 2

    pending: int = 0  # armed: the runner's draw (1-5), turned into `lasts` by the next event
    # (topic, partition, offset) -> pauses still to come before the event passes
    lasts: dict[tuple[str, int, int], int] = field(default_factory=dict)
    failed: set[tuple[str, int, int]] = field(default_factory=set)  # struck at least once
    last_struck: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # by topic
    struck: int = 0  # how many struck in all

    def wrap(self, handle: Any, group: GroupPauses) -> Any:
        async def glitchy(batch: Batch, record: Record) -> None:
            position = (record.topic, record.partition, record.offset)
            if (
                self.pending
                and position not in self.lasts
                and position not in group.stumbled_events
            ):
                self.lasts[position] = min(self.pending - 1, self.MAX_LASTS)
                self.pending = 0
            if position not in self.lasts:
                await handle(batch, record)
                return
            if position in self.failed and self.lasts[position] == 0:
                del self.lasts[position]  # it passed
                self.failed.discard(position)
                # the next glitch to strike this event (another of its parts) reserves its own
                # pauses (seed 11032605: three parts' glitches on one reservation outlasted
                # the group's pauses, and the third part was dead-lettered)
                group.reserved.discard(position)
                await handle(batch, record)
                return
            if position not in group.reserved:
                self.lasts[position] = group.reserve(self.lasts[position])
                group.reserved.add(position)
            writes = {"n": 0}
            strike_at = 1 + (self.lasts[position] + self.struck) % 4  # 4: after every write
            put = batch.put

            def failing_put(*args: Any, **kwargs: Any) -> None:
                writes["n"] += 1
                if writes["n"] == strike_at:
                    self._strike(position)
                put(*args, **kwargs)

            batch.put = failing_put  # type: ignore[method-assign]
            try:
                await handle(batch, record)
            finally:
                del batch.put
            if writes["n"] < strike_at:
                self._strike(position)

        return glitchy

    def paused(self, topic: str) -> None:
        """The loop paused after a failure of the event it applies (the last one struck)."""
        position = self.last_struck.get(topic)
        if position is not None and self.lasts.get(position):
            self.lasts[position] -= 1

    def _strike(self, position: tuple[str, int, int]) -> None:
        if position not in self.lasts:
            return  # (passed meanwhile)
        self.failed.add(position)
        self.last_struck[position[0]] = position
        self.struck += 1
        raise Glitch("a passing failure (simulated)")


@dataclass
class GroupPauses:
    """The pauses the loop promises one group of events (MAX_GROUP_PAUSES): the glitches that
    strike in the group reserve theirs, and one that would need more than are left lasts only
    as long as they allow (a failure that outlasts the loop's bound is the fault's, not the
    service's; seed 10690333: six glitches armed on one worker while one group of learner
    commands was applied)."""

    left: int = MAX_GROUP_PAUSES
    owed: int = 0  # reserved by glitches struck in the group and not yet paused for
    reserved: set[tuple[str, int, int]] = field(default_factory=set)
    # `Glitches.struck` when a stumble last struck a handler of the group: the pause that
    # follows is the stumble's, not a glitch's
    stumbled: int = -1
    # the events of the group a handler's stumble struck, and those that failed otherwise: an
    # event fails by one of the two only, so that it fails at most as often as a glitch lets
    # it (the loop's MAX_TRIES)
    stumbled_events: set[tuple[str, int, int]] = field(default_factory=set)
    failed_events: set[tuple[str, int, int]] = field(default_factory=set)

    def reserve(self, lasts: int) -> int:
        """The pauses a glitch that wants `lasts` may last in this group (its failure is
        followed by a pause while any is left, also when it passes at the next try)."""
        available = self.left - self.owed
        lasts = min(lasts, available)
        self.owed += max(lasts, min(1, available))
        return lasts

    def paused(self) -> None:
        self.left -= 1
        self.owed = max(0, self.owed - 1)


class Wait:
    """What a suspended coroutine waits for; the world resumes it with `send` or `throw`."""

    def __init__(self, kind: str, until: int = 0) -> None:
        self.kind = kind  # "refused" | "in-flight" | "pause" | "retry" (a failed send's)
        self.until = until

    def __await__(self) -> Any:
        result = yield self
        return result


@dataclass
class Activity:
    coro: Coroutine[Any, Any, Any]
    task: str
    waiting: Wait | None = None
    # its context variables, as an asyncio task has its own (each step runs in it)
    context: Context = field(default_factory=copy_context)
    # a takeover past its restore (faust's on_recover callbacks): a rebalance may leave it
    # running, as faust does not cancel those callbacks (`World._abandon`)
    outlives_rebalance: bool = False

    def close(self) -> None:
        self.context.run(self.coro.close)


@dataclass
class Group:
    name: str
    partitions: int
    topics: tuple[str, ...]
    generation: int = 0
    members: list[str] = field(default_factory=list)
    assignment: dict[str, list[int]] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)
    # topics whose partition count is no longer the group's (an input topic that gained
    # partitions): faust's assignor co-partitions only topics of one count, so each of these
    # is assigned on its own
    own_counts: dict[str, int] = field(default_factory=dict)
    own_assignment: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def count(self, topic: str) -> int:
        return self.own_counts.get(topic, self.partitions)

    def parts_of(self, member: str, topic: str) -> list[int]:
        if topic in self.own_counts:
            return self.own_assignment.get(topic, {}).get(member, [])
        return self.assignment.get(member, [])

    def rebalance(self, members: Sequence[str], rng: random.Random, own_rng: random.Random) -> None:
        """`own_rng` spreads the topics of their own count (a stream of its own, so that the
        seeds without such a topic draw as they did before it was modelled)."""
        self.generation += 1
        self.members = sorted(members)
        self.assignment = _spread(self.members, self.partitions, rng)
        self.own_assignment = {
            topic: _spread(self.members, count, own_rng)
            for topic, count in sorted(self.own_counts.items())
        }


def _spread(members: Sequence[str], partitions: int, rng: random.Random) -> dict[str, list[int]]:
    assignment: dict[str, list[int]] = {member: [] for member in members}
    if members:
        order = list(range(partitions))
        rng.shuffle(order)  # no stickiness: partitions move a lot, which is the point
        for index, partition in enumerate(order):
            assignment[members[index % len(members)]].append(partition)
        for parts in assignment.values():
            parts.sort()
    return assignment


@dataclass
class CrashPlan:
    point: str  # "send" | "apply" | "ack" | "read" (a read of the log)
    countdown: int
    task: str = "any"  # only while this task runs

    def reached(self, worker: SimWorker, point: str, what: frozenset[str] = frozenset()) -> bool:
        """Count this occurrence of `point`; True when the process is to die here. `task` is a
        task name, or what a send carries: "deletion" (attempt tombstones), "recut" (licenses
        and memberships), "publish" (count records); or "repair": only inside a repair
        (`RepairWatchedBatch`, SIMULATE_REPAIR_FAULTS=1), "repair-lineage" only inside one of
        a flush or lineage check (not a takeover's)."""
        if self.point != point:
            return False
        if self.task.startswith("repair"):
            if not in_repair(self.task):
                return False
        elif self.task not in ("any", worker.current_task) and self.task not in what:
            return False
        self.countdown -= 1
        return self.countdown <= 0


@dataclass
class StumblePlan:
    """A survivable failure armed in one worker, at its `countdown`-th occurrence of `point`
    (SIMULATE_SURVIVED_FAILURES=1), once:

    - "send": a produce request fails for some of its partitions, after any prefix of their
      records landed (a producer batch queued before the error); the others are acknowledged.
      As `KafkaLog.send` (streams/worker/state.py) does, the failed partitions are sent again,
      whole, after a pause, unless the group rebalanced meanwhile (`Fenced`);
    - "send-read": the same, then the next read of the log fails: the flush's lineage check
      reading the records that landed before the send again, after its outputs and
      changelogs are in Kafka and before its local write;
    - "read": a read of the log (a lineage check's records, an end offset) raises;
    - "local": a read of the local tables (RocksDB's multi-get or scan) raises;
    - "metadata": the producer's metadata of a topic could not be had (a flush's first step,
      where it picks the partitions of keyed outputs);
    - "commit": the launch reader's commit of a batch it routed fails (it is read again after
      the next rebalance, as the reader's consumer keeps its position);
    - "timer": a timer's flush (partial counts, a tick, a lineage check) raises, after any
      prefix of each of its partitions' records landed: an error `KafkaLog.send` does not send
      again (the producer not started or closed, a partition its metadata lacks). The timer
      lives on (streams/worker/agents/timers.py) and its next interval tries again; the
      partial counts it had taken are reported again (`LearnerStage.unsent`).

    What raises is met by the code the worker meets it with: an event's handler rolls back and
    tries again (streams/stages/loop.py); a group's flush is applied again on a new batch
    (`_apply_until_done` in streams/worker/agents/loop.py); the launch reader reads the batch
    again (`LaunchReader._read`); a timer tries again at its next interval; a takeover
    releases the stage's partitions and rejoins
    (streams/worker/takeovers.py); a failed local write stops the worker (`LocalWriteFailed`).
    A stumble that would strike a group's handlers when the group has no pause left to spare
    for it (the glitches' budget, `GroupPauses`) waits for a later occurrence."""

    point: str  # "send" | "send-read" | "read" | "local" | "metadata" | "commit" | "timer"
    countdown: int
    # only inside a repair (`RepairWatchedBatch`, SIMULATE_REPAIR_FAULTS=1): its occurrences
    # outside one are not counted; "lineage-agent": a flush's or lineage check's repair outside
    # a takeover (SIMULATE_LATE_COUNTS=1 at rest, where a failed takeover would rebalance)
    repair: str = (
        ""  # "" | "repair" | "repair-lineage" (as a crash plan's `task`) | "lineage-agent"
    )


def carried(groups: Mapping[TopicPartition, Sequence[Pair]]) -> frozenset[str]:
    """What a send carries, for crash plans aimed at a kind of work."""
    kinds = set()
    for (topic, _), records in groups.items():
        if topic == topics.ATTEMPTS and any(value is None for _, value in records):
            kinds.add("deletion")
        if topic == topics.LEARNER_STATE_CHANGELOG and any(
            (key or b"").startswith(b"lic/") for key, _ in records
        ):
            kinds.add("recut")
        if topic == topics.ACTIVE_LEARNER_COUNTS:
            kinds.add("publish")
        if topic == topics.TENANT_STATE_CHANGELOG and any(
            (key or b"").startswith((keys.PENDING_THRESHOLD_EVENTS, keys.THRESHOLDS))
            for key, _ in records
        ):
            kinds.add("thresholds")
    return frozenset(kinds)


@dataclass
class InFlight:
    """A deposed owner's send on its way. Kafka appends each partition of a produce request
    on its own, so its groups may land at different steps (`lands`); the send is acknowledged
    once the last has landed (`land_at`)."""

    land_at: int
    groups: dict[TopicPartition, list[Pair]]
    headers: Mapping[TopicPartition, Headers]
    worker: SimWorker
    wait: Wait
    stamp_ms: int  # the producer stamped the records when it sent them (CreateTime)
    lands: dict[TopicPartition, int] = field(default_factory=dict)
    acks: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)


class SimState(MemoryState):
    """A worker's state folder; a crash can strike inside a local write."""

    def __init__(self, worker: SimWorker) -> None:
        super().__init__(owns=lambda table, partition: partition in worker.app_parts)
        self.worker = worker

    def get_many(self, table: str, partition: int, keys: Sequence[bytes]) -> list[bytes | None]:
        self.worker.stumble("local")
        return super().get_many(table, partition, keys)

    def scan(
        self, table: str, partition: int, prefix: bytes, after: bytes | None, limit: int | None
    ) -> list[tuple[bytes, bytes]]:
        self.worker.stumble("local")
        return super().scan(table, partition, prefix, after, limit)

    def apply(self, table: str, partition: int, writes: Any, offset: int, fence: Any) -> None:
        _no_stale_takeover(self.worker, f"a local write of {table}/{partition}")
        if self.worker.crashes_at("apply"):
            if self.worker.world.rng.random() < 0.5:
                super().apply(table, partition, writes, offset, fence)
            raise Crash
        super().apply(table, partition, writes, offset, fence)

    def forget_repairs(self, table: str, partition: int, keys_: Sequence[bytes]) -> None:
        _no_stale_takeover(self.worker, f"a drop of marks of {table}/{partition}")
        super().forget_repairs(table, partition, keys_)


def _no_stale_takeover(worker: SimWorker, what: str) -> None:
    """A takeover that a later rebalance overtook (left running by `World._abandon`) must
    send and write nothing more (streams/stages/takeover_steps.py): if it does, it is a bug."""
    if worker.current_task.startswith("takeover@"):
        worker.world.bugs.append(f"{worker.name}/{worker.current_task}: overtaken, it made {what}")


class SimLog:
    """The Log of one worker (streams/stages/store.py) over the world's Kafka, with its faults."""

    def __init__(self, world: World, worker: SimWorker) -> None:
        self.world = world
        self.worker = worker
        self.caps = BatchCaps()  # as the worker's KafkaLog learns them (a process's own)

    async def partition_of(self, topic: str, key: bytes | None) -> int:
        self.worker.stumble("metadata")  # (the producer's metadata for the topic)
        return crc32(key or b"") % self.world.partitions_of(topic)

    async def send(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers] | None = None,
    ) -> dict[TopicPartition, tuple[int, int]]:
        headers = dict(headers or {})
        world, worker = self.world, self.worker
        _no_stale_takeover(worker, f"a send to {sorted(groups)}")
        generation = worker.view_generation
        while world.step < world.refusing_until or world.stamps_too_late(worker):
            await Wait("refused", world.refusing_until)
            if worker.aware and world.app.generation != generation and worker.in_app_group:
                raise Fenced("the consumer group rebalanced while a flush waited for Kafka")
        stamp = world.clock_ms_of(worker.name)
        if worker.crashes_at("send", carried(groups)):
            world.append_some(groups, headers, stamp)
            raise Crash
        if world.record_limit is not None:
            world.refuse_large(worker, groups, headers, stamp, self.caps)
        if worker.current_task in TIMERS and worker.stumbles_at("timer"):
            draw = world.stumble_rng
            for tp in sorted(groups):
                landed = draw.randrange(len(groups[tp]) + 1)
                if landed:
                    world.append({tp: groups[tp][:landed]}, headers, stamp)
            world.trace.append(f"  {worker.name}/{worker.current_task}: a timer's flush failed")
            raise Stumble("a timer's send failed (simulated)")
        if not worker.aware:
            # a deposed owner: its request lands some steps later, maybe after its successor's
            wait = Wait("in-flight", world.step + world.rng.randrange(0, world.late_steps))
            # each group lands on its own, up to 8 steps before the last (from the takeover
            # stream: the seed's faults stay as they were)
            spread = world.takeover_rng
            lands = {tp: wait.until - spread.choice((0, 0, spread.randrange(9))) for tp in groups}
            if world.held_outputs is not None:
                # (SIMULATE_LATE_COUNTS=1, at rest) the output topics' partitions lead on a
                # slow broker, the others on a quick one: what the deposed owner published
                # lands long after its changelogs, while its successors count newer input
                low, high = world.held_outputs
                for tp in sorted(groups):
                    if tp[0] in FENCED_OUTPUTS:
                        lands[tp] = world.step + world.late_counts_rng.randint(low, high)
                    else:
                        lands[tp] = world.step + world.late_counts_rng.randint(0, 3)
                wait = Wait("in-flight", max(lands.values()))
            world.in_flight.append(
                InFlight(
                    wait.until,
                    {tp: list(r) for tp, r in groups.items()},
                    headers,
                    worker,
                    wait,
                    stamp,
                    lands,
                )
            )
            acks: dict[TopicPartition, tuple[int, int]] = await wait
            return acks
        plan = worker.stumbles_at("send")
        if plan is not None:
            return await self._send_again(groups, headers, generation, stamp, plan.point)
        acked = world.append(groups, headers, stamp)
        if world.rng.random() < 0.03:
            world.append(groups, headers, stamp)  # a retried send whose first try landed after all
            acked = {tp: (acked[tp][0], acked[tp][1]) for tp in acked}
        if worker.current_task.startswith("takeover") and world.ack_rng.random() < 0.3:
            # the records landed; their acks are on their way (a rebalance may begin meanwhile)
            await Wait("pause", world.step + world.ack_rng.randrange(1, 6))
        return acked

    async def _send_again(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers],
        generation: int,
        stamp: int,
        point: str,
    ) -> dict[TopicPartition, tuple[int, int]]:
        """A send that fails for some partitions (a stumble): the others land and are
        acknowledged; of a failed one, any prefix of its records may land (a producer batch
        queued before the error). Then, as `KafkaLog.send`, the failed groups are sent again,
        whole, after a pause, unless the consumer group rebalanced meanwhile (`Fenced`)."""
        world, worker = self.world, self.worker
        draw = world.stumble_rng
        order = sorted(groups)
        failed = [tp for tp in order if draw.random() < 0.5] or [draw.choice(order)]
        acked = world.append({tp: groups[tp] for tp in order if tp not in failed}, headers, stamp)
        for tp in failed:
            # ("send-read": some records land, so that the flush's lineage check reads them)
            landed = draw.randrange(int(point == "send-read"), len(groups[tp]) + 1)
            if landed:
                world.append({tp: groups[tp][:landed]}, headers, stamp)
        world.trace.append(
            f"  {worker.name}/{worker.current_task}: a send failed for "
            + ", ".join(f"{topic}/{partition}" for topic, partition in failed)
            + "; sending them again"
        )
        try:
            await Wait("retry", world.step + draw.randint(1, 4))
        except Fenced:
            world.trace.append(f"  {worker.name}/{worker.current_task}: rebalanced meanwhile")
            raise
        while True:
            if worker.aware and world.app.generation != generation and worker.in_app_group:
                raise Fenced("the consumer group rebalanced while a flush waited for Kafka")
            if world.step >= world.refusing_until and not world.stamps_too_late(worker):
                break
            await Wait("refused", world.refusing_until)
        stamp = world.clock_ms_of(worker.name)  # a new producer batch: stamped anew
        acked.update(world.append({tp: groups[tp] for tp in failed}, headers, stamp))
        return acked

    async def read(self, topic: str, partition: int, start: int, end: int) -> list[LogRecord]:
        await self._round_trip()
        self.world.crash_point(self.worker, "read")
        self.worker.stumble("read")
        return present(self.world.log.records(topic, partition)[start:end])

    async def end_offset(self, topic: str, partition: int) -> int:
        await self._round_trip()
        self.world.crash_point(self.worker, "read")
        self.worker.stumble("read")
        return len(self.world.log.records(topic, partition))

    async def _round_trip(self) -> None:
        """A request to the broker takes time: other records may land meanwhile (drawn from
        the takeover stream, so that the seed's faults stay as they were)."""
        draw = self.world.takeover_rng
        if draw.random() < 0.15:
            await Wait("pause", self.world.step + draw.randrange(1, 4))


# a threshold evaluation: (tenant-commands partition, the offset of the command it ran for,
# tenant, its now, the tenant's requests whose receipt its state holds, and those it knows)
Evaluation = tuple[int, int, str, datetime, frozenset[str], frozenset[str]]
_handling: ContextVar[tuple[int, int] | None] = ContextVar("handling", default=None)
# the pauses of the group whose handlers the activity applies (a stumble there takes one)
_group: ContextVar[GroupPauses | None] = ContextVar("group", default=None)
# the event whose handler runs in the activity now (topic, partition, offset)
_event: ContextVar[tuple[str, int, int] | None] = ContextVar("event", default=None)
# whether the activity is inside a repair (`RepairWatchedBatch`)
# whether the activity is inside a repair (`RepairWatchedBatch`): "" (no), "marks" (a
# takeover's), "lineage" (a flush's or a lineage check's)
_repairing: ContextVar[str] = ContextVar("repairing", default="")


def in_repair(aim: str) -> bool:
    """Whether a fault aimed at "repair" (any) or "repair-lineage" strikes here."""
    where = _repairing.get()
    return bool(where) and (aim == "repair" or where == "lineage")


class RepairWatchedBatch(DurableBatch):
    """The real batch, telling the world when it repairs a deposed owner's records, for the
    faults aimed inside a repair (SIMULATE_REPAIR_FAULTS=1): from the moment a flush or a
    lineage check found them (`_repair`) to the end of that flush or check, and all through a
    takeover's `repair_marked`. It changes nothing the batch does."""

    async def _repair(self, zombies: dict[TopicPartition, list[LogRecord]]) -> None:
        if not _repairing.get():
            _repairing.set("lineage")  # until the flush or check that repairs ends
        await super()._repair(zombies)

    async def flush(self) -> None:
        outer = _repairing.get()
        try:
            await super().flush()
        finally:
            if not outer:
                _repairing.set("")

    async def check_lineage(self, stage: str, partitions: Sequence[int]) -> None:
        outer = _repairing.get()
        try:
            await super().check_lineage(stage, partitions)
        finally:
            _repairing.set(outer)

    async def repair_marked(self, stage: str, partitions: Sequence[int], heal: Any = None) -> None:
        marked = any(
            MemoryState.scan(self._state, table, partition, keys.REPAIR, None, 1)  # type: ignore[arg-type]
            for table, (owner, _) in TABLES.items()
            if owner == stage
            for partition in partitions
        )
        token = _repairing.set("marks" if marked else _repairing.get())
        try:
            await super().repair_marked(stage, partitions, heal)
        finally:
            _repairing.reset(token)


class ObservedTenantStage(TenantStage):
    """The tenant stage, telling the oracle which command each threshold evaluation ran for (a
    context variable: the stage's tasks interleave at their awaits, each in its own context)
    and which of the tenant's deletions its state knows and has completed: a replay applies
    commands again to a state that may be past them."""

    evaluations: list[Evaluation]
    evaluated: list[EvaluatedCounts]
    learner_ends: Callable[[], dict[int, int]]

    async def handle_record(self, batch: Batch, record: Record) -> None:
        previous = _handling.get()
        _handling.set((record.partition, record.offset))
        try:
            await super().handle_record(batch, record)
        finally:
            _handling.set(previous)

    def check_thresholds(
        self,
        batch: Batch,
        partition: int,
        tenant_id: str,
        license_: License,
        published: dict[str, list[int]],
        windows: dict[str, Window],
        now: datetime,
    ) -> None:
        command = _handling.get()
        if command is not None:
            prefix = keys.deletion(tenant_id, "")
            requests = scan_all(batch, keys.TENANT_STATE, partition, prefix)
            known = {unquote(key[len(prefix) :].decode()): stored for key, stored in requests}
            completed = {r for r, stored in known.items() if stored_receipt(stored) is not None}
            self.evaluations.append(
                (*command, tenant_id, now, frozenset(completed), frozenset(known))
            )
            if license_.learner_limit is not None:
                seen = [
                    (start, window.end.isoformat(), window.months, published[start][0])
                    for start, window in sorted(windows.items())
                    if start in published
                ]
                partials = {
                    int(p): (stored["cut"], dict(stored["windows"]))
                    for p, stored in stored_partials(batch, partition, tenant_id).items()
                }
                ends = self.learner_ends()
                self.evaluated.append((*command, tenant_id, now, seen, partials, ends))
        super().check_thresholds(batch, partition, tenant_id, license_, published, windows, now)


class SimWorker:
    """One worker process: a state folder and, while alive, the stages and their tasks."""

    def __init__(self, world: World, name: str) -> None:
        self.world = world
        self.name = name
        self.state = SimState(self)
        self.alive = False
        self.start()

    def start(self) -> None:
        world = self.world
        self.alive = True
        self.aware = True  # False while deposed without knowing it
        self.wakes_at = 0
        self.in_app_group = False
        self.noticed = False  # a deposed worker learned it is out (acted on between steps)
        # the generation in which the coordinator answered this member's takeover "no" (a
        # rebalance under way): no takeover of it begins again (SIMULATE_MEMBER_FAULTS=1)
        self.refused: int | None = None
        self.view_generation = 0
        self.launch_generation = 0
        self.app_parts: list[int] = []
        self.launch_parts: list[int] = []
        self.own_parts: dict[str, list[int]] = {}  # of input topics that gained partitions
        self.positions: dict[TopicPartition, int] = {}
        self.acked: dict[TopicPartition, int] = {}
        self.ready = False
        self.crash_plans: list[CrashPlan] = []
        self.glitches = Glitches()
        self.stumble_plans: list[StumblePlan] = []
        self.activities: dict[str, Activity] = {}
        self.current_task = ""
        self.ownership = Ownership()
        self.log = SimLog(world, self)
        clock = self.now  # the machine's own clock, skewed or not
        self.ingest = IngestStage(world.partitions, clock=clock)
        self.learner = LearnerStage(
            world.partitions, read_raw=world.read_raw, clock=clock, backlog=world.backlog
        )
        # every tenant a tick skips is published in a savepoint all the same: a skip that would
        # have written is a bug of the run
        self.tenant = ObservedTenantStage(
            world.partitions, clock=clock, unsafe_skip=world.bugs.append
        )
        self.tenant.evaluations = world.evaluations
        self.tenant.evaluated = world.evaluated
        self.tenant.learner_ends = lambda: {
            p: len(world.log.records(topics.LEARNER_COMMANDS, p)) for p in range(world.partitions)
        }

    def now(self) -> datetime:
        return self.world.now_of(self.name)

    def crashes_at(self, point: str, what: frozenset[str] = frozenset()) -> bool:
        """Whether an armed crash plan strikes here (it is used up)."""
        for plan in self.crash_plans:
            if plan.reached(self, point, what):
                self.crash_plans.remove(plan)
                if plan.task.startswith("repair"):
                    self.world.repair_faults.append(f"crash {point}")
                    self.world.trace.append(
                        f"  {self.name}/{self.current_task}: dies inside a repair ({point})"
                    )
                return True
        return False

    def stumbles_at(self, point: str) -> StumblePlan | None:
        """The armed stumble plan that strikes here, if one does (it is used up)."""
        for plan in self.stumble_plans:
            if plan.repair and not in_repair(plan.repair):
                continue
            if plan.repair == "lineage-agent" and self.current_task.startswith("takeover"):
                continue
            if plan.point == point or (point == "send" and plan.point == "send-read"):
                if plan.countdown > 1:
                    plan.countdown -= 1
                    return None
                group, event = _group.get(), _event.get()
                if group is not None and event is not None and point != "send":
                    if (
                        group.left - group.owed < 1
                        or event in group.stumbled_events | group.failed_events
                        or event in self.glitches.lasts
                    ):
                        return None  # not in this event: a later occurrence
                    group.owed += 1
                    group.stumbled = self.glitches.struck
                    group.stumbled_events.add(event)
                self.stumble_plans.remove(plan)
                if plan.point == "send-read":
                    # the lineage check's read of what landed before the send again fails
                    self.stumble_plans.insert(0, StumblePlan("read", 1, plan.repair))
                if plan.repair:
                    self.world.repair_faults.append(f"stumble {plan.point}")
                    self.world.trace.append(
                        f"  {self.name}/{self.current_task}: fails inside a repair ({plan.point})"
                    )
                return plan
        return None

    def stumble(self, point: str) -> None:
        if self.stumble_plans and self.stumbles_at(point):
            self.world.trace.append(f"  {self.name}/{self.current_task}: a {point} request failed")
            raise Stumble(f"a {point} request failed (simulated)")

    def batch(self, tenant: bool = False) -> DurableBatch:
        """A batch of the learner stage or ingest (outputs first), or of the tenant stage (its
        state first, see streams/stages/tenants.py)."""
        if tenant:
            return RepairWatchedBatch(
                self.state,
                self.log,
                self.ownership,
                self.tenant.repair_outputs,
                outputs_first=False,
            )
        return RepairWatchedBatch(self.state, self.log, self.ownership)

    # -- restoring a partition from its changelog (streams/worker/recovery.py does the same) ---
    def restore(self, table: str, partition: int) -> None:
        rows = self.state.partition(table, partition)
        changelog = TABLES[table][1]
        records = self.world.log.records(changelog, partition)
        marked = any(key.startswith(keys.REPAIR) for key in rows.rows)
        if starts_afresh(len(records) - 1 > rows.offset, marked):
            rows.write(dict.fromkeys(rows.rows))
            rows.offset, rows.fence = -1, NO_EPOCH
            self.world.trace.append(f"  {self.name}: {table}/{partition} restored from the start")
        # the rule of streams/worker/recovery.py: a deposed owner's records are marked on disk
        writes, fence = restore_rule(
            present(records[rows.offset + 1 :]),
            rows.fence,
            lambda names: [rows.rows.get(name) for name in names],
        )
        rows.write(writes)
        rows.offset = len(records) - 1
        rows.fence = fence


class World:
    """Kafka, the workers, the simulated clock and the faults in effect."""

    # A group whose flush failed is applied again, as the worker's agents do
    # (`_apply_until_done`). True only in a test that the checks see the other way: faust's own
    # for an agent that lets the exception out (the group skipped, the groups after it
    # acknowledged and committed).
    skip_failed_groups: ClassVar[bool] = False

    def __init__(self, seed: int, partitions: int, launch_partitions: int, start: datetime) -> None:
        self.rng = random.Random(seed)
        # how a takeover's steps interleave with the world (its own stream: drawing from it
        # leaves the faults the seed draws as they were)
        self.takeover_rng = random.Random(f"takeover/{seed}")
        # how long a restore takes (its own stream too): a deposed worker's slow restore can
        # read what its successor wrote meanwhile
        self.restore_rng = random.Random(f"restore/{seed}")
        # which takeovers a rebalance leaves running (its own stream too)
        self.stale_rng = random.Random(f"stale-takeovers/{seed}")
        # how long a takeover's acks take to come back (its own stream too): a rebalance may
        # begin while they are on their way, and the takeover go on after it
        self.ack_rng = random.Random(f"takeover-acks/{seed}")
        # how the partitions an input topic gained are assigned (its own stream too)
        self.growth_rng = random.Random(f"growth-assignment/{seed}")
        # which table partitions a restart loses of a folder it keeps (its own stream too)
        self.wipe_rng = random.Random(f"partial-wipes/{seed}")
        # how a stumble's send fails (its own stream too)
        self.stumble_rng = random.Random(f"stumbles/{seed}")
        # what a refused send landed before its refusal (its own stream too)
        self.limit_rng = random.Random(f"record-limit-landing/{seed}")
        # whether a process dies between a refused pass and the next (its own stream too)
        self.refused_crash_rng = random.Random(f"record-limit-crash/{seed}")
        self.dies_on_refusals = True  # (until the faults end)
        self.partitions = partitions
        self.launch_partitions = launch_partitions
        self.launch_partitions_at_start = launch_partitions
        self.clock_ms = int(start.timestamp() * 1000)
        # how far each worker's machine clock is off (ms, by worker name: a restarted process
        # keeps its machine's clock); the brokers and the input's producers read `clock_ms`
        self.skews: dict[str, int] = {}
        self.stamp_ms: int | None = None  # the timestamp of the records being appended
        self.step = 0
        self.log = MemoryLog(
            partitions, clock=lambda: self.clock_ms if self.stamp_ms is None else self.stamp_ms
        )
        self.app = Group("app", partitions, APP_TOPICS)
        self.launches = Group("launches", launch_partitions, (topics.LAUNCHES,))
        self.workers: dict[str, SimWorker] = {}
        self.refusing_until = -1
        self.compacting = False  # the log cleaner runs over every changelog before the end
        # what a send reaches before its process dies (tests set it; else random)
        self.landing: Callable[[TopicPartition, Sequence[Pair]], int] | None = None
        self.in_flight: list[InFlight] = []
        # how many steps late a deposed owner's send may land (at most): longer with
        # SIMULATE_REPAIR_FAULTS=1, so that more land after its successor's takeover, where a
        # flush or a lineage check repairs them (a produce request may take up to its
        # delivery timeout, two minutes by default, while the broker is slow)
        self.late_steps = 25
        # how many steps a deposed owner's records of the output topics (counts, threshold
        # events, receipts) take to land, (fewest, most), its others 0-3; or None (`late_steps`
        # for all): set by the runner at a rest point of SIMULATE_LATE_COUNTS=1 that deposes a
        # worker, drawn from a stream of its own
        self.held_outputs: tuple[int, int] | None = None
        self.late_counts_rng = random.Random(f"late-counts/{seed}")
        self.deposed_work: Callable[[World, SimWorker], None] | None = None
        # the learner stage keeps the counters of its previous assignment until its takeover
        # releases them, as the worker does (streams/worker/agents/learners.py), instead of at
        # the rebalance: its partial-count timer may send them meanwhile, under the old epochs
        # (with SIMULATE_TAKEOVER_TIMERS)
        self.release_at_takeover = False
        self.gave_up: list[str] = []  # events a stage gave up on: always a finding
        self.bugs: list[str] = []  # exceptions that escaped a unit of work
        # every threshold evaluation of every tenant stage: (tenant-commands partition, the
        # offset of the command it ran for, tenant, its now), for `oracle.check_threshold_holds`
        self.evaluations: list[Evaluation] = []
        self.evaluated: list[EvaluatedCounts] = []
        self.refused_takeovers = 0  # takeovers the group's answer stopped (a deposed worker's)
        # the faults struck inside a repair (SIMULATE_REPAIR_FAULTS=1), as "crash <point>" or
        # "stumble <point>"
        self.repair_faults: list[str] = []
        # the largest record Kafka takes (key, value and headers; SIMULATE_RECORD_LIMIT=1), and
        # the sends it refused for it
        self.record_limit: int | None = None
        self.refused_records = 0
        self.refused_launches: list[str] = []  # dead-lettered for their command's size
        # the group coordinator's answers to a takeover's question, armed by worker
        # (SIMULATE_MEMBER_FAULTS=1): [answer ("no" | "error"), countdown]; and those given
        self.member_plans: dict[str, list[list[Any]]] = {}
        self.member_faults: list[str] = []
        self.rebalance_due = False  # a rebalance under way (the coordinator said so)
        self.trace: list[str] = []
        self.produced: list[tuple[str, int, int]] = []  # positions of the inputs, in order

    # -- time and topics --------------------------------------------------------------------------
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock_ms / 1000, UTC)

    def clock_ms_of(self, name: str) -> int:
        """What the clock of a worker's machine reads."""
        return self.clock_ms + self.skews.get(name, 0)

    def now_of(self, name: str) -> datetime:
        return datetime.fromtimestamp(self.clock_ms_of(name) / 1000, UTC)

    def stamps_too_late(self, worker: SimWorker) -> bool:
        """Whether the brokers refuse the worker's records for their timestamps: Kafka 4 takes
        none more than `message.timestamp.after.max.ms` (an hour) ahead of its own clock, and
        the service's Log retries them until its clock is right or the group rebalances."""
        return self.skews.get(worker.name, 0) > TIMESTAMP_AFTER_MAX_MS

    def set_skew(self, name: str, skew_ms: int) -> None:
        """A worker's machine clock steps to `skew_ms` off the true time (back, when that is
        less than it was)."""
        before = self.skews.get(name, 0)
        if skew_ms == before:
            return
        self.skews[name] = skew_ms
        self.trace.append(f"  {name}'s clock stepped by {(skew_ms - before) / 1000:+.0f} s")

    def partitions_of(self, topic: str) -> int:
        return self.launch_partitions if topic == topics.LAUNCHES else self.app.count(topic)

    def parts_of(self, worker: SimWorker, topic: str) -> list[int]:
        """The partitions of `topic` the worker consumes."""
        if topic == topics.LAUNCHES:
            return worker.launch_parts
        return worker.own_parts.get(topic, worker.app_parts)

    def grow(self, topic: str, added: int) -> None:
        """An operator adds partitions to an input topic (`kafka-topics --alter`), which takes
        a moment: from then on producers hash keys over the new count (Kafka's default
        partitioner), so a key's later records land in another partition than its earlier
        ones, and each consumer group rebalances to read the new partitions from their start
        (auto.offset.reset=earliest)."""
        if topic == topics.LAUNCHES:
            self.launch_partitions += added
            self.launches.partitions = self.launch_partitions
        else:
            self.app.own_counts[topic] = self.app.count(topic) + added
        self.clock_ms += GROWTH_MS
        self.trace.append(f"  {topic} has {self.partitions_of(topic)} partitions now")
        self.rebalance()

    def producer_partition(self, topic: str, key: bytes | None, drawn: int) -> int:
        """Where an input's producer writes a record it drew for `drawn`: a keyed record of a
        topic that gained partitions goes where its key hashes to now."""
        grown = topic in self.app.own_counts or (
            topic == topics.LAUNCHES and self.launch_partitions != self.launch_partitions_at_start
        )
        if key is None or not grown:
            return drawn
        return crc32(key) % self.partitions_of(topic)

    def append(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers],
        stamp_ms: int,
    ) -> dict[TopicPartition, tuple[int, int]]:
        """A worker's send lands, with the timestamp its producer gave the records."""
        self.stamp_ms = stamp_ms
        try:
            return {
                tp: self.log.append(tp[0], tp[1], records, headers.get(tp, ()))
                for tp, records in groups.items()
            }
        finally:
            self.stamp_ms = None

    def refuse_large(
        self,
        worker: SimWorker,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers],
        stamp_ms: int,
        caps: BatchCaps,
    ) -> None:
        """Kafka refuses a producer batch above `record_limit` (the topic's max.message.bytes
        bounds a batch, not a record), as the worker's `KafkaLog` cuts a group into batches
        (`caps`, learned from earlier refusals): of a partition whose batch was refused, the
        records before that batch may have landed, never a batch after it (a KafkaLog sends a
        partition's next batch only once the one before is acknowledged), and the other
        partitions' groups too (each partition is appended on its own). A batch of several
        records refused: that topic's batches are cut smaller and the groups go again (and
        may land twice), unless the process dies first; a record refused alone: the send fails
        with `RecordTooLarge`."""
        limit = self.record_limit
        assert limit is not None

        def size(pair: Pair, tp: TopicPartition) -> int:
            extra = sum(len(name) + len(value) for name, value in headers.get(tp, ()))
            return len(pair[0] or b"") + len(pair[1] or b"") + extra

        while True:
            refused: dict[TopicPartition, tuple[int, int, int]] = {}
            for tp, rows in groups.items():
                sizes = [size(pair, tp) for pair in rows]
                for batch in caps.cut(tp[0], sizes):
                    if batch[2] > limit:
                        refused[tp] = batch  # (first record, records, bytes)
                        break
            if not refused:
                return
            draw = self.limit_rng
            self.stamp_ms = stamp_ms
            try:
                for tp, rows in sorted(groups.items()):
                    landed = draw.randrange(refused[tp][0] + 1) if tp in refused else len(rows)
                    if landed and (tp in refused or draw.random() < 0.7):
                        self.log.append(tp[0], tp[1], rows[:landed], headers.get(tp, ()))
            finally:
                self.stamp_ms = None
            names = ", ".join(f"{topic}/{partition}" for topic, partition in sorted(refused))
            if any(records == 1 for _, records, _ in refused.values()):
                self.refused_records += 1
                self.trace.append(
                    f"  {worker.name}/{worker.current_task}: Kafka refused a record of {names}"
                )
                raise RecordTooLarge(f"Kafka refused a record of {names} for its size (simulated)")
            for tp, (_, records, taken) in sorted(refused.items()):
                caps.refused(tp[0], taken, records)
            if self.dies_on_refusals and self.refused_crash_rng.random() < 0.2:
                # the process dies before the group went again: what landed stays as it is
                self.trace.append(
                    f"  {worker.name}/{worker.current_task}: Kafka refused a batch of {names}; "
                    "dies before it went again"
                )
                raise Crash
            self.trace.append(
                f"  {worker.name}/{worker.current_task}: Kafka refused a batch of {names}; "
                "cut smaller and sent again"
            )

    def append_some(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers],
        stamp_ms: int,
    ) -> None:
        """What a send reached before the process died: any subset of its partitions, of some
        of them only the first records (several producer batches)."""
        self.stamp_ms = stamp_ms
        try:
            self._append_some(groups, headers)
        finally:
            self.stamp_ms = None

    def _append_some(
        self,
        groups: Mapping[TopicPartition, Sequence[Pair]],
        headers: Mapping[TopicPartition, Headers],
    ) -> None:
        for tp, records in groups.items():
            if self.landing is not None:
                landed = self.landing(tp, records)
                if landed:
                    self.log.append(tp[0], tp[1], records[:landed], headers.get(tp, ()))
                continue
            roll = self.rng.random()
            if roll < 0.4:
                self.log.append(tp[0], tp[1], records, headers.get(tp, ()))
            elif roll < 0.55 and len(records) > 1:
                some = records[: self.rng.randrange(1, len(records))]
                self.log.append(tp[0], tp[1], some, headers.get(tp, ()))

    async def read_raw(self, topic: str, partition: int, offset: int) -> bytes | None:
        records = self.log.records(topic, partition)
        return records[offset].value if offset < len(records) else None

    async def backlog(self, partition: int) -> AsyncIterator[list[bytes | None]]:
        """The learner-commands records of a partition from the group's committed offset on,
        in chunks of a few (as the worker reads them: in chunks)."""
        records = self.log.records(topics.LEARNER_COMMANDS, partition)
        start = self.app.committed.get((topics.LEARNER_COMMANDS, partition), 0)
        values = [record.value for record in present(records[start:])]
        for at in range(0, len(values), 3):
            yield values[at : at + 3]

    def produce(self, topic: str, key: bytes | None, value: bytes | None, partition: int) -> None:
        """An input record, written by the LMS (or an operator)."""
        drawn, partition = partition, self.producer_partition(topic, key, partition)
        if partition != drawn:
            self.trace.append(f"  written to {topic}/{partition} (where its key hashes now)")
        offset, _ = self.log.append(topic, partition, [(key, value)])
        self.produced.append((topic, partition, offset))

    def compact(self, topic: str, partition: int, active: int) -> None:
        """Kafka's log cleaner runs over a changelog partition, up to its last `active` records
        (the active segment, never cleaned), with the topic's configuration as the service
        creates it (streams/kafka/admin.py)."""
        config = TOPICS_BY_NAME[topic].configs()
        log = self.log.records(topic, partition)
        removed = self.log.compact(
            topic,
            partition,
            len(log) - active,
            self.clock_ms,
            int(config.get("min.compaction.lag.ms", "0")),
            int(config.get("delete.retention.ms", str(DAY_MS))),
        )
        if removed:
            self.trace.append(f"  the log cleaner removed {removed} records of {topic}/{partition}")

    # -- membership -------------------------------------------------------------------------------
    def members(self) -> list[str]:
        return [name for name, w in self.workers.items() if w.alive and w.aware]

    def rebalance(self, assignment: Mapping[str, Sequence[int]] | None = None) -> None:
        """Both groups, with every live worker that knows it is a member (`assignment`: which
        app partitions each gets, instead of a random spread; for tests)."""
        members = self.members()
        self.app.rebalance(members, self.rng, self.growth_rng)
        self.launches.rebalance(members, self.rng, self.growth_rng)
        if assignment is not None:
            self.app.assignment = {name: sorted(assignment.get(name, ())) for name in members}
        for name in members:
            worker = self.workers[name]
            self._abandon(worker)
            worker.in_app_group = True
            worker.view_generation = self.app.generation
            worker.launch_generation = self.launches.generation
            worker.app_parts = list(self.app.assignment[name])
            worker.launch_parts = list(self.launches.assignment[name])
            worker.own_parts = {
                topic: list(self.app.parts_of(name, topic)) for topic in self.app.own_counts
            }
            worker.positions = {
                (topic, p): self.app.committed.get((topic, p), 0)
                for topic in APP_TOPICS
                for p in self.parts_of(worker, topic)
            }
            worker.positions.update(
                {
                    (topics.LAUNCHES, p): self.launches.committed.get((topics.LAUNCHES, p), 0)
                    for p in worker.launch_parts
                }
            )
            worker.acked = {}
            worker.ready = False
            if not self.release_at_takeover:
                worker.learner.release()
        self.trace.append(
            f"  rebalance: generation {self.app.generation}: "
            + ", ".join(f"{n}={self.app.assignment[n]}" for n in self.app.members)
            + "".join(
                f"; {topic}: " + ", ".join(f"{n}={parts[n]}" for n in self.app.members)
                for topic, parts in self.app.own_assignment.items()
            )
        )

    def _abandon(self, worker: SimWorker) -> None:
        """A rebalance reached the worker: what waits for Kafka stops (Fenced), the rest is
        dropped; nothing of it is acknowledged. But faust does not cancel the tables'
        on_recover callbacks: a takeover past its restore may go on (half of them here), under
        a task name of its own, beside the newer generation's takeover; it must stop by itself
        (streams/stages/takeover_steps.py)."""
        for task, activity in list(worker.activities.items()):
            if activity.waiting is not None and activity.waiting.kind in ("refused", "retry"):
                self.drive(worker, activity, exc=Fenced("rebalanced while waiting for Kafka"))
            if task not in worker.activities:
                continue
            del worker.activities[task]
            if activity.outlives_rebalance and self.stale_rng.random() < 0.5:
                activity.task = f"{task}@{worker.view_generation}"
                worker.activities[activity.task] = activity
                self.trace.append(
                    f"  {worker.name}: its takeover of generation {worker.view_generation} "
                    "goes on (faust does not cancel it)"
                )
                continue
            activity.close()

    def notice(self, worker: SimWorker) -> None:
        """Called inside a unit of work: the worker learned it was deposed (a refused commit,
        a fence); it acts on it once the unit has ended."""
        if not worker.aware:
            worker.noticed = True

    def kill(self, worker: SimWorker) -> None:
        for activity in worker.activities.values():
            activity.close()
        worker.activities.clear()
        worker.alive = False
        worker.ready = False
        worker.in_app_group = False
        self.trace.append(f"  {worker.name} died")

    def wake(self, worker: SimWorker) -> None:
        """A deposed worker learns it is out: it drops its work and joins again (a takeover
        past its restore is left to the rebalance's `_abandon`: faust does not cancel it)."""
        for task, activity in list(worker.activities.items()):
            if not activity.outlives_rebalance:
                activity.close()
                del worker.activities[task]
        worker.aware = True
        worker.noticed = False
        self.trace.append(f"  {worker.name} noticed it was deposed")
        self.rebalance()

    # -- driving coroutines -----------------------------------------------------------------------
    def run(self, worker: SimWorker, task: str, coro: Coroutine[Any, Any, Any]) -> None:
        activity = Activity(coro, task)
        worker.activities[task] = activity
        self.drive(worker, activity)

    def drive(
        self,
        worker: SimWorker,
        activity: Activity,
        value: Any = None,
        exc: BaseException | None = None,
    ) -> None:
        if worker.activities.get(activity.task) is not activity:
            return  # finished or dropped meanwhile (a rebalance that an earlier step caused)
        activity.waiting = None
        worker.current_task = activity.task
        try:
            if exc is not None:
                waited = activity.context.run(activity.coro.throw, exc)
            else:
                waited = activity.context.run(activity.coro.send, value)
        except StopIteration:
            worker.activities.pop(activity.task, None)
        except (Crash, LocalWriteFailed) as exc_:
            # (LocalWriteFailed: the agents stop the worker, streams/worker/agents/loop.py)
            worker.activities.pop(activity.task, None)
            if isinstance(exc_, LocalWriteFailed):
                self.trace.append(f"  {worker.name}: a local write failed; it stops")
            self.kill(worker)
            if worker.name in self.app.members:
                self.rebalance()
            return
        except Rejoin as exc_:
            worker.activities.pop(activity.task, None)
            self.trace.append(f"  {worker.name}: {exc_}; it asks for a rebalance")
            if worker.aware and worker.name in self.app.members:
                self.rebalance()
        except Fenced:
            worker.activities.pop(activity.task, None)
            self.notice(worker)
        except Exception as exc_:  # a bug: the stages must never raise out of a unit
            worker.activities.pop(activity.task, None)
            self.bugs.append(f"{worker.name}/{activity.task}: {type(exc_).__name__}: {exc_}")
        else:
            assert isinstance(waited, Wait), waited
            activity.waiting = waited
            return
        if worker.noticed and worker.alive:
            self.wake(worker)

    def advance(self) -> None:
        """One step: land what is due, end a refusal that is over, resume what waited."""
        self.step += 1
        if self.rebalance_due:
            self.rebalance_due = False
            self.trace.append("  the rebalance under way ends")
            self.rebalance()
        for flight in self.in_flight:
            for tp, lands_at in flight.lands.items():
                if lands_at <= self.step and tp not in flight.acks:
                    flight.acks.update(
                        self.append({tp: flight.groups[tp]}, flight.headers, flight.stamp_ms)
                    )
        due = [f for f in self.in_flight if f.land_at <= self.step]  # every group landed
        self.in_flight = [f for f in self.in_flight if f.land_at > self.step]
        for flight in due:
            worker = flight.worker
            for activity in list(worker.activities.values()):
                if activity.waiting is flight.wait:
                    self.drive(worker, activity, value=flight.acks)
        for worker in list(self.workers.values()):
            if worker.alive and not worker.aware:
                if self.step >= worker.wakes_at:
                    self.wake(worker)
                elif self.deposed_work is not None:
                    # a deposed worker does not pause: it works on what it thinks it owns
                    self.deposed_work(self, worker)
        if self.step >= self.refusing_until:
            for worker in list(self.workers.values()):
                for activity in list(worker.activities.values()):
                    if activity.waiting is not None and activity.waiting.kind == "refused":
                        self.drive(worker, activity)
        for worker in list(self.workers.values()):
            for activity in list(worker.activities.values()):
                waiting = activity.waiting
                if (
                    waiting is not None
                    and waiting.kind in ("pause", "retry")
                    and waiting.until <= self.step
                ):
                    self.drive(worker, activity)

    def busy(self) -> bool:
        return bool(self.in_flight) or any(w.activities for w in self.workers.values() if w.alive)

    # -- units of work ----------------------------------------------------------------------------
    def take(self, worker: SimWorker, topic: str, parts: Sequence[int], limit: int) -> list[Record]:
        """Up to `limit` records of `topic` from the worker's positions, from one or two of its
        partitions (faust hands an agent events of several partitions in one group)."""
        available = [
            p
            for p in parts
            if worker.positions.get((topic, p), 0) < len(self.log.records(topic, p))
        ]
        self.rng.shuffle(available)
        out: list[Record] = []
        for partition in available[: self.rng.choice((1, 1, 2))]:
            log = self.log.records(topic, partition)
            start = worker.positions[(topic, partition)]
            for record in log[start : start + limit]:
                out.append(
                    Record(
                        record.key,
                        record.value,
                        topic,
                        partition,
                        record.offset,
                        record.timestamp_ms,
                    )
                )
            worker.positions[(topic, partition)] = min(len(log), start + limit)
        return out

    def ack(self, worker: SimWorker, records: Sequence[Record]) -> None:
        for record in records:
            tp = (record.topic, record.partition)
            if worker.acked.get(tp, self.app.committed.get(tp, 0)) == record.offset:
                worker.acked[tp] = record.offset + 1

    def crash_point(self, worker: SimWorker, point: str) -> None:
        if worker.crashes_at(point):
            raise Crash

    def commit(self, worker: SimWorker) -> None:
        """faust's periodic commit of acknowledged offsets."""
        if not worker.alive or not worker.in_app_group:
            return
        if worker.view_generation != self.app.generation:
            if not worker.aware:
                self.wake(worker)  # the commit is refused: the worker learns it was deposed
            return
        for tp, offset in worker.acked.items():
            if tp[1] in self.app.parts_of(worker.name, tp[0]):
                self.app.committed[tp] = max(self.app.committed.get(tp, 0), offset)

    def give_up(self, stage: Callable[[Batch, Record, BaseException], Any]) -> Any:
        async def recorded(batch: Batch, record: Record, exc: BaseException) -> None:
            self.gave_up.append(f"{record.position()}: {type(exc).__name__}: {exc}")
            given = stage(batch, record, exc)
            if given is not None:
                await given

        return recorded

    async def unit_agent(self, worker: SimWorker, topic: str, limit: int) -> None:
        records = self.take(worker, topic, self.parts_of(worker, topic), limit)
        if not records:
            return
        tenant = topic == topics.TENANT_COMMANDS
        stumbled = again = 0
        while True:
            batch = worker.batch(tenant=tenant)
            try:
                await self._apply_group(worker, topic, records, batch)
            except Fenced:
                self.notice(worker)
                return
            except Stumble:
                # a flush that failed (a read of its lineage check): the worker's agent applies
                # the group again on a new batch (`_apply_until_done`), as long as it fails
                # (each stumble is used up: the plans armed run out)
                if self.skip_failed_groups:
                    break
                stumbled += 1
                self.trace.append(f"  {worker.name}/{topic}: the group failed; applying it again")
                await Wait("pause", self.step + min(stumbled, 5))
                continue
            except Glitch as exc:
                # A glitch that struck in a flush a handler made (its repair round, say) is the
                # group's failure (streams/stages/loop.py): the worker's agent applies the group
                # again (streams/worker/agents/loop.py `_apply_until_done`), so does this one
                # (seed 10910962 of the edges with group races). Any other exception, and a glitch
                # the loop let escape from a handler, stays a bug.
                if exc is not getattr(batch, "flush_error", None) or again == GROUP_AGAIN_MAX:
                    raise
                self.trace.append(f"  {worker.name}/{topic}: the group failed; applying it again")
                worker.glitches.paused(topic)
                await Wait("pause", self.step + 1 + again)
                again += 1
                continue
            break
        self.crash_point(worker, "ack")
        self.ack(worker, records)

    async def _apply_group(
        self, worker: SimWorker, topic: str, records: list[Record], batch: Any
    ) -> None:
        stage = worker.ingest
        if topic == topics.LEARNER_GROUPS:
            # failing, or refused for its size, the group goes record by record, as the
            # worker's (streams/worker/agents/ingest.py `_groups`; seed 16916144 of the record
            # limit: without it every record of a refused command was dead-lettered)
            await apply_events(
                batch,
                [records],
                _groups_handler(stage),
                self.give_up_many(stage),
                "ingest-groups",
                split=_one_by_one,
            )
            return
        handle, give_up = self.handlers(worker, topic)
        split = _SPLITS.get(topic)
        group = GroupPauses()
        if split is not None:
            handle = worker.glitches.wrap(handle, group)
        handle = _watched(handle, group)
        token = _group.set(group)
        try:
            await apply_events(
                batch,
                records,
                handle,
                self.give_up(give_up),
                topic,
                pause=self.pause(worker, topic, group),
                split=split,
            )
        finally:
            _group.reset(token)

    def pause(self, worker: SimWorker, topic: str, group: GroupPauses) -> Any:
        """The loop's pause between an event's tries (0.5 s, then 1 s in the agents): a few
        steps, in which the world goes on; a passing failure (a glitch) lasts so many."""

        async def paused(tries: int) -> None:
            group.paused()
            if group.stumbled >= 0 and group.stumbled == worker.glitches.struck:
                group.stumbled = -1  # a stumble's pause: no glitch's lasts go down
            else:
                worker.glitches.paused(topic)
            await Wait("pause", self.step + tries)

        return paused

    def give_up_many(self, stage: IngestStage) -> Any:
        def recorded(batch: Batch, records: list[Record], exc: BaseException) -> None:
            for record in records:
                self.gave_up.append(f"{record.position()}: {type(exc).__name__}: {exc}")
                ingest.give_up(batch, record, exc, stage.clock())

        return recorded

    def handlers(self, worker: SimWorker, topic: str) -> tuple[Any, Any]:
        stage = worker.ingest
        if topic == topics.LICENSES:
            return _sync(stage.on_license), lambda b, r, e: ingest.give_up(b, r, e, stage.clock())
        if topic == topics.ATTEMPT_DELETIONS:
            return _sync(stage.on_deletion), lambda b, r, e: ingest.give_up(b, r, e, stage.clock())
        if topic == topics.LEARNER_COMMANDS:
            return worker.learner.handle_record, worker.learner.give_up
        return worker.tenant.handle_record, worker.tenant.give_up

    async def unit_launches(self, worker: SimWorker, limit: int) -> None:
        records = self.take(worker, topics.LAUNCHES, self.parts_of(worker, topics.LAUNCHES), limit)
        if not records:
            return
        batch = worker.batch()
        try:
            try:
                worker.ingest.route_launches(batch, records)
                await batch.flush()
            except RecordTooLarge:
                # the launch reader routes each launch alone (`LaunchReader._route_alone`)
                self.trace.append(f"  {worker.name}/launches: one launch at a time")
                await self._route_alone(worker, records)
        except Fenced:
            self.notice(worker)
            return
        except Stumble:
            # the launch reader reads the batch again (`LaunchReader._read`: rewind, a pause)
            for record in records:
                tp = (record.topic, record.partition)
                worker.positions[tp] = min(worker.positions[tp], record.offset)
            self.trace.append(f"  {worker.name}/launches: routing failed; read again")
            await Wait("pause", self.step + 2)
            return
        self.crash_point(worker, "ack")
        if worker.launch_generation != self.launches.generation:
            self.notice(worker)  # the commit is refused
            return
        if worker.stumbles_at("commit"):
            # everything is in Kafka: the batch is read again by the partition's next reader
            self.trace.append(f"  {worker.name}/launches: the commit failed")
            return
        for record in records:
            tp = (record.topic, record.partition)
            self.launches.committed[tp] = max(self.launches.committed.get(tp, 0), record.offset + 1)

    async def _route_alone(self, worker: SimWorker, records: list[Record]) -> None:
        """`LaunchReader._route_alone` (streams/worker/agents/launch_reader.py): each launch in
        a command of its own; one whose command Kafka refuses is dead-lettered."""
        stage = worker.ingest

        async def route_one(batch: Batch, record: Record) -> None:
            stage.route_launches(batch, [record])

        def given_up(batch: Batch, record: Record, exc: BaseException) -> None:
            self.refused_launches.append(record.position())
            detail = f"the service could not route this launch ({type(exc).__name__}: {exc})"
            stage.dead_letter(batch, record, Rejected("invalid", detail))

        await apply_events(worker.batch(), records, route_one, given_up, "launch-reader")

    async def unit_partials(self, worker: SimWorker) -> None:
        try:
            await send_partials(worker.learner, worker.batch)
        except Fenced:
            self.notice(worker)
        except Stumble:
            # streams/worker/agents/learners.py: the counts taken go at the next interval
            # (`send_partials` gave them back to the counters)
            self.trace.append(f"  {worker.name}/partials: the next interval sends them again")

    async def unit_timer(self, worker: SimWorker, kind: str) -> None:
        stage = TENANT if kind == "tick" else LEARNER
        owned = worker.ownership.partitions(stage)
        if not owned:
            return
        if kind == "tick":
            topic, command = topics.TENANT_COMMANDS, commands.Tick(worker.now().isoformat())
        else:
            topic, command = topics.LEARNER_COMMANDS, commands.Check()  # type: ignore[assignment]
        batch = worker.batch()
        for partition in owned:
            batch.emit(topic, kind.encode(), commands.encode(command), partition)
        try:
            await batch.flush()
        except Fenced:
            self.notice(worker)
        except Stumble:
            # (streams/worker/agents/timers.py) a command that landed somewhere is applied
            # there twice, harmlessly
            self.trace.append(f"  {worker.name}/{kind}: the next interval sends it again")

    async def unit_takeover(self, worker: SimWorker) -> None:
        """After an assignment: restore, own under new epochs, rebuild (faust's recovery and
        the agents' on_recover callbacks).

        In the worker, faust's recovery ends, then the two stages' callbacks run concurrently,
        so a deposed owner's late records may land between a restore and either takeover, and
        either stage may take over first: both are drawn here."""
        parts = list(worker.app_parts)
        generation = worker.view_generation
        slow = self.restore_rng
        for table in TABLES:
            if slow.random() < 0.1:
                # a restore takes time (a large changelog, a slow disk): a worker deposed
                # meanwhile goes on restoring, and may read its successor's takeover
                await Wait("pause", self.step + slow.randrange(1, 40))
            for partition in parts:
                worker.restore(table, partition)
        # faust's recovery has ended: from here on its on_recover callbacks run
        activity = worker.activities.get(worker.current_task)
        if activity is not None:
            activity.outlives_rebalance = True

        draw = self.takeover_rng
        stages = [self._take_over_learner, self._take_over_tenant]
        if draw.random() < 0.3:
            stages.reverse()
        given_up = False
        try:
            for take_over_stage in stages:
                if draw.random() < 0.4:
                    await Wait("pause", self.step + draw.randrange(1, 8))
                if _superseded(worker, generation):
                    # streams/worker/takeovers.py `restored`: the later recovery takes over
                    self.trace.append(
                        f"  {worker.name}: the takeover of generation {generation} does not "
                        "take its next stage over"
                    )
                    return
                try:
                    await take_over_stage(worker, parts, generation)
                except (Stumble, LocalWriteFailed) as exc:
                    if _superseded(worker, generation):
                        # streams/worker/takeovers.py `run`: a later takeover may own them
                        self.trace.append(f"  {worker.name}: a stale takeover failed; it ends")
                        return
                    # streams/worker/takeovers.py `run`: the stage's partitions released, and
                    # a rebalance asked for (its takeover owns them again)
                    self._give_up(worker, take_over_stage)
                    raise Rejoin(f"a takeover failed ({type(exc).__name__}: {exc})") from exc
                except Fenced as exc:
                    if _superseded(worker, generation):
                        # streams/worker/takeovers.py `run`: the newer takeover owns them
                        self.trace.append(
                            f"  {worker.name}: the takeover of generation {generation} stops "
                            f"({exc})"
                        )
                        return
                    if worker.refused != generation:
                        raise
                    # The coordinator said "no" to a member of the group's generation (a
                    # rebalance under way, SIMULATE_MEMBER_FAULTS): streams/worker/takeovers.py
                    # `run` gives this stage's partitions up at once (`give_up`: the learner
                    # stage's counters, then its ownership) and asks for a rebalance, which
                    # the coordinator has begun already; nothing is sent. The other stage's
                    # takeover runs on, as its own on_recover callback does in the worker: it
                    # releases what it releases at its start and asks its own question.
                    stage = self._give_up(worker, take_over_stage)
                    self.trace.append(f"  {worker.name}: gives up its {stage} partitions")
                    given_up = True
        except Fenced:
            self.notice(worker)
            return
        if _superseded(worker, generation):
            self.trace.append(f"  {worker.name}: the takeover of generation {generation} ends")
        elif not given_up:
            worker.ready = True

    def _give_up(self, worker: SimWorker, take_over_stage: Any) -> str:
        """streams/worker/agents/learners.py and tenants.py `release_partitions`."""
        if take_over_stage == self._take_over_learner:
            worker.learner.release()
            worker.ownership.release(LEARNER)
            return LEARNER
        worker.ownership.release(TENANT)
        return TENANT

    def member_check(self, worker: SimWorker) -> Callable[[int], Coroutine[Any, Any, bool]]:
        """The group coordinator's answer to a takeover's heartbeat (streams/worker/
        membership.py): a round trip, after which `generation` is the group's, or not."""

        async def still_member(generation: int) -> bool:
            await worker.log._round_trip()
            current = (
                worker.alive
                and worker.name in self.app.members
                and self.app.generation == generation
            )
            answer = self._member_fault(worker)
            member = current
            if current and self.rebalance_due:
                # the coordinator answers every member's heartbeat of this generation with
                # REBALANCE_IN_PROGRESS once a rebalance is under way
                current = False
            if answer == "error":
                # the question could not be asked (the consumer's thread stopped, a request
                # that raised): streams/worker/takeovers.py `run` gives the partitions up and
                # rejoins, as after any failed takeover
                raise Stumble("the group coordinator could not be asked (simulated)")
            if answer == "no" and current:
                # REBALANCE_IN_PROGRESS (a member joins), or no answer within the session
                # timeout (membership.py rejoins): a rebalance follows
                self.rebalance_due = True
                current = False
            if member and not current:
                worker.refused = generation  # a member's takeover: a rebalance is under way
            if not current:
                self.refused_takeovers += 1
                self.trace.append(
                    f"  {worker.name}: takeover of generation {generation} refused "
                    f"(the group is at {self.app.generation})"
                )
            return current

        return still_member

    def _member_fault(self, worker: SimWorker) -> str | None:
        """The armed fault of the coordinator's answer to this takeover's question, if one
        strikes now (SIMULATE_MEMBER_FAULTS=1)."""
        plans = self.member_plans.get(worker.name)
        if not plans:
            return None
        plan = plans[0]
        plan[1] -= 1
        if plan[1] > 0:
            return None
        plans.pop(0)
        self.member_faults.append(plan[0])
        self.trace.append(f"  {worker.name}: the coordinator's answer to its takeover: {plan[0]}")
        return str(plan[0])

    async def _take_over_learner(
        self, worker: SimWorker, parts: Sequence[int], generation: int
    ) -> None:
        if worker.view_generation == generation:
            # streams/worker/agents/learners.py `release_partitions`, at the callback's start
            if self.release_at_takeover:
                worker.learner.release()
            worker.ownership.release(LEARNER)
        await take_over_learners(
            worker.learner,
            worker.batch(),
            worker.log,
            parts,
            generation,
            self.member_check(worker),
            functools.partial(_superseded, worker),
        )

    async def _take_over_tenant(
        self, worker: SimWorker, parts: Sequence[int], generation: int
    ) -> None:
        if worker.view_generation == generation:
            worker.ownership.release(TENANT)  # (streams/worker/agents/tenants.py, the same)
        await take_over_tenants(
            worker.tenant,
            worker.batch(tenant=True),
            parts,
            generation,
            self.member_check(worker),
            functools.partial(_superseded, worker),
            worker.now,
        )


def _superseded(worker: SimWorker, generation: int) -> bool:
    """Whether a rebalance later than `generation` reached the worker (streams/worker/
    takeovers.py `superseded`)."""
    return worker.view_generation != generation


def _watched(handle: Any, group: GroupPauses) -> Any:
    """`handle`, telling a stumble which event it strikes, and which events failed otherwise
    (`GroupPauses.failed_events`)."""

    async def watched(batch: Batch, record: Record) -> None:
        position = (record.topic, record.partition, record.offset)
        token = _event.set(position)
        try:
            await handle(batch, record)
        except Stumble:
            raise
        except Exception:
            group.failed_events.add(position)
            raise
        finally:
            _event.reset(token)

    return watched


def _sync(method: Callable[[Batch, Record], None]) -> Callable[[Batch, Record], Any]:
    async def handle(batch: Batch, record: Record) -> None:
        method(batch, record)

    return handle


def _one_by_one(records: list[Record]) -> list[list[Record]]:
    return [[record] for record in records]


def _groups_handler(stage: IngestStage) -> Callable[[Batch, list[Record]], Any]:
    async def handle(batch: Batch, records: list[Record]) -> None:
        stage.group_rows(batch, records)

    return handle
