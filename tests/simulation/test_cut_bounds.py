"""Where the stages cut or hand over work by size, in the simulator (streams/tools/simulate/
runner.py, `_cut_bounds`).

A deletion keeps the removals of its first chunks up to 32 MiB, stores a team's members in
pieces of 256 KB and splits named learners into parts of 256 KB; ingest cuts launch commands at
256 KB and sends a launch's text along only up to 1 KiB (a larger one is read back from its
position for a dead letter). A schedule's records never reach those sizes, so the other side of
each bound ran only in tests that lowered one by hand. Half the seeds now lower all of them to a
few bytes. Each test below puts a bug back on the far side of one bound and needs those seeds to
see it; none of them is seen with the service's sizes."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

from streams.stages import ingest, learner_deletions, learners, tenant_deletions
from streams.tools.simulate import runner
from streams.tools.simulate.runner import _cut_bounds, _patched, generate, run

SERVICE = (
    ("KEPT_BYTES_MAX", learner_deletions),
    ("MEMBERS_CHUNK_BYTES", learner_deletions),
    ("PART_MAX_BYTES", tenant_deletions),
    ("COMMAND_MAX_BYTES", ingest),
    ("RAW_INLINE_MAX", ingest),
)
# a replayed team deletion of two or more members in a partition is rare: these two of the
# first 2,000 seeds with group races (961 of them with the bounds lowered) have one
MEMBERS_SEEDS = (108, 420)


def sizes() -> list[int]:
    return [getattr(module, name) for name, module in SERVICE]


def failing(seeds: Iterable[int]) -> list[int]:
    return [seed for seed in seeds if not run(generate(seed)).ok]


def failing_with_service_sizes(monkeypatch: pytest.MonkeyPatch, seeds: Iterable[int]) -> list[int]:
    with monkeypatch.context() as patch:
        patch.setattr(runner, "_cut_bounds", lambda seed: [])
        return failing(seeds)


def seen_only_past_the_bounds(
    monkeypatch: pytest.MonkeyPatch, seeds: Iterable[int], why: str
) -> None:
    """The seeds fail with their drawn bounds (`why` if not) and pass with the service's sizes."""
    assert failing(seeds), why
    assert not failing_with_service_sizes(monkeypatch, seeds)


def test_half_the_seeds_lower_the_bounds_and_the_sizes_come_back() -> None:
    service = sizes()
    lowered = [seed for seed in range(100) if _cut_bounds(seed)]
    assert 30 <= len(lowered) <= 70
    with _patched(_cut_bounds(lowered[0])):
        assert all(size <= 2_000 for size in sizes())
    assert sizes() == service


def test_a_bound_a_test_lowered_by_hand_stays_as_low(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tenant_deletions, "PART_MAX_BYTES", 0)
    drawn = [_cut_bounds(seed) for seed in range(40)]
    assert all(
        value == 0 for bounds in drawn for _, name, value in bounds if name == "PART_MAX_BYTES"
    )
    assert any(bounds for bounds in drawn)


def test_the_checks_see_a_deletion_that_loses_the_chunk_where_keeping_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = learner_deletions.removals

    def removals(*args: Any, **kwargs: Any) -> Iterator[Any]:
        found = real(*args, **kwargs)
        resumed = len(args) > 7 and args[7] is not None
        return itertools.islice(found, 1, None) if resumed else found

    monkeypatch.setattr(learner_deletions, "removals", removals)
    seeds = (7, 18, 29)
    seen_only_past_the_bounds(
        monkeypatch, seeds, "no seed noticed removals lost after the kept chunks"
    )


def test_the_checks_see_learner_commands_that_keep_only_their_first_piece(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ingest cuts launches (and group changes) into commands at COMMAND_MAX_BYTES."""
    real = ingest.chunks_by_size
    monkeypatch.setattr(ingest, "chunks_by_size", lambda *args: real(*args)[:1])
    seeds = (1, 3, 7)
    seen_only_past_the_bounds(
        monkeypatch, seeds, "no seed noticed the rows of a later command lost"
    )


def test_the_checks_see_named_learners_of_a_later_part_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = tenant_deletions.chunks_by_size
    monkeypatch.setattr(tenant_deletions, "chunks_by_size", lambda *args: real(*args)[:1])
    seeds = (3, 34, 43)
    seen_only_past_the_bounds(monkeypatch, seeds, "no seed noticed a deletion part dropped")


def test_the_checks_see_a_launch_read_back_from_the_wrong_position(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_init = learners.LearnerStage.__init__

    def init(self: learners.LearnerStage, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        reader = self.read_raw

        async def off_by_one(topic: str, partition: int, offset: int) -> bytes | None:
            return await reader(topic, partition, offset + 1)

        self.read_raw = off_by_one

    monkeypatch.setattr(learners.LearnerStage, "__init__", init)
    seeds = (1, 3, 7)
    seen_only_past_the_bounds(
        monkeypatch, seeds, "no seed noticed a dead letter with another launch's text"
    )


def test_the_checks_see_a_replayed_team_deletion_that_reads_one_piece_of_its_members(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = learner_deletions.load_members

    def first_piece(*args: Any) -> list[str]:
        *rest, done = args
        return real(*rest, {**done, "members_chunks": min(1, int(done.get("members_chunks", 0)))})

    monkeypatch.setattr(runner, "GROUP_RACES", True)
    monkeypatch.setattr(learner_deletions, "load_members", first_piece)
    seeds = MEMBERS_SEEDS
    seen_only_past_the_bounds(
        monkeypatch, seeds, "no seed noticed members of a later piece left out on a replay"
    )
