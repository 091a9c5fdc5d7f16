"""CLI argument handling and output formatting (no broker)."""

from __future__ import annotations

import csv
import io
import json

import pytest

from streams.cli.main import run
from streams.cli.report import format_counts_csv, format_counts_table
from streams.kafka.io import key_of, topic_of


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["topics", "--partitions", "0"], "at least 1"),
        (["topics", "--partitions", "many"], "whole number"),
        (["generate", "--launches", "-5"], "at least 1"),
        (["produce", "x.jsonl", "--topic", "nowhere"], "invalid choice"),
        (["worker", "--loglevel", "loud"], "invalid choice"),
        (["no-such-command"], "invalid choice"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_generate_bad_now_is_a_one_line_error(capsys) -> None:
    assert run(["generate", "--launches", "1", "--now", "2026-01-01T00:00:00"]) == 1
    assert "needs an offset" in capsys.readouterr().err


def test_generate_is_seeded_and_deterministic(tmp_path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (first, second):
        assert run(["generate", "--launches", "500", "--seed", "3", "--out", str(path)]) == 0
    assert first.read_text() == second.read_text()
    records = [json.loads(line) for line in first.read_text().splitlines()]
    assert {topic_of(r) for r in records} == {"launches", "licenses", "learner-groups"}
    assert any(r.get("launched_by") == "admin" for r in records)
    assert any(r.get("tracking") in ("none", "none_resource") for r in records)
    launches = [r for r in records if "event_id" in r]
    assert len({r["event_id"] for r in launches}) < len(launches), "redelivered duplicates"
    # the late license comes after every launch of its tenant
    assert "cycle_start" in records[-1]


def test_keys_follow_the_contract() -> None:
    launch = {"event_id": "e", "tenant_id": "acme", "learner_id": "l1"}
    assert key_of("launches", launch) == b"acme/l1"
    assert key_of("licenses", {"tenant_id": "acme"}) == b"acme"
    assert topic_of({"request_id": "r", "tenant_id": "acme"}) == "attempt-deletions"
    with pytest.raises(ValueError, match="cannot tell"):
        topic_of({"something": 1})


def test_counts_table_lines_up_and_marks_unlicensed() -> None:
    rows = [
        {
            "tenant_id": "acme",
            "window": {"start": "2026-11-01", "end": "2026-12-01", "months": 1},
            "active_learners": 1234,
            "total_learners": 5000,
            "learner_limit": 2000,
            "utilization_pct": 61.7,
            "licensed": True,
        },
        {
            "tenant_id": "solo",
            "window": {"start": "2026-01-01", "end": "2027-01-01", "months": 12},
            "active_learners": 3,
            "total_learners": 3,
            "learner_limit": None,
            "utilization_pct": None,
            "licensed": False,
        },
    ]
    table = format_counts_table(rows).splitlines()
    assert table[0].split() == ["tenant", "window", "active", "total", "limit", "utilization"]
    assert "1,234" in table[2] and "61.7%" in table[2]
    assert "solo (unlicensed)" in table[3] and table[3].rstrip().endswith("-")
    parsed = list(csv.DictReader(io.StringIO(format_counts_csv(rows))))
    assert parsed[0]["active_learners"] == "1234" and parsed[0]["window_start"] == "2026-11-01"
    assert parsed[1]["learner_limit"] == "" and parsed[1]["licensed"] == "false"
    assert format_counts_csv(rows).endswith("\r\n"), "RFC 4180 line ends"
    formula = [{**rows[1], "tenant_id": '=HYPERLINK("http://x")'}]
    parsed = list(csv.DictReader(io.StringIO(format_counts_csv(formula))))
    assert parsed[0]["tenant_id"] == '\'=HYPERLINK("http://x")', "never a spreadsheet formula"


def test_delete_of_a_selector_too_large_for_one_request_is_refused_before_sending(
    tmp_path, capsys
) -> None:
    path = tmp_path / "learners.txt"
    path.write_text("\n".join(f"learner-{n:08d}-{'x' * 200}" for n in range(3_000)))
    assert run(["delete", "--tenant", "acme", "--learners-file", str(path), "--preview"]) == 1
    err = capsys.readouterr().err.strip()
    assert "split the request" in err and "at most 524,288" in err and "\n" not in err
