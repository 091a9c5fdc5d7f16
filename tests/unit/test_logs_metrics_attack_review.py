"""What operators observe, attacked (helper-92): log lines and metrics driven by input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streams.config.logs import redact

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
