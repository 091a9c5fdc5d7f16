"""The README read by a platform engineer trying the service for the first time (the session of
2026-12-05 from 17:31): what it promises, held (no broker: Kafka is stubbed)."""

from __future__ import annotations

import io
import sys
from typing import Any

import pytest

import streams.cli.data as data
import streams.kafka.io as kafka_io
from streams.cli.main import run

LICENSE = '{"tenant_id": "acme", "cycle_start": "2026-01-01", "window_months": 12}'
LAUNCH = (
    '{"event_id": "e1", "tenant_id": "acme", "learner_id": "l1", "element_id": "x",'
    ' "attempt_id": "a1", "launched_at": "2026-03-01T10:00:00Z"}'
)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What `produce` hands to Kafka (the records are drawn as the real producer draws them)."""
    records: list[Any] = []

    def produce(settings, records_in, progress=None, partition_of=None):  # type: ignore[no-untyped-def]
        for record in records_in:
            records.append(record)
        return len(records)

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.delenv("TOPIC_PREFIX", raising=False)
    monkeypatch.setattr(data, "require_broker", lambda settings, timeout_s: None)
    monkeypatch.setattr(data, "require_topics", lambda settings, names, timeout_s: None)
    monkeypatch.setattr(kafka_io, "produce_records", produce)
    return records


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_produce_of_a_file_with_a_bad_line_sends_nothing(tmp_path, sent, capsys) -> None:
    """The README: "prints a one-line error and exits non-zero on a bad argument"; the lines
    before the bad one were sent all the same, and the error did not say so."""
    path = tmp_path / "dataset.jsonl"
    path.write_text(f"{LICENSE}\n{LAUNCH}\nnot json\n{LAUNCH}\n", encoding="utf-8")
    assert run(["produce", str(path)]) == 1
    err = one_line(capsys)
    assert f"{path}:3: not JSON" in err and "nothing was sent" in err
    assert sent == []
    # fixed, the file goes whole, each record once
    path.write_text(f"{LICENSE}\n{LAUNCH}\n", encoding="utf-8")
    assert run(["produce", str(path)]) == 0
    assert [topic for topic, _, _ in sent] == ["licenses", "launches"]


def test_produce_from_stdin_says_how_many_records_went_before_a_bad_line(
    sent, monkeypatch, capsys
) -> None:
    """stdin cannot be read twice: the error says what was sent before the bad line."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{LICENSE}\n{LAUNCH}\n[1]\n"))
    assert run(["produce", "-"]) == 1
    err = one_line(capsys)
    assert "-:3: not a JSON object" in err and "(2 records before it went;" in err
    assert len(sent) == 2
    sent.clear()
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{LICENSE}\nnot json\n"))
    assert run(["produce", "-"]) == 1
    assert "-:2: not JSON" in (err := one_line(capsys)) and "(1 record before it went;" in err


def test_the_worker_writes_no_terminal_codes_around_its_log_records(caplog) -> None:
    """The README: "Logs ... one record per event; LOG_FORMAT=json writes one JSON object per
    line"; faust's start-up spinner ended by writing `\\b\\x1b[?25h` to stdout, terminal or
    not, so a worker run as `active-learners worker >> log 2>&1` (or under a journal that takes
    both streams) had those bytes before a record: a line no log parser reads, in JSON no
    JSON."""
    import asyncio
    import logging

    import faust

    from streams.worker.process import BoundedWorker

    app = faust.App("h99-spinner", broker="kafka://127.0.0.1:1", web_enabled=False)
    stdout, stderr = io.StringIO(), io.StringIO()
    loop = asyncio.new_event_loop()
    try:
        worker = BoundedWorker(
            app, loglevel="info", quiet=True, stdout=stdout, stderr=stderr, loop=loop
        )
        with caplog.at_level(logging.INFO):
            worker._on_startup_end_spinner()  # what faust calls once the worker has started
    finally:
        loop.close()
    assert stdout.getvalue() == "" and stderr.getvalue() == ""
    assert "Ready" in caplog.text  # said in the log instead, as one record
