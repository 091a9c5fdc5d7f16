"""The reports of the learner partitions, read from the real stages' state (over memory), agree
with the count records: as many counted learners as `active_learners`, and the right ones."""

from __future__ import annotations

import asyncio
import heapq
from datetime import datetime
from typing import Any

from schemas import topics
from streams.domain.reports import Span
from streams.stages import reports
from tests.stages.pipeline import Pipeline, launch, license_

PARTITIONS = 3
LEARNERS = ["a", "a-b", "a.c", "a b", "b", "b-1", "c", "john", "john.doe", "zoe"]


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def gather(pipeline: Pipeline, report: Any, *args: Any) -> list[list[Any]]:
    """Every partition's rows, merged by learner id (what a worker's report does)."""
    state = pipeline.worker().state
    streams = []
    for partition in range(PARTITIONS):
        streams.append(
            [row async for rows in report(state, partition, "acme", *args) for row in rows]
        )
    return list(heapq.merge(*streams, key=lambda row: row[0]))


def test_counted_learners_equal_the_count_and_come_in_learner_order() -> None:
    pipeline = Pipeline(partitions=PARTITIONS)
    pipeline.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=1))
    for number, learner in enumerate(LEARNERS):
        pipeline.produce(topics.LAUNCHES, launch("acme", learner, "x1", "2026-03-02T10:00:00Z"))
        if number % 2 == 0:  # half of them come back later in March, the rest in February
            pipeline.produce(topics.LAUNCHES, launch("acme", learner, "x2", "2026-03-15T10:00:00Z"))
        else:
            pipeline.produce(topics.LAUNCHES, launch("acme", learner, "x0", "2026-02-10T10:00:00Z"))
    pipeline.produce(
        topics.LEARNER_GROUPS,
        {"tenant_id": "acme", "learner_id": "john", "teams": ["sales"], "roles": ["manager"]},
    )
    pipeline.settle()

    march = Span(at("2026-03-01T00:00:00+00:00"), at("2026-04-01T00:00:00+00:00"))
    rows = asyncio.run(gather(pipeline, reports.window_rows, march))
    assert [row[0] for row in rows] == sorted(LEARNERS)
    assert len(rows) == pipeline.active("acme", "2026-03-01") == len(LEARNERS)
    by_learner = {row[0]: row for row in rows}
    assert by_learner["a"][1:4] == [at("2026-03-02T10:00:00Z"), at("2026-03-15T10:00:00Z"), 2]
    assert by_learner["a-b"][3] == 1, "the February attempt is not in March"
    assert by_learner["john"][4:] == [["sales"], ["manager"]]

    february = Span(at("2026-02-01T00:00:00+00:00"), at("2026-03-01T00:00:00+00:00"))
    rows = asyncio.run(gather(pipeline, reports.window_rows, february))
    assert [row[0] for row in rows] == sorted(LEARNERS[1::2])
    assert len(rows) == pipeline.active("acme", "2026-02-01")

    statuses = asyncio.run(gather(pipeline, reports.learner_rows, february))
    assert [(row[0], row[1]) for row in statuses] == [
        (learner, learner in LEARNERS[1::2]) for learner in sorted(LEARNERS)
    ]


def test_small_chunks_never_split_a_learner() -> None:
    pipeline = Pipeline(partitions=1)
    pipeline.produce(topics.LICENSES, license_("acme"))
    for attempt in range(7):
        pipeline.produce(
            topics.LAUNCHES, launch("acme", "l1", f"a{attempt}", "2026-03-02T10:00:00Z")
        )
        pipeline.produce(
            topics.LAUNCHES, launch("acme", "l2", f"a{attempt}", "2026-03-02T10:00:00Z")
        )
    pipeline.settle()

    async def chunks() -> list[list[tuple[str, list[float]]]]:
        state = pipeline.worker().state
        return [learners async for learners in reports.tenant_learners(state, 0, "acme", 3)]

    grouped = [learner for chunk in asyncio.run(chunks()) for learner in chunk]
    assert [(learner, len(instants)) for learner, instants in grouped] == [("l1", 7), ("l2", 7)]


def test_memberships_of_an_older_version_are_scanned_until_a_license_recuts_them() -> None:
    import json

    from streams.domain.learners import window_span
    from streams.domain.windows import Cut, window_of

    pipeline = Pipeline(partitions=2)
    acme = license_("acme", cycle_start="2026-01-01", window_months=12, timezone="Europe/Berlin")
    pipeline.produce(topics.LICENSES, acme)
    for number, learner in enumerate(LEARNERS):
        day = 1 + number % 27
        pipeline.produce(
            topics.LAUNCHES, launch("acme", learner, "x1", f"2026-03-{day:02d}T23:30:00Z")
        )
    pipeline.settle()
    cut = Cut.from_id("2026-01-01/12/Europe/Berlin")
    window = Span(*window_span(window_of(cut, pipeline.now)))

    def answers() -> list[tuple[Any, Any]]:
        worker = pipeline.worker()
        counters = worker.learner.counters
        out = []
        for partition in range(2):
            tallied = reports.tallied_firsts(counters, partition, "acme", window, cut.timezone)
            scanned = asyncio.run(
                reports.daily_firsts(worker.state, partition, "acme", window, cut.timezone)
            )
            out.append((tallied, scanned))
        return out

    assert all(tallied == scanned for tallied, scanned in answers())
    assert sum(sum(scanned.values()) for _, scanned in answers()) == len(LEARNERS)

    # what an older version stored: a list of window starts, no summaries
    state = pipeline.worker().state
    for (table, _), rows in state.partitions.items():
        if table == "learner-state":
            for key in [k for k in rows.rows if k.startswith(b"m/")]:
                rows.rows[key] = json.dumps(sorted(json.loads(rows.rows[key]))).encode()
    pipeline.restart()
    pipeline.settle()
    assert all(tallied is None for tallied, _ in answers()), "inexact tallies must not answer"

    pipeline.produce(topics.LICENSES, acme)  # the same license again: every partition re-cuts
    pipeline.settle()
    again = answers()
    assert all(tallied == scanned and tallied is not None for tallied, scanned in again)
    assert sum(sum(scanned.values()) for _, scanned in again) == len(LEARNERS)
