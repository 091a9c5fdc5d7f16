"""The one line an operator gets when kafka-python cannot bootstrap, from what it logged."""

from __future__ import annotations

import logging

import pytest
from kafka.errors import KafkaTimeoutError

from streams.config.settings import Settings
from streams.kafka.admin import _ConnectionFailures

SASL = {
    "KAFKA_BOOTSTRAP_SERVERS": "broker:9093",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "alice",
    "KAFKA_SASL_PASSWORD": "secret",
}
REFUSED = (
    "Bootstrap connection to bootstrap-0 failed: [Error 58] SaslAuthenticationFailedError: "
    "Authentication failed during authentication due to invalid credentials (backoff 0.42 secs)"
)
HUNG_UP = "Bootstrap connection to bootstrap-0 failed: KafkaConnectionError: socket disconnected"
UNTRUSTED = "Connection failed: Handshake failed: [SSL: CERTIFICATE_VERIFY_FAILED] self-signed"
REFUSED_TCP = "Connection failed: [Errno 111] Connection refused"


def reason(env: dict[str, str], *messages: str) -> str:
    failures = _ConnectionFailures()
    for message in messages:
        failures.handle(logging.makeLogRecord({"msg": message, "levelno": logging.WARNING}))
    return failures.reason(Settings.from_env(env), 15, KafkaTimeoutError("Unable to bootstrap"))


@pytest.mark.parametrize(
    ("env", "messages", "words"),
    [
        (SASL, [HUNG_UP, REFUSED, HUNG_UP], "authentication failed: broker:9093 refused"),
        # Kafka often hangs up on a failed login without its error response: the same answer.
        (SASL, [HUNG_UP, HUNG_UP], "authentication failed: broker:9093 refused"),
        (SASL, [UNTRUSTED], "certificate not trusted"),
        (SASL, [REFUSED_TCP], "no Kafka broker answered at broker:9093 within 15s"),
        (
            {**SASL, "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT"},
            [HUNG_UP],
            "a TLS listener needs SASL_SSL",
        ),
        # Without SASL a hang-up is no login failure: the broker did not answer.
        ({"KAFKA_BOOTSTRAP_SERVERS": "broker:9092"}, [HUNG_UP], "no Kafka broker answered"),
    ],
)
def test_each_failure_gets_its_own_line(
    env: dict[str, str], messages: list[str], words: str
) -> None:
    line = reason(env, *messages)
    assert words in line and "\n" not in line and "secret" not in line
