"""The eight bugs of the exactness audit (each reproduced on 45e8d5b), and the four items beside
them: each test sets up its bug's trigger with the real stages in-process and asserts what the
contract promises. No broker: tests/stages/pipeline.py runs the stages over memory.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas import topics
from streams.stages import commands, keys
from streams.stages.store import MAX_RECORD_BYTES, LogRecord, RecordTooLarge
from tests.stages.pipeline import (
    Pipeline,
    deletion,
    launch,
    learners_in,
    license_,
)

JAN = "2026-01-01"


def tenant_partition(tenant: str, partitions: int = 2) -> int:
    from zlib import crc32

    return crc32(tenant.encode()) % partitions


# -- 1 -----------------------------------------------------------------------------------------
def test_license_flap_never_publishes_a_half_counted_window() -> None:
    """A -> B -> A while one learner partition lags: the window stays at 10, no false alarm."""
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    a = license_("acme", learner_limit=10, thresholds=[80])
    b = license_(
        "acme", cycle_start="2026-01-15", window_months=1, learner_limit=10, thresholds=[80]
    )
    p.produce(topics.LICENSES, a)
    for partition in (0, 1):
        for learner in learners_in("acme", partition, 2, 5):
            p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    for worker in ("w0", "w1", "w0", "w1"):
        p.flow(worker)
    assert p.active("acme", JAN) == 10
    assert [e["direction"] for e in p.events("acme")] == ["up"]

    p.produce(topics.LICENSES, b)
    p.produce(topics.LICENSES, a)
    for worker in ("w0", "w1"):
        p.run(topics.LICENSES, worker)  # both licenses go to the tenant and learner stages
    lagging = "w1"
    p.run(topics.LEARNER_COMMANDS, "w0")  # partition 0 applies B, then A
    p.run("partials", "w0")
    # partition 1 applies only B and reports on B
    runner_step(p, lagging, topics.LEARNER_COMMANDS, limit=1)
    p.run("partials", lagging)
    for worker in ("w0", "w1"):
        p.run(topics.TENANT_COMMANDS, worker)
    assert 5 not in p.history("acme", JAN), "a window published with half its learners"
    assert [e["direction"] for e in p.events("acme")] == ["up"], "a false down/up pair"
    for worker in ("w1", "w0", "w1"):
        p.flow(worker)
    assert p.active("acme", JAN) == 10
    assert p.check() == []


def runner_step(p: Pipeline, worker: str, task: str, limit: int) -> None:
    """One unit of work of one task, of at most `limit` records."""
    from streams.tools.simulate import runner

    w = p.worker(worker)
    runner.run_task(p.world, w, task, limit)
    while w.activities:
        p.world.advance()


# -- 2 -----------------------------------------------------------------------------------------
def outputs_lost(tp: tuple[str, int], records: list[LogRecord]) -> int:
    return 0  # the dying send reached nothing


def test_a_tenant_stage_replay_after_a_crash_loses_no_output() -> None:
    """Two commands of one tenant in one batch; the state became durable, the outputs did not:
    the count is 5 in the end, the `up` event is sent (once per crossing), nothing is lost."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", learner_limit=5, thresholds=[100]))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 1
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.run("launches")
    p.run(topics.LEARNER_COMMANDS)
    p.run("partials")  # partial counts: 2
    for learner in ("l2", "l3", "l4"):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", "2026-02-10T10:00:00Z"))
    p.run("launches")
    p.run(topics.LEARNER_COMMANDS)
    p.run("partials")  # partial counts: 5
    # one batch of both commands; the process dies sending their outputs
    p.crash_at("w0", "send", topics.TENANT_COMMANDS, countdown=2, landing=outputs_lost)
    p.run(topics.TENANT_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.settle()
    assert p.active("acme", JAN) == 5
    ups = [e for e in p.events("acme") if e["direction"] == "up"]
    assert len({e["event_id"] for e in ups}) == 1
    assert p.check() == []


def test_after_a_recut_whose_outputs_a_crash_lost_the_old_windows_are_tombstoned() -> None:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 1
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-15", window_months=1))
    p.run(topics.LICENSES)
    p.run(topics.LEARNER_COMMANDS)
    p.run("partials")
    p.crash_at("w0", "send", topics.TENANT_COMMANDS, countdown=2, landing=outputs_lost)
    p.run(topics.TENANT_COMMANDS)
    p.restart()
    p.settle()
    assert ("acme", JAN) not in p.counts(), "the old cut's window is still published"
    assert p.active("acme", "2026-01-15") == 1
    assert p.check() == []


# -- 3 -----------------------------------------------------------------------------------------
def test_a_crash_inside_a_physical_deletion_leaves_no_deleted_learner_counted() -> None:
    """Tombstones durable, memberships not: the replay heals them; receipt 10 -> 8, count 8.
    The markers of the removed attempts were made durable a flush before the tombstones, so
    the replay (which finds nothing left to remove) loses none: a later launch repeating a
    removed attempt is still erased."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    for n in range(10):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 10
    p.advance(3600)
    requested = p.now
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", requested, learner_ids=["l0", "l1"]),
    )
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)

    def tombstones_only(tp: tuple[str, int], records: list[LogRecord]) -> int:
        return len(records) if tp[0] == topics.ATTEMPTS else 0

    p.crash_at("w0", "send", "deletion", landing=tombstones_only)
    p.run(topics.LEARNER_COMMANDS)
    assert not p.worker().alive
    p.restart()
    p.settle()
    [receipt] = {json.dumps(r, sort_keys=True): r for r in p.receipts("r1")}.values()
    assert receipt["windows"] == [{"start": JAN, "active_before": 10, "active_after": 8}]
    assert p.active("acme", JAN) == 8
    assert not any(key.startswith(("acme/l0/", "acme/l1/")) for key in p.attempts())
    assert p.check() == []
    later = (requested + timedelta(minutes=5)).isoformat()
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a1", later))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", later))
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 8
    assert [d["reason"] for d in p.dead_letters()] == ["erased", "erased"]
    assert p.check() == []


# -- 4 -----------------------------------------------------------------------------------------
ODD_IDS = ["#epoch", "lic", "m", "x", "done", "pub", "__faust", "t", "a b", "ünï", "dm", "parts"]


def test_ids_that_look_like_internal_keys_are_counted_like_any_other() -> None:
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    for tenant in ODD_IDS:
        p.produce(topics.LICENSES, license_(tenant))
        for learner in ("l0", "lic", "m", "#epoch"):
            p.produce(topics.LAUNCHES, launch(tenant, learner, "a1", "2026-02-10T10:00:00Z"))
    for worker in ("w0", "w1") * 3:
        p.flow(worker)
    p.settle()
    for tenant in ODD_IDS:
        assert p.active(tenant, JAN) == 4, tenant
    assert p.check() == []


def test_the_faust_offset_key_is_no_valid_id() -> None:
    """A tenant id equal to faust's changelog-offset key has a control character: invalid."""
    from streams.worker.state import OFFSET_KEY

    p = Pipeline(partitions=1)
    tenant = OFFSET_KEY.decode()
    p.produce(topics.LAUNCHES, launch(tenant, "l1", "a1", "2026-02-10T10:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and "tenant_id" in letter["detail"]
    assert p.active("acme", JAN) == 1


@pytest.mark.parametrize("odd", ["__faust\x00offset__"[:7], "#epoch", "#fence", "lic", "x", "a/b"])
def test_no_id_builds_a_meta_key_or_another_kinds_key(odd: str) -> None:
    from streams.worker.state import OFFSET_KEY

    built = {
        keys.license_entry(odd),
        keys.membership(odd, odd),
        keys.groups(odd, odd),
        keys.attempt_marker(odd, odd, odd),
        keys.learner_cutoff(odd, odd),
        keys.tenant_cutoff(odd),
        keys.conflicts(odd, odd, odd),
        keys.partial(odd, "0"),
        keys.legacy_partials(odd),
        keys.published(odd),
        keys.thresholds(odd),
        keys.deletion(odd, odd),
        keys.part_done(odd, odd, 0),
    }
    assert not built & {OFFSET_KEY, keys.EPOCH, keys.FENCE}
    assert all(b"/" in key and not key.startswith(b"#") for key in built)


# -- 5 -----------------------------------------------------------------------------------------
def test_an_event_that_fails_after_writing_leaves_nothing_half_done() -> None:
    """Reading a large launch back for its dead letter fails once: the command is undone and
    tried again, so its attempts, counts and dead letter come out exactly once."""
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    big = "x" * 2_000  # a launch this large travels by reference, read back for a dead letter
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z", padding=big))
    p.flow()
    failures = []
    stage = p.worker().learner
    reader = stage.read_raw

    async def flaky(topic: str, partition: int, offset: int) -> bytes | None:
        if not failures:
            failures.append(offset)
            raise ConnectionError("Kafka hung up")
        return await reader(topic, partition, offset)

    stage.read_raw = flaky
    conflicting = launch("acme", "l1", "a1", "2026-02-11T10:00:00Z", padding=big)
    p.produce(topics.LAUNCHES, conflicting)
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert failures, "the read failed once"
    conflicts = [d for d in p.dead_letters() if d["reason"] == "conflict"]
    assert len(conflicts) == 1 and json.loads(conflicts[0]["raw"])["padding"] == big
    assert p.active("acme", JAN) == 2
    assert p.world.gave_up == []
    assert p.check() == []


def test_a_launch_that_keeps_failing_is_dead_lettered_and_the_stage_goes_on() -> None:
    """The command's second launch conflicts and reading its raw record fails every time: the
    command fails, and its launches are applied one at a time (the loop's `split`): the first
    is counted, the second dead-lettered with the error, and the stage goes on. (Before the
    split, the whole command was dead-lettered and nothing of it written.)"""
    p = Pipeline(partitions=1)
    stage = p.worker().learner

    async def broken(topic: str, partition: int, offset: int) -> bytes | None:
        raise RuntimeError("a bug")

    stage.read_raw = broken
    big = "x" * 2_000
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z", padding=big))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-11T10:00:00Z", padding=big))
    p.run("launches")
    p.run(topics.LEARNER_COMMANDS)  # one command: the second launch conflicts, its read fails
    [letter] = p.dead_letters()
    assert letter["reason"] == "invalid" and "could not apply" in letter["detail"]
    assert "the original record could not be read back" in letter["detail"]
    assert letter["source"] == {"topic": topics.LAUNCHES, "partition": 0, "offset": 1}
    [(key, attempt)] = p.attempts().items()
    assert key == "acme/l1/a1" and attempt["launched_at"].startswith("2026-02-10")
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 2, "the stage goes on"


# -- 6 -----------------------------------------------------------------------------------------
def test_a_window_that_goes_away_and_comes_back_keeps_its_threshold_state() -> None:
    """12-month window with 9 of 10 learners (up); a 1-month license removes it; 5 learners are
    deleted; the 12-month license comes back: `down` (a new id), later `up` (another new id)."""
    p = Pipeline(partitions=1)
    yearly = license_("acme", learner_limit=10, thresholds=[80])
    monthly = license_(
        "acme", cycle_start="2026-01-15", window_months=1, learner_limit=10, thresholds=[80]
    )
    p.produce(topics.LICENSES, yearly)
    for n in range(9):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.produce(topics.LICENSES, monthly)
    p.flow()
    assert ("acme", JAN) not in p.counts()
    p.advance(3600)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, learner_ids=[f"l{n}" for n in range(5)]),
    )
    p.flow()
    p.produce(topics.LICENSES, yearly)
    p.flow()
    assert p.active("acme", JAN) == 4
    jan = [e for e in p.events("acme") if e["window"]["start"] == JAN]
    assert [e["direction"] for e in jan][-1] == "down", "a stale `up` stays the last event"
    for n in range(10, 15):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    jan = [e for e in p.events("acme") if e["window"]["start"] == JAN]
    assert [e["direction"] for e in jan] == ["up", "down", "up"]
    assert len({e["event_id"] for e in jan}) == 3, "an id of an earlier crossing reused"
    assert p.check() == []


# -- 7 -----------------------------------------------------------------------------------------
def test_partial_counts_of_thousands_of_tenants_are_split_below_the_record_limit() -> None:
    from collections import Counter

    from streams.domain.learners import CountChange
    from streams.stages.learners import LearnerStage

    stage = LearnerStage(partitions=1)
    stage.counters.epochs[0] = (1, 1)
    windows = Counter({f"20{y:02d}-{m:02d}-01": 3 for y in range(24, 26) for m in range(1, 13)})
    for n in range(2_500):  # after a restart every tenant is dirty: 2,500 x 24 windows
        stage.counters.apply(0, f"tenant-{n:05d}", "2024-01-01/1/UTC", CountChange(windows, 3), 1)
    out = stage.partial_commands()
    assert len(out) > 1
    assert all(len(value) < MAX_RECORD_BYTES for _, value in out)
    reported = {}
    for _, value in out:
        command = commands.decode(value)
        assert isinstance(command, commands.Partials)
        reported.update(command.tenants)
    assert len(reported) == 2_500


def test_a_team_deletion_of_400000_members_stores_its_members_in_pieces() -> None:
    from streams.stages import learner_deletions
    from streams.stages.memory import MemoryStore

    store = MemoryStore(partitions=1)
    store.assume("learner", [0])
    batch = store.batch()
    members = [f"learner-{n:07d}-of-a-large-team" for n in range(400_000)]
    pieces = learner_deletions.store_members(batch, 0, "acme", "r1", 0, members)
    assert pieces > 1
    assert all(len(value) < MAX_RECORD_BYTES for (_, value) in _pending_values(batch))
    done = {"members_chunks": pieces}
    assert learner_deletions.load_members(batch, 0, "acme", "r1", 0, done) == members


def _pending_values(batch) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    return [(k, v[0]) for rows in batch._writes.values() for k, v in rows.items()]


def test_a_record_kafka_refuses_for_its_size_never_blocks_a_stage() -> None:
    """A broker whose max.message.bytes is far below the default refuses one record: its event
    is given up (said and counted); the events around it go through."""
    p = Pipeline(partitions=1)
    log = p.worker().log
    send = log.send

    async def small_broker(groups, headers=None):  # type: ignore[no-untyped-def]
        for records in groups.values():
            if any(len(value or b"") > 2_000 for _, value in records):
                raise RecordTooLarge("the broker refuses records over 2,000 bytes")
        return await send(groups, headers)

    log.send = small_broker  # type: ignore[method-assign]
    huge = license_("big", notify=[f"admin{n}@example.com" for n in range(200)])
    for value in (license_("first"), huge, license_("last")):
        p.produce(topics.LICENSES, value)
    p.run(topics.LICENSES)
    licensed = {
        commands.decode(r.value).tenant_id  # type: ignore[union-attr]
        for r in p.records(topics.TENANT_COMMANDS)
    }
    assert licensed == {"first", "last"}
    assert any("big" in g for g in p.world.gave_up) or p.world.gave_up
    assert p.worker().alive


def test_every_record_the_stages_write_is_checked_against_the_limit() -> None:
    from streams.stages.memory import MemoryStore

    store = MemoryStore(partitions=1)
    store.assume("learner", [0])
    batch = store.batch()
    with pytest.raises(RecordTooLarge):
        batch.put(keys.LEARNER_STATE, 0, b"m/t/l", ["x" * MAX_RECORD_BYTES])
    with pytest.raises(RecordTooLarge):
        batch.emit(topics.DEAD_LETTERS, b"k", b"x" * (MAX_RECORD_BYTES + 1))


# -- 8 -----------------------------------------------------------------------------------------
def test_a_dashboard_date_is_midnight_in_the_tenants_time_zone() -> None:
    from streams.http import api
    from streams.http.read_model import ReadModel

    model = ReadModel()
    model.apply_license(b"tokyo", json.dumps(license_("tokyo", timezone="Asia/Tokyo")).encode())
    selector = api.form_selector(model, "tokyo", {"older_than": "2026-11-01"})
    assert selector.request_fields() == {"older_than": "2026-10-31T15:00:00+00:00"}
    assert api.form_selector(
        model, "unlicensed", {"older_than": "2026-11-01"}
    ).request_fields() == {"older_than": "2026-11-01T00:00:00+00:00"}
    with pytest.raises(api.ApiError):
        api.form_selector(model, "tokyo", {"older_than": "yesterday"})


# -- the items beside the eight --------------------------------------------------------------------
def test_a_request_id_reused_for_another_request_changes_nothing_and_says_so() -> None:
    p = Pipeline(partitions=2)
    for n in range(4):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    preview = deletion("acme", "r1", "preview", p.now, learner_ids=["l0", "l1"])
    p.produce(topics.ATTEMPT_DELETIONS, preview)
    p.flow()
    physical = {**preview, "mode": "physical"}
    p.produce(topics.ATTEMPT_DELETIONS, physical)
    p.produce(topics.ATTEMPT_DELETIONS, preview)  # the preview again: a redelivery
    p.flow()
    p.settle()
    receipts = {json.dumps(r, sort_keys=True): r for r in p.receipts("r1")}.values()
    modes = sorted((r["mode"], r["error"] is None) for r in receipts)
    assert modes == [("physical", False), ("preview", True)]
    error = next(r["error"] for r in receipts if r["error"])
    assert "already used for another request" in error
    assert p.active("acme", JAN) == 4, "the physical deletion under a used id changed nothing"
    assert p.check() == []


def test_a_deletion_naming_an_attempt_erases_its_launch_that_arrives_only_later() -> None:
    p = Pipeline(partitions=1)
    p.produce(topics.LAUNCHES, launch("acme", "l0", "a0", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    request = deletion(
        "acme", "r1", "physical", p.now, attempts=[{"learner_id": "l1", "attempt_id": "a1"}]
    )
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    before = (p.now - timedelta(days=1)).isoformat()
    after = (p.now + timedelta(minutes=5)).isoformat()
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", before))  # launched before: erased
    p.flow()
    assert [d["reason"] for d in p.dead_letters()] == ["erased"]
    assert p.active("acme", JAN) == 1
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", after, element="other"))
    p.flow()
    assert p.active("acme", JAN) == 2, "launched after the request: it counts"
    assert p.check() == []


def test_future_is_decided_from_the_record_so_a_replay_decides_the_same() -> None:
    p = Pipeline(partitions=1)
    # launched 2 h after the record was written: future, whenever it is processed
    ahead = (p.now + timedelta(hours=2)).isoformat()
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", ahead))
    p.advance(86_400 * 3)  # processed days later: still future (the wall clock is not asked)
    p.flow()
    assert [d["reason"] for d in p.dead_letters()] == ["future"]
    assert p.counts() == {}


def test_settle_waits_for_learner_groups_too() -> None:
    from streams.kafka.settle import WATCHED

    assert topics.LEARNER_GROUPS in WATCHED[""]


def test_the_stages_decide_nothing_from_the_wall_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run twice, the second with a wall clock a year later: identical records."""
    import streams.stages.tenants as tenants_module

    def run() -> list[tuple[str, bytes | None, bytes | None]]:
        p = Pipeline(partitions=2)
        p.produce(topics.LICENSES, license_("acme", learner_limit=2, thresholds=[100]))
        for n in range(3):
            p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a1", "2026-02-10T10:00:00Z"))
        p.flow()
        p.settle()
        return [
            (topic, r.key, r.value)
            for topic in (topics.ACTIVE_LEARNER_COUNTS, topics.THRESHOLD_EVENTS)
            for r in p.records(topic)
        ]

    first = run()

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def]
            return datetime(2027, 6, 1, tzinfo=UTC)

    monkeypatch.setattr(tenants_module, "datetime", Later)
    assert run() == first
