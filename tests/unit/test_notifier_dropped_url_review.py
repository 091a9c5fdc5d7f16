"""Found by a review (2026-12-04, helper-69): a webhook URL the latest license took off while
its delivery waited for one of the tenant's try slots is still POSTed.

streams/notifier/webhooks.py (4.): 'A delivery whose URL the tenant's latest license no longer
names is dropped, untried, at its next try'. The Dispatcher asks the channel's `unwanted` before
a try, then waits for one of the tenant's TRIES_PER_TENANT slots: while receivers of the tenant
hang (up to 10 s each, again and again), that wait has no bound, and a license that takes the
URL off meanwhile (its receiver gone or no longer trusted) does not stop the POST.

No broker, no HTTP: a transport double whose receivers hang until released, and a channel whose
`unwanted` reads a set of URLs the "latest license" names."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from streams.notifier import webhooks
from streams.notifier.licenses import WebhookBook
from streams.notifier.webhooks import (
    WEBHOOKS,
    Answer,
    Delivery,
    DeliveryQueue,
    Dispatcher,
    MemoryKV,
)

T0 = datetime.now(UTC)
TRUSTED = "https://trusted.example/hook"


class Receivers:
    """`/hang/...` answers 503 once released; every POST is recorded."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.posted: list[str] = []

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        self.posted.append(url)
        if "/hang/" in url:
            await self.release.wait()
            return Answer(False, "HTTP 503")
        return Answer(True, "HTTP 204")


def test_a_url_taken_off_while_its_delivery_waits_for_a_slot_is_not_posted() -> None:
    async def scenario() -> list[str]:
        receivers = Receivers()
        hanging = [f"https://slow.example/hang/{n}" for n in range(webhooks.TRIES_PER_TENANT)]
        named = {*hanging, TRUSTED}  # the tenant's latest license's webhooks

        async def unwanted(delivery: Delivery) -> str | None:
            return None if delivery.url in named else "no longer in the license's webhooks"

        channel = replace(WEBHOOKS, unwanted=unwanted)
        dispatcher = Dispatcher(DeliveryQueue(MemoryKV()), receivers, None, channel=channel)
        try:
            dispatcher.enqueue("e-1", "t", hanging, b"{}", T0)
            await asyncio.sleep(0.05)  # every slot of the tenant is taken by a hanging try
            dispatcher.enqueue("e-2", "t", [TRUSTED], b"{}", T0)
            await asyncio.sleep(0.05)  # its loop asked `unwanted` and waits for a slot
            named.discard(TRUSTED)  # a license takes the URL off: its receiver is gone
            receivers.release.set()
            await asyncio.sleep(0.05)
            return receivers.posted
        finally:
            await dispatcher.stop()

    posted = asyncio.run(scenario())
    assert TRUSTED not in posted, "POSTed to a URL the latest license no longer names"


def test_an_address_the_license_replaced_by_another_that_casefolds_alike_is_not_listed() -> None:
    """WebhookBook.lists compared casefolded addresses, so that 'Ann@X.org' names 'ann@x.org'.
    Casefolding does more than lower the capitals: 'ß' becomes 'ss', and `straße.de` and
    `strasse.de` are two domains (IDNA 2008), two owners. A license that replaced
    `ops@straße.de` by `ops@strasse.de` still 'listed' the first: its deferred mail was tried."""
    book = WebhookBook()
    book.apply(b"t", json.dumps({"tenant_id": "t", "notify": ["ops@strasse.de"]}).encode())
    assert book.lists("t", "OPS@Strasse.DE"), "capitals name the same address"
    assert not book.lists("t", "ops@straße.de"), "another domain, no longer in notify"
