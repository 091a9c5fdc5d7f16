"""`licenses`: compacted, key `tenant_id`; the latest license of a tenant governs its windows."""

from __future__ import annotations

import re
from datetime import date
from email.headerregistry import Address
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

from schemas.common import CalendarDate, EmailAddress, EntityId, InputModel

DEFAULT_THRESHOLDS = (80, 90, 100)
EPOCH_ANCHOR = date(1970, 1, 1)
MAX_WEBHOOK_LENGTH = 2048
# A threshold event carries the license's `notify` list, and a window's stored threshold state
# keeps the list of each threshold's last event: both have to fit a record (1 MB), so a list is
# bounded. 100 recipients is what every SMTP server must take in one message (RFC 5321,
# 4.5.3.1.8): more belongs on a mailing list. A list of 100 addresses of 320 characters is 33 KB.
MAX_NOTIFY = 100

ThresholdPct = Annotated[int, Field(ge=1, le=1000, strict=True)]


# Files of the zone database folder that name no IANA zone but whatever the machine chose: its
# own zone (each worker would cut the windows at the midnight of the host it runs on) and the
# rules a POSIX TZ string falls back to.
_MACHINE_ZONES = frozenset({"localtime", "posixrules"})
# Folders of the zone database that many machines' copies (Debian's tzdata) hold beside the IANA
# names: the database again, as other builds (`right/` counts leap seconds). No IANA names, and
# missing from the `tzdata` package and from other machines, so the workers, the read model and
# the notifier of one deployment would each read such a license their own way (helper-89).
_BUILD_FOLDERS = ("posix/", "right/")


def _check_zone(name: str) -> str:
    if name in _MACHINE_ZONES:
        raise ValueError(f"{name!r} is the machine's own zone, not an IANA time zone name")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        # OSError: a name such as "America" is a folder of the zone database, not a zone
        raise ValueError(f"unknown IANA time zone {name[:80]!r}") from exc
    return name


def _not_a_bool(value: object) -> object:
    # JSON true is not the number 1
    if isinstance(value, bool):
        raise ValueError("must be 1, 3 or 12")
    return value


ZoneName = Annotated[str, Field(max_length=64), AfterValidator(_check_zone)]

# C0 and C1 controls, DEL and the Unicode line separators: each can end or forge a mail header.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _one_address(value: str) -> str:
    # Each entry goes into a To header as it is: a list ("a@x, b@y"), a display name
    # ("Ann <a@x>") or a comment would mail someone the license does not name, and a control
    # character could add a header. The entry must be exactly the one address that Python's
    # e-mail library reads from it (which also refuses a non-ASCII local part).
    if _CONTROL.search(value):
        raise ValueError(f"contains a control character: {value[:80]!r}")
    try:
        parsed = Address(addr_spec=value).addr_spec
    except Exception:  # the library's parser also fails with AttributeError and the like
        parsed = None
    if parsed != value:
        raise ValueError(f"must be one bare e-mail address (name@domain): {value[:80]!r}")
    return value


NotifyAddress = Annotated[EmailAddress, AfterValidator(_one_address)]
"""One e-mail address, `name@domain`, exactly as the e-mail library reads it back."""


def _webhook_url(value: str) -> str:
    # The messages never repeat the URL: its path or query may hold the receiver's own secret
    # (many webhook URLs do), and a dead letter's detail goes into the worker's log.
    if _CONTROL.search(value) or any(char.isspace() for char in value):
        raise ValueError("must not contain white space or a control character")
    try:
        parts = urlsplit(value)
        port = parts.port  # a ValueError for a port that is not a number 0-65535
    except ValueError as exc:
        raise ValueError(f"is not a URL ({str(exc)[:80]})") from None
    if parts.scheme.lower() not in ("http", "https"):
        what = f", not {parts.scheme[:16]!r}" if parts.scheme else ""
        raise ValueError(f"must be an absolute http:// or https:// URL{what}")
    if not value[len(parts.scheme) :].startswith("://"):
        raise ValueError("must be an absolute http:// or https:// URL")
    if "@" in parts.netloc:
        # a password in a URL travels with every copy of the license and, over http://, in
        # clear; receivers authenticate deliveries by their signature (WEBHOOK_SECRET) instead
        raise ValueError("must not carry credentials (user:password@)")
    if not parts.hostname:
        raise ValueError("has no host")
    if port == 0:
        raise ValueError("has port 0")
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        raise ValueError("has a host name that is not a valid DNS name") from None
    return value


WebhookUrl = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_WEBHOOK_LENGTH),
    AfterValidator(_webhook_url),
    Field(
        description="an absolute http:// or https:// URL of at most 2,048 characters, without "
        "credentials (user:password@), white space or control characters",
        json_schema_extra={"format": "uri"},
    ),
]
"""Where the notifier POSTs a tenant's threshold events."""


class License(InputModel):
    """What a tenant bought: the Active Window, the licensed limit and who hears of thresholds."""

    tenant_id: EntityId
    cycle_start: CalendarDate = Field(
        default=EPOCH_ANCHOR, description="Active Learner Start Date: the anchor of every window"
    )
    window_months: Annotated[Literal[1, 3, 12], BeforeValidator(_not_a_bool)] = Field(
        default=12, description="Active Window length"
    )
    learner_limit: Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)] | None = Field(
        default=None, description="licensed Active Learners; null = no limit, no threshold events"
    )
    thresholds: tuple[ThresholdPct, ...] = Field(
        default=DEFAULT_THRESHOLDS,
        description="percentages of the limit that notify admins",
    )
    notify: tuple[NotifyAddress, ...] = Field(
        default=(),
        description=f"who gets threshold e-mails (at most {MAX_NOTIFY} addresses)",
        json_schema_extra={"maxItems": MAX_NOTIFY},
    )
    webhooks: tuple[WebhookUrl, ...] = Field(
        default=(),
        # no cap on how many: the contract sets none, and a license refused for one URL too many
        # would leave the tenant's windows on its previous license (Kafka's record limit bounds it)
        description="where threshold events are POSTed as JSON (a repeated URL counts once)",
    )
    timezone: ZoneName = Field(default="UTC", description="windows start at local midnight here")

    @field_validator("thresholds")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(value)))

    @field_validator("timezone")
    @classmethod
    def _iana_name(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith(_BUILD_FOLDERS) and not _stored(info):
            raise ValueError(f"{value[:80]!r} is a build folder's copy, not an IANA time zone name")
        return value

    @field_validator("notify")
    @classmethod
    def _bounded(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if len(value) > MAX_NOTIFY and not _stored(info):
            raise ValueError(f"at most {MAX_NOTIFY} addresses, not {len(value)}")
        return value

    @field_validator("webhooks")
    @classmethod
    def _unique_in_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # one delivery queue per URL: the same URL twice would get every event twice
        return tuple(dict.fromkeys(value))


STORED = {"stored": True}
"""The validation context of a license a worker stored before: an older version may have
applied it before `notify` was bounded, and it keeps governing (a new record like it is what
the bound refuses)."""


def _stored(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("stored"))


def default_license(tenant_id: str) -> License:
    """The license of a tenant that has none: 12-month windows from 1970-01-01 UTC, no limit."""
    return License(tenant_id=tenant_id, thresholds=())
