"""Settings an operator can write that the house standard (a one-line error naming the setting,
a non-zero exit, before anything starts) did not catch (helper-84, 2026-12-05): each test here
failed when written. The comments name where the cause was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import streams.cli.ops as ops
from streams.cli.main import run
from streams.config.settings import ConfigError, Settings
from streams.http.tokens import TokenBook
from streams.notifier.smtp import SmtpSettings
from streams.worker.failed_secrets import bearer

REPO = Path(__file__).resolve().parents[2]
SECRET = "s" * 40


def never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("reached Kafka: the error should have come first")


@pytest.fixture(autouse=True)
def _no_broker(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    for name in ("TOPIC_PREFIX", "API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(ops, "ensure_topics", never)


def one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> None:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# -- 1. KAFKA_BOOTSTRAP_SERVERS: brackets around something that is no IPv6 address -------------
# settings.py:45 accepts any of [0-9A-Fa-f:.] between brackets; faust's URL parser (yarl) then
# raises ValueError in streams/worker/app.py when the worker builds its app, after the CLI has
# created the topics: a traceback instead of a one-line error at start.


@pytest.mark.parametrize("servers", ["[10.0.0.5]:9092", "[abc]:9092", "[...]:9092"])
def test_bracketed_broker_that_is_no_ipv6_address_is_a_config_error(servers) -> None:
    import faust

    with pytest.raises(ValueError):  # what the worker meets later (streams/worker/app.py)
        faust.App("x", broker=f"kafka://{servers}", env={}).conf.broker  # noqa: B018
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env({"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:1,{servers}"})


# -- 2. SMTP_FROM with an unclosed domain literal: a traceback -----------------------------------
# smtp.py:137-143 catches ValueError and MessageError, but the e-mail header parser raises
# AttributeError ('InvalidHeaderDefect' object has no attribute 'all_defects') for `a@[`.


@pytest.mark.parametrize("sender", ["a@[", "a@[1.2.3.4", "Ops <ops@[10.0.0.1>"])
def test_smtp_from_with_an_unclosed_domain_literal_is_one_line(sender, monkeypatch, capsys) -> None:
    with pytest.raises(ConfigError, match="SMTP_FROM"):
        SmtpSettings.from_env({"SMTP_HOST": "mail.example.com", "SMTP_FROM": sender})
    monkeypatch.setenv("SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("SMTP_FROM", sender)
    assert run(["notifier"]) == 1
    one_line_error(capsys, "SMTP_FROM")


# -- 3. One secret under two tokens: the second one silently never applies -----------------------
# tokens.py:239-243 checks names only; find() (tokens.py:204-213) answers the first token whose
# hash matches, and API_READ_TOKENS come first: the admin token `ops` acts as the read token.


def test_one_secret_given_to_two_tokens_is_refused() -> None:
    env = {"API_READ_TOKENS": f"viewer:{SECRET}", "API_ADMIN_TOKENS": f"ops:{SECRET}"}
    try:
        book = TokenBook.from_env(env)
    except ConfigError:
        return
    found = book.find(SECRET)
    pytest.fail(f"accepted; the admin token's secret now finds {found.name!r} ({found.role})")


def test_one_sha256_given_to_two_file_tokens_is_refused(tmp_path) -> None:
    import hashlib

    sha = hashlib.sha256(SECRET.encode()).hexdigest()
    path = tmp_path / "tokens.json"
    path.write_text(
        '{"tokens": ['
        f'{{"name": "viewer", "sha256": "{sha}", "role": "read", "tenants": ["*"]}},'
        f'{{"name": "ops", "sha256": "{sha}", "role": "admin", "tenants": ["*"]}}]}}'
    )
    with pytest.raises(ConfigError):
        TokenBook.from_env({"API_TOKENS_FILE": str(path)})


# -- 4. `name: secret` (a blank after the colon): a token no request can ever present -----------
# tokens.py:67-73 keeps the blanks in the secret (and counts them towards the 32 characters);
# bearer() (streams/worker/failed_secrets.py) strips the presented secret: its hash never matches.


@pytest.mark.parametrize("secret", [" " + SECRET, " " * 31 + "x"])
def test_a_secret_with_leading_blanks_is_refused_or_usable(secret) -> None:
    try:
        book = TokenBook.from_env({"API_ADMIN_TOKENS": f"ops:{secret}"})
    except ConfigError:
        return
    presented = bearer(f"Bearer {secret}")
    assert book.find(presented) is not None, "accepted at start, but no request can present it"


# -- 5. Token names with a trailing line break pass NAME (`$` matches before a final \n) ---------
# tokens.py:35: NAME.match("ops\n") succeeds, so "ops" and "ops\n" are two distinct names and
# the duplicate-name guard (which keeps one name per signer of deletions) is bypassed.


def test_a_token_name_with_a_line_break_is_refused(tmp_path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(
        '{"tokens": ['
        f'{{"name": "ops", "sha256": "{"a" * 64}", "role": "admin", "tenants": ["*"]}},'
        f'{{"name": "ops\\n", "sha256": "{"b" * 64}", "role": "admin", "tenants": ["*"]}}]}}'
    )
    with pytest.raises(ConfigError):
        TokenBook.from_env({"API_TOKENS_FILE": str(path)})


# -- 6. A file setting that names a FIFO: the worker / notifier hang before they start -----------
# tokens.py:145 (path.read_text) and smtp.py:103 (ssl.create_default_context(cafile=...)) open
# whatever the path names; a FIFO without a writer blocks forever (/dev/zero reads without end).
# KAFKA_SSL_* refuse it (security.py:115 is_file()).

_CHECK = {
    "API_TOKENS_FILE": "from streams.http.tokens import TokenBook as T; T.from_env()",
    "SMTP_CAFILE": "from streams.notifier.smtp import SmtpSettings as S; S.from_env()",
}


@pytest.mark.parametrize("setting", sorted(_CHECK))
def test_a_file_setting_naming_a_fifo_is_an_error_not_a_hang(setting, tmp_path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    env = {**os.environ, "PYTHONPATH": str(REPO), setting: str(fifo), "SMTP_HOST": "mail.example"}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHECK[setting]],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{setting}=<a FIFO>: still waiting after 10 s")
    assert "ConfigError" in done.stderr and setting in done.stderr, done.stderr


# -- 7. Numbers in other scripts' digits are read as numbers --------------------------------------
# int() reads any Unicode decimal digits: settings.py:33 (every integer setting), smtp.py:151
# (SMTP_PORT), and settings.py:45 (`\d` in the broker port); "١٢" starts the service with 12.


@pytest.mark.parametrize(
    "env",
    [
        {"PARTITIONS": "١٢"},
        {"WEB_PORT": "٦٠٦٦"},
        {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:٩٠٩٢"},
        {"PARTITIONS": "1_2"},
        {"PARTITIONS": "+12"},
    ],
)
def test_non_ascii_digits_in_a_number_setting_are_refused(env) -> None:
    with pytest.raises(ConfigError):
        Settings.from_env(env)


def test_non_ascii_digits_in_smtp_port_are_refused() -> None:
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        SmtpSettings.from_env({"SMTP_HOST": "mail.example.com", "SMTP_PORT": "٢٥"})


@pytest.mark.parametrize("value", ["١٢", "1_000", "+12"])
def test_non_ascii_digits_in_a_number_option_are_refused(value, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(["generate", "--launches", value])
    assert exit_info.value.code == 2
    one_line_error(capsys, "--launches", "whole number")


def test_a_plain_number_setting_is_still_read() -> None:
    assert (
        Settings.from_env(
            {"PARTITIONS": " 12 ", "KAFKA_BOOTSTRAP_SERVERS": "[::1]:9092"}
        ).partitions
        == 12
    )


# -- the smaller ones of the same review ---------------------------------------------------------


def test_a_batch_bound_past_its_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="INGEST_BATCH_MAX must be at most 100000"):
        Settings.from_env({"INGEST_BATCH_MAX": "9" * 4000})


def test_a_folder_for_a_pem_file_is_called_what_it_is(tmp_path) -> None:
    from streams.config.security import KafkaSecurity, SecurityConfigError

    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": str(tmp_path)}
    with pytest.raises(SecurityConfigError, match="not a regular file"):
        KafkaSecurity.from_env(env)


@pytest.mark.parametrize("password", ["secret\r", "sec\x00ret"])
def test_a_password_with_a_control_character_is_refused(password) -> None:
    from streams.config.security import KafkaSecurity, SecurityConfigError

    env = {
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": password,
    }
    with pytest.raises(SecurityConfigError, match="KAFKA_SASL_PASSWORD"):
        KafkaSecurity.from_env(env)
    smtp = {"SMTP_HOST": "mail.example", "SMTP_USERNAME": "u", "SMTP_PASSWORD": password}
    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        SmtpSettings.from_env(smtp)


def test_a_password_with_a_non_breaking_space_is_still_taken() -> None:
    smtp = SmtpSettings.from_env(
        {"SMTP_HOST": "mail.example", "SMTP_USERNAME": "u", "SMTP_PASSWORD": "p\u00e4ss\u00a0w"}
    )
    assert smtp is not None and smtp.password == "p\u00e4ss\u00a0w"
