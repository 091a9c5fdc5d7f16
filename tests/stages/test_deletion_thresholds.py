"""Thresholds while a physical deletion is under way: learners spread over partitions.

Each learner partition applies its part of a deletion and reports in its own time. The tenant
stage holds the tenant's threshold evaluation until every part has reported, so that the `down`
event of a deletion names the count the deletion left, not a count on the way there.
"""

from __future__ import annotations

import json
from typing import Any
from zlib import crc32

import pytest

from schemas import topics
from streams.domain.partitioning import tenant_partition
from streams.stages import commands, keys
from streams.stages.store import LogRecord
from streams.stages.tenant_deletions import HOLD_LIMIT
from streams.tools.simulate import oracle
from tests.stages.pipeline import START, Pipeline, deletion, launch, learners_in, license_

JAN = "2026-01-01"


def acme_with_ten_learners(two_workers: bool = True) -> tuple[Pipeline, list[str], list[str]]:
    """acme, limit 10, threshold 100 %, five learners in each of two partitions, counted; the
    partitions owned by two workers (so that one can lag behind the other), or by one."""
    if two_workers:
        p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    else:
        p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme", learner_limit=10, thresholds=[100]))
    first, second = learners_in("acme", 0, 2, 5), learners_in("acme", 1, 2, 5)
    for learner in first + second:
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    for worker in ("w0", "w1", "w0", "w1") if two_workers else ("w0",):
        p.flow(worker)
    assert p.active("acme", JAN) == 10
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    return p, first, second


def request_three(p: Pipeline, first: list[str], second: list[str]) -> None:
    """A minute on, request r1: the physical deletion of two learners of partition 0 and one
    of partition 1."""
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=[*first[:2], second[0]]),
    )


def tenant_worker(p: Pipeline) -> str:
    return "w0" if crc32(b"acme") % 2 == 0 else "w1"


def test_a_deletion_over_two_partitions_fires_down_once_with_the_count_it_left() -> None:
    """Partition 0 deletes two learners and reports long before partition 1 deletes its one:
    the count records go 10 -> 8 -> 7 (live), the `down` event names 7, once."""
    p, first, second = acme_with_ten_learners()
    request_three(p, first, second)
    owner = tenant_worker(p)
    p.run(topics.ATTEMPT_DELETIONS, owner)
    p.run(topics.TENANT_COMMANDS, owner)  # the request is split into parts
    # partition 0 applies its part and reports; partition 1 has not started
    p.run(topics.LEARNER_COMMANDS, "w0")
    p.run("partials", "w0")
    p.run(topics.TENANT_COMMANDS, owner)
    assert p.active("acme", JAN) == 8, "the counts stay live while a deletion runs"
    assert [e["direction"] for e in p.events("acme")] == ["up"], "an alert before the end"
    # partition 1 applies its part: the request is complete
    p.run(topics.LEARNER_COMMANDS, "w1")
    p.run(topics.TENANT_COMMANDS, owner)
    events = p.events("acme")
    assert [e["direction"] for e in events] == ["up", "down"]
    assert events[-1]["active_learners"] == 7
    for worker in ("w0", "w1", "w0", "w1"):
        p.flow(worker)
    assert p.active("acme", JAN) == 7
    assert [e["direction"] for e in p.events("acme")] == ["up", "down"]
    assert [r["attempts_affected"] for r in p.receipts("r1")] == [3]
    assert p.check() == []


def test_launches_during_a_deletion_are_counted_and_alerted_when_it_ends() -> None:
    """While the deletion is open, launches keep counting; the thresholds are held against
    the count the deletion ends with, and no hold is left behind."""
    p, first, _ = acme_with_ten_learners()
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=first[:3]),
    )
    owner = tenant_worker(p)
    p.run(topics.ATTEMPT_DELETIONS, owner)
    p.run(topics.TENANT_COMMANDS, owner)
    p.run(topics.LEARNER_COMMANDS, "w0")
    p.run("partials", "w0")
    p.run(topics.TENANT_COMMANDS, owner)
    assert p.active("acme", JAN) == 7
    newcomer = learners_in("acme", 0, 2, 8)[-1]
    p.produce(topics.LAUNCHES, launch("acme", newcomer, "a1", "2026-02-11T10:00:00Z"))
    p.flow("w0")
    p.run(topics.TENANT_COMMANDS, owner)
    assert p.active("acme", JAN) == 8
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    for worker in ("w1", "w0", "w1"):
        p.flow(worker)
    events = p.events("acme")
    assert [e["direction"] for e in events] == ["up", "down"]
    assert events[-1]["active_learners"] == 8
    assert not stage_holds(p, owner), "the hold outlived its deletion"
    assert p.check() == []


def test_a_deletion_that_never_completes_holds_the_alerts_for_a_bounded_time() -> None:
    """A part that never reports (its partition stalled) does not silence the tenant's alerts
    for ever: once the hold is older than its limit, the next tick evaluates the thresholds."""
    p, first, second = acme_with_ten_learners()
    p.advance(60)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=[first[0], second[0]]),
    )
    owner = tenant_worker(p)
    p.run(topics.ATTEMPT_DELETIONS, owner)
    p.run(topics.TENANT_COMMANDS, owner)
    p.run(topics.LEARNER_COMMANDS, "w0")  # partition 1 stalls: its part stays unapplied
    p.run("partials", "w0")
    p.run(topics.TENANT_COMMANDS, owner)
    assert p.active("acme", JAN) == 9
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    p.advance(HOLD_LIMIT.total_seconds() + 60)
    p.run("tick", owner)
    p.run(topics.TENANT_COMMANDS, owner)
    events = p.events("acme")
    assert [e["direction"] for e in events] == ["up", "down"]
    assert events[-1]["active_learners"] == 9
    assert stage_holds(p, owner), "the request is still open, only no longer holding"


def stage_holds(p: Pipeline, worker: str) -> bool:
    """Whether the tenant stage's state still has an open deletion of acme."""
    state = p.worker(worker).state
    partition = crc32(b"acme") % 2
    return state.get_many(keys.TENANT_STATE, partition, [keys.open_deletions("acme")]) != [None]


def three_learners_deleted_over_two_partitions() -> Pipeline:
    """acme with ten learners (the threshold up) and a physical request for three of them over
    two partitions: both parts applied, their reports waiting for the tenant stage."""
    p, first, second = acme_with_ten_learners(two_workers=False)
    request_three(p, first, second)
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)
    p.run(topics.LEARNER_COMMANDS)
    return p


@pytest.mark.parametrize("landed", range(6))
def test_a_crash_as_the_deletion_completes_releases_the_hold_and_alerts_once(landed: int) -> None:
    """The flush that completes the request dies with only the first `landed` records of the
    tenant state's changelog in Kafka (the receipt, the release of the hold, the partials, the
    threshold state: any prefix) and no output: the replay ends with one `down` naming 7."""
    p = three_learners_deleted_over_two_partitions()

    def landing(tp: tuple[str, int], records: list[LogRecord]) -> int:
        return min(landed, len(records)) if tp[0] == topics.TENANT_STATE_CHANGELOG else 0

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=landing)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.flow()
    p.settle()
    events = p.events("acme")
    distinct = list({e["event_id"]: e for e in events}.values())
    assert [e["direction"] for e in distinct] == ["up", "down"]
    assert distinct[-1]["active_learners"] == 7
    assert p.active("acme", JAN) == 7
    assert p.check() == []


def test_a_crash_that_lands_a_flush_up_to_the_release_of_the_hold_alerts_once() -> None:
    """The flush that completes the request also holds a newcomer's partial counts that came
    after the last report, and dies with its changelog landed up to the release of the hold:
    the pending `down` is in Kafka (its records go first), the release is not, and the replay
    computes its events again from a count the newcomer raised (helper-73's case, which the
    first form of the simulator's check of holds took for an evaluation under the hold)."""
    p = three_learners_deleted_over_two_partitions()
    newcomer = learners_in("acme", 1, 2, 8)[-1]
    p.produce(topics.LAUNCHES, launch("acme", newcomer, "a1", "2026-02-11T10:00:00Z"))
    p.run("launches")
    p.run(topics.LEARNER_COMMANDS)
    p.run("partials")  # the newcomer's partial counts, behind the reports

    def landing(tp: tuple[str, int], records: list[LogRecord]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        return [key for key, _ in records].index(keys.open_deletions("acme"))

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=landing)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.flow()
    p.settle()
    distinct = list({e["event_id"]: e for e in p.events("acme")}.values())
    assert [e["direction"] for e in distinct] == ["up", "down"]
    assert p.check() == []


def test_a_part_that_fails_completes_the_request_with_an_error_and_releases_the_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Partition 1's part keeps failing (given up): the request still completes, with an error
    receipt; the hold goes, and the thresholds follow the count (8: partition 1 kept its)."""
    import streams.stages.learners as learners

    real = learners.apply_part

    async def failing_in_partition_1(counters, batch, command, partition, offset):  # type: ignore[no-untyped-def]
        if partition == 1:
            raise RuntimeError("a disk that fails")
        return await real(counters, batch, command, partition, offset)

    monkeypatch.setattr(learners, "apply_part", failing_in_partition_1)
    p, first, second = acme_with_ten_learners(two_workers=False)
    request_three(p, first, second)
    p.flow()
    p.settle()
    receipts = p.receipts("r1")
    assert receipts and "part 1 failed" in (receipts[-1]["error"] or "")
    assert not stage_holds(p, "w0"), "the hold of a request with a failed part stays"
    assert p.active("acme", JAN) == 8
    events = list({e["event_id"]: e for e in p.events("acme")}.values())
    assert [(e["direction"], e["active_learners"]) for e in events] == [("up", 10), ("down", 8)]


def test_a_deletion_for_an_unknown_tenant_does_not_make_it_appear() -> None:
    """A request for a tenant id with no license and no attempts (a typo, a tenant long gone)
    gets its receipt and publishes no count record for it."""
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(60)
    for mode, request_id in (("preview", "r1"), ("physical", "r2")):
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion("ghost", request_id, mode, p.now, older_than="2026-01-01T00:00:00Z"),
        )
    p.flow()
    p.settle()
    assert [r["error"] for r in p.receipts("r1") + p.receipts("r2")] == [None, None]
    assert [key for key in p.counts() if key[0] == "ghost"] == []
    assert p.check() == []


def test_many_tenants_published_in_one_batch_read_their_hold_with_one_get() -> None:
    """The hold is one key per tenant, read with a get (a scan would walk the batch's pending
    writes for every tenant: quadratic in the tenants of a batch)."""
    from streams.stages.tenant_deletions import TenantDeletions

    class CountingBatch:
        def __init__(self) -> None:
            self.gets = 0

        def get(self, table: str, partition: int, key: bytes) -> None:
            self.gets += 1

        def scan(self, *args: object, **kwargs: object) -> list[object]:
            raise AssertionError("a scan for the hold")

    batch = CountingBatch()
    deletions = TenantDeletions(2)
    for n in range(100):
        assert not deletions.holds_thresholds(batch, 0, f"t{n}", START)  # type: ignore[arg-type]
    assert batch.gets == 100


def _completing_flush_over_two_partitions(
    landed: int | None, counted: bool = True
) -> tuple[Pipeline, list[list[bytes]]]:
    """acme (limit 4, threshold 75 %) with two learners in each of two learner partitions;
    a physical request whose part in partition 0 takes its two learners (reported and
    committed), then, in one batch of the tenant stage, a partial count of partition 0 and the
    report of partition 1's part, which counts 3 there (one learner left, two new). The batch's
    changelog send lands its first `landed` records, and the worker dies (None: no crash).
    Not `counted`: partition 1 reports while it catches up after a takeover, without its
    count after the part."""
    p = Pipeline(partitions=2)
    world, worker = p.world, p.worker()
    tenant, where = "acme", tenant_partition("acme", 2)
    p.produce(topics.LICENSES, license_(tenant, learner_limit=4, thresholds=[75]))
    p.settle()
    for learner in learners_in(tenant, 0, 2, 2) + learners_in(tenant, 1, 2, 2):
        p.produce(topics.LAUNCHES, launch(tenant, learner, "a1", p.now.isoformat()))
    p.settle()
    world.commit(worker)
    last: dict[str, Any] = {}
    for record in world.log.records(topics.TENANT_COMMANDS, where):
        command = json.loads(record.value or b"{}")
        if command.get("kind") == "partials" and tenant in command["tenants"]:
            last.update(command["tenants"][tenant])
    cut, start = last["0"]["cut"], next(iter(last["0"]["windows"]))

    def send(command: dict[str, Any]) -> None:
        value = json.dumps(command).encode()
        world.log.append(topics.TENANT_COMMANDS, where, [(tenant.encode(), value)])

    request = {"request_id": "q1", "tenant_id": tenant, "mode": "physical"}
    request["requested_at"] = p.now.isoformat()

    def after(partition: str, active: int, later: int) -> dict[str, Any]:
        partial = last[partition]
        windows = {start: active}
        return {**partial, "seq": partial["seq"] + later, "windows": windows, "total": active}

    def report(part: int, active: int, counted: bool = True) -> dict[str, Any]:
        """The report of a part that left `active` learners in its partition."""
        counts: dict[str, Any] = {
            "attempts_affected": 2,
            "learners_affected": 2,
            "losses": {},
            "counts": {start: active},
        }
        if counted:
            counts[commands.PARTIAL_AFTER] = after(str(part), active, 10)
        else:
            counts[commands.CATCHING_UP] = True
        return {
            "request": {**request, "cut": cut},
            "part": part,
            "parts": 2,
            "partition": part,
            "report": counts,
            "kind": "deletion-part",
        }

    selector = {"kind": "learner_ids", "values": ["x"]}
    whole = {**request, "selector": selector, "requested_by": None, "reason": None}
    send({"request": {**whole, "fingerprint": "f1"}, "kind": "deletion-request"})
    send(report(0, 0))  # partition 0's learners are gone: 0 + 2 of 4
    p.run(topics.TENANT_COMMANDS)
    world.commit(worker)
    send({"tenants": {tenant: {"0": {**after("0", 0, 11), "oldest_ms": None}}}, "kind": "partials"})
    send(report(1, 3, counted))
    if landed is None:
        p.run(topics.TENANT_COMMANDS)
        return p, []
    sent: list[list[bytes]] = []

    def landing(tp: tuple[str, int], records: list[LogRecord]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        sent.append([key or b"" for key, _ in records])
        return min(landed, len(records))

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=landing)
    p.run(topics.TENANT_COMMANDS)
    return p, sent


@pytest.mark.parametrize("landed", range(8))
def test_a_receipt_lands_only_with_the_last_parts_count(landed: int) -> None:
    """The request's record and the hold go after every other record of the flush that
    completes it: a crash that landed the receipt (or the release) without the last part's
    count made the replay evaluate on a count from the middle of the deletion, 2 of 4, and
    mail a `down` and then an `up` that the first try never did (helper-74)."""
    p, sent = _completing_flush_over_two_partitions(landed)
    assert not p.worker().alive
    order = sent[0]
    request, hold = (
        order.index(keys.deletion("acme", "q1")),
        order.index(keys.open_deletions("acme")),
    )
    assert max(order.index(key) for key in order if key.startswith(keys.PARTIALS)) < request < hold
    p.restart()
    p.flow()
    p.settle()
    assert [e["direction"] for e in p.events("acme")] == ["up"] * len(p.events("acme"))
    # (the parts are made by hand, so the receipts' check does not apply: the holds' does)
    assert oracle.check_threshold_holds(p.world.log, p.world.evaluations) == []


def test_a_restart_mid_deletion_alerts_with_the_count_the_deletion_left() -> None:
    """The tenant stage's owner restarts after the first part's report: the request is
    applied again (its parts sent again), every learner partition is taken over, and the
    last part's report comes from a partition still catching up, without its count after the
    part. The hold stays until that partition sent its count (its catch-up's): the `down`
    names 7, the count the deletion left, not 8 (helper-75)."""
    p, first, second = acme_with_ten_learners(two_workers=True)
    request_three(p, first, second)
    owner = tenant_worker(p)
    p.run(topics.ATTEMPT_DELETIONS, owner)
    p.run(topics.TENANT_COMMANDS, owner)
    p.run(topics.LEARNER_COMMANDS, "w0")
    p.run("partials", "w0")
    p.run(topics.TENANT_COMMANDS, owner)  # the first part's report: 8 of 10, held
    p.worker(owner).alive = False
    p.restart(owner)
    for _ in range(3):
        for worker in ("w0", "w1"):
            p.flow(worker)
    p.settle()
    assert p.active("acme", JAN) == 7
    distinct = list({e["event_id"]: e for e in p.events("acme")}.values())
    assert [(e["direction"], e["active_learners"]) for e in distinct] == [("up", 10), ("down", 7)]


def test_a_request_completed_by_a_report_without_its_count_holds_until_the_count_comes() -> None:
    """Partition 1 applies the last part while it catches up after a takeover, so its report
    has no count after the part: the receipt goes out, but the thresholds stay held (they
    would see partition 1's count from before the part) until partition 1 sends a newer
    count; then they are evaluated on what the deletion left."""
    p, _ = _completing_flush_over_two_partitions(None, counted=False)
    tenant = "acme"
    assert p.receipts("q1") and p.receipts("q1")[-1]["error"] is None
    state = p.worker().state.partition(keys.TENANT_STATE, tenant_partition(tenant, 2)).rows
    assert keys.open_deletions(tenant) in state, "released before partition 1 counted"
    assert [e["direction"] for e in p.events(tenant)] == ["up"]
    # partition 1, caught up, reports its count: 3 (one learner left, two new)
    stale = json.loads(state[keys.partial(tenant, "1")])
    newer = {**stale, "seq": stale["seq"] + 1, "total": 3, "oldest_ms": None}
    newer["windows"] = {window: 3 for window in stale["windows"]}
    partials = {"tenants": {tenant: {"1": newer}}, "kind": "partials"}
    p.world.log.append(
        topics.TENANT_COMMANDS,
        tenant_partition(tenant, 2),
        [(tenant.encode(), json.dumps(partials).encode())],
    )
    p.run(topics.TENANT_COMMANDS)
    assert keys.open_deletions(tenant) not in state
    assert [e["direction"] for e in p.events(tenant)] == ["up"]  # 3 of 4: still at 75 %
    assert oracle.check_threshold_holds(p.world.log, p.world.evaluations) == []


def test_a_release_a_crash_lost_comes_with_the_replay_of_the_count() -> None:
    """The count a request awaited arrives and its flush lands up to the release of the hold,
    not the release: the replay of that partial count, which changes nothing any more,
    releases it all the same (helper-76)."""
    p, _ = _completing_flush_over_two_partitions(None, counted=False)
    tenant, where = "acme", tenant_partition("acme", 2)
    p.world.commit(p.worker())
    state = p.worker().state.partition(keys.TENANT_STATE, where).rows
    stale = json.loads(state[keys.partial(tenant, "1")])
    newer = {**stale, "seq": stale["seq"] + 1, "oldest_ms": None}
    partials = {"tenants": {tenant: {"1": newer}}, "kind": "partials"}
    p.world.log.append(topics.TENANT_COMMANDS, where, [(b"acme", json.dumps(partials).encode())])

    def landing(tp: tuple[str, int], records: list[LogRecord]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        return [key for key, _ in records].index(keys.open_deletions(tenant))

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=landing)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.run(topics.TENANT_COMMANDS)  # the tenant stage alone: no learner partition reports
    state = p.worker().state.partition(keys.TENANT_STATE, where).rows
    assert "awaiting" not in json.loads(state[keys.deletion(tenant, "q1")])
    assert keys.open_deletions(tenant) not in state
