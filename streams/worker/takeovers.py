"""When a stage's on_recover callback may take partitions over, and under which generation.

faust runs the tables' on_recover callbacks at the end of each recovery, concurrently, and does
not cancel them when a rebalance interrupts it; meanwhile faust's consumer thread may already
hold a later generation and its assignment. So a takeover (streams/stages/batch.py `take_over`):

- takes over what the recovery that ended restored, under that recovery's generation
  (`restored`; `BulkRecovery.restored` in streams/worker/recovery.py), or nothing when a later
  rebalance has begun: the recovery of that rebalance takes over;
- asks the group coordinator whether that generation is still the group's (`still_member`,
  streams/worker/membership.py), and counts a later rebalance seen by this process as a no;
- stops between its steps once a later rebalance has begun (`superseded`): a stale takeover
  must not act after a newer takeover of the same process claimed the partitions;
- after a failure, gives up its partitions only while no later rebalance has begun, and then
  asks the group to rebalance (`rejoin`): a deposed worker's consumer would rejoin by itself
  at its next heartbeat, but any other failure would leave the partitions unowned while the
  worker goes on; the rebalance runs the next takeover.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from faust.types import CollectionT

from streams.worker import faults
from streams.worker.app import app
from streams.worker.membership import is_current

log = logging.getLogger(__name__)


def _recovery() -> Any:
    return app.tables.recovery  # type: ignore[attr-defined]  # BulkRecovery


def _coordinator_thread() -> tuple[Any, Any]:
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]  # aiokafka's own thread
    return thread, thread._ensure_consumer()._coordinator


def restored(table: CollectionT) -> tuple[int, list[int]] | None:
    """The generation and the partitions of `table` that the recovery that just ended
    restored, or None when a later rebalance has begun since it began."""
    done = _recovery().restored
    if done is None or superseded(done.generation):
        return None
    return done.generation, list(done.partitions.get(table.name, ()))


def superseded(generation: int) -> bool:
    """Whether a rebalance later than `generation` has begun, as this process sees it."""
    return app.consumer_generation_id != generation or _recovery()._generation_id != generation


async def still_member(generation: int) -> bool:
    """Whether this worker is still a member of the consumer group's `generation` (the group
    coordinator's answer to a heartbeat of it), with no later rebalance begun here."""
    thread, coordinator = _coordinator_thread()
    answer = bool(await thread.call_thread(is_current, coordinator, generation))
    if faults.refuse_takeover():
        log.warning(
            "takeover of generation %d: refused by ACTIVE_LEARNERS_REFUSE_TAKEOVERS", generation
        )
        answer = False
    return answer and not superseded(generation)


async def rejoin(stage: str, failed: bool = False) -> None:
    """Ask the consumer group to rebalance (aiokafka rejoins at its next poll of the group).

    After a takeover that failed for another reason than being deposed (`failed`), the rejoin
    waits longer each time in a row (2, 4, ... 60 s): a failure that repeats would otherwise
    make the whole group rebalance in a loop."""
    if failed:
        _failures[stage] = _failures.get(stage, 0) + 1
        wait_s = min(2.0 ** _failures[stage], MAX_BACKOFF_S)
        log.warning(
            "%s takeover failed %d times in a row; asking for a rebalance in %.0f s",
            stage,
            _failures[stage],
            wait_s,
        )
        await asyncio.sleep(wait_s)
    thread, coordinator = _coordinator_thread()

    async def request() -> None:
        coordinator.request_rejoin()

    await thread.call_thread(request)


def succeeded(stage: str) -> None:
    """A takeover of `stage` completed: the next failure waits least again."""
    _failures.pop(stage, None)


MAX_BACKOFF_S = 60.0
_failures: dict[str, int] = {}
