"""How a takeover reads the group coordinator's answers (streams/worker/membership.py), over a
coordinator that answers from a script: a moving or unreachable coordinator is asked again; no
answer in time is a no, and the consumer is asked to rejoin so that a later takeover asks again.
The answers of a real coordinator are tested against the broker
(tests/integration/test_membership.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from aiokafka import errors as kafka_errors

from streams.worker.membership import is_current


@dataclass
class Answer:
    error_code: int


@dataclass
class ScriptedCoordinator:
    answers: list[Any]  # an error code to answer with, or an exception to raise
    group_id: str = "group"
    generation: int = 7
    member_id: str = "member-1"
    asked: list[tuple[str, int, str]] = field(default_factory=list)
    dead: int = 0
    rejoin_requested: bool = False
    known: bool = True  # False: no coordinator is ever found

    async def ensure_coordinator_known(self) -> None:
        while not self.known:
            await asyncio.sleep(0.01)  # aiokafka looks on, as long as it takes

    async def _send_req(self, request: Any) -> Answer:
        self.asked.append((request._group, request._generation_id, request._member_id))
        answer = self.answers.pop(0) if self.answers else kafka_errors.KafkaConnectionError()
        if isinstance(answer, BaseException):
            raise answer
        return Answer(answer)

    def coordinator_dead(self) -> None:
        self.dead += 1

    def request_rejoin(self) -> None:
        self.rejoin_requested = True


def ask(coordinator: ScriptedCoordinator, generation: int = 7, wait_s: float = 5.0) -> bool:
    return asyncio.run(is_current(coordinator, generation, answer_wait_s=wait_s))


def test_a_heartbeat_without_error_is_yes() -> None:
    coordinator = ScriptedCoordinator([kafka_errors.NoError.errno])
    assert ask(coordinator)
    assert coordinator.asked == [("group", 7, "member-1")]


def test_a_deposed_member_hears_no_at_once() -> None:
    for error in (
        kafka_errors.IllegalGenerationError,
        kafka_errors.UnknownMemberIdError,
        kafka_errors.RebalanceInProgressError,
    ):
        coordinator = ScriptedCoordinator([error.errno, kafka_errors.NoError.errno])
        assert not ask(coordinator), error.__name__
        assert len(coordinator.asked) == 1, "a definite no is not asked again"
        assert not coordinator.rejoin_requested


def test_a_later_generation_known_locally_is_no_without_asking() -> None:
    coordinator = ScriptedCoordinator([kafka_errors.NoError.errno], generation=8)
    assert not ask(coordinator, generation=7)
    assert coordinator.asked == []


def test_a_moving_or_unreachable_coordinator_is_asked_again() -> None:
    coordinator = ScriptedCoordinator(
        [
            kafka_errors.NotCoordinatorForGroupError.errno,
            kafka_errors.KafkaConnectionError(),
            kafka_errors.GroupLoadInProgressError.errno,
            kafka_errors.NoError.errno,
        ]
    )
    assert ask(coordinator)
    assert len(coordinator.asked) == 4
    assert coordinator.dead == 2, "a coordinator that moved is looked up again"


def test_no_answer_in_time_is_no_and_asks_to_rejoin() -> None:
    coordinator = ScriptedCoordinator([])  # the connection fails every time
    assert not ask(coordinator, wait_s=0.5)
    assert len(coordinator.asked) >= 2
    assert coordinator.rejoin_requested


def test_no_coordinator_found_is_no_within_the_wait() -> None:
    """Found by a review: aiokafka looks for a coordinator without a bound, so the wait was
    not one; each question is now bounded by what is left of it."""
    coordinator = ScriptedCoordinator([kafka_errors.NoError.errno], known=False)
    loop = asyncio.new_event_loop()
    try:
        started = loop.time()
        answer = loop.run_until_complete(is_current(coordinator, 7, answer_wait_s=0.3))
        took = loop.time() - started
    finally:
        loop.close()
    assert not answer
    assert took < 5.0, f"the question took {took:.1f}s"
    assert coordinator.rejoin_requested
