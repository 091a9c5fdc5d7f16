"""The administrators' commands under attack (no broker, no worker: the API's answers stubbed).

Found by a review of what administrators are shown (2026-12): team and role ids are any 1-256
characters the LMS sends, control characters included, and `report` printed them into its table
as they were, so an id could move the cursor, retitle or clear the administrator's terminal, or
start a line that looks like another learner's row; `counts` printed "100.0%" for a tenant still
below its limit.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

import streams.cli.reports as reports
from streams.cli.main import run
from streams.cli.report import format_counts_table, format_license_details

API = "http://127.0.0.1:1"
ESCAPES = "\x1b]0;owned\x07\x1b[2J"  # retitle the terminal, then clear it
FORGED_ROW = "t1\nmallory            2026-11-01T00:00:00"
BIDI = "\u202eevil"  # right-to-left override: shows the rest of the line reversed


def details(start: str = "2026-10-01") -> dict[str, Any]:
    return {"window": {"start": start, "end": "2027-01-01", "months": 3}}


def groups() -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "window": details()["window"],
        "teams": [
            {"id": ESCAPES, "active_learners": 3},
            {"id": FORGED_ROW, "active_learners": 2},
            {"id": BIDI, "active_learners": 1},
        ],
        "roles": [],
        "unassigned": 4,
    }


def learner_lines() -> bytes:
    row = {
        "learner_id": "l1",
        "first_attempt_at": "2026-10-02T10:00:00+00:00",
        "last_attempt_at": "2026-10-03T10:00:00+00:00",
        "attempts": 2,
        "teams": [ESCAPES, FORGED_ROW],
        "roles": [BIDI],
    }
    return (json.dumps(row) + "\n").encode()


def assert_shown_safely(out: str) -> None:
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out, repr(out)
    # the escaped forms are shown, so the administrator sees what the LMS sent
    assert "\\x1b" in out and "\\u202e" in out, out
    assert not any(line.startswith("mallory") for line in out.splitlines()), out


def test_report_by_team_shows_control_characters_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = {"/api/tenants/acme": details(), "/api/tenants/acme/windows/2026-10-01/groups": {}}
    answers["/api/tenants/acme/windows/2026-10-01/groups"] = groups()
    monkeypatch.setattr(reports, "fetch_json", lambda base, path, timeout_s=300.0: answers[path])
    assert run(["report", "--tenant", "acme", "--by", "team", "--api", API]) == 0
    assert_shown_safely(capsys.readouterr().out)


def test_report_of_learners_shows_control_characters_escaped(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(reports, "fetch", lambda base, path, timeout_s=300.0: learner_lines())
    assert run(["report", "--tenant", "acme", "--window", "2026-10-01", "--api", API]) == 0
    assert_shown_safely(capsys.readouterr().out)


def test_csv_and_json_reports_still_carry_ids_exactly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only what is shown on a terminal is escaped: JSON feeds ids back into deletions."""
    answers = {"/api/tenants/acme/windows/2026-10-01/groups": groups()}
    monkeypatch.setattr(reports, "fetch_json", lambda base, path, timeout_s=300.0: answers[path])
    argv = ["report", "--tenant", "acme", "--window", "2026-10-01", "--by", "team"]
    assert run([*argv, "--format", "json", "--api", API]) == 0
    assert json.loads(capsys.readouterr().out)["teams"][0]["id"] == ESCAPES


def count_record(active: int, limit: int) -> dict[str, Any]:
    return {
        "tenant_id": "acme",
        "window": {"start": "2026-10-01", "end": "2027-01-01", "months": 3},
        "active_learners": active,
        "total_learners": active,
        "learner_limit": limit,
        "utilization_pct": round(active * 100.0 / limit, 2),  # as the count topic has it
        "licensed": True,
        "updated_at": "2026-11-20T11:59:00+00:00",
    }


def test_counts_never_show_a_tenant_below_its_limit_at_100_percent() -> None:
    table = format_counts_table([count_record(9_999, 10_000)])
    assert "100.0%" not in table and "99.9%" in table
    assert "100.0%" in format_counts_table([count_record(10_000, 10_000)])


def test_license_details_never_show_a_tenant_below_its_limit_at_100_percent() -> None:
    shown = format_license_details(
        {
            "tenant_id": "acme",
            "licensed": True,
            "license": {
                "cycle_start": "2026-01-01",
                "timezone": "UTC",
                "window_months": 3,
                "surcharge_pct": 25,
                "learner_limit": 100_000,
            },
            "window": {"start": "2026-10-01", "end": "2027-01-01", "months": 3},
            "active_learners": 99_999,
            "total_learners": 120_000,
            "utilization_pct": 100.0,  # round(99.999, 2)
            "thresholds": [{"pct": 100, "learners": 100_000, "reached": False}],
        }
    )
    assert "100.0 %" not in shown and "(99.9 %)" in shown


@pytest.mark.parametrize("command", [["report"], ["report", "--by", "team"], ["forecast"]])
def test_a_worker_that_never_answers_is_a_one_line_error_after_the_timeout(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # a listening socket nobody accepts from: the connection is made, no answer ever comes
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        api = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code = run([*command, "--tenant", "acme", "--api", api, "--timeout", "0.3"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "no answer within 0.3s" in err and "--timeout" in err, err
    assert "\n" not in err and "Traceback" not in err, err
