"""Found by a review (2026-12-04, helper-69): `settle` calls a deployment settled while the
learner stage still holds partial counts, when PARTIALS_INTERVAL_MS is longer than its quiet.

streams/kafka/settle.py: settled = every input committed and the counts topic quiet for
`quiet_s` (3 s) - 'the partial-count timer and the tenant stage have had their say'. That held
while partials went every 0.5 s; PARTIALS_INTERVAL_MS (streams/worker/partials_pace.py) lets
them wait up to 10 s. Every input is committed once applied, so nothing shows the partials
that wait: `settle` returns, and a `verify` after it compares counts that are not final.

No broker: the consumer groups' lag and the counts topic's end offset are a scripted world on
a fake clock."""

from __future__ import annotations

import pytest

from streams.config.settings import Settings
from streams.kafka import settle


class World:
    """Every input committed (lag 0); the worker sends its partials `sent_at_s` after the last
    command was applied, and the tenant stage writes the counts they change."""

    def __init__(self, sent_at_s: float) -> None:
        self.now = 0.0
        self.sent_at_s = sent_at_s

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def lag(self, settings: Settings, timeout_s: float = 15.0, memo: object = None) -> int:
        return 0

    def counts_end(self, settings: Settings, topic: str) -> int:
        return 100 + (self.now >= self.sent_at_s)


def test_settled_only_once_the_partials_a_slow_pace_holds_have_gone(monkeypatch) -> None:
    settings = Settings.from_env({"PARTIALS_INTERVAL_MS": "10000"})
    world = World(sent_at_s=9.0)  # within the 10 s the pace allows
    monkeypatch.setattr(settle, "time", world)
    monkeypatch.setattr(settle, "group_lag", world.lag)
    monkeypatch.setattr(settle, "end_offset", world.counts_end)
    settle.wait_until_settled(settings, timeout_s=60.0)
    assert world.now >= world.sent_at_s, (
        f"settled at {world.now:.1f} s; the partials went at {world.sent_at_s:.1f} s"
    )


@pytest.mark.parametrize("interval_ms", ["50", "500"])
def test_a_fast_pace_keeps_the_quiet_of_three_seconds(interval_ms: str, monkeypatch) -> None:
    settings = Settings.from_env({"PARTIALS_INTERVAL_MS": interval_ms})
    world = World(sent_at_s=float("inf"))  # nothing more comes
    monkeypatch.setattr(settle, "time", world)
    monkeypatch.setattr(settle, "group_lag", world.lag)
    monkeypatch.setattr(settle, "end_offset", world.counts_end)
    assert settle.wait_until_settled(settings, timeout_s=60.0) == pytest.approx(3.0, abs=0.6)
