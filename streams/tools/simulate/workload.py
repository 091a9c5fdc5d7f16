"""Seeded input for a schedule: what producers write, good and bad, as concrete records.

A `Workload` makes one record at a time, relative to the simulated clock, remembering what it
made so that later records can repeat, conflict with, flip back to or delete earlier ones. Ids
are drawn from small pools (so that records meet) that include ids looking like internal keys.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zlib import crc32

from schemas import topics
from streams.domain.selectors import KINDS

TENANTS = ("acme", "lic", "m", "#epoch", "x", "done", "pub", "__faust", "t", "ünï", "a b")
LEARNERS = ("l0", "l1", "l2", "l3", "l4", "l5", "m", "lic", "x", "l/x")
ELEMENTS = ("e1", "e2", "course")
ATTEMPTS = ("a0", "a1", "a2", "a3")
ZONES = ("UTC", "Asia/Tokyo", "America/New_York", "Australia/Lord_Howe", "Europe/Berlin")
TEAMS = ("red", "blue", "green")
ROLES = ("author", "reader")
NOTIFY_LISTS: tuple[list[str], ...] = (
    ["admin@example.com"],
    [],
    ["billing@example.com", "admin@example.com"],
    ["admin@example.com", "billing@example.com"],  # the same addresses, another list
)
REQUEST_IDS = ("r1", "r2", "r3", "r4", "r/5", "r6")
# cycle starts whose day add_months clamps (SIMULATE_LEAP_YEARS=1, `Workload.leap`): Feb 29 of
# leap years (its windows start Feb 28 in other years: 2025-2027, and Feb 29 2028 again), Jan 31
# (Feb 28 2027, Feb 29 2028), the 30th and 31st (Feb 28/29, then Mar 30/31 again), Feb 28 and
# Mar 1 beside Feb 29, years before and after the clock
LEAP_ANCHORS = (
    date(2024, 2, 29),
    date(2028, 2, 29),
    date(2020, 2, 29),
    date(2027, 1, 31),
    date(2028, 1, 31),
    date(2025, 10, 31),
    date(2026, 12, 31),
    date(2027, 3, 31),
    date(2027, 5, 31),
    date(2026, 8, 30),
    date(2027, 11, 30),
    date(2028, 1, 30),
    date(2027, 2, 28),
    date(2028, 2, 28),
    date(2028, 3, 1),
)
# what `Workload.prefix_learners` appends to a tenant's first learner id to name its others: all
# but "_4" continue it with a character below '/', so that the id's key sorts before the
# shorter id's ("l0.1/" < "l0/") while the id sorts after it
PREFIX_TAILS = (".", ".1", ".1.x", "-2", " 3", "!", "_4")


@dataclass(frozen=True)
class Input:
    topic: str
    key: bytes | None
    value: bytes | None
    partition: int
    note: str  # what the record is meant to be, for traces

    def describe(self) -> str:
        value = "null" if self.value is None else self.value.decode("utf-8", "replace")
        return f"produce {self.topic}/{self.partition} ({self.note}): {value[:160]}"


def _dumps(value: dict[str, Any]) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def _at(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


class Workload:
    """Swarm-style: each seed draws its own mix (some seeds are nearly all deletions, some
    flap licenses, some repeat and conflict), so that rare interleavings are common somewhere."""

    def __init__(self, rng: random.Random, partitions: int, launch_partitions: int) -> None:
        self.rng = rng
        self.partitions = partitions
        self.launch_partitions = launch_partitions
        self.tenants = rng.sample(TENANTS, rng.randint(1, 3))
        self.learners = {t: rng.sample(LEARNERS, rng.randint(2, 6)) for t in self.tenants}
        kinds = ("launch", "license", "deletion", "groups", "garbage")
        self.mix = [rng.choice((0.0, 0.3, 1.0, 3.0)) for _ in kinds]
        self.mix[0] = max(self.mix[0], 1.0)  # launches always
        self.relaunch = rng.choice((0.02, 0.15, 0.4))
        self.modes = rng.choice((("physical",), ("logical",), ("physical", "logical", "preview")))
        self.named_existing = rng.choice((0.3, 0.8))
        self.reuse_ids = rng.choice((0.05, 0.3))
        self.followups: list[dict[str, Any]] = []  # launches to come back to (see launch())
        self.attempts: list[dict[str, Any]] = []  # launches made (tracked or not)
        self.licenses: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.made = 0
        # group races (`group_race`): drawn from a stream of their own, set by the runner, so
        # that a seed without them keeps its inputs
        self.races: random.Random | None = None
        self.race_rate = 0.0
        self.queued: list[Callable[[datetime], Input]] = []
        self.edges: Any = None  # streams/tools/simulate/edges.py, set by the runner (opt-in)
        # licenses anchored where add_months clamps (LEAP_ANCHORS), drawn from a stream of their
        # own, set by the runner (SIMULATE_LEAP_YEARS=1)
        self.leap: random.Random | None = None

    def _partition(self, topic: str, key: bytes | None) -> int:
        count = self.launch_partitions if topic == topics.LAUNCHES else self.partitions
        if key is None:
            return self.rng.randrange(count)
        return crc32(key) % count

    def _input(self, topic: str, key: bytes | None, value: bytes | None, note: str) -> Input:
        self.made += 1
        return Input(topic, key, value, self._partition(topic, key), note)

    def prefix_learners(self, draw: random.Random) -> None:
        """Rename most tenants' learners after their first one, "l0", "l0.1", "l0.1.x", "l0-2"
        (SIMULATE_PREFIX_IDS=1): ids that prefix others order differently from their keys,
        which the learner lists must undo (streams/domain/reports.py, LearnerOrder). As many
        learners as before: the schedule's other draws stay as they were."""
        for tenant, learners in self.learners.items():
            valid = [learner for learner in learners if "/" not in learner]
            if len(valid) < 2 or draw.random() < 0.25:
                continue
            tails = draw.sample(PREFIX_TAILS, len(valid) - 1)
            renamed = {
                learner: valid[0] + tail
                for learner, tail in zip(valid[1:], tails, strict=True)
                if draw.random() < 0.8
            }
            self.learners[tenant] = [renamed.get(learner, learner) for learner in learners]

    def next(self, now: datetime) -> Input:
        if self.edges is not None:
            edge = self.edges.maybe(now)
            if edge is not None:
                return edge
        if self.races is not None:
            if self.queued and self.races.random() < 0.5:
                return self.queued.pop(0)(now)
            if self.race_rate and self.races.random() < self.race_rate:
                return self.group_race(now)
        kind = self.rng.choices(("launch", "license", "deletion", "groups", "garbage"), self.mix)[0]
        if kind == "launch":
            return self.launch(now)
        if kind == "license":
            return self.license(now)
        if kind == "deletion":
            return self.deletion(now)
        if kind == "groups":
            return self.groups()
        return self.garbage()

    # -- launches ---------------------------------------------------------------------------------
    def launch(self, now: datetime) -> Input:
        rng = self.rng
        roll = rng.random()
        if self.followups and roll < 0.3:
            # an attempt a deletion named, launched again now (after the deletion); or a launch
            # that conflicted, sent again
            again = dict(self.followups.pop(rng.randrange(len(self.followups))))
            again["event_id"] = f"ev{self.made}"
            return self._launch_record(again, "follow-up launch")
        if self.attempts and roll < self.relaunch:
            # the same attempt again: a repeat, or a conflict (another time or element)
            earlier = dict(rng.choice(self.attempts))
            if rng.random() < 0.5:
                earlier["element_id"] = rng.choice(ELEMENTS)
                back = rng.choice((0, 0, 1, 48, 2000))
                earlier["launched_at"] = _at(now - timedelta(hours=rng.randrange(0, back + 1)))
            earlier["event_id"] = f"ev{self.made}"
            self.followups.append(earlier)
            return self._launch_record(earlier, "relaunch")
        tenant = rng.choice(self.tenants)
        launched = now - timedelta(minutes=rng.randrange(0, 150 * 24 * 60))
        note = "launch"
        if rng.random() < 0.06:
            launched = now + timedelta(minutes=rng.randrange(30, 180))  # maybe `future`
            note = "launch near the future"
        record: dict[str, Any] = {
            "event_id": f"ev{self.made}",
            "tenant_id": tenant,
            "learner_id": rng.choice(self.learners[tenant]),
            "element_id": rng.choice(ELEMENTS),
            "attempt_id": rng.choice(ATTEMPTS),
            "launched_at": _at(launched),
        }
        kind = rng.random()
        if kind < 0.45:
            record["content_type"] = rng.choice(("scorm", " SCORM ", "Scorm"))
        elif kind < 0.7:
            record["content_type"] = "video"
            record["tracking"] = rng.choice(
                ("tracked", "none", " None ", "none_resource", "TRACKED")
            )
        if rng.random() < 0.07:
            record["launched_by"] = "admin"
        if rng.random() < 0.05:
            record[rng.choice(("learner_id", "tenant_id", "attempt_id"))] = rng.choice(
                ("", "a/b", "bad\x00id", "tab\tid", "x" * 257)
            )
            note = "invalid launch"
        elif rng.random() < 0.03:
            record["launched_at"] = rng.choice(("2026-03-01T10:00:00", "yesterday", 1767225600))
            note = "invalid launch"
        self.attempts.append(record)
        return self._launch_record(record, note)

    def _launch_record(self, record: dict[str, Any], note: str) -> Input:
        tenant, learner = record.get("tenant_id"), record.get("learner_id")
        key = f"{tenant}/{learner}".encode() if self.rng.random() < 0.85 else None
        return self._input(topics.LAUNCHES, key, _dumps(record), note)

    # -- licenses ---------------------------------------------------------------------------------
    def license(self, now: datetime) -> Input:
        rng = self.rng
        tenant = rng.choice(self.tenants)
        history = self.licenses.setdefault(tenant, [])
        roll = rng.random()
        if history and roll < 0.25:
            earlier = rng.choice(history)  # back to an earlier license (A -> B -> A)
            return self._input(topics.LICENSES, tenant.encode(), _dumps(earlier), "license again")
        if roll < 0.33:
            return self._input(topics.LICENSES, tenant.encode(), None, "license tombstone")
        if roll < 0.38:
            bad = {"tenant_id": tenant, "window_months": rng.choice((2, True, "12"))}
            return self._input(topics.LICENSES, tenant.encode(), _dumps(bad), "invalid license")
        if roll < 0.41:
            other = {"tenant_id": tenant, "cycle_start": "2026-01-01"}
            return self._input(topics.LICENSES, b"someone-else", _dumps(other), "mis-keyed license")
        start = date(2025, 1, 1) + timedelta(days=rng.randrange(0, 600))
        if self.leap is not None and self.leap.random() < 0.7:
            start = self.leap.choice(LEAP_ANCHORS)
        value: dict[str, Any] = {
            "tenant_id": tenant,
            "cycle_start": start.isoformat(),
            "window_months": rng.choice((1, 3, 12)),
            "learner_limit": rng.choice((None, 1, 2, 3, 4, 6)),
            "thresholds": sorted(rng.sample((50, 80, 100, 120), rng.randint(0, 3))),
            # licenses name different lists (taken from the start: the random stream of every
            # seed stays as it was), so events name lists the state keeps apart from them
            "notify": NOTIFY_LISTS[start.toordinal() % len(NOTIFY_LISTS)],
            "timezone": rng.choice(ZONES),
        }
        history.append(value)
        return self._input(topics.LICENSES, tenant.encode(), _dumps(value), "license")

    # -- deletions --------------------------------------------------------------------------------
    def deletion(self, now: datetime) -> Input:
        rng = self.rng
        if self.requests and rng.random() < 0.15:
            earlier = rng.choice(self.requests)  # the same request again: a redelivery
            return self._input(
                topics.ATTEMPT_DELETIONS,
                earlier["tenant_id"].encode(),
                _dumps(earlier),
                "deletion again",
            )
        tenant = rng.choice(self.tenants)
        request_id = rng.choice(REQUEST_IDS) if rng.random() < self.reuse_ids else f"q{self.made}"
        request: dict[str, Any] = {
            "request_id": request_id,
            "tenant_id": tenant,
            "mode": rng.choice(self.modes),
            "requested_at": _at(now - timedelta(minutes=rng.randrange(0, 600))),
        }
        kind = rng.choice(("attempts", "learner_ids", "older_than", "teams", "roles"))
        if kind == "attempts":
            mine = [a for a in self.attempts if a.get("tenant_id") == tenant]
            named = []
            for _ in range(rng.randint(1, 3)):
                if mine and rng.random() < self.named_existing:
                    earlier = rng.choice(mine)
                    named.append(
                        {"learner_id": earlier["learner_id"], "attempt_id": earlier["attempt_id"]}
                    )
                    again = {
                        **earlier,
                        "launched_at": _at(now + timedelta(minutes=rng.randrange(0, 50))),
                    }
                    self.followups.append(again)
                else:
                    named.append(
                        {
                            "learner_id": rng.choice(self.learners[tenant]),
                            "attempt_id": rng.choice(ATTEMPTS),
                        }
                    )
            request["attempts"] = named
        elif kind == "learner_ids":
            request["learner_ids"] = rng.sample(self.learners[tenant], rng.randint(1, 2))
        elif kind == "older_than":
            request["older_than"] = _at(now - timedelta(days=rng.randrange(0, 120)))
        else:
            pool = TEAMS if kind == "teams" else ROLES
            request[kind] = rng.sample(pool, rng.randint(1, 2))
        note = f"{request['mode']} deletion by {kind}"
        roll = rng.random()
        if roll < 0.05:
            request["older_than" if kind != "older_than" else "learner_ids"] = (
                _at(now) if kind != "older_than" else ["l0"]
            )
            note = "invalid deletion (two selectors)"
        elif roll < 0.08:
            request["requested_at"] = _at(now + timedelta(hours=3))
            note = "deletion from the future"
        elif roll < 0.1:
            request.pop("request_id")
            note = "invalid deletion (no request id)"
        elif roll < 0.105:
            # a selector of 600 KB, over SELECTOR_MAX_BYTES: an error receipt, and nothing
            # else happens (before the bound, such a request got no receipt at all)
            for field in KINDS:
                request.pop(field, None)
            request["learner_ids"] = [f"{self.made}-{n:05d}-" + "x" * 240 for n in range(2_400)]
            note = "deletion too large for one request"
        self.requests.append(request)
        return self._input(topics.ATTEMPT_DELETIONS, tenant.encode(), _dumps(request), note)

    # -- teams and roles --------------------------------------------------------------------------
    def groups(self) -> Input:
        rng = self.rng
        tenant = rng.choice(self.tenants)
        learner = rng.choice(self.learners[tenant])
        key = f"{tenant}/{learner}".encode()
        if rng.random() < 0.1:
            return self._input(topics.LEARNER_GROUPS, key, None, "groups tombstone")
        value = {
            "tenant_id": tenant,
            "learner_id": learner,
            "teams": rng.sample(TEAMS, rng.randint(0, 2)),
            "roles": rng.sample(ROLES, rng.randint(0, 1)),
        }
        if rng.random() < 0.05:
            value["teams"] = "red"  # not a list
            return self._input(topics.LEARNER_GROUPS, key, _dumps(value), "invalid groups")
        return self._input(topics.LEARNER_GROUPS, key, _dumps(value), "groups")

    def group_race(self, now: datetime) -> Input:
        """A teams (or roles) deletion racing its learners' group changes, their late launches
        (before `requested_at`) and new ones, the request again and another request under its
        id: produced now and over the next records, in an order of their own."""
        draw = self.races
        assert draw is not None
        tenant = draw.choice(self.tenants)
        learners = draw.sample(self.learners[tenant], draw.randint(1, len(self.learners[tenant])))
        kind = draw.choice(("teams", "roles"))
        pool = TEAMS if kind == "teams" else ROLES
        wanted = draw.sample(pool, draw.randint(1, len(pool)))
        requested_at = now - timedelta(minutes=draw.randrange(0, 600))
        request: dict[str, Any] = {
            "request_id": draw.choice(REQUEST_IDS) if draw.random() < 0.2 else f"g{self.made}",
            "tenant_id": tenant,
            "mode": draw.choice(("physical", "physical", "logical", "preview")),
            "requested_at": _at(requested_at),
            kind: wanted,
        }
        self.requests.append(request)

        def groups(learner: str, member: bool) -> Callable[[datetime], Input]:
            def make(_: datetime) -> Input:
                key = f"{tenant}/{learner}".encode()
                if not member and draw.random() < 0.3:
                    return self._input(topics.LEARNER_GROUPS, key, None, "race: groups tombstone")
                others = [g for g in pool if g not in wanted]
                mine = list(wanted[:1]) if member else draw.sample(others, min(len(others), 1))
                value = {
                    "tenant_id": tenant,
                    "learner_id": learner,
                    "teams": mine if kind == "teams" else draw.sample(TEAMS, draw.randint(0, 1)),
                    "roles": mine if kind == "roles" else draw.sample(ROLES, draw.randint(0, 1)),
                }
                note = f"race: groups {'in' if member else 'out of'} {wanted}"
                return self._input(topics.LEARNER_GROUPS, key, _dumps(value), note)

            return make

        def launch(learner: str, before: bool) -> Callable[[datetime], Input]:
            def make(at_now: datetime) -> Input:
                if before:
                    at = requested_at - timedelta(minutes=draw.randrange(1, 90 * 24 * 60))
                else:
                    at = min(at_now, requested_at + timedelta(minutes=draw.randrange(0, 600)))
                record = {
                    "event_id": f"ev{self.made}",
                    "tenant_id": tenant,
                    "learner_id": learner,
                    "element_id": draw.choice(ELEMENTS),
                    "attempt_id": draw.choice(ATTEMPTS),
                    "launched_at": _at(at),
                    "content_type": "scorm",
                }
                self.attempts.append(record)
                note = f"race: launch {'before' if before else 'after'} requested_at"
                return self._launch_record(record, note)

            return make

        def again(value: dict[str, Any], note: str) -> Callable[[datetime], Input]:
            def make(_: datetime) -> Input:
                return self._input(topics.ATTEMPT_DELETIONS, tenant.encode(), _dumps(value), note)

            return make

        later: list[Callable[[datetime], Input]] = [again(request, "race: teams deletion")]
        for learner in learners:
            later.append(groups(learner, draw.random() < 0.4))
            for _ in range(draw.randint(0, 2)):
                later.append(launch(learner, draw.random() < 0.7))
        if draw.random() < 0.4:
            later.append(again(request, "race: the teams deletion again"))
        if draw.random() < 0.3:
            other = {**request, "mode": draw.choice(("physical", "logical", "preview"))}
            if other["mode"] == request["mode"]:
                other[kind] = wanted[:1] if len(wanted) > 1 else list(pool)
            later.append(again(other, "race: another request under its id"))
        if draw.random() < 0.3 and request["mode"] != "physical":
            then = {**request, "request_id": f"g{self.made}p", "mode": "physical"}
            self.requests.append(then)
            later.append(again(then, "race: then physically"))
        draw.shuffle(later)
        self.queued.extend(later)
        return groups(learners[0], True)(now)  # a learner joins first

    def garbage(self) -> Input:
        rng = self.rng
        topic = rng.choice(
            (topics.LAUNCHES, topics.LICENSES, topics.ATTEMPT_DELETIONS, topics.LEARNER_GROUPS)
        )
        value = rng.choice((b"", b"not json", b"[1,2]", b"\xff\xfe", b"null", b'{"a":' * 40))
        return self._input(
            topics.LAUNCHES if topic == topics.LAUNCHES else topic, b"k", value, "garbage"
        )
