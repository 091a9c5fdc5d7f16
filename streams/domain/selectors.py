"""The deletion selector: which attempts of a tenant a request names, in one shape.

`kind` is one of attempts, learner_ids, older_than, teams, roles; `values` holds what it names
(attempts: (learner, attempt) pairs; older_than: one instant; the others: ids), sorted and
without repeats, so two requests that name the same attempts have equal selectors. It travels as
`{"kind", "values"}` (the receipts echo it that way) and its `fingerprint`, with the mode and
`requested_at`, tells a redelivered request from another request under the same request id.

It is the one shape of a selector everywhere: the CLI, the dashboard and the API build one and
`build_request` (streams/domain/deletions.py) writes it into a request; routing reads it from a
validated request; the tenant stage cuts it into parts (a part's share of it, with the time it
applies before, is a `PartSelector`); the independent recount asks it what it selects.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

KINDS = ("attempts", "learner_ids", "older_than", "teams", "roles")
PER_LEARNER = ("attempts", "learner_ids")
GROUP_KINDS = ("teams", "roles")

# The most a request's selector may take, as JSON: about 35,000 learner ids of 12 characters.
# Every record the service writes for a request (the request's command, the request stored
# with its receipt and the error receipts of conflicting requests, its parts, its receipt)
# holds the selector at most once and stays below Kafka's 1 MiB with it. A larger request gets
# an error receipt that asks to split it.
SELECTOR_MAX_BYTES = 512 * 1024


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_LINE_END = re.compile(r"\r\n|\r|\n")


def id_lines(text: str) -> list[str]:
    """The ids of a text written one a line (a learners file, a form's text box), white space
    around each dropped. Lines end at CR and LF only: `str.splitlines` also ends them at
    U+2028, U+2029 and U+0085, which are valid in an id, and cut such an id in two ids that
    name other learners (or none)."""
    return [line.strip() for line in _LINE_END.split(text) if line.strip()]


@dataclass(frozen=True)
class Selector:
    kind: str
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown selector {self.kind!r}")

    @classmethod
    def of_request(cls, request: Any) -> Selector:
        """The selector of a validated `schemas.deletions.DeletionRequest`."""
        if request.attempts is not None:
            pairs = {(ref.learner_id, ref.attempt_id) for ref in request.attempts}
            return cls("attempts", tuple(sorted(pairs)))
        if request.older_than is not None:
            return cls("older_than", (request.older_than,))
        for kind in ("learner_ids", "teams", "roles"):
            ids = getattr(request, kind)
            if ids is not None:
                return cls(kind, tuple(sorted(set(ids))))
        raise ValueError("the request has no selector")

    @classmethod
    def of(cls, kind: str, values: Iterable[Any]) -> Selector:
        """A selector from plain values: attempts as `{learner_id, attempt_id}` or pairs,
        older_than as one instant (a datetime or ISO text), the others as ids."""
        values = list(values)
        if kind == "attempts":
            pairs = {
                (v["learner_id"], v["attempt_id"]) if isinstance(v, Mapping) else tuple(v)
                for v in values
            }
            return cls(kind, tuple(sorted(pairs)))
        if kind == "older_than":
            if len(values) != 1:
                raise ValueError("older_than names one instant")
            value = values[0]
            return cls(kind, (instant(value) if isinstance(value, str) else value,))
        return cls(kind, tuple(sorted(set(values))))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Selector:
        """The `{"kind", "values"}` form (commands, receipts)."""
        return cls.of(data["kind"], data["values"])

    @classmethod
    def of_fields(cls, request: Mapping[str, Any]) -> Selector:
        """The selector of a request as the contract writes it (one of its selector fields)."""
        for kind in KINDS:
            value = request.get(kind)
            if value is not None:
                return cls.of(kind, [value] if kind == "older_than" else value)
        raise ValueError("the request has no selector")

    def selects(
        self,
        learner_id: str,
        attempt_id: str,
        launched_at: datetime,
        requested_at: datetime | None,
        groups: Mapping[str, Any] | None = None,
    ) -> bool:
        """Whether the contract's rule for this selector names one attempt: named attempts
        whenever they were launched; named learners' and groups' attempts launched before the
        request; every attempt launched before an `older_than` cut-off. `groups` is the
        learner's `{teams, roles}` when the request applies."""
        if self.kind == "attempts":
            return (learner_id, attempt_id) in self.values
        if self.kind == "older_than":
            return launched_at < self.cutoff
        if requested_at is None:
            raise ValueError(f"a {self.kind} selector applies before the request's requested_at")
        if launched_at >= requested_at:
            return False
        if self.kind == "learner_ids":
            return learner_id in self.values
        return bool(set((groups or {}).get(self.kind) or ()) & set(self.values))

    def as_json(self) -> dict[str, Any]:
        if self.kind == "attempts":
            values: list[Any] = [
                {"learner_id": learner, "attempt_id": attempt} for learner, attempt in self.values
            ]
        elif self.kind == "older_than":
            values = [self.cutoff.isoformat()]
        else:
            values = list(self.values)
        return {"kind": self.kind, "values": values}

    def json_size(self) -> int:
        """The bytes its `{"kind", "values"}` form takes (what SELECTOR_MAX_BYTES bounds)."""
        return len(orjson.dumps(self.as_json()))

    def too_large(self) -> str | None:
        """Why this selector is too large for one request, or None."""
        size = self.json_size()
        if size <= SELECTOR_MAX_BYTES:
            return None
        return (
            f"the selector takes {size:,} bytes; at most {SELECTOR_MAX_BYTES:,} "
            "(split the request, or use older_than, teams or roles)"
        )

    def request_fields(self) -> dict[str, Any]:
        """The selector as an `attempt-deletions` request writes it."""
        shown = self.as_json()["values"]
        return {self.kind: shown[0] if self.kind == "older_than" else shown}

    @property
    def cutoff(self) -> datetime:
        """The instant of an `older_than` selector."""
        assert self.kind == "older_than"
        value: datetime = self.values[0]
        return value

    def fingerprint(self, mode: str, requested_at: datetime) -> str:
        """The same for every delivery of one request, different for any other request."""
        canonical = orjson.dumps(
            [mode, requested_at.astimezone(UTC).isoformat(), self.kind, self._canonical_values()]
        )
        return hashlib.sha256(canonical).hexdigest()[:32]

    def _canonical_values(self) -> list[Any]:
        if self.kind == "older_than":
            return [self.cutoff.astimezone(UTC).isoformat()]
        return [list(v) if isinstance(v, tuple) else v for v in self.values]
