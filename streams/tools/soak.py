"""`active-learners soak`: N workers, a dataset, a schedule of faults, then every check we have.

The dataset (licenses, launches with duplicates and untracked ones) is produced in rounds. After
each round one fault of the schedule strikes, in turn:

  kill -9       a random worker is killed and started again on its own state folder
  rebalance     a random worker leaves (SIGTERM) and joins again
  broker        the broker is killed with kill -9 and started again (local broker only)
  wipe          a random worker is killed, its state folder deleted, and started again

Deletions (each physical selector and a preview, every one delivered twice) and a license change
(a new time zone for one tenant: its windows are re-cut) go out in the middle of it all, and at
the end every input is replayed once. Then:

- every window's Active and Total Learners equal an independent recount;
- every deletion request has its receipt, and repeated receipts are identical;
- threshold events, taken once per id, alternate up/down per window and threshold, and the last
  one agrees with the final count;
- the `attempts` topic holds exactly the attempts that remain (none resurrected);
- every worker is alive.

A garbage run follows: `garbage` random records that no contract accepts (bad UTF-8, wrong types,
huge strings, deep nesting, null keys and values) on every input topic. Each must come back as a
dead letter or an error receipt, the counts must not move, and the workers must live.

Why one module of this size: the soak is one program read top to bottom (produce, strike, check);
its parts are used nowhere else, and splitting them would scatter one story over files.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from schemas import topics
from streams.config.logs import redact
from streams.config.settings import Settings
from streams.domain.deletions import build_request
from streams.domain.recount import recount, without_deleted
from streams.domain.selectors import Selector
from streams.domain.tenants import threshold_learners
from streams.domain.tracking import is_tracked
from streams.kafka.admin import broker_answers, ensure_topics
from streams.kafka.io import (
    current_counts,
    key_of,
    latest_by_key,
    produce_records,
    read_topic,
    topic_of,
)
from streams.kafka.settle import group_lag
from streams.tools.dataset import DatasetSpec, generate
from streams.tools.worker_process import WorkerProcess, wait_for

Log = Callable[[str], None]
FAULTS = ("kill -9", "rebalance", "broker", "wipe")
REPO = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO / "docker" / "kafka" / "kafka.sh"


@dataclass
class SoakSpec:
    workers: int = 3
    launches: int = 60_000
    tenants: int = 8
    rounds: int = 8
    garbage: int = 10_000
    seed: int = 1
    broker_faults: bool = True  # only for the local broker, which the soak may kill


@dataclass
class SoakReport:
    faults: Counter[str] = field(default_factory=Counter)
    launches_produced: int = 0
    windows_checked: int = 0
    attempts_checked: int = 0
    receipts_checked: int = 0
    threshold_events_checked: int = 0
    garbage_records: int = 0
    garbage_answered: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        faults = ", ".join(f"{n} {kind}" for kind, n in sorted(self.faults.items()))
        lines = [
            f"faults survived          {sum(self.faults.values())} ({faults})",
            f"launches produced        {self.launches_produced:,} (a third of them again, and "
            "every input replayed once at the end)",
            f"windows checked          {self.windows_checked:,} (active and total learners)",
            f"attempts checked         {self.attempts_checked:,} (the attempts topic)",
            f"receipts checked         {self.receipts_checked:,}",
            f"threshold events checked {self.threshold_events_checked:,}",
            f"garbage records          {self.garbage_records:,}, "
            f"{self.garbage_answered:,} dead-lettered or answered with an error receipt",
            f"time                     {self.seconds:.0f} s",
            "result                   "
            + ("all checks passed" if not self.problems else "; ".join(self.problems)),
        ]
        return "\n".join(lines)


def soak_worker(settings: Settings, name: str, folder: Path) -> WorkerProcess:
    """A worker with a state folder of its own under `folder`, its log `folder/<name>.log`."""
    return WorkerProcess(
        replace(settings, state_dir=folder / name / "state"), folder / f"{name}.log"
    )


def wait_until(condition: Callable[[], Any], timeout_s: float, what: str) -> Any:
    return wait_for(condition, timeout_s, f"soak: {what}", 1.0, TimeoutError)


def restart_broker(settings: Settings) -> None:
    for command in ("crash", "start"):
        subprocess.run(["bash", str(KAFKA_SCRIPT), command], check=True, capture_output=True)
    wait_until(lambda: broker_answers(settings), 120, "the broker coming back")


# -- the run ----------------------------------------------------------------------------------


def run_soak(settings: Settings, spec: SoakSpec, folder: Path, log: Log = print) -> SoakReport:
    report = SoakReport()
    started = time.monotonic()
    rng = random.Random(spec.seed)
    now = datetime.now(UTC).replace(microsecond=0)
    ensure_topics(settings)
    records = list(
        generate(DatasetSpec(launches=spec.launches, tenants=spec.tenants, seed=spec.seed, now=now))
    )
    licenses_first = [r for r in records if "cycle_start" in r]
    groups_records = [r for r in records if topic_of(r) == topics.LEARNER_GROUPS]
    launches = [r for r in records if "event_id" in r]
    report.launches_produced = len(launches)
    licenses = {r["tenant_id"]: r for r in licenses_first}
    tenants = sorted({r["tenant_id"] for r in launches})

    folder.mkdir(parents=True, exist_ok=True)
    workers = [soak_worker(settings, f"worker-{n}", folder).start() for n in range(spec.workers)]
    try:
        for worker in workers:
            worker.wait_ready()
        send(settings, [*licenses_first, *groups_records])
        rounds = [launches[i :: spec.rounds] for i in range(spec.rounds)]
        deletions: list[dict[str, Any]] = []
        schedule = [f for f in FAULTS if spec.broker_faults or f != "broker"]
        for number, chunk in enumerate(rounds):
            send(settings, chunk)
            if number == 1:
                deletions = deletion_requests(settings, tenants, launches, rounds[0], now)
                for _ in range(2):  # every deletion delivered twice
                    send(settings, deletions)
            if number == 2:
                moved = change_license(licenses, tenants)
                send(settings, [moved])
            if number == 3:
                send(settings, rng.sample(launches, len(launches) // 3))
            fault = schedule[number % len(schedule)]
            strike(fault, workers, settings, rng, log)
            report.faults[fault] += 1
        log("soak: every input once more...")
        send(settings, [*licenses.values(), *groups_records, *launches, *deletions])

        kept: list[Any] = launches
        for request in deletions:
            if request["mode"] == "physical":
                kept = without_deleted(kept, request)
        expected = recount(kept, licenses, now)
        log("soak: waiting for the counts to be exact...")
        check_counts(settings, expected, report)
        check_attempts(settings, kept, now, report)
        check_receipts(settings, deletions, report)
        check_thresholds(settings, licenses, expected, report)
        for worker in workers:
            if not worker.alive():
                report.problems.append(f"{worker.name} is not alive (see {worker.log_path})")
        check_logs(workers, launches, report)

        if spec.garbage:
            log(f"soak: {spec.garbage:,} records of garbage...")
            garbage_run(settings, spec, expected, report)
            for worker in workers:
                if not worker.alive():
                    report.problems.append(f"{worker.name} died of garbage ({worker.log_path})")
    finally:
        for worker in workers:
            worker.stop()
        if spec.broker_faults and not broker_answers(settings):
            subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], capture_output=True)
    report.seconds = time.monotonic() - started
    return report


def send(settings: Settings, records: list[dict[str, Any]]) -> None:
    produce_records(
        settings,
        ((topic_of(r), key_of(topic_of(r), r), json.dumps(r).encode()) for r in records),
    )


def strike(
    fault: str, workers: list[WorkerProcess], settings: Settings, rng: random.Random, log: Log
) -> None:
    victim = rng.choice(workers)
    log(f"soak: fault {fault} ({victim.name if fault != 'broker' else 'the broker'})")
    if fault == "kill -9":
        victim.kill()
        victim.start().wait_ready()
    elif fault == "rebalance":
        victim.stop()
        victim.start().wait_ready()
    elif fault == "broker":
        restart_broker(settings)
    elif fault == "wipe":
        victim.kill()
        victim.wipe()
        victim.start().wait_ready()


def deletion_requests(
    settings: Settings,
    tenants: list[str],
    launches: list[dict[str, Any]],
    first_round: list[dict[str, Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """One request per selector and a preview. The attempt deleted by id is one the workers
    have stored already (an attempt they never saw is not theirs to delete)."""
    learners = sorted({a["learner_id"] for a in launches if a["tenant_id"] == tenants[1]})
    candidates = [
        a
        for a in first_round
        if a["tenant_id"] == tenants[2]
        and is_tracked(
            a.get("launched_by", "learner"), a.get("content_type"), a.get("tracking", "tracked")
        )
    ]
    target = candidates[0]
    key = f"{target['tenant_id']}/{target['learner_id']}/{target['attempt_id']}".encode()
    wait_until(
        lambda: key in latest_by_key(read_topic(settings, topics.ATTEMPTS, timeout_s=120)),
        300,
        "the attempt to delete by id being stored",
    )
    ref = {"learner_id": target["learner_id"], "attempt_id": target["attempt_id"]}
    return [
        build_request(
            tenants[0],
            "physical",
            Selector.of("older_than", [(now - timedelta(days=200)).isoformat()]),
            now,
        ),
        build_request(
            tenants[1], "physical", Selector.of("learner_ids", learners[: len(learners) // 3]), now
        ),
        build_request(tenants[2], "physical", Selector.of("attempts", [ref]), now),
        build_request(tenants[3], "preview", Selector.of("older_than", [now.isoformat()]), now),
    ]


def change_license(licenses: dict[str, dict[str, Any]], tenants: list[str]) -> dict[str, Any]:
    """A new time zone for the first licensed tenant: its windows are re-cut."""
    tenant = next(t for t in tenants if t in licenses)
    zone = "Asia/Tokyo" if licenses[tenant].get("timezone") != "Asia/Tokyo" else "Europe/Berlin"
    licenses[tenant] = {**licenses[tenant], "timezone": zone}
    return licenses[tenant]


# -- the checks -------------------------------------------------------------------------------


def check_counts(
    settings: Settings, expected: dict[tuple[str, str], tuple[int, int]], report: SoakReport
) -> None:
    def exact() -> bool:
        if group_lag(settings) > 0:
            return False
        live = current_counts(settings, timeout_s=120)
        for key, (active, _) in expected.items():
            if live.get(key, {}).get("active_learners") != active:
                return False
        extra = [k for k, r in live.items() if k not in expected and r["active_learners"] != 0]
        if extra:
            return False
        for tenant in {t for t, _ in expected}:
            current = max(k for k in live if k[0] == tenant)
            total = next(total for (t, _), (_, total) in expected.items() if t == tenant)
            if live[current]["total_learners"] != total:
                return False
        return True

    try:
        wait_until(exact, 900, "exact counts")
    except TimeoutError as exc:
        report.problems.append(str(exc))
    report.windows_checked = len(expected)


def check_attempts(
    settings: Settings, kept: list[dict[str, Any]], now: datetime, report: SoakReport
) -> None:
    wanted = {
        f"{a['tenant_id']}/{a['learner_id']}/{a['attempt_id']}".encode()
        for a in kept
        if is_tracked(
            a.get("launched_by", "learner"), a.get("content_type"), a.get("tracking", "tracked")
        )
        and datetime.fromisoformat(a["launched_at"].replace("Z", "+00:00"))
        <= now + timedelta(hours=1)
    }
    stored = set(latest_by_key(read_topic(settings, topics.ATTEMPTS, timeout_s=300)))
    report.attempts_checked = len(stored)
    if stored != wanted:
        report.problems.append(
            f"attempts topic: {len(stored - wanted)} resurrected or unknown, "
            f"{len(wanted - stored)} missing"
        )


def check_receipts(settings: Settings, deletions: list[dict[str, Any]], report: SoakReport) -> None:
    def all_in() -> dict[str, list[dict[str, Any]]] | None:
        found: dict[str, list[dict[str, Any]]] = {}
        for _, value in read_topic(settings, topics.DELETION_RECEIPTS):
            if value:
                receipt = json.loads(value)
                found.setdefault(receipt["request_id"], []).append(receipt)
        return found if all(r["request_id"] in found for r in deletions) else None

    try:
        found = wait_until(all_in, 300, "a receipt for every deletion")
    except TimeoutError as exc:
        report.problems.append(str(exc))
        return
    for request_id, receipts in found.items():
        report.receipts_checked += len(receipts)
        if any(r != receipts[0] for r in receipts) or receipts[0]["error"] is not None:
            report.problems.append(f"receipts of {request_id} differ or carry an error")


def check_thresholds(
    settings: Settings,
    licenses: dict[str, dict[str, Any]],
    expected: dict[tuple[str, str], tuple[int, int]],
    report: SoakReport,
) -> None:
    """Taken once per id, events alternate up/down; the last one matches the final count."""
    seen: set[str] = set()
    runs: dict[tuple[str, str, int, int], list[str]] = {}
    for _, value in read_topic(settings, topics.THRESHOLD_EVENTS, timeout_s=120):
        if not value:
            continue
        event = json.loads(value)
        report.threshold_events_checked += 1
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        key = (
            event["tenant_id"],
            event["window"]["start"],
            event["threshold_pct"],
            event["threshold_learners"],
        )
        runs.setdefault(key, []).append(event["direction"])
    for key, directions in runs.items():
        alternating = ["up", "down"] * (len(directions) // 2 + 1)
        if directions != alternating[: len(directions)]:
            report.problems.append(f"threshold events of {key} do not alternate: {directions}")
    for (tenant, start), (active, _) in expected.items():
        license_ = licenses.get(tenant)
        if not license_ or not license_.get("learner_limit"):
            continue
        for pct in license_.get("thresholds", [80, 90, 100]):
            learners = threshold_learners(int(license_["learner_limit"]), int(pct))
            directions = runs.get((tenant, start, int(pct), learners), [])
            above = bool(directions) and directions[-1] == "up"
            if above != (active >= learners):
                report.problems.append(
                    f"{tenant} {start} {pct} %: {active} active, last event "
                    f"{directions[-1] if directions else 'none'}"
                )


def check_logs(
    workers: list[WorkerProcess], launches: list[dict[str, Any]], report: SoakReport
) -> None:
    """No learner id and no e-mail address in any log line at INFO or above."""
    learners = {a["learner_id"] for a in launches}
    for worker in workers:
        for line in worker.log_path.read_text(errors="replace").splitlines():
            if "[DEBUG]" in line:
                continue
            words = set(line.replace("/", " ").replace("'", " ").replace('"', " ").split())
            leaked = words & learners
            if leaked or redact(line) != line:  # an address the logs should have masked
                report.problems.append(f"{worker.name} logged personal data: {line[:120]}")
                return


# -- garbage ----------------------------------------------------------------------------------


def garbage_records(count: int, seed: int) -> list[tuple[str, bytes | None, bytes | None]]:
    """Records no contract accepts, spread over the input topics (each broken its own way)."""
    rng = random.Random(seed)
    launch = {
        "event_id": "e",
        "tenant_id": "garbage-co",
        "learner_id": "l",
        "element_id": "x",
        "attempt_id": "a",
        "launched_at": "2026-01-01T10:00:00Z",
    }
    bad_launch_values: dict[str, list[Any]] = {
        "event_id": [None, 42, ""],  # any other string is an event id (no length bound)
        "tenant_id": [None, "a/b", "", "t" * 300, 7],
        "learner_id": [None, [], "x" * 200_000],
        "element_id": [None, {}, 3.5],
        "attempt_id": [None, True, ""],
        "launched_at": ["yesterday", "1700000000", "2026-01-01T10:00:00", "0001-01-01T00:00:00Z",
                        "9999-01-01T00:00:00Z", 1700000000],
        "tracking": ["sometimes", 1],
        "launched_by": ["robot", None],
    }  # fmt: skip
    bad_license_values: dict[str, list[Any]] = {
        "window_months": [2, True, "12", 0],
        "timezone": ["America", "Mars/Olympus", 5],
        "learner_limit": [0, -3, True, "100"],
        "thresholds": [[0], [1001], "80", [True]],
        "cycle_start": ["0001-01-01", "2026-02-30", "yesterday", 20260101],
        "notify": [["not-an-address"], "a@b.example"],
        "tenant_id": [None, "a/b", ""],
    }

    def shapeless() -> bytes | None:
        kind = rng.randrange(7)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))) + b"\xff"
        if kind == 1:
            return None
        if kind == 2:
            depth = rng.choice([50, 600, 1500])
            return b'{"x": ' + b"[" * depth + b"]" * depth + b"}"
        if kind == 3:
            return json.dumps(rng.choice([[1, 2], "text", 7, None])).encode()
        if kind == 4:
            return b""
        if kind == 5:
            return b"{" + bytes(rng.randrange(32, 127) for _ in range(40))
        return b"   "

    def broken(record: dict[str, Any], bad: Any) -> bytes:
        name = rng.choice(sorted(bad))
        return json.dumps({**record, name: rng.choice(bad[name])}).encode()

    out: list[tuple[str, bytes | None, bytes | None]] = []
    for n in range(count):
        key = rng.choice([None, b"garbage-co", bytes([rng.randrange(256)])])
        if n % 2 == 0:
            value = shapeless()
            topic = (topics.LAUNCHES, topics.LICENSES, topics.ATTEMPT_DELETIONS)[n // 2 % 3]
            if value is None:
                # Kafka wants a key or a value; on licenses, a tombstone with a usable tenant
                # key is valid input (the tenant goes back to the default license)
                key = b"a/b" if topic == topics.LICENSES else b"garbage-co"
        elif n % 6 == 1:
            topic, value = topics.LAUNCHES, broken(launch, bad_launch_values)
        elif n % 6 == 3:
            topic, value = topics.LICENSES, broken({"tenant_id": "garbage-co"}, bad_license_values)
        else:
            topic = topics.ATTEMPT_DELETIONS
            request = {
                "request_id": f"garbage-{seed}-{n}",
                "tenant_id": "garbage-co",
                "mode": "physical",
                "requested_at": "2026-01-01T00:00:00Z",
            }
            value = broken(
                request,
                {
                    "mode": ["shred", None],
                    "older_than": ["last week", 5],
                    "learner_ids": [[], ["a/b"], "l1"],
                    "attempts": [[{"learner_id": "l"}], []],
                    "teams": [[""], [], "t1"],
                    "roles": [[], [None]],
                    "requested_at": ["2999-01-01T00:00:00Z"],
                },
            )  # usable ids: answered with an error receipt
        if topic == topics.LICENSES and key is None:
            key = rng.choice([b"\xff\xfe", b"a/b", b""])  # compacted: Kafka refuses a null key
        out.append((topic, key, value))
    return out


def garbage_run(
    settings: Settings,
    spec: SoakSpec,
    expected: dict[tuple[str, str], tuple[int, int]],
    report: SoakReport,
) -> None:
    letters_before = len(read_topic(settings, topics.DEAD_LETTERS, timeout_s=120))
    receipts_before = len(read_topic(settings, topics.DELETION_RECEIPTS))
    records = garbage_records(spec.garbage, spec.seed)
    produce_records(settings, records)
    report.garbage_records = len(records)

    def answered() -> int | None:
        letters = len(read_topic(settings, topics.DEAD_LETTERS, timeout_s=120)) - letters_before
        receipts = len(read_topic(settings, topics.DELETION_RECEIPTS)) - receipts_before
        return letters + receipts if letters + receipts >= len(records) else None

    try:
        report.garbage_answered = wait_until(answered, 600, "an answer to every garbage record")
    except TimeoutError as exc:
        report.problems.append(str(exc))
    before = report.windows_checked
    check_counts(settings, expected, report)  # the counts did not move
    report.windows_checked = before
