"""Partial counts that Kafka refuses for their size (streams/stages/learners.py
`send_partials`), through the real tenant stage.

A physical deletion part changes a learner partition's counters chunk by chunk under one
`seq` (the part's offset), so a report taken mid-part and the part's final report carry the same
(epoch, seq), and the tenant stage keeps the one that arrives last. The first fix sent the
reports it had taken before the refusal again after it: the part's final report, flushed by the
learner agent while the timer waited for Kafka's answer, was overwritten by the older one, and
the count went back up, firing its threshold again (helper-111). The reports are taken again
after a refusal now."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from schemas import topics
from streams.domain.learners import CountChange, TenantCounts
from streams.stages.learners import LearnerStage, send_partials
from streams.stages.store import RecordTooLarge
from tests.stages.pipeline import Pipeline, launch, license_

W = "2026-01-01"


def test_reports_refused_for_their_size_are_taken_again_before_they_go_apart() -> None:
    p = Pipeline(partitions=1)
    p.produce(topics.LICENSES, license_("acme", learner_limit=10, thresholds=[80]))
    p.settle()
    for n in range(9):
        p.produce(topics.LAUNCHES, launch("acme", f"l{n}", "a0", "2026-03-10T10:00:00Z"))
    p.flow()
    p.settle()
    assert p.history("acme", W)[-1] == 9
    real = p.worker().learner
    epoch, counts = real.counters.epochs[0], real.counters.get(0, "acme")
    assert counts is not None
    # the timer's stage, as a deletion part at offset `seq` has applied its first chunk (one
    # learner of three gone): 8
    seq = counts.seq + 5
    timer = LearnerStage(1)
    kept = TenantCounts(dict(counts.windows), counts.total, counts.cut_id, counts.seq)
    timer.counters.reset_partition(0, epoch, {"acme": kept})
    timer.partial_commands()  # (reported already)
    timer.counters.apply(0, "acme", counts.cut_id, CountChange(Counter({W: -1}), -1), seq)

    class RefusedOnce:
        """The timer's first flush waits for Kafka while the part's last chunk is applied and
        its final report (6, the same seq) lands; then Kafka refuses the flush."""

        flushes = 0

        def __init__(self) -> None:
            self.out: list[bytes | None] = []

        def emit(self, topic: str, key: Any, value: bytes | None, partition: Any = None) -> None:
            self.out.append(value)

        async def flush(self) -> None:
            RefusedOnce.flushes += 1
            if RefusedOnce.flushes == 1:
                change = CountChange(Counter({W: -2}), -2)
                timer.counters.apply(0, "acme", counts.cut_id, change, seq)
                final = LearnerStage(1)
                final.counters.reset_partition(0, epoch, {"acme": timer.counters.get(0, "acme")})
                for _, value in final.partial_commands():
                    p.produce(topics.TENANT_COMMANDS, value, key=b"partials")
                raise RecordTooLarge("Kafka refused a record of tenant-commands for its size")
            for value in self.out:
                p.produce(topics.TENANT_COMMANDS, value, key=b"partials")

    assert asyncio.run(send_partials(timer, RefusedOnce)) == 1  # type: ignore[arg-type]
    for _ in range(3):
        p.run("tenant-commands")
    assert p.history("acme", W)[-1] == 6, p.history("acme", W)
    directions = [(e["direction"], e["active_learners"]) for e in p.events("acme")]
    assert directions[-1][0] == "down", directions
