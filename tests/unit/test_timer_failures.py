"""The worker's timers outlive a failure that is not `Fenced` (streams/worker/agents/timers.py).

mode crashes the whole app when a timer raises (`Service._execute_task`): a timer whose flush
failed (an aiokafka error `KafkaLog.send` does not retry, the producer not ready) restarted
the worker. Now the failure is counted and logged once per streak, and the next interval tries
again; the partial counts the failed flush had taken from the counters are sent by it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaTimeoutError
from prometheus_client import REGISTRY

from schemas import topics
from streams.domain.learners import CountChange, TenantCounts
from streams.stages import commands
from streams.stages.learners import LearnerStage
from streams.stages.store import LocalWriteFailed, RecordTooLarge
from streams.worker.agents import learners, loop, memory, purge, tenants, timers
from streams.worker.partials_pace import PartialsPace


@dataclass
class _Batch:
    """A timer's batch: its flush raises the next of `failures` (None: it succeeds), and what
    a successful flush sent goes to `sent`."""

    failures: list[BaseException | None]
    sent: list[tuple[str, bytes | None, bytes | None, int | None]]
    emitted: list[tuple[str, bytes | None, bytes | None, int | None]] = field(default_factory=list)

    def emit(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self.emitted.append((topic, key, value, partition))

    async def flush(self) -> None:
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.extend(self.emitted)


def _failures_sample(timer: str) -> float | None:
    return REGISTRY.get_sample_value("active_learners_timer_failures_total", {"timer": timer})


def _failures(timer: str) -> float:
    return _failures_sample(timer) or 0.0


def _run(timer: Any) -> None:
    """One interval of an `app.timer` (what faust's wrappers, which loop for ever, call)."""
    once = inspect.unwrap(timer, stop=lambda f: "faust" not in f.__code__.co_filename)
    asyncio.run(asyncio.wait_for(once(), 5))


@pytest.fixture
def partials(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The partial-count timer over a learner stage of its own: tenant acme counted 3 in learner
    partition 1, not reported yet; a clock the test moves."""
    stage = LearnerStage(4)
    stage.counters.reset_partition(
        1, (1, 1), {"acme": TenantCounts({"2026-01-01": 3}, 3, "cut", 7, 1_000)}
    )
    clock = SimpleNamespace(now=100.0)
    monkeypatch.setattr(learners, "stage", stage)
    monkeypatch.setattr(learners, "partials_pace", PartialsPace(keeping_up_s=0.5))
    monkeypatch.setattr(learners, "time", SimpleNamespace(monotonic=lambda: clock.now))
    out = SimpleNamespace(stage=stage, clock=clock, failures=[], sent=[])
    monkeypatch.setattr(learners, "new_batch", lambda *args: _Batch(out.failures, out.sent))
    return out


def _published(sent: list[tuple[str, bytes | None, bytes | None, int | None]]) -> dict[str, Any]:
    tenants_: dict[str, Any] = {}
    for topic, key, value, _ in sent:
        assert topic == topics.TENANT_COMMANDS and key == b"partials"
        command = commands.decode(value)
        assert isinstance(command, commands.Partials)
        tenants_.update(orjson.loads(orjson.dumps(command.tenants)))
    return tenants_


def test_a_partial_count_whose_flush_failed_is_sent_at_the_next_interval(
    partials: SimpleNamespace,
) -> None:
    """A flush of partial counts that raises (KafkaTimeoutError) does not leave the timer (nor
    crash the app), and the counts it had taken from the counters as sent go at the next
    interval: without a crash no takeover reports them again, and the window's count record
    would stay behind its counts until the tenant changed again."""
    partials.failures.append(KafkaTimeoutError())
    before = _failures("partials")
    _run(learners.flush_partial_counts)
    assert partials.sent == []
    assert _failures("partials") == before + 1

    partials.clock.now += 0.5  # the next interval
    _run(learners.flush_partial_counts)
    acme = _published(partials.sent)["acme"]["1"]
    assert (acme["windows"], acme["total"], acme["seq"]) == ({"2026-01-01": 3}, 3, 7)
    assert acme["oldest_ms"] == 1_000  # the latency still measured from the oldest launch

    partials.sent.clear()
    partials.clock.now += 0.5
    _run(learners.flush_partial_counts)
    assert partials.sent == []  # sent once it worked: clean again


def test_counts_that_changed_while_the_flush_failed_go_as_they_are_then(
    partials: SimpleNamespace,
) -> None:
    """The report sent again is the tenant's counts at the next interval (absolute values), with
    the oldest launch of both."""
    partials.failures.append(RuntimeError("Producer service not yet started"))
    _run(learners.flush_partial_counts)
    # a learner joins meanwhile (a launch at 1,500 ms)
    change = CountChange(Counter({"2026-01-01": 1}), 1, 1_500)
    partials.stage.counters.apply(1, "acme", "cut", change, 9)
    partials.clock.now += 0.5
    _run(learners.flush_partial_counts)
    acme = _published(partials.sent)["acme"]["1"]
    assert (acme["windows"], acme["total"], acme["seq"]) == ({"2026-01-01": 4}, 4, 9)
    assert acme["oldest_ms"] == 1_000


def test_partial_counts_that_could_not_be_made_stay_due(
    partials: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`partial_commands` takes the dirty tenants from the counters first: when making their
    commands fails (a bug, a record too large), they stay due and a later interval sends them
    (before, the worker restarted and its takeover reported every tenant)."""
    from streams.stages import learners as learner_stage

    chunks = learner_stage.chunks_by_size

    def fails_once(*args: Any) -> Any:
        monkeypatch.setattr(learner_stage, "chunks_by_size", chunks)
        raise AssertionError("a partial count too large")

    monkeypatch.setattr(learner_stage, "chunks_by_size", fails_once)
    _run(learners.flush_partial_counts)
    assert partials.sent == []
    partials.clock.now += 0.5
    _run(learners.flush_partial_counts)
    assert _published(partials.sent)["acme"]["1"]["oldest_ms"] == 1_000


def test_a_flush_that_failed_before_it_took_any_waits_for_the_next_slot(
    partials: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports are asked for every tenth of the interval: a flush that failed before it
    took any report was tried again at every tick, 20 failures a second in the metric instead
    of two (helper-115). It waits for the next slot, as under the interval timer."""
    from streams.stages import learners as learner_stage

    chunks = learner_stage.chunks_by_size

    def fails_once(*args: Any) -> Any:
        monkeypatch.setattr(learner_stage, "chunks_by_size", chunks)
        raise AssertionError("a partial count too large")

    monkeypatch.setattr(learner_stage, "chunks_by_size", fails_once)
    before = _failures("partials")
    _run(learners.flush_partial_counts)
    partials.clock.now += 0.05  # the next tick
    _run(learners.flush_partial_counts)
    assert partials.sent == []
    assert _failures("partials") == before + 1
    partials.clock.now += 0.45  # the next slot
    _run(learners.flush_partial_counts)
    assert _published(partials.sent)["acme"]["1"]["oldest_ms"] == 1_000


def test_a_failing_timer_is_logged_once_a_streak_and_counted_every_time(
    partials: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    partials.failures.extend([KafkaTimeoutError(), KafkaTimeoutError(), KafkaTimeoutError()])
    before = _failures("partials")
    with caplog.at_level(logging.INFO, logger=timers.__name__):
        for _ in range(4):
            _run(learners.flush_partial_counts)
            partials.clock.now += 0.5
    assert _failures("partials") == before + 3
    lines = [r.getMessage() for r in caplog.records if r.name == timers.__name__]
    assert lines == [
        "partials failed; trying again at every interval (logged again when it works)",
        "partials works again after 3 failed intervals",
    ]
    assert caplog.records[0].exc_info is not None  # the first failure's traceback
    assert "acme" in _published(partials.sent)


@pytest.mark.parametrize(
    ("timer", "name", "module", "stage", "kind"),
    [
        (tenants.tick_new_windows, "tick", tenants, "tenant", b"tick"),
        (learners.check_learner_lineage, "check", learners, "learner", b"check"),
    ],
)
def test_a_tick_or_check_whose_flush_failed_is_sent_at_the_next_interval(
    monkeypatch: pytest.MonkeyPatch, timer: Any, name: str, module: Any, stage: str, kind: bytes
) -> None:
    """A tick or lineage check whose flush raised (here aiokafka's "Unrecognized partition", an
    AssertionError) is sent again by the next interval; nothing of it is half-done (a command
    that landed in some partitions is applied there twice, harmlessly)."""
    failures: list[BaseException | None] = [AssertionError("Unrecognized partition")]
    sent: list[Any] = []
    monkeypatch.setattr(module, "new_batch", lambda *args: _Batch(failures, sent))
    owned = {"tenant": [0, 2], "learner": [1]}
    monkeypatch.setattr(module, "ownership", SimpleNamespace(partitions=lambda owner: owned[owner]))
    before = _failures(name)
    _run(timer)
    assert sent == [] and _failures(name) == before + 1
    _run(timer)
    assert [(key, partition) for _, key, _, partition in sent] == [
        (kind, partition) for partition in owned[stage]
    ]


def test_the_purge_and_the_memory_timers_survive_what_they_did_not_catch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The purge caught KafkaError only, the memory sampler nothing: anything else they raise
    is counted and left to the next interval too."""

    async def broken() -> int:
        raise ValueError("an answer aiokafka could not parse")

    def unreadable() -> dict[tuple[str, str], int]:
        raise RuntimeError("the DB was closed by a rebalance")

    monkeypatch.setattr(purge.purge, "run", broken)
    monkeypatch.setattr(memory.local_state, "memory", unreadable)
    before = (_failures("purge"), _failures("memory"))
    _run(purge.purge_consumed_commands)
    _run(memory.sample_memory)
    assert (_failures("purge"), _failures("memory")) == (before[0] + 1, before[1] + 1)


def test_every_timer_has_its_failure_series_from_the_start() -> None:
    """At 0 before any failure, so that an alert on its increase sees the first one."""
    for name in ("partials", "check", "tick", "purge", "memory"):
        assert _failures_sample(name) is not None


def test_a_failed_local_write_still_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the agents (streams/worker/agents/loop.py): tables written in part are a takeover's
    to mend, so the worker stops."""
    exits: list[int] = []

    class Exited(Exception):
        pass

    def exit_now(code: int) -> None:
        exits.append(code)
        raise Exited(code)

    monkeypatch.setattr(loop.os, "_exit", exit_now)

    @timers.survives("test")
    async def writes() -> None:
        raise LocalWriteFailed("writing tenant-state/0 failed: IO error: No space left on device")

    with pytest.raises(Exited):
        asyncio.run(writes())
    assert exits == [loop.EXIT_LOCAL_WRITE_FAILED]


def _two_tenants_of_two_partitions(stage: LearnerStage) -> None:
    for partition in (2, 3):
        stage.counters.reset_partition(
            partition,
            (1, 1),
            {
                tenant: TenantCounts({"2026-01-01": partition}, partition, "cut", 5, 2_000)
                for tenant in ("beta", "gamma")
            },
        )


def _reports(sent: list[tuple[str, bytes | None, bytes | None, int | None]]) -> list[Any]:
    """Each sent command's (tenant, learner partition) pairs."""
    out = []
    for _, _, value, _ in sent:
        command = commands.decode(value)
        assert isinstance(command, commands.Partials)
        out.append(sorted((t, p) for t, parts in command.tenants.items() for p in parts))
    return out


def test_partial_counts_refused_for_their_size_go_again_one_tenant_partition_a_command(
    partials: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    """A broker whose max.message.bytes is below the partial counts' commands (seeds 17409004,
    17409059, 17409076, 17409104 of the simulator, with many partitions and a record limit):
    the refused commands went again whole at every interval, refused for good, and the counts
    of every tenant in them stood still. Now they go again at once, one tenant's learner
    partition a command, and the timer does not fail."""
    _two_tenants_of_two_partitions(partials.stage)
    partials.failures.append(RecordTooLarge("Kafka refused a record of tenant-commands/1"))
    before = _failures("partials")
    with caplog.at_level(logging.WARNING):
        _run(learners.flush_partial_counts)
    assert _failures("partials") == before
    reports = _reports(partials.sent)
    assert all(len(report) == 1 for report in reports), reports
    assert sorted(r[0] for r in reports) == sorted(
        [("acme", "1")] + [(t, str(p)) for t in ("beta", "gamma") for p in (2, 3)]
    )
    assert _published(partials.sent)["beta"]["3"]["windows"] == {"2026-01-01": 3}
    assert any("one tenant's learner partition each" in r.getMessage() for r in caplog.records)


def test_reports_refused_apart_too_go_in_flushes_cut_in_two(partials: SimpleNamespace) -> None:
    """The producer packs a flush's records into batches of up to 1 MiB, and a topic's
    `max.message.bytes` bounds the batch: commands one report each, refused together, are cut
    in two until Kafka takes each flush (helper-111: on a real broker the apart commands in one
    flush were refused as a batch, as before)."""
    _two_tenants_of_two_partitions(partials.stage)
    # the first flush, then the apart commands together, then their first half once more
    partials.failures.extend([RecordTooLarge("whole"), RecordTooLarge("apart"), None])
    partials.failures.extend([RecordTooLarge("first half"), None, None, None])
    before = _failures("partials")
    _run(learners.flush_partial_counts)
    assert _failures("partials") == before
    assert sorted(r[0] for r in _reports(partials.sent)) == sorted(
        [("acme", "1")] + [(t, str(p)) for t in ("beta", "gamma") for p in (2, 3)]
    )


def test_a_single_report_refused_is_sent_at_the_next_interval(partials: SimpleNamespace) -> None:
    """Refused down to one report (a broker limit below one tenant's report of one partition):
    the timer fails as before, and the next interval sends it again."""
    partials.failures.extend([RecordTooLarge("refused"), RecordTooLarge("refused again")])
    before = _failures("partials")
    _run(learners.flush_partial_counts)
    assert (partials.sent, _failures("partials")) == ([], before + 1)
    partials.clock.now += 0.5
    _run(learners.flush_partial_counts)
    assert _published(partials.sent)["acme"]["1"]["total"] == 3


def test_a_tenant_whose_reports_pass_half_a_record_goes_one_partition_a_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A large tenant kept for years, on a worker of hundreds of learner partitions, could make
    a report over Kafka's 1 MiB alone (chunks are cut between tenants): its partitions go
    apart beyond half a record; the others' stay whole."""
    from streams.stages import learners as learner_stage

    stage = LearnerStage(4)
    monkeypatch.setattr(learner_stage, "PARTIALS_MAX_BYTES", 50)  # a command a tenant
    _two_tenants_of_two_partitions(stage)
    whole = _reports([("", None, value, p) for p, value in stage.partial_commands()])
    assert sorted(whole) == [[(t, "2"), (t, "3")] for t in ("beta", "gamma")]
    _two_tenants_of_two_partitions(stage)
    monkeypatch.setattr(learner_stage, "TENANT_APART_BYTES", 50)
    apart = _reports([("", None, value, p) for p, value in stage.partial_commands()])
    assert sorted(apart) == [[(t, str(p))] for t in ("beta", "gamma") for p in (2, 3)]
