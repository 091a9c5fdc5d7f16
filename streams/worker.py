"""The faust worker that `active-learners worker` runs."""

from __future__ import annotations

import logging
import signal
from typing import Any

from faust.worker import Worker

from streams.shutdown import ShutdownGuard


class BoundedWorker(Worker):
    """faust's worker with a `ShutdownGuard` on SIGTERM and SIGINT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # tracebacks and prints stay whole: no line-by-line redirection of stdout into the log
        super().__init__(*args, redirect_stdouts=False, **kwargs)
        self.guard = ShutdownGuard("worker")

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        from streams.app import settings
        from streams.web import tokens

        logger.info("active-learners worker: %s", settings.describe())
        logger.info("active-learners worker: %s", tokens.describe())

    def _schedule_shutdown(self, signal: signal.Signals) -> None:  # type: ignore[override]
        self.guard.signalled(signal)
        super()._schedule_shutdown(signal)
