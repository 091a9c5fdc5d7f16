"""What every worker's HTTP API and dashboard answer from: the output topics, read back.

Each worker reads the compacted `licenses` and `active-learner-counts` topics, the
`deletion-receipts` and the `threshold-events` from the beginning, all partitions, with its own
consumer (no group), and keeps what the API needs in memory: a few records per tenant window,
the latest license per tenant, the receipts (the deletion audit trail: the latest 10,000 of each
tenant) and recent threshold events. So any worker answers for any tenant, seconds behind the
count topic at most, and no request ever waits for (or blocks) the agents.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import Any

from schemas.licenses import License
from streams.domain.decoding import Rejected, decode, valid_id
from streams.domain.deletions import is_reused_id_receipt
from streams.domain.sources import superseded

MAX_RECEIPTS = 100_000
MAX_TRAIL = 10_000  # receipts listed per tenant (the latest)
# ... and at most this many bytes of receipts in all: a receipt echoes its selector, up to 512
# KiB, and the topic keeps every receipt for ever, so 100,000 of them could take 50 GB of every
# worker (a yearly audit's learner files, previewed and deleted). The oldest go first.
MAX_RECEIPT_BYTES = 64 * 1024 * 1024
# ... and a tenant's own at most this many, so that one tenant's large receipts never push
# every other tenant's audit trail out (10,000 receipts of a few learners each fit)
MAX_TENANT_RECEIPT_BYTES = 8 * 1024 * 1024
EVENTS_PER_TENANT = 100


class ReadModel:
    """Latest licenses, count records, receipts and threshold events, by tenant."""

    def __init__(self) -> None:
        self.licenses: dict[str, dict[str, Any] | None] = {}  # tenant -> license (None: removed)
        # tenant -> [partition, offset, timestamp ms] of the license record applied: across the
        # partitions of a grown topic the service keeps the later timestamp (sources.py), not
        # the later arrival, and so must the read model
        self._license_at: dict[str, list[int]] = {}
        # tenant -> window start -> the record's window start and end (interned: shared by
        # every tenant) and the count record as the topic holds it, parsed when asked: parsed, a
        # record took 1.35 KB of memory, five times its bytes (10,000 tenants with two years of
        # monthly windows: 324 MB in every worker)
        self.counts: dict[str, dict[str, tuple[str, str, bytes]]] = {}
        # Receipts too are kept as the topic's bytes, parsed when asked.
        # each request's own receipt, by (tenant, request id): what GET .../deletions/{id} says
        self.receipts: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        # every receipt of a tenant in arrival order (the audit trail), also the error receipts
        # of requests under an id already used, which never take the id's place: entry ->
        # (request id, receipt)
        self._trail: dict[str, OrderedDict[str, tuple[str, bytes]]] = {}
        # every receipt held (in `receipts`, in a trail or both), oldest first: (tenant, entry)
        # -> its bytes, to keep their sum under MAX_RECEIPT_BYTES; and by tenant, under
        # MAX_TENANT_RECEIPT_BYTES
        self._held: OrderedDict[tuple[str, str], int] = OrderedDict()
        self._held_bytes = 0
        self._tenant_held: dict[str, OrderedDict[str, int]] = {}
        self._tenant_bytes: dict[str, int] = {}
        # tenant -> its latest events as (event_id, the record's value), parsed when asked (as
        # the count records: parsed, an event took 1.8 KB, 100 of each of 10,000 tenants 1.8 GB)
        self.events: dict[str, deque[tuple[str, bytes]]] = {}
        self.caught_up = asyncio.Event()
        self._receipt_waiters: dict[tuple[str, str], list[Waiter]] = {}
        self.on_counts: Callable[[str], None] | None = None  # a tenant's counts changed

    # -- applying records -------------------------------------------------------------------
    def apply_license(
        self, key: bytes | None, value: bytes | None, position: list[int] | None = None
    ) -> None:
        """A `licenses` record; `position` ([partition, offset, timestamp ms]) orders it as the
        service orders it (an older record than the one applied changes nothing)."""
        if value is None:
            # as the service: a tombstone under a key that is no valid tenant id is dead-lettered
            try:
                tenant_id = (key or b"").decode("utf-8")
            except UnicodeDecodeError:
                return
            if valid_id(tenant_id) and self._newer(tenant_id, position):
                self.licenses[tenant_id] = None
            return
        license_ = decode(License, value)
        if isinstance(license_, Rejected):  # the service dead-letters it
            return
        if key is not None and key != license_.tenant_id.encode():
            # dead-lettered too (streams/stages/ingest.py): it governs no window, so shown it
            # would put another limit, zone and windows on the tenant's page
            return
        if self._newer(license_.tenant_id, position):
            self.licenses[license_.tenant_id] = license_.model_dump(mode="json")

    def _newer(self, tenant_id: str, position: list[int] | None) -> bool:
        if superseded(self._license_at.get(tenant_id), position):
            return False
        if position is not None:
            self._license_at[tenant_id] = list(position)
        return True

    def apply_count(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        tenant, _, start = key.decode("utf-8", "replace").rpartition("/")
        if value is None:
            self.counts.get(tenant, {}).pop(start, None)
        else:
            shown = _window(json.loads(value))
            bounds = sys.intern(str(shown.get("start", ""))), sys.intern(str(shown.get("end", "")))
            self.counts.setdefault(tenant, {})[start] = (*bounds, bytes(value))
        if self.on_counts is not None:
            self.on_counts(tenant)

    def apply_receipt(self, value: bytes | None) -> None:
        if value is None:
            return
        receipt = json.loads(value)
        tenant, request_id = receipt["tenant_id"], receipt["request_id"]
        raw = bytes(value)
        if is_reused_id_receipt(receipt):
            # its own entry in the trail; a repeat of it (a redelivery) is the same entry
            entry = request_id + "\x00" + hashlib.sha256(value).hexdigest()[:16]
        else:
            if (tenant, request_id) in self.receipts:
                return  # a repeated receipt is identical; the first one stands
            self.receipts[(tenant, request_id)] = raw
            entry = request_id
            while len(self.receipts) > MAX_RECEIPTS:
                (old_tenant, old_entry), _ = self.receipts.popitem(last=False)
                self._let_go(old_tenant, old_entry)
        trail = self._trail.setdefault(tenant, OrderedDict())
        trail[entry] = (request_id, raw)
        self._hold(tenant, entry, len(raw))
        while len(trail) > MAX_TRAIL:
            old_entry, _ = trail.popitem(last=False)
            self._let_go(tenant, old_entry)
        mine = self._tenant_held[tenant]  # (its newest receipt just held)
        while self._tenant_bytes.get(tenant, 0) > MAX_TENANT_RECEIPT_BYTES and len(mine) > 1:
            self._drop(tenant, next(iter(mine)))
        while self._held_bytes > MAX_RECEIPT_BYTES and len(self._held) > 1:
            self._drop(*next(iter(self._held)))
        for waiter in self._receipt_waiters.get((tenant, request_id), []):
            if not waiter.future.done() and waiter.wanted(receipt):
                waiter.future.set_result(receipt)

    def _hold(self, tenant: str, entry: str, size: int) -> None:
        """The receipt's bytes counted (again: a redelivery holds its own bytes in the place of
        the earlier ones, in the same place of the order)."""
        earlier = self._held.get((tenant, entry), 0)
        self._held[(tenant, entry)] = size
        self._held_bytes += size - earlier
        self._tenant_held.setdefault(tenant, OrderedDict())[entry] = size
        self._tenant_bytes[tenant] = self._tenant_bytes.get(tenant, 0) + size - earlier

    def _drop(self, tenant: str, entry: str) -> None:
        """The receipt let go for its bytes: out of `receipts` and its trail."""
        self._trail[tenant].pop(entry, None)
        self.receipts.pop((tenant, entry), None)
        self._let_go(tenant, entry)

    def _let_go(self, tenant: str, entry: str) -> None:
        """A receipt left `receipts` or its trail: its bytes are free once it has left both."""
        if (tenant, entry) in self.receipts or entry in self._trail.get(tenant, ()):
            return
        size = self._held.pop((tenant, entry), None)
        if size is None:
            return
        self._held_bytes -= size
        mine = self._tenant_held[tenant]
        del mine[entry]
        self._tenant_bytes[tenant] -= size
        if not mine:
            del self._tenant_held[tenant], self._tenant_bytes[tenant]

    def apply_event(self, value: bytes | None) -> None:
        if value is None:
            return
        event = json.loads(value)
        recent = self.events.setdefault(event["tenant_id"], deque(maxlen=EVENTS_PER_TENANT))
        if all(event_id != event["event_id"] for event_id, _ in recent):
            recent.append((event["event_id"], bytes(value)))

    # -- questions --------------------------------------------------------------------------
    def tenants(self) -> list[str]:
        known = {t for t, lic in self.licenses.items() if lic is not None}
        return sorted(known | {t for t, windows in self.counts.items() if windows})

    def has_counts(self, tenant_id: str) -> bool:
        """Whether the tenant has a count record (a tenant without a license may have none)."""
        return bool(self.counts.get(tenant_id))

    def license_of(self, tenant_id: str) -> dict[str, Any] | None:
        return self.licenses.get(tenant_id)

    def count_record(self, tenant_id: str, start: str) -> dict[str, Any] | None:
        """The count record of the tenant's window that starts on `start` (ISO date)."""
        found = self.counts.get(tenant_id, {}).get(start)
        return None if found is None else json.loads(found[2])

    def windows_of(self, tenant_id: str) -> list[dict[str, Any]]:
        """The tenant's count records, oldest window first."""
        return [
            json.loads(raw) for _, (_, _, raw) in sorted(self.counts.get(tenant_id, {}).items())
        ]

    def record_of_day(self, tenant_id: str, day: str) -> dict[str, Any] | None:
        """The count record of the newest of the tenant's windows whose record says it holds
        `day` (ISO date), or None (a window without a record yet)."""
        for _, (start, end, raw) in sorted(self.counts.get(tenant_id, {}).items(), reverse=True):
            if start <= day < end:
                return json.loads(raw)
        return None

    def latest_record(self, tenant_id: str) -> dict[str, Any] | None:
        """The count record of the tenant's newest window."""
        windows = self.counts.get(tenant_id)
        return json.loads(windows[max(windows)][2]) if windows else None

    def receipt(self, tenant_id: str, request_id: str) -> dict[str, Any] | None:
        """A request's own receipt (also one the index of the latest 100,000 let go of)."""
        found = self.receipts.get((tenant_id, request_id))
        if found is None and request_id in self._trail.get(tenant_id, {}):
            found = self._trail[tenant_id][request_id][1]
        return None if found is None else json.loads(found)

    def receipts_of(self, tenant_id: str, limit: int) -> list[dict[str, Any]]:
        """A tenant's receipts, newest first (a tenant's receipts share one partition, so
        arrival order is the order they were completed in)."""
        newest_first = reversed(self._trail.get(tenant_id, {}).values())
        return [json.loads(raw) for _, raw in islice(newest_first, limit)]

    def recent_events(self, tenant_id: str) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.events.get(tenant_id, ())]

    async def wait_for_receipt(
        self,
        tenant_id: str,
        request_id: str,
        timeout_s: float,
        wanted: Callable[[dict[str, Any]], bool] = lambda receipt: True,
    ) -> dict[str, Any] | None:
        """The receipt `wanted` of a request id (the receipt of the very request sent: another
        request may have come under the same id), or None after `timeout_s`."""
        for receipt_of, raw in list(self._trail.get(tenant_id, {}).values()):
            if receipt_of == request_id and wanted(receipt := json.loads(raw)):
                return receipt
        waiter = Waiter(asyncio.get_running_loop().create_future(), wanted)
        self._receipt_waiters.setdefault((tenant_id, request_id), []).append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.future), timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._receipt_waiters.get((tenant_id, request_id), [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._receipt_waiters.pop((tenant_id, request_id), None)


def _window(record: Any) -> dict[str, Any]:
    """A count record's `window` ({} where a record that is not the service's has none)."""
    window = record.get("window") if isinstance(record, dict) else None
    return window if isinstance(window, dict) else {}


@dataclass
class Waiter:
    future: asyncio.Future[dict[str, Any]]
    wanted: Callable[[dict[str, Any]], bool]
