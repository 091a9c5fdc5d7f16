"""Operator-facing behaviour without a broker: log lines, masked addresses, bounded shutdown."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from streams.config.logs import (
    JsonFormatter,
    TextFormatter,
    log_format,
    logging_config,
    redact,
)
from streams.config.settings import ConfigError, Settings


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("broker gone for admin@acme.example")
        except RuntimeError:
            exc_info = sys.exc_info()
    return logging.LogRecord("streams.x", logging.WARNING, __file__, 1, message, args, exc_info)


def test_json_lines_hold_a_whole_traceback_in_one_object() -> None:
    line = JsonFormatter().format(record("sending failed for %s", "t1", exc=True))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["message"] == "sending failed for t1"
    assert "RuntimeError" in entry["traceback"]
    assert "admin@acme.example" not in line and "<e-mail>" in line


def test_text_lines_mask_addresses_too() -> None:
    text = TextFormatter().format(record("mail to %s failed", "a.b+c@mail.acme.example"))
    assert "acme.example" not in text and "<e-mail>" in text


# text -> what the log shows of it
MASKING = [
    ("mail to a.b+c@mail.acme.example failed", "mail to <e-mail> failed"),
    ('mail to "john doe"@example.com failed', "mail to <e-mail> failed"),
    ("o'brien@example.com refused", "<e-mail> refused"),
    ("root@localhost", "<e-mail>"),
    ("ann@[192.0.2.7]", "<e-mail>"),
    ("josé@exämple.example", "<e-mail>"),
    ("notify ['a@x.example', 'b@y.example']", "notify ['<e-mail>', '<e-mail>']"),
    ("550 <bob@acme.example>: unknown", "550 <<e-mail>>: unknown"),
    # not addresses: positions and settings stay readable
    ("threshold-events/3@120 dead-lettered", "threshold-events/3@120 dead-lettered"),
    ("KAFKA_SASL_USERNAME=svc@corp.example", "KAFKA_SASL_USERNAME=<e-mail>"),
]


@pytest.mark.parametrize(("text", "shown"), MASKING)
def test_addresses_are_masked_in_every_form(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_text_lines_escape_control_characters_in_values() -> None:
    forged = "acme\r\n[2026-01-01 00:00:00,000] [1] [ERROR] fake: hi\x1b[31m\u2028\x85\t!"
    text = TextFormatter().format(record("tenant %s at %s", forged, "root@localhost"))
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert text.endswith(
        "tenant acme\\r\\n[2026-01-01 00:00:00,000] [1] [ERROR] fake: hi\\x1b[31m\\u2028"
        "\\x85\\t! at <e-mail>"
    )


def test_a_text_traceback_stays_inside_its_record() -> None:
    try:
        raise ValueError("bad\n[2026-01-01 00:00:00,000] [1] [ERROR] fake\r: root@localhost")
    except ValueError:
        exc_info = sys.exc_info()
    entry = logging.LogRecord("streams.x", logging.ERROR, __file__, 1, "failed", (), exc_info)
    first, *rest = TextFormatter().format(entry).split("\n")
    assert first.endswith("streams.x: failed")
    # every later line is indented: only a record's own first line starts with "["
    assert rest and all(line.startswith("  ") for line in rest)
    assert "  Traceback (most recent call last):" in rest
    assert "  [2026-01-01 00:00:00,000] [1] [ERROR] fake\\r: <e-mail>" in rest


def test_log_format_setting() -> None:
    assert log_format({}) == "text"
    assert log_format({"LOG_FORMAT": "JSON"}) == "json"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        log_format({"LOG_FORMAT": "xml"})
    assert logging_config("json", "warn")["root"]["level"] == "WARNING"


def test_settings_are_described_in_one_line() -> None:
    text = Settings.from_env({"TOPIC_PREFIX": "p-", "PARTITIONS": "6"}).describe()
    assert "\n" not in text and "TOPIC_PREFIX='p-'" in text and "PARTITIONS=6" in text


GUARDED = """
import signal, time
from streams.worker.shutdown import ShutdownGuard
guard = ShutdownGuard("test", grace_s={grace})
def on_term(signum, frame):
    guard.signalled(signum)
    print("stopping", flush=True)
signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(0.05)  # a stop that never finishes
"""


@pytest.fixture
def guarded() -> Iterator[Callable[[float], subprocess.Popen[str]]]:
    """Starts the guarded program; a test that fails leaves none running (it never stops by
    itself)."""
    started: list[subprocess.Popen[str]] = []

    def start(grace_s: float) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", GUARDED.format(grace=grace_s)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_stop_that_hangs_ends_after_the_grace_period(
    guarded: Callable[[float], subprocess.Popen[str]],
) -> None:
    process = guarded(0.5)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 1
    assert 0.4 < time.monotonic() - started < 5
    assert "did not stop within 0.5 s" in process.stderr.read()  # type: ignore[union-attr]


def test_a_second_signal_exits_at_once(
    guarded: Callable[[float], subprocess.Popen[str]],
) -> None:
    process = guarded(60)
    process.send_signal(signal.SIGTERM)
    assert process.stdout is not None and process.stdout.readline().strip() == "stopping"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    assert "second SIGTERM" in process.stderr.read()  # type: ignore[union-attr]
