"""A review of the ranked changelog order (10f91e6) and of per-tenant partials (4c3b6d2).

Events not yet confirmed sent reach the tenant-state changelog ahead of the window record they
belong to (so that a crash never loses a flap behind it). A crash may then land them, the
license and the publication, and not the record: the replay sees the last license stored
(the earlier ones are superseded and publish nothing) and numbered its own crossing after
the stale record, taking a number an event already sent holds, with other content. Now a
crossing whose number such an event holds continues after it, a tick moves a record left
behind its events past them before forgetting them, and a takeover does not send a record's
last event after a later pending one. (The same held before the ranks, with the events in
first-write order ahead of the record.)

A tenant of a partials command that fails is tried again as a whole event is (MAX_TRIES),
and only then dead-lettered alone: a passing failure dead-lettered the tenant's counts at
once, which only its learner partition's next report healed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from schemas import topics
from streams.stages import keys
from streams.stages.store import Pair, TopicPartition
from streams.stages.tenants import TenantStage
from tests.stages.pipeline import Pipeline, launch, license_

WINDOW = "2026-01-01"


def _limit(learners: int) -> dict[str, object]:
    return license_("acme", cycle_start=WINDOW, learner_limit=learners, thresholds=[100])


def _distinct(p: Pipeline) -> list[dict[str, object]]:
    return list({e["event_id"]: e for e in p.events("acme")}.values())


def test_pending_events_landed_without_their_window_record_number_no_crossing_twice() -> None:
    """Three license flaps in one batch (down 2, up 3, down 4): a crash lands the events not
    yet confirmed, the license and the publication, not the window record (any order that puts
    the events ahead of their record allows it). The takeover sends the three events; the
    replay sees the last license already stored (the first two are superseded and publish
    nothing) and numbered its own `down` 2 again, at another time; the next `up` was 3 again,
    with other content than the 3 already mailed."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, _limit(2))
    for learner in ("l0", "l1"):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2026-02-10T10:00:00Z"))
    p.settle()
    assert [e["direction"] for e in p.events("acme")] == ["up"]
    for learners in (4, 2, 4):  # down, up, down: each license at its own time
        p.advance(5)
        p.produce(topics.LICENSES, _limit(learners))
        p.run(topics.LICENSES)
    record = keys.window_thresholds("acme", WINDOW)

    def all_but_the_record(tp: TopicPartition, records: Sequence[Pair]) -> int:
        if tp[0] != topics.TENANT_STATE_CHANGELOG:
            return 0
        written = [key for key, _ in records]
        return written.index(record)

    p.crash_at("w0", "send", topics.TENANT_COMMANDS, landing=all_but_the_record)  # type: ignore[arg-type]
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.advance(5)
    p.restart()
    p.flow()
    p.settle()
    p.advance(5)
    p.produce(topics.LICENSES, _limit(2))  # up again
    p.flow()
    p.settle()
    assert p.check() == []
    directions = [e["direction"] for e in _distinct(p)]
    assert directions[-1] == "up"


def test_a_tenants_passing_failure_is_tried_again_not_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before the per-tenant savepoints, an event that raised was rolled back and tried again
    (MAX_TRIES, streams/stages/loop.py): a passing failure (a local read that failed once)
    passed. `on_partials` now catches every exception of a tenant at its first try and
    dead-letters its counts at once: the tenant's count stays behind until its learner
    partition happens to report it again (a new launch there)."""
    p = Pipeline(partitions=1)
    for tenant in ("acme", "globex"):
        p.produce(topics.LICENSES, license_(tenant, window_months=1, learner_limit=10))
    p.settle()
    publish = TenantStage.publish
    failures = {"globex": 1}

    def once(self: TenantStage, batch, partition, tenant_id, now, *rest) -> bool:  # type: ignore[no-untyped-def]
        if failures.get(tenant_id):
            failures[tenant_id] -= 1
            raise OSError("a local read failed once")
        return publish(self, batch, partition, tenant_id, now, *rest)

    monkeypatch.setattr(TenantStage, "publish", once)
    for tenant in ("acme", "globex"):
        p.produce(topics.LAUNCHES, launch(tenant, "l0", "a0", "2026-03-10T10:00:00Z"))
    p.flow()
    assert failures["globex"] == 0  # it did fail once
    assert p.active("acme", "2026-03-01") == 1
    assert p.active("globex", "2026-03-01") == 1
    assert [d for d in p.dead_letters() if d["source"]["topic"] == topics.TENANT_COMMANDS] == []
