"""Learner stage, deletions: one part of a deletion request applied to this partition.

`teams` and `roles` select, in each partition, the learners whose stored groups name any of them
when the part first runs; then the part works like `learner_ids` for them.

Physical: attempts are deleted (a tombstone on the `attempts` topic each), memberships and the
partition's counters drop, and erasure markers make covered launches dead-letter as `erased`.
Logical: attempts are marked `logically_deleted`; counts do not change. Preview: the same
selection and arithmetic as physical, and nothing is deleted.

A part first computes its outcome without writing (a read-only pass) and stores it under its
`done` key, with the erasure markers, durable before anything is deleted. Then it deletes (or
marks) a chunk of learners at a time, each chunk durable before the next one's writes, so memory
stays flat however many attempts a part selects. Chunks never share a learner (named learners
are distinct, an `older_than` scan resumes after the last learner's last key), so a chunk read
before the previous chunk's writes are applied is the chunk a later read would find: a physical
part reads one chunk ahead and marks its attempts as erased for good in the flush before their
tombstones (`remove`). On a part's first run, the read-only pass keeps
each learner's removal for its first chunks (up to `KEPT_BYTES_MAX`), and the deleting pass
takes them from there instead of reading and computing them again, then reads the rest again
from where keeping stopped: in between, only the part's earlier chunks write, each to other
learners, so what was kept is what a second read would find.

A redelivered part (a replay after a crash, or the same request again) reports the stored
outcome and runs the whole deletion again, reading every chunk: it recomputes every concerned
learner's membership from the attempts that remain, so whatever a crash left half-written
(tombstones durable, memberships not) is healed, and what is gone stays gone.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from streams.domain.deletions import (
    REMOVED_FOR_GOOD,
    LearnerRemoval,
    PartReport,
    PartSelector,
    attempt_cutoff,
    later,
    remove_attempts,
)
from streams.domain.learners import CountChange, PartitionCounters, span_of_window
from streams.domain.licenses import cut_of
from streams.domain.tallies import Membership, months_in, read_membership, stored_membership
from streams.domain.windows import Cut, window_of
from streams.stages import commands, keys
from streams.stages.store import Batch, chunks_by_size

CHUNK_ATTEMPTS = 5_000
REMOVED_FOR_GOOD_TEXT = REMOVED_FOR_GOOD.isoformat()  # the value of a removed attempt's marker
MEMBERS_CHUNK_BYTES = 256 * 1024  # member lists of team deletions are stored in pieces this big
GROUP_SELECTORS = ("teams", "roles")
# A first run's read-only pass keeps the learners' removals of its first chunks for the deleting
# pass while they take at most this much memory (`kept_bytes`); the rest of a larger part is
# read and computed again, a chunk at a time.
KEPT_BYTES_MAX = 32 * 1024 * 1024

Rows = list[tuple[bytes, dict[str, Any]]]
LearnerRows = tuple[str, Rows]  # a learner id and all its attempts in this partition
# per chunk, per learner: its membership key, the membership read, and what the part does to it
Removals = list[tuple[bytes, Membership, LearnerRemoval]]
# Where a chunk of `learner_chunks` starts: the attempt key its scan starts after (`older_than`),
# or the index of its first learner in the sorted list (named learners)
Start = bytes | int | None


@dataclass
class KeptRemovals:
    """What a part's read-only pass kept for its deleting pass: the removals of its first
    chunks, and where the rest starts (`complete`: there is no rest)."""

    chunks: list[Removals] = field(default_factory=list)
    complete: bool = True
    rest: Start = None


def part_selector(
    selector: dict[str, Any], found: list[list[str]] | None = None, physical: bool = False
) -> PartSelector:
    """The part's selection. With `found` (the outcome is stored), a named attempt is selected
    by its marker's cut-off instead of by name: the same attempts as when the part first ran,
    never one launched again after it (a replay may see later commands' writes; a physically
    removed attempt's marker erases every later launch of it, so none is stored again)."""
    if "attempts" in selector:
        if found is None:
            return PartSelector(
                attempts=frozenset((learner, attempt) for learner, attempt in selector["attempts"])
            )
        return PartSelector(attempt_cutoffs=attempt_cutoffs(selector, found, physical))
    if "learner_ids" in selector:
        return PartSelector(
            learner_ids=frozenset(selector["learner_ids"]),
            learners_before=datetime.fromisoformat(selector["before"]),
        )
    return PartSelector(older_than=datetime.fromisoformat(selector["older_than"]))


def attempt_cutoffs(
    selector: dict[str, Any], found: list[list[str]], physical: bool
) -> dict[tuple[str, str], datetime]:
    """Per named attempt: its marker's cut-off (streams/domain/deletions.py: attempt_cutoff)."""
    before = datetime.fromisoformat(selector["before"])
    deleted_at = {(learner, attempt): datetime.fromisoformat(at) for learner, attempt, at in found}
    return {
        (learner, attempt): attempt_cutoff(before, deleted_at.get((learner, attempt)), physical)
        for learner, attempt in selector["attempts"]
    }


async def apply_part(
    counters: PartitionCounters,
    batch: Batch,
    command: commands.DeletionPart,
    partition: int,
    offset: int,
) -> dict[str, Any]:
    """Apply one part (again, for a redelivery); returns its report for the tenant stage."""
    # what this group wrote so far becomes durable first: the counters the report starts from
    # then describe every command before this one
    await batch.flush()
    request = command.request
    tenant_id, request_id, mode = request["tenant_id"], request["request_id"], request["mode"]
    cut = cut_of(batch.get(keys.LEARNER_STATE, partition, keys.license_entry(tenant_id)))
    done_key = keys.part_done(tenant_id, request_id, command.part)
    done = batch.get(keys.ERASURES, partition, done_key)
    replay = done is not None
    selector = dict(command.selector)
    kind = next((k for k in GROUP_SELECTORS if k in selector), None)
    if kind is not None:
        # who is in the teams is decided once, when the part first runs; a redelivery works on
        # the same learners, whatever their groups are by then
        if done is not None:
            learners = load_members(batch, partition, tenant_id, request_id, command.part, done)
        else:
            learners = members_of(batch, partition, tenant_id, kind, selector[kind])
        selector = {"learner_ids": learners, "before": selector["before"]}
    kept: KeptRemovals | None = None
    if done is None:
        # named attempts are chosen by their markers' cut-offs when deleted: not the plan's choice
        keep = mode == "physical" and "attempts" not in selector
        done, kept = plan_part(
            counters,
            batch,
            partition,
            tenant_id,
            mode,
            selector,
            part_selector(selector),
            cut,
            keep,
            Cut.from_id(request["cut"]) if request.get("cut") else None,  # the report's cut
        )
        if mode == "preview":
            # a preview's redelivery reports its stored outcome and changes nothing: the
            # attempts it found and the members it chose are never read again, so they are not
            # kept (each `dm/` record of a team's members and every `found` attempt stayed in
            # the erasures table and its changelog for good: helper-97)
            done.pop("found", None)
        elif kind is not None:
            done["members_chunks"] = store_members(
                batch, partition, tenant_id, request_id, command.part, learners
            )
        batch.put(keys.ERASURES, partition, done_key, done)
    found = done.get("found", [])
    if mode != "preview":
        write_markers(batch, partition, tenant_id, selector, found, hide=mode == "logical")
    first_marked = False
    if mode == "physical" and kept is not None and kept.chunks:
        # the first chunk's markers go with the outcome: no flush of their own (`remove`)
        mark_removed(batch, partition, tenant_id, kept.chunks[0])
        first_marked = True
    await batch.flush()  # the outcome and the markers are durable before anything is changed
    chosen = part_selector(selector, found, physical=mode == "physical")
    if mode == "physical":
        if kept is None:
            chunks: Iterable[Removals] = removals(
                batch, partition, tenant_id, selector, chosen, cut, heal=replay
            )
        elif kept.complete:
            chunks = kept.chunks
        else:  # the kept chunks, then the rest read again (each chunk after the one before)
            rest = removals(batch, partition, tenant_id, selector, chosen, cut, False, kept.rest)
            chunks = itertools.chain(kept.chunks, rest)
        # the part's report carries the count; a try that fails keeps the hold (its chunks
        # changed the counts under the part's seq) until the part is done or given up
        # (`LearnerStage.give_up`) or the partition let go
        counters.hold_reports(partition, tenant_id)
        await remove(counters, batch, partition, offset, tenant_id, cut, chunks, first_marked)
        counters.release_reports(partition, tenant_id)
    elif mode == "logical":
        await mark_logically_deleted(batch, partition, tenant_id, selector, chosen)
    return {k: v for k, v in done.items() if k not in ("found", "members_chunks")}


def members_of(
    batch: Batch, partition: int, tenant_id: str, kind: str, wanted: list[str]
) -> list[str]:
    """The learners of this partition in any of the teams (or roles), now."""
    wanted_set = set(wanted)
    prefix = keys.groups_of(tenant_id)
    members: list[str] = []
    after = None
    while True:
        rows = batch.scan(keys.LEARNER_GROUPS, partition, prefix, after, CHUNK_ATTEMPTS)
        for key, groups in rows:
            if wanted_set.intersection(groups.get(kind) or ()):
                members.append(key[len(prefix) :].decode())
        if len(rows) < CHUNK_ATTEMPTS:
            return members
        after = rows[-1][0]


def store_members(
    batch: Batch, partition: int, tenant_id: str, request_id: str, part: int, learners: list[str]
) -> int:
    """A part's member list, in pieces that each stay far below Kafka's record limit; the
    number of pieces (the part's `done` record says how many to read back)."""
    sizes = chunks_by_size(
        learners, lambda learner: len(orjson.dumps(learner)) + 1, MEMBERS_CHUNK_BYTES
    )
    chunks = sizes or [[]]  # an empty list is stored too: its `done` record says one piece
    for number, chunk in enumerate(chunks):
        key = keys.part_members_chunk(tenant_id, request_id, part, number)
        batch.put(keys.ERASURES, partition, key, chunk)
    return len(chunks)


def load_members(
    batch: Batch, partition: int, tenant_id: str, request_id: str, part: int, done: dict[str, Any]
) -> list[str]:
    learners: list[str] = []
    for number in range(int(done.get("members_chunks", 0))):
        key = keys.part_members_chunk(tenant_id, request_id, part, number)
        learners.extend(batch.get(keys.ERASURES, partition, key) or [])
    return learners


def learner_chunks(
    batch: Batch,
    partition: int,
    tenant_id: str,
    selector: dict[str, Any],
    heal: bool,
    start: Start = None,
) -> Iterator[tuple[Start, list[LearnerRows]]]:
    """The part's learners with all their attempts in this partition, a chunk at a time, each
    with where it starts (`start` resumes there; with `heal`, only from the beginning).

    Each chunk is read whole before it is yielded and never splits a learner's attempts. Named
    learners come with their attempts even when none is left; for `older_than`, `heal` adds the
    tenant's learners that have a membership and no attempt at all (a replay after a crash).
    """
    if heal and start is not None:
        raise ValueError("a healing pass starts at the beginning")
    if "older_than" in selector:
        prefix = keys.attempts_of_tenant(tenant_id)
        after = start if isinstance(start, bytes) else None
        while True:
            rows = batch.scan(keys.ATTEMPTS, partition, prefix, after, CHUNK_ATTEMPTS)
            if not rows:
                break
            more = len(rows) >= CHUNK_ATTEMPTS
            last = keys.learner_of_attempt(rows[-1][0])
            # complete the last learner's attempts, so that no learner is split
            rows.extend(batch.scan(keys.ATTEMPTS, partition, last + b"/", rows[-1][0]))
            chunk_start, after = after, rows[-1][0]
            yield chunk_start, _group_by_learner(rows)
            if not more:
                break
        if heal:
            for healed in _learners_without_attempts(batch, partition, tenant_id):
                yield None, healed
        return
    if "attempts" in selector:
        learners = sorted({learner for learner, _ in selector["attempts"]})
    else:
        learners = sorted(selector["learner_ids"])
    first = start if isinstance(start, int) else 0
    chunk: list[LearnerRows] = []
    size = 0
    for index in range(first, len(learners)):
        learner_id = learners[index]
        rows = batch.scan(keys.ATTEMPTS, partition, keys.attempts_of_learner(tenant_id, learner_id))
        chunk.append((learner_id, rows))
        size += len(rows) + 1
        if size >= CHUNK_ATTEMPTS:
            yield index + 1 - len(chunk), chunk
            chunk, size = [], 0
    if chunk:
        yield len(learners) - len(chunk), chunk


def _learners_without_attempts(
    batch: Batch, partition: int, tenant_id: str
) -> Iterator[list[LearnerRows]]:
    prefix = keys.memberships_of(tenant_id)
    after = None
    while True:
        rows = batch.scan(keys.LEARNER_STATE, partition, prefix, after, CHUNK_ATTEMPTS)
        chunk: list[LearnerRows] = []
        for key, _ in rows:
            _, learner_id = keys.parse_membership(key)
            attempts_prefix = keys.attempts_of_learner(tenant_id, learner_id)
            if not batch.scan(keys.ATTEMPTS, partition, attempts_prefix, limit=1):
                chunk.append((learner_id, []))
        if chunk:
            yield chunk
        if len(rows) < CHUNK_ATTEMPTS:
            return
        after = rows[-1][0]


def _group_by_learner(rows: Rows) -> list[LearnerRows]:
    groups: dict[str, Rows] = {}
    for key, record in rows:
        groups.setdefault(record["learner_id"], []).append((key, record))
    return list(groups.items())


def _parsed(rows: Rows) -> list[tuple[bytes, str, str, datetime]]:
    return [
        (key, r["learner_id"], r["attempt_id"], datetime.fromisoformat(r["launched_at"]))
        for key, r in rows
    ]


def plan_part(
    counters: PartitionCounters,
    batch: Batch,
    partition: int,
    tenant_id: str,
    mode: str,
    selector: dict[str, Any],
    chosen: PartSelector,
    cut: Cut,
    keep: bool = False,
    report_cut: Cut | None = None,
) -> tuple[dict[str, Any], KeptRemovals | None]:
    """The part's outcome, computed without writing anything (also the whole of a preview);
    with `keep`, also the removals of its first chunks, as many as KEPT_BYTES_MAX allows.

    Its windows (counts before, learners leaving each) are those of `report_cut`, the cut the
    request was split under, whatever this partition applies now: a license that changed the
    windows between the request and this part (or between two parts here) would otherwise
    make the receipt add up windows of two cuts. On that cut, the counters say the counts;
    on another, the tenant's attempts here are counted again (a rare, read-only scan)."""
    # (a logical part reports no windows: its counts need no second reading)
    other = report_cut is not None and report_cut != cut and mode != "logical"
    if other:
        assert report_cut is not None
        report = PartReport(counts=recount(batch, partition, tenant_id, report_cut))
    else:
        counts = counters.get(partition, tenant_id)
        report = PartReport(counts=dict(counts.windows) if counts else {})
    losses: Counter[str] = Counter()
    found: list[list[str]] = []
    kept = KeptRemovals() if keep else None
    size = 0
    for start, chunk in learner_chunks(batch, partition, tenant_id, selector, heal=False):
        chunk_removals = removals_of(batch, partition, tenant_id, chunk, chosen, cut)
        for (_, rows), (learner_key, before, removal) in zip(chunk, chunk_removals, strict=True):
            if kept is not None and kept.complete:
                size += kept_bytes(learner_key, before, removal)
            if not removal.removed:
                continue
            affected = len(removal.removed)
            if mode == "logical":
                # an attempt an earlier logical deletion hid is not hidden again (a physical
                # deletion or a preview counts it: it is removed). Read before this part marks
                # anything: a replay reports this outcome as stored.
                hidden = {key for key, record in rows if record.get("logically_deleted")}
                affected = sum(key not in hidden for key in removal.removed)
            if affected:
                report.attempts_affected += affected
                report.learners_affected += 1
            if other:
                assert report_cut is not None
                losses.update(leaves(rows, chosen, report_cut))
            else:
                losses.update({w: -n for w, n in removal.window_changes.items() if n < 0})
            if chosen.attempts is not None:
                by_key = dict(rows)
                for key in removal.removed:
                    record = by_key[key]
                    found.append(
                        [record["learner_id"], record["attempt_id"], record["launched_at"]]
                    )
        if kept is not None and kept.complete:
            if size <= KEPT_BYTES_MAX:
                kept.chunks.append(chunk_removals)
            else:  # no more: the deleting pass reads the rest again from this chunk on
                kept.complete, kept.rest = False, start
    if mode != "logical":  # hidden attempts keep counting
        report.losses = {w: n for w, n in losses.items() if n > 0}
    done = report.as_dict()
    if found:
        done["found"] = found
    return done, kept


def recount(batch: Batch, partition: int, tenant_id: str, cut: Cut) -> dict[str, int]:
    """The tenant's active learners per window of `cut` in this partition, from its attempts
    (a learner's attempts are next to each other in key order: memory stays flat)."""
    counts: Counter[str] = Counter()
    learner: str | None = None
    windows: set[str] = set()
    prefix = keys.attempts_of_tenant(tenant_id)
    after = None
    while True:
        rows = batch.scan(keys.ATTEMPTS, partition, prefix, after, CHUNK_ATTEMPTS)
        for _, record in rows:
            if record["learner_id"] != learner:
                counts.update(windows)
                learner, windows = record["learner_id"], set()
            window = window_of(cut, datetime.fromisoformat(record["launched_at"]))
            windows.add(window.start.isoformat())
        if len(rows) < CHUNK_ATTEMPTS:
            counts.update(windows)
            return dict(counts)
        after = rows[-1][0]


def leaves(rows: Rows, chosen: PartSelector, cut: Cut) -> Counter[str]:
    """The windows of `cut` one learner leaves when `chosen` removes some of `rows`."""
    before: set[str] = set()
    after: set[str] = set()
    for _, learner_id, attempt_id, launched_at in _parsed(rows):
        window = window_of(cut, launched_at).start.isoformat()
        before.add(window)
        if not chosen.selects(learner_id, attempt_id, launched_at):
            after.add(window)
    return Counter(before - after)


def kept_bytes(learner_key: bytes, before: Membership, removal: LearnerRemoval) -> int:
    """About the memory one learner's kept removal holds: its keys (the removed attempts' keys
    are kept alive by it), memberships and objects. Calibrated with tracemalloc over ids of 8 to
    256 characters, 1 to 1,000 attempts a learner, all or few removed: within 2 % under, 18 %
    over the measured size."""
    removed = removal.removed
    windows = len(before) + len(removal.membership)
    return 750 + len(learner_key) + 140 * windows + sum(map(len, removed)) + 90 * len(removed)


def write_markers(
    batch: Batch,
    partition: int,
    tenant_id: str,
    selector: dict[str, Any],
    found: list[list[str]],
    hide: bool,
) -> None:
    """The cut-off markers of a part (written again on a redelivery: they only move forward).

    A physical part's markers erase the launches they cover when they come later; a logical
    part's (`hide`) store them logically deleted. `attempts` marks every named attempt, found
    or not: a launch of it that arrives only later is covered when it was launched before the
    request."""

    def forward(key: bytes, cutoff: datetime) -> None:
        batch.put(
            keys.ERASURES, partition, key, later(batch.get(keys.ERASURES, partition, key), cutoff)
        )

    if "attempts" in selector:
        marker = keys.attempt_hidden if hide else keys.attempt_marker
        for (learner_id, attempt_id), cutoff in attempt_cutoffs(selector, found, not hide).items():
            forward(marker(tenant_id, learner_id, attempt_id), cutoff)
    elif "learner_ids" in selector:
        before = datetime.fromisoformat(selector["before"])
        marker_of = keys.learner_hidden if hide else keys.learner_cutoff
        for learner_id in selector["learner_ids"]:
            forward(marker_of(tenant_id, learner_id), before)
    elif "older_than" in selector:
        key = keys.tenant_hidden(tenant_id) if hide else keys.tenant_cutoff(tenant_id)
        forward(key, datetime.fromisoformat(selector["older_than"]))


def removals(
    batch: Batch,
    partition: int,
    tenant_id: str,
    selector: dict[str, Any],
    chosen: PartSelector,
    cut: Cut,
    heal: bool,
    start: Start = None,
) -> Iterator[Removals]:
    """The part's removals, read and computed a chunk at a time, lazily (`remove` reads one
    chunk ahead of its writes: chunks never share a learner)."""
    for _, chunk in learner_chunks(batch, partition, tenant_id, selector, heal, start):
        yield removals_of(batch, partition, tenant_id, chunk, chosen, cut)


def removals_of(
    batch: Batch,
    partition: int,
    tenant_id: str,
    chunk: list[LearnerRows],
    chosen: PartSelector,
    cut: Cut,
) -> Removals:
    """What the part does to each learner of one chunk, from its stored membership and the
    attempts the chunk read (the membership recomputed from the attempts that remain)."""
    learner_keys = [keys.membership(tenant_id, learner_id) for learner_id, _ in chunk]
    stored = batch.get_many(keys.LEARNER_STATE, partition, learner_keys)
    out: Removals = []
    for learner_key, (_, rows), membership in zip(learner_keys, chunk, stored, strict=True):
        before = read_membership(membership)
        out.append((learner_key, before, remove_attempts(before, _parsed(rows), chosen, cut)))
    return out


async def remove(
    counters: PartitionCounters,
    batch: Batch,
    partition: int,
    offset: int,
    tenant_id: str,
    cut: Cut,
    chunks: Iterable[Removals],
    first_marked: bool = False,
) -> None:
    """Delete the selected attempts a chunk at a time, each chunk durable before the next.

    Every removed attempt is marked as erased for good (`REMOVED_FOR_GOOD`) in a flush before
    the one that writes its tombstone: a crash between the two leaves marked attempts that the
    replay of the part removes; the other order could leave removed attempts with no marker (a
    replay finds nothing to remove, so it would write none), and a later launch of one would
    be counted again. The markers of a chunk go with the flush of the chunk before it (chunks
    are disjoint learners), and the first chunk's with the part's outcome when it was kept
    (`first_marked`), so marking costs at most one flush a part."""
    month_of = months_in(cut.timezone)
    upcoming = iter(chunks)
    chunk = next(upcoming, None)
    if chunk is not None and not first_marked:
        mark_removed(batch, partition, tenant_id, chunk)
        await batch.flush()
    while chunk is not None:
        following = next(upcoming, None)
        if following is not None:
            # durable with this chunk, before its own tombstones
            mark_removed(batch, partition, tenant_id, following)
        change = CountChange()
        # the tombstones on `attempts`
        batch.delete_many(
            keys.ATTEMPTS, partition, [key for _, _, removal in chunk for key in removal.removed]
        )
        removed_at = [at for _, _, removal in chunk for at in removal.removed_at]
        change.tallies.months.subtract(month_of.count(removed_at))
        for learner_key, before, removal in chunk:
            if not removal.membership_changed:
                continue
            if removal.membership:
                batch.put(
                    keys.LEARNER_STATE,
                    partition,
                    learner_key,
                    stored_membership(removal.membership),
                )
            else:
                batch.delete(keys.LEARNER_STATE, partition, learner_key)
            change.windows.update(removal.window_changes)
            change.total += removal.total_change
            for window in before.keys() | removal.membership.keys():
                old, new = before.get(window), removal.membership.get(window)
                span = span_of_window(cut, window)
                if old == new or span is None:
                    continue
                if old is None and window in before:
                    change.tallies.unknown(window, span, cut.timezone)  # an older version's
                change.tallies.replace(window, span, old, new, cut.timezone)
        if change.counts_changed or change.tallies:
            batch.on_durable(
                _counter_update(counters, partition, tenant_id, cut.id, change, offset)
            )
        await batch.flush()
        chunk = following


def mark_removed(batch: Batch, partition: int, tenant_id: str, chunk: Removals) -> None:
    """Mark every attempt `chunk` removes as erased for good (not durable yet: see `remove`)."""
    marker_of = keys.attempt_markers_of(tenant_id)
    markers = [marker_of(key) for _, _, removal in chunk for key in removal.removed]
    batch.put_same(keys.ERASURES, partition, markers, REMOVED_FOR_GOOD_TEXT)


def _counter_update(
    counters: PartitionCounters,
    partition: int,
    tenant_id: str,
    cut_id: str,
    change: CountChange,
    seq: int,
) -> Any:
    def apply() -> None:
        counters.apply(partition, tenant_id, cut_id, change, seq)

    return apply


async def mark_logically_deleted(
    batch: Batch, partition: int, tenant_id: str, selector: dict[str, Any], chosen: PartSelector
) -> None:
    for _, chunk in learner_chunks(batch, partition, tenant_id, selector, heal=False):
        for _, rows in chunk:
            for key, record in rows:
                if record.get("logically_deleted"):
                    continue
                launched_at = datetime.fromisoformat(record["launched_at"])
                if chosen.selects(record["learner_id"], record["attempt_id"], launched_at):
                    batch.put(keys.ATTEMPTS, partition, key, {**record, "logically_deleted": True})
        await batch.flush()
