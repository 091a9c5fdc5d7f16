"""SASL_SSL for real: a second local broker (the same Maven jars) with a TLS listener and SCRAM.

The test makes its own CA and broker certificate with openssl, creates a SCRAM-SHA-512 user when
it formats the broker's storage, and runs the CLI and a worker through that listener. A wrong
password fails with one clear line, quickly, instead of hanging.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.config.settings import Settings
from streams.domain.recount import recount
from streams.tools.worker_process import free_port
from tests.integration.conftest import KAFKA_SCRIPT
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_pipeline import counts_match

pytestmark = pytest.mark.integration

PORT, CONTROLLER_PORT, INTERNAL_PORT = 19094, 19095, 19096
USER, PASSWORD = "alice", "alice-secret"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path) -> None:
    """A CA, and a certificate for localhost signed by it (PEM, unencrypted PKCS#8 key)."""
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=active-learners test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder,
    )  # fmt: skip
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
        "-subj", "/CN=localhost", cwd=folder,
    )  # fmt: skip
    # Python 3.13 verifies with VERIFY_X509_STRICT: the CA needs key usage, the leaf an
    # authority key identifier, or the handshake fails with "certificate not trusted".
    (folder / "san.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    openssl(
        "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext", cwd=folder,
    )  # fmt: skip
    keystore = (folder / "broker.key").read_text() + (folder / "broker.crt").read_text()
    (folder / "broker-keystore.pem").write_text(keystore)


@dataclass
class SecureBroker:
    home: Path
    env: dict[str, str]

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(KAFKA_SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    folder = tmp_path_factory.mktemp("sasl-ssl")
    make_certificates(folder)
    extra = folder / "sasl-ssl.properties"
    listeners = (
        f"SASL_SSL://localhost:{PORT},INTERNAL://localhost:{INTERNAL_PORT},"
        f"CONTROLLER://localhost:{CONTROLLER_PORT}"
    )
    jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    extra.write_text(
        f"""
listeners={listeners}
advertised.listeners=SASL_SSL://localhost:{PORT},INTERNAL://localhost:{INTERNAL_PORT}
controller.quorum.voters=1@localhost:{CONTROLLER_PORT}
inter.broker.listener.name=INTERNAL
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={folder}/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location={folder}/ca.pem
"""
    )
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env.update(
        KAFKA_HOME_DIR=str(folder / "kafka"),
        KAFKA_PORT=str(PORT),
        KAFKA_EXTRA_CONFIG=str(extra),
        KAFKA_FORMAT_ARGS=f"--add-scram SCRAM-SHA-512=[name={USER},password={PASSWORD}]",
    )
    broker = SecureBroker(folder, env)
    started = broker.run("start")
    if started.returncode != 0:
        pytest.fail(f"the SASL_SSL broker did not start:\n{started.stdout}\n{started.stderr}")
    yield broker
    broker.run("stop")


def secured_env(broker: SecureBroker, prefix: str, password: str = PASSWORD) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{PORT}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": USER,
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(broker.home / "ca.pem"),
        "TOPIC_PREFIX": prefix,
        "PARTITIONS": "4",
    }


def cli(
    env: dict[str, str], *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        # a port of its own: a worker checks its web port first, and 6066 may be taken here
        env={**os.environ, "WEB_PORT": str(free_port()), **env},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_a_worker_counts_through_sasl_ssl(
    secure_broker: SecureBroker, prefix: str, tmp_path: Path
) -> None:
    env = secured_env(secure_broker, prefix)
    created = cli(env, "topics")
    assert created.returncode == 0, created.stderr
    settings = Settings.from_env({**os.environ, **env, "STATE_DIR": str(tmp_path / "state")})
    now = datetime.now(UTC)
    launches = [
        {
            "event_id": f"e{n}",
            "tenant_id": "acme",
            "learner_id": f"l{n % 40}",
            "element_id": "course",
            "attempt_id": f"a{n}",
            "launched_at": (now - timedelta(hours=n)).isoformat(),
            "content_type": "scorm",
        }
        for n in range(400)
    ]
    worker = WorkerProcess(settings, tmp_path / "worker.log", extra_env=env).start()
    try:
        produce_json(settings, "launches", launches)
        wait_for(counts_match(settings, recount(launches, {}, now)), 180, "counts via SASL_SSL")
        assert worker.alive(), worker.log_tail()
        log = (tmp_path / "worker.log").read_text()
        assert "KAFKA_SASL_PASSWORD=****" in log and PASSWORD not in log
    finally:
        worker.stop()


def test_a_wrong_password_fails_fast_with_one_line(
    secure_broker: SecureBroker, prefix: str
) -> None:
    env = secured_env(secure_broker, prefix, password="not-the-password")
    for command in (("topics",), ("worker",)):
        result = cli(env, *command, timeout_s=90)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1, result.stderr
        assert len(lines) == 1 and "authentication" in lines[0].lower(), lines
        assert "not-the-password" not in result.stderr
