"""The faults the plain schedules never inject, each in a mode of its own
(streams/tools/simulate/runner.py), so that the plain mode's seeds keep their traces:

- `SIMULATE_REPAIR_FAULTS=1`: a crash (at a send, a local write, a read of the log) or a failure
  the worker survives (a send, a read of the log or of the tables, a topic's metadata) inside a
  repair of a deposed owner's records: a takeover's `repair_marked`, a flush's or a lineage
  check's `_repair` and the rounds after it; with more deposed owners writing late;
- `SIMULATE_RECORD_LIMIT=1`: Kafka refuses producer batches above a small size (a batch of
  several records: the worker's log cuts that topic's batches smaller and sends again; a record
  alone: the launch reader and the agents take a refused group apart);
- `SIMULATE_MEMBER_FAULTS=1`: the group coordinator answers a takeover's question "no" (a
  rebalance under way, which follows: the stage is given up at once, the other stage's
  takeover asks its own question; tests/simulation/test_member_answers.py), or the question
  fails (the stage's partitions released, a rebalance asked for).

Every run ends exact, and each fault and each answer to it happens in some run.
"""

from __future__ import annotations

import pytest

from streams.tools.simulate import runner
from streams.tools.simulate.runner import explain, generate, run

# what each injected fault, and each answer to one, writes in a run's trace
REPAIR_FAULTS = (
    "takeover: dies inside a repair (send)",
    "takeover: dies inside a repair (apply)",
    "takeover: dies inside a repair (read)",
    "takeover: fails inside a repair (local)",
    "takeover: fails inside a repair (read)",
    "commands: dies inside a repair (send)",  # a flush's or a lineage check's
    "it asks for a rebalance",  # a takeover whose repair failed
)
RECORD_LIMIT = (
    "launches: Kafka refused a record of learner-commands",
    "launches: one launch at a time",
    # a batch of many records each under the limit: cut smaller, not taken for a record
    # too large (streams/stages/store.py `BatchCaps`)
    "Kafka refused a batch of",
    "cut smaller and sent again",
    # a process that dies between a refused pass and the next keeps a start of each group
    # (streams/worker/state.py `KafkaLog._send_in_order`)
    "dies before it went again",
)
MEMBER_FAULTS = (
    "the coordinator's answer to its takeover: no",
    "gives up its learner partitions",  # at once, as the worker (test_member_answers.py)
    "gives up its tenant partitions",
    "the rebalance under way ends",
    "the coordinator's answer to its takeover: error",
    "it asks for a rebalance",
)


def _traces(seeds: range) -> str:
    results = [run(generate(seed)) for seed in seeds]
    failures = [explain(r, shrink_s=20) for r in results if not r.ok]
    assert not failures, "\n\n".join(failures)
    return "\n".join(line for r in results for line in r.trace)


@pytest.mark.parametrize(
    ("mode", "seeds", "seen"),
    [
        ("REPAIR_FAULTS", range(16_930_000, 16_930_140), REPAIR_FAULTS),
        ("RECORD_LIMIT", range(16_915_000, 16_915_060), RECORD_LIMIT),
        ("MEMBER_FAULTS", range(16_913_000, 16_913_010), MEMBER_FAULTS),
    ],
)
def test_each_injected_fault_happens_and_every_run_ends_exact(
    monkeypatch: pytest.MonkeyPatch, mode: str, seeds: range, seen: tuple[str, ...]
) -> None:
    monkeypatch.setattr(runner, mode, True)
    trace = _traces(seeds)
    missing = [line for line in seen if line not in trace]
    assert not missing, f"no run of {mode} had {missing}"


# seeds of these modes that failed once, with the modes they failed under
REGRESSIONS = [
    # 16916144: Kafka refused a command of learner-group rows for its size, and the
    # simulator's groups agent dead-lettered every row of it (it applied the rows as one event
    # that could not be taken apart; the worker's agent goes record by record, as the
    # simulator's now does)
    (16916144, ("RECORD_LIMIT", "REPAIR_FAULTS", "MEMBER_FAULTS", "SURVIVED_FAILURES")),
    # 16940237: a deletion's hold left open after its last report (a part reported without
    # its count) took the one place of OPEN_KEPT=1, and the oracle took a later request's hold
    # for certain (tests/simulation/test_threshold_holds.py)
    (16940237, ("REPAIR_FAULTS",)),
    # 16961002: a "no" of the coordinator armed before a rest point asked for a rebalance
    # while at rest (the rest point ended every other fault, not the coordinator's answers)
    (16961002, ("MEMBER_FAULTS", "CHECK_AT_REST")),
    (16961005, ("MEMBER_FAULTS", "CHECK_AT_REST", "SURVIVED_FAILURES", "REPAIR_FAULTS")),
    # 16961017: a "no" answered just before a rest point announced a rebalance that ended
    # while at rest (the rest point now lets it end first)
    (
        16961017,
        (
            "MEMBER_FAULTS",
            "CHECK_AT_REST",
            "SURVIVED_FAILURES",
            "REPAIR_FAULTS",
            "RECORD_LIMIT",
            "LEAP_YEARS",
            "TAKEOVER_TIMERS",
        ),
    ),
]


# 17409004, 17409059, 17409076, 17409092, 17409104: Kafka refused a command of partial counts
# for its size (a tenant's reports of up to 16 learner partitions in one), and the timer sent
# it whole again at every interval, refused for good: the counts stood still (now they go again
# one tenant's learner partition a command, `learners.send_partials`)
REGRESSIONS += [
    (17409004, ("RECORD_LIMIT", "MANY_PARTITIONS", "LATE_COUNTS", "PREFIX_IDS")),
    (17409059, ("RECORD_LIMIT", "MANY_PARTITIONS")),
    (17409076, ("RECORD_LIMIT", "MANY_PARTITIONS", "LATE_COUNTS")),
    (17409092, ("RECORD_LIMIT", "MANY_PARTITIONS", "LATE_COUNTS")),
    (17409104, ("RECORD_LIMIT", "MANY_PARTITIONS")),
    # 17481014, 17482012: the first draft of the deaths between refused passes struck after
    # the faults had ended too, so the worker died at every restart on the same refusal and
    # the run never settled (the checker's defect: `World.dies_on_refusals`)
    (17481014, ("RECORD_LIMIT",)),
    (17482012, ("RECORD_LIMIT",)),
]


@pytest.mark.parametrize(("seed", "modes"), REGRESSIONS)
def test_every_seed_of_the_modes_that_once_failed(
    monkeypatch: pytest.MonkeyPatch, seed: int, modes: tuple[str, ...]
) -> None:
    for mode in modes:
        monkeypatch.setattr(runner, mode, True)
    first = run(generate(seed))
    assert first.ok, explain(first, shrink_s=20)
    assert run(generate(seed)).trace == first.trace, "the same seed, the same run"


def test_the_plain_schedules_draw_none_of_them() -> None:
    """The modes are opt-in: a plain schedule arms no fault aimed at a repair and no answer of
    the coordinator, and its Kafka takes records of any size."""
    for seed in range(16_930_000, 16_930_020):
        actions = generate(seed).actions
        assert not [a for a in actions if a[0] == "member"]
        assert not [a for a in actions if len(a) > 4 and str(a[4]).startswith("repair")]
