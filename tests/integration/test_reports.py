"""The administrators' reports against a real broker and two real workers: every call, from
either worker, equals an independent recount of the launches (who is counted, their first and
last attempt, teams and roles after a learner moved between teams, forecast and advisor)."""

from __future__ import annotations

import csv
import io
import json
import os
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streams.config.settings import Settings
from streams.domain.windows import Cut, add_months, local_midnight, window_of
from streams.kafka.admin import ensure_topics
from tests.integration.harness import WorkerProcess, produce_json, wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
TOKEN = "reports-admin-secret-0123456789abcdef01"
ZONE = "Europe/Berlin"
CYCLE = add_months(NOW.date().replace(day=1), -14)
LICENSE = {
    "tenant_id": "acme",
    "cycle_start": CYCLE.isoformat(),
    "window_months": 1,
    "learner_limit": 40,
    "timezone": ZONE,
}
CUT = Cut(CYCLE, 1, ZONE)
CURRENT = window_of(CUT, NOW)
# "=1+2": an id a spreadsheet would run as a formula (the CSV shows it as text)
LEARNERS = [f"l{n:03d}" for n in range(60)] + ["john", "john.doe", "a-b", "a", "=1+2"]


def dataset() -> list[dict[str, Any]]:
    """Every learner launches in some of the last five months, some several times."""
    launches = []
    for number, learner in enumerate(LEARNERS):
        for back in range(number % 5 + 1):
            when = NOW - timedelta(days=back * 23 + number % 7, hours=number % 5 + 1)
            launches.append(
                {
                    "event_id": f"{learner}-{back}",
                    "tenant_id": "acme",
                    "learner_id": learner,
                    "element_id": "course",
                    "attempt_id": f"a{back}",
                    "launched_at": when.isoformat(),
                    "tracking": "tracked",
                }
            )
    return launches


GROUPS = [
    {"tenant_id": "acme", "learner_id": learner, "teams": [f"t{n % 3}"], "roles": ["learner"]}
    for n, learner in enumerate(LEARNERS[:30])
]
MOVED = {"tenant_id": "acme", "learner_id": "l000", "teams": ["t2", "t9"], "roles": ["manager"]}


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def expected_rows(launches: list[dict[str, Any]]) -> dict[str, tuple[datetime, datetime, int]]:
    """learner -> (first, last, attempts) in the current window, recounted from the launches."""
    inside: dict[str, list[datetime]] = {}
    for launch in launches:
        at = instant(launch["launched_at"])
        if CURRENT.start_at <= at < CURRENT.end_at:
            inside.setdefault(launch["learner_id"], []).append(at)
    return {learner: (min(ats), max(ats), len(ats)) for learner, ats in inside.items()}


def latest_groups() -> dict[str, dict[str, Any]]:
    groups = {g["learner_id"]: g for g in GROUPS}
    groups[MOVED["learner_id"]] = MOVED
    return groups


def get(port: int, path: str) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


@pytest.fixture(scope="module")
def workers(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    folder = tmp_path_factory.mktemp("reports")
    settings = replace(broker, topic_prefix=f"test-reports-{os.getpid()}-", partitions=4)
    ensure_topics(settings)
    produce_json(settings, "licenses", [LICENSE])
    produce_json(settings, "launches", dataset())
    produce_json(settings, "learner-groups", GROUPS)
    produce_json(settings, "learner-groups", [MOVED])
    env = {"API_ADMIN_TOKENS": f"ops:{TOKEN}"}
    started = [
        WorkerProcess(
            replace(settings, state_dir=folder / f"w{n}"), folder / f"w{n}.log", extra_env=env
        ).start()
        for n in range(2)
    ]
    ports = [worker.web_port for worker in started]
    expected = len(expected_rows(dataset()))

    def settled() -> bool:
        for worker in started:
            if not worker.alive():
                raise AssertionError(f"a worker died:\n{worker.log_tail()}")
        try:
            answers = [get(port, "/api/tenants/acme") for port in ports]
            ready = [get(port, "/ready")[0] for port in ports]
        except OSError:
            return False
        return ready == [200, 200] and all(
            status == 200 and json.loads(body)["active_learners"] == expected
            for status, body, _ in answers
        )

    try:
        wait_for(settled, 240, "both workers ready with the recounted Active Learners")
        # both hold learner partitions: every report gathers from the other worker too
        held = [json.loads(get(port, "/ready")[1])["learner_partitions"] for port in ports]
        assert all(held) and sorted(held[0] + held[1]) == [0, 1, 2, 3], held
        yield ports
    finally:
        for worker in started:
            worker.stop()


def test_counted_learners_equal_the_recount_from_either_worker(workers: list[int]) -> None:
    expected = expected_rows(dataset())
    groups = latest_groups()
    start = CURRENT.start.isoformat()
    for port in workers:
        status, body, headers = get(port, f"/api/tenants/acme/windows/{start}/learners")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        learners = json.loads(body)["learners"]
        assert [row["learner_id"] for row in learners] == sorted(expected)
        for row in learners:
            first, last, attempts = expected[row["learner_id"]]
            assert (instant(row["first_attempt_at"]), instant(row["last_attempt_at"])) == (
                first,
                last,
            )
            assert row["attempts"] == attempts
            group = groups.get(row["learner_id"], {})
            assert row["teams"] == sorted(group.get("teams", []))
            assert row["roles"] == sorted(group.get("roles", []))

        status, body, _ = get(port, f"/api/tenants/acme/windows/{start}/learners?format=jsonl")
        lines = [json.loads(line) for line in body.decode().splitlines()]
        assert status == 200 and lines == learners

        status, body, headers = get(port, f"/api/tenants/acme/windows/{start}/learners?format=csv")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert "attachment" in headers["Content-Disposition"]
        parsed = list(csv.DictReader(io.StringIO(body.decode())))
        assert [row["learner_id"] for row in parsed] == [
            "'=1+2" if learner == "=1+2" else learner for learner in sorted(expected)
        ]
        assert body.endswith(b"\r\n")


def test_learners_by_status_add_up_to_the_total(workers: list[int]) -> None:
    counted = set(expected_rows(dataset()))
    everyone = {launch["learner_id"] for launch in dataset()}
    for port in workers:
        active = json.loads(get(port, "/api/tenants/acme/learners?status=active")[1])
        inactive = json.loads(get(port, "/api/tenants/acme/learners?status=inactive")[1])
        assert {row["learner_id"] for row in active["learners"]} == counted
        assert {row["learner_id"] for row in inactive["learners"]} == everyone - counted
        total = json.loads(get(port, "/api/tenants/acme")[1])["total_learners"]
        assert len(active["learners"]) + len(inactive["learners"]) == total == len(everyone)
        assert get(port, "/api/tenants/acme/learners?status=gone")[0] == 400


def test_groups_follow_a_learner_moved_between_teams(workers: list[int]) -> None:
    counted = expected_rows(dataset())
    groups = latest_groups()
    teams: Counter[str] = Counter()
    roles: Counter[str] = Counter()
    unassigned = 0
    for learner in counted:
        group = groups.get(learner, {})
        teams.update(set(group.get("teams", [])))
        roles.update(set(group.get("roles", [])))
        unassigned += not group.get("teams")
    start = CURRENT.start.isoformat()
    for port in workers:
        status, body, _ = get(port, f"/api/tenants/acme/windows/{start}/groups")
        answer = json.loads(body)
        assert status == 200
        assert {t["id"]: t["active_learners"] for t in answer["teams"]} == dict(teams)
        assert {r["id"]: r["active_learners"] for r in answer["roles"]} == dict(roles)
        assert answer["unassigned"] == unassigned
        assert "t9" in {t["id"] for t in answer["teams"]} or "l000" not in counted


def test_forecast_and_advisor_agree_with_the_recount(workers: list[int]) -> None:
    launches = dataset()
    counted = expected_rows(launches)
    for port in workers:
        status, body, _ = get(port, "/api/tenants/acme/forecast")
        assert status == 200, body
        forecast = json.loads(body)
        assert forecast["window"]["start"] == CURRENT.start.isoformat()
        assert forecast["daily"][-1]["active_learners"] == len(counted)
        assert forecast["active_learners"] == len(counted) and "linear" in forecast["method"]
        firsts = Counter(
            first.astimezone(ZoneInfo(ZONE)).date().isoformat() for first, _, _ in counted.values()
        )
        running = 0
        for day in forecast["daily"]:
            running += firsts.get(day["date"], 0)
            assert day["active_learners"] == running, day
        reached = [d["date"] for d in forecast["daily"] if d["active_learners"] >= 40]
        if reached:
            assert forecast["limit_reached_on"] == reached[0]

        status, body, _ = get(port, "/api/tenants/acme/advisor")
        assert status == 200, body
        advisor = json.loads(body)
        assert advisor["options"], advisor
        for option in advisor["options"]:
            cutoff = instant(option["older_than"])
            assert cutoff.astimezone(ZoneInfo(ZONE)).day == 1, option
            kept = {
                launch["learner_id"]
                for launch in launches
                if cutoff <= instant(launch["launched_at"])
                and CURRENT.start_at <= instant(launch["launched_at"]) < CURRENT.end_at
            }
            removed = sum(1 for launch in launches if instant(launch["launched_at"]) < cutoff)
            assert option["active_learners_after"] == len(kept), option
            assert option["attempts_removed"] == removed, option
        under = [o["older_than"] for o in advisor["options"] if o["active_learners_after"] < 40]
        needed = under and len(counted) >= 40  # nothing to recommend under the limit already
        assert advisor["smallest_under_limit"] == (under[0] if needed else None)
        first_cutoff = local_midnight(add_months(CURRENT.start, -12), ZONE)
        assert instant(advisor["options"][0]["older_than"]) == first_cutoff
    # every partition answered from the tallies the learner stage keeps, none by a scan
    for port in workers:
        _, text, _ = get(port, "/metrics")
        parts = report_parts(text.decode())
        assert parts.get(("firsts", "scan"), 0) == 0 and parts.get(("advisor", "scan"), 0) == 0
        assert parts.get(("firsts", "tallies"), 0) > 0, parts


def report_parts(metrics: str) -> dict[tuple[str, str], float]:
    found = {}
    for line in metrics.splitlines():
        if line.startswith("active_learners_report_parts_total{"):
            labels, value = line[len("active_learners_report_parts_total{") :].split("} ")
            pairs = dict(pair.split("=") for pair in labels.split(","))
            found[(pairs["kind"].strip('"'), pairs["source"].strip('"'))] = float(value)
    return found


def test_report_requests_are_checked(workers: list[int]) -> None:
    port = workers[0]
    start = CURRENT.start.isoformat()
    assert get(port, f"/api/tenants/acme/windows/{start}/learners?format=xml")[0] == 400
    assert get(port, "/api/tenants/acme/windows/2001-01-02/learners")[0] == 404
    assert get(port, "/api/tenants/acme/windows/not-a-date/groups")[0] == 400
    assert get(port, f"/api/tenants/nobody/windows/{start}/learners")[0] == 404
    unsigned = urllib.request.Request(f"http://127.0.0.1:{port}/internal/reports/window/0")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(unsigned, timeout=30)
    assert info.value.code == 401, "another worker's signature is needed"
    assert date.fromisoformat(start) == CURRENT.start
