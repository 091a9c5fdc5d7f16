"""What operators observe, attacked (helper-92): log lines and metrics driven by input."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from streams.config.logs import CONTROL, JsonFormatter, redact

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
