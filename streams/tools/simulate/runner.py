"""Schedules: what happens in a run, in what order, with which faults; and running them.

`generate(seed)` draws a whole schedule from a seed: the topology (1-4 partitions, 1-3 launch
partitions, 1-3 workers), then a few hundred actions: produce a record, let a worker's task do
one unit of work, commit, move the clock, and faults. `run(schedule)` executes it, settles (every
fault ends, every worker is back, everything is consumed), and checks the outcome
(streams/tools/simulate/oracle.py). A failure is shrunk to a shorter schedule that still fails.

Faults drawn:
  arm      crash a worker at its n-th send (after any subset of the send's partitions landed),
           local write (before or after it), or between a durable batch and its commit
  kill     crash a worker now; restart it later with its state folder, or without (lost)
  depose   the group expels a worker that does not know it: its sends land up to 9 steps late,
           it keeps working on stale partitions until it notices (a refused commit, a fence)
  refuse   Kafka refuses writes for a few steps (sends wait; a rebalance stops them)
  join / leave   workers come and go (rebalances)
  duplicate      an input record is produced again
  compact        Kafka's log cleaner runs over a changelog (its own random stream; see
                 `_with_compaction`)
  skew           a worker's machine clock steps off the true time, or back: its stages and the
                 timestamps of what it sends follow it, and Kafka refuses its records while
                 they are over an hour ahead (its own random stream; see `_with_clocks`)
  grow           an input topic gains partitions while the service runs (its own random
                 stream; see `_with_growth`)

Why one module of this size: generating, running and shrinking a schedule share one vocabulary
of actions; the world and the oracle are modules of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas import topics
from streams.domain import learners as learner_rules
from streams.domain import reports as domain_reports
from streams.domain import tallies
from streams.domain.reports import GroupTally, LocalDays, Span, merge_ordered, month_starts
from streams.stages import (
    ingest,
    keys,
    learner_deletions,
    learners,
    reports,
    store,
    tenant_deletions,
)
from streams.stages.memory import MemoryState
from streams.stages.store import LEARNER, TABLES
from streams.tools.simulate import naive_windows, oracle
from streams.tools.simulate.workload import Input, Workload
from streams.tools.simulate.world import APP_TOPICS, CrashPlan, SimWorker, StumblePlan, World

Action = tuple[Any, ...]
GROUP_RACES = os.environ.get("SIMULATE_GROUP_RACES") == "1"
EDGES = os.environ.get("SIMULATE_EDGES") == "1"  # streams/tools/simulate/edges.py
# more learner and tenant partitions than the 1-4 a plain seed draws (drawn from a stream of its
# own: the seed's other draws stay as they were)
MANY_PARTITIONS = os.environ.get("SIMULATE_MANY_PARTITIONS") == "1"
# learner ids that prefix each other ("l0", "l0.1"; Workload.prefix_learners), opt-in so that
# the seeds of REGRESSIONS keep their schedules
PREFIX_IDS = os.environ.get("SIMULATE_PREFIX_IDS") == "1"
# the partial-count timer fires while a takeover waits, as faust's timers do during the recovery's
# callbacks (a rebuilt partition's counts must stay held: streams/stages/learners.py), and the
# learner stage keeps its previous assignment's counters until its takeover, as the worker does
# (a deposed owner's counts go out late, under their old epochs); opt-in,
# as its flushes draw from the world's stream, so that the seeds of REGRESSIONS keep their
# schedules
TAKEOVER_TIMERS = os.environ.get("SIMULATE_TAKEOVER_TIMERS") == "1"
# a restart that keeps its state folder loses some of its table partitions (an operator who
# removed `<table>-<partition>.db` folders, a disk that lost some), drawn from a stream of its
# own; opt-in, so that the seeds of REGRESSIONS keep their schedules
PARTIAL_WIPES = os.environ.get("SIMULATE_PARTIAL_WIPES") == "1"
# failures the worker survives without a restart (world.StumblePlan: a send that fails for some
# of its partitions and is sent again, a read of the log or of the local tables that fails, a
# producer's metadata request that fails, the launch reader's commit that fails), drawn from a
# stream of their own; opt-in, so that the seeds of REGRESSIONS keep their schedules
SURVIVED_FAILURES = os.environ.get("SIMULATE_SURVIVED_FAILURES") == "1"
# faults aimed inside a repair of a deposed owner's records (world.RepairWatchedBatch): crashes
# at a send, a local write or a read of the log there, failures the worker survives there, and
# more deposed owners writing late; drawn from a stream of their own, opt-in, so that the seeds
# of REGRESSIONS keep their schedules
REPAIR_FAULTS = os.environ.get("SIMULATE_REPAIR_FAULTS") == "1"
# Kafka refuses records above a small size (world.World.refuse_large), drawn per run, with the
# service's cuts by size scaled to it (`_record_limit`); opt-in, as above
RECORD_LIMIT = os.environ.get("SIMULATE_RECORD_LIMIT") == "1"
# the group coordinator's answer to a takeover's question (world.World.member_check) is "no"
# (a rebalance under way) or the question fails, now and then; opt-in, as above
MEMBER_FAULTS = os.environ.get("SIMULATE_MEMBER_FAULTS") == "1"
# the outputs checked once more at rest before the run settles (`at_rest`): every fault ended,
# every worker back and knowing its partitions, no rebalance after the last deposed owner's
# late records, only the workers' own timers; opt-in, as it changes what comes after the
# schedule, so that the seeds of REGRESSIONS keep their runs
CHECK_AT_REST = os.environ.get("SIMULATE_CHECK_AT_REST") == "1"
# at a rest point that deposes a worker, input keeps coming while the deposed owner works on and
# while its successors take over, and what it publishes (counts, threshold events, receipts)
# lands 20-120 steps late (`at_rest`): a count record it made lands after its successors counted
# newer input, which only a flush's or lineage check's repair answers at rest; with
# SIMULATE_SURVIVED_FAILURES=1 the first repairs at rest fail, and are survived. Opt-in (it turns
# the rest points on), so that every other mode keeps its runs
LATE_COUNTS = os.environ.get("SIMULATE_LATE_COUNTS") == "1"
# licenses anchored on Feb 29, Jan 31 and the 30th and 31st, and a clock that crosses the end of
# February 2027 (not leap) or 2028 (leap) (`Workload.leap`), drawn from a stream of their own;
# opt-in, so that the seeds of REGRESSIONS keep their schedules
LEAP_YEARS = os.environ.get("SIMULATE_LEAP_YEARS") == "1"
MAX_WORKERS = 3


@dataclass(frozen=True)
class Schedule:
    seed: int
    partitions: int
    launch_partitions: int
    workers: int
    start: datetime
    actions: tuple[Action, ...]

    def describe(self) -> str:
        lines = [
            f"seed {self.seed}: {self.partitions} partitions, {self.launch_partitions} launch "
            f"partitions, {self.workers} workers, from {self.start.isoformat()}"
        ]
        for number, action in enumerate(self.actions):
            lines.append(f"  {number:4d} {describe(action)}")
        return "\n".join(lines)


def describe(action: Action) -> str:
    kind = action[0]
    if kind == "produce":
        return action[1].describe()
    if kind == "duplicate":
        return f"produce again input #{action[1]}"
    if kind == "rest" and len(action) > 3:  # (SIMULATE_LATE_COUNTS=1)
        return f"rest {action[1]} {action[2]}, {len(action[3])} inputs arriving meanwhile"
    return " ".join(str(part) for part in action)


@dataclass
class Result:
    schedule: Schedule
    problems: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    records: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


# -- drawing a schedule ---------------------------------------------------------------------------
ACTION_KINDS = (
    "produce",
    "run",
    "commit",
    "clock",
    "duplicate",
    "arm",
    "kill",
    "restart",
    "depose",
    "refuse",
    "join",
    "leave",
)
CRASH_TASKS = (
    "any",
    "launches",
    topics.LEARNER_COMMANDS,
    topics.TENANT_COMMANDS,
    "partials",
    "takeover",
    "deletion",
    "recut",
    "publish",
)
CHANGELOGS = tuple(changelog for _, changelog in TABLES.values())
CRASH_TASK_WEIGHTS = (1, 1, 3, 2, 0.5, 0.5, 3, 2, 2)
CARRIED = ("deletion", "recut", "publish")  # what a send carries (world.carried)


def generate(seed: int, actions: int | None = None) -> Schedule:
    rng = random.Random(seed)
    partitions = rng.randint(1, 4)
    if MANY_PARTITIONS:
        partitions = random.Random(f"partitions/{seed}").randint(5, 16)
    launch_partitions = rng.randint(1, 3)
    workers = rng.randint(1, MAX_WORKERS)
    start = datetime(2026, 1, 20, tzinfo=UTC) + timedelta(hours=rng.randrange(0, 24 * 60))
    workload = Workload(random.Random(seed * 7919 + 1), partitions, launch_partitions)
    if LEAP_YEARS:
        # the end of February 2027 (not leap) or 2028 (leap) ahead of the clock, or just behind
        # it (`Workload.leap`)
        leap = random.Random(f"leap/{seed}")
        year = leap.choice((2027, 2028))
        start = datetime(year, 2, 1, tzinfo=UTC) + timedelta(hours=leap.randrange(-240, 24 * 30))
        workload.leap = leap
    if PREFIX_IDS:
        workload.prefix_learners(random.Random(f"prefix-ids/{seed}"))
    if GROUP_RACES:
        # group races (workload.group_race), from a stream of their own, opt-in
        # (SIMULATE_GROUP_RACES=1) so that the seeds of REGRESSIONS keep their schedules
        workload.races = random.Random(f"group-races/{seed}")
        workload.race_rate = workload.races.choice((0.0, 0.0, 0.05, 0.15, 0.3))
    if EDGES:
        from streams.tools.simulate.edges import Edges

        workload.edges = Edges(seed, workload)
    names = [f"w{i}" for i in range(MAX_WORKERS)]
    clock = start
    out: list[Action] = []
    # swarm testing: each seed weighs the kinds of actions its own way (faults may be off)
    base = {"produce": 10.0, "run": 18.0, "commit": 2.5, "clock": 2.0, "duplicate": 0.6}
    faults = {kind: rng.choice((0.0, 0.3, 1.0, 2.5)) for kind in ACTION_KINDS if kind not in base}
    weights = [base.get(kind, faults.get(kind, 0.0)) for kind in ACTION_KINDS]
    lag = rng.choice((0.2, 1.0, 3.0))  # how much the learner stage lags the tenant stage
    for _ in range(actions or rng.randint(120, 360)):
        kind = rng.choices(ACTION_KINDS, weights)[0]
        if kind == "produce":
            out.append(("produce", workload.next(clock)))
        elif kind == "run":
            tasks = ("launches", *APP_TOPICS, "partials", "tick", "check")
            task_weights = [2, 1, 1, 1, 2 / lag, 2 * lag, 2, 0.5, 0.5]
            task = rng.choices(tasks, task_weights)[0]
            out.append(("run", rng.choice(names), task, rng.randint(1, 10)))
        elif kind == "commit":
            out.append(("commit", rng.choice(names)))
        elif kind == "clock":
            step = timedelta(minutes=rng.choice((1, 30, 300, 3000, 20000)))
            clock += step
            out.append(("clock", int(step.total_seconds() * 1000)))
        elif kind == "duplicate":
            out.append(("duplicate", rng.randrange(1_000)))
        elif kind == "arm":
            task = rng.choices(CRASH_TASKS, CRASH_TASK_WEIGHTS)[0]
            point = "send" if task in CARRIED else rng.choice(("send", "send", "apply", "ack"))
            out.append(("arm", rng.choice(names), point, rng.choice((1, 1, 2, 3)), task))
        elif kind == "kill":
            out.append(("kill", rng.choice(names)))
        elif kind == "restart":
            out.append(("restart", rng.choice(names), rng.random() < 0.3))
        elif kind == "depose":
            out.append(("depose", rng.choice(names), rng.randint(2, 30)))
        elif kind == "refuse":
            out.append(("refuse", rng.randint(1, 12)))
        elif kind == "join":
            out.append(("join", rng.choice(names)))
        else:
            out.append(("leave", rng.choice(names)))
    timeline = _with_growth(seed, _with_clocks(seed, _with_compaction(seed, out, partitions)))
    timeline = _with_glitches(seed, timeline)
    if SURVIVED_FAILURES:
        timeline = _with_stumbles(seed, timeline)
    if REPAIR_FAULTS:
        timeline = _with_repair_faults(seed, timeline)
    if MEMBER_FAULTS:
        timeline = _with_member_faults(seed, timeline)
    if CHECK_AT_REST or LATE_COUNTS:
        timeline = _with_rests(seed, timeline)
    if LATE_COUNTS:
        timeline = _with_rest_inputs(seed, timeline, workload, start)
    return Schedule(seed, partitions, launch_partitions, workers, start, timeline)


def _with_compaction(seed: int, actions: list[Action], partitions: int) -> tuple[Action, ...]:
    """The schedule with Kafka's log cleaner running over the changelogs now and then, drawn
    from a stream of its own (the seed's other actions stay as they were before the cleaner
    was modelled). A fifth of the seeds never clean; the others also clean every changelog
    once more just before the final restore (`settle`)."""
    draw = random.Random(f"compaction/{seed}")
    rate = draw.choice((0.0, 0.02, 0.05, 0.15, 0.4))
    if not rate:
        return tuple(actions)
    out = _sprinkled(
        actions,
        draw,
        rate,
        lambda: (
            "compact",
            draw.choice(CHANGELOGS),
            draw.randrange(partitions),
            draw.choice((0, 1, 5)),
        ),
    )
    out.append(("compact", "*", 0, 0))
    return tuple(out)


def _sprinkled(
    actions: Sequence[Action], draw: random.Random, rate: float, make: Callable[[], Action]
) -> list[Action]:
    """`actions` with an action of `make` after each one, at `rate` (drawn from `draw`)."""
    out: list[Action] = []
    for action in actions:
        out.append(action)
        if draw.random() < rate:
            out.append(make())
    return out


# how far a machine's clock may be off: NTP that stopped or never started, a VM resumed after a
# pause, a wrong hardware clock at boot; a step to a smaller skew (0: NTP synced it again) is a
# clock stepping back
SKEWS_MS = tuple(
    sign * seconds * 1000 for seconds in (3, 90, 7 * 60, 40 * 60, 3 * 3600) for sign in (1, -1)
)


def _with_clocks(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with the workers' clocks stepping off the true time and back, drawn from a
    stream of its own (the seed's other actions stay as they were before the clocks were
    modelled). A third of the seeds keep every clock true. Every clock is true again once the
    faults end (`settle`): the outputs are checked at the true time."""
    draw = random.Random(f"clocks/{seed}")
    rate = draw.choice((0.0, 0.0, 0.01, 0.03, 0.1, 0.3))
    if not rate:
        return tuple(actions)
    names = [f"w{i}" for i in range(MAX_WORKERS)]
    out: list[Action] = []
    for action in actions:
        out.append(action)
        if draw.random() < rate:
            skew = draw.choice((0, *SKEWS_MS))
            out.append(("skew", draw.choice(names), skew))
    return tuple(out)


INPUT_TOPICS = (topics.LAUNCHES, *APP_TOPICS[:3])  # what the LMS writes
# The input topics the growth draw grows: all of them. Licenses and learner-groups grown found
# a key's older record, left in its old partition, applied after its newer one and winning for
# good (positions compared within one partition only; streams/domain/sources.py now orders
# partitions by the records' timestamps).
GROWING = INPUT_TOPICS


def _with_growth(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with input topics gaining partitions now and then (an operator scaling
    the LMS's topics out), drawn from a stream of its own (the seed's other actions stay as
    they were before growth was modelled). Two thirds of the seeds never grow a topic."""
    draw = random.Random(f"growth/{seed}")
    planned = []
    for _ in range(draw.choice((0, 0, 0, 0, 1, 2))):
        # licenses and learner-groups are compacted, keyed: growth splits a key over two
        # partitions, the case the stages' "latest record wins" has to get right
        topic = draw.choices(INPUT_TOPICS, (1, 2, 1, 2))[0]
        planned.append((draw.randrange(len(actions) + 1), topic, draw.randint(1, 3)))
    out = list(actions)
    # (drawn whatever GROWING holds, so that it changes no other seed's schedule)
    for position, topic, added in sorted(planned, reverse=True):
        if topic in GROWING:
            out.insert(position, ("grow", topic, added))
    return tuple(out)


def _with_glitches(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with passing failures in the learner and tenant stages' handlers now and
    then (world.Glitches: an event fails at one of its writes or after all of them until the
    loop has paused for it up to twice, and passes), drawn from a stream of its own (the
    seed's other actions stay as they were before glitches were modelled). Two fifths of the
    seeds have none."""
    draw = random.Random(f"glitches/{seed}")
    rate = draw.choice((0.0, 0.0, 0.03, 0.1, 0.3))
    if not rate:
        return tuple(actions)

    def glitch() -> Action:
        return ("glitch", f"w{draw.randrange(MAX_WORKERS)}", draw.randint(1, 5))

    return tuple(_sprinkled(actions, draw, rate, glitch))


STUMBLE_POINTS = ("send", "send-read", "read", "local", "metadata", "commit")


def _with_stumbles(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with failures the worker survives now and then (world.StumblePlan), drawn
    from a stream of their own (SIMULATE_SURVIVED_FAILURES=1). A fifth of the seeds have none."""
    draw = random.Random(f"stumbles/{seed}")
    rate = draw.choice((0.0, 0.03, 0.1, 0.3, 0.6))
    if not rate:
        return tuple(actions)

    def stumble() -> Action:
        point = draw.choices(STUMBLE_POINTS, (3, 2, 3, 3, 2, 1))[0]
        worker = f"w{draw.randrange(MAX_WORKERS)}"
        # local reads are many: a later one, so that it strikes handlers and flushes alike
        countdown = draw.randint(1, 40 if point == "local" else 4)
        return ("stumble", worker, point, countdown)

    out = _sprinkled(actions, draw, rate, stumble)
    # a timer's flush that fails (its own stream: the other stumbles stay as they were drawn)
    timers = random.Random(f"timer-stumbles/{seed}")
    timer_rate = timers.choice((0.0, 0.02, 0.05, 0.1))

    def timer_stumble() -> Action:
        return ("stumble", f"w{timers.randrange(MAX_WORKERS)}", "timer", timers.randint(1, 4))

    return tuple(_sprinkled(out, timers, timer_rate, timer_stumble))


# a fault aimed at any repair, or at one of a flush or lineage check only: takeovers repair
# marks far more often, and would use up every plan
AIMS = ("repair", "repair-lineage", "repair-lineage")


def _with_repair_faults(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with faults armed to strike inside a repair (SIMULATE_REPAIR_FAULTS=1):
    a crash at one of its sends, local writes or reads of the log, a failure the worker
    survives there, and deposed owners, whose late records are what a repair answers; drawn
    from a stream of its own. A fifth of the seeds have none."""
    draw = random.Random(f"repair-faults/{seed}")
    rate = draw.choice((0.0, 0.1, 0.2, 0.4, 0.6))
    if not rate:
        return tuple(actions)

    def fault() -> Action:
        worker = f"w{draw.randrange(MAX_WORKERS)}"
        roll = draw.random()
        if roll < 0.4:
            return ("depose", worker, draw.randint(10, 80))
        if roll < 0.65:
            point = draw.choice(("send", "send", "apply", "apply", "read"))
            return ("arm", worker, point, draw.choice((1, 1, 2, 3)), draw.choice(AIMS))
        point = draw.choices(STUMBLE_POINTS[:5], (3, 2, 3, 3, 1))[0]
        return ("stumble", worker, point, draw.randint(1, 3), draw.choice(AIMS))

    return tuple(_sprinkled(actions, draw, rate, fault))


def _with_member_faults(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with the group coordinator answering a takeover's question "no" (a
    rebalance under way) or the question failing, at a takeover's first or second question
    from then on (SIMULATE_MEMBER_FAULTS=1), drawn from a stream of its own. A fifth of the
    seeds have none."""
    draw = random.Random(f"member-faults/{seed}")
    rate = draw.choice((0.0, 0.02, 0.05, 0.1, 0.2))
    if not rate:
        return tuple(actions)

    def fault() -> Action:
        answer = draw.choice(("no", "no", "error"))
        return ("member", f"w{draw.randrange(MAX_WORKERS)}", answer, draw.randint(1, 2))

    return tuple(_sprinkled(actions, draw, rate, fault))


def _with_rests(seed: int, actions: Sequence[Action]) -> tuple[Action, ...]:
    """The schedule with points where the outputs are checked at rest (`at_rest`): up to two
    within it and one at its end, drawn from a stream of their own (SIMULATE_CHECK_AT_REST=1).
    At half of them a worker is deposed first (`at_rest`), and in the end either notices (a
    rebalance) or dies still deposed (none: it was no member)."""
    draw = random.Random(f"rests/{seed}")
    out = list(actions)
    points = [draw.randrange(len(out) + 1) for _ in range(draw.randint(0, 2))]
    for position in sorted([*points, len(out)], reverse=True):
        deposed = f"w{draw.randrange(MAX_WORKERS)}" if draw.random() < 0.5 else ""
        out.insert(position, ("rest", deposed, draw.choice(("notices", "dies"))))
    return tuple(out)


def _with_rest_inputs(
    seed: int, actions: Sequence[Action], workload: Workload, start: datetime
) -> tuple[Action, ...]:
    """The rest points that depose a worker, each with 5-40 inputs of the workload that arrive
    while the deposed owner works on and its successors take over (SIMULATE_LATE_COUNTS=1; the
    count from a stream of its own, the inputs drawn after the schedule's own, at the clock of
    the rest point)."""
    draw = random.Random(f"rest-inputs/{seed}")
    clock = start
    out: list[Action] = []
    for action in actions:
        if action[0] == "clock":
            clock += timedelta(milliseconds=action[1])
        if action[0] == "rest" and action[1]:
            inputs = tuple(workload.next(clock) for _ in range(draw.randint(5, 40)))
            action = (*action, inputs)
        out.append(action)
    return tuple(out)


# -- running one ----------------------------------------------------------------------------------
def execute(world: World, action: Action, produced: list[Input]) -> None:
    kind = action[0]
    worker = (
        world.workers.get(action[1]) if len(action) > 1 and isinstance(action[1], str) else None
    )
    if kind == "produce":
        record: Input = action[1]
        world.produce(record.topic, record.key, record.value, record.partition)
        produced.append(record)
    elif kind == "duplicate":
        if produced:
            record = produced[action[1] % len(produced)]
            world.produce(record.topic, record.key, record.value, record.partition)
    elif kind == "clock":
        world.clock_ms += action[1]
    elif kind == "run" and worker is not None:
        run_task(world, worker, action[2], action[3])
    elif kind == "commit" and worker is not None:
        world.commit(worker)
    elif kind == "arm" and worker is not None and worker.alive:
        worker.crash_plans.append(CrashPlan(action[2], action[3], action[4]))
    elif kind == "stumble" and worker is not None and worker.alive:
        aim = action[4] if len(action) > 4 else ""
        worker.stumble_plans.append(StumblePlan(action[2], action[3], aim))
    elif kind == "member":
        world.member_plans.setdefault(action[1], []).append([action[2], action[3]])
    elif kind == "glitch" and worker is not None and worker.alive:
        worker.glitches.pending = action[2]
    elif kind == "kill" and worker is not None and worker.alive:
        world.kill(worker)
        world.rebalance()
    elif kind == "restart" and worker is not None and not worker.alive:
        if action[2]:
            worker.state = type(worker.state)(worker)  # the state folder is lost
            world.trace.append(f"  {worker.name} lost its state folder")
        elif PARTIAL_WIPES:
            for table, partition in sorted(worker.state.partitions):
                if world.wipe_rng.random() < 0.3:
                    del worker.state.partitions[(table, partition)]
                    world.trace.append(f"  {worker.name} lost {table}-{partition}.db")
        worker.start()
        world.trace.append(f"  {worker.name} restarted")
        world.rebalance()
    elif kind == "join":
        name = action[1]
        if name not in world.workers:
            world.workers[name] = SimWorker(world, name)
            world.trace.append(f"  {name} joined")
            world.rebalance()
    elif kind == "leave" and worker is not None and worker.alive and worker.aware:
        if not worker.activities:
            world.commit(worker)
            world.kill(worker)  # a clean stop: everything it did was committed
            world.rebalance()
    elif kind == "depose" and worker is not None and worker.alive and worker.aware:
        if worker.name in world.app.members and len(world.members()) > 1:
            worker.aware = False
            worker.wakes_at = world.step + action[2]
            world.trace.append(f"  {worker.name} deposed (it does not know)")
            world.rebalance()
    elif kind == "refuse":
        world.refusing_until = max(world.refusing_until, world.step + action[1])
    elif kind == "compact" and action[1] != "*":
        world.compact(action[1], action[2], action[3])
    elif kind == "compact":
        world.compacting = True  # every changelog, once more, before the final restore
    elif kind == "skew":
        world.set_skew(action[1], action[2])
    elif kind == "grow":
        world.grow(action[1], action[2])


def run_task(world: World, worker: SimWorker, task: str, limit: int) -> None:
    if not worker.alive or task in worker.activities:
        return
    if worker.in_app_group and not worker.ready and worker.aware:
        if "takeover" not in worker.activities and worker.refused != worker.view_generation:
            world.run(worker, "takeover", world.unit_takeover(worker))
        elif task == "partials" and TAKEOVER_TIMERS:
            world.run(worker, task, world.unit_partials(worker))
        return
    if task == "launches":
        world.run(worker, task, world.unit_launches(worker, limit * 4))
        return
    if not worker.ready:
        return
    if task in APP_TOPICS:
        world.run(worker, task, world.unit_agent(worker, task, limit))
    elif task == "partials":
        world.run(worker, task, world.unit_partials(worker))
    else:
        world.run(worker, task, world.unit_timer(worker, task))


def run_launch_reader(world: World, worker: SimWorker) -> None:
    """The launch reader alone, whether or not the worker's app partitions are ready."""
    if "launches" not in worker.activities:
        world.run(worker, "launches", world.unit_launches(worker, 40))


def settle(world: World, rounds: int = 30, before_final: Callable[[], None] | None = None) -> None:
    """End every fault, bring every worker back, and work until nothing changes; then
    (`before_final`, the outputs must be exact already) restore every partition once more and
    work again until nothing changes."""
    # first, some rounds of work with the faults still armed: the backlog of input is where
    # most of the work is, and where a crash plan finds its moment
    for _ in range(10):
        for task in ("launches", *APP_TOPICS, "partials"):
            for worker in list(world.workers.values()):
                run_task(world, worker, task, 10)
                world.advance()
        for worker in list(world.workers.values()):
            world.commit(worker)
    _end_faults(world)
    for _ in range(30):
        world.advance()
    # before the rebalance below, whose takeovers report every tenant again
    world.bugs.extend(check_reported(world))
    for worker in list(world.workers.values()):
        if not worker.aware:
            world.wake(worker)
        if not worker.alive:
            worker.start()
    world.rebalance()
    for final in (False, True):
        if final and before_final is not None:
            before_final()
        if final:
            # every partition restored once more from its changelogs, as after a restart,
            # now that every late write has landed: what was written must restore right
            if world.compacting:
                for changelog in CHANGELOGS:
                    for partition in range(world.partitions):
                        world.compact(changelog, partition, 0)
            world.rebalance()
        for _ in range(rounds):
            before = _size(world)
            drain(world)
            for kind in ("tick", "check"):  # the timers, at the final clock
                for worker in world.workers.values():
                    run_task(world, worker, kind, 1)
            drain(world)
            if _size(world) == before:
                break
        else:
            world.bugs.append("the run did not settle")
            return


def _set_clocks_true(world: World) -> None:
    """NTP sets every worker's clock true again (stepping back one that was ahead): the
    outputs are checked at the true time."""
    for name in sorted(world.skews):
        world.set_skew(name, 0)


def drain(world: World) -> None:
    """Work until every input is consumed and committed and no task has work left."""
    for _ in range(200):
        while world.in_flight or any(w.activities for w in world.workers.values()):
            world.advance()
        for worker in world.workers.values():
            if worker.alive and not worker.ready:
                run_task(world, worker, "takeover", 1)
        for task in ("launches", *APP_TOPICS, "partials"):
            for worker in world.workers.values():
                for _ in range(100):
                    run_task(world, worker, task, 50)
                    while task in worker.activities:
                        world.advance()
                    if not _pending(world, worker, task):
                        break
                world.commit(worker)
        if not _unconsumed(world) and not any(
            w.learner.counters._dirty for w in world.workers.values() if w.alive
        ):
            return


def check_reported(world: World) -> list[str]:
    """A tenant whose partial count a learner partition's counters hold clean (not due for the
    next report) has had that count reported: its last partial count of this owner's epoch in
    `tenant-commands` says the same. Only the takeover of a rebalance reports every tenant again,
    so a report taken from the counters and never sent (a timer's flush that failed, which the
    worker lives through) left the window's count record behind until one came."""
    from streams.domain.partitioning import tenant_partition
    from streams.stages import commands

    last: dict[tuple[str, str, tuple[int, ...]], dict[str, Any]] = {}
    for partition in range(world.partitions):
        for record in world.log.records(topics.TENANT_COMMANDS, partition):
            command = commands.decode(record.value)
            if isinstance(command, commands.Partials):
                for tenant_id, parts in command.tenants.items():
                    for part, partial in parts.items():
                        last[(tenant_id, part, tuple(partial["epoch"]))] = partial
    problems = []
    for worker in world.workers.values():
        if not (worker.alive and worker.aware and worker.ready) or worker.activities:
            continue
        stage = worker.learner
        counters = stage.counters
        for partition in sorted(counters.partitions()):
            if stage.catching_up(partition):
                continue  # reported once it caught up
            epoch = tuple(counters.epochs.get(partition, (0, 0)))
            for tenant_id, counts in sorted(counters._counts.get(partition, {}).items()):
                if (partition, tenant_id) in counters._dirty:
                    continue
                sent = last.get((tenant_id, str(partition), epoch))
                held = (dict(counts.windows), counts.total, counts.cut_id, counts.seq)
                if sent is None or held != (
                    sent["windows"],
                    sent["total"],
                    sent["cut"],
                    sent["seq"],
                ):
                    target = tenant_partition(tenant_id, world.partitions)
                    problems.append(
                        f"{worker.name}: the counts of {tenant_id} in learner partition "
                        f"{partition} {held} are clean but tenant-commands/{target} last has "
                        f"{sent} of epoch {list(epoch)}"
                    )
    return problems


def _size(world: World) -> int:
    """Records in every topic, the timers' own commands left out."""
    from streams.stages import commands

    total = 0
    for topic, parts in world.log.topics.items():
        for records in parts.values():
            if topic in (topics.TENANT_COMMANDS, topics.LEARNER_COMMANDS):
                total += sum(
                    1
                    for r in records
                    if not isinstance(commands.decode(r.value), commands.Tick | commands.Check)
                )
            else:
                total += len(records)
    return total


def _pending(world: World, worker: SimWorker, task: str) -> bool:
    topic = topics.LAUNCHES if task == "launches" else task
    if task not in (*APP_TOPICS, "launches"):
        return False
    parts = world.parts_of(worker, topic)
    return any(
        worker.positions.get((topic, p), 0) < len(world.log.records(topic, p)) for p in parts
    )


def _unconsumed(world: World) -> bool:
    for group in (world.app, world.launches):
        for topic in group.topics:
            for p in range(group.count(topic)):
                if group.committed.get((topic, p), 0) < len(world.log.records(topic, p)):
                    return True
    return False


def _deposed_work(world: World, worker: SimWorker) -> None:
    tasks: tuple[str, ...] = (
        "launches",
        topics.LEARNER_COMMANDS,
        topics.TENANT_COMMANDS,
        "partials",
        *APP_TOPICS,
    )
    if world.held_outputs is not None:
        # (SIMULATE_LATE_COUNTS=1, at rest) its launch reader waits on a fetch: its refused
        # commit would tell it at once; its agents and timers work on what its successors route
        tasks = tasks[1:]
    task = world.rng.choice(tasks)
    run_task(world, worker, task, world.rng.randint(1, 6))


# The per-run draws of the tallies' layout and the stages' sizes (below). A seed chosen for what
# it did before they existed (a regression, a seed that splits a command) may do something else
# under them: its tests run it with them off too (`service_sizes`).
SIZE_DRAWS = True


def run(schedule: Schedule) -> Result:
    seed = schedule.seed
    settings = (
        _tally_layout(seed) + _chunk_bounds(seed) + _cut_bounds(seed) + _hold_bounds(seed)
        if SIZE_DRAWS
        else []
    )
    if PREFIX_IDS and SIZE_DRAWS:
        settings += _order_bounds(seed)
    if RECORD_LIMIT:
        settings += _record_limit_cuts(seed)
    settings += _router_choice(seed)
    learner_rules.forget_seen_windows()
    with _patched(settings):
        return _run(schedule)


@contextlib.contextmanager
def service_sizes() -> Iterator[None]:
    """Runs in the block keep the service's sizes and layout (no per-run draws)."""
    global SIZE_DRAWS
    saved, SIZE_DRAWS = SIZE_DRAWS, False
    try:
        yield
    finally:
        SIZE_DRAWS = saved


Setting = tuple[Any, str, int]  # (module, name, value) set for one run


def record_limit(seed: int) -> int | None:
    """The largest record the run's Kafka takes (SIMULATE_RECORD_LIMIT=1), drawn from a stream
    of its own: a quarter of the seeds keep no limit; the others refuse what a schedule's
    larger records reach (a command of many launches), above what its single items take (a
    tenant's state, one launch's dead letter: about 1 KB). The service bounds those by Kafka's
    1 MiB (ids of 256 characters, selectors of 512 KB), so a limit below one of them is a
    misconfigured broker, not a fault: runs with edge inputs (SIMULATE_EDGES=1), whose items
    are sized for 1 MiB, keep no limit."""
    return random.Random(f"record-limit/{seed}").choice((None, 1_500, 2_000, 3_000))


def _record_limit_cuts(seed: int) -> list[Setting]:
    """The service cuts what it sends by size to a quarter of Kafka's limit (256 KB of 1 MiB):
    scaled to the run's limit (lower only)."""
    limit = record_limit(seed)
    if limit is None or EDGES or random.Random(f"record-limit-cuts/{seed}").random() < 0.5:
        return []
    cuts = [
        (ingest, "COMMAND_MAX_BYTES"),
        (learners, "PARTIALS_MAX_BYTES"),
        (tenant_deletions, "PART_MAX_BYTES"),
        (learner_deletions, "MEMBERS_CHUNK_BYTES"),
    ]
    return [(module, name, min(limit // 4, getattr(module, name))) for module, name in cuts]


def _router_choice(seed: int) -> list[Setting]:
    """Which router reads the launches in this run, drawn from a stream of its own: the C
    router (streams/stages/_router.c) in three seeds of four, as a worker runs, the rules in
    Python in the fourth. The two write the same commands byte for byte, so a seed's schedule
    is the same under either; the draw only makes both run under the simulator's faults."""
    if ingest._router is None:
        return []
    native = random.Random(f"router/{seed}").random() < 0.75
    return [(ingest, "NATIVE_ROUTER", native)]


def _tally_layout(seed: int) -> list[Setting]:
    """The report tallies' layout for this run (tallies.SPARSE_FROM_DAYS, DENSE_SHARE), drawn
    from a stream of its own. With the service's values a long window's first days leave their
    dict for an array only past 6 days with firsts (3 months) or 23 (a year), more than a
    schedule's few learners in a partition reach; three seeds of four lower the bars so that
    the switch, and windows of any length kept sparse, happen in runs too."""
    draw = random.Random(f"tallies/{seed}")
    sparse_from, dense_share = draw.choice(
        (
            (tallies.SPARSE_FROM_DAYS, tallies.DENSE_SHARE),
            (0, tallies.DENSE_SHARE),  # a month switches past one day, 3 months past 5
            (0, 40),  # a month at its first day, 3 months past 2, a year past 9
            (tallies.SPARSE_FROM_DAYS, 64),  # 3 months past one day, a year past 5
        )
    )
    return [(tallies, "SPARSE_FROM_DAYS", sparse_from), (tallies, "DENSE_SHARE", dense_share)]


def _chunk_bounds(seed: int) -> list[Setting]:
    """How much the stages read or send at a time, for this run, drawn from a stream of its
    own: the service's sizes (thousands of rows, 256 KB) are never reached by a schedule's few
    hundred records, so the paths where a scan goes on after its first chunk, partial counts
    take several commands, a group change takes several, a report's learner spans two chunks
    and a deletion part reads its attempts in several never ran in the simulator (but for
    tests that lowered one of them by hand). Half the seeds lower them to a few rows or bytes:
    they change how the work is cut, never what comes out."""
    draw = random.Random(f"chunks/{seed}")
    if draw.random() < 0.5:
        return []
    drawn = [
        (learners, "SCAN_CHUNK", draw.choice((1, 2, 3, 7))),
        (learners, "PARTIALS_MAX_BYTES", draw.choice((1, 1, 150, 400))),
        (ingest, "GROUP_ROWS_PER_COMMAND", draw.choice((1, 2, 3))),
        (reports, "CHUNK", draw.choice((1, 2, 5))),
        (learner_rules, "SEEN_WINDOWS", draw.choice((1, 2))),
        (learner_deletions, "CHUNK_ATTEMPTS", draw.choice((1, 2, 5))),
        (store, "SCAN_ALL_CHUNK", draw.choice((1, 2, 3))),  # the tenant stages' scans
    ]
    # lower only: a test that set one lower by hand keeps its own
    return [(module, name, min(value, getattr(module, name))) for module, name, value in drawn]


def _cut_bounds(seed: int) -> list[Setting]:
    """Where the stages cut or hand over work by size, for this run, drawn from a stream of its
    own (independent of `_chunk_bounds`): a deletion's kept removals that stop after its first
    chunks (the deleting pass reads the rest again), a team's member list stored in several
    pieces, named learners split into several parts of one partition, launch commands cut
    into several, and rejected launches read back from their position instead of riding in
    their command. The service's sizes (32 MiB, 256 KB, 1 KiB) are beyond a schedule's
    records; half the seeds lower them to a few bytes. Like the chunks, they change how the
    work is cut, never what comes out."""
    draw = random.Random(f"cuts/{seed}")
    if draw.random() < 0.5:
        return []
    drawn = [
        (learner_deletions, "KEPT_BYTES_MAX", draw.choice((0, 200, 2_000))),
        (learner_deletions, "MEMBERS_CHUNK_BYTES", draw.choice((1, 12, 40))),
        (tenant_deletions, "PART_MAX_BYTES", draw.choice((1, 30, 100))),
        (ingest, "COMMAND_MAX_BYTES", draw.choice((1, 300, 1_500))),
        (ingest, "RAW_INLINE_MAX", draw.choice((-1, -1, 100))),
    ]
    return [(module, name, min(value, getattr(module, name))) for module, name, value in drawn]


def _order_bounds(seed: int) -> list[Setting]:
    """When the learner lists ask whether a prefix id exists (past 1,000 held rows, which a
    schedule never holds) and how many answers they keep, for a run with prefix ids, drawn from
    a stream of its own: most such runs ask at once, and some forget every answer."""
    draw = random.Random(f"order/{seed}")
    drawn = [
        (domain_reports, "HELD_BEFORE_ASKING", draw.choice((0, 0, 1, 2, 1_000))),
        (domain_reports, "KNOWN_PREFIXES_MAX", draw.choice((1, 2, 10_000))),
    ]
    return [(module, name, min(value, getattr(module, name))) for module, name, value in drawn]


def _hold_bounds(seed: int) -> list[Setting]:
    """How many open physical deletions of a tenant hold its thresholds (200, which no schedule
    reaches), for this run, drawn from a stream of its own: a third of the runs keep one or
    two, so that a later deletion that does not hold, and a hold released while another
    deletion is still open, happen in runs (`oracle.check_threshold_holds` reads which held)."""
    draw = random.Random(f"holds/{seed}")
    kept = draw.choice((1, 2, tenant_deletions.OPEN_KEPT, tenant_deletions.OPEN_KEPT))
    return [(tenant_deletions, "OPEN_KEPT", min(kept, tenant_deletions.OPEN_KEPT))]


@contextlib.contextmanager
def _patched(settings: list[Setting]) -> Iterator[None]:
    """`settings` in force for the block, the module's own values back afterwards."""
    saved = [(module, name, getattr(module, name)) for module, name, _ in settings]
    try:
        for module, name, value in settings:
            setattr(module, name, value)
        yield
    finally:
        for module, name, value in reversed(saved):
            setattr(module, name, value)


def _run(schedule: Schedule) -> Result:
    world = World(schedule.seed, schedule.partitions, schedule.launch_partitions, schedule.start)
    world.deposed_work = _deposed_work
    world.release_at_takeover = TAKEOVER_TIMERS
    if REPAIR_FAULTS:
        world.late_steps = 80
    if RECORD_LIMIT and not EDGES:
        world.record_limit = record_limit(schedule.seed)
    for index in range(schedule.workers):
        name = f"w{index}"
        world.workers[name] = SimWorker(world, name)
    world.rebalance()
    produced: list[Input] = []
    early: list[str] = []
    for number, action in enumerate(schedule.actions):
        world.trace.append(describe(action))
        if action[0] == "rest":
            problems = at_rest(world, action, produced)
            early += [f"at rest ({number}): {problem}" for problem in problems]
        else:
            execute(world, action, produced)
        world.advance()
    world.trace.append("settle")

    def check_before_final() -> None:
        # the final restore sends every owner's truth again, which would hide an output that a
        # takeover got wrong (seen: a window's count tombstoned after its record): check first
        model, problems = _check(world)
        problems = problems + check_tallies(world) + check_reports(world, model)
        early.extend(f"before the final restore: {problem}" for problem in problems)

    settle(world, before_final=check_before_final)
    result = Result(schedule, trace=world.trace, records=len(produced))
    result.problems += [f"bug: {bug}" for bug in world.bugs]
    result.problems += [f"gave up on {event}" for event in world.gave_up]
    if "the run did not settle" not in world.bugs:
        model, problems = _check(world)
        result.problems += problems + early
        expected = {
            "/".join(ident): (a.element_id, a.launched_at, a.logically_deleted)
            for ident, a in model.attempts().items()
        }
        result.problems += check_states(world, expected)
        result.problems += check_tallies(world)
        result.problems += check_reports(world, model)
    return result


def at_rest(world: World, action: Action, produced: list[Input] | None = None) -> list[str]:
    """The outputs at rest, without the rebalance that settles a run (SIMULATE_CHECK_AT_REST=1).

    Every fault ends and every clock is true; a dead worker comes back (a rebalance); a worker
    may be deposed here (`action`: ("rest", its name or "", "notices" or "dies")). A deposed
    worker works on for 5-30 more steps beside its successors, which are slow to take over at
    first (a restore that takes time), and then notices (a rebalance) or dies still deposed
    (none: it was no member); what it sent meanwhile lands up to 25 steps later, after its
    successors' takeovers. From then on no rebalance: the workers work until nothing changes,
    with their own timers (the tick, the lineage check that finds a deposed owner's records)
    at the clock of the rest point. Then what the contract promises once input stops holds:
    the last record of every window shows its exact counts, the last threshold event of every
    window and threshold agrees with it, every request has its receipt, the changelogs, tables,
    tallies and reports are a recount's. The rebalances of `settle` repair what a deposed owner
    left behind whether the service would have or not; this check is the one that tells.

    With SIMULATE_LATE_COUNTS=1 (`action` carries inputs, `produced` gets them) the inputs
    arrive one every step or two from the deposition on, until all are in, and what the deposed
    owner publishes lands 20-120 steps late (`World.held_outputs`): a count record it made
    before its successors counted newer input lands after theirs; with
    SIMULATE_SURVIVED_FAILURES=1 each worker's first repairs of a flush or a lineage check at
    rest fail (`_arm_repair_failures`), a failure the worker lives through."""
    _end_faults(world)
    for worker in list(world.workers.values()):
        if not worker.alive:
            worker.start()
            world.trace.append(f"  {worker.name} restarted")
            world.rebalance()
    members = world.members()  # (alive, and knowing they are)
    feed: list[Input] = []
    if len(action) > 3 and action[1] in members:
        # (SIMULATE_LATE_COUNTS=1) every worker has taken over and caught up: the deposed owner
        # works on partitions it holds, and the input that comes is new to every stage
        drain(world)
    if action[1] in members and action[1] in world.app.members and len(members) > 1:
        deposed = world.workers[action[1]]
        deposed.aware = False
        deposed.wakes_at = world.step + 1_000
        world.trace.append(f"  {deposed.name} deposed (it does not know)")
        world.rebalance()
        if len(action) > 3:
            feed = list(action[3])
            world.held_outputs = (20, 120)
            if SURVIVED_FAILURES:
                _arm_repair_failures(world)

    def arrive() -> None:
        # one input every step or two (SIMULATE_LATE_COUNTS=1)
        if feed and world.late_counts_rng.random() < 0.6:
            record = feed.pop(0)
            world.trace.append(f"  {record.describe()}")
            world.produce(record.topic, record.key, record.value, record.partition)
            if produced is not None:
                produced.append(record)

    # a deposed worker works on for a few more steps, beside its successors, which are slow to
    # take over at first (a restore that takes time): its flushes go through meanwhile, and
    # what it sent lands around their takeovers
    slow_until = world.step + world.rng.randrange(30)
    if feed:  # (SIMULATE_LATE_COUNTS=1) time for the deposed owner to count some of the input
        slow_until += world.late_counts_rng.randint(10, 40)
    for worker in world.workers.values():
        if worker.alive and not worker.aware:
            worker.wakes_at = min(worker.wakes_at, slow_until + 5 + world.rng.randrange(26))
            world.trace.append(f"  {worker.name} still deposed at rest")
    for _ in range(1_000):
        still = [w for w in world.workers.values() if w.alive and not w.aware]
        if not still:
            break
        for worker in still:
            if action[2] == "dies" and world.step + 1 >= worker.wakes_at:
                world.kill(worker)  # no member: no rebalance; what it sent still lands
        arrive()
        for task in ("launches", *APP_TOPICS, "partials", "tick", "check"):
            for worker in list(world.workers.values()):
                if worker.aware and world.step >= slow_until:
                    run_task(world, worker, task, 10)
                elif feed and task == "launches" and worker.alive and worker.aware:
                    # (SIMULATE_LATE_COUNTS=1) a launch reader is a consumer of its own
                    # group: it routes while its worker's partitions are still restoring
                    run_launch_reader(world, worker)
        world.advance()  # (a deposed worker that notices asks for a rebalance)
    while feed:  # the successors count the rest, the deposed owner's records still on their way
        arrive()
        for task in ("launches", *APP_TOPICS, "partials", "tick", "check"):
            for worker in list(world.workers.values()):
                run_task(world, worker, task, 10)
        world.advance()
    while world.rebalance_due:  # one the coordinator announced before the rest point
        world.advance()
    world.trace.append(f"  at rest from generation {world.app.generation}")
    rebalances = world.app.generation
    for _ in range(30):
        before = _size(world)
        drain(world)
        for kind in ("tick", "check"):
            for worker in world.workers.values():
                run_task(world, worker, kind, 1)
        drain(world)
        if _size(world) == before and not world.in_flight:
            break
    else:
        return ["the run did not come to rest"]
    if world.app.generation != rebalances:
        # (nothing at rest asks for one: no fault is armed; a takeover that did would say why
        # in the trace)
        return [f"a rebalance while at rest (generation {rebalances} to {world.app.generation})"]
    model, problems = _check(world)
    expected = {
        "/".join(ident): (a.element_id, a.launched_at, a.logically_deleted)
        for ident, a in model.attempts().items()
    }
    problems += check_states(world, expected)
    return problems + check_tallies(world) + check_reports(world, model)


def _arm_repair_failures(world: World) -> None:
    """Each worker's first 2-8 repairs of a flush or a lineage check at rest fail with an error
    it lives through, a read of the log or of its tables (SIMULATE_LATE_COUNTS=1 with
    SIMULATE_SURVIVED_FAILURES=1): the next check or write must find the deposed owner's
    records again, as no takeover comes. Not in a takeover: a takeover that fails asks for a
    rebalance, which the check at rest rightly calls a problem (seeds 16983049, 16987123 did,
    on the first draft)."""
    draw = world.late_counts_rng
    for name, worker in sorted(world.workers.items()):
        if worker.alive and worker.aware:
            for _ in range(draw.randint(2, 8)):
                point = draw.choice(("read", "local"))
                worker.stumble_plans.append(StumblePlan(point, 1, "lineage-agent"))
                world.trace.append(f"  {name}: a repair's {point} will fail")


def _end_faults(world: World) -> None:
    """Kafka takes writes again, no crash, failure, glitch or answer of the coordinator is
    armed, every clock is true."""
    world.refusing_until = -1
    world.held_outputs = None  # (SIMULATE_LATE_COUNTS: set again by a rest point that deposes)
    world.member_plans.clear()  # (SIMULATE_MEMBER_FAULTS: a "no" asks for a rebalance)
    world.dies_on_refusals = False  # (SIMULATE_RECORD_LIMIT: a death between refused passes)
    for worker in world.workers.values():
        worker.crash_plans.clear()
        worker.stumble_plans.clear()
        worker.glitches.pending = 0
    _set_clocks_true(world)


def _check(world: World) -> tuple[oracle.Model, list[str]]:
    return oracle.check(
        world.log,
        world.partitions,
        world.now(),
        world.produced,
        world.evaluations,
        world.evaluated,
    )


def check_tallies(world: World) -> list[str]:
    """Every owner's report tallies (streams/domain/tallies.py) are what a rebuild from its
    tables makes, and the forecast and advisor parts they answer for the current window are what
    a scan of the attempts answers."""
    import asyncio

    from streams.domain.learners import window_span
    from streams.domain.reports import Span, month_starts
    from streams.domain.windows import Cut, add_months, local_midnight, window_of
    from streams.stages import reports

    problems = []
    now = world.now()
    for worker in world.workers.values():
        if not worker.alive or not worker.ready:
            continue
        counters = worker.learner.counters
        for partition in sorted(counters.partitions()):
            tracked_from = counters.tracked_from.get(partition, 0.0)
            _, rebuilt = worker.learner._count_partition(worker.batch(), partition, tracked_from)
            held = counters._tallies.get(partition, {})
            if _tally_view(held) != _tally_view(rebuilt):
                problems.append(
                    f"{worker.name}: the tallies of partition {partition} differ from a rebuild"
                )
            for tenant_id, counts in sorted(counters._counts.get(partition, {}).items()):
                cut = Cut.from_id(counts.cut_id)
                window = window_of(cut, now)
                span = Span(*window_span(window))
                zone = cut.timezone
                fast = reports.tallied_firsts(counters, partition, tenant_id, span, zone)
                slow = asyncio.run(
                    reports.daily_firsts(worker.state, partition, tenant_id, span, zone)
                )
                if fast is None or fast != slow:
                    problems.append(
                        f"{worker.name}: forecast of {tenant_id} in partition {partition}: "
                        f"tallies {fast}, scan {slow}"
                    )
                starts = month_starts(add_months(window.start, -12), window.end)
                cutoffs = [local_midnight(day, zone).timestamp() for day in starts]
                fast_advice = reports.tallied_advisor(
                    counters, partition, tenant_id, span, zone, cutoffs
                )
                slow_advice = asyncio.run(
                    reports.advisor(worker.state, partition, tenant_id, span, cutoffs)
                )
                if fast_advice is None or list(fast_advice) != list(slow_advice):
                    problems.append(
                        f"{worker.name}: advisor of {tenant_id} in partition {partition}: "
                        f"tallies {fast_advice}, scan {slow_advice}"
                    )
    return problems


def _tally_view(held: Any) -> dict[str, Any]:
    """Tallies without their empty parts (a tally emptied by deletions equals none)."""
    view = {}
    for tenant_id, tenant in held.items():
        windows = {
            name: (t.start, t.end, t.firsts_by_day(), dict(t.lasts), t.exact)
            for name, t in tenant.windows.items()
            if t.firsts_by_day() or t.lasts or not t.exact
        }
        months = {month: n for month, n in tenant.months.items() if n}
        if windows or months:
            view[tenant_id] = (windows, months)
    return view


def check_states(world: World, expected: dict[str, Any]) -> list[str]:
    """A restore of every learner partition from its changelogs, with the restore the workers
    use, holds exactly the model's attempts and memberships; every owner's local tables too."""
    problems = []
    restored = MemoryState()
    fresh = SimWorker.__new__(SimWorker)
    fresh.state = restored  # type: ignore[assignment]
    fresh.world = world
    for partition in range(world.partitions):
        for table, (stage, _) in TABLES.items():
            if stage == LEARNER:
                SimWorker.restore(fresh, table, partition)
    got = _attempts_of(restored)
    if got != expected:
        wrong = sorted(set(got) ^ set(expected)) or sorted(k for k in got if got[k] != expected[k])
        problems.append(f"a restore from the changelogs differs from the model, e.g. {wrong[:3]}")
    problems += _memberships(restored, expected, world.partitions, "a restore from the changelogs")
    # every request has its receipt by now: none may still hold its tenant's thresholds
    tenant_state = MemoryState()
    fresh.state = tenant_state  # type: ignore[assignment]
    for partition in range(world.partitions):
        SimWorker.restore(fresh, keys.TENANT_STATE, partition)
    held = [
        key
        for (table, _), rows in tenant_state.partitions.items()
        if table == keys.TENANT_STATE
        for key in rows.rows
        if key.startswith(b"open/")
    ]
    if held:
        problems.append(f"deletions still open after every receipt: {sorted(held)[:3]}")
    for worker in world.workers.values():
        if not worker.alive:
            continue
        local = {
            k: v
            for k, v in _attempts_of(worker.state).items()
            if _learner_partition(k.encode(), world.partitions) in worker.app_parts
        }
        mine = {
            k: v
            for k, v in expected.items()
            if _learner_partition(k.encode(), world.partitions) in worker.app_parts
        }
        if local != mine:
            problems.append(f"{worker.name}'s local attempts differ from the model")
    return problems


def _attempts_of(state: MemoryState) -> dict[str, Any]:
    import json

    out = {}
    for (table, _), rows in state.partitions.items():
        if table == "attempts":
            for key, value in rows.rows.items():
                if key.startswith(keys.REPAIR):  # a restore's marks, local only
                    continue
                record = json.loads(value)
                out[key.decode()] = (
                    record["element_id"],
                    datetime.fromisoformat(record["launched_at"]),
                    record["logically_deleted"],
                )
    return out


def _memberships(
    state: MemoryState, expected: dict[str, Any], partitions: int, where: str
) -> list[str]:
    """Each learner's stored windows are the windows of its attempts under its partition's cut."""
    import json

    from streams.domain.licenses import cut_of

    problems = []
    for (table, partition), rows in state.partitions.items():
        if table != "learner-state":
            continue
        cuts = {
            k[len(b"lic/") :].decode(): cut_of(json.loads(v))
            for k, v in rows.rows.items()
            if k.startswith(b"lic/")
        }
        # per learner and window: the first and last instant of its attempts there
        wanted: dict[bytes, dict[str, list[float]]] = {}
        zones: dict[bytes, str] = {}
        for key, (_, at, _) in expected.items():
            if _learner_partition(key.encode(), partitions) != partition:
                continue
            tenant, learner, _ = key.split("/", 2)
            cut = cuts.get(tenant, oracle.DEFAULT_CUT)
            member = f"m/{tenant}/{learner}".encode()
            zones[member] = cut.timezone
            windows = wanted.setdefault(member, {})
            window = naive_windows.window_of(cut, at).start.isoformat()  # the contract's
            instant = at.timestamp()
            first, last = windows.get(window, (instant, instant))
            windows[window] = [min(first, instant), max(last, instant)]
        stored = {k: json.loads(v) for k, v in rows.rows.items() if k.startswith(b"m/")}
        diff = [
            k
            for k in sorted(set(stored) | set(wanted))
            if not _summaries_hold(stored.get(k), wanted.get(k), zones.get(k, "UTC"))
        ]
        if diff:
            problems.append(
                f"{where}: memberships of partition {partition} differ, e.g. "
                f"{[(k, stored.get(k), wanted.get(k)) for k in diff[:3]]}"
            )
    return problems


def _summaries_hold(
    stored: dict[str, list[float]] | None, wanted: dict[str, list[float]] | None, zone: str
) -> bool:
    """A stored membership holds the learner's windows, each with its exact first attempt and a
    `last` between the first and the last attempt, in the last attempt's local month."""
    from streams.domain.tallies import MonthOf

    if stored is None or wanted is None or set(stored) != set(wanted):
        return stored == wanted
    month_of = MonthOf(zone)
    for window, (first, last) in wanted.items():
        summary = stored[window]
        if not isinstance(summary, list) or summary[0] != first:
            return False
        if not first <= summary[1] <= last or month_of(summary[1]) != month_of(last):
            return False
    return True


def _learner_partition(key: bytes, partitions: int) -> int:
    from zlib import crc32

    return crc32(key.rsplit(b"/", 1)[0]) % partitions


# -- shrinking a failure --------------------------------------------------------------------------
def shrink(
    schedule: Schedule, fails: Callable[[Schedule], bool], budget_s: float = 60.0
) -> Schedule:
    """A shorter schedule that still fails (delta debugging over the actions)."""
    deadline = time.monotonic() + budget_s
    actions: Sequence[Action] = schedule.actions
    chunk = max(1, len(actions) // 2)
    while chunk >= 1 and time.monotonic() < deadline:
        start, progressed = 0, False
        while start < len(actions) and time.monotonic() < deadline:
            candidate = tuple(actions[:start]) + tuple(actions[start + chunk :])
            if fails(replace(schedule, actions=candidate)):
                actions, progressed = candidate, True
            else:
                start += chunk
        if not progressed:
            chunk //= 2
    return replace(schedule, actions=tuple(actions))


# -- the command line -----------------------------------------------------------------------------
def explain(result: Result, shrink_s: float = 60.0) -> str:
    """A failure as the seed, its first problems, and a shrunk schedule with the run's trace."""
    first = result.problems[0]

    def fails(candidate: Schedule) -> bool:
        return not run(candidate).ok

    small = shrink(result.schedule, fails, shrink_s)
    rerun = run(small)
    lines = [
        f"seed {result.schedule.seed} FAILED: {len(result.problems)} problems; the first: {first}",
        *[f"  {problem}" for problem in result.problems[1:5]],
        f"shrunk from {len(result.schedule.actions)} to {len(small.actions)} actions, which give:",
        *[f"  {problem}" for problem in rerun.problems[:5]],
        "the shrunk run:",
        *[f"  {line}" for line in rerun.trace],
        f"replay: active-learners simulate --seed {result.schedule.seed} --seeds 1 --trace",
    ]
    return "\n".join(lines)


def run_seeds(
    first: int,
    count: int,
    log: Callable[[str], None],
    shrink_s: float = 60.0,
    trace: bool = False,
) -> list[int]:
    """Run `count` seeds from `first`; the failing ones (each explained)."""
    import logging

    logging.getLogger("streams").setLevel(logging.ERROR)  # a simulated worker is chatty
    failed = []
    started = time.monotonic()
    for seed in range(first, first + count):
        result = run(generate(seed))
        if trace:
            log("\n".join(result.trace))
        if not result.ok:
            failed.append(seed)
            log(explain(result, shrink_s))
    elapsed = time.monotonic() - started
    log(
        f"{count - len(failed)} of {count} seeds clean (from {first}) in {elapsed:.1f}s"
        + (f"; failed: {failed}" if failed else "")
    )
    return failed


def check_reports(world: World, model: Any, where: str = "") -> list[str]:
    """The reports as a worker gathers them (each learner partition's part from its owner's
    tallies, or a scan where they cannot answer, added up) equal a recount from the model's
    attempts: the forecast's daily firsts, the advisor's options (what a physical older_than
    deletion at each cut-off leaves and removes, by the contract), and the groups."""
    problems: list[str] = []
    now = world.now()
    owners: dict[int, SimWorker] = {}
    for worker in world.workers.values():
        if worker.alive and worker.ready:
            for partition in worker.learner.counters.partitions():
                if partition in worker.app_parts:
                    owners[partition] = worker
    attempts = model.attempts()
    tenants = {ident[0] for ident in attempts} | {
        t for t, lic in model.final_license.items() if lic is not None
    }
    for tenant in sorted(tenants):
        cut = oracle.cut_of_license(model.final_license.get(tenant))
        zone = cut.timezone
        # the current window and the month starts by the contract's rule (naive_windows.py)
        window = naive_windows.window_of(cut, now)
        span = Span(window.start_at.timestamp(), window.end_at.timestamp())
        today = now.astimezone(ZoneInfo(zone)).date()
        starts = month_starts(naive_windows.add_months(window.start, -12), min(window.end, today))
        midnights = [naive_windows.local_midnight(day, zone) for day in starts]
        cutoffs = [c.timestamp() for c in midnights if c <= now]
        # the recount
        mine = [(i[1], a.launched_at.timestamp()) for i, a in attempts.items() if i[0] == tenant]
        inside: dict[str, list[float]] = {}
        for learner, at in mine:
            if span.holds(at):
                inside.setdefault(learner, []).append(at)
        days = LocalDays(span, zone)
        want_firsts = days.named(days.firsts((lr, ats) for lr, ats in sorted(inside.items())))
        want_after = [sum(1 for ats in inside.values() if max(ats) >= c) for c in cutoffs]
        want_removed = [sum(1 for _, at in mine if at < c) for c in cutoffs]
        want_groups = GroupTally()
        for learner in sorted(inside):
            teams, roles = model.final_groups.get((tenant, learner), ([], []))
            want_groups.add({"teams": teams, "roles": roles})
        # the gathered parts
        got_firsts: Counter[str] = Counter()
        got_after = [0] * len(cutoffs)
        got_removed = [0] * len(cutoffs)
        got_groups = GroupTally()
        missing = [p for p in range(world.partitions) if p not in owners]
        if missing:
            problems.append(f"{where}reports: partitions {missing} have no ready owner")
            continue
        for partition, worker in sorted(owners.items()):
            counters = worker.learner.counters
            part = reports.tallied_firsts(counters, partition, tenant, span, zone)
            if part is None:
                part = asyncio.run(
                    reports.daily_firsts(worker.state, partition, tenant, span, zone)
                )
            got_firsts.update(part)
            advice = reports.tallied_advisor(counters, partition, tenant, span, zone, cutoffs)
            if advice is None:
                advice = asyncio.run(
                    reports.advisor(worker.state, partition, tenant, span, cutoffs)
                )
            got_after = [a + b for a, b in zip(got_after, advice[0], strict=True)]
            got_removed = [a + b for a, b in zip(got_removed, advice[1], strict=True)]
            got_groups.merge(asyncio.run(reports.groups(worker.state, partition, tenant, span)))
        got_firsts = Counter({k: v for k, v in got_firsts.items() if v})
        if got_firsts != want_firsts:
            problems.append(
                f"{where}forecast of {tenant} ({window.start}): {dict(got_firsts)}, "
                f"recount {dict(want_firsts)}"
            )
        if got_after != want_after or got_removed != want_removed:
            problems.append(
                f"{where}advisor of {tenant} ({window.start}, {zone}): after {got_after} "
                f"removed {got_removed}; recount after {want_after} removed {want_removed}"
            )
        if got_groups.as_json() != want_groups.as_json():
            problems.append(
                f"{where}groups of {tenant} ({window.start}): {got_groups.as_json()}, "
                f"recount {want_groups.as_json()}"
            )
        earlier = naive_windows.window_at(cut.anchor, cut.months, zone, window.index - 1)
        # the current window and the one before
        spans = [span, Span(earlier.start_at.timestamp(), earlier.end_at.timestamp())]
        problems += check_listings(owners, model, tenant, spans, mine, where)
    return problems


def check_listings(
    owners: dict[int, SimWorker],
    model: Any,
    tenant: str,
    spans: list[Span],
    mine: list[tuple[str, float]],
    where: str,
) -> list[str]:
    """The administrators' learner lists of one tenant as each learner partition's owner reads
    them (streams/stages/reports.py): every partition's rows come in learner-id order, which
    differs from key order for ids that prefix others ("l0" and "l0.1": `l0.1/` sorts first),
    and together they are a recount's: each window's counted learners with their first and
    last attempt, attempts and groups (the current window, `spans[0]`, and the others); every
    learner with attempts, active in the current window or not, with the last."""
    from streams.stages import reports

    by_learner: dict[str, list[float]] = {}
    for learner, at in mine:
        by_learner.setdefault(learner, []).append(at)

    def groups(learner: str) -> list[list[str]]:
        teams, roles = model.final_groups.get((tenant, learner), ([], []))
        return [sorted(teams), sorted(roles)]

    lists: list[tuple[str, Any, Span, list[list[Any]]]] = []
    for span in spans:
        want = []
        for learner, ats in sorted(by_learner.items()):
            inside = [at for at in ats if span.holds(at)]
            if inside:
                want.append([learner, min(inside), max(inside), len(inside), *groups(learner)])
        lists.append((f"window {span.start}", reports.window_rows, span, want))
    want_learners = [
        [learner, any(spans[0].holds(at) for at in ats), max(ats), *groups(learner)]
        for learner, ats in sorted(by_learner.items())
    ]
    lists.append(("learner", reports.learner_rows, spans[0], want_learners))
    problems = []
    for name, read, span, want in lists:
        partitions: list[list[list[list[Any]]]] = []
        for partition, worker in sorted(owners.items()):
            chunks = asyncio.run(_collect(read(worker.state, partition, tenant, span)))
            rows = [row for chunk in chunks for row in chunk]
            ids = [row[0] for row in rows]
            # (the flag a bool: the HTTP status filter tells rows apart by `is`)
            flags_ok = name != "learner" or all(type(row[1]) is bool for row in rows)
            if any(not chunk for chunk in chunks) or ids != sorted(set(ids)) or not flags_ok:
                problems.append(
                    f"{where}{name} list of {tenant}, partition {partition}: not in learner-id "
                    f"order, an empty chunk or a flag not a bool: {rows}"
                )
            partitions.append(chunks)
        # the partitions' lists as the HTTP side merges them, in chunks of two rows
        merged = asyncio.run(_collect(merge_ordered([_replay(c) for c in partitions], 2)))
        got = [row for chunk in merged for row in chunk]
        if got != want or any(not chunk for chunk in merged):
            problems.append(f"{where}{name} list of {tenant} merged: {merged}, recount {want}")
    return problems


async def _collect(chunks: Any) -> list[Any]:
    return [chunk async for chunk in chunks]


async def _replay(chunks: list[Any]) -> AsyncIterator[Any]:
    for chunk in chunks:
        yield chunk
