"""When a stage's on_recover callback may take partitions over, and under which generation.

faust runs the tables' on_recover callbacks at the end of each recovery, concurrently, and does
not cancel them when a rebalance interrupts it; meanwhile faust's consumer thread may already
hold a later generation and its assignment. So a takeover (streams/stages/batch.py `take_over`):

- takes over what the recovery that ended restored, under that recovery's generation
  (`restored`; `RESTORED` in streams/worker/recovery.py, which a callback that starts late
  reads too), or nothing when a later rebalance has begun: the recovery of that rebalance
  takes over;
- asks the group coordinator whether that generation is still the group's (`still_member`,
  streams/worker/membership.py), and counts a later rebalance seen by this process as a no;
- stops between its steps once a later rebalance has begun (`superseded`), and its batch at
  its first send or write after that (`DurableBatch.stop_when`): a stale takeover must not act
  after a newer takeover of the same process restored and claimed the partitions (the steps:
  streams/stages/takeover_steps.py);
- after a failure, gives up its partitions only while no later rebalance has begun, and then
  asks the group to rebalance (`rejoin`): a deposed worker's consumer would rejoin by itself
  at its next heartbeat, but any other failure would leave the partitions unowned while the
  worker goes on; the rebalance runs the next takeover.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from faust.types import CollectionT

from streams.stages.store import Fenced
from streams.worker import faults
from streams.worker.app import app
from streams.worker.membership import is_current
from streams.worker.recovery import RESTORED

log = logging.getLogger(__name__)


def _recovery() -> Any:
    return app.tables.recovery  # type: ignore[attr-defined]  # BulkRecovery


def _coordinator_thread() -> tuple[Any, Any]:
    thread: Any = app.consumer._thread  # type: ignore[attr-defined]  # aiokafka's own thread
    return thread, thread._ensure_consumer()._coordinator


def restored(table: CollectionT) -> tuple[int, list[int]] | None:
    """The generation and the partitions of `table` that the recovery whose callback this is
    restored, or None when a later rebalance has begun since it began."""
    done = RESTORED.get()
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


async def run(
    stage: str,
    generation: int,
    steps: Callable[[], Awaitable[None]],
    release: Callable[[], None],
) -> None:
    """Run a takeover's `steps`; after a failure give the stage's partitions up and ask for a
    rebalance (`give_up`), unless a later takeover may own them already."""
    try:
        await steps()
    except Fenced as exc:
        log.warning("%s takeover: %s", stage, exc)
        failed = False
    except Exception:
        log.exception("%s takeover of generation %d failed", stage, generation)
        failed = True
    else:
        if not superseded(generation):
            _failures.pop(stage, None)  # the next failure waits least again
        return
    if not superseded(generation):
        await give_up(stage, release, failed)


async def give_up(stage: str, release: Callable[[], None], failed: bool = False) -> None:
    """Own no partition of `stage` (`release`) and ask for a rebalance: this process was
    deposed (`Fenced`) or could not take over; the rebalance's takeover owns them again."""
    release()
    await rejoin(stage, failed)


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


MAX_BACKOFF_S = 60.0
_failures: dict[str, int] = {}  # stage -> takeovers failed in a row
