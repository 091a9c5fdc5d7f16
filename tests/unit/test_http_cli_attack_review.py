"""Hostile HTTP requests and CLI arguments (helper-82, and helper-83's review of the fixes,
2026-12-05): each test here failed when written: a secret quoted back by the malformed-request
answer (in a header line, then in a request target), a 500 for an unsigned internal call (its
stamp, then its MAC), Python's words for an `--older-than` of 5,000 digits, a CSV row cut by a
line break."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from streams.http.access import INTERNAL_HEADER
from tests.unit.web_harness import Server, Views, isolate


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Views:
    return isolate(monkeypatch, tmp_path)


@pytest.mark.parametrize(
    "stamp",
    [
        "9" * 5000,  # int() refuses more than 4,300 digits: ValueError
        "9" * 400,  # an int no float can hold: OverflowError in now - int(stamp)
        "\u00b2",  # '²'.isdigit() is True, int('²') raises ValueError
    ],
    ids=["5000-digits", "400-digits", "superscript-two"],
)
def test_an_unsigned_internal_call_with_a_malformed_stamp_is_a_401_not_a_500(
    server: Server, isolated: Views, stamp: str
) -> None:
    """Anyone who reaches the port, without any token, makes the worker answer 500 and log a
    traceback (streams/http/access.py internal_call_fresh: int(stamp) / now - int(stamp))."""
    request = (
        f"GET /internal/reports/window/0 HTTP/1.1\r\nHost: localhost\r\n"
        f"{INTERNAL_HEADER}: {stamp}:{'a' * 64}\r\nConnection: close\r\n\r\n"
    ).encode()
    status, answer = server.raw(request)
    assert status == 401, answer[:300]
    assert isolated.kafka_asked == []


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer %s\x01",  # a stray control character after the secret
        b"Authorization: Bearer %s\rX",  # a bare CR (a token file with CRLF line ends)
        b"Authorization : Bearer %s",  # a space before the colon
        b" Authorization: Bearer %s",  # an obs-fold / leading space
    ],
    ids=["control-char", "bare-cr", "space-before-colon", "leading-space"],
)
def test_a_malformed_authorization_line_never_puts_the_secret_in_the_log_or_answer(
    server: Server, caplog: pytest.LogCaptureFixture, header: bytes
) -> None:
    """The contract: failures are logged with the address, never the secret. aiohttp's parser
    error quotes the offending header line, and streams/worker/malformed_http.py logs it (INFO)
    and echoes it in the 400's JSON, so a valid admin secret lands in the worker's log."""
    from tests.unit.web_harness import ADMIN_ALL

    caplog.set_level(logging.INFO)
    request = (
        b"GET /api/tenants HTTP/1.1\r\nHost: localhost\r\n"
        + header % ADMIN_ALL.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, answer = server.raw(request)
    assert status == 400
    assert ADMIN_ALL.encode() not in answer, answer
    assert ADMIN_ALL not in caplog.text, caplog.text


def test_an_older_than_of_thousands_of_digits_names_the_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`delete --older-than 99…9d` (5,000 digits): int() of the amount is outside parse_cutoff's
    try (streams/cli/deletions.py:39), so the one line is Python's own words ("Exceeds the
    limit (4300 digits) for integer string conversion ... use sys.set_int_max_str_digits()"),
    not a word of which option or what is expected."""
    from streams.cli.main import run

    code = run(["delete", "--tenant", "acme", "--older-than", "9" * 5000 + "d", "--preview"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "\n" not in err and "Traceback" not in err, err
    assert "--older-than" in err, err
    assert "set_int_max_str_digits" not in err, err


def test_a_csv_cell_with_a_unicode_line_break_is_quoted_as_the_header_would_be() -> None:
    """streams/domain/reports.py csv_line quotes a cell holding U+2028/U+0085 ("readers that
    split lines as str.splitlines does also break at these"), but the rows of the CSV reports
    are written by streams/http/report_views.py _encode with a plain csv.writer: the learner id
    x<U+2028>y goes out unquoted, and such a reader cuts the row in two."""
    from streams.domain import reports as pure
    from streams.http.report_views import _encode, window_csv, window_record

    row = ["x\u2028y", 1_700_000_000.0, 1_700_000_000.0, 1, [], []]
    body = _encode([row], "csv", window_record, window_csv, True).decode()
    assert body.startswith('"x\u2028y"'), repr(body)
    assert pure.csv_line(["x\u2028y"]).startswith('"x\u2028y"')  # what the header writer does


def test_report_rows_without_a_line_break_are_written_as_before() -> None:
    from streams.http.report_views import _encode, window_csv, window_record

    row = ["learner, 7", 1_700_000_000.0, 1_700_000_000.0, 2, ["sales"], []]
    body = _encode([row], "csv", window_record, window_csv, True).decode()
    assert body == (
        '"learner, 7",2023-11-14T22:13:20+00:00,2023-11-14T22:13:20+00:00,2,"[""sales""]",[]\r\n'
    )


def test_the_counts_command_quotes_a_tenant_id_with_a_line_break() -> None:
    from streams.cli.report import format_counts_csv

    record = {
        "tenant_id": "a\u2029b",
        "window": {"start": "2026-01-01", "end": "2027-01-01", "months": 12},
        "active_learners": 3,
        "total_learners": 4,
        "learner_limit": None,
        "utilization_pct": None,
        "licensed": False,
        "updated_at": "2026-03-01T10:00:00Z",
    }
    header, row, end = format_counts_csv([record]).split("\r\n")
    assert header.startswith("tenant_id,") and end == ""
    assert row.startswith('"a\u2029b","2026-01-01"'), repr(row)


@pytest.mark.parametrize(
    "target",
    [b"http://?token=%s", b"http://admin:%s@/api/tenants"],  # no host: aiohttp quotes it bare
    ids=["query-token", "userinfo"],
)
def test_a_secret_in_a_target_aiohttp_refuses_is_not_logged_or_echoed(
    server: Server, caplog: pytest.LogCaptureFixture, target: bytes
) -> None:
    from tests.unit.web_harness import ADMIN_ALL

    caplog.set_level(logging.INFO)
    request = (
        b"GET " + target % ADMIN_ALL.encode() + b" HTTP/1.1\r\nHost: localhost\r\n"
        b"Connection: close\r\n\r\n"
    )
    status, answer = server.raw(request)
    assert status == 400, answer[:300]
    assert ADMIN_ALL.encode() not in answer, answer
    assert ADMIN_ALL not in caplog.text, caplog.text
    assert b"invalid request target" in answer, answer


def test_the_pure_python_parsers_messages_lose_the_request_too() -> None:
    """aiohttp without its C parser (AIOHTTP_NO_EXTENSIONS=1) words other errors: the target
    bare, a request line in plain quotes."""
    from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, InvalidURLError

    from streams.worker.malformed_http import reason

    secret = "s3cret-token"
    assert reason(InvalidURLError(f"/api/tenants?token={secret}\x01")) == "invalid request target"
    assert reason(BadStatusLine(f"GET /?token={secret} HTTP/9")) == "invalid request line"
    assert reason(BadHttpMethod(f"G\x01T /?token={secret} HTTP/1.1")) == "invalid HTTP method"


@pytest.mark.parametrize(
    ("request_bytes", "words"),
    [
        (
            b"GET / HTTP/1.1\r\nHost: localhost\r\nContent-Type: a/b\r\nContent-Type: a/b\r\n"
            b"Connection: close\r\n\r\n",
            "Duplicate 'Content-Type' header",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            "can't be present",
        ),
        (b"GET /" + b"x" * 9_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n", "bytes when reading"),
    ],
    ids=["duplicate-header", "length-and-chunked", "line-too-long"],
)
def test_the_reason_keeps_aiohttps_own_words(
    server: Server, request_bytes: bytes, words: str
) -> None:
    import json

    status, answer = server.raw(request_bytes)
    assert status == 400, answer[:300]
    error = json.loads(answer.rpartition(b"\r\n\r\n")[2])["error"]
    assert words in error and "bytearray" not in error and "xxx" not in error, error


def test_an_unsigned_call_with_a_non_ascii_mac_is_a_401_not_a_500(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from streams.http import reports
    from streams.http.access import internal_call_valid

    assert internal_call_valid(b"k" * 32, "1000000:" + "\u00e9" * 64, "/x?", 1_000_000.0) is False
    monkeypatch.setattr(reports, "_key", b"k" * 32)  # a worker that has read the key
    header = f"{time.time():.0f}:" + "\u00e9" * 64
    request = (
        b"GET /internal/reports/window/0 HTTP/1.1\r\nHost: localhost\r\n"
        + INTERNAL_HEADER.encode()
        + b": "
        + header.encode()
        + b"\r\nConnection: close\r\n\r\n"
    )
    status, answer = server.raw(request)
    assert status == 401, answer[:300]
