"""Settings, read from the environment once (see the README's configuration table)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.config.security import KafkaSecurity, SecurityConfigError

APP_NAME = "active-learners"


class ConfigError(ValueError):
    """A setting has a value the service cannot use."""


def _int_setting(
    env: dict[str, str] | os._Environ[str],
    name: str,
    default: int,
    low: int,
    high: int | None = None,
) -> int:
    text = env.get(name, "").strip()
    if not text:
        return default
    # ASCII digits only: `int` also reads `١٢`, `1_000` and `+12` (helper-84)
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise ConfigError(f"{name} must be a whole number, got {text[:40]!r}")
    try:
        value = int(text)
    except ValueError:
        # (a number of more than 4,300 digits too: Python refuses to read it)
        raise ConfigError(f"{name} must be a whole number, got {text[:40]!r}") from None
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be at most {high}, got {value}")
    return value


# host or host:port; an IPv6 address in brackets ([::1]:9092), as faust's broker URLs need it
_BROKER = re.compile(r"(\[([0-9A-Fa-f:.]+)\]|[^\s:/\[\]]+)(:([0-9]{1,5}))?")


def _ipv6(text: str) -> bool:
    """Whether `text` (between brackets) is an IPv6 address: faust refuses anything else there,
    when the worker builds its app, after the topics were made (helper-84)."""
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _bootstrap_servers(env: dict[str, str] | os._Environ[str]) -> str:
    """KAFKA_BOOTSTRAP_SERVERS, checked: the three Kafka clients each fail their own way (a
    traceback, or a wait until the timeout) on an entry they cannot parse."""
    text = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() or "localhost:9092"
    for entry in text.split(","):
        match = _BROKER.fullmatch(entry.strip())
        if (
            match is None
            or not 1 <= int(match.group(4) or 9092) <= 65535
            or (match.group(2) is not None and not _ipv6(match.group(2)))
        ):
            shown = "an empty entry" if not entry.strip() else repr(entry.strip())
            raise ConfigError(
                f"KAFKA_BOOTSTRAP_SERVERS must be host:port entries, comma-separated "
                f"([::1]:9092 for IPv6); got {shown} in {text!r}"
            )
    return text


def _trusted_proxies(env: dict[str, str] | os._Environ[str]) -> tuple[str, ...]:
    """WEB_TRUSTED_PROXIES: addresses or networks (10.0.0.0/8, fd00::/8), comma-separated."""
    proxies = tuple(p.strip() for p in env.get("WEB_TRUSTED_PROXIES", "").split(",") if p.strip())
    for proxy in proxies:
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ConfigError(
                f"WEB_TRUSTED_PROXIES: {proxy[:60]!r} is not an IP address or network"
            ) from None
    return proxies


# Kafka's wire format holds a topic's partition count in 32 bits and its replication factor
# in 16: larger values are no broker's answer but a client's traceback. Far below that, a
# typo (120000 for 12) would ask the brokers for millions of partitions over the service's
# topics: 10,000 per topic is beyond any deployment of it (a worker process per partition).
MAX_PARTITIONS = 10_000
MAX_REPLICATION_FACTOR = 32_767

# A DNS name (labels of letters, digits, `-` and `_`, dot-separated) or an IP address: the
# bind address, the name other workers call and the `Host` names answered are nothing else. A URL
# (`http://w1`) or a port (`w1:6066`) there would make reports call `http://http//w1:6066:6066`
# or fail the worker's start with a traceback; a `Host` header never names either.
_HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def host_setting(name: str, text: str) -> str:
    """`text` checked as a host name or an IP address (ConfigError naming the setting); an IPv6
    address without brackets."""
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(text):
        raise ConfigError(
            f"{name}: {text[:80]!r} is not a host name or IP address (no scheme, port or path)"
        )
    return text


def _hosts(env: dict[str, str] | os._Environ[str], name: str) -> tuple[str, ...]:
    """A comma-separated list of host names or IP addresses, each checked."""
    entries = (entry.strip() for entry in env.get(name, "").split(","))
    return tuple(host_setting(name, entry) for entry in entries if entry)


def _advertised_host(env: dict[str, str] | os._Environ[str]) -> str:
    text = env.get("WEB_ADVERTISED_HOST", "").strip()
    return host_setting("WEB_ADVERTISED_HOST", text) if text else ""


# A batch's launches wait uncounted while it lingers: a minute is far beyond any latency the
# linger trades for batch size, and a longer one is a typo. (The launch reader divides it by
# 1000: a number of hundreds of digits raised OverflowError when the worker started.)
MAX_INGEST_LINGER_MS = 60_000

# How often the learner stage's partial counts go while the worker keeps up (in a backlog no
# more often than every 0.5 s: streams/worker/partials_pace.py). Below 50 ms the reports would
# cost more than the launches; above 10 s a count lags too far behind for a dashboard.
PARTIALS_INTERVAL_MS = (50, 10_000)

# Kafka names a topic with at most 249 of [A-Za-z0-9._-]; faust adds its own suffixes to the app
# id (`{prefix}active-learners-__assignor-__leader`), so a prefix keeps well below that.
MAX_TOPIC_PREFIX = 150
_TOPIC_PREFIX = re.compile(r"[A-Za-z0-9._-]*")


def _topic_prefix(env: dict[str, str] | os._Environ[str]) -> str:
    """TOPIC_PREFIX, refused at start when Kafka would refuse the topics it names (the worker
    failed later with a broker error, the CLI with a traceback)."""
    text = env.get("TOPIC_PREFIX", "")
    if not _TOPIC_PREFIX.fullmatch(text):
        raise ConfigError(
            f"TOPIC_PREFIX: {text[:80]!r} holds a character Kafka refuses in a topic name "
            "(use letters, digits, '.', '_' and '-')"
        )
    if len(text) > MAX_TOPIC_PREFIX:
        raise ConfigError(
            f"TOPIC_PREFIX must be at most {MAX_TOPIC_PREFIX} characters, got {len(text)}"
        )
    return text


# The block cache holds the index and filter blocks every read needs (1.9 MB of them at a million
# attempts): under 8 MiB they would crowd out the data blocks; over 64 GiB is a typo
MIN_BLOCK_CACHE_MB, MAX_BLOCK_CACHE_MB = 8, 64 * 1024
# what the per-DB caches of 2 MiB, before there was one cache, held at 10M attempts
BLOCK_CACHE_MB = 48

MALLOC_MMAP_MAX_KB = 32 * 1024  # glibc refuses a larger mmap threshold (64-bit)


def _malloc_mmap_fixed_kb(env: dict[str, str] | os._Environ[str]) -> int:
    value = _int_setting(env, "MALLOC_MMAP_FIXED_KB", 0, 0)
    if value > MALLOC_MMAP_MAX_KB:
        raise ConfigError(
            f"MALLOC_MMAP_FIXED_KB must be at most {MALLOC_MMAP_MAX_KB} (glibc's), got {value}"
        )
    return value


@dataclass(frozen=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    topic_prefix: str = ""
    state_dir: Path = Path(".state")
    web_port: int = 6066
    web_host: str = "127.0.0.1"
    notifier_port: int = 6068  # the notifier's /metrics and /health (0: none)
    web_allowed_hosts: tuple[str, ...] = ()  # empty: localhost, 127.0.0.1 and the bind address
    web_advertised_host: str = ""  # how other workers reach this one; empty: see advertised_host
    web_trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-For names the client
    api_tokens_configured: bool = False  # any of API_TOKENS_FILE, API_READ/ADMIN_TOKENS set
    deletion_max_share: int = 50  # % of a window a physical deletion may remove without force
    partitions: int = 12
    replication_factor: int = 1
    ingest_batch_max: int = 5_000  # launches routed at once by the bulk launch reader
    ingest_linger_ms: int = 100  # how long it waits to fill a batch once a launch arrived
    partials_interval_ms: int = 500  # how often partial counts go while the worker keeps up
    # KiB from which every allocation gets a mapping of its own, for good; 0: glibc decides
    # (streams/worker/malloc.py: fix_mmap_threshold)
    malloc_mmap_fixed_kb: int = 0
    # MiB of the one RocksDB block cache of a worker process: data, index and filter blocks of
    # every table (streams/worker/tables.py)
    rocksdb_block_cache_mb: int = BLOCK_CACHE_MB
    security: KafkaSecurity = field(default_factory=KafkaSecurity)

    @classmethod
    def from_env(cls, env: dict[str, str] | os._Environ[str] = os.environ) -> Settings:
        try:
            security = KafkaSecurity.from_env(env)
        except SecurityConfigError as exc:
            raise ConfigError(str(exc)) from None
        return cls(
            bootstrap_servers=_bootstrap_servers(env),
            topic_prefix=_topic_prefix(env),
            state_dir=Path(env.get("STATE_DIR", "").strip() or ".state"),
            web_port=_int_setting(env, "WEB_PORT", 6066, 1, 65535),
            web_host=host_setting("WEB_HOST", env.get("WEB_HOST", "").strip() or "127.0.0.1"),
            notifier_port=_int_setting(env, "NOTIFIER_PORT", 6068, 0, 65535),
            web_allowed_hosts=tuple(host.lower() for host in _hosts(env, "WEB_ALLOWED_HOSTS")),
            web_advertised_host=_advertised_host(env),
            web_trusted_proxies=_trusted_proxies(env),
            api_tokens_configured=bool(env.get("API_TOKENS_FILE", "").strip())
            or any(
                entry.strip()
                for name in ("API_READ_TOKENS", "API_ADMIN_TOKENS")
                for entry in env.get(name, "").split(",")
            ),
            deletion_max_share=_int_setting(env, "DELETION_MAX_SHARE", 50, 0, 100),
            partitions=_int_setting(env, "PARTITIONS", 12, 1, MAX_PARTITIONS),
            replication_factor=_int_setting(
                env, "REPLICATION_FACTOR", 1, 1, MAX_REPLICATION_FACTOR
            ),
            ingest_batch_max=_int_setting(env, "INGEST_BATCH_MAX", 5_000, 1, 100_000),
            ingest_linger_ms=_int_setting(env, "INGEST_LINGER_MS", 100, 0, MAX_INGEST_LINGER_MS),
            partials_interval_ms=_int_setting(
                env, "PARTIALS_INTERVAL_MS", 500, *PARTIALS_INTERVAL_MS
            ),
            malloc_mmap_fixed_kb=_malloc_mmap_fixed_kb(env),
            rocksdb_block_cache_mb=_int_setting(
                env,
                "ROCKSDB_BLOCK_CACHE_MB",
                BLOCK_CACHE_MB,
                MIN_BLOCK_CACHE_MB,
                MAX_BLOCK_CACHE_MB,
            ),
            security=security,
        )

    def describe(self) -> str:
        """The settings in one line, for the log at start (the password masked)."""
        return (
            f"KAFKA_BOOTSTRAP_SERVERS={self.bootstrap_servers} TOPIC_PREFIX={self.topic_prefix!r} "
            f"STATE_DIR={self.state_dir} WEB_BIND={self.web_bind}:{self.web_port} "
            f"WEB_ALLOWED_HOSTS={','.join(self.allowed_hosts)} PARTITIONS={self.partitions} "
            f"DELETION_MAX_SHARE={self.deletion_max_share} "
            f"REPLICATION_FACTOR={self.replication_factor} "
            f"INGEST_BATCH_MAX={self.ingest_batch_max} INGEST_LINGER_MS={self.ingest_linger_ms} "
            f"PARTIALS_INTERVAL_MS={self.partials_interval_ms} "
            f"MALLOC_MMAP_FIXED_KB={self.malloc_mmap_fixed_kb} "
            f"ROCKSDB_BLOCK_CACHE_MB={self.rocksdb_block_cache_mb} " + self.security.describe()
        )

    @property
    def web_bind(self) -> str:
        """The address the HTTP server binds: WEB_HOST, but never beyond this host in open mode."""
        return self.web_host if self.api_tokens_configured else "127.0.0.1"

    @property
    def advertised_host(self) -> str:
        """The host other workers call this one at (reports gather rows from every worker):
        WEB_ADVERTISED_HOST, else the bind address, else (bound to every interface) the host
        name."""
        host = self.web_advertised_host or self.web_bind
        if host in ("0.0.0.0", "::"):
            return socket.gethostname()
        # an IPv6 address goes into the URL the others call in brackets (http://[fd00::1]:6066)
        return f"[{host}]" if ":" in host else host

    @property
    def allowed_hosts(self) -> tuple[str, ...]:
        """The host names the HTTP server answers for (any other `Host` header gets 400); the
        advertised host always, for the other workers' calls."""
        listed = self.web_allowed_hosts or ("localhost", "127.0.0.1", self.web_bind)
        advertised = self.advertised_host.strip("[]")  # a `Host` header's name, as compared
        return tuple(dict.fromkeys(h.lower() for h in (*listed, advertised)))

    @property
    def bootstrap_list(self) -> list[str]:
        return [server.strip() for server in self.bootstrap_servers.split(",") if server.strip()]

    def kafka_python(self, **config: Any) -> dict[str, Any]:
        """Keyword arguments of a kafka-python client of these brokers (security included)."""
        return {"bootstrap_servers": self.bootstrap_list, **self.security.kafka_python(), **config}

    def aiokafka(self, **config: Any) -> dict[str, Any]:
        """Keyword arguments of an aiokafka client of these brokers (security included)."""
        return {"bootstrap_servers": self.bootstrap_list, **self.security.aiokafka(), **config}

    @property
    def app_id(self) -> str:
        return f"{self.topic_prefix}{APP_NAME}"

    def topic(self, name: str) -> str:
        """The real name of a topic: TOPIC_PREFIX + its contract name."""
        return f"{self.topic_prefix}{name}"
