"""Failures the simulator found while it was being built, each kept as a scenario of its own
(the seeds that found them drew other schedules once the simulator grew)."""

from __future__ import annotations

import json
from datetime import timedelta

from schemas import topics
from streams.stages import commands
from streams.tools.simulate import runner
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"


def test_a_deposed_workers_late_license_never_replaces_a_newer_one() -> None:
    """Found as seed 269: a deposed worker's ingest sent an old license tombstone that landed
    after the newer license; the tenant fell back to the default license."""
    p = Pipeline(partitions=1, workers=2, assignment={"w0": [0], "w1": []})
    p.produce(topics.LICENSES, None, key=b"acme")  # a tombstone: the default license
    old = p.worker("w0")
    old.aware = False  # deposed without knowing; its sends land late
    old.wakes_at = p.world.step + 1_000
    p.rebalance({"w1": [0]})
    # the deposed worker routes the tombstone; its send is in flight for a long while
    runner.run_task(p.world, old, topics.LICENSES, 10)
    [flight] = p.world.in_flight
    flight.land_at = flight.wait.until = p.world.step + 30
    p.produce(topics.LICENSES, license_("acme", window_months=3))
    p.run(topics.LICENSES, "w1")  # its successor routes the tombstone and the new license
    p.flow("w1")
    for _ in range(40):
        p.world.advance()  # now the deposed worker's tombstone lands, last
    p.world.wake(old)
    p.rebalance({"w0": [0], "w1": []})
    p.flow("w0")
    p.settle()
    licenses = [
        c
        for c in map(commands.decode, (r.value for r in p.records(topics.TENANT_COMMANDS)))
        if isinstance(c, commands.License)
    ]
    assert licenses[-1].license is None, "the scenario needs the old tombstone to land last"
    [record] = p.counts().values()
    assert record["licensed"] is True and record["window"]["months"] == 3
    assert p.check() == []


def test_a_deletion_whose_parts_a_crash_lost_is_completed_by_its_replay() -> None:
    """Found as seed 444: the request's state became durable, its parts never reached the
    learner stage; the replay saw "under way" and sent nothing, and no receipt ever came."""
    p = Pipeline(partitions=2)
    for n in range(3):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", p.now, learner_ids=["l0"])
    )
    p.run(topics.ATTEMPT_DELETIONS)

    def state_only(tp, records):  # type: ignore[no-untyped-def]
        return len(records) if tp[0] == topics.TENANT_STATE_CHANGELOG else 0

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=state_only)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.flow()
    p.settle()
    [receipt] = {json.dumps(r, sort_keys=True): r for r in p.receipts("r1")}.values()
    assert receipt["attempts_affected"] == 1
    assert p.active("acme", JAN) == 2
    assert p.check() == []


def test_a_count_the_old_owner_sent_last_is_set_right_by_its_successor() -> None:
    """Found as seed 22: a record of a window that a later license removed stayed published,
    because what had sent it was never durable (and a replay saw later state)."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.produce(topics.LICENSES, license_("acme", cycle_start="2025-07-26", window_months=3))
    p.flow()
    p.world.kill(p.worker())
    p.restart()
    p.settle()
    assert list(p.counts()) == [("acme", "2026-01-26")]
    assert p.check() == []


def test_a_launch_a_deletion_covers_is_erased_even_when_another_attempt_is_stored() -> None:
    """Found as seed 209894 (of 10,000 from 200000): a replay of a launch that the tenant's
    `older_than` deletion had erased found the attempt stored by a later launch, called it a
    conflict and remembered it; once that attempt was deleted too, the same launch sent again
    was a "conflict", not "erased". A deletion's cut-offs never go away, so erased comes first
    and the verdict is the same on a replay."""
    p = Pipeline(partitions=1)
    cutoff = p.now - timedelta(days=60)
    old_at, new_at = (p.now - timedelta(days=100)).isoformat(), (p.now - timedelta(days=1))
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "q0", "physical", p.now, older_than=cutoff.isoformat()),
    )
    p.flow()
    p.produce(topics.LAUNCHES, launch("acme", "l4", "a2", new_at.isoformat()))
    p.flow()
    p.produce(topics.LAUNCHES, launch("acme", "l4", "a2", old_at))  # covered by the cut-off
    p.flow()
    p.advance(3600)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion(
            "acme", "q1", "physical", p.now, attempts=[{"learner_id": "l4", "attempt_id": "a2"}]
        ),
    )
    p.flow()
    p.produce(topics.LAUNCHES, launch("acme", "l4", "a2", old_at))  # the same launch again
    p.flow()
    p.settle()
    reasons = [(d["source"]["offset"], d["reason"]) for d in p.dead_letters()]
    assert reasons == [(1, "erased"), (2, "erased")]
    assert p.attempts() == {}
    assert p.check() == []


def test_a_takeover_keeps_the_windows_a_license_changed_back_brought_back() -> None:
    """Found by tests/integration/test_compaction.py, then by the simulator once it checked the
    outputs before its final restore too (seeds 9200209, 9200831, 9201658): a license changed
    and changed back within one tick kept the windows it brought back among those to tombstone
    (`gone`, cleared when a tick confirms them sent), and the next takeover sent their counts
    and then their tombstones. The counts stayed missing until the windows changed again."""
    p = Pipeline(partitions=2)
    monthly = {"cycle_start": "2025-01-15", "window_months": 1}
    yearly = {"cycle_start": "2025-01-01", "window_months": 12}
    p.produce(topics.LICENSES, license_("acme", **yearly))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a", "2026-01-20T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a", "2026-02-20T10:00:00Z"))
    p.settle()
    for license_fields in (monthly, yearly, monthly):
        p.produce(topics.LICENSES, license_("acme", **license_fields))
        runner.drain(p.world)  # no tick in between: the tombstoned windows stay `gone`
    assert (p.active("acme", "2026-01-15"), p.active("acme", "2026-02-15")) == (1, 1)

    p.restart("w0")

    assert (p.active("acme", "2026-01-15"), p.active("acme", "2026-02-15")) == (1, 1)
    assert p.active("acme", "2025-01-01") is None  # the yearly window stays tombstoned
    assert p.check() == []
