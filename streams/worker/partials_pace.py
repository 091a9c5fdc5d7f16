"""How often the learner stage sends its dirty tenants' partial counts.

A launch is counted in a published count only once the partial count of its learner partition
reached the tenant stage, and a partial waits for the next send: while the worker keeps up, that
wait is most of a launch's latency (at 10,000 launches/s here: p99 0.95-1.08 s with a send every
0.5 s, 0.71-0.73 s every 0.25 s). In a backlog the wait is nothing beside the backlog's, and every
send costs the tenant stage a count record per dirty tenant. So the interval follows the last
group each reader took (the launch reader's batch of launches, the learner stage's group of
commands): a full one means more were waiting, a backlog (docs/benchmarks.md, "Partial counts
paced by the backlog").

Pure bookkeeping: the caller gives the times (`time.monotonic()`), so tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KEEPING_UP_S = 0.25
BEHIND_S = 0.5


@dataclass
class PartialsPace:
    keeping_up_s: float = KEEPING_UP_S
    behind_s: float = BEHIND_S
    last_sent: float | None = None
    full: dict[str, bool] = field(default_factory=dict)  # reader -> its last group was full

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
