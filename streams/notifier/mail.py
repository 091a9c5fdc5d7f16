"""The e-mail of a threshold event, or the reason there can be none: pure, no I/O.

The notifier reads `threshold-events` more strictly than the worker writes them: every field it
puts into a header or the text must be usable there, since a record it cannot mail is dead-lettered
rather than allowed to stop the mail of every later event. The `notify` entries are checked one
by one, with the license's own rule: a bad address costs only itself, the others are mailed.
"""

from __future__ import annotations

import email.errors
from datetime import UTC, date, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Annotated, Any, Literal

from aiosmtplib.email import quote_address
from pydantic import Field, StringConstraints, TypeAdapter, ValidationError

from schemas.common import EntityId, InputModel, Timestamp
from schemas.licenses import NotifyAddress
from streams.config.settings import APP_NAME
from streams.domain.dead_letters import summarize_validation_error
from streams.domain.decoding import Rejected, decode

BACKFILL_AGE = timedelta(days=7)

Count = Annotated[int, Field(ge=0, strict=True)]
# The worker's ids are UUIDs; this one becomes a file name in the outbox and a Message-ID.
EventId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")]


class EventWindow(InputModel):
    start: date
    end: date
    months: Annotated[int, Field(ge=1, strict=True)]


class MailableEvent(InputModel):
    """A threshold event as the notifier needs it (schemas/thresholds.py is what the worker
    writes): an id usable as a file name and in a Message-ID, a limit to divide by."""

    event_id: EventId
    tenant_id: EntityId
    window: EventWindow
    threshold_pct: Annotated[int, Field(ge=1, strict=True)]
    threshold_learners: Count
    direction: Literal["up", "down"]
    active_learners: Count
    learner_limit: Annotated[int, Field(ge=1, strict=True)]
    # Not `tuple[NotifyAddress, ...]`: one bad entry must not cost the good ones their mail.
    notify: tuple[Any, ...]
    occurred_at: Timestamp


_ADDRESS: TypeAdapter[str] = TypeAdapter(NotifyAddress)


def decode_event(raw: bytes | None) -> MailableEvent | Rejected:
    return decode(MailableEvent, raw)


def is_backfill(event: MailableEvent, now: datetime) -> bool:
    """The event's window ended more than 7 days before `now` (the moment the notifier could
    first handle the event: `Notifier.judged_at`)."""
    end = datetime.combine(event.window.end, datetime.min.time(), UTC)
    return end + BACKFILL_AGE < now


def split_recipients(notify: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """(the addresses to mail, each once, one problem per refused entry, named by its index).
    An address the license takes may still be one aiosmtplib will not put on an SMTP command
    line (a domain literal with `<`, `>` or `"`): it raises ValueError for the whole
    transaction, so such an entry is refused here, alone."""
    good: list[str] = []
    seen: set[str] = set()
    problems: list[str] = []
    for index, entry in enumerate(notify):
        try:
            address = _ADDRESS.validate_python(entry)
            quote_address(address)  # what aiosmtplib checks before MAIL FROM and RCPT TO
        except ValidationError as exc:
            problems.append(f"notify[{index}]: {summarize_validation_error(exc)}")
        except ValueError:
            problems.append(f"notify[{index}]: cannot be put on an SMTP command line")
        else:
            # listed twice, also in other capitals (as the license book compares them): one
            # RCPT, one e-mail (helper-86)
            if address.lower() not in seen:
                seen.add(address.lower())
                good.append(address)
    return good, problems


def compose(event: MailableEvent, sender: str, recipients: list[str]) -> EmailMessage | Rejected:
    """The message, already serialized once: whatever the e-mail library refuses in it (a
    tenant id that cannot be in a Subject header, say) is a rejection, not an exception."""
    try:
        message = build_message(event, sender, recipients)
        message.as_bytes()
    except (ValueError, TypeError, email.errors.MessageError) as exc:
        return Rejected("invalid", f"cannot be made into an e-mail: {exc!s:.200}")
    return message


def build_message(event: MailableEvent, sender: str, recipients: list[str]) -> EmailMessage:
    window = event.window
    pct, tenant = event.threshold_pct, event.tenant_id
    active, limit = event.active_learners, event.learner_limit
    used = 100.0 * active / limit
    if event.direction == "up":
        subject = f"Active Learners: {tenant} reached {pct}% of its limit ({active:,} of {limit:,})"
        what = (
            f"The Active Learners of {tenant} reached {active:,}, which is {used:.1f}% of the "
            f"licensed limit of {limit:,} learners. The {pct}% threshold is "
            f"{event.threshold_learners:,} learners."
        )
    else:
        subject = (
            f"Active Learners: {tenant} is back below {pct}% of its limit ({active:,} of {limit:,})"
        )
        what = (
            f"The Active Learners of {tenant} went down to {active:,}, which is {used:.1f}% of "
            f"the licensed limit of {limit:,} learners, below the {pct}% threshold of "
            f"{event.threshold_learners:,} learners."
        )
    body = (
        f"{what}\n\n"
        f"Active Window: {window.start} to {window.end} "
        f"({window.months} month{'s' if window.months != 1 else ''}; the window ends "
        f"the day before {window.end}).\n\n"
        "Active Learners are the unique learners with attempts on tracked content in the "
        "Active Window. Physically deleting attempt records lowers the count; logically "
        "deleted attempts still count.\n\n"
        f"Event {event.event_id} at {event.occurred_at.isoformat()}.\n"
    )
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    # Address objects, never a joined string: each one is exactly one recipient.
    message["To"] = [Address(addr_spec=address) for address in recipients]
    message["Message-ID"] = f"<{event.event_id}@{APP_NAME}>"
    message.set_content(body)
    return message
