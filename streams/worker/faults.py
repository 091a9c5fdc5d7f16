"""Faults for the fault tests: `ACTIVE_LEARNERS_CRASH_AT=<point>:<n>[:deletion]` kills the
worker; `ACTIVE_LEARNERS_REFUSE_TAKEOVERS=<n>` makes the group coordinator's answer to the first
n takeovers a no, as a deposed worker hears it (streams/worker/takeovers.py).

The worker sends itself SIGKILL (no shutdown, no flush, no commit) the n-th time a state flush
that writes attempt records (with `:deletion`, only a chunk of a physical deletion) reaches
`point`:

  before-changelog   the batch is computed, nothing has been sent
  after-changelog    Kafka acknowledged every changelog record and output; RocksDB not written
  after-rocksdb      RocksDB written; the input offsets are not yet acknowledged or committed

Unset (the default), `reached()` costs one comparison.
"""

from __future__ import annotations

import os
import signal

from streams.config.settings import ConfigError

POINTS = ("before-changelog", "after-changelog", "after-rocksdb")


def _parse(text: str) -> tuple[str, int, str] | None:
    if not text:
        return None
    point, _, rest = text.partition(":")
    count, _, label = rest.partition(":")
    count = count or "1"
    # ConfigError: a one-line error of the worker command, as for every setting (helper-90)
    if point not in POINTS:
        raise ConfigError(f"ACTIVE_LEARNERS_CRASH_AT: unknown point {point!r}; one of {POINTS}")
    if not (count.isascii() and count.isdecimal()):
        raise ConfigError(f"ACTIVE_LEARNERS_CRASH_AT: the count must be a number, got {count!r}")
    return point, int(count), label


_plan = _parse(os.environ.get("ACTIVE_LEARNERS_CRASH_AT", "").strip())
_seen: dict[str, int] = {}


def reached(point: str, label: str = "") -> None:
    """Called by the state flush at each point; kills the process when the plan says so."""
    if _plan is None or _plan[0] != point or (_plan[2] and _plan[2] != label):
        return
    _seen[point] = _seen.get(point, 0) + 1
    if _seen[point] >= _plan[1]:
        os.kill(os.getpid(), signal.SIGKILL)


_refusals = os.environ.get("ACTIVE_LEARNERS_REFUSE_TAKEOVERS", "").strip() or "0"
if not (_refusals.isascii() and _refusals.isdecimal()):
    raise ConfigError(
        f"ACTIVE_LEARNERS_REFUSE_TAKEOVERS must be a whole number, got {_refusals[:40]!r}"
    )
_refusals_left = int(_refusals)


def refuse_takeover() -> bool:
    """Whether this takeover hears no whatever the coordinator says (the next of the n)."""
    global _refusals_left
    if _refusals_left <= 0:
        return False
    _refusals_left -= 1
    return True
