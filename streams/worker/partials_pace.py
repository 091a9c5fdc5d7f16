"""How often the learner stage sends its dirty tenants' partial counts.

A launch is counted in a published count only once the partial count of its learner partition
reached the tenant stage, and a partial waits for the next send: while the worker keeps up,
that wait is most of a launch's latency. Every send costs the tenant stage work and a count
record per dirty tenant, so a shorter interval trades CPU for fresher counts:
`PARTIALS_INTERVAL_MS` (500 by default; 250 took the p99 at 5,000 launches/s here from
0.90-0.95 s to 0.74-0.91 s, and cost latency at 10,000/s in a slow hour, when the worker had
little CPU to spare: docs/benchmarks.md, "Partial counts paced by the backlog").

In a backlog a launch waits for the backlog anyway, and the extra sends only slow its end: the
next send is then at least BEHIND_S after the last one finished. A backlog is a full last group
of one of the readers (the launch reader's batch of launches, the learner stage's group of
commands): more were waiting.

While the worker keeps up the sends keep to a grid of the interval: the timer asks every
`tick_s` (a tenth of the interval), and a send is due at its slot, not an interval after the
previous send finished. Asked once an interval, a timer whose body awaits the flush (faust's
timers sleep the interval after the body returned) sent every 0.53 s on median and up to
0.70 s at 10,000 launches/s, so a launch waited up to 0.7 s for its report, not 0.5 s
(docs/benchmarks.md, "Reports on time"). A send late by half an interval or more (nothing was
dirty at its slot, the loop was busy) starts a new grid: nothing goes out in a burst, and the
first change after a quiet spell goes at the next tick. On the grid the interval is the reports'
average spacing: one that follows a late one may come sooner (by up to about half an interval).

Pure bookkeeping: the caller gives the times (`time.monotonic()`), so tests need no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

BEHIND_S = 0.5
TICKS_PER_INTERVAL = 10
MIN_TICK_S = 0.01


@dataclass
class PartialsPace:
    keeping_up_s: float = 0.5
    slot: float | None = None  # the last send's slot on the grid (its time, off the grid)
    full: dict[str, bool] = field(default_factory=dict)  # reader -> its last group was full

    @property
    def behind_s(self) -> float:
        return max(self.keeping_up_s, BEHIND_S)

    @property
    def tick_s(self) -> float:
        """How often the caller asks `due`."""
        return max(MIN_TICK_S, self.keeping_up_s / TICKS_PER_INTERVAL)

    @property
    def behind(self) -> bool:
        return any(self.full.values())

    @property
    def interval_s(self) -> float:
        return self.behind_s if self.behind else self.keeping_up_s

    def took(self, reader: str, events: int, max_events: int) -> None:
        """`reader` took a group of `events`, at most `max_events`: a full one means a backlog."""
        self.full[reader] = events >= max_events

    def due(self, now: float) -> bool:
        """Whether the partials go now. A tick comes about every `tick_s`, a little late or
        early, so a send is due a quarter of a tick before its slot."""
        if self.slot is None:
            return True
        return now - self.slot >= self.interval_s - self.tick_s / 4

    def sent(self, now: float) -> None:
        """Partials were taken to be sent at `now`: the next slot is an interval after this
        one's (on the grid), or after `now` when this send was late by half an interval."""
        if self.slot is None:
            self.slot = now
            return
        following = self.slot + self.interval_s
        self.slot = following if now - following < self.interval_s / 2 else now

    def finished(self, now: float) -> None:
        """The send taken last finished at `now` (Kafka acknowledged it): in a backlog the next
        one waits BEHIND_S from here, as an interval timer did."""
        if self.behind and self.slot is not None:
            self.slot = max(self.slot, now)
