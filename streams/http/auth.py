"""Bearer tokens for the HTTP API and the dashboard: `API_READ_TOKENS`, `API_ADMIN_TOKENS`.

When either is set, every `/api/...` call and every dashboard page needs a token: from an
`Authorization: Bearer <token>` header, or (the dashboard) from the HttpOnly cookie its sign-in
form sets. An admin token may do everything a read token may. Tokens are compared in constant
time and never logged. Without tokens the API and dashboard are open (the worker says so once).
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from enum import Enum

COOKIE = "al_token"


class Access(Enum):
    NONE = 0
    READ = 1
    ADMIN = 2


def _tokens(text: str) -> tuple[str, ...]:
    return tuple(token.strip() for token in text.split(",") if token.strip())


@dataclass(frozen=True)
class Tokens:
    read: tuple[str, ...] = ()
    admin: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> Tokens:
        return cls(
            _tokens(env.get("API_READ_TOKENS", "")), _tokens(env.get("API_ADMIN_TOKENS", ""))
        )

    @property
    def required(self) -> bool:
        return bool(self.read or self.admin)

    def access(self, token: str | None) -> Access:
        """What a presented token may do (everything, when no tokens are configured)."""
        if not self.required:
            return Access.ADMIN
        if not token:
            return Access.NONE
        presented = token.encode()
        # every configured token is compared, whatever matched: the time says nothing
        admin = any([hmac.compare_digest(presented, t.encode()) for t in self.admin])
        read = any([hmac.compare_digest(presented, t.encode()) for t in self.read])
        if admin:
            return Access.ADMIN
        return Access.READ if read else Access.NONE

    def describe(self) -> str:
        if not self.required:
            return "API_READ_TOKENS and API_ADMIN_TOKENS empty: the API and dashboard are open"
        return f"API tokens: {len(self.read)} read, {len(self.admin)} admin"


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
