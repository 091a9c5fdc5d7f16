"""What operators observe, attacked (helper-92): log lines and metrics driven by input."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from aiokafka import TopicPartition
from prometheus_client import REGISTRY

from streams.config.logs import CONTROL, JsonFormatter, redact
from streams.http import outputs_reader
from streams.http.gauges import tenant_counts_changed
from streams.http.read_model import ReadModel
from tests.unit.test_api import LICENSE, count
from tests.unit.test_notifier_probe import TOKEN as PROBE_TOKEN
from tests.unit.test_notifier_probe import free_port, get, served
from tests.unit.test_read_model_review import PartialMetadataConsumer, reader_of, record

# A value from a request or a record, formatted as both log formats format it. EMAIL tried an
# atom at each character of a run of letters: a 10,000-letter path with an `@` (what a refused
# bearer token logs, 10 times a minute per address) held the event loop for 0.4 s, 100,000
# letters for a minute, a megabyte for hours.
FORMAT_A_LONG_VALUE = """
import logging
from streams.config.logs import JsonFormatter, TextFormatter
value = "/api/tenants/" + "a" * 100_000 + "@"
entry = logging.LogRecord("x", logging.WARNING, "f", 1, "refused from %s (%s)", ("h", value), None)
for formatter in (TextFormatter(), JsonFormatter()):
    assert value in formatter.format(entry)
print("formatted")
"""


def test_a_long_value_with_an_at_sign_is_logged_at_once() -> None:
    try:
        done = subprocess.run(
            [sys.executable, "-c", FORMAT_A_LONG_VALUE], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:  # the child is killed: nothing left running
        pytest.fail("formatting one 100,000-character value took more than 30 s")
    assert done.stdout.strip() == "formatted", done.stderr


# text -> what the log shows of it: the cases whose matches the linear search finds otherwise
GLUED = [
    ("a@b.example&c@d.example", "<e-mail>&<e-mail>"),
    ("x@h&_@b.", "<e-mail>&<e-mail>."),
    ("'.+a@b.example'", "'.<e-mail>'"),
    ('a.b"john doe"@x.example', "a.b<e-mail>"),
    ("a.b.c.d@x.example.e@y.example", "<e-mail>@y.example"),
    ("ann@[IPv6:2001:db8::1]!bob@c.example", "<e-mail>!<e-mail>"),
]


@pytest.mark.parametrize(("text", "shown"), GLUED)
def test_addresses_glued_together_are_each_masked(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_a_json_line_holds_no_unicode_line_break_nor_c1_control() -> None:
    """A tenant id may hold U+2028, U+0085 or U+009B (the contract refuses U+0000-U+001F and
    U+007F only), and so may a request's path (`%E2%80%A8`): JSON lines wrote them raw."""
    value = "/api/tenants/acme\u2028{fake}\x85[ERROR]\x9b31m\u2029x\x7f"
    entry = logging.LogRecord("x", logging.WARNING, "f", 1, "refused (GET %s)", (value,), None)
    line = JsonFormatter().format(entry)
    assert line.splitlines() == [line]
    assert not CONTROL.search(line)
    assert json.loads(line)["message"] == f"refused (GET {value})"


def _gauge(name: str, tenant: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"tenant": tenant})


def test_tenant_gauges_say_nothing_until_the_read_model_caught_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API answers 503 while the read model catches up ("never a count it may not have read
    yet"); /metrics showed every record read so far: a compacted topic still holds a window's
    older records (here 120 active, before a deletion took it to 80), so a restarted worker's
    gauges went through the window's history, and an alert on them fired again."""
    model = ReadModel()
    model.on_counts = tenant_counts_changed(model)
    monkeypatch.setattr(outputs_reader, "model", model)
    tenant = "h92-catching-up"  # no license: windows of 12 months from January 1st, in UTC
    start, end = f"{datetime.now(UTC).year}-01-01", f"{datetime.now(UTC).year + 1}-01-01"
    key = f"{tenant}/{start}".encode()
    licenses, counts = TopicPartition("licenses", 0), TopicPartition("active-learner-counts", 0)
    consumer = PartialMetadataConsumer(
        {licenses: 1, counts: 2},
        [
            {
                licenses: [record(0, 0, 0, b"acme", json.dumps(LICENSE).encode())],
                counts: [record(0, 0, 0, key, count(tenant, start, end, 120, 130, months=12))],
            },
            {counts: [record(0, 1, 0, key, count(tenant, start, end, 80, 130, months=12))]},
        ],
    )
    reader = reader_of(model, consumer)

    asyncio.run(outputs_reader.OutputsReader._read_once(reader))
    assert not model.caught_up.is_set()
    assert _gauge("active_learners_tenant_active", tenant) is None
    asyncio.run(outputs_reader.OutputsReader._read_once(reader))
    assert model.caught_up.is_set()
    assert _gauge("active_learners_tenant_active", tenant) == 80
    assert _gauge("active_learners_tenant_total", tenant) == 130


async def _raw_get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await reader.read()
    finally:
        writer.close()


def test_a_bearer_token_that_is_not_utf8_is_refused_by_the_notifier_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp hands a header's bytes that are not UTF-8 over as surrogates; the notifier's
    /metrics encoded them strictly: a 500 and an ERROR with a traceback for every such request,
    from anybody who reaches the port (no rate limit there)."""
    monkeypatch.setenv("METRICS_TOKEN", PROBE_TOKEN)
    port = free_port()
    request = (
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\xfe"
        + PROBE_TOKEN.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    with caplog.at_level(logging.INFO):
        answer = served(_raw_get(port, request), port)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    # the right token still opens it
    assert served(get(port, "/metrics", PROBE_TOKEN), port)[0] == 200
