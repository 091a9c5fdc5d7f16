"""Deleting the attempts of whole teams and learning roles, on a real broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import topics
from streams.cli.deletions import build_request, send_and_wait
from streams.config.settings import Settings
from streams.domain.partitioning import learner_partition
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.kafka.io import latest_by_key, produce_records, read_topic
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
PARTITIONS = 4


def history(learners: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": f"e{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n % learners}",
            "element_id": "course",
            "attempt_id": f"a{n}",
            "launched_at": (NOW - timedelta(days=1 + n % 90)).isoformat(),
            "content_type": "scorm",
        }
        for n in range(learners * 3)
    ]


def groups_of(learners: int) -> dict[tuple[str, str], dict[str, Any]]:
    """l0.. l(n-1): team t0, t1 or t2 by number; every fifth learner a manager."""
    return {
        ("acme", f"l{n}"): {"teams": [f"t{n % 3}"], "roles": ["manager"] if n % 5 == 0 else []}
        for n in range(learners)
    }


def group_records(groups: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"tenant_id": tenant, "learner_id": learner, **value}
        for (tenant, learner), value in groups.items()
    ]


def erased(settings: Settings) -> list[dict]:
    letters = [json.loads(v) for _, v in read_topic(settings, topics.DEAD_LETTERS) if v]
    return [letter for letter in letters if letter["reason"] == "erased"]


@pytest.fixture
def counted(settings: Settings, worker: WorkerProcess) -> tuple[list[dict], dict]:
    """A running worker that counted 40 learners' launches, with their teams and roles."""
    launches, groups = history(40), groups_of(40)
    worker.start()
    produce_json(settings, topics.LEARNER_GROUPS, group_records(groups))
    produce_json(settings, topics.LAUNCHES, launches)
    wait_for(counts_match(settings, recount(launches, {}, NOW)), 180, "counts")
    return launches, groups


def test_a_team_in_every_mode(settings: Settings, counted: tuple[list[dict], dict]) -> None:
    launches, groups = counted
    team = [learner for (_, learner), g in groups.items() if "t0" in g["teams"]]
    assert {learner_partition("acme", learner, PARTITIONS) for learner in team} == set(
        range(PARTITIONS)
    ), "the team has learners in every partition"
    doomed = [launch for launch in launches if launch["learner_id"] in team]

    preview = send_and_wait(
        settings, build_request("acme", "preview", Selector.of("teams", ["t0"]), NOW), 120
    )
    assert (preview["attempts_affected"], preview["learners_affected"]) == (len(doomed), len(team))
    assert (
        preview["windows"]
        and preview["windows"][0]["active_after"] < preview["windows"][0]["active_before"]
    )

    logical = send_and_wait(
        settings, build_request("acme", "logical", Selector.of("teams", ["t1"]), NOW), 120
    )
    stored = latest_by_key(read_topic(settings, topics.ATTEMPTS))
    hidden = {key for key, record in stored.items() if record["logically_deleted"]}
    assert logical["attempts_affected"] == len(hidden) > 0
    wait_for(counts_match(settings, recount(launches, {}, NOW)), 60, "counts unchanged")

    request = build_request("acme", "physical", Selector.of("teams", ["t0"]), NOW)
    receipt = send_and_wait(settings, request, 120)
    assert receipt["attempts_affected"] == len(doomed)
    kept = without_deleted(launches, request, groups)
    wait_for(counts_match(settings, recount(kept, {}, NOW)), 120, "the team's learners gone")
    stored = latest_by_key(read_topic(settings, topics.ATTEMPTS))
    assert not [k for k in stored if k.decode().split("/")[1] in team]

    # a replay of a covered launch is erased; the learner counts again after launching anew
    comeback = {
        **doomed[0],
        "event_id": "comeback",
        "attempt_id": "new",
        "launched_at": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }
    produce_json(settings, topics.LAUNCHES, [doomed[1], comeback])
    wait_for(lambda: erased(settings), 60, "the replay erased")
    later = datetime.now(UTC) + timedelta(seconds=5)
    wait_for(counts_match(settings, recount([*kept, comeback], {}, later)), 120, "counted again")

    roles_at = datetime.now(UTC)
    receipt = send_and_wait(
        settings,
        build_request("acme", "physical", Selector.of("roles", ["manager"]), roles_at),
        120,
    )
    managers = [
        launch
        for launch in [*kept, comeback]
        if groups[("acme", launch["learner_id"])]["roles"]
        and datetime.fromisoformat(launch["launched_at"]) < roles_at
    ]
    assert receipt["attempts_affected"] == len(managers)


def test_groups_are_those_of_the_moment_a_request_is_applied(
    settings: Settings, counted: tuple[list[dict], dict]
) -> None:
    launches, groups = counted
    mover, leaver = "l1", "l2"  # team t1, team t2
    request = build_request("acme", "physical", Selector.of("teams", ["t0"]), NOW)
    first = send_and_wait(settings, request, 120)
    assert first["learners_affected"] == len([g for g in groups.values() if "t0" in g["teams"]])
    kept = without_deleted(launches, request, groups)

    # l1 moves to t0; l2's groups are removed (a tombstone): only l1 is in t0 now
    produce_json(
        settings,
        topics.LEARNER_GROUPS,
        [{"tenant_id": "acme", "learner_id": mover, "teams": ["t0"]}],
    )
    produce_records(settings, [(topics.LEARNER_GROUPS, f"acme/{leaver}".encode(), None)])
    second_at = datetime.now(UTC)
    second = send_and_wait(
        settings, build_request("acme", "physical", Selector.of("teams", ["t0"]), second_at), 120
    )
    assert second["learners_affected"] == 1
    mine = [launch for launch in kept if launch["learner_id"] == mover]
    assert second["attempts_affected"] == len(mine)
    third = send_and_wait(
        settings, build_request("acme", "preview", Selector.of("teams", ["t2"]), second_at), 120
    )
    t2 = [g for (_, learner), g in groups.items() if "t2" in g["teams"] and learner != leaver]
    assert third["learners_affected"] == len(t2), "a learner whose groups were removed is in none"
    kept = [launch for launch in kept if launch["learner_id"] != mover]
    wait_for(counts_match(settings, recount(kept, {}, NOW)), 120, "counts after both")
