"""Garbage of every kind becomes a clear rejection, never an exception."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from schemas.launches import Launch
from schemas.licenses import License
from streams.domain.dead_letters import MAX_RAW_BYTES, dead_letter
from streams.domain.decoding import Rejected, decode, future_rejection

GOOD = {
    "event_id": "e",
    "tenant_id": "t",
    "learner_id": "l",
    "element_id": "x",
    "attempt_id": "a",
    "launched_at": "2026-03-01T10:00:00Z",
}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (None, "null"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not an object"),
        (b'"text"', "not an object"),
        (json.dumps({**GOOD, "launched_at": 5}).encode(), "launched_at"),
        (json.dumps({**GOOD, "launched_at": "2026-03-01T10:00:00"}).encode(), "timezone"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "tenant_id"}).encode(), "tenant_id"),
        (json.dumps({**GOOD, "learner_id": "x" * 300_000}).encode(), "learner_id"),
    ],
)
def test_bad_launches_are_rejected_as_invalid(raw: bytes | None, words: str) -> None:
    result = decode(Launch, raw)
    assert isinstance(result, Rejected)
    assert result.reason == "invalid"
    assert words in result.detail
    assert "\n" not in result.detail and len(result.detail) <= 600


def test_good_launch_decodes() -> None:
    result = decode(Launch, json.dumps(GOOD).encode())
    assert isinstance(result, Launch)


def test_future_is_more_than_an_hour_ahead() -> None:
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert future_rejection(datetime(2026, 3, 1, 11, tzinfo=UTC), now) is None
    late = future_rejection(datetime(2026, 3, 1, 11, 0, 1, tzinfo=UTC), now)
    assert late is not None and late.reason == "future"


def test_dead_letter_keeps_raw_text_or_base64() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    text = dead_letter("invalid", "d", b"garbage", "launches", 1, 7, now)
    assert (text["raw"], "raw_encoding" in text) == ("garbage", False)
    assert text["source"] == {"topic": "launches", "partition": 1, "offset": 7}
    binary = dead_letter("invalid", "d", b"\xff\x00", "launches", 1, 8, now)
    assert binary["raw_encoding"] == "base64"
    assert base64.b64decode(binary["raw"]) == b"\xff\x00"


def test_dead_letter_of_a_huge_record_stays_under_the_message_limit() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    record = dead_letter("invalid", "too big", b"x" * 2_000_000, "launches", 0, 0, now)
    assert len(record["raw"]) == MAX_RAW_BYTES
    assert "truncated" in record["detail"]


POISON_LICENSES = [
    ({"tenant_id": "t", "timezone": "America"}, "time zone"),  # a folder of the zone database
    ({"tenant_id": "t", "learner_limit": True}, "learner_limit"),
    ({"tenant_id": "t", "window_months": True}, "window_months"),
    ({"tenant_id": "t", "cycle_start": "0001-01-01"}, "cycle_start"),
]


@pytest.mark.parametrize(("record", "words"), POISON_LICENSES)
def test_poison_licenses_are_invalid(record: dict, words: str) -> None:
    result = decode(License, json.dumps(record).encode())
    assert isinstance(result, Rejected) and words in result.detail


@pytest.mark.parametrize(
    ("launched_at", "words"),
    [
        ("1700000000", "RFC 3339"),  # epoch seconds as a string
        ("0001-01-01T00:00:00Z", "between the years"),
        ("9999-12-31T23:59:59Z", "between the years"),
    ],
)
def test_launch_instants_outside_the_contract_are_invalid(launched_at: str, words: str) -> None:
    result = decode(Launch, json.dumps({**GOOD, "launched_at": launched_at}).encode())
    assert isinstance(result, Rejected) and words in result.detail


def test_a_deeply_nested_request_is_rejected_not_raised() -> None:
    from schemas.deletions import DeletionRequest
    from streams.domain.decoding import usable_ids

    raw = b'{"request_id": "r", "tenant_id": "t", "x": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    assert isinstance(decode(DeletionRequest, raw), Rejected)
    assert usable_ids(raw) in (None, ("r", "t", "invalid"))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"teams": ["t1"]}, "exactly one selector"),
        ({"requested_at": "2027-01-01T00:00:00Z"}, "requested_at"),
        ({"older_than": "2027-01-01T00:00:00Z"}, "older_than"),
    ],
)
def test_deletion_requests_that_must_not_run(changes: dict, words: str) -> None:
    from schemas.deletions import DeletionRequest
    from streams.domain.decoding import deletion_rejection

    record = {
        "request_id": "r",
        "tenant_id": "t",
        "mode": "physical",
        "requested_at": "2026-11-28T00:00:00Z",
        "older_than": "2026-01-01T00:00:00Z",
        **changes,
    }
    raw = json.dumps(record).encode()
    request = decode(DeletionRequest, raw)
    if isinstance(request, Rejected):  # two selectors: the model refuses it already
        assert words in request.detail
        return
    rejected = deletion_rejection(request, datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert rejected is not None and words in rejected.detail


def test_a_selector_is_bounded_by_its_json_size() -> None:
    from streams.domain.selectors import SELECTOR_MAX_BYTES, Selector

    def teams(size: int) -> Selector:  # one team id long enough for `size` bytes of JSON
        return Selector.of("teams", ["t" * (size - Selector.of("teams", [""]).json_size())])

    assert teams(SELECTOR_MAX_BYTES).json_size() == SELECTOR_MAX_BYTES
    assert teams(SELECTOR_MAX_BYTES).too_large() is None
    too_large = teams(SELECTOR_MAX_BYTES + 1).too_large()
    assert too_large is not None and "takes 524,289 bytes; at most 524,288" in too_large


def test_a_request_too_large_for_one_record_must_not_run() -> None:
    """Whatever path it came by (Kafka, the CLI, the API): its selector is echoed by the receipt
    and stored with it, so a larger one would outgrow Kafka's record limit."""
    from schemas.deletions import DeletionRequest
    from streams.domain.decoding import deletion_rejection

    learners = [f"learner-{n:06d}-" + "x" * 200 for n in range(2_600)]
    record = {
        "request_id": "r",
        "tenant_id": "t",
        "mode": "preview",
        "requested_at": "2026-11-28T00:00:00Z",
        "learner_ids": learners,
    }
    request = decode(DeletionRequest, json.dumps(record).encode())
    assert not isinstance(request, Rejected)
    rejected = deletion_rejection(request, datetime(2026, 11, 28, 12, tzinfo=UTC))
    assert rejected is not None and "split the request" in rejected.detail
    fewer_raw = json.dumps({**record, "learner_ids": learners[:2_000]}).encode()
    fewer = decode(DeletionRequest, fewer_raw)
    assert not isinstance(fewer, Rejected)
    assert deletion_rejection(fewer, datetime(2026, 11, 28, 12, tzinfo=UTC)) is None
