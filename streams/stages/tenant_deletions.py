"""Tenant stage, deletions: a request split into parts for the learner partitions, their reports
collected, and the request's one receipt (streams/stages/learner_deletions.py applies a part).

A request is stored under `del/{tenant}/{request}` (streams/stages/keys.py) with its fingerprint:
the same request again is a redelivery and gets the same receipt; another request under a used
request id gets an error receipt and changes nothing. The request remembers the offset of the
command that started it and of the report that completed it, so that a replay of either (after
a crash that may have lost what it sent) sends its parts or its receipt again.

While a physical request is open (in `open/{tenant}`), the tenant's thresholds are held:
its learner partitions apply their parts one after another, and an evaluation in between would
mail a crossing at a count on the way (8 of 10 when the deletion leaves 7). Counts stay live.
Each part's report carries its partition's count after the part, so that the evaluation at the
end sees what the whole deletion left. A hold older than HOLD_LIMIT (by the commands' own
times) no longer holds: a part that never reports cannot silence a tenant's alerts for ever.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from schemas import topics
from streams.domain.dead_letters import encode
from streams.domain.deletions import assemble_receipt_windows, reused_id_error
from streams.domain.licenses import cut_of
from streams.domain.partitioning import learner_partition
from streams.stages import commands, keys, metrics
from streams.stages.ingest import error_receipt
from streams.stages.store import Batch, chunks_by_size, json_size, scan_all

log = logging.getLogger(__name__)

# a part's list of learners or attempts is cut into parts of about this size
PART_MAX_BYTES = 256 * 1024
# an open physical deletion holds its tenant's thresholds at most this long (a deletion of
# 10M attempts takes about two minutes on a laptop)
HOLD_LIMIT = timedelta(minutes=15)
# open physical deletions of one tenant that hold its thresholds (a later one does not hold:
# 200 request ids of at most 256 characters keep the record far below Kafka's 1 MiB)
OPEN_KEPT = 200
# A part applied while its learner partition catches up after a takeover is reported without
# its count after the part (the partition's counters may not be exact yet). Such a report
# keeps the (epoch, seq) of the partition's count stored here then (UNCOUNTED), and a request
# completed with it holds its tenant's thresholds on (AWAITING, in the request's record) until
# that partition sent a newer count: the one its takeover reports once caught up, which
# includes the part. Evaluated at once, the thresholds saw that partition's count from before
# the part, and a `down` named 8 where the deletion left 7 (helper-75). HOLD_LIMIT bounds it.
UNCOUNTED = "uncounted"
AWAITING = "awaiting"


class TenantDeletions:
    """The deletion requests of the tenant partitions a stage owns."""

    def __init__(self, learner_partitions: int) -> None:
        self.learner_partitions = learner_partitions

    def on_request(
        self,
        batch: Batch,
        partition: int,
        offset: int,
        command: commands.DeletionRequest,
        now: datetime,
    ) -> None:
        """A valid request: the first under its request id is split into parts; the same request
        again is answered with its receipt; another request under that id gets an error receipt
        and changes nothing.

        The request remembers the offset of the command that started it (and of the report that
        completed it): a replay of that command, after a crash that may have lost what it sent,
        sends its parts (or its receipt) again; a mere duplicate does not."""
        request = dict(command.request)
        fingerprint = request.pop("fingerprint")
        key = keys.deletion(request["tenant_id"], request["request_id"])
        stored = batch.get(keys.TENANT_STATE, partition, key)
        if stored is None:
            # the windows every part reports are those of the license this request is split
            # under: a license that changes the windows while the parts run (each learner
            # partition applies it in its own order with the parts) must not make one receipt
            # mix two cuts' windows (tests/stages/test_deletion_cuts_review.py)
            license_key = keys.tenant_license(request["tenant_id"])
            request["cut"] = cut_of(batch.get(keys.TENANT_STATE, partition, license_key)).id
            parts = deletion_parts(request, self.learner_partitions)
            batch.put(
                keys.TENANT_STATE,
                partition,
                key,
                {
                    "fingerprint": fingerprint,
                    "request": request,
                    "parts": len(parts),
                    "received": {},
                    "offset": offset,
                },
            )
            self._hold(batch, partition, request, now)
            self._emit_parts(batch, request)
            return
        if stored["fingerprint"] == fingerprint:
            # the same request again: a redelivery is answered with the same receipt; the
            # replay of the command that started it sends its parts again (a part applies
            # once however often it comes, and reports the same)
            receipt = stored_receipt(stored)
            if receipt is not None:
                self.emit_receipt(batch, partition, receipt)
            elif stored.get("offset") == offset:
                self._hold(batch, partition, stored["request"], now)
                self._emit_parts(batch, stored["request"])
            return
        error = reused_id_error(request["request_id"])
        self._conflict(batch, partition, stored, fingerprint, error_receipt(request, error, now))

    def on_error(self, batch: Batch, partition: int, command: commands.DeletionError) -> None:
        """An invalid request's error receipt: once per request, however often it comes."""
        receipt = command.receipt
        key = keys.deletion(receipt["tenant_id"], receipt["request_id"])
        stored = batch.get(keys.TENANT_STATE, partition, key)
        if stored is None:
            batch.put(
                keys.TENANT_STATE,
                partition,
                key,
                {
                    "fingerprint": command.fingerprint,
                    "parts": 0,
                    "received": {},
                    "receipt": receipt,
                },
            )
            self.emit_receipt(batch, partition, receipt)
        elif stored["fingerprint"] == command.fingerprint:
            # the same request (refused now for its time, applied or under way before): its
            # own receipt, once there is one
            answer = stored_receipt(stored)
            if answer is not None:
                self.emit_receipt(batch, partition, answer)
        else:
            self._conflict(batch, partition, stored, command.fingerprint, receipt)

    def _conflict(
        self,
        batch: Batch,
        partition: int,
        stored: dict[str, Any],
        fingerprint: str,
        receipt: dict[str, Any],
    ) -> None:
        """Another request under a used request id: an error receipt, the same at every
        redelivery (the contract). Each is kept under a key of its own, so that neither how
        many there are nor their selectors' size bounds them (kept inside the request's record,
        at most 100 and 128 KiB were, and a redelivery past that got a new `completed_at`)."""
        # its own record first: an older version (a rollback) may have kept another receipt
        # inside the request's record after this one was kept apart
        key = keys.deletion_conflict(receipt["tenant_id"], receipt["request_id"], fingerprint)
        kept = batch.get(keys.TENANT_STATE, partition, key)
        if kept is None:
            kept = (stored.get("conflicts") or {}).get(fingerprint)
            if kept is None:
                batch.put(keys.TENANT_STATE, partition, key, receipt)
        self.emit_receipt(batch, partition, kept or receipt)

    def on_part_report(
        self,
        batch: Batch,
        partition: int,
        offset: int,
        command: commands.PartReport,
        now: datetime,
    ) -> bool:
        """Collect one part's report; when every part is in, emit the request's one receipt.

        Whether this report completed the request (or is the replay of the one that did)."""
        request = command.request
        key = keys.deletion(request["tenant_id"], request["request_id"])
        pending = batch.get(keys.TENANT_STATE, partition, key)
        if pending is None:
            log.error("a deletion part report for a request this partition does not know")
            metrics.stage_errors_total.labels("tenants").inc()
            return False
        completed = stored_receipt(pending)
        if completed is not None:
            # reports a crash kept from being dropped after the receipt landed (their
            # deletions go last: keys.CHANGELOG_ORDER)
            self._drop_reports(batch, partition, request)
            if pending.get("completed_by") == offset:
                # the replay of the report that completed it: the receipt (and the release of
                # the hold) may have been lost
                if not pending.get(AWAITING):
                    self._release(batch, partition, request)
                self.emit_receipt(batch, partition, completed)
                return True
            return False  # a part reported again: its first report stands
        # the parts whose reports are stored, each under its own key (an older version kept
        # them in `received`, in this record)
        reported: list[int] = pending.get("reported", [])
        if command.part in reported or str(command.part) in pending["received"]:
            return False  # its first report stands
        report = {**command.report, "partition": command.partition}
        if len(reported) + len(pending["received"]) + 1 < int(pending["parts"]):
            report_key = keys.deletion_report(
                request["tenant_id"], request["request_id"], command.part
            )
            batch.put(keys.TENANT_STATE, partition, report_key, report)
            batch.put(
                keys.TENANT_STATE,
                partition,
                key,
                {**pending, "reported": [*reported, command.part]},
            )
            return False
        received = {
            **pending["received"],
            **{
                keys.part_of_deletion_report(report_key): stored
                for report_key, stored in self._reports(batch, partition, request)
            },
            str(command.part): report,
        }
        receipt = self.receipt(batch, partition, pending["request"], received, now)
        failed = [r["error"] for r in received.values() if r.get("error")]
        if failed:
            receipt = {**receipt, "error": "; ".join(sorted(failed))}
        awaiting = _awaiting(batch, partition, request["tenant_id"], received)
        batch.put(
            keys.TENANT_STATE,
            partition,
            key,
            {
                **pending,
                "received": {},
                "reported": [],
                "receipt": receipt_to_store(receipt),
                "completed_by": offset,
                **({AWAITING: awaiting} if awaiting else {}),
            },
        )
        self._drop_reports(batch, partition, request)  # (sent after the record)
        if not awaiting:
            self._release(batch, partition, request)
        self.emit_receipt(batch, partition, receipt)
        return True

    def release_counted(self, batch: Batch, partition: int, tenant_id: str) -> None:
        """Release the holds of complete requests whose awaited learner partitions have sent
        a newer count since (called once partial counts of the tenant were taken)."""
        held = batch.get(keys.TENANT_STATE, partition, keys.open_deletions(tenant_id))
        if not held:
            return
        for request_id in held:
            key = keys.deletion(tenant_id, request_id)
            stored = batch.get(keys.TENANT_STATE, partition, key)
            if stored is None or "request" not in stored or stored_receipt(stored) is None:
                continue  # under way: its last report releases it
            # complete, and held on for counts (or a release a crash lost after the record)
            awaiting = stored.get(AWAITING) or {}
            rest = {
                learner_partition: stale
                for learner_partition, stale in awaiting.items()
                if not _counted_since(batch, partition, tenant_id, learner_partition, stale)
            }
            if rest:
                if rest != awaiting:
                    batch.put(keys.TENANT_STATE, partition, key, {**stored, AWAITING: rest})
                continue
            if awaiting:
                done = {field: value for field, value in stored.items() if field != AWAITING}
                batch.put(keys.TENANT_STATE, partition, key, done)
            self._release(batch, partition, stored["request"])

    def _reports(
        self, batch: Batch, partition: int, request: dict[str, Any]
    ) -> list[tuple[bytes, Any]]:
        prefix = keys.deletion_reports(request["tenant_id"], request["request_id"])
        return scan_all(batch, keys.TENANT_STATE, partition, prefix)

    def _drop_reports(self, batch: Batch, partition: int, request: dict[str, Any]) -> None:
        for report_key, _ in self._reports(batch, partition, request):
            batch.delete(keys.TENANT_STATE, partition, report_key)

    # -- the hold on thresholds -----------------------------------------------------------------
    def _hold(self, batch: Batch, partition: int, request: dict[str, Any], now: datetime) -> None:
        """Add a physical request to its tenant's open deletions (those past HOLD_LIMIT, which
        no longer hold anything, are dropped on the way)."""
        if request["mode"] != "physical":
            return  # nothing else changes counts
        key = keys.open_deletions(request["tenant_id"])
        stored: dict[str, str] = batch.get(keys.TENANT_STATE, partition, key) or {}
        if request["request_id"] in stored:
            return
        holding = {r: since for r, since in stored.items() if _holds(since, now)}
        if len(holding) < OPEN_KEPT:
            holding[request["request_id"]] = now.isoformat()
        if holding != stored:
            batch.put(keys.TENANT_STATE, partition, key, holding)

    def _release(self, batch: Batch, partition: int, request: dict[str, Any]) -> None:
        key = keys.open_deletions(request["tenant_id"])
        stored = batch.get(keys.TENANT_STATE, partition, key)
        if not stored or request["request_id"] not in stored:
            return
        rest = {r: since for r, since in stored.items() if r != request["request_id"]}
        if rest:
            batch.put(keys.TENANT_STATE, partition, key, rest)
        else:
            batch.delete(keys.TENANT_STATE, partition, key)

    def holds_thresholds(self, batch: Batch, partition: int, tenant_id: str, now: datetime) -> bool:
        """Whether an open physical deletion of the tenant, younger than HOLD_LIMIT, holds its
        threshold evaluation (one read: this runs at every publication)."""
        stored = batch.get(keys.TENANT_STATE, partition, keys.open_deletions(tenant_id))
        return bool(stored) and any(_holds(since, now) for since in stored.values())

    def receipt(
        self,
        batch: Batch,
        partition: int,
        request: dict[str, Any],
        received: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        windows = assemble_receipt_windows(received)
        return {
            **error_receipt(request, "", now),
            "attempts_affected": sum(r["attempts_affected"] for r in received.values()),
            "learners_affected": sum(r["learners_affected"] for r in received.values()),
            "windows": windows,
            "error": None,
        }

    def _emit_parts(self, batch: Batch, request: dict[str, Any]) -> None:
        for part, target in deletion_parts(request, self.learner_partitions):
            batch.emit(
                topics.LEARNER_COMMANDS,
                request["tenant_id"].encode(),
                commands.encode(part),
                target,
            )

    def emit_receipt(self, batch: Batch, partition: int, receipt: dict[str, Any]) -> None:
        tenant_id = receipt["tenant_id"]
        batch.emit(topics.DELETION_RECEIPTS, tenant_id.encode(), encode(receipt), partition)
        mode = "error" if receipt.get("error") else str(receipt.get("mode", "invalid"))
        batch.on_durable(
            metrics.receipts_total.labels(
                self._receipt_label(batch, partition, tenant_id), mode
            ).inc
        )

    @staticmethod
    def _receipt_label(batch: Batch, partition: int, tenant_id: str) -> str:
        """The receipts' `tenant` label: the tenant's id while it has a license, "" otherwise, so
        that deletion requests naming made-up ids cannot grow `/metrics` without bound (the
        per-tenant gauges are bounded the same way: streams/http/gauges.py)."""
        stored = batch.get(keys.TENANT_STATE, partition, keys.tenant_license(tenant_id))
        return tenant_id if stored is not None and stored.get("license") is not None else ""


def receipt_to_store(receipt: dict[str, Any]) -> dict[str, Any]:
    """A request's receipt as stored beside the request: without the selector, which the
    request holds (a selector may take SELECTOR_MAX_BYTES: twice would not fit one record)."""
    return {field: value for field, value in receipt.items() if field != "selector"}


def stored_receipt(stored: dict[str, Any]) -> dict[str, Any] | None:
    """The receipt of a stored request as it was sent (None while the request is under way).
    Versions before the selector's bound stored it whole, with its selector."""
    receipt: dict[str, Any] | None = stored.get("receipt")
    if receipt is None or "selector" in receipt:
        return receipt
    whole: dict[str, Any] = {}
    for field, value in receipt.items():  # the selector where error_receipt puts it
        whole[field] = value
        if field == "mode":
            whole["selector"] = stored["request"]["selector"]
    return whole


def deletion_parts(
    request: dict[str, Any], partitions: int
) -> list[tuple[commands.DeletionPart, int]]:
    """The learner-stage parts of a request, each with its target partition.

    Every learner partition gets at least one part (a long list of named learners or attempts
    is cut into several parts of its partition). Parts are numbered in partition order; parts of
    one partition run one after another.
    """
    meta = {k: request[k] for k in ("request_id", "tenant_id", "mode", "requested_at")}
    if request.get("cut"):  # (a request stored by an older version has none)
        meta["cut"] = request["cut"]
    tenant_id = request["tenant_id"]
    kind, values = request["selector"]["kind"], request["selector"]["values"]
    before = request["requested_at"]
    selectors: list[tuple[int, dict[str, Any]]] = []
    if kind in ("attempts", "learner_ids"):
        # every partition runs a part, also one that holds none of the named learners: each
        # reports its counts, so that the receipt is a function of the parts alone
        # per partition, the named items of each learner together: a learner's named attempts
        # never straddle two parts (each part counts the learners it affects and, for a
        # preview, which removes nothing, the windows a learner leaves: a learner split over
        # two parts would be counted twice, and leave no window in either)
        per_partition: dict[int, dict[str, list[Any]]] = {p: {} for p in range(partitions)}
        for value in values:
            if kind == "attempts":
                learner_id, item = value["learner_id"], [value["learner_id"], value["attempt_id"]]
            else:
                learner_id, item = value, value
            target = learner_partition(tenant_id, learner_id, partitions)
            per_partition[target].setdefault(learner_id, []).append(item)
        for target, by_learner in sorted(per_partition.items()):
            groups = list(by_learner.values())
            sized = chunks_by_size(groups, lambda g: sum(map(json_size, g)), PART_MAX_BYTES)
            # a partition none of the named learners live in still runs one (empty) part
            for chunk in sized or [[]]:
                items = [item for group in chunk for item in group]
                selectors.append((target, {kind: items, "before": before}))
    elif kind in ("teams", "roles"):
        selectors = [(p, {kind: list(values), "before": before}) for p in range(partitions)]
    else:
        selectors = [(p, {"older_than": values[0]}) for p in range(partitions)]
    return [
        (commands.DeletionPart(meta, number, len(selectors), selector), target)
        for number, (target, selector) in enumerate(selectors)
    ]


def uncounted_mark(
    batch: Batch, partition: int, tenant_id: str, learner_partition: int, since: Any = None
) -> Any:
    """What a physical part's report without its count keeps (`UNCOUNTED`): the (epoch, seq)
    of the count of its learner partition stored here, or None when there is none; at least
    (`since`, -2) when the report names the epoch of the owner that applied the part (only
    that owner's counts once caught up, or a later owner's, include the part: a deposed
    owner's count sent late, under an older epoch, released the hold with a count from before
    the part, helper-78)."""
    key = keys.partial(tenant_id, str(learner_partition))
    stored = batch.get(keys.TENANT_STATE, partition, key)
    mark = None if stored is None else [stored["epoch"], stored["seq"]]
    if since is not None and (mark is None or _position(mark) < _position([since, -2])):
        # below any count of the reporting owner (a rebuilt count's seq is -1), above every
        # count of an older owner: a deposed owner's late count does not release the hold
        mark = [list(since), -2]
    return mark


def _awaiting(
    batch: Batch, partition: int, tenant_id: str, received: dict[str, Any]
) -> dict[str, Any]:
    """The learner partitions whose report came without its count and which have sent no
    newer count since, each with the (epoch, seq) it waits past. Also for a tenant without a
    learner limit, whose hold holds nothing: a license may give it one before those counts
    arrive (released at once, its thresholds were evaluated on a count from before the part:
    threshold-fuzz seed 5121). Every such partition reports the tenant once caught up (one
    that holds none of it reports its part without a mark: streams/stages/learners.py)."""
    awaiting = {}
    for report in received.values():
        if UNCOUNTED not in report:
            continue
        learner_partition, stale = str(report["partition"]), report[UNCOUNTED]
        if not _counted_since(batch, partition, tenant_id, learner_partition, stale):
            awaiting[learner_partition] = stale
    return awaiting


def _counted_since(
    batch: Batch, partition: int, tenant_id: str, learner_partition: str, stale: Any
) -> bool:
    stored = batch.get(keys.TENANT_STATE, partition, keys.partial(tenant_id, learner_partition))
    if stored is None:
        return False
    return stale is None or _position([stored["epoch"], stored["seq"]]) > _position(stale)


def _position(mark: Sequence[Any]) -> tuple[list[int], int]:
    """An [epoch, seq] pair as it orders: by the owner's epoch, then by its learner-commands
    offset (JSON turned the epoch's tuple into a list)."""
    return list(mark[0]), mark[1]


def _holds(since: str, now: datetime) -> bool:
    return now - datetime.fromisoformat(since) < HOLD_LIMIT
