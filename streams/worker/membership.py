"""Is this worker still a member of the consumer group's generation? Asked of the group
coordinator by a takeover after it has read its partitions' epochs, before it writes its own
(streams/stages/batch.py `take_over`, the `StillMember` of streams/stages/store.py).

The question is a heartbeat of that generation with this member's id: the coordinator answers
it without an error only while the generation is the group's current one and the member in it.
A worker deposed meanwhile (expelled while it paused, or while its restore was slow) hears
`ILLEGAL_GENERATION` or `UNKNOWN_MEMBER_ID`; a rebalance under way, `REBALANCE_IN_PROGRESS`. Each
is a no: the takeover writes nothing, and the rebalance that follows runs the next takeover.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.protocol.group import HeartbeatRequest

log = logging.getLogger(__name__)

ANSWER_WAIT_S = 15.0  # the group's session timeout: no answer by then is no
RETRY_FIRST_S = 0.2


async def is_current(
    coordinator: Any, generation: int, answer_wait_s: float = ANSWER_WAIT_S
) -> bool:
    """Whether `coordinator` (aiokafka's GroupCoordinator of this process's consumer) is still
    a member of `generation`, as the group coordinator answers a heartbeat of it now. A
    coordinator that cannot be reached or is moving is asked again for up to `answer_wait_s`."""
    if coordinator.generation != generation:
        return False  # the consumer already knows of a later generation
    request = HeartbeatRequest(coordinator.group_id, generation, coordinator.member_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + answer_wait_s
    delay = RETRY_FIRST_S
    while True:
        try:
            # aiokafka looks for a coordinator as long as it takes: bounded here
            response = await asyncio.wait_for(
                _ask(coordinator, request), max(deadline - loop.time(), 0.01)
            )
        except (kafka_errors.KafkaError, TimeoutError) as exc:
            error: type[BaseException] = type(exc)
        else:
            error = kafka_errors.for_code(response.error_code)
            if error is kafka_errors.NoError:
                return True
            if error not in (
                kafka_errors.GroupCoordinatorNotAvailableError,
                kafka_errors.NotCoordinatorForGroupError,
                kafka_errors.GroupLoadInProgressError,
            ):
                log.warning(
                    "the group coordinator answered a heartbeat of generation %d with %s",
                    generation,
                    error.__name__,
                )
                return False
            coordinator.coordinator_dead()  # find it again, as aiokafka's heartbeat does
        if loop.time() + delay > deadline:
            # No answer: not proven a member. A rejoin makes sure a later takeover asks again.
            log.warning(
                "no answer from the group coordinator about generation %d (%s); rejoining",
                generation,
                error.__name__,
            )
            coordinator.request_rejoin()
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def _ask(coordinator: Any, request: HeartbeatRequest) -> Any:
    await coordinator.ensure_coordinator_known()
    return await coordinator._send_req(request)
