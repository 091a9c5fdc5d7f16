"""Named API tokens: who may call, with which role, for which tenants.

A token has a name (it signs the deletions it asks for), a secret, a role (`read` or `admin`) and
the tenants it may see (`*` = all). Two sources, both optional:
- `API_TOKENS_FILE`: `{"tokens": [{"name", "sha256", "role", "tenants"}]}`: only the SHA-256 of
  each secret is stored, so the file is no key to anything. It is re-read when its content
  changes, so tokens rotate without a restart;
- `API_READ_TOKENS` / `API_ADMIN_TOKENS`: comma-separated `name:secret`, for every tenant.
A presented secret is hashed once and compared with every token's hash in constant time.
Without any token the service is in open mode (streams/http/access.py says what that allows).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.config.settings import ConfigError

log = logging.getLogger(__name__)

MIN_SECRET_LENGTH = 32
REREAD_S = 1.0
ROLES = ("read", "admin")
ALL_TENANTS = "*"
# matched whole (`fullmatch`): `$` also matches before a final line break, so `ops\n` passed as
# a name of its own beside `ops` (helper-84)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def digest(secret: str) -> bytes:
    # surrogateescape: aiohttp hands a header's bytes that are not UTF-8 over as surrogates;
    # such a secret is simply wrong (a 401), never an error of ours
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Token:
    name: str
    sha256: bytes
    role: str  # "read" or "admin"
    tenants: frozenset[str]  # {"*"}: every tenant

    @property
    def admin(self) -> bool:
        return self.role == "admin"

    def sees(self, tenant_id: str) -> bool:
        return ALL_TENANTS in self.tenants or tenant_id in self.tenants


def _env_tokens(text: str, role: str, variable: str) -> list[Token]:
    if text.strip() and not text.replace(",", "").strip():
        raise ConfigError(f"{variable} holds no token (only commas): give name:secret entries")
    tokens = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if not sep or not NAME.fullmatch(name):
            raise ConfigError(
                f"{variable}: each entry is name:secret (a name of letters, digits, . _ @ -); "
                f"got one without a valid name"
            )
        if secret != secret.strip():
            # a presented secret is stripped (`bearer`): this one could never match (helper-84)
            raise ConfigError(
                f"{variable}: the secret of {name!r} begins or ends with a blank; "
                "write name:secret with nothing around the secret"
            )
        if len(secret) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"{variable}: the secret of {name!r} has {len(secret)} characters; "
                f"at least {MIN_SECRET_LENGTH} are needed"
            )
        tokens.append(Token(name, digest(secret), role, frozenset({ALL_TENANTS})))
    return tokens


def parse_tokens_file(text: str, where: str) -> list[Token]:
    """The tokens of an API_TOKENS_FILE; ConfigError naming the first problem."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: not JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{where}: not JSON (nested too deep)") from None
    entries = document.get("tokens") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f'{where}: expected {{"tokens": [...]}}')
    tokens = []
    for number, entry in enumerate(entries, 1):
        tokens.append(_file_token(entry, f"{where}: token {number}"))
    return tokens


def _file_token(entry: Any, where: str) -> Token:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object")
    name, sha, role, tenants = (entry.get(k) for k in ("name", "sha256", "role", "tenants"))
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"{where}: name must be letters, digits, . _ @ - (1-64)")
    if not isinstance(sha, str) or not SHA256_HEX.fullmatch(sha.lower()):
        raise ConfigError(f"{where} ({name}): sha256 must be 64 hex digits")
    if role not in ROLES:
        raise ConfigError(f"{where} ({name}): role must be read or admin")
    if (
        not isinstance(tenants, list)
        or not tenants
        or not all(isinstance(t, str) and t for t in tenants)
    ):
        raise ConfigError(f'{where} ({name}): tenants must be a list of tenant ids or ["*"]')
    return Token(name, bytes.fromhex(sha.lower()), role, frozenset(tenants))


class TokenBook:
    """Every configured token; the file's part is re-read whenever the file changes."""

    def __init__(self, fixed: list[Token], path: Path | None) -> None:
        self._fixed = fixed
        self._path = path
        self._file_tokens: list[Token] = []
        self._file_digest: bytes | None = None
        self._file_stamp: tuple[int, int, int] | None = None
        self._read_at = 0.0
        if path is not None:
            text = self._read(path)
            self._file_tokens = parse_tokens_file(text, str(path))
            self._file_digest = hashlib.sha256(text.encode()).digest()
        self._check_names()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> TokenBook:
        """ConfigError (a one-line message) for a short secret or a bad tokens file."""
        fixed = _env_tokens(env.get("API_READ_TOKENS", ""), "read", "API_READ_TOKENS")
        fixed += _env_tokens(env.get("API_ADMIN_TOKENS", ""), "admin", "API_ADMIN_TOKENS")
        path_text = env.get("API_TOKENS_FILE", "").strip()
        return cls(fixed, Path(path_text) if path_text else None)

    @staticmethod
    def _read(path: Path) -> str:
        if path.exists() and not path.is_file():
            # a FIFO or a device would be read without end, at start and at every re-read
            # (helper-84); a missing file is said below
            raise ConfigError(f"API_TOKENS_FILE: {path} is not a regular file")
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"API_TOKENS_FILE: cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"API_TOKENS_FILE: {path} is not UTF-8") from None

    def _check_names(self) -> None:
        _check_unique_names(self.tokens())

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int, int] | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    @property
    def configured(self) -> bool:
        """Any token at all (else: open mode). A tokens file counts even while it is empty."""
        return bool(self._fixed) or self._path is not None

    def tokens(self) -> list[Token]:
        self._reload_if_changed()
        return self._fixed + self._file_tokens

    def _reload_if_changed(self) -> None:
        """The file is read again when the file system says it changed, and at least once a
        second (a rotation within the same tick and size is seen too), and parsed again when its
        content changed. A file that cannot be read or parsed fails closed: none of its tokens
        is accepted until it is fixed."""
        if self._path is None:
            return
        now = time.monotonic()
        stamp = self._stamp(self._path)
        if stamp == self._file_stamp and now - self._read_at < REREAD_S:
            return  # unchanged to the file system, and read less than a second ago
        self._file_stamp, self._read_at = stamp, now
        try:
            text: str | None = self._read(self._path)
        except ConfigError:
            text = None
        content = None if text is None else hashlib.sha256(text.encode()).digest()
        if content == self._file_digest:
            return
        self._file_digest = content
        try:
            if text is None:
                text = self._read(self._path)  # raises again, with the reason
            file_tokens = parse_tokens_file(text, str(self._path))
            _check_unique_names(self._fixed + file_tokens)
            self._file_tokens = file_tokens
        except ConfigError as exc:
            # a name signs a token's deletions (requested_by): never two tokens under one; nor
            # one secret under two names
            self._file_tokens = []
            log.error(
                "API_TOKENS_FILE %s re-read: %s; the file's tokens are refused until it is fixed",
                self._path,
                exc,
            )
            return
        log.warning("API_TOKENS_FILE re-read: %d tokens", len(self._file_tokens))

    def find(self, secret: str | None) -> Token | None:
        """The token whose secret this is, or None. Every hash is compared, whatever matched."""
        if not secret:
            return None
        presented = digest(secret)
        found = None
        for token in self.tokens():
            if hmac.compare_digest(presented, token.sha256) and found is None:
                found = token
        return found

    def named(self, name: str, sha256: bytes) -> Token | None:
        """The token of a dashboard session, if it still exists (rotation ends its sessions)."""
        for token in self.tokens():
            if token.name == name and hmac.compare_digest(token.sha256, sha256):
                return token
        return None

    def describe(self) -> str:
        if not self.configured:
            return "API tokens: none (open mode: reads and previews only, bound to 127.0.0.1)"
        tokens = self.tokens()
        admins = sum(token.admin for token in tokens)
        source = f" (+ API_TOKENS_FILE {self._path})" if self._path else ""
        return f"API tokens: {len(tokens) - admins} read, {admins} admin{source}"


def _check_unique_names(tokens: list[Token]) -> None:
    names = [token.name for token in tokens]
    doubled = sorted({name for name in names if names.count(name) > 1})
    if doubled:
        raise ConfigError(f"API tokens: the name {doubled[0]!r} is given to two tokens")
    # one secret, two tokens: the first found would answer for both, so the other (an admin
    # token behind a read one) could never be used (helper-84)
    holders: dict[bytes, str] = {}
    for token in tokens:
        other = holders.setdefault(token.sha256, token.name)
        if other != token.name:
            raise ConfigError(
                f"API tokens: {other!r} and {token.name!r} have the same secret; "
                "each token needs its own"
            )
