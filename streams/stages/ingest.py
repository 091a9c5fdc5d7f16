"""Ingest: validate every input record, dead-letter what cannot be used, route the rest.

launches          validated one by one (the contract's model, `future` against the record's own
                  Kafka timestamp, the tracking rule); tracked ones become one `Attempts`
                  command per learner partition per batch, in input order
licenses          to the tenant stage, and to every learner partition (each re-cuts its keys)
attempt-deletions a valid request goes to the tenant stage, which checks its request id and
                  splits it into parts; an invalid one with a usable request and tenant id gets
                  an error receipt there, anything else is dead-lettered
learner-groups    batched to the learners' partitions

Ingest keeps no state: a replay routes the same records the same way again.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any, Protocol

import orjson

from schemas import topics
from schemas.deletions import DeletionRequest as DeletionRequestModel
from schemas.groups import LearnerGroups
from schemas.launches import Launch
from schemas.licenses import License
from streams.domain.dead_letters import dead_letter, dead_letter_key
from streams.domain.dead_letters import encode as encode_json
from streams.domain.decoding import (
    FUTURE_TOLERANCE,
    Rejected,
    decode,
    deletion_rejection,
    future_rejection,
    usable_ids,
    valid_id,
)
from streams.domain.launch_decoder import LaunchFields, fast_launch
from streams.domain.partitioning import learner_partition, tenant_partition
from streams.domain.selectors import Selector
from streams.domain.sources import position_of
from streams.domain.tracking import is_tracked
from streams.stages import commands, metrics
from streams.stages.store import Batch, chunks_by_size, json_size

_router: ModuleType | None
try:  # the launch reader's hot path in C (streams/stages/_router.c): built where a compiler is
    from streams.stages import _router
except ImportError:  # pragma: no cover (a build without a C compiler: the same rules in Python)
    _router = None

# A launch's raw text rides inside its learner command only up to this size; a larger one is
# referenced by position (the learner stage reads it back for a dead letter), so commands stay
# far below Kafka's 1 MiB limit.
RAW_INLINE_MAX = 1024
# Learner commands are cut at about this size.
COMMAND_MAX_BYTES = 256 * 1024
GROUP_ROWS_PER_COMMAND = 2_000
# A learner's teams and roles are one row of a command and one stored value (non-ASCII ids of
# 256 characters take up to 1 kB each): larger ones cannot be stored whole.
GROUP_ROW_MAX_BYTES = 900_000
FUTURE_TOLERANCE_S = FUTURE_TOLERANCE.total_seconds()
# Whether `route_launches_encoded` lets the C router read the launches it can (the simulator
# draws it per seed, so that both paths run under its faults).
NATIVE_ROUTER = _router is not None

log = logging.getLogger(__name__)


class InputRecord(Protocol):
    """An input record (streams/stages/store.py: Record; aiokafka's ConsumerRecord too)."""

    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def topic(self) -> str: ...  # the real name (with TOPIC_PREFIX)
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...  # ms, the record's Kafka timestamp


# Kafka keeps whatever timestamp a producer sets (4.1 refuses by default only those more than an
# hour ahead of the broker: -100,000,000,000,000 ms, the year -1199, passes). A record's time
# outside what a datetime holds is taken as the nearest one it does, so the rules that compare
# against it decide as they would (a launch is `future` against a time before the year 1) and
# never raise: raising, it stalled the launch reader on its batch for good.
_EARLIEST_MS = int(datetime(1, 1, 2, tzinfo=UTC).timestamp() * 1000)
_LATEST_MS = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp() * 1000)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_time(record: InputRecord) -> datetime:
    """The record's Kafka timestamp, exactly: `fromtimestamp(ms / 1000)` goes through a float,
    which past the year ~2100 is a microsecond off, and a launch 1 h + 1 us ahead of its record
    was not `future` (helper-64, tests/stages/test_edges_review.py)."""
    ms = min(max(record.timestamp, _EARLIEST_MS), _LATEST_MS)
    return _EPOCH + timedelta(milliseconds=ms)


@dataclass(frozen=True)
class DeadLetter:
    record: InputRecord
    rejected: Rejected


@dataclass
class RoutedLaunches:
    rows: dict[int, list[list[Any]]] = field(default_factory=dict)  # partition -> attempt rows
    dead_letters: list[DeadLetter] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # tracked, untracked, dead_lettered
    failed: int = 0  # launches routing failed on (a bug), each dead-lettered with the error

    def commands(self) -> Iterable[tuple[int, list[list[Any]]]]:
        """(partition, rows) per learner command, each below COMMAND_MAX_BYTES."""
        for partition, rows in self.rows.items():
            for chunk in chunks_by_size(rows, _row_size, COMMAND_MAX_BYTES):
                yield partition, chunk


def _row_size(row: list[Any]) -> int:
    """About the bytes one `Attempts` row takes in a command (the JSON around it included)."""
    # written out: a generator here cost a microsecond a launch
    return (
        96 + len(row[0]) + len(row[1]) + len(row[2]) + len(row[3]) + len(row[4]) + len(row[7] or "")
    )


def route_launches(records: Iterable[InputRecord], partitions: int) -> RoutedLaunches:
    """Every rule per launch, over a batch: what goes where (a pure function)."""
    routed = RoutedLaunches()
    for record in records:
        raw = record.value
        # the common form in under half the time; anything else is the contract model's call
        launch: LaunchFields | Launch | Rejected | None = None if raw is None else fast_launch(raw)
        if launch is None:
            launch = decode(Launch, raw)
        if isinstance(launch, Rejected):
            routed.dead_letters.append(DeadLetter(record, launch))
            routed.outcomes["dead_lettered"] += 1
            continue
        # untracked before future: the contract drops an untracked launch and never
        # dead-letters it, however far ahead its clock
        if not is_tracked(launch.launched_by, launch.content_type, launch.tracking):
            routed.outcomes["untracked"] += 1
            continue
        # compared as epoch seconds first: building a datetime per launch costs more than the
        # rest of this check. Floats lose microseconds past the year ~2100, so this only sorts
        # out launches clearly not ahead (by a millisecond of slack); the exact rule decides.
        if launch.launched_at.timestamp() > record.timestamp / 1000 + FUTURE_TOLERANCE_S - 0.001:
            future = future_rejection(launch.launched_at, record_time(record))
            if future is not None:
                routed.dead_letters.append(DeadLetter(record, future))
                routed.outcomes["dead_lettered"] += 1
                continue
        assert raw is not None
        target = learner_partition(launch.tenant_id, launch.learner_id, partitions)
        # a TrackedAttempt as a row (streams/stages/commands.py), built directly: this runs per
        # launch
        routed.rows.setdefault(target, []).append(
            [
                launch.tenant_id,
                launch.learner_id,
                launch.element_id,
                launch.attempt_id,
                launch.launched_at.isoformat(),
                record.partition,
                record.offset,
                raw.decode("utf-8") if len(raw) <= RAW_INLINE_MAX else None,
                record.timestamp,
            ]
        )
        routed.outcomes["tracked"] += 1
    return routed


@dataclass
class EncodedLaunches:
    """`RoutedLaunches` with its commands encoded: (learner partition, command) each."""

    commands: list[tuple[int, bytes]]
    dead_letters: list[DeadLetter]
    outcomes: Counter[str]
    failed: int = 0

    @classmethod
    def of(cls, routed: RoutedLaunches, topic: str) -> EncodedLaunches:
        encoded = [
            (partition, commands.encode(commands.Attempts(topic, rows)))
            for partition, rows in routed.commands()
        ]
        return cls(encoded, routed.dead_letters, routed.outcomes, routed.failed)


_ATTEMPTS_END = b'],"kind":"attempts"}'  # an `Attempts` command as commands.encode writes it
# The C router keeps a slot per partition for each call: beyond this many, the Python rules
_ROUTER_MAX_PARTITIONS = 65_536
_SIZE_MAX = 1 << 62  # the sizes it is given, in its integers


def route_launches_encoded(
    records: Sequence[InputRecord], partitions: int, topic: str
) -> EncodedLaunches:
    """`route_launches`, its commands encoded (`topic`: the launches topic's real name).

    With the C router, the launches in their plainest form never become Python objects: it
    writes their rows into the commands itself, and hands every other record to
    `route_launches`, in order, whose rows it puts in their place. The commands are the same
    bytes either way (tests/unit/test_native_router.py)."""
    if _router is None or not NATIVE_ROUTER or not 1 <= partitions <= _ROUTER_MAX_PARTITIONS:
        return EncodedLaunches.of(route_launches(records, partitions), topic)
    dead_letters: list[DeadLetter] = []
    outcomes: Counter[str] = Counter()

    def slow(record: InputRecord) -> list[tuple[int, bytes, int]]:
        alone = route_launches([record], partitions)
        dead_letters.extend(alone.dead_letters)
        outcomes.update(alone.outcomes)
        return [
            (partition, orjson.dumps(row), _row_size(row))
            for partition, rows in alone.rows.items()
            for row in rows
        ]

    start = b'{"topic":' + orjson.dumps(topic) + b',"attempts":['
    inline_max = max(-1, min(RAW_INLINE_MAX, _SIZE_MAX))
    encoded, tracked, untracked = _router.route(
        records,
        partitions,
        inline_max,
        min(COMMAND_MAX_BYTES, _SIZE_MAX),
        start,
        _ATTEMPTS_END,
        slow,
    )
    if tracked:
        outcomes["tracked"] += tracked
    if untracked:
        outcomes["untracked"] += untracked
    return EncodedLaunches(encoded, dead_letters, outcomes)


def router_in_use() -> tuple[int, str]:
    """What routes the launches in this install, as a log level and line (the worker logs it at
    start: an install built without a C compiler runs the Python rules alone, slower)."""
    if _router is not None and NATIVE_ROUTER:
        return (
            logging.INFO,
            "launches: the C router reads the plainest ones (streams/stages/_router.c)",
        )
    return logging.WARNING, (
        "launches: no C router in this install (no C compiler when it was built, or turned "
        "off): the Python rules route every launch, about a fifth slower"
    )


def _route_one_at_a_time(records: Sequence[InputRecord], partitions: int) -> RoutedLaunches:
    routed = RoutedLaunches()
    for record in records:
        try:
            alone = route_launches([record], partitions)
        except Exception as exc:
            routed.failed += 1
            detail = f"the service could not route this launch ({type(exc).__name__}: {exc})"
            routed.dead_letters.append(DeadLetter(record, Rejected("invalid", detail)))
            routed.outcomes["dead_lettered"] += 1
            continue
        for partition, rows in alone.rows.items():
            routed.rows.setdefault(partition, []).extend(rows)
        routed.dead_letters += alone.dead_letters
        routed.outcomes.update(alone.outcomes)
    return routed


class IngestStage:
    """Ingest's handlers (the launch reader and the ingest agents call them)."""

    def __init__(
        self,
        partitions: int,
        topic_name: Callable[[str], str] = lambda name: name,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.partitions = partitions
        self.topic_name = topic_name
        self.clock = clock

    def dead_letter(self, batch: Batch, record: InputRecord, rejected: Rejected) -> None:
        value = dead_letter(
            rejected.reason,
            rejected.detail,
            record.value,
            record.topic,
            record.partition,
            record.offset,
            self.clock(),
        )
        batch.emit(topics.DEAD_LETTERS, dead_letter_key(record.key), encode_json(value))
        source = _source(record.topic, self.topic_name)
        batch.on_durable(metrics.dead_letters_total.labels(source, rejected.reason).inc)

    # -- launches -------------------------------------------------------------------------------
    def route_launches(self, batch: Batch, records: Sequence[InputRecord]) -> Counter[str]:
        """One `Attempts` command per learner partition, and the dead letters."""
        launches_topic = records[0].topic if records else self.topic_name(topics.LAUNCHES)
        try:
            routed = route_launches_encoded(records, self.partitions, launches_topic)
        except Exception:
            # (a bug: routing is pure, so a failure is the same every time) the launch reader
            # would read the batch again for good; one launch at a time, only the launch that
            # fails is dead-lettered, with the error
            log.exception("ingest: routing %d launches failed; one at a time", len(records))
            routed = EncodedLaunches.of(
                _route_one_at_a_time(records, self.partitions), launches_topic
            )
        for partition, command in routed.commands:
            batch.emit(topics.LEARNER_COMMANDS, b"attempts", command, partition)
        for letter in routed.dead_letters:
            self.dead_letter(batch, letter.record, letter.rejected)
        if routed.failed:
            # counted once durable: a batch routed again (refused for a record's size, or
            # failed) counts each failing launch once
            batch.on_durable(
                lambda: metrics.stage_errors_total.labels("launch-reader").inc(routed.failed)
            )
        return routed.outcomes

    # -- licenses -------------------------------------------------------------------------------
    def on_license(self, batch: Batch, record: InputRecord) -> None:
        if record.value is None:
            # A tombstone on the compacted topic: the tenant falls back to the default license.
            tenant_id = tenant_of_key(record.key)
            if tenant_id is None:
                self.dead_letter(
                    batch, record, Rejected("invalid", "license tombstone without a usable key")
                )
                return
            self.broadcast_license(batch, tenant_id, None, record)
            batch.on_durable(metrics.licenses_total.labels("tombstone").inc)
            return
        license_ = decode(License, record.value)
        if isinstance(license_, Rejected):
            self.dead_letter(batch, record, license_)
            return
        if record.key is not None and record.key != license_.tenant_id.encode():
            # licenses is compacted by tenant: a record under another key would outlive the
            # tenant's later licenses and come back on a replay
            detail = f"the record's key is not its tenant_id {license_.tenant_id!r}"
            self.dead_letter(batch, record, Rejected("invalid", detail))
            return
        self.broadcast_license(batch, license_.tenant_id, license_.model_dump(mode="json"), record)
        batch.on_durable(metrics.licenses_total.labels("license").inc)

    def broadcast_license(
        self, batch: Batch, tenant_id: str, license_: dict[str, Any] | None, record: InputRecord
    ) -> None:
        """To the tenant stage, and to every learner partition (each re-cuts its own keys)."""
        source = position_of(record.partition, record.offset, record.timestamp)
        command = commands.encode(commands.License(tenant_id, license_, source))
        key = tenant_id.encode()
        batch.emit(
            topics.TENANT_COMMANDS, key, command, tenant_partition(tenant_id, self.partitions)
        )
        for partition in range(self.partitions):
            batch.emit(topics.LEARNER_COMMANDS, key, command, partition)

    # -- deletion requests ----------------------------------------------------------------------
    def on_deletion(self, batch: Batch, record: InputRecord) -> None:
        raw = record.value
        request = decode(DeletionRequestModel, raw)
        # a well-formed request refused for its time (or its size) is told from another request
        # under its id as a valid one is: by mode, selector and requested_at (the same request
        # produced again later, no longer ahead of its record's time, is a redelivery and gets
        # the same receipt)
        fingerprint = None
        if not isinstance(request, Rejected):
            parsed = request
            request = deletion_rejection(parsed, record_time(record)) or parsed
            if isinstance(request, Rejected):
                selector = Selector.of_request(parsed)
                fingerprint = selector.fingerprint(parsed.mode, parsed.requested_at)
        if isinstance(request, Rejected):
            ids = usable_ids(raw)
            if ids is None:
                self.dead_letter(batch, record, request)
                return
            # A request we can answer gets an error receipt (from the tenant stage, which sends
            # it once per request however often it comes) instead of a dead letter.
            request_id, tenant_id, mode = ids
            receipt = error_receipt(
                {"request_id": request_id, "tenant_id": tenant_id, "mode": mode},
                request.detail,
                record_time(record),
            )
            fingerprint = fingerprint or hashlib.sha256(raw or b"").hexdigest()[:32]
            batch.emit(
                topics.TENANT_COMMANDS,
                tenant_id.encode(),
                commands.encode(commands.DeletionError(receipt, fingerprint)),
                tenant_partition(tenant_id, self.partitions),
            )
            batch.on_durable(metrics.deletion_requests_total.labels("error").inc)
            return
        selector = Selector.of_request(request)
        body = {
            "request_id": request.request_id,
            "tenant_id": request.tenant_id,
            "mode": request.mode,
            "requested_at": request.requested_at.isoformat(),
            "selector": selector.as_json(),
            "requested_by": request.requested_by,
            "reason": request.reason,
            "fingerprint": selector.fingerprint(request.mode, request.requested_at),
        }
        batch.emit(
            topics.TENANT_COMMANDS,
            request.tenant_id.encode(),
            commands.encode(commands.DeletionRequest(body)),
            tenant_partition(request.tenant_id, self.partitions),
        )
        batch.on_durable(metrics.deletion_requests_total.labels(request.mode).inc)

    # -- teams and roles ------------------------------------------------------------------------
    def group_rows(self, batch: Batch, records: Sequence[InputRecord]) -> None:
        """Learner-groups records, one `Groups` command per learner partition (and chunk)."""
        rows: dict[int, list[list[Any]]] = {}
        for record in records:
            row = _groups_row(record)
            if isinstance(row, Rejected):
                self.dead_letter(batch, record, row)
                continue
            row += position_of(record.partition, record.offset, record.timestamp)
            rows.setdefault(learner_partition(row[0], row[1], self.partitions), []).append(row)
        for partition, part_rows in sorted(rows.items()):
            for start in range(0, len(part_rows), GROUP_ROWS_PER_COMMAND):
                # cut by size too: a learner's 2,000 group ids of 256 characters take 500 kB
                group = part_rows[start : start + GROUP_ROWS_PER_COMMAND]
                for chunk in chunks_by_size(group, json_size, COMMAND_MAX_BYTES):
                    command = commands.encode(commands.Groups(chunk))
                    batch.emit(topics.LEARNER_COMMANDS, b"groups", command, partition)


def _groups_row(record: InputRecord) -> list[Any] | Rejected:
    """[tenant, learner, teams | None, roles | None] of a learner-groups record (None, None: a
    tombstone removes the learner's groups), or why it cannot be used."""
    if record.value is None:
        ids = learner_key_ids(record.key)
        if ids is None:
            return Rejected("invalid", "learner-groups tombstone without a tenant/learner key")
        return [*ids, None, None]
    groups = decode(LearnerGroups, record.value)
    if isinstance(groups, Rejected):
        return groups
    key = f"{groups.tenant_id}/{groups.learner_id}".encode()
    if record.key is not None and record.key != key:
        # learner-groups is compacted by tenant/learner: a record under another key would
        # outlive the learner's later records and tombstone (and come back on a replay)
        return Rejected("invalid", f"the record's key is not its tenant_id/learner_id {key!r}")
    row = [groups.tenant_id, groups.learner_id, list(groups.teams), list(groups.roles)]
    if json_size(row) > GROUP_ROW_MAX_BYTES:
        # stored whole by the learner stage: it must fit in one record with its key
        detail = f"teams and roles take more than {GROUP_ROW_MAX_BYTES:,} bytes as JSON"
        return Rejected("invalid", detail)
    return row


def error_receipt(request: dict[str, Any], error: str, completed_at: datetime) -> dict[str, Any]:
    """The receipt of a request that changed nothing: `error` says why."""
    return {
        "request_id": request["request_id"],
        "tenant_id": request["tenant_id"],
        "mode": request.get("mode", "invalid"),
        "selector": request.get("selector"),
        "requested_at": request.get("requested_at"),
        "requested_by": request.get("requested_by"),
        "reason": request.get("reason"),
        "attempts_affected": 0,
        "learners_affected": 0,
        "windows": [],
        "completed_at": completed_at.isoformat(),
        "error": error,
    }


def tenant_of_key(key: bytes | None) -> str | None:
    """The tenant of a `tenant_id` key (a license tombstone), if it is a valid id."""
    try:
        tenant_id = (key or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
    return tenant_id if valid_id(tenant_id) else None


def learner_key_ids(key: bytes | None) -> tuple[str, str] | None:
    """tenant and learner of a `tenant/learner` key, if it is one."""
    try:
        tenant, slash, learner = (key or b"").decode("utf-8").partition("/")
    except UnicodeDecodeError:
        return None
    if not slash or not (valid_id(tenant) and valid_id(learner)):
        return None
    return tenant, learner


def _source(topic: str, topic_name: Callable[[str], str]) -> str:
    """The contract name of a real topic (for metric labels)."""
    prefix = topic_name("")
    return topic[len(prefix) :] if prefix and topic.startswith(prefix) else topic


def give_up(batch: Batch, record: InputRecord, exc: BaseException, when: datetime) -> None:
    """Dead-letter a record whose handling kept failing (a bug, never bad input): whole, with
    the error, so that it is neither lost silently nor retried forever."""
    value = dead_letter(
        "invalid",
        f"the service could not apply this record ({type(exc).__name__}: {exc})",
        record.value,
        record.topic,
        record.partition,
        record.offset,
        when,
    )
    batch.emit(topics.DEAD_LETTERS, dead_letter_key(record.key), encode_json(value))
