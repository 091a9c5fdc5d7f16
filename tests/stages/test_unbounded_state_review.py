"""What the stages keep for good, per deletion (helper-97's review of what grows without bound).

A deletion part's outcome (`done/`) is kept so that a redelivered part reports what it first
reported and works on what it first chose. A preview changes nothing, so its redelivery needs
only the outcome: neither the attempts it found nor the team members it chose are read again,
and they are not kept (before, every preview by team kept its members in `dm/` records, and every
preview by attempts the found attempts in its `done/` record, in the erasures table and its
compacted changelog for good)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from schemas import topics
from tests.stages.pipeline import Pipeline, deletion
from tests.stages.test_stages import SELECTORS, populated


def _erasure_records(p: Pipeline, prefix: bytes) -> list[tuple[bytes, Any]]:
    return [
        (r.key, None if r.value is None else orjson.loads(r.value))
        for _, r in p.world.log.all_records(topics.ERASURES_CHANGELOG)
        if r.key is not None and r.key.startswith(prefix)
    ]


def _receipt(p: Pipeline, request_id: str) -> dict[str, Any]:
    receipts = {json.dumps(r, sort_keys=True): r for r in p.receipts(request_id)}
    [receipt] = receipts.values()
    return {k: v for k, v in receipt.items() if k != "completed_at"}


@pytest.mark.parametrize("kind", sorted(SELECTORS))
def test_a_preview_keeps_its_outcome_but_neither_its_members_nor_what_it_found(kind: str) -> None:
    p = populated()
    p.advance(86_400)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, **SELECTORS[kind]))
    p.flow()
    p.settle()
    assert _receipt(p, "r1")["attempts_affected"] > 0
    done = _erasure_records(p, b"done/")
    assert len(done) == 2, "one outcome per part: a redelivered part reports it again"
    assert all("found" not in value for _, value in done), done
    assert _erasure_records(p, b"dm/") == []
    assert p.check() == []


@pytest.mark.parametrize("mode", ["physical", "logical"])
@pytest.mark.parametrize("kind", ["teams", "attempts"])
def test_a_deletion_keeps_what_its_redelivery_works_on(kind: str, mode: str) -> None:
    """(what a physical or logical part's redelivery reads: kept as before)"""
    p = populated()
    p.advance(86_400)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", mode, p.now, **SELECTORS[kind]))
    p.flow()
    p.settle()
    if kind == "teams":
        assert _erasure_records(p, b"dm/") != []
    else:
        assert any("found" in value for _, value in _erasure_records(p, b"done/"))
    assert p.check() == []


def _team_preview(crash_countdown: int | None) -> tuple[Pipeline, bool]:
    """A preview of team red (l1, l2), then l1 leaves the team and l3 joins it (the change
    reaches the learner partition behind the preview's part); a crash at the learner stage's
    n-th send lands all of it but the commands to the tenant stage (the part's report)."""
    p = populated(partitions=1)
    p.advance(86_400)
    p.produce(topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "preview", p.now, teams=["red"]))
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)
    for learner, teams in [("l1", ["blue"]), ("l3", ["red"])]:
        value = {"tenant_id": "acme", "learner_id": learner, "teams": teams, "roles": []}
        p.produce(topics.LEARNER_GROUPS, value)
    p.run(topics.LEARNER_GROUPS)
    crashed = False
    if crash_countdown is not None:
        p.crash_at(
            "w0",
            "send",
            topics.LEARNER_COMMANDS,
            countdown=crash_countdown,
            landing=lambda tp, r: 0 if tp[0] == topics.TENANT_COMMANDS else len(r),
        )
        p.run(topics.LEARNER_COMMANDS)
        crashed = p.recover()
    p.flow()
    p.settle()
    assert p.check() == []
    return p, crashed


def test_a_preview_crashed_at_every_send_gives_the_receipt_of_a_run_without_a_crash() -> None:
    """(its outcome kept, its members not: a replay reports the outcome it stored)"""
    expected = _receipt(_team_preview(None)[0], "r1")
    assert expected["attempts_affected"] == 4
    crashes = 0
    for countdown in range(1, 8):
        p, crashed = _team_preview(countdown)
        if not crashed:
            break
        crashes += 1
        assert _receipt(p, "r1") == expected, countdown
        assert _erasure_records(p, b"dm/") == []
    assert crashes >= 2
