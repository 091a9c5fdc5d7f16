"""The takeover's heal of attempts (`LearnerStage.heal_marked`) and the commands still ahead of
the partition's new owner (found by a review of the heal, 2026-12-02).

An attempt the restore kept no record of is either one Kafka's cleaner removed (its launch
command committed long ago) or one the rightful owner had not applied yet (a deposed owner
applied it first; its command is still in `learner-commands` after the committed offset).
Healing the second kind at the takeover would apply it before the commands ahead of it in the
backlog: a deletion naming the attempt would then find it. So the heal leaves a launch found
in the backlog to the replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from schemas import topics
from schemas.topics import TOPICS_BY_NAME
from streams.domain.learners import TrackedAttempt
from streams.stages import commands, keys
from streams.stages.batch import DurableBatch, take_over
from streams.stages.learners import LearnerStage
from streams.stages.memory import CLEANED, MemoryLog, MemoryState, never_deposed
from streams.stages.ownership import Ownership
from streams.stages.store import LEARNER, TABLES, epoch_header, restore_rule

A, B = epoch_header((1, 1)), epoch_header((2, 2))  # A: deposed; B: its successor
REQUESTED = "2026-01-08T00:00:00+00:00"  # the deletion's requested_at
LAUNCHED = "2026-01-09T00:00:00+00:00"  # a1's launch: after the request
WINDOW = "2026-01-01"
T = 1767916800.0  # LAUNCHED in epoch seconds

LAUNCH_A1 = TrackedAttempt("acme", "ada", "e1", "a1", LAUNCHED, 0, 7, None, 0)
REQUEST = {"request_id": "r1", "tenant_id": "acme", "requested_at": REQUESTED}


def deletion(mode: str) -> bytes:
    """D: delete attempt a1 of ada by name (it is not stored yet when D is applied)."""
    selector = {"attempts": [["ada", "a1"]], "before": REQUESTED}
    return commands.encode(commands.DeletionPart({**REQUEST, "mode": mode}, 0, 1, selector))


X = commands.encode(commands.Attempts("launches", [list(LAUNCH_A1)]))  # the later launch of a1


def restored_from_scratch(log: MemoryLog) -> MemoryState:
    """A new owner's state folder, every learner table restored from its changelog's start."""
    state = MemoryState()
    for table, (owner, changelog) in TABLES.items():
        if owner != LEARNER:
            continue
        rows = state.partition(table, 0)
        records = [r for r in log.records(changelog, 0) if r is not CLEANED]
        writes, fence = restore_rule(records, rows.fence, lambda names: [None] * len(names))
        state.apply(table, 0, writes, len(log.records(changelog, 0)) - 1, fence)
    return state


def zombie_d_then_x(log: MemoryLog, mode: str) -> None:
    """The changelogs after this history (every value is what the stages write):

    1. B takes partition 0 over from A (B's epoch record);
    2. A, deposed and unaware, applies D (its outcome and a1's marker land in `erasures`; no
       changelog of its flush has a record of B yet, so A is not fenced), then X (a1 and ada's
       membership land; its flush finds B's epoch and A stops);
       B, meanwhile, wrote a record of another key to `attempts` (a replay of an earlier
       command, or the answer to an earlier zombie record): A's a1 lands after it;
    3. B's lineage check finds A's records and answers them with what B holds: nothing (B has
       not reached D and X), so tombstones;
    4. B stops before it reaches D (its committed offset is before D)."""
    epoch = keys.EPOCH
    log.append(topics.LEARNER_STATE_CHANGELOG, 0, [(epoch, orjson.dumps([1, 1]))], A)
    log.append(topics.LEARNER_STATE_CHANGELOG, 0, [(epoch, orjson.dumps([2, 2]))], B)
    # 2. A's D
    done = keys.part_done("acme", "r1", 0)
    marker = (keys.attempt_hidden if mode == "logical" else keys.attempt_marker)(
        "acme", "ada", "a1"
    )
    outcome = {"attempts_affected": 0, "learners_affected": 0, "losses": {}, "counts": {}}
    log.append(
        topics.ERASURES_CHANGELOG,
        0,
        [(done, orjson.dumps(outcome)), (marker, orjson.dumps(REQUESTED))],
        A,
    )
    # B's record of another key in `attempts` (bob's attempt)
    bob = TrackedAttempt("acme", "bob", "e1", "b1", LAUNCHED, 0, 1).record()
    log.append(topics.ATTEMPTS, 0, [(keys.attempt("acme", "bob", "b1"), orjson.dumps(bob))], B)
    log.append(
        topics.LEARNER_STATE_CHANGELOG,
        0,
        [(keys.membership("acme", "bob"), orjson.dumps({WINDOW: [T, T]}))],
        B,
    )
    # A's X
    a1 = keys.attempt("acme", "ada", "a1")
    log.append(topics.ATTEMPTS, 0, [(a1, orjson.dumps(LAUNCH_A1.record()))], A)
    ada = keys.membership("acme", "ada")
    log.append(topics.LEARNER_STATE_CHANGELOG, 0, [(ada, orjson.dumps({WINDOW: [T, T]}))], A)
    # 3. B's answers: tombstones (B holds none of these keys)
    log.append(topics.ERASURES_CHANGELOG, 0, [(done, None), (marker, None)], B)
    log.append(topics.ATTEMPTS, 0, [(a1, None)], B)
    log.append(topics.LEARNER_STATE_CHANGELOG, 0, [(ada, None)], B)


def run_c(log: MemoryLog, mode: str) -> LearnerStage:
    """C restores from scratch, takes over (its heal sees the backlog), then replays D and X."""
    # D and X are learner-commands 0 and 1, never committed (A was deposed; B stopped before)
    stage, _ = heal_then_replay(log, restored_from_scratch(log), [deletion(mode), X])
    return stage


async def _values(log: MemoryLog, partition: int) -> AsyncIterator[list[bytes | None]]:
    for record in log.records(topics.LEARNER_COMMANDS, partition):  # a chunk a record
        yield [record.value]


def part_reports(log: MemoryLog) -> list[dict[str, Any]]:
    out = []
    for _, record in log.all_records(topics.TENANT_COMMANDS):
        command = commands.decode(record.value)
        if isinstance(command, commands.PartReport):
            out.append(command.report)
    return out


def dead_letters(log: MemoryLog) -> list[str]:
    return [
        orjson.loads(record.value)["reason"]
        for _, record in log.all_records(topics.DEAD_LETTERS)
        if record.value is not None
    ]


def test_a_launch_still_in_the_backlog_is_not_healed_before_a_deletion_ahead_of_it() -> None:
    """Physical: a1 was launched after the request named it, and arrives after D: it counts
    (a named attempt that was not found is covered up to `requested_at`, also one whose launch
    arrives only later). Healed at the takeover, a1 would be stored before C replays D, whose
    first run deletes a stored named attempt whatever its time; X would then be dead-lettered
    `erased`. Its command is in the backlog, so the replay applies it, in order."""
    log = MemoryLog(partitions=1)
    zombie_d_then_x(log, "physical")
    stage = run_c(log, "physical")
    a1 = keys.attempt("acme", "ada", "a1")
    counts = stage.counters.tenant(0, "acme", "")
    assert (counts.total, counts.windows) == (2, {WINDOW: 2}), "ada and bob count"
    assert a1 in log.latest(topics.ATTEMPTS), "a1 is on the attempts topic"
    assert "erased" not in dead_letters(log)
    assert [r["attempts_affected"] for r in part_reports(log)] == [0], "the receipt's count"


def test_a_launch_still_in_the_backlog_is_not_hidden_by_a_logical_deletion_ahead_of_it() -> None:
    """Logical: the same; healed first, a1 would be stored logically deleted."""
    log = MemoryLog(partitions=1)
    zombie_d_then_x(log, "logical")
    run_c(log, "logical")
    a1 = keys.attempt("acme", "ada", "a1")
    assert orjson.loads(log.latest(topics.ATTEMPTS)[a1])["logically_deleted"] is False


# -- which launch of the backlog the replay stores (a second review, 2026-12-02) ---------------
A1 = keys.attempt("acme", "ada", "a1")
EARLIER = TrackedAttempt("acme", "ada", "e2", "a1", "2025-03-09T00:00:00+00:00", 0, 8, None, 0)


def attempts_command(*launches: TrackedAttempt) -> bytes:
    return commands.encode(commands.Attempts("launches", [list(launch) for launch in launches]))


def heal_then_replay(
    log: MemoryLog, state: MemoryState, backlog: list[bytes]
) -> tuple[LearnerStage, list[Any]]:
    """A new owner takes over (its heal sees `backlog`), then applies `backlog` in order; the
    stage and the source offsets of the launches it dead-lettered."""
    log.append(topics.LEARNER_COMMANDS, 0, [(b"", value) for value in backlog])
    stage = LearnerStage(partitions=1, backlog=lambda partition: _values(log, partition))
    batch = DurableBatch(state, log, Ownership(), None, outputs_first=True)
    epochs = asyncio.run(take_over(batch, LEARNER, [0], generation=3, still_member=never_deposed))
    asyncio.run(batch.repair_marked(LEARNER, [0], stage.heal_marked))
    stage.rebuild(batch, epochs)
    for offset, command in enumerate(backlog):
        try:
            asyncio.run(stage.handle(batch, command, 0, offset))
        except ValueError:
            continue  # a command the replay gives up (streams/stages/loop.py)
        asyncio.run(batch.flush())
    letters = [
        orjson.loads(record.value)["source"]["offset"]
        for _, record in log.all_records(topics.DEAD_LETTERS)
        if record.value is not None
    ]
    return stage, letters


def lost_to_the_cleaner(late: bytes | None, cleaned: bool = True) -> tuple[MemoryLog, MemoryState]:
    """B stored LAUNCH_A1 (committed) and ada's membership; A, deposed, wrote `late` for a1
    after it; the cleaner removed B's record of a1 (unless not `cleaned`: then the restore
    keeps it, the history the heal must end like). The membership survived."""
    clock = [0]
    log = MemoryLog(partitions=1, clock=lambda: clock[0])
    log.append(topics.ATTEMPTS, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], A)
    log.append(topics.ATTEMPTS, 0, [(keys.EPOCH, orjson.dumps([2, 2]))], B)
    log.append(topics.ATTEMPTS, 0, [(A1, orjson.dumps(LAUNCH_A1.record()))], B)
    log.append(topics.ATTEMPTS, 0, [(A1, late)], A)
    log.append(topics.ATTEMPTS, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], A)  # closes the segment
    if cleaned:
        clock[0] = 14 * 86_400_000
        config = TOPICS_BY_NAME[topics.ATTEMPTS].configs()
        end = len(log.records(topics.ATTEMPTS, 0)) - 1
        log.compact(
            topics.ATTEMPTS,
            0,
            end,
            clock[0],
            int(config.get("min.compaction.lag.ms", 0)),
            int(config.get("delete.retention.ms", 86_400_000)),
        )
        assert log.records(topics.ATTEMPTS, 0)[2] is CLEANED
    state = restored_from_scratch(log)
    ada = {keys.membership("acme", "ada"): orjson.dumps({WINDOW: [T, T]})}
    state.apply(keys.LEARNER_STATE, 0, ada, 0, (2, 2))
    return log, state


def stored_a1(state: MemoryState) -> dict[str, Any] | None:
    raw = state.get_many(keys.ATTEMPTS, 0, [A1])[0]
    return None if raw is None else orjson.loads(raw)


def test_a_committed_attempt_is_healed_though_a_repeat_of_it_follows_a_conflict() -> None:
    """The backlog holds a conflicting launch of a1 (bad input), then a repeat of the committed
    launch (the launch reader routed its batch again). The replay meets the conflicting launch
    first: it must find a1 stored, as the rightful owner did, or it would store it as new and
    dead-letter the repeat instead (the learner then counted in a window with no attempt)."""
    log, state = lost_to_the_cleaner(orjson.dumps(LAUNCH_A1.record()))
    backlog = [attempts_command(EARLIER), attempts_command(LAUNCH_A1)]
    stage, letters = heal_then_replay(log, state, backlog)
    assert stored_a1(state) == LAUNCH_A1.record()
    assert letters == [EARLIER.source_offset], "the conflicting launch is the dead letter"
    counts = stage.counters.tenant(0, "acme", "")
    assert (counts.total, dict(counts.windows)) == (1, {WINDOW: 1})


def test_a_committed_attempt_is_healed_when_its_repeat_is_in_a_command_the_replay_gives_up() -> (
    None
):
    """The only repeat of the committed launch shares a command with a row the replay cannot
    apply: the replay gives the command up whole, so the heal must not count on it."""
    log, state = lost_to_the_cleaner(orjson.dumps(LAUNCH_A1.record()))
    bad = TrackedAttempt("acme", "bob", "e1", "b1", "not an instant", 0, 9, None, 0)
    stage, _ = heal_then_replay(log, state, [attempts_command(LAUNCH_A1, bad)])
    assert stored_a1(state) == LAUNCH_A1.record()
    counts = stage.counters.tenant(0, "acme", "")
    assert (counts.total, dict(counts.windows)) == (1, {WINDOW: 1})


def test_a_later_launch_after_a_deletion_in_the_backlog_is_left_to_the_replay() -> None:
    """A, deposed, applied the backlog: D (a1 of ada, by name), an earlier launch of a1 (before
    the request: erased), then a1's launch after the request (stored: the marker covers a1 up to
    `requested_at`). Its record of a1 is what the cleaner left. Healed first, a1 would be stored
    before the replay of D, whose first run deletes a stored named attempt whatever its time."""
    before = TrackedAttempt("acme", "ada", "e1", "a1", "2026-01-07T00:00:00+00:00", 0, 6, None, 0)
    log = MemoryLog(partitions=1)
    log.append(topics.ATTEMPTS, 0, [(keys.EPOCH, orjson.dumps([1, 1]))], A)
    log.append(topics.ATTEMPTS, 0, [(keys.EPOCH, orjson.dumps([2, 2]))], B)
    log.append(topics.ATTEMPTS, 0, [(A1, orjson.dumps(LAUNCH_A1.record()))], A)
    state = restored_from_scratch(log)
    assert stored_a1(state) is None  # a deposed owner's record: marked, not restored
    backlog = [deletion("physical"), attempts_command(before), attempts_command(LAUNCH_A1)]
    stage, letters = heal_then_replay(log, state, backlog)
    assert stored_a1(state) == LAUNCH_A1.record()
    assert letters == [before.source_offset], "the launch before the request is erased"
    counts = stage.counters.tenant(0, "acme", "")
    assert (counts.total, dict(counts.windows)) == (1, {WINDOW: 1})


# -- the same history with and without the cleaner's removal (a third review, 2026-12-02) ------
LATER = "2026-06-01T00:00:00+00:00"  # a request made months after a1's launch


def part(mode: str, selector: dict[str, Any]) -> bytes:
    request = {"request_id": "r9", "tenant_id": "acme", "mode": mode, "requested_at": LATER}
    return commands.encode(commands.DeletionPart(request, 0, 1, selector))


def outcome(cleaned: bool, backlog: list[bytes]) -> dict[str, Any]:
    """What the takeover and the replay of `backlog` leave after B's committed a1, with A's
    late record of it (the same) and the cleaner's removal of B's record when `cleaned`."""
    log, state = lost_to_the_cleaner(orjson.dumps(LAUNCH_A1.record()), cleaned)
    stage, letters = heal_then_replay(log, state, backlog)
    counts = stage.counters.tenant(0, "acme", "")
    return {
        "a1": stored_a1(state),
        "counts": (counts.total, dict(counts.windows)),
        "dead letters": letters,
        "receipts": [(r["attempts_affected"], r["learners_affected"]) for r in part_reports(log)],
    }


def test_a_deletion_ahead_of_a_committed_launchs_repeat_leaves_counts_that_match_the_attempts() -> (
    None
):
    """The repeat (the launch reader routed a batch again) is a1's first launch in the backlog,
    so the replay is left to store it; the older_than part ahead of it finds no attempt of ada.
    Her membership, derived from the attempts stored at the takeover, no longer counts her.
    What stays different is the part's receipt (it found nothing to remove)."""
    backlog = [part("physical", {"older_than": LATER}), attempts_command(LAUNCH_A1)]
    healed, truth = outcome(True, backlog), outcome(False, backlog)
    assert truth["a1"] is None and truth["counts"] == (0, {}) and truth["receipts"] == [(1, 1)]
    assert healed["a1"] is None and healed["counts"] == (0, {}), "not counted without attempts"
    assert healed["receipts"] == [(0, 0)], "the residual: the receipt"


@pytest.mark.parametrize(
    "between",
    [
        part("preview", {"older_than": LATER}),
        part("logical", {"older_than": LATER}),
        part("physical", {"attempts": [["ada", "a2"]], "before": LATER}),
    ],
    ids=["preview", "logical", "another attempt"],
)
def test_a_deletion_that_cannot_erase_the_attempt_does_not_leave_it_to_the_replay(
    between: bytes,
) -> None:
    """Only a physical part that may cover a1 can have erased its first launch for the deposed
    owner: after a preview, a logical part or a part naming another attempt, a1's committed
    launch is healed, and the conflicting launch ahead of its repeat is the dead letter."""
    backlog = [attempts_command(EARLIER), between, attempts_command(LAUNCH_A1)]
    healed, truth = outcome(True, backlog), outcome(False, backlog)
    assert truth["a1"] is not None and truth["a1"]["element_id"] == LAUNCH_A1.element_id
    assert truth["dead letters"] == [EARLIER.source_offset], "the conflicting launch"
    assert healed == truth
