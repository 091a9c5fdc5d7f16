"""The loop every agent runs: take a group of events, handle each, make it durable, then ack.

faust acks an event in a `finally` when the agent moves on, even when the handler raised or was
cancelled, and then commits its offset. So the agents take events with `noack_take` and ack them
themselves, only after `StateBatch.flush()` returned: an event is never committed before what it
caused is in Kafka. Taking events in groups also amortises the flush (one round trip to Kafka for
up to `max_events` commands).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from faust.types import EventT, StreamT

from streams import metrics
from streams.app import sender
from streams.state import StateBatch

log = logging.getLogger(__name__)

Handler = Callable[[StateBatch, EventT], Awaitable[None]]

MAX_EVENTS = 64
WITHIN_S = 0.05


async def run_durably(
    stream: StreamT,
    stage: str,
    handle: Handler,
    max_events: int = MAX_EVENTS,
    finish: Callable[[StateBatch], None] | None = None,
) -> None:
    """Handle events group by group; `finish` sees the batch after the group's last event."""
    async for events in stream.noack_take(max_events, within=WITHIN_S):  # type: ignore[attr-defined]
        batch = StateBatch(sender)
        for event in events:
            try:
                await handle(batch, event)
            except Exception:
                # A bug, never bad input (inputs are validated at ingest): logged with the
                # event's position and counted, and the stage goes on.
                message = event.message
                log.exception(
                    "%s: failed on %s/%d@%d",
                    stage,
                    message.topic,
                    message.partition,
                    message.offset,
                )
                metrics.stage_errors_total.labels(stage).inc()
        if finish is not None:
            finish(batch)
        await batch.flush()
        for event in events:
            await stream.ack(event)
