"""`active-learners generate`: a realistic, seeded multi-tenant dataset as JSON lines.

Tenants have 12-, 3- and 1-month licenses with anchors on month ends and leap days, in several
time zones; tenant sizes and learner activity are skewed (a few heavy tenants and learners);
the stream carries untracked and admin launches, redelivered duplicates, out-of-order delivery,
and one license that arrives after its tenant's launches. Every learner has a team (or two) and a
learning role (`learner-groups` records, before the launches).
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

ANCHORS = [
    date(2025, 1, 31),
    date(2024, 2, 29),
    date(2025, 8, 31),
    date(2025, 3, 15),
    date(2025, 11, 30),
    date(2025, 6, 1),
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Los_Angeles",
]
WINDOW_MONTHS = [12, 3, 1]
CONTENT = [
    ("scorm", "tracked"),
    ("scorm", "none"),
    ("video", "tracked"),
    ("document", "tracked"),
    ("video", "none"),
    ("document", "none_resource"),
    (None, "tracked"),
]
CONTENT_WEIGHTS = [40, 5, 20, 15, 8, 7, 5]


@dataclass(frozen=True)
class DatasetSpec:
    launches: int = 300_000
    tenants: int = 24
    seed: int = 7
    now: datetime | None = None
    history_days: int = 420
    duplicate_rate: float = 0.03
    admin_rate: float = 0.02
    shuffle_window: int = 200  # out-of-order delivery: records move this far at most
    groups: bool = True  # learner-groups records: every learner's teams and learning roles


def _license(rng: random.Random, index: int, learners: int) -> dict[str, Any]:
    tenant = f"tenant-{index:03d}"
    limit = max(5, int(learners * rng.uniform(0.4, 1.3))) if index % 5 else None
    return {
        "tenant_id": tenant,
        "cycle_start": ANCHORS[index % len(ANCHORS)].isoformat(),
        "window_months": WINDOW_MONTHS[index % len(WINDOW_MONTHS)],
        "learner_limit": limit,
        "thresholds": [80, 90, 100],
        "notify": [f"admin@{tenant}.example"],
        "timezone": ZONES[index % len(ZONES)],
    }


def generate(spec: DatasetSpec) -> Iterator[dict[str, Any]]:
    """Licenses and launches, in the order a producer would send them."""
    rng = random.Random(spec.seed)
    now = spec.now or datetime.fromisoformat("2026-11-28T00:00:00+00:00")
    # Tenant sizes follow a Zipf-like law: tenant k gets ~1/(k+1) of the learners.
    weights = [1 / (k + 1) for k in range(spec.tenants)]
    scale = sum(weights)
    learner_pool = max(spec.launches // 6, spec.tenants)
    sizes = [max(3, int(learner_pool * w / scale)) for w in weights]
    licenses = [_license(rng, k, sizes[k]) for k in range(spec.tenants)]
    unlicensed = spec.tenants - 1  # the smallest tenant has no license at all
    # the second tenant's license arrives after its launches (with three tenants or more: the
    # second of two is the unlicensed one)
    late_license = 1 if spec.tenants > 2 else None

    for k, lic in enumerate(licenses):
        if k not in (unlicensed, late_license):
            yield lic
    if spec.groups:
        yield from learner_groups(rng, licenses, sizes)

    launches: list[dict[str, Any]] = []
    start = now - timedelta(days=spec.history_days)
    span_s = int((now - start).total_seconds())
    tenant_ids = range(spec.tenants)
    tenant_cum = list(itertools.accumulate(weights))
    content_cum = list(itertools.accumulate(CONTENT_WEIGHTS))
    for n in range(spec.launches):
        k = rng.choices(tenant_ids, cum_weights=tenant_cum)[0]
        # Learner activity is skewed too: low learner numbers launch far more often.
        learner = int(sizes[k] * rng.random() ** 2)
        content_type, tracking = rng.choices(CONTENT, cum_weights=content_cum)[0]
        launched_at = start + timedelta(seconds=rng.randrange(span_s))
        element = f"el-{rng.randrange(400)}"
        launch: dict[str, Any] = {
            "event_id": f"ev-{spec.seed}-{n}",
            "tenant_id": licenses[k]["tenant_id"],
            "learner_id": f"learner-{learner:06d}",
            "element_id": element,
            "attempt_id": f"att-{n}",
            "launched_at": launched_at.isoformat().replace("+00:00", "Z"),
            "tracking": tracking,
        }
        if content_type is not None:
            launch["content_type"] = content_type
        if rng.random() < spec.admin_rate:
            launch["launched_by"] = "admin"
        launches.append(launch)
        if rng.random() < spec.duplicate_rate:
            launches.append(dict(launch))  # a redelivery: the very same record again

    # Out-of-order delivery: swap records within a short distance.
    for i in range(len(launches)):
        j = min(len(launches) - 1, i + rng.randrange(spec.shuffle_window))
        launches[i], launches[j] = launches[j], launches[i]
    yield from launches
    if late_license is not None:
        yield licenses[late_license]


TEAMS = ["sales", "support", "engineering", "finance", "marketing", "operations"]
ROLES = ["new-hire", "manager", "contractor"]


def learner_groups(
    rng: random.Random, licenses: list[dict[str, Any]], sizes: list[int]
) -> Iterator[dict[str, Any]]:
    """Every learner's team (one, sometimes two) and learning role, as the LMS publishes them."""
    for lic, size in zip(licenses, sizes, strict=True):
        for learner in range(size):
            teams = {TEAMS[rng.randrange(len(TEAMS))]}
            if rng.random() < 0.15:
                teams.add(TEAMS[rng.randrange(len(TEAMS))])
            yield {
                "tenant_id": lic["tenant_id"],
                "learner_id": f"learner-{learner:06d}",
                "teams": sorted(teams),
                "roles": [ROLES[rng.randrange(len(ROLES))]],
            }


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"))
