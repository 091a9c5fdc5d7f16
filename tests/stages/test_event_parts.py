"""An event that failed is applied part by part (`split`, streams/stages/loop.py).

The loop owns every try: an event that names parts is taken apart at its first failure, and
each part is tried MAX_TRIES times and given up alone; only the parts that keep failing are
given up, and the others' writes stay in the batch. Each failing part has the caller's
pauses, as an event has (a passing failure is waited out whichever part it strikes), up to
MAX_GROUP_PAUSES for the group in all (parts that keep failing hold the agent's partitions
for seconds a group, not minutes). An event without parts is tried MAX_TRIES times whole, with the
caller's pauses.
"""

from __future__ import annotations

import asyncio

from prometheus_client import REGISTRY

from schemas import topics
from streams.stages import commands, keys
from streams.stages.batch import DurableBatch
from streams.stages.learners import LearnerStage
from streams.stages.loop import MAX_GROUP_PAUSES, MAX_TRIES, apply_events
from streams.stages.memory import MemoryLog, MemoryState
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, Batch, Record, RecordTooLarge

TABLE = "learner-state"


def _batch(state: MemoryState, log: MemoryLog | None = None) -> DurableBatch:
    ownership = Ownership()
    ownership.claim(LEARNER, 0, (1, 0))
    return DurableBatch(state, log or MemoryLog(partitions=1), ownership)


class RefusesB(MemoryLog):
    """A broker whose limit refuses the changelog record of the letter b (a topic's
    max.message.bytes far below the service's 1,000,000 bytes)."""

    async def send(self, groups, headers=None):  # type: ignore[no-untyped-def]
        for (topic, _), pairs in groups.items():
            if "changelog" in topic and any(key == b"b" for key, _ in pairs):
                raise RecordTooLarge("the broker refused a record for its size")
        return await super().send(groups, headers)


class Stage:
    """Events are strings of letters; each letter is written on its own key. A letter in
    `failing` fails every time; the event "abc" is split into "a", "b", "c"."""

    def __init__(self, failing: str = "", split_fails: bool = False) -> None:
        self.failing = failing
        self.split_fails = split_fails
        self.handled: list[str] = []
        self.given_up: list[str] = []
        self.pauses: list[int] = []

    async def handle(self, batch: Batch, event: str) -> None:
        self.handled.append(event)
        for letter in event:
            batch.put(TABLE, 0, letter.encode(), {"seen": True})
            if letter in self.failing:
                raise RuntimeError(f"cannot apply {letter}")

    def give_up(self, batch: Batch, event: str, exc: BaseException) -> None:
        self.given_up.append(event)

    def split(self, event: str) -> list[str]:
        if self.split_fails:
            raise ValueError("cannot take it apart")
        return list(event)

    async def pause(self, tries: int) -> None:
        self.pauses.append(tries)

    def apply(self, state: MemoryState, events: list[str], log: MemoryLog | None = None) -> None:
        asyncio.run(
            apply_events(
                _batch(state, log),
                events,
                self.handle,
                self.give_up,
                "learners",
                pause=self.pause,
                split=self.split,
            )
        )


def _written(state: MemoryState) -> set[str]:
    batch = _batch(state)
    return {letter for letter in "abcxyz" if batch.get(TABLE, 0, letter.encode()) is not None}


def test_only_the_part_that_keeps_failing_is_given_up() -> None:
    state = MemoryState()
    stage = Stage(failing="b")
    stage.apply(state, ["abc", "x"])
    # once whole, then each part (b three times, with the event's pauses)
    assert stage.handled == ["abc", "a", "b", "b", "b", "c", "x"]
    assert stage.pauses == [1, 2]
    assert stage.given_up == ["b"]
    assert _written(state) == {"a", "c", "x"}  # b's write rolled back; the others durable


def test_a_passing_failure_of_an_event_with_parts_counts_every_part() -> None:
    state = MemoryState()
    stage = Stage()
    failures = iter([True, True, False, False, False])

    async def flaky(batch: Batch, event: str) -> None:
        stage.handled.append(event)
        batch.put(TABLE, 0, event[0].encode(), {"seen": True})
        if next(failures):
            raise RuntimeError("a transient failure")

    stage.handle = flaky  # type: ignore[method-assign]
    stage.apply(state, ["abc"])
    assert stage.handled == ["abc", "a", "a", "b", "c"] and stage.given_up == []
    assert _written(state) == {"a", "b", "c"}


def test_an_event_without_parts_is_tried_again_with_pauses() -> None:
    state = MemoryState()
    stage = Stage()
    failures = iter([True, True, False])

    async def flaky(batch: Batch, event: str) -> None:
        stage.handled.append(event)
        batch.put(TABLE, 0, b"y", {"seen": True})
        if next(failures):
            raise RuntimeError("a transient failure")

    stage.handle = flaky  # type: ignore[method-assign]
    stage.apply(state, ["y"])
    assert stage.handled == ["y", "y", "y"] and stage.pauses == [1, 2]
    assert stage.given_up == [] and _written(state) == {"y"}


def test_an_event_whose_split_fails_is_given_up_whole() -> None:
    state = MemoryState()
    stage = Stage(failing="b", split_fails=True)
    stage.apply(state, ["abc", "x"])
    assert stage.handled == ["abc"] * MAX_TRIES + ["x"]
    assert stage.given_up == ["abc"]
    assert _written(state) == {"x"}


def test_an_event_of_one_part_is_given_up_as_before() -> None:
    state = MemoryState()
    stage = Stage(failing="y")
    stage.apply(state, ["y", "z"])
    assert stage.handled == ["y"] * MAX_TRIES + ["z"]
    assert stage.given_up == ["y"] and _written(state) == {"z"}


def test_a_part_whose_record_kafka_refuses_is_given_up_alone() -> None:
    """Before, a command whose flush Kafka refused was given up whole on its own flush: every
    launch sent with the one that wrote the record was dead-lettered (helper-56)."""
    state = MemoryState()
    stage = Stage()
    stage.apply(state, ["abc", "x"], RefusesB(partitions=1))
    assert stage.given_up == ["b"]
    assert _written(state) == {"a", "c", "x"}


def _metric(name: str, stage: str) -> float:
    return REGISTRY.get_sample_value(name, {"stage": stage}) or 0.0


def test_an_operator_sees_commands_taken_apart_and_tries_repeated() -> None:
    """A command taken apart, or tried again, passes without a dead letter: only a log line
    would tell, so each is counted (an error that ends in a dead letter is counted apart)."""
    splits = _metric("active_learners_stage_splits_total", "learners")
    retries = _metric("active_learners_stage_retries_total", "learners")
    errors = _metric("active_learners_stage_errors_total", "learners")
    Stage(failing="b").apply(MemoryState(), ["abc", "x"])
    # one split; b failed three times, of which two were tried again; b given up
    assert _metric("active_learners_stage_splits_total", "learners") == splits + 1
    assert _metric("active_learners_stage_retries_total", "learners") == retries + 2
    assert _metric("active_learners_stage_errors_total", "learners") == errors + 1


def test_a_command_kafka_refused_and_took_apart_is_counted_as_split() -> None:
    splits = _metric("active_learners_stage_splits_total", "learners")
    Stage().apply(MemoryState(), ["abc", "x"], RefusesB(partitions=1))
    assert _metric("active_learners_stage_splits_total", "learners") == splits + 1


def test_each_failing_part_has_the_pauses_up_to_the_group_s_bound() -> None:
    state = MemoryState()
    stage = Stage(failing="bc")
    stage.apply(state, ["abc"])
    assert stage.handled == ["abc", "a", "b", "b", "b", "c", "c", "c"]
    assert stage.pauses == [1, 2, 1, 2]
    assert stage.given_up == ["b", "c"] and _written(state) == {"a"}
    # a bug that fails every part: the partition waits MAX_GROUP_PAUSES pauses, not 2 a part
    stage = Stage(failing="abcdefgh")
    stage.apply(MemoryState(), ["abcdefgh"])
    assert len(stage.pauses) == MAX_GROUP_PAUSES and stage.given_up == list("abcdefgh")
    # ... and not MAX_GROUP_PAUSES a command: 64 commands of six such launches paused 480 s
    # with a bound per command (helper-59)
    stage = Stage(failing="abcdef")
    stage.apply(MemoryState(), ["abcdefx"] * 64)
    assert len(stage.pauses) == MAX_GROUP_PAUSES and len(stage.given_up) == 64 * 6


class TimedStage:
    """Letters are parts; time passes in the loop's pauses only (0.5 s a try). `P` always
    fails; other letters fail while the clock is inside `outage` (helper-58's review)."""

    def __init__(self, outage: tuple[float, float]) -> None:
        self.now = 0.0
        self.outage = outage
        self.given_up: list[str] = []

    async def handle(self, batch: Batch, event: str) -> None:
        for letter in event:
            batch.put(TABLE, 0, letter.encode(), {"seen": True})
        if "P" in event:
            raise RuntimeError("a launch the stage cannot apply")
        if self.outage[0] <= self.now < self.outage[1]:
            raise OSError("IO error: the database is being reopened")

    def give_up(self, batch: Batch, event: str, exc: BaseException) -> None:
        self.given_up.append(event)

    async def pause(self, tries: int) -> None:
        self.now += 0.5 * tries


def test_a_passing_failure_after_a_part_that_kept_failing_is_waited_out() -> None:
    """P keeps failing and uses 1.5 s of pauses; a hiccup of 0.6 s starts at 1.2 s. With the
    pauses shared by the parts, every later launch was dead-lettered."""
    for outage in ((0.0, 0.3), (1.2, 1.8)):
        stage = TimedStage(outage)
        asyncio.run(
            apply_events(
                _batch(MemoryState()),
                ["Pabcdef"],
                stage.handle,
                stage.give_up,
                "learners",
                pause=stage.pause,
                split=list,
            )
        )
        assert stage.given_up == ["P"], outage


class Clock:
    now = 0.0


class ReopeningState(MemoryState):
    """A partition's database that fails every read for its first second (being reopened)."""

    def get_many(self, table, partition, wanted):  # type: ignore[no-untyped-def]
        if Clock.now < 1.0:
            raise OSError("IO error: lock hold by current process")
        return super().get_many(table, partition, wanted)


def _apply_learner_command(learners: list[str]) -> tuple[MemoryState, MemoryLog]:
    """One learner command of a launch per learner, applied as the agents apply it: the loop's
    pauses (0.5 s, then 1 s) advance the clock."""
    Clock.now = 0.0
    state, log = ReopeningState(), MemoryLog(partitions=1)
    stage = LearnerStage(1)
    rows = [
        ["acme", learner, "e", "a1", "2026-03-10T10:00:00+00:00", 0, n, '{"x": 1}', 0]
        for n, learner in enumerate(learners)
    ]
    value = commands.encode(commands.Attempts(topics.LAUNCHES, rows))
    record = Record(b"attempts", value, topics.LEARNER_COMMANDS, 0, 0, 1773136800000)

    async def pause(tries: int) -> None:
        Clock.now += 0.5 * tries

    asyncio.run(
        apply_events(
            _batch(state, log),
            [record],
            stage.handle_record,
            stage.give_up,
            "learners",
            describe=Record.position,
            pause=pause,
            split=stage.split,
        )
    )
    return state, log


def _stored_attempts(state: MemoryState, learners: list[str]) -> list[str]:
    found = super(ReopeningState, state).get_many(  # type: ignore[arg-type]
        keys.ATTEMPTS, 0, [keys.attempt("acme", learner, "a1") for learner in learners]
    )
    return [learner for learner, value in zip(learners, found, strict=True) if value is not None]


def test_a_passing_failure_of_a_command_of_many_launches_loses_none() -> None:
    """Found by a review: the parts of a command were tried without pauses, so a failure of a
    few milliseconds (every read of the partition failing) dead-lettered all its launches,
    where a command of one launch waited it out."""
    for learners in (["l1"], ["l1", "l2", "l3"]):
        state, log = _apply_learner_command(learners)
        assert list(log.all_records(topics.DEAD_LETTERS)) == [], learners
        assert _stored_attempts(state, learners) == learners


def test_a_later_part_s_passing_failure_has_the_pauses_again() -> None:
    """Part a fails twice and passes: its failure passed. Part c's failure is another one (a
    simulator seed: a second glitch struck a later part once the first had used the pauses)."""
    state = MemoryState()
    stage = Stage()
    failures = {"a": 2, "b": 0, "c": 2}

    async def flaky(batch: Batch, event: str) -> None:
        stage.handled.append(event)
        batch.put(TABLE, 0, event[0].encode(), {"seen": True})
        if event == "abc" or failures.get(event, 0):
            failures[event] = failures.get(event, 1) - 1
            raise RuntimeError("a passing failure")

    stage.handle = flaky  # type: ignore[method-assign]
    stage.apply(state, ["abc"])
    assert stage.handled == ["abc", "a", "a", "a", "b", "c", "c", "c"]
    assert stage.pauses == [1, 2, 1, 2] and stage.given_up == []
    assert _written(state) == {"a", "b", "c"}


class RefusesZ(MemoryLog):
    async def send(self, groups, headers=None):  # type: ignore[no-untyped-def]
        for (topic, _), pairs in groups.items():
            if "changelog" in topic and any(key == b"Z" for key, _ in pairs):
                raise RecordTooLarge("the broker refused a record for its size")
        return await super().send(groups, headers)


def test_a_group_kafka_refused_pauses_no_more_than_the_bound() -> None:
    """The refused-for-size path takes a command apart again: with a bound per pass it paused
    30 times for one command (helper-59)."""
    stage = Stage(failing="abcdef")
    stage.apply(MemoryState(), ["abcdefZ"], RefusesZ(partitions=1))
    assert len(stage.pauses) == MAX_GROUP_PAUSES
    assert set(stage.given_up) == set("abcdefZ")  # Z: its record is refused


def test_the_refused_for_size_path_waits_a_passing_failure_out() -> None:
    """Z's record is refused; as the path applies part a alone, a hiccup of 1 s begins: it is
    waited out (with no pauses there, a was dead-lettered; helper-59)."""
    applied: dict[str, int] = {}
    clock = {"now": 0.0, "outage_end": -1.0}
    given_up: list[str] = []

    async def handle(batch: Batch, event: str) -> None:
        for letter in event:
            batch.put(TABLE, 0, letter.encode(), {"seen": True})
        applied[event] = applied.get(event, 0) + 1
        if event == "aZ" and applied[event] == 1:
            raise OSError("a first failure: the command is taken apart")
        if event == "a":
            if applied["a"] == 2:  # the refused-for-size path applies it again
                clock["outage_end"] = clock["now"] + 1.0
            if clock["now"] < clock["outage_end"]:
                raise OSError("IO error: the database is being reopened")

    def give_up(batch: Batch, event: str, exc: BaseException) -> None:
        given_up.append(event)

    async def pause(tries: int) -> None:
        clock["now"] += 0.5 * tries

    batch = _batch(MemoryState(), RefusesZ(partitions=1))
    asyncio.run(apply_events(batch, ["aZ"], handle, give_up, "learners", pause=pause, split=list))
    assert given_up == ["Z"]
