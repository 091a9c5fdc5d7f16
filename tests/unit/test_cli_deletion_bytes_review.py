"""`delete` from the CLI, after helper-88 found the API's deletion requests written with
json.dumps (2026-12-05): the CLI wrote them the same way, and checked a request before sending
without the `reason` and `requested_by` it sends. Each test failed when written."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

import streams.cli.deletions as deletions
from streams.cli.main import run
from streams.domain.deletions import build_request
from streams.domain.selectors import SELECTOR_MAX_BYTES, Selector
from streams.stages.store import MAX_RECORD_BYTES

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def test_a_request_of_non_ascii_learner_ids_within_the_selector_limit_fits_a_record() -> None:
    """680 ids of 256 characters, 253 of them CJK: 518,160 bytes of UTF-8, within the
    selector's 512 KiB; json.dumps wrote each CJK character as a 6-byte escape, a record of
    over 1,030,000 bytes, past what the service takes for one record."""
    ids = [f"{n:03d}" + "\u4e2d" * 253 for n in range(680)]
    selector = Selector.of("learner_ids", ids)
    assert selector.too_large() is None, "within SELECTOR_MAX_BYTES: the CLI sends it"
    request = build_request("acme", "preview", selector, NOW, requested_by="cli:ops")
    value = deletions.request_bytes(request)
    assert len(value) < MAX_RECORD_BYTES, len(value)
    assert len(value) < SELECTOR_MAX_BYTES + 10_000
    assert orjson.loads(value) == request  # the same request, byte for byte in UTF-8


def test_a_reason_the_locale_could_not_decode_is_one_line_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--reason` of bytes that are not UTF-8 reaches Python as lone surrogates: the request was
    checked without its reason, and encoding it then raised (a traceback), where json.dumps had
    sent a request the worker dead-letters and the CLI waited its timeout for a receipt."""

    def no_send(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing may be sent")

    monkeypatch.setattr(deletions, "send_and_wait", no_send)
    monkeypatch.setattr(deletions, "require_broker", no_send)
    argv = ["delete", "--tenant", "acme", "--older-than", "2y", "--preview"]
    code = run([*argv, "--reason", "audit \udcff"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert "\n" not in err and "Traceback" not in err, err
    assert err.count("--reason") == 1 and "not valid text" in err, err


def test_a_login_name_the_locale_could_not_decode_is_recorded_by_uid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$USER with undecodable bytes: `requested_by` held surrogates, which no request may."""
    monkeypatch.setenv("LOGNAME", "ops\udcff")
    monkeypatch.setenv("USER", "ops\udcff")
    who = deletions.cli_user()
    assert who.startswith("cli:uid-"), who
    request = build_request(
        "acme", "preview", Selector.of("learner_ids", ["l-1"]), NOW, requested_by=who
    )
    deletions.check_request(request)  # valid: raises nothing, and the request encodes
    assert orjson.loads(deletions.request_bytes(request))["requested_by"] == who
