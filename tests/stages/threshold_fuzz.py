"""A small fuzzer of the tenant stage's threshold state under crashes (found the loss of
tests/stages/test_threshold_crash_review.py where the simulator's schedules did not reach it;
tests/stages/test_threshold_fuzz_seeds.py runs a range of its seeds, and
`python -m tests.stages.threshold_fuzz START COUNT [legacy]` any other).

Each seed: one or two tenants whose licenses flap (limits, thresholds, notify lists) several
times per tenant-stage batch, launches and physical deletions, ticks, and crashes at a random
send of the tenant stage landing a random prefix of each group; then the run settles and the
simulator's checks run."""

from __future__ import annotations

import random
import sys
from datetime import timedelta

import orjson

from schemas import topics
from streams.domain.partitioning import tenant_partition
from streams.domain.thresholds import event_notify, event_record
from streams.stages import keys
from tests.stages.pipeline import Pipeline, deletion, launch, license_

CONVERSIONS = [0]
LEGACY = [False]  # also turn a tenant's window records into an older version's one record

CRASHES = [0]
LISTS = (["a@x.example"], ["b@x.example", "a@x.example"], [])


def to_legacy(p: Pipeline, tenant: str) -> None:
    """Write a tenant's threshold state as the version before 1832f47 kept it (one record,
    whole events, pending events in a list), through its owner's batch and changelog."""
    w = p.worker()
    if not w.alive or not w.ready:
        return
    partition = tenant_partition(tenant, p.world.partitions)
    rows = w.state.partition(keys.TENANT_STATE, partition).rows
    if keys.thresholds(tenant) in rows:
        return
    prefix = keys.window_thresholds(tenant, "")
    pending_prefix = b"thrp/" + tenant.encode() + b"/"

    def stored_list(name: str) -> list[str]:
        return orjson.loads(rows[keys.threshold_notify(tenant, name)])

    windows = {}
    for key in sorted(k for k in rows if k.startswith(prefix)):
        record = orjson.loads(rows[key])
        start = key[len(prefix) :].decode()
        windows[start] = {
            pct: {
                **entry,
                **(
                    {
                        "event": event_record(
                            tenant,
                            entry["event"],
                            event_notify(record, entry["event"], stored_list),
                        )
                    }
                    if entry.get("event")
                    else {}
                ),
            }
            for pct, entry in record["pcts"].items()
        }
    pending = []
    for key in sorted(k for k in rows if k.startswith(pending_prefix)):
        _, start, pct, number = keys.pending_event_parts(key)
        if number > windows.get(start, {}).get(str(pct), {}).get("crossings", 0):
            return  # a record left behind its events: not a state the older version wrote
        pending.append(orjson.loads(rows[key]))
    if not windows and not pending:
        return

    async def convert() -> None:
        batch = w.batch(tenant=True)
        for key in [k for k in rows if k.startswith(prefix) or k.startswith(pending_prefix)]:
            batch.delete(keys.TENANT_STATE, partition, key)
        batch.put(
            keys.TENANT_STATE,
            partition,
            keys.thresholds(tenant),
            {"windows": windows, "pending": pending},
        )
        await batch.flush()

    CONVERSIONS[0] += 1
    p.world.run(w, "legacy", convert())
    while "legacy" in w.activities:
        p.world.advance()
    # (the state changed behind the stage's back, as a restore of an older version's changelog
    # would change it before a takeover)
    w.tenant.unsettle(partition)


def one(seed: int) -> list[str]:
    rng = random.Random(seed)
    p = Pipeline(partitions=rng.choice((1, 2)))
    tenants = ["acme", "beta"][: rng.choice((1, 2))]
    learners = 0

    def lic(tenant: str) -> dict[str, object]:
        return license_(
            tenant,
            cycle_start="2026-01-01",
            window_months=rng.choice((1, 3, 12)),
            learner_limit=rng.choice((1, 2, 3, 4, None)),
            thresholds=sorted(rng.sample((50, 80, 100), rng.randint(1, 3))),
            notify=rng.choice(LISTS),
        )

    for t in tenants:
        p.produce(topics.LICENSES, lic(t))
    p.settle()
    for _ in range(rng.randint(20, 80)):
        action = rng.random()
        if action < 0.25:
            for _ in range(rng.randint(1, 4)):
                p.advance(rng.randint(1, 5))
                p.produce(topics.LICENSES, lic(rng.choice(tenants)))
            p.run(topics.LICENSES)
        elif action < 0.45:
            t = rng.choice(tenants)
            learners += 1
            at = p.now - timedelta(days=rng.randint(0, 90))
            p.produce(
                topics.LAUNCHES,
                launch(t, f"l{learners}", "a", at.strftime("%Y-%m-%dT%H:%M:%SZ")),
            )
        elif action < 0.5 and learners:
            t = rng.choice(tenants)
            p.produce(
                topics.ATTEMPT_DELETIONS,
                deletion(
                    t,
                    f"r{rng.randint(0, 10**9)}",
                    "physical",
                    p.now,
                    learner_ids=[f"l{rng.randint(1, learners)}"],
                ),
            )
        elif action < 0.75:
            task = rng.choice(
                (
                    topics.LICENSES,
                    topics.LAUNCHES,
                    topics.ATTEMPT_DELETIONS,
                    topics.LEARNER_COMMANDS,
                    "partials",
                    topics.TENANT_COMMANDS,
                    "tick",
                    "tick",
                    topics.TENANT_COMMANDS,
                )
            )
            p.run(task)
        elif action < 0.85:

            def landing(tp, records):  # type: ignore[no-untyped-def]
                roll = rng.random()
                if roll < 0.3:
                    return len(records)
                if roll < 0.4:
                    return 0
                return rng.randint(0, len(records))

            p.crash_at(
                "w0",
                "send",
                rng.choice((topics.TENANT_COMMANDS, "any", "thresholds", "thresholds")),
                countdown=rng.randint(1, 3),
                landing=landing,
            )
        elif LEGACY[0] and action < 0.88:
            to_legacy(p, rng.choice(tenants))
        else:
            p.advance(rng.randint(1, 30))
        if not p.worker().alive:
            CRASHES[0] += 1
            p.worker().crash_plans.clear()
            p.restart(lose_state=rng.random() < 0.2)
    p.worker().crash_plans.clear()
    if not p.worker().alive:
        p.restart()
    p.world.landing = None
    p.flow()
    p.settle()
    p.advance(20)
    p.settle()
    return p.check()


if __name__ == "__main__":
    start, count = int(sys.argv[1]), int(sys.argv[2])
    LEGACY[0] = len(sys.argv) > 3 and sys.argv[3] == "legacy"
    bad = 0
    for seed in range(start, start + count):
        try:
            problems = one(seed)
        except Exception as exc:
            problems = [f"raised {type(exc).__name__}: {exc}"]
        if problems:
            bad += 1
            print(seed, problems[:3], flush=True)
    print(
        f"{count - bad} of {count} clean from {start}; "
        f"{CRASHES[0]} crashes, {CONVERSIONS[0]} conversions"
    )
