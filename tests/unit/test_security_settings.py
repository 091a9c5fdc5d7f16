"""KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_*, KAFKA_SSL_*: what cannot work is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config.settings import ConfigError, Settings

SASL = {
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "KAFKA_SASL_USERNAME": "alice",
    "KAFKA_SASL_PASSWORD": "secret",
}


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of"),
        ({**SASL, "KAFKA_SASL_MECHANISM": ""}, "needs KAFKA_SASL_MECHANISM"),
        ({**SASL, "KAFKA_SASL_MECHANISM": "GSSAPI"}, "needs KAFKA_SASL_MECHANISM"),
        ({**SASL, "KAFKA_SASL_PASSWORD": ""}, "KAFKA_SASL_PASSWORD"),
        ({"KAFKA_SASL_USERNAME": "alice"}, "does not use SASL"),
        ({"KAFKA_SSL_CAFILE": "/etc/hostname"}, "does not use TLS"),
        ({**SASL, "KAFKA_SSL_CERTFILE": "/etc/hostname"}, "go together"),
        ({**SASL, "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"}, "no such file"),
    ],
)
def test_bad_combinations_are_one_line_errors(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_each_client_library_gets_the_same_settings(tmp_path: Path) -> None:
    settings = Settings.from_env({**SASL, "KAFKA_BOOTSTRAP_SERVERS": "a:9093,b:9093"})
    for config in (settings.kafka_python(), settings.aiokafka()):
        assert config["bootstrap_servers"] == ["a:9093", "b:9093"]
        assert config["security_protocol"] == "SASL_SSL"
        assert config["sasl_mechanism"] == "SCRAM-SHA-512"
        assert config["ssl_context"] is not None
    credentials = settings.security.faust_credentials()
    assert (
        credentials.mechanism.value == "SCRAM-SHA-512" and credentials.protocol.value == "SASL_SSL"
    )
    assert "secret" not in settings.describe() and "KAFKA_SASL_PASSWORD=****" in settings.describe()


def test_plaintext_is_the_default() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_python()["security_protocol"] == "PLAINTEXT"
    assert settings.security.faust_credentials() is None
