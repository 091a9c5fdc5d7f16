"""A review of what the session of 2026-12-05 from 17:31 merged (helper-102): what worked before
the merges and did not after (no broker: Kafka is stubbed)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from streams.cli.main import run
from tests.unit.test_session_review_1731 import LAUNCH, LICENSE, one_line, sent  # noqa: F401


@pytest.fixture
def pipe_path() -> Iterator[tuple[str, int]]:
    """A pipe named as a shell's process substitution names it (`produce <(zcat x.gz)`:
    `/dev/fd/63`): it can be read once only. Yields (its path, the end to write to)."""
    read_end, write_end = os.pipe()
    try:
        yield f"/dev/fd/{read_end}", write_end
    finally:
        os.close(read_end)


def test_produce_of_a_pipe_sends_its_lines(pipe_path, sent, capsys) -> None:  # noqa: F811
    """`produce <(zcat launches.jsonl.gz)` sent every line; reading the pipe first to check
    its lines left nothing to send ("produced 0 records", exit 0)."""
    path, write_end = pipe_path
    os.write(write_end, f"{LICENSE}\n{LAUNCH}\n".encode())
    os.close(write_end)
    assert run(["produce", path]) == 0
    assert [topic for topic, _, _ in sent] == ["licenses", "launches"]
    assert "produced 2 records" in capsys.readouterr().out


def test_produce_of_a_pipe_with_a_bad_line_says_what_went(pipe_path, sent, capsys) -> None:  # noqa: F811
    """(read once, as stdin is: the error says how many records went before the bad line)"""
    path, write_end = pipe_path
    os.write(write_end, f"{LICENSE}\nnot json\n".encode())
    os.close(write_end)
    assert run(["produce", path]) == 1
    err = one_line(capsys)
    assert f"{path}:2: not JSON" in err and "(1 record before it went;" in err
    assert len(sent) == 1


class _Started(Exception):
    """The worker got as far as opening its tables: what it said before is what counts."""


def test_the_worker_says_partitions_apply_to_a_new_prefix_only(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Over topics of 6 partitions with PARTITIONS=12, the worker said "PARTITIONS=12 applies
    to new topics only", while the topics it had just made beside them got 6 (helper-96's
    change): PARTITIONS applies to a new TOPIC_PREFIX only."""
    import argparse

    import streams.cli.ops as ops
    from streams.config.settings import Settings

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("PARTITIONS", "12")
    monkeypatch.setattr(ops, "check_worker_settings", lambda args, settings: None)
    monkeypatch.setattr(ops, "ensure_topics", lambda settings, timeout_s: None)
    monkeypatch.setattr(ops, "copartitioned_count", lambda settings, timeout_s: 6)

    def started(settings: Settings, timeout_s: float) -> None:
        raise _Started

    monkeypatch.setattr(ops, "forget_recreated", started)
    args = argparse.Namespace(processes=1, timeout=1.0, loglevel="info")
    with pytest.raises(_Started):
        ops.cmd_worker(args, Settings.from_env())
    err = capsys.readouterr().err
    assert "the topics have 6 partitions; using 6" in err
    assert "PARTITIONS=12 applies to a new TOPIC_PREFIX only" in err, err
    assert "new topics only" not in err
