"""E-mail that a mailbox refused for now (a 4xx answer to RCPT: "452 4.2.2 mailbox full",
greylisting), retried on its own so that it holds up no other address, tenant or webhook.

How it goes:
  1. The notifier's consumer sends an event's e-mail once to every usable address. The
     addresses the server refused for now are enqueued, one delivery per (tenant, address), in
     the notifier's RocksDB (`STATE_DIR/notifier/deferred-mail.db`) in one atomic write before
     the event is recorded and its offset committed: a crash or a stop loses none, and a
     redelivered event is not enqueued twice. The queues and loops are the webhooks' own
     (streams/notifier/webhooks.py), with an SMTP transaction where a webhook has its POST.
  2. A later event for an address that still has mail pending goes behind it instead of to
     the server: a full mailbox is not asked again for every event, and it gets a tenant's
     e-mails in order, as a webhook receiver does.
  3. Each try sends the event's e-mail again (the same text and Message-ID), to this one
     address. It is tried after 1 s, 2 s, 4 s, ... at most 10 min
     apart, as a webhook is; a 5xx answer gives up at once, and a delivery still refused 24 h
     after it was enqueued is given up: logged (ERROR), counted, and kept 30 days in RocksDB.
     While the whole server is away (no connection, 421, a timeout) the tries go on with no
     deadline: an outage loses no e-mail, here as in the consumer, which waits for it.
  4. Before each try, the licenses are read up to that moment (streams/notifier/licenses.py):
     when the tenant's latest license no longer lists the address in `notify` (or the tenant
     has none any more), the delivery is dropped untried, logged and counted. Read up to that
     moment, not as far as the last event: right after a start nothing is read yet, and a
     license that removed the address and a later one that put it back must not drop it.
  5. A policy answer (5.7.x) is about the address or about this notifier's settings
     (streams/notifier/smtp.py). It is tried like a 4xx, but with no deadline until the server
     is seen taking other e-mail after the delivery was enqueued: only that proves the answer
     is the address's own. A misconfigured relay thus loses no e-mail, and one address's
     policy holds up nothing.
On start the loops resume every pending delivery, trying each queue's head at once.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime

import aiosmtplib
from prometheus_client import Counter, Gauge

from streams.domain.decoding import Rejected
from streams.notifier import metrics, smtp
from streams.notifier.mail import compose, decode_event
from streams.notifier.smtp import SmtpSettings
from streams.notifier.webhooks import Answer, Channel, Delivery

deferred_mail_total = metrics.own(
    Counter(
        "active_learners_deferred_mail_total",
        "E-mails a mailbox refused for now (one per event and address), by outcome: enqueued, "
        "delivered, gave_up (refused for good, or still refused 24 h after it was enqueued), "
        "dropped (its address no longer in the license's notify list); retry counts each failed "
        "try tried again",
        ["outcome"],
    )
)
deferred_mail_pending = metrics.own(
    Gauge(
        "active_learners_deferred_mail_pending",
        "E-mails a mailbox refused for now, enqueued and not yet delivered or given up",
    )
)


def notify_entry(delivery: Delivery) -> str:
    """The address as the log may show it: logs mask every e-mail address, so its place in
    the event's `notify` list is what tells an operator which one it is."""
    event = decode_event(delivery.body)
    if not isinstance(event, Rejected):
        for index, entry in enumerate(event.notify):
            if entry == delivery.url:
                return f"notify[{index}] (tenant {delivery.tenant_id})"
    return f"a notify address (tenant {delivery.tenant_id})"


DEFERRED_MAIL = Channel("mail", deferred_mail_total, deferred_mail_pending, notify_entry)


class MailTaken:
    """When the SMTP server last took an e-mail in this process (the consumer's or a deferred
    one): the evidence that a policy answer (5.7.x) is about the address it refused. Not kept
    across a restart: until the server takes mail again, a policy answer is waited out."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self.now = now
        self.last: datetime | None = None

    def taken(self) -> None:
        self.last = self.now()

    def since(self, when: datetime) -> bool:
        return self.last is not None and self.last >= when


def deferred_mail_channel(mail_taken: MailTaken) -> Channel:
    return replace(DEFERRED_MAIL, proven=mail_taken.since)


class SmtpCourier:
    """The deferred mail's transport: one SMTP transaction for one delivery, to its address
    (the delivery's `url`), of the e-mail its event body makes."""

    def __init__(
        self,
        settings: SmtpSettings,
        tls_context: ssl.SSLContext | None,
        sender: str,
        mail_taken: MailTaken,
    ) -> None:
        self.settings = settings
        self.tls_context = tls_context
        self.sender = sender
        self.mail_taken = mail_taken

    async def post(self, address: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        event = decode_event(body)
        if isinstance(event, Rejected):  # it was mailable when enqueued: not by this version
            return Answer(False, f"no longer an e-mail: {event.detail}", final=True)
        message = compose(event, self.sender, [address])
        if isinstance(message, Rejected):
            return Answer(False, message.detail, final=True)
        try:
            refused = await smtp.send(message, self.settings, self.tls_context)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return failed_try(exc)
        # with one recipient the server takes it or raises; a refusal here is checked all the same
        refusals = smtp.sort_refusals(refused)
        if refusals:
            return refused_answer(refusals)
        self.mail_taken.taken()
        return Answer(True, "taken by the SMTP server")


def failed_try(exc: Exception) -> Answer:
    """What a failed SMTP transaction to one address says: that address refused for good (5xx)
    or for now (4xx), by a policy (5.7.x: unclear), the message refused for good, or the server
    itself away (the rest)."""
    refusals = smtp.refusals_of(exc)  # the address's own answer, when it gave one
    if refusals is not None:
        return refused_answer(refusals)
    if smtp.message_refused(exc):  # (this message's own, once the server took others)
        detail = f"{exc.code} {exc.message}"
        return Answer(False, detail, unclear=True)
    reason = smtp.permanent(exc)
    if reason is not None:
        return Answer(False, reason, final=True)
    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return Answer(False, detail[:200], server_down=True)


def refused_answer(refusals: smtp.Refusals) -> Answer:
    if refusals.final:
        return Answer(False, next(iter(refusals.final.values())), final=True)
    if refusals.for_now:
        return Answer(False, next(iter(refusals.for_now.values())))
    return Answer(False, next(iter(refusals.unclear.values())), unclear=True)
