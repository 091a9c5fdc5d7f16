"""Creating and inspecting topics with kafka-python's admin client (used by the CLI and tests)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from schemas.topics import COPARTITIONED, INPUTS, TOPICS, TopicSpec
from streams.config.settings import Settings

log = logging.getLogger(__name__)


class BrokerUnavailable(RuntimeError):
    """The brokers named by KAFKA_BOOTSTRAP_SERVERS did not answer in time."""


@dataclass(frozen=True)
class TopicsReport:
    created: tuple[str, ...]
    existing: tuple[str, ...]
    updated: tuple[str, ...] = ()  # existing topics given the settings the service relies on
    partitions: int | None = None  # what topics it created were given (None: PARTITIONS)


class _ConnectionFailures(logging.Handler):
    """Why kafka-python's connections failed: it logs the cause and retries until its timeout."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.authentication: str | None = None
        self.tls: str | None = None
        self.hung_up = False

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "SaslAuthenticationFailed" in text or "Authentication failed" in text:
            self.authentication = self.authentication or text
        elif "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text or "WRONG_VERSION" in text:
            self.tls = self.tls or text
        elif "socket disconnected" in text:
            # The broker accepted the connection (and the TLS handshake) and then closed it.
            self.hung_up = True

    def reason(self, settings: Settings, timeout_s: float, error: Exception) -> str:
        """One line for an operator: what failed and which setting to check."""
        security = settings.security
        servers = settings.bootstrap_servers
        refused = (
            f"authentication failed: {servers} refused KAFKA_SASL_USERNAME="
            f"{security.sasl_username} with {security.sasl_mechanism} "
            "(check KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD)"
        )
        if self.authentication:
            return refused
        if self.tls:
            verdict = "certificate not trusted" if "CERTIFICATE" in self.tls else "not TLS?"
            return (
                f"the TLS handshake with {servers} failed ({verdict}; "
                "check KAFKA_SECURITY_PROTOCOL and KAFKA_SSL_CAFILE)"
            )
        if self.hung_up and security.protocol == "SASL_SSL":
            # After a failed SCRAM login Kafka often closes the connection without sending its
            # error response first, so kafka-python sees a hang-up and retries until its
            # timeout. TLS was fine, so the hang-up is the broker refusing the login.
            return refused
        if self.hung_up and security.protocol == "SASL_PLAINTEXT":
            return (
                f"{servers} closed every connection during the SASL login of "
                f"KAFKA_SASL_USERNAME={security.sasl_username}: check KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD, and KAFKA_SECURITY_PROTOCOL (a TLS listener needs SASL_SSL)"
            )
        return (
            f"no Kafka broker answered at {servers} within {timeout_s:g}s "
            f"({type(error).__name__}; {security.protocol})"
        )


def admin_client(settings: Settings, timeout_s: float = 15.0) -> KafkaAdminClient:
    failures = _ConnectionFailures()
    kafka_log = logging.getLogger("kafka")
    kafka_log.addHandler(failures)
    try:
        return KafkaAdminClient(
            **settings.kafka_python(),
            client_id=f"{settings.app_id}-admin",
            bootstrap_timeout_ms=int(timeout_s * 1000),
            request_timeout_ms=int(timeout_s * 1000),
        )
    except (KafkaError, OSError) as exc:
        raise BrokerUnavailable(failures.reason(settings, timeout_s, exc)) from exc
    finally:
        kafka_log.removeHandler(failures)


def broker_answers(settings: Settings, timeout_s: float = 3.0) -> bool:
    """Whether a broker answers at KAFKA_BOOTSTRAP_SERVERS now (no error when none does)."""
    try:
        admin_client(settings, timeout_s=timeout_s).close()
    except BrokerUnavailable:
        return False
    return True


LOCAL_BROKER = ("localhost:9092", "127.0.0.1:9092")


def is_local_broker(settings: Settings) -> bool:
    """The broker `docker/kafka/kafka.sh` runs, which the soak and fault tests may kill."""
    return settings.bootstrap_servers in LOCAL_BROKER


def ensure_topics(
    settings: Settings,
    specs: Iterable[TopicSpec] = TOPICS,
    timeout_s: float = 15.0,
    *,
    asked: bool = False,
) -> TopicsReport:
    """Create every missing topic; give existing ones the settings the service relies on
    (`_hold_configs`). Idempotent. New topics get the partition count of the co-partitioned
    topics that exist, else PARTITIONS; missing co-partitioned topics beside existing ones of
    another count than PARTITIONS are refused before anything is made
    (`copartitioned_partitions`; `asked`: PARTITIONS is `topics --partitions N`)."""
    specs = list(specs)
    admin = admin_client(settings, timeout_s)
    try:
        existing_names = set(admin.list_topics())
        wanted = {settings.topic(spec.name): spec for spec in specs}
        missing = {name: spec for name, spec in wanted.items() if name not in existing_names}
        created: list[str] = []
        existing = sorted(name for name in wanted if name in existing_names)
        present = [name for name in COPARTITIONED if settings.topic(name) in existing_names]
        counts = {
            name: len(topic["partitions"]) for name, topic in _describe(admin, settings, present)
        }
        creating = any(settings.topic(name) in missing for name in COPARTITIONED)
        partitions = copartitioned_partitions(
            counts, settings.partitions, asked=asked, creating=creating
        )
        if missing:
            request = {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": settings.replication_factor,
                    "configs": created_configs(spec, settings.replication_factor),
                }
                for name, spec in missing.items()
            }
            # no `wait_for_metadata`: kafka-python waits for every topic asked for, also those
            # the broker refused, and then says only "Topics not ready" (helper-90)
            response = admin.create_topics(
                request, timeout_ms=int(timeout_s * 1000), raise_errors=False
            )
            for name in sorted(missing):
                error = _topic_error(response, name)
                if error is None:
                    created.append(name)
                elif error is TopicAlreadyExistsError:
                    existing.append(name)  # created by someone else in between
                else:
                    raise TopicSetupError(f"could not create topic {name}: {error.__name__}")
            admin.wait_for_topics(created, timeout_ms=int(timeout_s * 1000))
        updated = _hold_configs(admin, {name: wanted[name] for name in existing})
        return TopicsReport(tuple(created), tuple(sorted(existing)), tuple(updated), partitions)
    finally:
        admin.close()


# With three replicas or more, a write acknowledged by `acks=all` is on two brokers at least
# (Kafka's own default, 1, acknowledges a write the leader alone holds when the others fell
# behind: the leader's disk lost, a changelog row or a launch is gone, and a restored count
# with it). Kafka Streams recommends the same for its internal topics.
MIN_INSYNC_REPLICAS = 2
MIN_INSYNC_FROM_REPLICATION = 3


def created_configs(spec: TopicSpec, replication_factor: int) -> dict[str, str]:
    """A new topic's configuration: its spec's, and `min.insync.replicas` 2 from three replicas
    on (below, every broker would have to be up to write). Set at creation only: an existing
    topic's replicas may be fewer than REPLICATION_FACTOR says, and 2 there would stop writes."""
    configs = dict(spec.configs())
    if replication_factor >= MIN_INSYNC_FROM_REPLICATION:
        configs["min.insync.replicas"] = str(MIN_INSYNC_REPLICAS)
    return configs


def _hold_configs(admin: KafkaAdminClient, specs: dict[str, TopicSpec]) -> list[str]:
    """Give existing topics of the service's own (not the LMS's inputs) the settings it relies
    on where they differ (topics made by an older version: compacted ones dropped tombstones
    after a day, the stages' commands expired after a week; `TopicSpec.configs`); their names.
    Other settings stay as they are. A topic whose settings cannot be read or changed (an ACL
    without DescribeConfigs or AlterConfigs, a topic another worker created a moment ago) keeps
    its own, with a warning: that never stops a worker."""
    needed = {
        name: {key: value for key, value in spec.configs().items() if key != "cleanup.policy"}
        for name, spec in specs.items()
        if spec.name not in INPUTS
    }
    needed = {name: config for name, config in needed.items() if config}
    if not needed:
        return []
    try:
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in needed],
            config_filter="all",
        ).get("topic", {})
    except KafkaError as exc:
        log.warning("could not read the settings of the service's topics: %s", exc)
        return []
    changes = {}
    for name, config in needed.items():
        current = described.get(name) or {}
        if not current:  # refused, or not known to that broker yet: kafka-python says nothing
            log.warning("could not read the settings of topic %s; not checked", name)
            continue
        change = {k: v for k, v in config.items() if current.get(k, {}).get("value") != v}
        if change:
            changes[name] = change
    if not changes:
        return []
    resources = [ConfigResource(ConfigResourceType.TOPIC, n, c) for n, c in changes.items()]
    try:
        result = admin.alter_configs(resources).get("topic", {})
    except (KafkaError, ValueError) as exc:  # kafka-python raises ValueError for unknown keys
        result = dict.fromkeys(changes, f"{type(exc).__name__}: {exc}")
    updated = []
    for name, change in changes.items():
        settings = ", ".join(f"{k}={v}" for k, v in change.items())
        if result.get(name) == "OK":
            log.warning("topic %s: set %s", name, settings)
            updated.append(name)
        else:
            log.warning(
                "topic %s: could not set %s, which this version relies on (set it with "
                "kafka-configs.sh, or allow AlterConfigs): %s",
                name,
                settings,
                result.get(name),
            )
    return updated


def delete_topics_with_prefix(
    settings: Settings, prefix: str, timeout_s: float = 30.0
) -> list[str]:
    """Delete every topic whose name starts with `prefix` (a finished bench run's); their names."""
    if not prefix:
        raise ValueError("refusing to delete every topic of the cluster")
    admin = admin_client(settings, timeout_s)
    try:
        doomed = sorted(name for name in admin.list_topics() if name.startswith(prefix))
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout_s * 1000))
        return doomed
    finally:
        admin.close()


def _topic_error(response: dict, name: str) -> type[KafkaError] | None:
    """The error class the broker gave for one topic of a CreateTopics response, or None."""
    for topic in response.get("topics", []):
        if topic["name"] == name and topic["error_code"] != 0:
            return for_code(topic["error_code"])
    return None


def topic_config(settings: Settings, topic: str, key: str, timeout_s: float = 15.0) -> str | None:
    """Read back one config value of a topic from the broker (e.g. cleanup.policy)."""
    return topic_configs(settings, topic, timeout_s).get(key)


def topic_configs(settings: Settings, topic: str, timeout_s: float = 15.0) -> dict[str, str | None]:
    """Every config value of a topic as the broker applies it (its own and the defaults); empty
    when the broker would not say (no such topic, or no DescribeConfigs right)."""
    admin = admin_client(settings, timeout_s)
    try:
        result = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    described = result.get("topic", {}).get(topic) or {}
    return {key: entry["value"] for key, entry in described.items()}


def topic_partitions(
    settings: Settings, names: Iterable[str], timeout_s: float = 15.0
) -> dict[str, int]:
    """{topic (without prefix): its number of partitions} for the topics that exist."""
    return {
        name: len(topic["partitions"]) for name, topic in _described(settings, names, timeout_s)
    }


def topic_ids(settings: Settings, names: Iterable[str], timeout_s: float = 15.0) -> dict[str, str]:
    """{topic (without prefix): Kafka's id of it} for the topics that exist and have one (KIP-516:
    a topic deleted and made again under its name has a new id; a broker before 2.8 gives none)."""
    return {
        name: str(topic["topic_id"])
        for name, topic in _described(settings, names, timeout_s)
        if topic.get("topic_id") and str(topic["topic_id"]) != str(uuid.UUID(int=0))
    }


def _described(
    settings: Settings, names: Iterable[str], timeout_s: float
) -> list[tuple[str, dict[str, Any]]]:
    """(topic without prefix, the broker's description of it) for the topics that exist."""
    admin = admin_client(settings, timeout_s)
    try:
        return _describe(admin, settings, names)
    finally:
        admin.close()


def _describe(
    admin: KafkaAdminClient, settings: Settings, names: Iterable[str]
) -> list[tuple[str, dict[str, Any]]]:
    real = {settings.topic(name): name for name in names}
    if not real:
        return []
    described = admin.describe_topics(list(real))
    return [
        (real[topic["name"]], topic)
        for topic in described
        if topic.get("error_code", 0) == 0 and topic["name"] in real
    ]


def copartitioned_count(settings: Settings, timeout_s: float = 15.0) -> int:
    """The partition count shared by the stages' internal topics; an error when they disagree."""
    counts = topic_partitions(settings, COPARTITIONED, timeout_s)
    return copartitioned_partitions(counts, settings.partitions)


def copartitioned_partitions(
    counts: Mapping[str, int], partitions: int, asked: bool = False, creating: bool = False
) -> int:
    """The partition count of the co-partitioned topics (`schemas.topics.COPARTITIONED`), from
    those that exist (`counts`: topic without prefix -> its partitions): theirs, or `partitions`
    (PARTITIONS) when none exists. TopicMismatch when they disagree, or when PARTITIONS is not
    theirs and it was `asked` for (`topics --partitions N`) or some of them are about to be
    `creating`: made with N beside them, the missing ones would stop every worker (Kafka cannot
    take partitions away), and made with theirs unasked, a topic the broker created on its own
    (`auto.create.topics.enable`: one partition) would set the whole deployment's count."""
    found = {name: n for name, n in counts.items() if name in COPARTITIONED}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in sorted(found.items()))
        raise TopicMismatch(
            f"internal topics disagree on their partition count ({listed}); "
            "recreate them with one count (e.g. a new TOPIC_PREFIX)"
        )
    if not found:
        return partitions
    (existing,) = set(found.values())
    if (asked or creating) and partitions != existing:
        listed = ", ".join(sorted(found))
        given = f"--partitions {partitions}" if asked else f"PARTITIONS={partitions}"
        raise TopicMismatch(
            f"{given}: the topics that must share one count exist with {existing} "
            f"partition{'s' if existing != 1 else ''} ({listed}); nothing created: give "
            f"PARTITIONS={existing} (or --partitions {existing}) to make the missing ones beside "
            f"them, or remove those topics (a broker creates a topic it is asked for with one "
            f"partition) or use a new TOPIC_PREFIX for {partitions}"
        )
    return existing


class TopicSetupError(RuntimeError):
    """A topic could not be created, or given the settings this version needs."""


class TopicMismatch(RuntimeError):
    """Topics exist with partition counts the service cannot work with."""
