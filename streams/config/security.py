"""How every Kafka client of the service connects: PLAINTEXT, TLS, SASL, or SASL over TLS.

One place reads `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*` and `KAFKA_SSL_*` (the contract's
settings), refuses a combination that cannot work with a one-line error, and hands the same
settings to the three client libraries in use: faust (the worker), aiokafka (the bulk launch
reader, restore and notifier) and kafka-python (the admin client and the CLI).
"""

from __future__ import annotations

import os
import ssl
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityConfigError(ValueError):
    """The security settings cannot work together (the message is one line)."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> KafkaSecurity:
        def get(name: str) -> str:
            return env.get(name, "").strip()

        security = cls(
            protocol=(get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=get("KAFKA_SASL_MECHANISM").upper(),
            sasl_username=get("KAFKA_SASL_USERNAME"),
            sasl_password=env.get("KAFKA_SASL_PASSWORD", ""),
            ssl_cafile=get("KAFKA_SSL_CAFILE"),
            ssl_certfile=get("KAFKA_SSL_CERTFILE"),
            ssl_keyfile=get("KAFKA_SSL_KEYFILE"),
        )
        security.check()
        return security

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def check(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise SecurityConfigError(
                f"KAFKA_SECURITY_PROTOCOL must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.protocol!r}"
            )
        sasl_given = [
            name
            for name, value in (
                ("KAFKA_SASL_MECHANISM", self.sasl_mechanism),
                ("KAFKA_SASL_USERNAME", self.sasl_username),
                ("KAFKA_SASL_PASSWORD", self.sasl_password),
            )
            if value
        ]
        if self.uses_sasl:
            if self.sasl_mechanism not in MECHANISMS:
                raise SecurityConfigError(
                    f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_MECHANISM, one of "
                    f"{', '.join(MECHANISMS)} (got {self.sasl_mechanism or 'none'})"
                )
            if not self.sasl_username or not self.sasl_password:
                raise SecurityConfigError(
                    f"KAFKA_SECURITY_PROTOCOL={self.protocol} needs KAFKA_SASL_USERNAME and "
                    "KAFKA_SASL_PASSWORD"
                )
            if any(unicodedata.category(char) == "Cc" for char in self.sasl_password):
                # a trailing CR of an env file written on Windows, say: every login would fail
                raise SecurityConfigError(
                    "KAFKA_SASL_PASSWORD holds a control character (a CRLF line end?)"
                )
        elif sasl_given:
            raise SecurityConfigError(
                f"{', '.join(sasl_given)} set, but KAFKA_SECURITY_PROTOCOL={self.protocol} does "
                "not use SASL (use SASL_PLAINTEXT or SASL_SSL)"
            )
        ssl_given = [
            name
            for name, value in (
                ("KAFKA_SSL_CAFILE", self.ssl_cafile),
                ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
                ("KAFKA_SSL_KEYFILE", self.ssl_keyfile),
            )
            if value
        ]
        if ssl_given and not self.uses_tls:
            raise SecurityConfigError(
                f"{', '.join(ssl_given)} set, but KAFKA_SECURITY_PROTOCOL={self.protocol} does "
                "not use TLS (use SSL or SASL_SSL)"
            )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise SecurityConfigError(
                "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (a client certificate and "
                "its key, for mutual TLS)"
            )
        for name, path in zip(
            ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"),
            (self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile),
            strict=True,
        ):
            if path and not Path(path).is_file():
                what = "not a regular file" if Path(path).exists() else "no such file"
                raise SecurityConfigError(f"{name}={path}: {what}")
        self.ssl_context()  # files that are not usable PEM: an error now, not a failed connection

    def ssl_context(self) -> ssl.SSLContext | None:
        """SecurityConfigError naming the setting when a file is not usable PEM."""
        if not self.uses_tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile or None)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            raise SecurityConfigError(
                f"KAFKA_SSL_CAFILE={self.ssl_cafile}: not a readable PEM file of CA certificates "
                f"({_reason(exc)})"
            ) from None
        if self.ssl_certfile:
            try:
                # no key password setting: an encrypted key is refused, never prompted for
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, password=_no_password)
            except (OSError, ValueError) as exc:
                raise SecurityConfigError(
                    f"KAFKA_SSL_CERTFILE={self.ssl_certfile} and KAFKA_SSL_KEYFILE="
                    f"{self.ssl_keyfile}: not a readable PEM certificate and its unencrypted "
                    f"key ({_reason(exc)})"
                ) from None
        return context

    def aiokafka(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's consumers, producers and admin client."""
        config: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            config["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            config.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        return config

    def kafka_python(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's admin client, producers and consumers.

        kafka-python names these settings as aiokafka does, so they are the same arguments.
        """
        return self.aiokafka()

    def faust_credentials(self) -> Any:
        """faust's `broker_credentials` (None for PLAINTEXT)."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                ssl_context=self.ssl_context(),
                mechanism=self.sasl_mechanism,
            )
        if self.uses_tls:
            return faust.SSLCredentials(self.ssl_context())
        return None

    def describe(self) -> str:
        """For the log at start: the password masked."""
        parts = [f"KAFKA_SECURITY_PROTOCOL={self.protocol}"]
        if self.uses_sasl:
            parts.append(f"KAFKA_SASL_MECHANISM={self.sasl_mechanism}")
            parts.append(f"KAFKA_SASL_USERNAME={self.sasl_username}")
            parts.append("KAFKA_SASL_PASSWORD=****")
        for name, path in (
            ("KAFKA_SSL_CAFILE", self.ssl_cafile),
            ("KAFKA_SSL_CERTFILE", self.ssl_certfile),
            ("KAFKA_SSL_KEYFILE", self.ssl_keyfile),
        ):
            if path:
                parts.append(f"{name}={path}")
        return " ".join(parts)


def _no_password() -> str:
    raise ValueError("the key is encrypted")


def _reason(exc: Exception) -> str:
    return " ".join(str(getattr(exc, "reason", None) or exc).split())
