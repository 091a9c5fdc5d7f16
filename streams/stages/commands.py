"""Every command the stages send each other, as small declared types, in one place.

On the wire a command is a JSON object with a `kind`; `decode()` turns one back into its type,
and a stage dispatches on the type with `match`. orjson writes dataclasses natively, so
`encode()` costs what a dict would.

learner-commands (one partition per tenant/learner, streams/domain/partitioning.py)
  Attempts         the tracked launches of one ingest batch that belong to this partition, in
                   input order: rows [tenant, learner, element, attempt, launched_at, source
                   partition, source offset, raw | null, timestamp ms]; `raw` is the launch as
                   received when small (else it is read back by its position)
  License          a tenant's license (null: the default one), sent to every partition
  Groups           learners' teams and roles: rows [tenant, learner, teams | null, roles | null,
                   source partition, source offset]
  DeletionPart     one part of a deletion request: the learners of this partition it concerns
  Check            look for a deposed owner's writes in this partition's changelogs

tenant-commands (one partition per tenant)
  License          the same license, for the tenant stage
  Partials         absolute counts {tenant: {learner partition: partial}} (streams/domain/tenants)
  DeletionRequest  a valid deletion request: checked against its request id, then split in parts
  DeletionError    an invalid request that names its request and tenant: an error receipt
  PartReport       what one part did (or would do)
  Tick             the wall clock moved on: open windows that began, look for zombie writes
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(slots=True)
class Attempts:
    topic: str  # the launches topic (its real name, for dead letters)
    attempts: list[list[Any]]
    kind: str = field(default="attempts", init=False)


@dataclass(slots=True)
class License:
    tenant_id: str
    license: dict[str, Any] | None
    # [partition, offset, timestamp] of the license record: an older one (a deposed worker's
    # late send, a replay) never replaces a newer one (streams/domain/sources.py)
    source: list[int] | None = None
    kind: str = field(default="license", init=False)


@dataclass(slots=True)
class Groups:
    groups: list[list[Any]]
    kind: str = field(default="groups", init=False)


@dataclass(slots=True)
class DeletionPart:
    request: dict[str, Any]  # request_id, tenant_id, mode, requested_at
    part: int
    parts: int
    # {attempts: [[learner, attempt], ...], before} | {learner_ids: [...], before}
    # | {older_than} | {teams: [...], before} | {roles: [...], before}
    selector: dict[str, Any]
    kind: str = field(default="deletion", init=False)


@dataclass(slots=True)
class Check:
    kind: str = field(default="check", init=False)


@dataclass(slots=True)
class Partials:
    tenants: dict[str, dict[str, Any]]
    kind: str = field(default="partials", init=False)


@dataclass(slots=True)
class DeletionRequest:
    # request_id, tenant_id, mode, requested_at, selector {kind, values}, requested_by, reason,
    # fingerprint (what makes two deliveries the same request)
    request: dict[str, Any]
    kind: str = field(default="deletion-request", init=False)


@dataclass(slots=True)
class DeletionError:
    receipt: dict[str, Any]
    fingerprint: str
    kind: str = field(default="deletion-error", init=False)


@dataclass(slots=True)
class PartReport:
    request: dict[str, Any]
    part: int
    parts: int
    partition: int
    report: dict[str, Any]
    kind: str = field(default="deletion-part", init=False)


# the key of a part's report that carries its partition's partial count of the tenant after
# the part (as `Partials` carries it); inside the report, so that an older worker reads past it
PARTIAL_AFTER = "partial_after"
# in a physical part's report: applied while the learner partition caught up after a takeover,
# so without its count after the part (streams/stages/tenant_deletions.py: UNCOUNTED); its
# value is the new owner's epoch (`true` from a worker of an older version)
CATCHING_UP = "catching_up"


@dataclass(slots=True)
class Tick:
    now: str  # ISO instant of the wall clock that sent it
    kind: str = field(default="tick", init=False)


Command = (
    Attempts
    | License
    | Groups
    | DeletionPart
    | Check
    | Partials
    | DeletionRequest
    | DeletionError
    | PartReport
    | Tick
)

_TYPES: dict[str, type[Any]] = {
    "attempts": Attempts,
    "license": License,
    "groups": Groups,
    "deletion": DeletionPart,
    "check": Check,
    "partials": Partials,
    "deletion-request": DeletionRequest,
    "deletion-error": DeletionError,
    "deletion-part": PartReport,
    "tick": Tick,
}


def encode(command: Command) -> bytes:
    # a bytes of its own size: orjson's keep their 4 KiB buffer (see dead_letters.encode)
    return bytes(memoryview(orjson.dumps(command)))


def decode(value: bytes | None) -> Command | None:
    """A command from its JSON bytes; None when it is not one (the caller logs it)."""
    try:
        data = orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.pop("kind", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return None
    try:
        command: Command = cls(**data)
    except TypeError:
        return None
    return command
