"""Each tenant's webhook URLs and `notify` list, from the compacted `licenses` topic (a
threshold event has no URLs, and its `notify` is the one of the license it was counted with).

The notifier reads every partition of `licenses` from the beginning, with no consumer group (as
the worker's read model reads its topics, streams/http/outputs_reader.py), and keeps the latest
license's `webhooks` and `notify` of each tenant in memory. It applies a record as the worker
does: a license the worker dead-letters (invalid, or under another tenant's key) changes nothing,
a tombstone removes the tenant's URLs and addresses.

An event is never matched with a license older than the one the worker counted it with: before
it handles a batch of events (and once at start), the notifier reads `licenses` up to the end
offsets it asks the broker for at that moment. The worker reads a license from that topic before
any event it causes, so that license, or a later one, is applied by then. Likewise, before it tries
a deferred e-mail or a webhook delivery (again), the notifier reads `licenses` up to that moment
and tries it only if the latest license still names its address in `notify` or its URL in
`webhooks` (streams/notifier/service.py: `_unless_named`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from schemas import topics
from schemas.licenses import License
from streams.config.settings import Settings
from streams.domain.decoding import Rejected, decode
from streams.domain.sources import position_of, superseded
from streams.stages.ingest import tenant_of_key

log = logging.getLogger("active_learners.notifier.licenses")


class WebhookBook:
    """tenant -> the webhook URLs of its latest license (tenants without any are left out),
    and the `notify` list of every tenant with a license."""

    def __init__(self) -> None:
        self._urls: dict[str, tuple[str, ...]] = {}
        # lowered: a license that writes an address in other capitals still names that person
        # (not casefolded: that makes `ß` `ss`, and `straße.de` and `strasse.de` are two domains)
        self._notify: dict[str, frozenset[str]] = {}
        # tenant -> the position of the license record applied: the worker's rule decides which
        # of two records is the newer (streams/domain/sources.py), not the order a fetch hands
        # them over (a topic that gained partitions keeps a tenant's old license in its old one)
        self._positions: dict[str, list[int]] = {}
        self._seen: set[str] = set()  # tenants with a license record applied (or its tombstone)

    def urls(self, tenant_id: str) -> tuple[str, ...]:
        return self._urls.get(tenant_id, ())

    def __len__(self) -> int:
        return len(self._urls)

    def names_url(self, tenant_id: str, url: str) -> bool:
        """The tenant's latest license names `url` in `webhooks` (False without a license)."""
        return url in self._urls.get(tenant_id, ())

    def lists(self, tenant_id: str, address: str) -> bool:
        """The tenant's latest license names `address` in `notify` (False without a license)."""
        return address.lower() in self._notify.get(tenant_id, frozenset())

    def stopped_listing(self, tenant_id: str, address: str) -> bool:
        """A license record of the tenant was read, and the latest (a license, or its removal)
        does not name `address` in `notify`. False for a tenant the book knows nothing of."""
        return tenant_id in self._seen and not self.lists(tenant_id, address)

    def apply(
        self, key: bytes | None, value: bytes | None, position: list[int] | None = None
    ) -> None:
        """One `licenses` record (`position`: [partition, offset, timestamp ms])."""
        if value is None:  # a tombstone: the tenant is back on the default license, no URLs
            tenant_id = tenant_of_key(key)
            if tenant_id is not None and self._newer(tenant_id, position):
                self._urls.pop(tenant_id, None)
                self._notify.pop(tenant_id, None)
                self._seen.add(tenant_id)
            return
        license_ = decode(License, value)
        if isinstance(license_, Rejected):
            # dead-lettered by the worker: the tenant's earlier license still governs; unless it
            # is one the worker stored before a rule was added (more than 100 addresses), which
            # the book cannot tell: the tenant's addresses are not judged by the book then, and
            # an event is mailed to its own list (helper-87)
            tenant_id = tenant_of_key(key)
            if tenant_id is not None and not superseded(self._positions.get(tenant_id), position):
                self._seen.discard(tenant_id)
            return
        if key is not None and key != license_.tenant_id.encode():
            return  # dead-lettered by the worker too (it would outlive the tenant's later ones)
        if not self._newer(license_.tenant_id, position):
            return  # an older license than the one applied
        if license_.webhooks:
            self._urls[license_.tenant_id] = license_.webhooks
        else:
            self._urls.pop(license_.tenant_id, None)
        self._notify[license_.tenant_id] = frozenset(a.lower() for a in license_.notify)
        self._seen.add(license_.tenant_id)

    def _newer(self, tenant_id: str, position: list[int] | None) -> bool:
        if superseded(self._positions.get(tenant_id), position):
            return False
        if position is not None:
            self._positions[tenant_id] = position
        return True


class LicenseReader:
    """All partitions of `licenses`, from the beginning, with no consumer group."""

    def __init__(self, settings: Settings, book: WebhookBook) -> None:
        self.settings = settings
        self.book = book
        self.consumer: Any = None
        # One catch-up at a time (the event loop's and the deferred e-mail's share the
        # consumer); callers that come while one runs share the next one, which begins after
        # they asked: numbered by when they began, `_done` the last one that finished.
        self._lock = asyncio.Lock()
        self._begun = 0
        self._done = 0

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer

        # A topic given to the constructor and no group: start() waits for the topic's metadata
        # and assigns every partition of it (and any added later).
        self.consumer = AIOKafkaConsumer(
            self.settings.topic(topics.LICENSES),
            **self.settings.aiokafka(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",  # an aborted transaction's records are not read
            client_id=f"{self.settings.app_id}-notifier-licenses",
        )
        await self.consumer.start()

    async def catch_up(self, stopping: asyncio.Event) -> bool:
        """Apply every license record written before this call; False when a stop came first.
        While the broker is away it keeps trying (the events wait for it anyway)."""
        asked = self._begun
        async with self._lock:
            if self._done > asked:  # one that began after this call has finished meanwhile
                return True
            self._begun += 1
            number = self._begun
            if not await self._read_to_end(stopping):
                return False
            self._done = number
            return True

    async def _read_to_end(self, stopping: asyncio.Event) -> bool:
        from aiokafka.errors import KafkaError

        assert self.consumer is not None, "start() first"
        while not stopping.is_set():
            try:
                ends = await self.consumer.end_offsets(list(self.consumer.assignment()))
                while not stopping.is_set():
                    behind = [
                        tp for tp, end in ends.items() if await self.consumer.position(tp) < end
                    ]
                    if not behind:
                        return True
                    fetched = await self.consumer.getmany(*behind, timeout_ms=500)
                    for records in fetched.values():
                        for record in records:
                            position = position_of(
                                record.partition, record.offset, record.timestamp
                            )
                            self.book.apply(record.key, record.value, position)
            except KafkaError as exc:
                log.warning("reading licenses: %s: %s; again in 1 s", type(exc).__name__, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), timeout=1.0)
        return False

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
