"""A crash at every send of the learner stage while a physical deletion part runs (several chunks,
the kept, read-again and mixed paths, six ways a flush may land), then a later launch of every
removed attempt: each must be erased, and counts and attempts must match the model. Written by
a review of the "erased for good" markers (2026-12-01)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas import topics
from streams.stages import learner_deletions
from tests.stages.pipeline import Pipeline, deletion, launch, license_

JAN = "2026-01-01"
LEARNERS = [f"l{n}" for n in range(6)]

SELECTORS: dict[str, dict[str, Any]] = {
    "learner_ids": {"learner_ids": ["l0", "l1", "l3", "l4"]},
    "older_than": {"older_than": "2026-02-15T00:00:00+00:00"},
    "teams": {"teams": ["red"]},
    "attempts": {"attempts": [{"learner_id": lid, "attempt_id": "a1"} for lid in LEARNERS[:4]]},
}

LANDINGS = {
    "none": lambda tp, r: 0,
    "all": lambda tp, r: len(r),
    "attempts only": lambda tp, r: len(r) if tp[0] == topics.ATTEMPTS else 0,
    "erasures only": lambda tp, r: len(r) if tp[0] == topics.ERASURES_CHANGELOG else 0,
    "not erasures": lambda tp, r: 0 if tp[0] == topics.ERASURES_CHANGELOG else len(r),
    "first of each": lambda tp, r: 1,
}

EXPECTED = {"learner_ids": 8, "older_than": 10, "teams": 6, "attempts": 4}

REUSE = {"kept": None, "read again": (0, 1), "cap within": (2_000, 1)}


def populated() -> Pipeline:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme"))
    for n, learner in enumerate(LEARNERS):
        p.produce(topics.LAUNCHES, launch("acme", learner, "a1", f"2026-02-0{n + 1}T10:00:00Z"))
        p.produce(topics.LAUNCHES, launch("acme", learner, "a2", f"2026-02-1{n + 1}T10:00:00Z"))
        value = {
            "tenant_id": "acme",
            "learner_id": learner,
            "teams": ["red"] if n % 2 == 0 else ["blue"],
            "roles": [],
        }
        p.produce(topics.LEARNER_GROUPS, value)
    p.flow()
    return p


def run(
    kind: str, countdown: int | None, landing: str, monkeypatch: pytest.MonkeyPatch, reuse: str
) -> tuple[Pipeline, bool]:
    if REUSE[reuse] is not None:
        cap, chunk = REUSE[reuse]
        monkeypatch.setattr(learner_deletions, "KEPT_BYTES_MAX", cap)
        monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", chunk)
    else:
        monkeypatch.setattr(learner_deletions, "CHUNK_ATTEMPTS", 1)
    p = populated()
    before_keys = set(p.attempts())
    p.advance(3600)
    requested = p.now
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", requested, **SELECTORS[kind])
    )
    p.run(topics.ATTEMPT_DELETIONS)
    p.run(topics.TENANT_COMMANDS)
    crashed = False
    if countdown is not None:
        p.crash_at(
            "w0", "send", topics.LEARNER_COMMANDS, countdown=countdown, landing=LANDINGS[landing]
        )
        p.run(topics.LEARNER_COMMANDS)
        crashed = p.recover()
    p.flow()
    p.settle()
    removed = before_keys - set(p.attempts())
    assert len(removed) == EXPECTED[kind], removed
    # every removed attempt launched again, later, with another element too
    later = (requested + timedelta(minutes=5)).isoformat()
    for key in sorted(removed):
        _, learner, attempt = key.split("/")
        p.produce(topics.LAUNCHES, launch("acme", learner, attempt, later, element="e2"))
    p.flow()
    p.settle()
    assert set(p.attempts()) == before_keys - removed, "a removed attempt came back"
    reasons = [d["reason"] for d in p.dead_letters()]
    assert reasons.count("erased") >= len(removed), reasons
    assert p.check() == []
    return p, crashed


@pytest.mark.parametrize("reuse", sorted(REUSE))
@pytest.mark.parametrize("landing", sorted(LANDINGS))
@pytest.mark.parametrize("kind", sorted(SELECTORS))
def test_sweep(kind: str, landing: str, reuse: str, monkeypatch: pytest.MonkeyPatch) -> None:
    crashes = 0
    for countdown in range(1, 14):
        with monkeypatch.context() as m:
            _, crashed = run(kind, countdown, landing, m, reuse)
        crashes += crashed
        if not crashed:
            break
    print(kind, landing, reuse, "crashes", crashes)
    assert crashes >= 2
