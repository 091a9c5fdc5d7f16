"""Bounded shutdown: a process exits within GRACE_S of SIGTERM/SIGINT, whatever Kafka does.

A clean stop flushes and commits what it can. Without a broker that never finishes: the producer
retries, the consumer waits for in-flight events, and the process would keep its web port and its
RocksDB locks. So the first signal starts a clean stop and a timer; when the timer fires, or a
second signal arrives, the process exits at once. Nothing is lost by that: an input is committed
only after what it caused is in Kafka, so whatever was not committed is processed again on the
next start (every step is idempotent).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

GRACE_S = 12.0  # the contract with operators is 15 s
# Set by `worker --processes N` (streams/cli/processes.py) in its children's environment.
SUPERVISED_ENV = "ACTIVE_LEARNERS_SUPERVISOR"
# A child of `worker --processes N` may get one stop twice: from a service manager that signals
# every process of the unit (systemd's default KillMode=control-group) and forwarded by the
# supervisor. Within this long of the first, a second signal is that same stop.
SAME_STOP_S = 1.0


class ShutdownGuard:
    def __init__(self, name: str, grace_s: float = GRACE_S) -> None:
        self.name = name
        self.grace_s = grace_s
        self.signals = 0
        self.same_stop_s = SAME_STOP_S if os.environ.get(SUPERVISED_ENV) else 0.0
        self.first_at = 0.0

    def signalled(self, signum: int) -> None:
        """Called on every SIGTERM/SIGINT: arms the timer on the first, exits on the second."""
        now = time.monotonic()
        if self.signals and now - self.first_at < self.same_stop_s:
            return  # the same stop, sent to every process and forwarded by the supervisor
        self.signals += 1
        self.first_at = self.first_at or now
        if self.signals > 1:
            self._exit(f"second {signal.Signals(signum).name}: exiting now", 128 + signum)
        timer = threading.Timer(self.grace_s, self._give_up)
        timer.daemon = True
        timer.start()

    def _give_up(self) -> None:
        self._exit(
            f"did not stop within {self.grace_s:g} s (is the Kafka broker reachable?); exiting; "
            "what was not committed is processed again on the next start",
            1,
        )

    def _exit(self, message: str, code: int) -> None:
        sys.stderr.write(f"active-learners {self.name}: {message}\n")
        sys.stderr.flush()
        os._exit(code)
