"""How often the learner stage sends its dirty tenants' partial counts.

A launch is counted in a published count only once the partial count of its learner partition
reached the tenant stage, and a partial waits for the next send: while the worker keeps up,
that wait is most of a launch's latency. Every send costs the tenant stage work and a count
record per dirty tenant, so a shorter interval trades CPU for fresher counts:
`PARTIALS_INTERVAL_MS` (500 by default; 250 took the p99 at 5,000 launches/s here from
0.90-0.95 s to 0.74-0.91 s, and cost latency at 10,000/s in a slow hour, when the worker had
little CPU to spare: docs/benchmarks.md, "Partial counts paced by the backlog").

In a backlog a launch waits for the backlog anyway, and the extra sends only slow its end: the
interval is then at least BEHIND_S. A backlog is a full last group of one of the readers (the
launch reader's batch of launches, the learner stage's group of commands): more were waiting.

Pure bookkeeping: the caller gives the times (`time.monotonic()`), so tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BEHIND_S = 0.5


@dataclass
class PartialsPace:
    keeping_up_s: float = 0.5
    last_sent: float | None = None
    full: dict[str, bool] = field(default_factory=dict)  # reader -> its last group was full

    @property
    def behind_s(self) -> float:
        return max(self.keeping_up_s, BEHIND_S)

    @property
    def tick_s(self) -> float:
        """How often the caller asks `due`."""
        return self.keeping_up_s

    @property
    def behind(self) -> bool:
        return any(self.full.values())

    def took(self, reader: str, events: int, max_events: int) -> None:
        """`reader` took a group of `events`, at most `max_events`: a full one means a backlog."""
        self.full[reader] = events >= max_events

    def due(self, now: float) -> bool:
        """Whether the partials go now. A tick comes about every `tick_s`, a little late or
        early, so a send is due a quarter of a tick before its interval is over."""
        if self.last_sent is None:
            return True
        interval = self.behind_s if self.behind else self.keeping_up_s
        return now - self.last_sent >= interval - self.tick_s / 4

    def sent(self, now: float) -> None:
        self.last_sent = now
