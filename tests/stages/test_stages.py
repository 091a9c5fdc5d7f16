"""The stages over memory: every deletion selector in every mode, re-cuts, rebuilds from the
changelogs, and replays after a crash at each step of a flush. Every test ends with the
simulator's independent checks (`Pipeline.check`), besides its own assertions."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from schemas import topics
from streams.stages import keys, learner_deletions
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN, FEB, MAR = "2026-01-01", "2026-02-01", "2026-03-01"
MONTHLY = license_("acme", window_months=1)

SELECTORS = {
    "attempts": {"attempts": [{"learner_id": "l1", "attempt_id": "a1"}]},
    "learner_ids": {"learner_ids": ["l1", "l2"]},
    "older_than": {"older_than": "2026-02-15T00:00:00+00:00"},
    "teams": {"teams": ["red"]},
    "roles": {"roles": ["author"]},
}


def populated(partitions: int = 2) -> Pipeline:
    """acme, monthly windows: l1 and l2 (team red, role author) in January and February, l3
    (team blue) in February, l4 in March."""
    p = Pipeline(partitions=partitions)
    p.produce(topics.LICENSES, MONTHLY)
    for learner, attempt, at in [
        ("l1", "a1", "2026-01-10T10:00:00Z"),
        ("l1", "a2", "2026-02-10T10:00:00Z"),
        ("l2", "a1", "2026-01-20T10:00:00Z"),
        ("l2", "a2", "2026-02-20T10:00:00Z"),
        ("l3", "a1", "2026-02-12T10:00:00Z"),
        ("l4", "a1", "2026-03-05T10:00:00Z"),
    ]:
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, at))
    for learner, teams, roles in [
        ("l1", ["red"], ["author"]),
        ("l2", ["red"], ["author"]),
        ("l3", ["blue"], []),
    ]:
        value = {"tenant_id": "acme", "learner_id": learner, "teams": teams, "roles": roles}
        p.produce(topics.LEARNER_GROUPS, value)
    p.flow()
    assert (p.active("acme", JAN), p.active("acme", FEB), p.active("acme", MAR)) == (2, 3, 1)
    return p


# after the deletion of each selector: (active in Jan, Feb, Mar), attempts affected
PHYSICAL = {
    "attempts": ((1, 3, 1), 1),  # l1's January attempt: l1 leaves January only
    "learner_ids": ((0, 1, 1), 4),
    "older_than": ((0, 1, 1), 4),  # l2's February 20th attempt stays
    "teams": ((0, 1, 1), 4),
    "roles": ((0, 1, 1), 4),
}


# how a physical part's deleting pass gets each learner's removal: kept from the read-only pass
# (the default for parts this small), read again in chunks of 1 learner (a part too large to
# keep), or kept for its first chunk and then read again (the cap reached within the part: a
# kept learner here takes about 1,300 bytes)
PLAN_REUSE = {"kept": None, "read again": (0, 1), "cap within the part": (2_000, 1)}


@pytest.mark.parametrize("reuse", sorted(PLAN_REUSE))
@pytest.mark.parametrize("mode", ["physical", "logical", "preview"])
@pytest.mark.parametrize("kind", sorted(SELECTORS))
def test_every_selector_in_every_mode(
    kind: str, mode: str, reuse: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if PLAN_REUSE[reuse] is not None:
        cap, chunk = PLAN_REUSE[reuse]
        monkeypatch.setattr(learner_deletions, "KEPT_BYTES_MAX", cap)
        monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", chunk)
    plans: list[learner_deletions.KeptRemovals | None] = []
    plan_part = learner_deletions.plan_part

    def planned(*args: Any) -> Any:
        done, kept = plan_part(*args)
        plans.append(kept)
        return done, kept

    monkeypatch.setattr(learner_deletions, "plan_part", planned)
    p = populated()
    p.advance(86_400)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", mode, p.now, **SELECTORS[kind]))
    p.flow()
    p.settle()
    (after, affected) = PHYSICAL[kind]
    [receipt] = {json.dumps(r, sort_keys=True): r for r in p.receipts("r1")}.values()
    assert receipt["error"] is None
    assert receipt["attempts_affected"] == affected
    assert receipt["selector"]["kind"] == kind
    counts = (p.active("acme", JAN), p.active("acme", FEB), p.active("acme", MAR))
    if mode == "physical":
        assert counts == after
        assert len(p.attempts()) == 6 - affected
    else:
        assert counts == (2, 3, 1), "logical deletions and previews change no count"
        hidden = [k for k, v in p.attempts().items() if v["logically_deleted"]]
        assert len(hidden) == (affected if mode == "logical" else 0)
    if mode != "logical":
        # the preview says what the physical deletion does
        before = {JAN: 2, FEB: 3, MAR: 1}
        shown = {w["start"]: (w["active_before"], w["active_after"]) for w in receipt["windows"]}
        wanted = {
            start: (before[start], now)
            for start, now in zip((JAN, FEB, MAR), after, strict=True)
            if now != before[start]
        }
        assert shown == wanted
    assert p.check() == []
    if mode == "physical" and kind != "attempts":  # the path the case names was taken
        # the parts of partitions holding any of the learners
        kept = [k for k in plans if k is not None and (k.chunks or not k.complete)]
        assert kept, plans
        if reuse == "kept":
            assert all(k.complete for k in kept)
        elif reuse == "read again":
            assert all(not k.complete and not k.chunks for k in kept)
        else:
            assert any(not k.complete and k.chunks for k in kept)


def test_a_redelivered_request_is_applied_once_and_answered_the_same() -> None:
    p = populated()
    p.advance(86_400)
    request = deletion("acme", "r1", "physical", p.now, learner_ids=["l1"])
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    p.produce(topics.ATTEMPT_DELETIONS, request)
    p.flow()
    receipts = {json.dumps(r, sort_keys=True) for r in p.receipts("r1")}
    assert len(receipts) == 1 and len(p.receipts("r1")) >= 2
    assert p.active("acme", JAN) == 1
    assert p.check() == []


def test_an_invalid_request_with_usable_ids_gets_an_error_receipt_not_a_dead_letter() -> None:
    p = populated()
    bad = {"request_id": "r9", "tenant_id": "acme", "mode": "physical", "requested_at": "now"}
    p.produce(topics.ATTEMPT_DELETIONS, bad)
    p.produce(topics.ATTEMPT_DELETIONS, b"not even json", key=b"acme")
    p.flow()
    [receipt] = p.receipts("r9")
    assert receipt["error"] and receipt["attempts_affected"] == 0
    assert [d["source"]["topic"] for d in p.dead_letters()] == [topics.ATTEMPT_DELETIONS]
    assert p.check() == []


def test_a_recut_moves_every_learner_to_the_windows_of_the_new_license() -> None:
    p = populated()
    p.produce(topics.LICENSES, license_("acme", window_months=3))
    p.flow()
    p.settle()
    assert p.active("acme", JAN) == 4
    assert (("acme", FEB) in p.counts(), ("acme", MAR) in p.counts()) == (False, False)
    p.produce(topics.LICENSES, MONTHLY)  # and back
    p.flow()
    p.settle()
    assert (p.active("acme", JAN), p.active("acme", FEB), p.active("acme", MAR)) == (2, 3, 1)
    assert p.check() == []


def test_a_license_of_another_time_zone_recuts_at_local_midnight() -> None:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", window_months=1))
    # 2026-02-28T16:00Z is March 1st, 01:00 in Tokyo
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-28T16:00:00Z"))
    p.flow()
    assert p.active("acme", FEB) == 1
    p.produce(topics.LICENSES, license_("acme", window_months=1, timezone="Asia/Tokyo"))
    p.flow()
    # February (local dates in Tokyo now) loses the learner to March
    assert (p.active("acme", FEB), p.active("acme", MAR)) == (0, 1)
    assert p.check() == []


@pytest.mark.parametrize("lose_state", [False, True])
def test_a_restart_rebuilds_every_count_from_the_changelogs(lose_state: bool) -> None:
    p = populated()
    p.world.kill(p.worker())
    p.restart(lose_state=lose_state)
    p.produce(topics.LAUNCHES, launch("acme", "l9", "a1", "2026-03-07T10:00:00Z"))
    p.flow()
    p.settle()
    assert (p.active("acme", JAN), p.active("acme", FEB), p.active("acme", MAR)) == (2, 3, 2)
    assert p.check() == []


POINTS = [("send", 1), ("send", 2), ("apply", 1), ("ack", 1)]


@pytest.mark.parametrize("task", [topics.LEARNER_COMMANDS, topics.TENANT_COMMANDS, "launches"])
@pytest.mark.parametrize(("point", "countdown"), POINTS)
def test_a_crash_at_any_step_of_a_flush_leaves_everything_exact(
    task: str, point: str, countdown: int
) -> None:
    p = populated()
    for n in range(10):
        p.produce(topics.LAUNCHES, launch("acme", f"m{n}", "a1", "2026-03-10T10:00:00Z"))
    p.advance(86_400)
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, older_than="2026-01-15T00:00:00Z"),
    )
    p.crash_at("w0", point, task, countdown)
    p.flow()
    if not p.worker().alive:
        p.restart()
    p.flow()
    p.settle()
    assert (p.active("acme", JAN), p.active("acme", FEB), p.active("acme", MAR)) == (1, 3, 11)
    assert p.check() == []


def test_every_crash_subset_of_a_flush_heals() -> None:
    """Every subset of a flush's partitions reaching Kafka before the crash."""
    from itertools import product

    for lands in product((0, 1), repeat=3):
        p = populated(partitions=1)
        p.advance(86_400)
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion("acme", "r1", "physical", p.now, learner_ids=["l1", "l3"]),
        )
        p.run(topics.ATTEMPT_DELETIONS)
        p.run(topics.TENANT_COMMANDS)
        order = {topics.ATTEMPTS: 0, topics.LEARNER_STATE_CHANGELOG: 1}

        def landing(tp, records, lands=lands, order=order):  # type: ignore[no-untyped-def]
            return len(records) if lands[order.get(tp[0], 2)] else 0

        p.crash_at("w0", "send", "deletion", landing=landing)
        p.flow()
        p.restart()
        p.flow()
        p.settle()
        assert (p.active("acme", JAN), p.active("acme", FEB)) == (1, 1), lands
        assert p.check() == [], lands


def test_a_deposed_owners_late_writes_are_overwritten_and_never_restored() -> None:
    p = Pipeline(partitions=1, workers=2, assignment={"w0": [0], "w1": []})
    p.produce(topics.LICENSES, license_("acme"))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow("w0")
    old = p.worker("w0")
    old.aware = False  # deposed without knowing it: its sends land late
    old.wakes_at = p.world.step + 1_000
    p.rebalance({"w1": [0]})
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-02-11T10:00:00Z"))
    p.run("launches", "w1")
    # both process the same command; the deposed one's writes land after its successor's
    p.run(topics.LEARNER_COMMANDS, "w0")
    for _ in range(3):
        p.flow("w1")
    for _ in range(40):
        p.world.advance()
    p.world.wake(old)
    p.rebalance({"w0": [0], "w1": []})
    p.flow("w0")
    p.settle()
    assert p.active("acme", JAN) == 2
    assert p.check() == []


def test_the_deposed_owners_counts_are_never_summed_after_its_successor_reports() -> None:
    from streams.domain.tenants import merge_partials

    old = {"epoch": [3, 7], "seq": 900, "cut": "c", "windows": {JAN: 9}, "total": 9}
    new = {"epoch": [4, 8], "seq": 10, "cut": "c", "windows": {JAN: 5}, "total": 5}
    tie = {"epoch": [4, 9], "seq": 1, "cut": "c", "windows": {JAN: 6}, "total": 6}
    assert merge_partials({"0": new}, {"0": old})["0"] == new
    # two owners that read the same counter: the later generation wins
    assert merge_partials({"0": new}, {"0": tie})["0"] == tie


def test_kafka_refusing_writes_for_a_while_delays_and_loses_nothing() -> None:
    p = populated()
    p.world.refusing_until = p.world.step + 10
    for n in range(5):
        p.produce(topics.LAUNCHES, launch("acme", f"m{n}", "a1", "2026-03-10T10:00:00Z"))
    p.flow()
    for _ in range(20):
        p.world.advance()
    p.flow()
    p.settle()
    assert p.active("acme", MAR) == 6
    assert p.check() == []


def test_a_late_launch_is_counted_in_its_own_window() -> None:
    p = populated()
    p.advance(86_400 * 40)  # weeks later, a January launch arrives
    p.produce(topics.LAUNCHES, launch("acme", "l7", "a1", "2026-01-03T10:00:00Z"))
    p.flow()
    assert p.active("acme", JAN) == 3
    assert p.check() == []


def test_a_new_window_gets_its_zero_record_when_the_clock_reaches_it() -> None:
    p = populated()
    p.advance(86_400 * 30)  # into April
    p.settle()  # the tick at the new clock
    assert p.active("acme", "2026-04-01") == 0
    assert p.check() == []


def test_a_conflict_is_dead_lettered_and_the_first_launch_stands() -> None:
    p = populated()
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-01-11T10:00:00Z"))
    p.flow()
    [letter] = p.dead_letters()
    assert letter["reason"] == "conflict"
    assert p.attempts()["acme/l1/a1"]["launched_at"].startswith("2026-01-10")
    assert p.check() == []


def test_timedelta_cutoffs_are_exclusive() -> None:
    """older_than X deletes launches strictly before X: one launched at X stays."""
    p = Pipeline(partitions=1)
    at = "2026-02-01T00:00:00+00:00"
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", at))
    p.flow()
    p.advance(3600)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r", "physical", p.now, older_than=at))
    p.flow()
    assert list(p.attempts()) == ["acme/l1/a1"]
    assert p.now - timedelta(hours=2) < p.now  # (the clock moved)


@pytest.mark.parametrize("kind", ["older_than", "learner_ids"])
def test_learner_chunks_resume_where_a_chunk_starts(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deleting pass that resumes where the read-only pass stopped keeping reads exactly the
    chunks from there on; every learner once, ids that are prefixes of others' included (an
    `older_than` scan goes in key order, where "a-" comes before "a")."""
    from streams.stages.memory import MemoryStore

    monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", 3)
    store = MemoryStore(partitions=1)
    store.assume("learner", [0])
    batch = store.batch()
    learners = ["a", "a-", "a.b", "ab", "a\u00e9", "b", "b!", "c"]
    for n, learner in enumerate(learners):
        for attempt in range(n % 3 + 1):
            record = {"tenant_id": "acme", "learner_id": learner, "attempt_id": f"x{attempt}"}
            batch.put(keys.ATTEMPTS, 0, keys.attempt("acme", learner, f"x{attempt}"), record)
    selector = (
        {"older_than": "2030-01-01T00:00:00+00:00"}
        if kind == "older_than"
        else {"learner_ids": list(reversed(learners)), "before": "2030-01-01T00:00:00+00:00"}
    )
    whole = list(learner_deletions.learner_chunks(batch, 0, "acme", selector, heal=False))
    assert len(whole) > 2
    read = [learner for _, chunk in whole for learner, _ in chunk]
    assert sorted(read) == sorted(learners)
    assert all(
        len(rows) == learners.index(learner) % 3 + 1 for _, c in whole for learner, rows in c
    )
    for index, (start, _) in enumerate(whole):
        rest = learner_deletions.learner_chunks(batch, 0, "acme", selector, False, start)
        assert list(rest) == whole[index:]


@pytest.mark.parametrize(("id_length", "per_learner"), [(8, 1), (36, 10), (256, 100)])
def test_kept_bytes_tells_the_memory_kept_removals_hold(id_length: int, per_learner: int) -> None:
    """The budget of kept removals (KEPT_BYTES_MAX) is counted by `kept_bytes`: it must not
    fall far below what the removals really hold, whatever the ids' length."""
    import tracemalloc
    from datetime import UTC, datetime

    import orjson

    from streams.domain.deletions import PartSelector, remove_attempts
    from streams.domain.licenses import cut_of
    from streams.domain.tallies import read_membership, summarised

    cut = cut_of(None)
    chosen = PartSelector(older_than=datetime(2100, 1, 1, tzinfo=UTC))
    tenant = "t" * id_length
    learners = []
    for n in range(20_000 // per_learner):
        learner = f"{n:08d}".ljust(id_length, "x")
        rows = [
            (
                keys.attempt(tenant, learner, f"{a:08d}".ljust(id_length, "y")),
                learner,
                f"{a:08d}".ljust(id_length, "y"),
                datetime(2020, 1 + a % 12, 1 + n % 28, tzinfo=UTC),
            )
            for a in range(per_learner)
        ]
        stored = {w: list(s) for w, s in summarised(cut, [r[3] for r in rows]).items()}
        learners.append((learner, orjson.dumps(stored), rows))
    tracemalloc.start()
    kept, estimate = [], 0
    for learner, stored, rows in learners:
        before = read_membership(orjson.loads(stored))
        learner_key = keys.membership(tenant, learner)
        fresh = [(bytes(bytearray(k)), *rest) for k, *rest in rows]  # as a scan reads them
        removal = remove_attempts(before, fresh, chosen, cut)
        del fresh
        kept.append((learner_key, before, removal))
        estimate += learner_deletions.kept_bytes(learner_key, before, removal)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert 0.95 * held <= estimate <= 1.3 * held, (estimate, held)
