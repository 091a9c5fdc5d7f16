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

GRACE_S = 12.0  # the contract with operators is 15 s


class ShutdownGuard:
    def __init__(self, name: str, grace_s: float = GRACE_S) -> None:
        self.name = name
        self.grace_s = grace_s
        self.signals = 0

    def signalled(self, signum: int) -> None:
        """Called on every SIGTERM/SIGINT: arms the timer on the first, exits on the second."""
        self.signals += 1
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
