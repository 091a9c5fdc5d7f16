"""Report tallies against a scan of the attempts, in states the simulator reaches only rarely.

The forecast and advisor parts a learner partition answers from its tallies must equal a scan
of its attempts (what the deletion then does). Found by a review (2026-12-02): a takeover that
finds a re-cut's license durable and its memberships not (a crash inside the re-cut's flush)
tallied the old cut's summaries into the new cut's window of the same name: counted on the
window's last day (a negative index), or an IndexError that failed the takeover until the
clock passed the window's end. Such a summary is tallied as unknown now (scans answer) until
the replay's re-cut replaces the tallies."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from schemas import topics
from streams.domain.learners import window_span
from streams.domain.reports import Span, month_starts
from streams.domain.windows import Cut, add_months, local_midnight, window_of
from streams.stages import reports
from streams.stages.store import LogRecord, TopicPartition
from tests.stages.pipeline import Pipeline, launch, license_

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def parts(pipeline: Pipeline, tenant: str, cut: Cut) -> list[tuple[object, object, object, object]]:
    """Per partition: (tallied firsts, scanned firsts, tallied advisor, scanned advisor)."""
    worker = pipeline.worker()
    counters = worker.learner.counters
    window = window_of(cut, pipeline.now)
    span = Span(*window_span(window))
    zone = cut.timezone
    cutoffs = [
        local_midnight(day, zone).timestamp()
        for day in month_starts(add_months(window.start, -12), window.end)
    ]
    out = []
    for partition in range(pipeline.world.partitions):
        out.append(
            (
                reports.tallied_firsts(counters, partition, tenant, span, zone),
                asyncio.run(reports.daily_firsts(worker.state, partition, tenant, span, zone)),
                reports.tallied_advisor(counters, partition, tenant, span, zone, cutoffs),
                asyncio.run(reports.advisor(worker.state, partition, tenant, span, cutoffs)),
            )
        )
    return out


def test_a_takeover_after_a_license_landed_without_its_recut_tallies_right() -> None:
    """The license entry of a re-cut is durable, the re-cut memberships are not (a crash in
    the middle of the flush): the rebuild sees memberships of the old cut."""
    p = Pipeline(partitions=1, start=NOW)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=1))
    # window 2026-03-01 in UTC; in New York this instant is still Feb 28
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-01T02:00:00Z"))
    p.produce(topics.LAUNCHES, launch("acme", "l2", "a1", "2026-03-10T12:00:00Z"))
    p.settle()

    def license_entry_only(tp: TopicPartition, records: Sequence[LogRecord]) -> int:
        if tp[0] == topics.LEARNER_STATE_CHANGELOG:
            return 1  # the license entry, written first
        return len(records)

    p.crash_at("w0", "send", topics.LEARNER_COMMANDS, landing=license_entry_only)
    new = license_("acme", cycle_start="2026-01-01", window_months=1, timezone="America/New_York")
    p.produce(topics.LICENSES, new)
    p.settle()
    p.restart()
    ny = Cut.from_id("2026-01-01/1/America/New_York")
    after_takeover = parts(p, "acme", ny)
    p.settle()
    settled = parts(p, "acme", ny)
    assert all(t == s for t, s, _, _ in settled) and all(t == s for _, _, t, s in settled)
    for tallied, scanned, advice, scan_advice in after_takeover:
        assert tallied is None or tallied == scanned, (tallied, scanned)
        assert advice is None or list(advice) == list(scan_advice), (advice, scan_advice)


def test_a_takeover_after_a_license_landed_without_its_recut_does_not_fail() -> None:
    """The same, where an old-cut summary lies after the end of the new cut's window of the
    same name (a launch ahead of the clock, within the hour the contract allows)."""
    p = Pipeline(partitions=1, start=datetime(2026, 3, 31, 23, 20, tzinfo=UTC))
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=12))
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-04-01T00:10:00Z"))
    p.settle()

    def license_entry_only(tp: TopicPartition, records: Sequence[LogRecord]) -> int:
        return 1 if tp[0] == topics.LEARNER_STATE_CHANGELOG else len(records)

    p.crash_at("w0", "send", topics.LEARNER_COMMANDS, landing=license_entry_only)
    p.produce(topics.LICENSES, license_("acme", cycle_start="2026-01-01", window_months=3))
    p.settle()
    p.restart()
    assert not p.world.bugs, p.world.bugs
    quarter = Cut.from_id("2026-01-01/3/UTC")
    for tallied, scanned, advice, scan_advice in parts(p, "acme", quarter):
        assert tallied is None or tallied == scanned, (tallied, scanned)
        assert advice is None or list(advice) == list(scan_advice), (advice, scan_advice)
    p.settle()
    assert p.active("acme", "2026-04-01") == 1
    assert not p.check()
