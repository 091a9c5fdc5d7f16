"""A learner partition just taken over reports nothing until its backlog is replayed, from
the rebuild of its counters on (found by a review, 2026-12).

The takeover rebuilds the counters (every tenant dirty), then `hold_until_replayed` flushes a
`Check` and reads the partition's end offset: only then did it hold the partition. The
worker's partial-count timer runs during those awaits (faust's timers do not wait for the
recovery's callbacks) and sent the rebuilt counts before the backlog was replayed. A part
applied while catching up is reported without its count, and its request waits for a newer
count of the partition than the one the tenant stage had then: that was the early one, and a
partition whose part changed nothing had nothing newer to send, so the `down` waited for
HOLD_LIMIT. The hold now starts at the rebuild (`LearnerStage.rebuilding`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from schemas import topics
from streams.domain.learners import TrackedAttempt
from streams.domain.partitioning import tenant_partition
from streams.stages import commands, keys, tenant_deletions
from streams.stages.batch import DurableBatch, take_over
from streams.stages.learners import LearnerStage
from streams.stages.memory import MemoryStore, never_deposed
from streams.stages.store import LEARNER, Epoch, Pair, TopicPartition
from tests.stages.pipeline import Pipeline, deletion, launch, learners_in, license_

LAUNCHED = "2026-01-09T00:00:00+00:00"
JAN = "2026-01-01"


def learner_batch(store: MemoryStore) -> DurableBatch:
    return DurableBatch(store.state, store.log, store.ownership, None, outputs_first=True)


async def owned_with_a_learner(store: MemoryStore) -> None:
    """A first owner of learner partition 0 that counted one learner of acme (and reported
    it): what a later takeover rebuilds."""
    stage = LearnerStage(partitions=1)
    batch = learner_batch(store)
    await take_over_and_hold(stage, batch, store, generation=1)
    ada = TrackedAttempt("acme", "ada", "e1", "a1", LAUNCHED, 0, 7, None, 0)
    value = commands.encode(commands.Attempts(topics.LAUNCHES, [list(ada)]))
    store.log.append(topics.LEARNER_COMMANDS, 0, [(b"acme", value)])
    for record in store.log.records(topics.LEARNER_COMMANDS, 0):
        await stage.handle(batch, record.value, 0, record.offset)
    await batch.flush()
    assert stage.partial_commands(), "the first owner counted ada"


async def take_over_and_hold(
    stage: LearnerStage, batch: DurableBatch, store: MemoryStore, generation: int
) -> dict[int, Epoch]:
    epochs = await take_over(batch, LEARNER, [0], generation, never_deposed)
    stage.rebuild(batch, epochs)
    await stage.hold_until_replayed(batch, store.log, [0])
    return epochs


def timer_inside(store: MemoryStore, where: str, timer: Callable[[], None]) -> Callable[[], None]:
    """Run `timer` (the partial-count timer) inside the log's `where` ("send": the flush of
    the `Check`; "end_offset": the read of the end offset); the undo."""
    original = getattr(store.log, where)

    async def send(
        groups: Mapping[TopicPartition, Sequence[Pair]], headers: Any = None
    ) -> dict[TopicPartition, tuple[int, int]]:
        timer()
        return await original(groups, headers)

    async def end_offset(topic: str, partition: int) -> int:
        timer()
        return await original(topic, partition)

    setattr(store.log, where, send if where == "send" else end_offset)
    return lambda: setattr(store.log, where, original)


@pytest.mark.parametrize("where", ["send", "end_offset"])
def test_no_partial_count_of_a_rebuilt_partition_before_its_hold(where: str) -> None:
    store = MemoryStore(partitions=1)
    asyncio.run(owned_with_a_learner(store))
    stage = LearnerStage(partitions=1)  # a restart: the next owner
    sent: list[tuple[int, bytes]] = []
    undo = timer_inside(store, where, lambda: sent.extend(stage.partial_commands()))
    asyncio.run(take_over_and_hold(stage, learner_batch(store), store, generation=2))
    undo()
    assert sent == [], "the rebuilt count went out before the backlog was replayed"
    assert stage.partial_commands() == [], "held until the `Check` is applied"
    batch = learner_batch(store)
    for record in store.log.records(topics.LEARNER_COMMANDS, 0):
        asyncio.run(stage.handle(batch, record.value, 0, record.offset))
    asyncio.run(batch.flush())
    assert [target for target, _ in stage.partial_commands()] == [0], "then reported"


def test_a_part_applied_while_catching_up_is_mailed_without_waiting_for_the_hold_limit() -> None:
    """acme, limit 4, threshold 100 %, two learners in each learner partition; a physical
    request for one learner of partition 0, split into its parts, and then every learner
    partition is taken over before applying them. The partial-count timer fires inside the
    takeover's awaits. Both parts are applied while their partitions catch up (reports
    without counts): the request waits for a newer count of both. Sent early, the rebuilt
    count of partition 1 was the one each report's mark named, and partition 1, whose part
    removed nothing, had nothing newer to send: the `down` waited for HOLD_LIMIT."""
    p = Pipeline(partitions=2)
    world, worker = p.world, p.worker()
    p.produce(topics.LICENSES, license_("acme", learner_limit=4, thresholds=[100]))
    first, second = learners_in("acme", 0, 2, 2), learners_in("acme", 1, 2, 2)
    for learner in first + second:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    p.settle()
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=[first[0]]),
    )
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)  # the request is split into its two parts
    world.commit(worker)

    def timer() -> None:  # the worker's `flush_partial_counts`, as its flush lands
        for target, command in worker.learner.partial_commands():
            world.log.append(topics.TENANT_COMMANDS, target, [(b"partials", command)])

    end_offset = worker.log.end_offset

    async def timer_inside(topic: str, partition: int) -> int:
        timer()
        return await end_offset(topic, partition)

    worker.log.end_offset = timer_inside  # type: ignore[method-assign]
    p.rebalance()
    worker.log.end_offset = end_offset  # type: ignore[method-assign]
    p.settle()
    assert p.active("acme", JAN) == 3
    events = list({e["event_id"]: e for e in p.events("acme")}.values())  # (sent again: once)
    assert [(e["direction"], e["active_learners"]) for e in events] == [("up", 4), ("down", 3)]
    assert p.check() == []


async def replay(stage: LearnerStage, store: MemoryStore, end: int | None = None) -> None:
    """The new owner applies learner-commands 0 (up to `end`), as its agent does."""
    batch = learner_batch(store)
    for record in store.log.records(topics.LEARNER_COMMANDS, 0)[:end]:
        await stage.handle(batch, record.value, 0, record.offset)
    await batch.flush()


def test_a_superseded_takeovers_end_does_not_release_a_newer_rebuild() -> None:
    """Two takeovers of one process overlap (faust does not cancel a recovery's callbacks):
    the answer to the first one's end-offset read comes after the second rebuilt. The first
    one's end releases nothing of the second's rebuild, even once the commands up to it are
    applied: the second's end is further."""
    store = MemoryStore(partitions=1)
    asyncio.run(owned_with_a_learner(store))
    stage = LearnerStage(partitions=1)

    async def overlapping() -> None:
        reads: list[asyncio.Future[None]] = []
        end_offset = store.log.end_offset

        async def gated(topic: str, partition: int) -> int:
            end = await end_offset(topic, partition)
            if topic == topics.LEARNER_COMMANDS:  # (the takeovers' own reads pass)
                reads.append(asyncio.get_running_loop().create_future())
                await reads[-1]  # the answer is on its way
            return end

        store.log.end_offset = gated  # type: ignore[method-assign]
        first = asyncio.create_task(take_over_and_hold(stage, learner_batch(store), store, 2))
        while not reads:
            await asyncio.sleep(0)
        stage.release()  # the second takeover's first step
        second = asyncio.create_task(take_over_and_hold(stage, learner_batch(store), store, 3))
        while len(reads) < 2:
            await asyncio.sleep(0)
        reads[0].set_result(None)
        await first
        # the first takeover's end is before the second's `Check`: applied, it ends its hold
        await replay(stage, store, end=store.log.records(topics.LEARNER_COMMANDS, 0)[-1].offset)
        assert stage.catch_up == {}
        assert stage.partial_commands() == [], "the second takeover's rebuild is still held"
        reads[1].set_result(None)
        await second
        store.log.end_offset = end_offset  # type: ignore[method-assign]

    asyncio.run(overlapping())
    assert stage.partial_commands() == []
    asyncio.run(replay(stage, store))
    assert [target for target, _ in stage.partial_commands()] == [0]


def test_a_takeover_whose_check_fails_stays_held_until_its_partitions_are_released() -> None:
    """The flush of the `Check` fails: the takeover is abandoned, its rebuilt counts are not
    sent; the release that follows (streams/worker/takeovers.py: `give_up`, or the next
    takeover's first step) ends the hold, and the next takeover holds and reports as ever."""
    store = MemoryStore(partitions=1)
    asyncio.run(owned_with_a_learner(store))
    stage = LearnerStage(partitions=1)
    batch = learner_batch(store)
    epochs = asyncio.run(take_over(batch, LEARNER, [0], 2, never_deposed))
    stage.rebuild(batch, epochs)

    async def refused(groups: Any, headers: Any = None) -> Any:
        raise RuntimeError("the broker is unreachable")

    send = store.log.send
    store.log.send = refused  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        asyncio.run(stage.hold_until_replayed(batch, store.log, [0]))
    store.log.send = send  # type: ignore[method-assign]
    assert stage.partial_commands() == [], "an abandoned takeover's rebuild is not sent"
    stage.release()
    assert not stage.catching_up(0) and not stage.rebuilding
    asyncio.run(take_over_and_hold(stage, learner_batch(store), store, generation=3))
    assert stage.partial_commands() == []
    asyncio.run(replay(stage, store))
    assert [target for target, _ in stage.partial_commands()] == [0]


def test_a_released_partition_keeps_no_hold_and_the_others_keep_theirs() -> None:
    stage = LearnerStage(partitions=2)
    stage.rebuilding = {0: (2, 2), 1: (2, 2)}
    stage.counters.reset_partition(0, (2, 2), {})
    stage.counters.reset_partition(1, (2, 2), {})
    stage.release([0])
    assert stage.rebuilding == {1: (2, 2)}
    stage.release()
    assert stage.rebuilding == {}


@pytest.mark.parametrize("late_count", [True, False], ids=["deposed-owner-count", "none"])
def test_a_deposed_owners_late_count_does_not_release_a_deletions_hold(late_count: bool) -> None:
    """helper-78: a part applied while its partition catches up is reported without its count,
    and the request waits for a newer count of that partition than the one stored. The one
    stored was the deposed owner's; a later count of that owner (its timer's flush, in flight
    through the rebalance) was newer by its seq and released the hold, with the partition at
    its count before the part: a `down` at 3 where the deletion left 2. Only a count of the
    owner that applied the part (or of a later one) releases it now."""
    p, first, second = two_workers_with_acme(license_("acme", learner_limit=4, thresholds=[100]))
    assert sent(p) == [("up", 4)]
    owner = "w0" if tenant_partition("acme", 2) == 0 else "w1"
    # a license that keeps the cut touches acme in learner partition 0: w0's timer takes the
    # count, and its flush is still on its way when the partition moves
    notify = license_("acme", learner_limit=4, thresholds=[100], notify=["ops@example.com"])
    p.produce(topics.LICENSES, notify)
    p.run(topics.LICENSES, owner)
    p.run(topics.LEARNER_COMMANDS, "w0")
    in_flight = p.worker("w0").learner.partial_commands()
    assert in_flight, "the license touched acme in partition 0"
    p.world.commit(p.worker("w0"))
    p.run(topics.TENANT_COMMANDS, owner)
    owner = delete_across_a_takeover(p, [first[0], second[0]])
    assert sent(p) == [("up", 4)]
    if late_count:
        for target, command in in_flight:  # the deposed owner's flush lands now
            p.world.log.append(topics.TENANT_COMMANDS, target, [(b"partials", command)])
        p.run(topics.TENANT_COMMANDS, owner)
        assert sent(p) == [("up", 4)], "released by a stale count"
    p.settle()
    assert p.active("acme", JAN) == 2
    assert sent(p) == [("up", 4), ("down", 2)]
    assert p.check() == []


def two_workers_with_acme(license: dict[str, Any]) -> tuple[Pipeline, list[str], list[str]]:
    """Two workers, w0 owning learner partition 0 and w1 partition 1; acme under `license`,
    two learners counted in each partition (those of partition 0, those of partition 1)."""
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    p.produce(topics.LICENSES, license)
    first, second = learners_in("acme", 0, 2, 2), learners_in("acme", 1, 2, 2)
    for learner in first + second:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    for worker in ("w0", "w1", "w0", "w1"):
        p.flow(worker)
    assert p.active("acme", JAN) == 4
    return p, first, second


def delete_across_a_takeover(p: Pipeline, learner_ids: list[str]) -> str:
    """A physical request r1 of acme for `learner_ids`, a minute on: learner partition 1 (w1)
    applies its part and reports it with its count; then the partitions swap owners, and
    partition 0's part is applied while w1 catches up, and the request completes. Its tenant
    partition's owner then."""
    owner = "w0" if tenant_partition("acme", 2) == 0 else "w1"
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=learner_ids),
    )
    p.run(topics.ATTEMPT_DELETIONS, owner)
    p.run(topics.TENANT_COMMANDS, owner)  # the request, split into its parts
    p.run(topics.LEARNER_COMMANDS, "w1")  # partition 1 applies its part: reported with its count
    p.world.commit(p.worker("w1"))
    p.rebalance({"w0": [1], "w1": [0]})
    owner = "w0" if tenant_partition("acme", 2) == 1 else "w1"
    p.run(topics.LEARNER_COMMANDS, "w1")  # partition 0's part, applied while catching up
    p.run(topics.TENANT_COMMANDS, owner)  # the request completes
    return owner


def sent(p: Pipeline) -> list[tuple[str, int]]:
    """acme's distinct threshold events (a takeover sends its events again, identical)."""
    events = {event["event_id"]: event for event in p.events("acme")}
    return [(event["direction"], event["active_learners"]) for event in events.values()]


def limit_after_an_unheld_deletion() -> Pipeline:
    """acme, without a limit, two learners in each of two learner partitions; a physical
    request for one learner of each, partition 0's part applied while it catches up after a
    takeover; the request completes, and a license gives acme a limit of 3 (threshold 100 %)
    before partition 0's caught-up count arrives (its count before the part: 2)."""
    p, first, second = two_workers_with_acme(license_("acme"))  # no limit
    owner = delete_across_a_takeover(p, [first[0], second[0]])
    assert [r["learners_affected"] for r in p.receipts("r1")][-1:] == [2]
    p.produce(topics.LICENSES, license_("acme", learner_limit=3, thresholds=[100]))
    p.run(topics.LICENSES, owner)
    p.run(topics.TENANT_COMMANDS, owner)  # the limit, before partition 0's count
    return p


def test_a_limit_given_after_an_unheld_deletion_waits_for_the_awaited_count() -> None:
    """Threshold-fuzz seed 5121 (found by `check_counts_after_deletions`): a deletion
    completed while its tenant had no learner limit, one part applied while its partition
    caught up. Without a limit nothing is evaluated, and the request was released at once; a
    license then gave a limit before that partition's caught-up count arrived, and the
    thresholds were evaluated on its count from before the part: an `up` at 3 and a `down` at
    2, where the deletion left 2 of a limit of 3 and nothing was ever crossed. The request now
    waits for that count whatever the license (its hold holds nothing while there is no limit
    to evaluate)."""
    p = limit_after_an_unheld_deletion()
    assert sent(p) == [], "evaluated on partition 0's count from before the part"
    p.settle()
    assert p.active("acme", JAN) == 2
    assert sent(p) == []
    assert p.check() == []


def test_the_oracle_sees_thresholds_evaluated_on_a_count_from_before_a_part(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator's check that found seed 5121 sees the defect when it is put back (a
    request of a tenant without a limit awaits nothing)."""
    monkeypatch.setattr(tenant_deletions, "_awaiting", lambda *args: {})
    p = limit_after_an_unheld_deletion()
    assert sent(p) == [("up", 3)]
    p.settle()
    problems = p.check()
    assert [problem for problem in problems if "a count from before deletion r1" in problem]


def test_a_catching_up_partition_that_never_counted_the_tenant_is_not_awaited() -> None:
    """acme, never licensed, has learners in learner partition 1 only; a physical request for
    one of them, partition 0's part applied while it catches up after a takeover. Partition 0
    never counted acme and never will (no license reaches it): were its report awaited, the
    request's hold would stay in `open/` (the simulator's `check_states` names it). It carries
    no mark, and the request completes and releases at once."""
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    second = learners_in("acme", 1, 2, 2)
    for learner in second:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    for worker in ("w0", "w1", "w0", "w1"):
        p.flow(worker)
    assert p.active("acme", JAN) == 2
    owner = delete_across_a_takeover(p, [second[0]])
    assert [r["learners_affected"] for r in p.receipts("r1")][-1:] == [1]
    tenant_state = p.worker(owner).state.partition(keys.TENANT_STATE, tenant_partition("acme", 2))
    assert keys.open_deletions("acme") not in tenant_state.rows, "awaits a count never sent"
    p.settle()
    assert p.active("acme", JAN) == 1
    assert p.check() == []


def test_the_oracle_sees_a_count_from_before_a_part_that_the_partition_later_holds_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """helper-79: the check read each window's sum against every count the partitions held
    from the part to the end of the run, so a count from before the part passed once the
    partition held as many again. It reads each partition's count against those it held from
    the part to the end of its log at the evaluation."""
    monkeypatch.setattr(tenant_deletions, "_awaiting", lambda *args: {})  # the defect, back
    p = limit_after_an_unheld_deletion()
    assert sent(p) == [("up", 3)], "evaluated on partition 0's count from before the part"
    newcomer = learners_in("acme", 0, 2, 5)[-1]  # partition 0 counts 2 again
    p.produce(topics.LAUNCHES, launch("acme", newcomer, "a1", "2026-02-11T10:00:00Z"))
    p.settle()
    assert p.active("acme", JAN) == 3
    problems = p.check()
    assert [problem for problem in problems if "learner partition 0's count" in problem]
