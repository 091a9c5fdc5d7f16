"""The worker's timers outlive their failures: the next interval tries again.

mode runs each `app.timer` as a task of the app, and an exception out of one crashes the whole
app (`Service._execute_task`): a timer whose flush met a failure the agents survive (they apply
their group again, streams/worker/agents/loop.py) restarted the worker. So every timer runs
inside `survives`: a failure is counted (`active_learners_timer_failures_total{timer}`),
logged with its traceback at the first failure of a streak and once more when the timer works
again, and the timer runs again at its next interval. Each timer leaves nothing half-done for
that (the partial counts it could not send are reported again, `LearnerStage.unsent`; a tick
or a check is a command sent again). `LocalWriteFailed` still stops the worker, as in the
agents; cancellation (shutdown) passes through.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from streams.stages import metrics
from streams.stages.store import LocalWriteFailed
from streams.worker.agents.loop import stop_for_failed_local_write

log = logging.getLogger(__name__)

Timer = Callable[[], Awaitable[None]]


def survives(name: str) -> Callable[[Timer], Timer]:
    """The timer `name`, whose failures are counted and logged once per streak (decorate it
    below `@app.timer`, or call it from a loop of its own)."""

    def decorate(timer: Timer) -> Timer:
        failed = 0  # failures in a row
        metrics.timer_failures_total.labels(name)  # at 0 from the start, for alerts on increase

        @functools.wraps(timer)
        async def surviving() -> None:
            nonlocal failed
            try:
                await timer()
            except LocalWriteFailed:
                stop_for_failed_local_write(name)
            except Exception:
                failed += 1
                metrics.timer_failures_total.labels(name).inc()
                if failed == 1:
                    log.warning(
                        "%s failed; trying again at every interval (logged again when it works)",
                        name,
                        exc_info=True,
                    )
                return
            if failed:
                log.info("%s works again after %d failed intervals", name, failed)
                failed = 0

        return surviving

    return decorate
