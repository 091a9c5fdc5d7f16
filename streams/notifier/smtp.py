"""The notifier's SMTP settings and one delivery over the connection they describe.

`SMTP_TLS` says how the connection is protected:
  starttls  (default) upgraded with STARTTLS when the server offers it; required when
            SMTP_USERNAME/SMTP_PASSWORD are set
  implicit  TLS from the first byte (SMTPS, port 465 by default)
  none      plain, for a local mail catcher; credentials are then refused at start
Credentials never travel over a connection without TLS. `SMTP_CAFILE` names PEM CA certificates
to trust instead of the system's (a company's own mail server). The old `SMTP_STARTTLS=true|false`
still works and means `SMTP_TLS=starttls|none` (with its old default port, 587 for true).
"""

from __future__ import annotations

import email.errors
import os
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib

from streams.config.settings import ConfigError

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
        """None when SMTP_HOST is not set: mail then goes to the outbox folder."""
        tls, legacy_starttls = _tls_mode(env)  # checked without SMTP_HOST too: a typo shows
        host = env.get("SMTP_HOST", "").strip()
        if not host:
            return None
        default_port = "465" if tls == "implicit" else "587" if legacy_starttls else "25"
        smtp = cls(
            host=host,
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
    except (ValueError, email.errors.MessageError):  # CR or LF, say
        usable = False
    if not usable:
        raise ConfigError(f"SMTP_FROM must be one e-mail address, got {text!r}")
    return text


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise ConfigError(f"SMTP_PORT must be a port number, got {text!r}")
    return port


async def send(
    message: EmailMessage, smtp: SmtpSettings, tls_context: ssl.SSLContext | None
) -> dict[str, str]:
    """Send one message; returns the recipients the server refused while it took the others
    (address -> its answer). Raises what a retry may cure, and what `permanent` recognises."""
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
        refused, _ = await client.send_message(message)
    return {address: f"{answer.code} {answer.message}" for address, answer in refused.items()}


async def _upgrade(client: aiosmtplib.SMTP, smtp: SmtpSettings) -> None:
    await client.ehlo()
    if client.supports_extension("starttls"):
        await client.starttls()
    elif smtp.has_credentials:
        raise CleartextRefused(
            f"SMTP server {smtp.host}:{smtp.port} does not offer STARTTLS: the credentials "
            "are never sent over a plain connection (SMTP_TLS=starttls)"
        )


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
    # 5xx is final, except 5.7.x (policy: relaying denied, authentication required): that is
    # about this notifier's settings, the same for every event, so it is retried until fixed.
    return refusal.code >= 500 and not refusal.message.startswith("5.7.")
