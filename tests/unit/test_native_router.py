"""The C router (streams/stages/_router.c) against `route_launches`, the rules in Python: the
same commands byte for byte, the same dead letters, the same outcomes, over the bench's
dataset, the fast decoder's common and hostile inputs, random mutations of them, instants near
the future check's limit, and the sizes the simulator draws."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from streams.stages import ingest
from streams.stages.ingest import EncodedLaunches, route_launches, route_launches_encoded
from streams.tools.dataset import DatasetSpec, generate
from tests.unit.test_launch_decoder import COMMON, HOSTILE, _mutations, raw_of

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
TOPIC = "prefix-launches"


@dataclass
class Record:
    value: bytes | None
    offset: int = 0
    partition: int = 0
    timestamp: int = NOW_MS
    key: bytes | None = None
    topic: str = TOPIC


def in_python(records: list[Record], partitions: int) -> EncodedLaunches:
    return EncodedLaunches.of(route_launches(records, partitions), TOPIC)


def in_c(records: list[Record], partitions: int) -> EncodedLaunches:
    assert ingest._router is not None and ingest.NATIVE_ROUTER
    return route_launches_encoded(records, partitions, TOPIC)


def assert_same(records: list[Record], partitions: int) -> EncodedLaunches:
    python, c = in_python(records, partitions), in_c(records, partitions)
    assert c.commands == python.commands
    assert +c.outcomes == +python.outcomes
    assert [(d.record, d.rejected) for d in c.dead_letters] == [
        (d.record, d.rejected) for d in python.dead_letters
    ]
    return c


def slow_calls(records: list[Record], partitions: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """How many of `records` the C router handed to Python."""
    calls = []
    real = ingest.route_launches

    def counting(records: list[Record], partitions: int) -> ingest.RoutedLaunches:
        calls.append(len(records))
        return real(records, partitions)

    with monkeypatch.context() as patch:
        patch.setattr(ingest, "route_launches", counting)
        in_c(records, partitions)
    return len(calls)


def dataset(launches: int, seed: int = 7) -> list[Record]:
    spec = DatasetSpec(launches=launches, tenants=50, seed=seed, now=NOW)
    values = [orjson.dumps(record) for record in generate(spec) if "attempt_id" in record]
    return [Record(value, offset=n, partition=n % 5) for n, value in enumerate(values)]


def test_the_c_router_is_built() -> None:
    # `make install` compiles it wherever a C compiler is (this machine, CI); the launch reader
    # runs without it, slower, only where none is
    assert ingest._router is not None
    assert ingest.NATIVE_ROUTER


@pytest.mark.parametrize("partitions", [1, 12, 600])
def test_the_bench_dataset_gives_the_same_commands(
    partitions: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = dataset(6_000)
    routed = assert_same(records, partitions)
    assert routed.outcomes["tracked"] > 3_000 and routed.outcomes["untracked"] > 500
    # and the C router read almost all of them itself: only the dataset's few odd launches
    # (duplicates are not odd) went to Python
    assert slow_calls(records, partitions, monkeypatch) < len(records) // 20


@pytest.mark.parametrize(
    ("raw_inline_max", "command_max_bytes"), [(-1, 1), (100, 300), (1024, 1_500), (0, 10**6)]
)
def test_the_sizes_the_simulator_draws_give_the_same_commands(
    raw_inline_max: int, command_max_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "RAW_INLINE_MAX", raw_inline_max)
    monkeypatch.setattr(ingest, "COMMAND_MAX_BYTES", command_max_bytes)
    routed = assert_same(dataset(800, seed=3), 12)
    if command_max_bytes == 1:
        assert len(routed.commands) == routed.outcomes["tracked"]  # a row each


def test_the_decoders_inputs_give_the_same_commands() -> None:
    records = [Record(raw, offset=n) for n, raw in enumerate(COMMON + HOSTILE)]
    records.append(Record(None, offset=len(records)))
    routed = assert_same(records, 12)
    assert routed.dead_letters and routed.outcomes["tracked"] > 5


def test_each_input_alone_gives_the_same_commands() -> None:
    for raw in COMMON + HOSTILE:
        assert_same([Record(raw)], 4)


def test_random_mutations_give_the_same_commands() -> None:
    rng = random.Random(20261207)
    bases = [*COMMON, *(r.value for r in dataset(200, seed=11) if r.value)]
    tracked = 0
    for _ in range(400):
        records = [
            Record(_mutations(rng, rng.choice(bases)), offset=n, partition=rng.randrange(3))
            for n in range(rng.randint(1, 60))
        ]
        tracked += assert_same(records, rng.choice((1, 7, 12))).outcomes["tracked"]
    assert tracked > 1_000  # many mutations keep a valid launch


def test_forms_the_c_router_reads_give_the_same_commands() -> None:
    forms = [
        raw_of(launched_at="2026-03-01T10:00:00.000000Z"),  # no fraction in the row
        raw_of(launched_at="2026-03-01T10:00:00.000001+00:00"),
        raw_of(launched_at="2026-03-01T10:00:00-00:00"),
        raw_of(launched_at="2024-02-29T23:59:59.9-14:59"),
        raw_of(launched_at="2023-02-29T10:00:00Z"),
        raw_of(launched_at="1900-01-01T00:59:59+01:00"),
        raw_of(launched_at="2499-12-31T23:00:00-01:00"),
        raw_of(content_type=" SCORM ", tracking="NONE"),
        raw_of(content_type="video", tracking=" none_resource"),
        raw_of(content_type=None, tracking="Tracked"),
        raw_of(launched_by="admin", tracking="bogus"),
        raw_of(tenant_id="t" * 256, learner_id="l" * 256),
        raw_of(note=12, other=-0.5, yes=True, no=False, none=None),
        raw_of(note=1e30),
        raw_of().replace(b"}", b',"n":123456789012345678901}'),
        raw_of().replace(b"}", b',"n":12345678901234567.5}'),
        b' {"event_id":"e","tenant_id":"t","learner_id":"l","element_id":"x","attempt_id":"a",'
        b'"launched_at":"2026-03-01T10:00:00Z"}',
        b'{\n  "event_id": "e", "tenant_id": "t", "learner_id": "l", "element_id": "x",\n'
        b'\t"attempt_id": "a", "launched_at": "2026-03-01T10:00:00Z"\r\n}',
        b'{"event_id":"e","tenant_id":"t","learner_id":"l","element_id":"x","attempt_id":"a",'
        b'"launched_at":"2026-03-01T10:00:00Z","event_id":"f"}',
        b'{"event_id":"e","tenant_id":"t","learner_id":"l","element_id":"x","attempt_id":"a",'
        b'"launched_at":"2026-03-01T10:00:00Z",}',
        b'{"event_id":"e","tenant_id":"t","learner_id":"l","element_id":"x","attempt_id":"a"}',
    ]
    for raw in forms:
        assert_same([Record(raw)], 12)
    assert_same([Record(raw, offset=n) for n, raw in enumerate(forms)], 3)


def test_instants_near_the_future_limit_give_the_same_commands() -> None:
    # the check is exact in Python (floats); the C router hands anything within 2 ms of the
    # limit, or past it, to Python
    records = []
    for n, ms in enumerate(range(-5, 6)):
        launched = NOW + timedelta(hours=1, milliseconds=ms)
        text = launched.isoformat(timespec="microseconds").replace("+00:00", "Z")
        records.append(Record(raw_of(launched_at=text), offset=n))
        records.append(Record(raw_of(launched_at=text), offset=n, timestamp=NOW_MS + 1))
    records.append(Record(raw_of(), timestamp=-1))
    records.append(Record(raw_of(), timestamp=2**62))
    routed = assert_same(records, 12)
    assert routed.outcomes["dead_lettered"] > 0 and routed.outcomes["tracked"] > 0


def test_a_failing_slow_path_fails_the_whole_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug in the Python rules for one launch raises out of the C router as it does out of
    `route_launches`: the stage then routes the batch one launch at a time."""

    def broken(records: list[Record], partitions: int) -> ingest.RoutedLaunches:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "route_launches", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        in_c([Record(raw_of()), Record(b"not json")], 12)


def test_fields_that_are_not_plain_ints_are_pythons_call() -> None:
    """helper-116: a bool is an int to C's `PyLong_Check`, and was written 1/0 where orjson
    writes true/false."""
    raw = raw_of()
    records = [
        Record(raw, partition=True),  # type: ignore[arg-type]
        Record(raw, offset=False),  # type: ignore[arg-type]
        Record(raw_of(launched_at="1969-12-31T23:00:00Z"), timestamp=True),  # type: ignore[arg-type]
    ]
    for record in records:
        assert_same([record], 3)


class _Clearing:
    """A record whose value, when read, empties the list it came in (helper-116: the C router
    kept borrowed references to the list's items while Python code ran)."""

    def __init__(self, records: list[object]) -> None:
        self.records = records
        self.topic, self.key, self.partition, self.offset, self.timestamp = (
            TOPIC,
            None,
            0,
            0,
            NOW_MS,
        )

    @property
    def value(self) -> bytes:
        self.records.clear()
        return raw_of()


def test_records_changed_while_they_are_routed_stay_alive() -> None:
    records: list[object] = []
    records += [_Clearing(records), Record(raw_of(attempt_id="b")), Record(raw_of(attempt_id="c"))]
    routed = in_c(records, 2)  # type: ignore[arg-type]
    assert routed.outcomes["tracked"] == 3


def test_partitions_past_the_c_routers_bound_take_the_python_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records = dataset(50)
    many = ingest._ROUTER_MAX_PARTITIONS + 1
    assert slow_calls(records, many, monkeypatch) == 1  # the whole batch, once, in Python
    assert in_c(records, many).commands == in_python(records, many).commands


def test_the_worker_says_which_router_reads_the_launches(monkeypatch: pytest.MonkeyPatch) -> None:
    level, line = ingest.router_in_use()
    assert level == logging.INFO and "C router" in line
    monkeypatch.setattr(ingest, "_router", None)
    level, line = ingest.router_in_use()
    assert level == logging.WARNING and "Python rules route every launch" in line
