"""The faust worker that `active-learners worker` runs."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from typing import Any

from faust.worker import Worker

from streams.worker.shutdown import ShutdownGuard


class BoundedWorker(Worker):
    """faust's worker with a `ShutdownGuard` on SIGTERM and SIGINT."""

    def __init__(
        self, *args: Any, banner: Sequence[str] = (), warnings: Sequence[str] = (), **kwargs: Any
    ) -> None:
        # tracebacks and prints stay whole: no line-by-line redirection of stdout into the log
        super().__init__(*args, redirect_stdouts=False, **kwargs)
        # No terminal spinner: faust ends it by writing `\b\x1b[?25h` to stdout whether or not
        # stdout is a terminal, which put those bytes before a log record in a log file or in
        # a journal that takes both streams (a JSON line no longer JSON); faust logs "Ready"
        # instead.
        self.spinner = None
        self.guard = ShutdownGuard("worker")
        self.banner = list(banner)
        self.warnings = list(warnings)

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        for line in self.banner:
            logger.info("active-learners worker: %s", line)
        for line in self.warnings:
            logger.warning("active-learners worker: %s", line)

    def _schedule_shutdown(self, signal: signal.Signals) -> None:  # type: ignore[override]
        self.guard.signalled(signal)
        super()._schedule_shutdown(signal)
