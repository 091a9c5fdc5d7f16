"""The independent model a run is checked against, and every check.

The model is the contract applied sequentially, in plain sets and dictionaries, with none of the
stages' batching, RocksDB, epochs or crash handling. It takes its order from where the service
serializes: the learner stage applies `learner-commands` partition by partition in offset order,
so the model replays those logs (duplicates included: every rule is idempotent) after checking
that they carry exactly the input records they should. Inputs are validated with the contract's
pydantic models (not the stages' decoders).

Rules the model spells out (the contract, made precise for redelivery):
  - an attempt's first tracked launch creates it; a repeat is a no-op; a launch that differs is
    a conflict, and a launch once rejected as a conflict stays rejected whenever it comes again;
    a launch an executed physical deletion covers is erased, also when it differs from a stored
    attempt (erased comes before conflict: the deletion's cut-offs never go away);
  - a physical deletion removes what its selector names when it is applied and leaves cut-offs:
    every attempt it removed is erased for good (a later launch of it, whenever launched, is a
    repeat of a removed attempt); a named attempt it did not find covers its launches before
    requested_at; learner_ids, teams and roles cover each named learner's launches before
    requested_at; older_than covers the tenant's launches before the instant; later launches
    they cover are erased;
  - a logical deletion's named attempt covers its launches before max(requested_at, the marked
    record's launched_at + 1 us);
  - a logical deletion marks what its selector names, and marks later launches its cut-offs
    cover in the same way; counts do not change;
  - teams and roles are read from the learner's groups at the position of the part;
  - a request id belongs to the first request the tenant stage sees under it;
  - the latest license (and the latest teams and roles of a learner) is the one produced last,
    whichever partition it landed in (a topic that gained partitions splits a key over two).

Why one module of this size: the model and its checks are one independent reading of the
contract, deliberately apart from the stages; each check is a function of its own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zlib import crc32

from pydantic import ValidationError

from schemas import topics
from schemas.deletions import DeletionRequest
from schemas.groups import LearnerGroups
from schemas.launches import Launch
from schemas.licenses import License
from streams.domain.sources import superseded
from streams.domain.windows import Cut
from streams.stages import commands
from streams.stages.memory import MemoryLog, present
from streams.stages.store import LogRecord
from streams.tools.simulate.naive_windows import DEFAULT, window_of, window_starting

FUTURE = timedelta(hours=1)
UNTRACKED = {"none", "none_resource"}

Ident = tuple[str, str, str]  # tenant, learner, attempt

# the contract's license of a tenant without one; its windows, and every other, come from
# naive_windows.py, never from the stages' streams/domain/windows.py (only `Cut`, a plain value
# the stages' commands name by its id, is theirs)
DEFAULT_CUT = Cut(*DEFAULT)


def _record_time(timestamp_ms: int) -> datetime:
    """A record's Kafka timestamp exactly (a float of seconds is a microsecond off past ~2100)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=timestamp_ms)


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _parse(model: Any, raw: bytes | None) -> Any:
    if raw is None:
        return None
    try:
        raw.decode("utf-8")
        return model.model_validate_json(raw)
    except (ValidationError, UnicodeDecodeError, ValueError, RecursionError):
        return None


def tracked(launch: Launch) -> bool:
    if launch.launched_by != "learner":
        return False
    if launch.content_type is not None and launch.content_type.strip().lower() == "scorm":
        return True
    return launch.tracking.strip().lower() not in UNTRACKED


def cut_of_license(value: dict[str, Any] | None) -> Cut:
    if value is None:
        return DEFAULT_CUT
    return Cut(
        date.fromisoformat(value["cycle_start"]), int(value["window_months"]), value["timezone"]
    )


@dataclass
class Attempt:
    element_id: str
    launched_at: datetime
    text: str
    logically_deleted: bool = False


@dataclass
class Partition:
    """One learner partition of the model."""

    licenses: dict[str, Cut] = field(default_factory=dict)
    license_sources: dict[str, Any] = field(default_factory=dict)
    attempts: dict[Ident, Attempt] = field(default_factory=dict)
    rejected: set[tuple[Ident, str, datetime]] = field(default_factory=set)  # conflicts
    erase_attempt: dict[Ident, datetime] = field(default_factory=dict)
    erase_learner: dict[tuple[str, str], datetime] = field(default_factory=dict)
    erase_tenant: dict[str, datetime] = field(default_factory=dict)
    hide_attempt: dict[Ident, datetime] = field(default_factory=dict)
    hide_learner: dict[tuple[str, str], datetime] = field(default_factory=dict)
    hide_tenant: dict[str, datetime] = field(default_factory=dict)
    groups: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    parts: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    # per preview request: the attempts its earlier parts here would have removed (a preview
    # removes nothing, but its receipt says what the whole physical deletion would do)
    previewed: dict[tuple[str, str], set[Ident]] = field(default_factory=dict)

    def cut(self, tenant: str) -> Cut:
        return self.licenses.get(tenant, DEFAULT_CUT)

    def counts(self, tenant: str, cut: Cut | None = None) -> dict[str, int]:
        cut = cut or self.cut(tenant)
        learners: dict[str, set[str]] = {}
        for (t, learner, _), attempt in self.attempts.items():
            if t == tenant:
                learners.setdefault(
                    window_of(cut, attempt.launched_at).start.isoformat(), set()
                ).add(learner)
        return {w: len(members) for w, members in learners.items()}


def _covered(marks: tuple[dict, dict, dict], ident: Ident, at: datetime) -> bool:
    by_attempt, by_learner, by_tenant = marks
    tenant, learner, _ = ident
    for cutoff in (by_attempt.get(ident), by_learner.get((tenant, learner)), by_tenant.get(tenant)):
        if cutoff is not None and at < cutoff:
            return True
    return False


FOREVER = datetime.max.replace(tzinfo=UTC)  # a removed attempt's cut-off: no launch reaches it


def _later(marks: dict[Any, datetime], key: Any, cutoff: datetime) -> None:
    if key not in marks or marks[key] < cutoff:
        marks[key] = cutoff


class Model:
    """The contract applied to a run's logs (see the module doc)."""

    def __init__(
        self,
        log: MemoryLog,
        partitions: int,
        produced: Sequence[tuple[str, int, int]] | None = None,
    ) -> None:
        self.log = log
        self.partitions = partitions
        # the order the inputs were produced in (None: a key's records share one partition,
        # whose order is theirs)
        self.rank = {position: n for n, position in enumerate(produced or ())}
        self.problems: list[str] = []
        self.parts = [Partition() for _ in range(partitions)]
        self.dead: dict[tuple[str, int, int], set[str]] = {}  # source -> reasons expected
        self.maybe_dead: dict[tuple[str, int, int], set[str]] = {}  # allowed on a replay
        self.seen_tenants: set[str] = set()
        # the counts each learner partition held after each command, per tenant and cut: a
        # published count must be a sum of such counts, one per partition, all on one cut
        self.snapshots: dict[tuple[int, str, str], list[dict[str, int]]] = {}
        # the learner-commands offset of each of those snapshots
        self.snapshot_at: dict[tuple[int, str, str], list[int]] = {}
        # (tenant, request, learner partition) -> the offset where the last of the request's
        # physical parts there was first applied: a count from before it misses the deletion
        self.part_applied_at: dict[tuple[str, str, int], int] = {}
        self.totals: dict[tuple[int, str], list[int]] = {}

    # -- inputs, as the contract reads them ----------------------------------------------------
    def in_produced_order(self, topic: str) -> list[tuple[int, Any]]:
        """A topic's records in the order they were produced."""
        records = list(self.log.all_records(topic))
        if not self.rank:
            return records
        last = len(self.rank)
        return sorted(records, key=lambda pr: self.rank.get((topic, pr[0], pr[1].offset), last))

    def inputs(self) -> None:
        self.launch_rows: set[tuple[Any, ...]] = set()
        for partition, record in self.log.all_records(topics.LAUNCHES):
            source = (topics.LAUNCHES, partition, record.offset)
            launch = _parse(Launch, record.value)
            if launch is None:
                self.dead[source] = {"invalid"}
                continue
            if not tracked(launch):
                continue  # dropped, never dead-lettered, however far ahead
            if launch.launched_at > _record_time(record.timestamp_ms) + FUTURE:
                self.dead[source] = {"future"}
                continue
            self.launch_rows.add(
                (
                    launch.tenant_id,
                    launch.learner_id,
                    launch.element_id,
                    launch.attempt_id,
                    launch.launched_at.isoformat(),
                    partition,
                    record.offset,
                )
            )
        self.final_license: dict[str, dict[str, Any] | None] = {}
        self.license_keys: set[str] = set()
        for partition, record in self.in_produced_order(topics.LICENSES):
            source = (topics.LICENSES, partition, record.offset)
            key = (record.key or b"").decode("utf-8", "replace")
            if record.value is None:
                if _valid_id(key):
                    self.final_license[key] = None
                else:
                    self.dead[source] = {"invalid"}
                continue
            license_ = _parse(License, record.value)
            if license_ is None or (
                record.key is not None and record.key != license_.tenant_id.encode()
            ):
                self.dead[source] = {"invalid"}
                continue
            self.final_license[license_.tenant_id] = license_.model_dump(mode="json")
        self.group_rows: set[tuple[Any, ...]] = set()
        self.final_groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for partition, record in self.in_produced_order(topics.LEARNER_GROUPS):
            source = (topics.LEARNER_GROUPS, partition, record.offset)
            if record.value is None:
                tenant, _, learner = (record.key or b"").decode("utf-8", "replace").partition("/")
                if _valid_id(tenant) and _valid_id(learner):
                    self.group_rows.add((tenant, learner, None, None))
                    self.final_groups[(tenant, learner)] = ([], [])
                else:
                    self.dead[source] = {"invalid"}
                continue
            groups = _parse(LearnerGroups, record.value)
            if groups is None:
                self.dead[source] = {"invalid"}
                continue
            self.group_rows.add(
                (groups.tenant_id, groups.learner_id, tuple(groups.teams), tuple(groups.roles))
            )
            self.final_groups[(groups.tenant_id, groups.learner_id)] = (
                list(groups.teams),
                list(groups.roles),
            )
        for partition, record in self.log.all_records(topics.ATTEMPT_DELETIONS):
            request = _parse(DeletionRequest, record.value)
            ts = _record_time(record.timestamp_ms)
            valid = (
                request is not None
                and request.requested_at <= ts + FUTURE
                and (request.older_than is None or request.older_than <= ts + FUTURE)
            )
            if not valid and _usable_ids(record.value) is None:
                self.dead[(topics.ATTEMPT_DELETIONS, partition, record.offset)] = {"invalid"}

    # -- the learner stage's input, checked and replayed -----------------------------------------
    def learner_commands(self) -> None:
        seen_rows: set[tuple[Any, ...]] = set()
        seen_groups: set[tuple[Any, ...]] = set()
        for p in range(self.partitions):
            model = self.parts[p]
            for record in self.log.records(topics.LEARNER_COMMANDS, p):
                command = commands.decode(record.value)
                touched: set[str] = set()
                match command:
                    case commands.Attempts():
                        for row in command.attempts:
                            key = tuple(row[:7])
                            seen_rows.add(key)
                            if _partition(row[0], row[1], self.partitions) != p:
                                self.problems.append(f"launch {key} routed to partition {p}")
                            self._launch(model, row)
                            touched.add(row[0])
                    case commands.License():
                        source = model.license_sources.get(command.tenant_id)
                        if not superseded(source, command.source):
                            model.licenses[command.tenant_id] = cut_of_license(command.license)
                            model.license_sources[command.tenant_id] = command.source
                        self.seen_tenants.add(command.tenant_id)
                        touched.add(command.tenant_id)
                    case commands.Groups():
                        for tenant, learner, teams, roles, *source in command.groups:
                            seen_groups.add(
                                (
                                    tenant,
                                    learner,
                                    None if teams is None else tuple(teams),
                                    None if roles is None else tuple(roles),
                                )
                            )
                            stored = model.groups.get((tenant, learner))
                            if stored is not None and superseded(stored["source"], list(source)):
                                continue
                            model.groups[(tenant, learner)] = {
                                "teams": teams or [],
                                "roles": roles or [],
                                "source": source,
                            }
                    case commands.DeletionPart():
                        self._part(model, p, command, record.offset)
                        touched.add(command.request["tenant_id"])
                    case commands.Check():
                        pass
                    case _:
                        self.problems.append(f"learner-commands/{p}@{record.offset}: not a command")
                for tenant in touched:
                    self._snapshot(model, p, tenant, record.offset)
        missing = self.launch_rows - seen_rows
        extra = seen_rows - self.launch_rows
        if missing:
            example = sorted(missing)[0]
            self.problems.append(
                f"{len(missing)} tracked launches never reached the learner stage, e.g. {example}"
            )
        if extra:
            example = sorted(extra, key=repr)[0]
            self.problems.append(
                f"{len(extra)} rows reached the learner stage that are no tracked launch, "
                f"e.g. {example}"
            )
        if self.group_rows != seen_groups:
            self.problems.append(
                f"learner-groups rows differ: {len(self.group_rows - seen_groups)} missing, "
                f"{len(seen_groups - self.group_rows)} unknown"
            )

    def _snapshot(self, model: Partition, p: int, tenant: str, offset: int) -> None:
        cut = model.cut(tenant).id
        self.snapshots.setdefault((p, tenant, cut), []).append(model.counts(tenant))
        self.snapshot_at.setdefault((p, tenant, cut), []).append(offset)
        learners = {i[1] for i in model.attempts if i[0] == tenant}
        self.totals.setdefault((p, tenant), [0]).append(len(learners))

    def envelope(
        self, tenant: str, cut: str, start: str, floors: Mapping[int, int] | None = None
    ) -> tuple[int, int] | None:
        """The least and most active learners a sum of partition counts on `cut` can show;
        with `floors`, a partition named there only counts from its learner-commands offset
        on (none: no such sum)."""
        low = high = 0
        for p in range(self.partitions):
            snaps = self.snapshots.get((p, tenant, cut))
            if floors is not None and p in floors:
                offsets = self.snapshot_at.get((p, tenant, cut), [])
                snaps = [s for s, at in zip(snaps or [], offsets, strict=True) if at >= floors[p]]
                if not snaps:
                    return None  # on another cut from the floor on
            elif snaps is None:
                if cut != DEFAULT_CUT.id:
                    return None  # this partition never was on that cut: no such sum
                snaps = [{}]
            elif cut == DEFAULT_CUT.id:
                snaps = [{}, *snaps]  # before its first command, a partition holds nothing
            values = [snap.get(start, 0) for snap in snaps]
            low, high = low + min(values), high + max(values)
        return low, high

    def _launch(self, model: Partition, row: list[Any]) -> None:
        tenant, learner, element, attempt_id, text, src_partition, src_offset = row[:7]
        ident = (tenant, learner, attempt_id)
        at = datetime.fromisoformat(text)
        source = (topics.LAUNCHES, src_partition, src_offset)
        self.seen_tenants.add(tenant)
        stored = model.attempts.get(ident)
        content = (ident, element, at)
        if stored is not None:
            # a replay that sees later commands' state may find this attempt deleted (erased)
            # or deleted and launched again (conflict)
            self.maybe_dead.setdefault(source, set()).update({"erased", "conflict"})
            if stored.launched_at == at and stored.element_id == element:
                return  # a repeat
        # a launch an executed physical deletion covers is erased, whatever attempt is stored
        marks = (model.erase_attempt, model.erase_learner, model.erase_tenant)
        if _covered(marks, ident, at):
            self.dead.setdefault(source, set()).add("erased")
            self.maybe_dead.setdefault(source, set()).add("conflict")
            return
        if stored is not None:
            model.rejected.add(content)
            self.dead.setdefault(source, set()).add("conflict")
            return
        if content in model.rejected:
            self.dead.setdefault(source, set()).add("conflict")
            self.maybe_dead.setdefault(source, set()).add("erased")
            return
        hidden = _covered((model.hide_attempt, model.hide_learner, model.hide_tenant), ident, at)
        model.attempts[ident] = Attempt(element, at, text, hidden)
        self.maybe_dead.setdefault(source, set()).update({"erased", "conflict"})

    def _part(self, model: Partition, p: int, command: commands.DeletionPart, offset: int) -> None:
        request = command.request
        tenant, request_id, mode = request["tenant_id"], request["request_id"], request["mode"]
        key = (tenant, request_id, command.part)
        if key in model.parts:
            return  # a redelivered part: its first application stands
        if mode == "physical":
            self.part_applied_at[(tenant, request_id, p)] = offset
        selector = command.selector
        before = _instant(selector["before"]) if "before" in selector else None
        # the windows a part reports are those of the cut the request was split on (a license
        # changing while the parts run must not make one receipt mix two cuts' windows)
        cut = Cut.from_id(request["cut"]) if request.get("cut") else model.cut(tenant)
        counts = model.counts(tenant, cut)
        if "teams" in selector or "roles" in selector:
            kind = "teams" if "teams" in selector else "roles"
            wanted = set(selector[kind])
            learners = {
                learner
                for (t, learner), groups in model.groups.items()
                if t == tenant and wanted & set(groups.get(kind) or ())
            }
        elif "learner_ids" in selector:
            learners = set(selector["learner_ids"])
        else:
            learners = set()
        chosen: list[Ident] = []
        gone = (
            model.previewed.setdefault((tenant, request_id), set()) if mode == "preview" else set()
        )
        for ident, attempt in model.attempts.items():
            t, learner, attempt_id = ident
            if t != tenant or ident in gone:
                continue
            if "attempts" in selector:
                hit = [learner, attempt_id] in selector["attempts"]
            elif "older_than" in selector:
                hit = attempt.launched_at < _instant(selector["older_than"])
            else:
                hit = learner in learners and attempt.launched_at < before  # type: ignore[operator]
            if hit:
                chosen.append(ident)
        losses: dict[str, int] = {}
        by_learner: dict[str, list[Ident]] = {}
        for ident in chosen:
            by_learner.setdefault(ident[1], []).append(ident)
        for learner, idents in by_learner.items():
            mine = [
                (i, a)
                for i, a in model.attempts.items()
                if i[0] == tenant and i[1] == learner and i not in gone
            ]
            windows_before = {window_of(cut, a.launched_at).start.isoformat() for _, a in mine}
            windows_after = {
                window_of(cut, a.launched_at).start.isoformat() for i, a in mine if i not in idents
            }
            for window in windows_before - windows_after:
                losses[window] = losses.get(window, 0) + 1
        gone.update(chosen)
        # a logical deletion affects the attempts it hides, not those hidden before
        affected = [
            ident
            for ident in chosen
            if mode != "logical" or not model.attempts[ident].logically_deleted
        ]
        model.parts[key] = {
            "attempts_affected": len(affected),
            "learners_affected": len({ident[1] for ident in affected}),
            "learners": {ident[1] for ident in affected},
            "losses": losses if mode != "logical" else {},
            "counts": counts,
            "cut": cut.id,
        }
        if mode == "preview":
            return
        if mode == "physical":
            erase = (model.erase_attempt, model.erase_learner, model.erase_tenant)
        else:
            erase = (model.hide_attempt, model.hide_learner, model.hide_tenant)
        if "attempts" in selector:
            for learner, attempt_id in selector["attempts"]:
                ident = (tenant, learner, attempt_id)
                cutoff = before
                stored = model.attempts.get(ident)
                if stored is not None and stored.launched_at >= before:  # type: ignore[operator]
                    cutoff = stored.launched_at + timedelta(microseconds=1)
                _later(erase[0], ident, cutoff)  # type: ignore[arg-type]
        elif "older_than" in selector:
            _later(erase[2], tenant, _instant(selector["older_than"]))
        else:
            for learner in learners:
                _later(erase[1], (tenant, learner), before)  # type: ignore[arg-type]
        for ident in chosen:
            if mode == "physical":
                # a removed attempt is erased for good: every later launch of it, whenever it
                # was launched
                _later(model.erase_attempt, ident, FOREVER)
                del model.attempts[ident]
            else:
                model.attempts[ident].logically_deleted = True

    # -- the results -----------------------------------------------------------------------------
    def attempts(self) -> dict[Ident, Attempt]:
        out: dict[Ident, Attempt] = {}
        for model in self.parts:
            out.update(model.attempts)
        return out


def _partition(tenant: str, learner: str, partitions: int) -> int:
    return crc32(f"{tenant}/{learner}".encode()) % partitions


def _valid_id(text: str) -> bool:
    return (
        0 < len(text) <= 256
        and "/" not in text
        and not any(ord(c) < 32 or ord(c) == 127 for c in text)
    )


def _usable_ids(raw: bytes | None) -> tuple[str, str] | None:
    try:
        record = json.loads(raw) if raw else None
    except (ValueError, RecursionError, UnicodeDecodeError):
        return None
    if not isinstance(record, dict):
        return None
    request_id, tenant_id = record.get("request_id"), record.get("tenant_id")
    if not (isinstance(request_id, str) and 1 <= len(request_id) <= 256):
        return None
    if not (isinstance(tenant_id, str) and _valid_id(tenant_id)):
        return None
    return request_id, tenant_id


# -- the checks -----------------------------------------------------------------------------------
def check(
    log: MemoryLog,
    partitions: int,
    final_now: datetime,
    produced: Sequence[tuple[str, int, int]] | None = None,
    evaluations: Sequence[tuple[int, int, str, datetime, frozenset[str], frozenset[str]]] = (),
    evaluated: Sequence[EvaluatedCounts] = (),
) -> tuple[Model, list[str]]:
    """The model of a settled run, and every problem found (none: the run is right).
    `produced`: the positions of the input records in the order they were produced;
    `evaluations`: the tenant stages' threshold evaluations (`check_threshold_holds`), and
    `evaluated` the counts those of tenants with a limit saw (`check_counts_after_deletions`)."""
    model = Model(log, partitions, produced)
    model.inputs()
    model.learner_commands()
    problems = model.problems
    expected = model.attempts()
    problems += check_attempts_topic(log, expected)
    problems += check_counts(log, model, expected, final_now)
    problems += check_every_count(log, model)
    problems += check_receipts(log, model)
    problems += check_requests(log, model)
    problems += check_thresholds(log, model, expected, final_now)
    problems += check_event_backing(log)
    problems += check_threshold_holds(log, evaluations)
    problems += check_counts_after_deletions(log, model, evaluated)
    problems += check_dead_letters(log, model)
    problems += check_groups(model)
    return model, problems


def check_attempts_topic(log: MemoryLog, expected: dict[Ident, Attempt]) -> list[str]:
    problems = []
    stored = {key.decode(): json.loads(value) for key, value in log.latest(topics.ATTEMPTS).items()}
    wanted = {"/".join(ident): attempt for ident, attempt in expected.items()}
    for key in sorted(set(stored) - set(wanted)):
        problems.append(f"attempts topic holds {key!r}, which should not exist")
    for key in sorted(set(wanted) - set(stored)):
        problems.append(f"attempts topic lacks {key!r}")
    for key in sorted(set(stored) & set(wanted)):
        record, attempt = stored[key], wanted[key]
        if (
            record["element_id"] != attempt.element_id
            or _instant(record["launched_at"]) != attempt.launched_at
            or record["logically_deleted"] != attempt.logically_deleted
        ):
            problems.append(f"attempts topic: {key!r} is {record}, expected {attempt}")
    return problems


def expected_windows(
    expected: dict[Ident, Attempt], tenant: str, cut: Cut
) -> tuple[dict[str, int], int]:
    windows: dict[str, set[str]] = {}
    learners: set[str] = set()
    for (t, learner, _), attempt in expected.items():
        if t == tenant:
            windows.setdefault(window_of(cut, attempt.launched_at).start.isoformat(), set()).add(
                learner
            )
            learners.add(learner)
    return {w: len(m) for w, m in windows.items()}, len(learners)


def live_counts(log: MemoryLog) -> dict[tuple[str, str], dict[str, Any]]:
    out = {}
    for key, value in log.latest(topics.ACTIVE_LEARNER_COUNTS).items():
        tenant, _, start = key.decode().rpartition("/")
        out[(tenant, start)] = json.loads(value)
    return out


def check_counts(
    log: MemoryLog, model: Model, expected: dict[Ident, Attempt], final_now: datetime
) -> list[str]:
    problems = []
    live = live_counts(log)
    tenants = model.seen_tenants | {t for t, _ in live}
    for tenant in sorted(tenants):
        license_ = model.final_license.get(tenant)
        cut = cut_of_license(license_)
        windows, total = expected_windows(expected, tenant, cut)
        limit = license_["learner_limit"] if license_ else None
        mine = {start: record for (t, start), record in live.items() if t == tenant}
        for start, record in sorted(mine.items()):
            window = window_starting(cut, date.fromisoformat(start))
            if window is None or record["window"]["end"] != window.end.isoformat():
                problems.append(f"{tenant} {start}: a record of a window the cut {cut.id} lacks")
                continue
            if record["active_learners"] != windows.get(start, 0):
                problems.append(
                    f"{tenant} {start}: published {record['active_learners']} active learners, "
                    f"expected {windows.get(start, 0)}"
                )
            if record["learner_limit"] != limit or record["licensed"] != (license_ is not None):
                problems.append(f"{tenant} {start}: limit or licensed flag wrong in {record}")
            if record["window"]["months"] != cut.months:
                problems.append(f"{tenant} {start}: window months wrong in {record}")
            shown = record["utilization_pct"]
            if limit is None:
                cut_right = shown is None
            else:
                # active / limit in %, cut (never rounded up) to two decimals
                share = record["active_learners"] * 100
                cut_right = shown is not None and 0 <= share - shown * limit < limit / 100 + 1e-6
            if not cut_right:
                problems.append(f"{tenant} {start}: utilization_pct wrong in {record}")
        for start, active in sorted(windows.items()):
            if active and start not in mine:
                problems.append(
                    f"{tenant} {start}: no count record, expected {active} active learners"
                )
        if license_ is None and total == 0:
            # no license and no attempt: no tenant (the contract's 404), so no record at all
            for start in sorted(mine):
                problems.append(f"{tenant} {start}: a record, no license or attempt")
        elif tenant in model.seen_tenants:
            current = window_of(cut, final_now).start.isoformat()
            now_record = mine.get(current)
            if now_record is None:
                problems.append(f"{tenant}: no record of the current window {current}")
            elif now_record["total_learners"] != total:
                problems.append(
                    f"{tenant} {current}: published {now_record['total_learners']} total learners, "
                    f"expected {total}"
                )
    return problems


def check_every_count(log: MemoryLog, model: Model) -> list[str]:
    """Every count record ever published, not only the last: its active learners are a sum of
    the learner partitions' counts at some moments, all on one cut (no half-counted window, so
    no false threshold alarm), and its total is within what the partitions held."""
    problems: list[str] = []
    cuts: dict[str, set[str]] = {}
    for _, tenant, cut in model.snapshots:
        cuts.setdefault(tenant, {DEFAULT_CUT.id}).add(cut)
    for _, record in log.all_records(topics.ACTIVE_LEARNER_COUNTS):
        if record.value is None:
            continue
        value = json.loads(record.value)
        tenant, window = value["tenant_id"], value["window"]
        start, active = window["start"], value["active_learners"]
        fits = False
        for cut_id in cuts.get(tenant, {DEFAULT_CUT.id}):
            shape = window_starting(Cut.from_id(cut_id), date.fromisoformat(start))
            if (
                shape is None
                or shape.end.isoformat() != window["end"]
                or shape.months != window["months"]
            ):
                continue
            envelope = model.envelope(tenant, cut_id, start)
            if envelope is not None and envelope[0] <= active <= envelope[1]:
                fits = True
                break
        if not fits:
            problems.append(
                f"{tenant} {start}..{window['end']}: published {active} active learners, which no "
                "moment of the learner partitions adds up to (a half-counted window)"
            )
        high = sum(max(model.totals.get((p, tenant), [0])) for p in range(model.partitions))
        if value["total_learners"] > high:
            published = value["total_learners"]
            problems.append(f"{tenant}: published {published} total learners, more than stored")
    return problems


def check_receipts(log: MemoryLog, model: Model) -> list[str]:
    """One consistent receipt per request; an error receipt for every other request under a
    used request id; the numbers of a request's parts in its receipt."""
    problems: list[str] = []
    receipts: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, record in log.all_records(topics.DELETION_RECEIPTS):
        if record.value is not None:
            receipt = json.loads(record.value)
            receipts.setdefault((receipt["tenant_id"], receipt["request_id"]), []).append(receipt)
    owners: dict[tuple[str, str], dict[str, Any]] = {}
    others: dict[tuple[str, str], set[str]] = {}
    for p in range(model.partitions):
        for record in log.records(topics.TENANT_COMMANDS, p):
            command = commands.decode(record.value)
            if isinstance(command, commands.DeletionRequest):
                request = command.request
                key, fingerprint = (
                    (request["tenant_id"], request["request_id"]),
                    request["fingerprint"],
                )
            elif isinstance(command, commands.DeletionError):
                request = command.receipt
                key, fingerprint = (
                    (request["tenant_id"], request["request_id"]),
                    command.fingerprint,
                )
            else:
                continue
            if key not in owners:
                owners[key] = {
                    "fingerprint": fingerprint,
                    "request": request,
                    "error": isinstance(command, commands.DeletionError),
                }
            elif owners[key]["fingerprint"] != fingerprint:
                others.setdefault(key, set()).add(fingerprint)
    for key, owner in sorted(owners.items()):
        got = receipts.get(key, [])
        distinct = {json.dumps(r, sort_keys=True) for r in got}
        if not got:
            problems.append(f"request {key}: no receipt")
            continue
        if len(distinct) > 1 + len(others.get(key, ())):
            problems.append(f"request {key}: {len(distinct)} different receipts")
        if owner["error"]:
            if not any(r.get("error") for r in got):
                problems.append(f"request {key}: an invalid request without an error receipt")
            continue
        request = owner["request"]
        good = [r for r in got if r.get("error") is None]
        if not good:
            problems.append(f"request {key}: no successful receipt ({got[0].get('error')})")
            continue
        receipt = good[0]
        parts = {k: v for p in model.parts for k, v in p.parts.items() if k[:2] == key}
        cuts = sorted({v["cut"] for v in parts.values()})
        if len(cuts) > 1:
            problems.append(f"request {key}: its parts counted windows of several cuts {cuts}")
        attempts = sum(v["attempts_affected"] for v in parts.values())
        # distinct learners: a learner's named attempts may be cut into two parts
        learners = len(set().union(*(v["learners"] for v in parts.values())))
        if (receipt["attempts_affected"], receipt["learners_affected"]) != (attempts, learners):
            problems.append(
                f"request {key}: receipt says {receipt['attempts_affected']} attempts and "
                f"{receipt['learners_affected']} learners, the parts {attempts} and {learners}"
            )
        losses: dict[str, int] = {}
        before: dict[str, int] = {}
        for value in parts.values():
            for window, lost in value["losses"].items():
                losses[window] = losses.get(window, 0) + lost
        for model_part in model.parts:
            numbers = sorted(k[2] for k in model_part.parts if k[:2] == key)
            if numbers:
                for window, n in model_part.parts[(*key, numbers[0])]["counts"].items():
                    before[window] = before.get(window, 0) + n
        shown = {w["start"]: (w["active_before"], w["active_after"]) for w in receipt["windows"]}
        wanted = {
            w: (before.get(w, 0), before.get(w, 0) - lost) for w, lost in losses.items() if lost
        }
        if shown != wanted:
            problems.append(f"request {key}: receipt windows {shown}, expected {wanted}")
        if receipt["mode"] != request["mode"] or receipt["selector"] != request["selector"]:
            problems.append(f"request {key}: receipt mode or selector differs from the request")
    for key in sorted(others):
        errors = [r for r in receipts.get(key, []) if r.get("error")]
        if not errors:
            problems.append(f"request {key}: reused for another request without an error receipt")
    return problems


def _selector_of(kind: str, values: Any) -> tuple[str, Any]:
    """A selector as a comparable value, from its `{kind, values}` or its request's field."""
    if kind == "attempts":
        return kind, frozenset((v["learner_id"], v["attempt_id"]) for v in values)
    if kind == "older_than":
        value = values[0] if isinstance(values, list) else values
        return kind, _instant(value) if isinstance(value, str) else value
    return kind, frozenset(values)


def check_requests(log: MemoryLog, model: Model) -> list[str]:
    """Every successful receipt is that of a request of the input, as it was written (mode,
    selector, requested_at, requested_by, reason), and the parts the learner stage applied
    for it are that request, cut by learner partition: each named learner's items in its own
    partition, all of them once, the request's `requested_at` as their `before`; a tenant-wide
    selector in every partition. (The receipt and the model's counts are computed from the parts
    the stages sent: without this, a request mangled on its way was checked against itself.)"""
    problems: list[str] = []
    wanted: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, record in log.all_records(topics.ATTEMPT_DELETIONS):
        request = _parse(DeletionRequest, record.value)
        if request is None:
            continue
        kinds = ("attempts", "learner_ids", "older_than", "teams", "roles")
        kind = next((k for k in kinds if getattr(request, k) is not None), None)
        if kind is None:
            continue
        value = getattr(request, kind)
        if kind == "attempts":
            value = [{"learner_id": a.learner_id, "attempt_id": a.attempt_id} for a in value]
        wanted.setdefault((request.tenant_id, request.request_id), []).append(
            {
                "mode": request.mode,
                "selector": _selector_of(kind, value),
                "requested_at": request.requested_at,
                "requested_by": request.requested_by,
                "reason": request.reason,
            }
        )
    parts: dict[tuple[str, str], dict[int, tuple[int, commands.DeletionPart]]] = {}
    for p in range(model.partitions):
        for record in log.records(topics.LEARNER_COMMANDS, p):
            command = commands.decode(record.value)
            if isinstance(command, commands.DeletionPart):
                key = (command.request["tenant_id"], command.request["request_id"])
                parts.setdefault(key, {})[command.part] = (p, command)
    answered = {
        (receipt["tenant_id"], receipt["request_id"])
        for _, record in log.all_records(topics.DELETION_RECEIPTS)
        if record.value is not None
        for receipt in [json.loads(record.value)]
    }
    for partition, record in log.all_records(topics.ATTEMPT_DELETIONS):
        ids = _usable_ids(record.value)
        if ids is not None and (ids[1], ids[0]) not in answered:
            source = (topics.ATTEMPT_DELETIONS, partition, record.offset)
            problems.append(f"request {(ids[1], ids[0])} of {source}: no receipt")
    for _, record in log.all_records(topics.DELETION_RECEIPTS):
        if record.value is None:
            continue
        receipt = json.loads(record.value)
        if receipt.get("error") is not None:
            continue
        key = (receipt["tenant_id"], receipt["request_id"])
        selector = receipt["selector"]
        got = {
            "mode": receipt["mode"],
            "selector": _selector_of(selector["kind"], selector["values"]),
            "requested_at": _instant(receipt["requested_at"]),
            "requested_by": receipt.get("requested_by"),
            "reason": receipt.get("reason"),
        }
        if got not in wanted.get(key, []):
            problems.append(f"request {key}: receipt {got} is no input's request")
            continue
        kind, values = got["selector"]
        mine = parts.get(key, {})
        numbers = sorted(mine)
        if not numbers or numbers != list(range(mine[numbers[0]][1].parts)):
            problems.append(f"request {key}: parts {numbers} reached the learner stage")
            continue
        covered: set[Any] = set()
        where: set[int] = set()
        for p, part in mine.values():
            where.add(p)
            meta, chosen = part.request, part.selector
            if meta["mode"] != got["mode"] or _instant(meta["requested_at"]) != got["requested_at"]:
                problems.append(f"request {key}: part {part.part} says {meta}")
            if kind == "older_than":
                if _instant(chosen["older_than"]) != values:
                    problems.append(f"request {key}: part {part.part} cuts at {chosen}")
                continue
            if _instant(chosen["before"]) != got["requested_at"]:
                problems.append(
                    f"request {key}: part {part.part} selects before {chosen['before']}"
                )
            if kind in ("teams", "roles"):
                if frozenset(chosen[kind]) != values:
                    problems.append(f"request {key}: part {part.part} selects {chosen}")
                continue
            for item in chosen[kind]:
                learner = item[0] if kind == "attempts" else item
                if _partition(key[0], learner, model.partitions) != p:
                    problems.append(f"request {key}: {item} sent to learner partition {p}")
                covered.add(tuple(item) if kind == "attempts" else item)
        if kind in ("attempts", "learner_ids") and covered != set(values):
            problems.append(
                f"request {key}: its parts select {sorted(covered)}, not {sorted(values)}"
            )
        if where != set(range(model.partitions)):
            problems.append(f"request {key}: parts in learner partitions {sorted(where)} only")
    return problems


def check_thresholds(
    log: MemoryLog, model: Model, expected: dict[Ident, Attempt], final_now: datetime
) -> list[str]:
    """Per window and threshold: the distinct events alternate up/down from `up`, their ids
    number the crossings, and the last agrees with the window's last count."""
    from streams.domain.thresholds import event_id

    problems: list[str] = []
    sequences: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    by_id: dict[str, dict[str, Any]] = {}
    last: dict[tuple[str, str, int], dict[str, Any]] = {}
    for _, record in log.all_records(topics.THRESHOLD_EVENTS):
        event = json.loads(record.value or b"null")
        key = (event["tenant_id"], event["window"]["start"], event["threshold_pct"])
        known = by_id.get(event["event_id"])
        if known is None:
            by_id[event["event_id"]] = event
            sequences.setdefault(key, []).append(event)
        elif known != event:
            problems.append(f"event {event['event_id']} sent twice with different contents")
        last[key] = event
    for key, events in sorted(sequences.items()):
        for n, event in enumerate(events, start=1):
            direction = "up" if n % 2 else "down"
            if event["direction"] != direction or event["event_id"] != event_id(*key, direction, n):
                shown = f"{event['direction']} with id {event['event_id']}"
                problems.append(f"threshold {key}: event {n} is {shown}")
                break
    live = live_counts(log)
    for (tenant, start), count in sorted(live.items()):
        license_ = model.final_license.get(tenant)
        if not license_ or license_["learner_limit"] is None:
            continue
        for pct in license_["thresholds"]:
            learners = -(-license_["learner_limit"] * pct // 100)  # ceil(limit x pct / 100)
            above = count["active_learners"] >= learners
            event = last.get((tenant, start, pct))
            if event is None:
                if above:
                    problems.append(
                        f"threshold {tenant} {start} {pct}%: reached, but no `up` event"
                    )
            elif (event["direction"] == "up") != above:
                problems.append(
                    f"threshold {tenant} {start} {pct}%: last event {event['direction']}, "
                    f"count {count['active_learners']} of {learners}"
                )
    return problems


def check_event_backing(log: MemoryLog) -> list[str]:
    """Every threshold event is consistent in itself: its threshold_learners is
    ceil(limit x pct / 100), and its direction is the side of the threshold its count is on.

    Whether a count record showed its count is not checked: a crash after the tenant stage's
    state was written loses the flush's count record and its events alike; the takeover sends
    the events again from the state (nothing lost) but the counts as they are by then (a later
    count, or a tombstone when a license removed the window), so the count an event names may
    never have been on the count topic (seed 10490110 with 1,500 actions).

    An event sent again is identical (a takeover sends it from the state), and its `notify`
    list is one a license of its tenant named (the state keeps lists apart from the events)."""
    problems: list[str] = []
    seen: dict[str, dict[str, Any]] = {}
    notify_lists: dict[str, list[list[str]]] = {}
    for _, record in log.all_records(topics.LICENSES):
        try:
            license_ = json.loads(record.value or b"null")
        except ValueError:
            continue  # hostile input: dead-lettered
        if isinstance(license_, dict) and isinstance(license_.get("notify"), list):
            notify_lists.setdefault(str(license_.get("tenant_id")), []).append(license_["notify"])
    for _, record in log.all_records(topics.THRESHOLD_EVENTS):
        event = json.loads(record.value or b"null")
        window = event["window"]
        what = (
            f"event {event['tenant_id']} {window['start']} {event['threshold_pct']}% "
            f"{event['direction']}"
        )
        first = seen.setdefault(event["event_id"], event)
        if first is not event:
            if event != first:
                problems.append(f"{what}: sent again as {event}, first as {first}")
            continue
        if event["notify"] not in notify_lists.get(event["tenant_id"], []):
            problems.append(f"{what}: notify {event['notify']} is no license's")
        wanted = -(-event["learner_limit"] * event["threshold_pct"] // 100)  # the contract's ceil
        if event["threshold_learners"] != wanted:
            problems.append(f"{what}: threshold_learners {event['threshold_learners']} != {wanted}")
        above = event["active_learners"] >= event["threshold_learners"]
        if above != (event["direction"] == "up"):
            problems.append(f"{what}: {event['active_learners']} of {event['threshold_learners']}")
    return problems


def check_threshold_holds(
    log: MemoryLog,
    evaluations: Sequence[tuple[int, int, str, datetime, frozenset[str], frozenset[str]]],
) -> list[str]:
    """No threshold is evaluated while an open physical deletion holds its tenant.

    A physical deletion's parts reach the learner partitions one after another; an evaluation
    in between would mail a crossing at a count on the way, so the tenant stage holds a
    tenant's thresholds from its request to the report of its last part, for at most
    HOLD_LIMIT of the commands' time, and only the first OPEN_KEPT open deletions of a tenant
    hold (streams/stages/tenant_deletions.py). The holds are read here from `tenant-commands`,
    which the tenant stage applies in offset order: a physical request holds from its command
    when it is the first command under its request id (another is a redelivery or a
    conflict); the report that brings its last distinct part releases it. `evaluations` are
    the stages' threshold evaluations, each with the command it ran for (every worker, deposed
    ones and replays included: each applies the commands in the same order) and the requests
    of the tenant its state had completed: a replay after a crash applies commands again to a
    state restored past them, whose counts are the deletion's end, so a hold ended there."""
    from streams.stages.tenant_deletions import HOLD_LIMIT

    holds = deletion_holds(log)
    problems = []
    for partition, offset, tenant, now, completed, known in evaluations:
        for request_id, opened, released, since, dropped_by in holds.get((partition, tenant), []):
            inside = opened < offset and (released is None or offset < released)
            # a state restored past the hold's end: the request complete, or the later request
            # that dropped it for its age applied
            past = request_id in completed or dropped_by in known
            if inside and now - since < HOLD_LIMIT and not past:
                problems.append(
                    f"thresholds of {tenant} evaluated for tenant-commands {partition}/{offset} "
                    f"(at {now.isoformat()}) while deletion {request_id} held them (from "
                    f"{partition}/{opened}, since {since.isoformat()}, to {released})"
                )
                break
    return sorted(set(problems))


# what `ObservedTenantStage` (streams/tools/simulate/world.py) records of a threshold evaluation
# of a tenant with a limit: (tenant-commands partition, the offset of the command it ran for,
# tenant, its now, [(window start, end, months, active)], the partial count of each learner
# partition it summed: {partition: (cut, windows)}, and the end offset of each learner-commands
# partition then: no count it holds saw a command past it)
EvaluatedCounts = tuple[
    int,
    int,
    str,
    datetime,
    list[tuple[str, str, int, int]],
    dict[int, tuple[str, dict[str, int]]],
    dict[int, int],
]


def check_counts_after_deletions(
    log: MemoryLog, model: Model, evaluated: Sequence[EvaluatedCounts]
) -> list[str]:
    """A threshold evaluation after a physical deletion completed sees what the deletion left.

    Once the report of a request's last part is in (the end of its hold in `deletion_holds`),
    every evaluation of its tenant's thresholds counts each learner partition from that
    partition's last part of the request on: a count from before a part named a crossing the
    deletion undid (a `down` at 8 where it left 7). A part applied while its partition caught
    up after a takeover reports no count, and the request waits for a newer one
    (streams/stages/tenant_deletions.py: AWAITING), at most HOLD_LIMIT: an evaluation past
    that may see the older count, and is not checked. Nor is one of a hold that is not certain
    (`_certain`) or that a later request dropped for its age.

    Two readings: each window's sum must be one the partitions held from their parts on
    (`Model.envelope` with floors); and each partition's own count must be one the model's
    partition held between its part and the end of its learner-commands at the evaluation (no
    count the tenant stage holds then can have seen a later command). The sum alone, over
    every count from the part to the end of the run, let a count from before a part through
    whenever the partition later held as many again (helper-79)."""
    from streams.stages.tenant_deletions import HOLD_LIMIT

    holds = deletion_holds(log)
    cuts: dict[str, set[str]] = {}
    for _, tenant, cut in model.snapshots:
        cuts.setdefault(tenant, {DEFAULT_CUT.id}).add(cut)
    problems = []
    for partition, offset, tenant, now, seen, partials, ends in evaluated:
        floors: dict[int, int] = {}
        after = []
        for request_id, _, released, since, dropped_by in holds.get((partition, tenant), []):
            if released is None or offset < released or dropped_by is not None:
                continue
            if now - since >= HOLD_LIMIT:
                continue  # its wait for counts is over
            after.append(request_id)
            for p in range(model.partitions):
                applied = model.part_applied_at.get((tenant, request_id, p))
                if applied is not None:
                    floors[p] = max(floors.get(p, -1), applied)
        if not floors:
            continue
        starts = [start for start, *_ in seen]
        for p, floor in sorted(floors.items()):
            partial = partials.get(p)
            if not _held_after(model, tenant, p, (floor, ends.get(p, 0)), partial, starts):
                problems.append(
                    f"thresholds of {tenant} evaluated for tenant-commands {partition}/{offset} "
                    f"on learner partition {p}'s count {partial}, which it never held from "
                    f"deletion {', '.join(sorted(after))}'s part (learner-commands {floor}) "
                    f"to {ends.get(p, 0)}"
                )
        for start, end, months, active in seen:
            if not _fits_after(model, tenant, cuts, start, end, months, active, floors):
                problems.append(
                    f"thresholds of {tenant} evaluated for tenant-commands {partition}/{offset} "
                    f"on {active} active learners in {start}..{end}, a count from before "
                    f"deletion {', '.join(sorted(after))} (its parts at learner-commands "
                    f"{floors})"
                )
                break
    return sorted(set(problems))


def _held_after(
    model: Model,
    tenant: str,
    p: int,
    span: tuple[int, int],
    partial: tuple[str, dict[str, int]] | None,
    starts: Sequence[str],
) -> bool:
    """Whether learner partition `p` held `partial`'s counts in the windows `starts` (None: no
    count: none there) right after a command of the tenant in [span): the partial count of a
    moment from the part on."""
    floor, end = span
    for (partition, t, cut), offsets in model.snapshot_at.items():
        if partition != p or t != tenant or (partial is not None and cut != partial[0]):
            continue
        windows = {} if partial is None else partial[1]
        for at, counts in zip(offsets, model.snapshots[(partition, t, cut)], strict=True):
            if floor <= at < end and all(windows.get(s, 0) == counts.get(s, 0) for s in starts):
                return True
    return False


def _fits_after(
    model: Model,
    tenant: str,
    cuts: dict[str, set[str]],
    start: str,
    end: str,
    months: int,
    active: int,
    floors: Mapping[int, int],
) -> bool:
    """Whether some cut of the tenant has this window and a sum of partition counts from the
    floors on that is `active`."""
    for cut_id in cuts.get(tenant, {DEFAULT_CUT.id}):
        shape = window_starting(Cut.from_id(cut_id), date.fromisoformat(start))
        if shape is None or shape.end.isoformat() != end or shape.months != months:
            continue
        envelope = model.envelope(tenant, cut_id, start, floors)
        if envelope is not None and envelope[0] <= active <= envelope[1]:
            return True
    return False


# a hold: (request, the offset of its command, where it ends or None, since, the request that
# dropped it for its age or None)
Hold = tuple[str, int, int | None, datetime, str | None]


def deletion_holds(
    log: MemoryLog,
) -> dict[tuple[int, str], list[Hold]]:
    """Per (tenant-commands partition, tenant): each hold of a physical deletion as
    (request, the offset of its command, the offset where it ends or None, since).

    Which deletions hold when more than OPEN_KEPT are open at once depends on the history: a
    replay after a crash applies a request again to a state where others were released, or
    opened (a state restored past the command). So a hold is only certain, and listed, when
    fewer than OPEN_KEPT other holds overlap it."""
    from streams.stages.tenant_deletions import HOLD_LIMIT, OPEN_KEPT

    # (partition, tenant) -> [(request, its command's offset, the release's or None, since)]
    holds: dict[tuple[int, str], list[Hold]] = {}
    aged: dict[int, Callable[[datetime], int | None]] = {}
    # the requests a report without its count may have kept open after their last one
    # (a part applied while its learner partition caught up: AWAITING)
    uncounted: set[tuple[int, str, str]] = set()
    for partition, records in sorted(log.topics.get(topics.TENANT_COMMANDS, {}).items()):
        seen: set[tuple[str, str]] = set()
        open_: dict[str, dict[str, tuple[int, datetime]]] = {}  # tenant -> request -> hold
        reported: dict[tuple[str, str], set[int]] = {}
        for record in present(records):
            command = _command(record.value)
            kind = command.get("kind")
            now = datetime.fromtimestamp(record.timestamp_ms / 1000, UTC)
            if kind in ("deletion-request", "deletion-error"):
                request = command["request" if kind == "deletion-request" else "receipt"]
                tenant, request_id = request["tenant_id"], request["request_id"]
                if (tenant, request_id) in seen:
                    continue  # a redelivery, a replay or a conflict: no hold of its own
                seen.add((tenant, request_id))
                if kind == "deletion-request" and request["mode"] == "physical":
                    holding = {}
                    for r, (opened, since) in open_.get(tenant, {}).items():
                        if now - since < HOLD_LIMIT:
                            holding[r] = (opened, since)
                        else:  # past the limit: the stage forgets it here
                            entry: Hold = (r, opened, record.offset, since, request_id)
                            holds.setdefault((partition, tenant), []).append(entry)
                    holding[request_id] = (record.offset, now)
                    open_[tenant] = holding
            elif kind == "deletion-part":
                request = command["request"]
                tenant, request_id = request["tenant_id"], request["request_id"]
                report = command.get("report") or {}
                if report.get(commands.CATCHING_UP) and commands.PARTIAL_AFTER not in report:
                    uncounted.add((partition, tenant, request_id))
                hold = open_.get(tenant, {}).get(request_id)
                if hold is None:
                    continue
                parts = reported.setdefault((tenant, request_id), set())
                parts.add(command["part"])
                if len(parts) >= command["parts"]:
                    del open_[tenant][request_id]
                    entry = (request_id, hold[0], record.offset, hold[1], None)
                    holds.setdefault((partition, tenant), []).append(entry)
        for tenant, requests in open_.items():
            for request_id, (offset, since) in requests.items():
                entry = (request_id, offset, None, since, None)
                holds.setdefault((partition, tenant), []).append(entry)
        aged[partition] = _aged(present(records), HOLD_LIMIT)

    def reach(partition: int, tenant: str) -> Callable[[Hold], int | None]:
        def until(hold: Hold) -> int | None:
            if (partition, tenant, hold[0]) not in uncounted:
                return hold[2]
            old = aged[partition](hold[3])
            return None if hold[2] is None or old is None else max(hold[2], old)

        return until

    return {
        (partition, tenant): _certain(spans, OPEN_KEPT, reach(partition, tenant))
        for (partition, tenant), spans in holds.items()
    }


def _aged(records: Sequence[LogRecord], limit: timedelta) -> Callable[[datetime], int | None]:
    """The offset of the first command of a partition whose time is `limit` past an instant
    (None if none is)."""
    offsets = [record.offset for record in records]
    stamps = [record.timestamp_ms for record in records]

    def first_past(since: datetime) -> int | None:
        bound = since.timestamp() * 1000 + limit.total_seconds() * 1000
        index = next((i for i, stamp in enumerate(stamps) if stamp >= bound), None)
        return None if index is None else offsets[index]

    return first_past


def _certain(
    holds: list[Hold], kept: int, until: Callable[[Hold], int | None] = lambda hold: hold[2]
) -> list[Hold]:
    """The holds that fewer than `kept` other holds overlap (in command offsets). Another
    hold counts as far as `until` says: to its release, or, for a request a part of which was
    reported without its count, until it is HOLD_LIMIT old: the report of its last part may
    leave it open, waiting for a newer count (AWAITING, streams/stages/tenant_deletions.py),
    and while it waits it takes one of the `kept` places (seed 16940237 of
    SIMULATE_REPAIR_FAULTS=1: a hold kept open so left a later request unheld under
    OPEN_KEPT=1, and the check took the later one for certain)."""

    def overlap(a: Hold, b: Hold) -> bool:
        end = until(b)
        return (end is None or a[1] < end) and (a[2] is None or b[1] < a[2])

    return [hold for hold in holds if sum(overlap(hold, other) for other in holds) - 1 < kept]


def _command(value: bytes | None) -> dict[str, Any]:
    try:
        command = json.loads(value or b"null")
    except ValueError:
        return {}
    return command if isinstance(command, dict) else {}


def check_groups(model: Model) -> list[str]:
    """Every learner's teams and roles, as the learner stage applied its commands, are those of
    the learner's latest learner-groups record."""
    problems = []
    for (tenant, learner), (teams, roles) in sorted(model.final_groups.items()):
        applied = model.parts[_partition(tenant, learner, model.partitions)].groups
        stored = applied.get((tenant, learner))
        got = (stored["teams"], stored["roles"]) if stored is not None else None
        if got != (teams, roles):
            problems.append(
                f"groups of {tenant}/{learner}: the learner stage holds {got}, the latest "
                f"record says {(teams, roles)}"
            )
    return problems


INPUT_TOPICS = (topics.LAUNCHES, topics.LICENSES, topics.ATTEMPT_DELETIONS, topics.LEARNER_GROUPS)


def check_dead_letters(log: MemoryLog, model: Model) -> list[str]:
    problems: list[str] = []
    seen: dict[tuple[str, int, int], set[str]] = {}
    inputs = {
        (topic, partition, record.offset): record.value
        for topic in INPUT_TOPICS
        for partition, record in log.all_records(topic)
    }
    for _, record in log.all_records(topics.DEAD_LETTERS):
        letter = json.loads(record.value or b"null")
        source = letter["source"]
        seen.setdefault((source["topic"], source["partition"], source["offset"]), set()).add(
            letter["reason"]
        )
        where = (source["topic"], source["partition"], source["offset"])
        if where[0] in INPUT_TOPICS:
            value = inputs[where]
            raw = letter.get("raw")
            if raw is not None and letter.get("raw_encoding") == "base64":
                kept: bytes | None = base64.b64decode(raw)
            else:
                kept = None if raw is None else raw.encode("utf-8")
            if value is None or len(value) < 100_000:
                wrong = kept != value
            else:
                wrong = kept is None or not value.startswith(kept)
            if wrong:
                problems.append(f"{where}: dead letter's raw is not the record's value")
    for source, reasons in sorted(model.dead.items()):
        if not reasons & seen.get(source, set()):
            problems.append(f"{source}: no dead letter ({'/'.join(sorted(reasons))})")
    for source, reasons in sorted(seen.items()):
        allowed = model.dead.get(source, set()) | model.maybe_dead.get(source, set())
        if source[0] in INPUT_TOPICS and reasons - allowed:
            # (a license, a groups record or a deletion request with usable ids dead-lettered
            # was not looked at before: a request without its receipt went unnoticed)
            problems.append(f"{source}: dead letter {sorted(reasons - allowed)} not expected")
        if source[0] in (topics.LEARNER_COMMANDS, topics.TENANT_COMMANDS):
            # the stages write them: a dead letter of one is a stage's failure, also one that
            # gave up a part of a command (a tenant's partial counts) and went on
            problems.append(f"{source}: dead letter of a command {sorted(reasons)}")
    return problems


def attempts_of_state(states: Iterable[dict[bytes, bytes]]) -> dict[str, dict[str, Any]]:
    out = {}
    for rows in states:
        for key, value in rows.items():
            out[key.decode()] = json.loads(value)
    return out
