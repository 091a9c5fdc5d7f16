"""What the tenant stage keeps of a tenant across its learner partitions stays under Kafka's
record limit however many partitions there are (PARTITIONS goes to 10,000).

One record held every learner partition's partial count of a tenant (`parts/{tenant}`), and a
deletion request's record every part's report: both grow with the partitions times the
tenant's windows. With 600 partitions and ten years of monthly windows the partials passed
1 MiB, every partial count of the tenant was dead-lettered and its counts froze (526 of 600
learners published); with 300 partitions a deletion's reports did, and the request never got
its receipt.
Each partial and each report now has a key of its own; an older version's one record is read
with them and split at the tenant's next partial count (keys.CHANGELOG_ORDER puts its deletion
after the keys split from it).
"""

from __future__ import annotations

import orjson

from schemas import topics
from streams.domain.partitioning import tenant_partition
from streams.stages import keys
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, deletion, launch, learners_in, license_

FIRST = "2016-01-01"
LAST = "2025-12-01"


def _monthly_history(partitions: int, months: int) -> Pipeline:
    """acme on monthly windows from 2016, one learner in every learner partition launching
    once in each of `months` months."""
    p = Pipeline(partitions=partitions)
    lic = license_("acme", cycle_start=FIRST, window_months=1, learner_limit=100_000)
    p.produce(topics.LICENSES, lic)
    p.settle()
    for partition in range(partitions):
        [learner] = learners_in("acme", partition, partitions, 1)
        for month in range(months):
            at = f"{2016 + month // 12}-{month % 12 + 1:02d}-10T10:00:00Z"
            p.produce(topics.LAUNCHES, launch("acme", learner, f"a{month}", at))
    p.settle()
    return p


def _largest_state_value(p: Pipeline) -> int:
    state = p.worker("w0").state
    return max(
        len(value)
        for partition in range(p.world.partitions)
        for value in state.partition(keys.TENANT_STATE, partition).rows.values()
    )


def test_partials_of_600_partitions_over_ten_years_of_months_publish_exact_counts() -> None:
    p = _monthly_history(600, 120)
    assert p.dead_letters() == []
    assert p.active("acme", FIRST) == 600
    assert p.active("acme", LAST) == 600
    assert _largest_state_value(p) < MAX_RECORD_BYTES // 10


def test_a_deletion_over_300_partitions_gets_its_receipt() -> None:
    p = _monthly_history(300, 120)
    cutoff = p.now.isoformat()  # every attempt: each part reports 120 windows, twice
    p.produce(
        topics.ATTEMPT_DELETIONS, deletion("acme", "r1", "physical", p.now, older_than=cutoff)
    )
    p.settle()
    assert p.dead_letters() == []
    [receipt] = p.receipts("r1")
    assert receipt["error"] is None
    assert receipt["attempts_affected"] == 300 * 120 and receipt["learners_affected"] == 300
    assert len(receipt["windows"]) == 120
    assert all(w["active_before"] == 300 and w["active_after"] == 0 for w in receipt["windows"])
    assert p.active("acme", FIRST) == 0
    assert p.active("acme", LAST) == 0
    state = p.worker("w0").state
    reports = [
        key
        for partition in range(p.world.partitions)
        for key in state.partition(keys.TENANT_STATE, partition).rows
        if key.startswith(keys.DELETION_REPORTS)
    ]
    assert reports == [], "the reports are dropped once the receipt is stored"


def test_an_older_versions_one_partials_record_is_read_and_split() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme", cycle_start=FIRST, learner_limit=10))
    learners = {part: learners_in("acme", part, 2, 3) for part in (0, 1)}
    for part in (0, 1):
        for learner in learners[part][:2]:
            p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2016-02-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 4
    # the tenant partition's partials rewritten as an older version kept them: one record
    state = p.worker("w0").state.partition(keys.TENANT_STATE, tenant_partition("acme", 2))
    own = [key for key in state.rows if key.startswith(keys.partials_of("acme"))]
    legacy = {
        keys.learner_partition_of_partial(key): orjson.loads(state.rows.pop(key)) for key in own
    }
    assert sorted(legacy) == ["0", "1"]
    state.write({keys.legacy_partials("acme"): orjson.dumps(legacy)})
    p.restart("w0")

    # learner partition 0 reports again: partition 1's count comes from the older record
    p.produce(topics.LAUNCHES, launch("acme", learners[0][2], "a", "2016-03-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 5
    assert keys.legacy_partials("acme") not in state.rows
    assert sorted(k for k in state.rows if k.startswith(keys.partials_of("acme"))) == [
        keys.partial("acme", "0"),
        keys.partial("acme", "1"),
    ]
    p.produce(topics.LAUNCHES, launch("acme", learners[1][2], "a", "2016-03-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 6
    assert p.check() == []


def test_an_older_versions_request_record_with_reports_in_it_completes() -> None:
    """A request under way when the version changed: the reports it holds and those stored
    under their own keys after it make one receipt."""
    p = Pipeline(partitions=2, workers=2, assignment={"w0": [0], "w1": [1]})
    p.produce(topics.LICENSES, license_("acme", cycle_start=FIRST, learner_limit=10))
    for part in (0, 1):
        for learner in learners_in("acme", part, 2, 2):
            p.produce(topics.LAUNCHES, launch("acme", learner, "a", "2016-02-10T10:00:00Z"))
    p.settle()
    assert p.active("acme", FIRST) == 4
    acme_partition = tenant_partition("acme", 2)
    tenant_worker = f"w{acme_partition}"
    p.produce(
        topics.ATTEMPT_DELETIONS,
        deletion("acme", "r1", "physical", p.now, older_than="2017-01-01T00:00:00Z"),
    )
    p.run(topics.ATTEMPT_DELETIONS, tenant_worker)
    p.run(topics.TENANT_COMMANDS, tenant_worker)  # the request: its two parts go out
    p.run(topics.LEARNER_COMMANDS, tenant_worker)  # the tenant partition's own learner part
    p.run(topics.TENANT_COMMANDS, tenant_worker)  # its report
    state = p.worker(tenant_worker).state.partition(keys.TENANT_STATE, acme_partition)
    record = orjson.loads(state.rows[keys.deletion("acme", "r1")])
    assert record["reported"] == [acme_partition]
    report_key = keys.deletion_report("acme", "r1", acme_partition)
    # as an older version kept it: the report inside the request's record
    report = orjson.loads(state.rows.pop(report_key))
    del record["reported"]
    record["received"] = {str(acme_partition): report}
    state.write({keys.deletion("acme", "r1"): orjson.dumps(record)})
    p.restart(tenant_worker)

    p.settle()
    [receipt] = p.receipts("r1")
    assert receipt["attempts_affected"] == 4 and receipt["learners_affected"] == 4
    assert receipt["windows"] == [{"start": FIRST, "active_before": 4, "active_after": 0}]
    assert p.active("acme", FIRST) == 0
    assert p.check() == []
