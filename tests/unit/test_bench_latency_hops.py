"""The latency phase says where a probe's time went: to its attempt record, then to its count."""

from __future__ import annotations

import math

from streams.tools.bench import latency_hops_line, note_attempt


def test_a_probes_attempt_is_timed_by_its_first_attempt_record() -> None:
    sent_at: dict[str, float] = {"probe-00001": 100.0}
    attempt_at: dict[str, float] = {}
    note_attempt(b"steady-001/l1/lat5", 100_100, sent_at, attempt_at)  # another tenant's
    note_attempt(None, 100_150, sent_at, attempt_at)
    note_attempt(b"probe-000011/p/lat9", 100_160, sent_at, attempt_at)  # a longer id, not it
    assert attempt_at == {}
    note_attempt(b"probe-00001/p/lat7", 100_250, sent_at, attempt_at)
    note_attempt(b"probe-00001/p/lat7", 100_900, sent_at, attempt_at)  # a replay's copy: later
    assert attempt_at == {"probe-00001": 100.25}


def test_the_hops_are_per_probe_and_leave_out_the_unseen() -> None:
    whole = [1.0, 0.8, 0.6, math.inf]
    first = [0.3, 0.2, math.inf, 0.1]  # the third's attempt record unseen, the fourth uncounted
    line = latency_hops_line(whole, first)
    assert "launch -> attempt record p50 0.20 s, p99 0.30 s" in line
    # per probe: 1.0 - 0.3 and 0.8 - 0.2 (p50 is the smaller, nearest rank)
    assert "p50 0.60 s, p99 0.70 s (2 probes)" in line


def test_no_attempt_record_seen_is_said() -> None:
    assert "no probe's attempt record" in latency_hops_line([0.5], [math.inf])
