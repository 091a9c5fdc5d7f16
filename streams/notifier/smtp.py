"""The notifier's SMTP settings and one delivery over the connection they describe.

`SMTP_TLS` says how the connection is protected:
  starttls  (default) upgraded with STARTTLS when the server offers it; required when
            SMTP_USERNAME/SMTP_PASSWORD are set
  implicit  TLS from the first byte (SMTPS, port 465 by default)
  none      plain, for a local mail catcher; credentials are then refused at start
Credentials never travel over a connection without TLS. `SMTP_CAFILE` names PEM CA certificates
to trust instead of the system's (a company's own mail server). The old `SMTP_STARTTLS=true|false`
still works and means `SMTP_TLS=starttls|none` (with its old default port, 587 for true).

What a failure is about decides what the notifier does (streams/notifier/service.py):
  the server   no connection, a timeout, 421, a refused sender, login or DATA: the same for
               every event, so the notifier waits for it and loses none
  one address  an answer to RCPT while the server takes the transaction: 5xx is final (the
               event is dead-lettered saying so), 4xx is that mailbox's for now (full,
               greylisted): it is retried alone, for 24 h, and holds up no other address,
               tenant or webhook
  unclear      a policy answer (5.7.x) to every recipient: "relay access denied" for this
               notifier's settings, or "recipient rejected: access denied" for that address
               alone. One answer cannot tell them apart, so each address is retried alone, as a
               4xx is, with no deadline until the server is seen taking other mail: a
               misconfigured notifier loses no e-mail, and one address's policy holds up nothing
               A 5xx at the end of DATA (the message refused: a content filter reading one
               tenant's id, a size limit, or the notifier's own settings such as signing) is
               unclear in the same way, for every address of the transaction
  the message  SMTPUTF8 not supported: the event is dead-lettered
"""

from __future__ import annotations

import os
import ssl
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from typing import TypeGuard

import aiosmtplib
import idna
from aiosmtplib.email import quote_address

from streams.config.settings import ConfigError, host_setting

TLS_MODES = ("starttls", "implicit", "none")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
TIMEOUT_S = 20


class CleartextRefused(aiosmtplib.SMTPException):
    """The server offers no STARTTLS and the notifier has credentials to send."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: str = "starttls"
    cafile: str | None = None

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> SmtpSettings | None:
        """None when SMTP_HOST is not set: mail then goes to the outbox folder. Any other
        `SMTP_*` set without it is a ConfigError: a forgotten or mistyped SMTP_HOST (`SMTP_HOTS`)
        beside SMTP_PORT or SMTP_USERNAME would write every e-mail to the outbox, unsent."""
        tls, legacy_starttls = _tls_mode(env)  # checked without SMTP_HOST too: a typo shows
        host = env.get("SMTP_HOST", "").strip()
        if not host:
            stray = sorted(
                name
                for name, value in env.items()
                if name.startswith("SMTP_") and name != "SMTP_HOST" and value.strip()
            )
            if stray:
                raise ConfigError(
                    f"{', '.join(stray)} set without SMTP_HOST: set SMTP_HOST to send e-mail "
                    "over SMTP, or unset them to write it to STATE_DIR/outbox"
                )
            return None
        default_port = "465" if tls == "implicit" else "587" if legacy_starttls else "25"
        smtp = cls(
            host=host_setting("SMTP_HOST", host),
            port=_port(env.get("SMTP_PORT", "").strip() or default_port),
            sender=_sender(env.get("SMTP_FROM", "").strip() or "active-learners@localhost"),
            username=env.get("SMTP_USERNAME") or None,
            password=env.get("SMTP_PASSWORD") or None,
            tls=tls,
            cafile=env.get("SMTP_CAFILE", "").strip() or None,
        )
        if tls == "none" and smtp.has_credentials:
            raise ConfigError(
                "SMTP_TLS=none would send SMTP_USERNAME/SMTP_PASSWORD in clear: "
                "use SMTP_TLS=starttls or implicit, or no credentials"
            )
        for name, value in (("SMTP_USERNAME", smtp.username), ("SMTP_PASSWORD", smtp.password)):
            if value is not None and any(unicodedata.category(char) == "Cc" for char in value):
                # a trailing CR of an env file written on Windows, say: every login would fail
                raise ConfigError(f"{name} holds a control character (a CRLF line end?)")
        if (smtp.username is None) != (smtp.password is None):
            # a login with an empty half fails at every event, and the notifier would wait
            raise ConfigError("SMTP_USERNAME and SMTP_PASSWORD go together: set both, or neither")
        if tls == "none" and smtp.cafile:
            raise ConfigError("SMTP_CAFILE needs SMTP_TLS=starttls or implicit")
        smtp.tls_context()  # an unreadable SMTP_CAFILE stops the notifier before it starts
        return smtp

    @property
    def has_credentials(self) -> bool:
        return self.username is not None or self.password is not None

    def tls_context(self) -> ssl.SSLContext | None:
        """Certificates and host names verified, against SMTP_CAFILE or the system's CAs."""
        if self.tls == "none":
            return None
        # a FIFO or a device would be read without end before the notifier starts (helper-84);
        # a missing file is said below
        if (
            self.cafile is not None
            and os.path.exists(self.cafile)
            and not os.path.isfile(self.cafile)
        ):
            raise ConfigError(f"SMTP_CAFILE={self.cafile}: not a regular file")
        try:
            return ssl.create_default_context(cafile=self.cafile)
        except OSError as exc:  # ssl.SSLError included: a file without certificates
            raise ConfigError(
                f"SMTP_CAFILE={self.cafile}: not a readable PEM file of CA certificates ({exc})"
            ) from None

    def describe(self) -> str:
        """For the log at start (no password)."""
        tls = self.tls
        if tls == "starttls":
            tls += ", required" if self.has_credentials else " when offered"
        return f"SMTP {self.host}:{self.port} (TLS: {tls})"


def _tls_mode(env: dict[str, str] | os._Environ[str]) -> tuple[str, bool]:
    """(SMTP_TLS, whether the old SMTP_STARTTLS=true said so)."""
    tls = env.get("SMTP_TLS", "").strip().lower()
    legacy = env.get("SMTP_STARTTLS", "").strip().lower()
    if tls and legacy:
        raise ConfigError("SMTP_STARTTLS is the old name of SMTP_TLS: set only SMTP_TLS")
    if legacy:
        if legacy not in _TRUE + _FALSE:
            raise ConfigError(f"SMTP_STARTTLS must be true or false, got {legacy!r}")
        return ("starttls", True) if legacy in _TRUE else ("none", False)
    tls = tls or "starttls"
    if tls not in TLS_MODES:
        raise ConfigError(f"SMTP_TLS must be starttls, implicit or none, got {tls!r}")
    return tls, False


def _sender(text: str) -> str:
    """SMTP_FROM: one address, a name allowed (`Active Learners <lms@example.com>`). Checked at
    start: a sender the e-mail library refuses would otherwise make every event unmailable."""
    message = EmailMessage()
    try:
        message["From"] = text
        usable = len(message["From"].addresses) == 1 and not message["From"].defects
        if usable:  # what aiosmtplib checks before MAIL FROM (ValueError: `<` in a domain literal)
            quote_address(message["From"].addresses[0].addr_spec)
    except Exception:
        # CR or LF, say (ValueError); its header parser itself fails on some texts: an unclosed
        # domain literal `a@[1.2.3.4` (AttributeError, helper-84), `"` (IndexError, helper-85)
        usable = False
    if not usable:
        raise ConfigError(f"SMTP_FROM must be one e-mail address, got {text!r}")
    address = message["From"].addresses[0]
    if address.domain.isascii():
        return text
    # A domain in other scripts is sent in its ASCII form (IDNA 2008, `xn--…`): as written, a
    # server without SMTPUTF8 refused MAIL FROM for every event, each then dead-lettered
    # (helper-86). Not Python's `idna` codec: its IDNA 2003 makes `fußball.de` `fussball.de`,
    # another domain (helper-87). A local part in other scripts needs SMTPUTF8 of every server;
    # it stays as written.
    if address.domain.startswith("["):
        raise ConfigError(f"SMTP_FROM has a domain literal with other characters: {text!r}")
    try:
        domain = idna.encode(address.domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        raise ConfigError(f"SMTP_FROM has a domain that has no ASCII form: {text!r}") from None
    return str(Address(address.display_name, address.username, domain))


def _port(text: str) -> int:
    try:  # ASCII digits only: `int` also reads `٢٥` and `+25` (helper-84)
        port = int(text) if text.isascii() and text.isdigit() else 0
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"SMTP_PORT must be a port number, got {text!r}")
    return port


async def send(
    message: EmailMessage, smtp: SmtpSettings, tls_context: ssl.SSLContext | None
) -> dict[str, aiosmtplib.SMTPResponse]:
    """Send one message to its To addresses; returns the recipients the server refused while it
    took the others (address -> its answer). Raises what a retry may cure, and what
    `permanent` and `refusals_of` recognise."""
    client = aiosmtplib.SMTP(
        hostname=smtp.host,
        port=smtp.port,
        use_tls=smtp.tls == "implicit",
        start_tls=False,  # decided below: aiosmtplib would log in over a plain connection
        tls_context=tls_context,
        timeout=TIMEOUT_S,
    )
    async with client:
        if smtp.tls == "starttls":
            await _upgrade(client, smtp)
        if smtp.has_credentials:
            await client.login(smtp.username or "", smtp.password or "")
        recipients, unsendable = await _envelope(client, message)
        refused, _ = await client.send_message(message, recipients=recipients)
    return {**unsendable, **refused}


NO_SMTPUTF8 = (553, "5.6.7 the SMTP server offers no SMTPUTF8 for a non-ASCII address")


async def _envelope(
    client: aiosmtplib.SMTP, message: EmailMessage
) -> tuple[list[str], dict[str, aiosmtplib.SMTPResponse]]:
    """(the recipients to name in the transaction, those the server cannot take as refusals).
    A non-ASCII address (an internationalized domain) needs SMTPUTF8: without it aiosmtplib
    refuses the whole transaction, and the plain addresses beside it would get nothing. It is
    refused alone instead, for good, as a server would (RFC 6531, 553 5.6.7)."""
    recipients = [address.addr_spec for address in message["To"].addresses]
    if all(address.isascii() for address in recipients):
        return recipients, {}
    await client._ehlo_or_helo_if_needed()  # what send_message does first
    if client.supports_extension("smtputf8"):
        return recipients, {}
    plain = [address for address in recipients if address.isascii()]
    unsendable = [address for address in recipients if not address.isascii()]
    if not plain:
        raise aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(*NO_SMTPUTF8, address) for address in unsendable]
        )
    return plain, {address: aiosmtplib.SMTPResponse(*NO_SMTPUTF8) for address in unsendable}


async def _upgrade(client: aiosmtplib.SMTP, smtp: SmtpSettings) -> None:
    await client.ehlo()
    if client.supports_extension("starttls"):
        await client.starttls()
    elif smtp.has_credentials:
        raise CleartextRefused(
            f"SMTP server {smtp.host}:{smtp.port} does not offer STARTTLS: the credentials "
            "are never sent over a plain connection (SMTP_TLS=starttls)"
        )


@dataclass(frozen=True)
class Refusals:
    """The recipients a server that took the transaction refused, by what a retry can do."""

    final: dict[str, str] = field(default_factory=dict)  # address -> answer: 5xx, never
    # address -> answer: a 4xx about that mailbox (full, greylisted, over its rate): it is
    # retried alone, for 24 h, while every other recipient and event goes on
    for_now: dict[str, str] = field(default_factory=dict)
    # address -> answer: a 5.7.x while the server took no recipient: this address's policy or
    # the notifier's settings (see the module's docstring); retried alone like `for_now`
    unclear: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.final) + len(self.for_now) + len(self.unclear)

    @property
    def retried(self) -> dict[str, str]:
        """The addresses retried on their own, with their answers."""
        return {**self.for_now, **self.unclear}


def sort_refusals(refused: Mapping[str, aiosmtplib.SMTPResponse]) -> Refusals:
    """The recipients refused while the server took the others. None of these answers is about
    the server, which took the message: a 5xx is final (5.7.x included: a policy about that
    address, such as relaying to its domain), a 4xx is that mailbox's for now."""
    answers = {address: f"{answer.code} {answer.message}" for address, answer in refused.items()}
    return Refusals(
        final={address: answers[address] for address in refused if refused[address].code >= 500},
        for_now={address: answers[address] for address in refused if refused[address].code < 500},
    )


def refusals_of(exc: Exception) -> Refusals | None:
    """Every recipient refused, each for a reason of its own; None for any other failure, and
    when one answer is about the server (421: it is closing the connection, RFC 5321 3.8),
    which the notifier waits out. A policy answer (5.7.x) is `unclear` here: the server took
    no recipient, so it may be about this notifier's settings rather than the address."""
    if not isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return None
    if any(refusal.code == 421 for refusal in exc.recipients):
        return None
    policy = {r.recipient: f"{r.code} {r.message}" for r in exc.recipients if _policy(r)}
    others = sort_refusals(
        {
            refusal.recipient: aiosmtplib.SMTPResponse(refusal.code, refusal.message)
            for refusal in exc.recipients
            if refusal.recipient not in policy
        }
    )
    return Refusals(others.final, others.for_now, policy)


def answer_about_the_mail(exc: Exception, recipients: Sequence[str]) -> str | Refusals | None:
    """What a failed transaction to `recipients` says about this message (why the server will
    never take it) or about its addresses (each refused for a reason of its own); None when it
    is about the server, and a retry of the whole transaction may cure it."""
    reason = permanent(exc)
    if reason is not None:
        return reason
    if message_refused(exc):  # every address waits on its own until the server takes others
        return Refusals(unclear=dict.fromkeys(recipients, f"{exc.code} {exc.message}"))
    return refusals_of(exc)


def message_refused(exc: Exception) -> TypeGuard[aiosmtplib.SMTPDataError]:
    """A 5xx at the end of DATA: the server took the recipients and refused this message. It
    may be this message's own (a content filter reading a tenant's id: retried as the server's
    failure, it held up every later e-mail and webhook for ever) or every message's (the
    notifier's settings): `unclear`, as a policy answer to every recipient is."""
    return isinstance(exc, aiosmtplib.SMTPDataError) and exc.code >= 500


def permanent(exc: Exception) -> str | None:
    """Why the server will never take this message, or None when a retry may succeed."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and all(
        _refuses_the_address(refusal) for refusal in exc.recipients
    ):
        codes = ", ".join(sorted({str(refusal.code) for refusal in exc.recipients}))
        return f"the SMTP server refused every recipient ({codes})"
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return f"the SMTP server cannot take it: {exc}"
    return None


def _refuses_the_address(refusal: aiosmtplib.SMTPRecipientRefused) -> bool:
    # 5xx is final, except 5.7.x (policy: relaying denied, authentication required), which may
    # be about this notifier's settings: it is `unclear` (see the module's docstring).
    return refusal.code >= 500 and not _policy(refusal)


def _policy(refusal: aiosmtplib.SMTPRecipientRefused) -> bool:
    return refusal.code >= 500 and refusal.message.startswith("5.7.")
