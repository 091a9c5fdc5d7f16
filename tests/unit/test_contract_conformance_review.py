"""Contract sentences read line by line against the code (a conformance review, helper-89).

Each test names the sentence of CONTRACT.md it pins.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import pytest
from pydantic import ValidationError

from schemas import topics
from schemas.launches import Launch
from schemas.licenses import License
from streams.domain.dead_letters import MAX_RAW_BYTES, dead_letter
from streams.domain.decoding import decode
from streams.domain.licenses import license_from
from streams.http import api
from streams.http.read_model import ReadModel
from streams.notifier import webhooks

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


def test_a_utf8_value_cut_inside_a_character_is_dead_lettered_as_text_not_base64() -> None:
    """CONTRACT (dead-letters): '`raw` is the original value as text (base64 with
    "raw_encoding": "base64" when it is not UTF-8)'. A UTF-8 license larger than the raw a dead
    letter keeps, cut inside a three-byte character, was sent as base64 of its first bytes."""
    raw = json.dumps({"tenant_id": "t/x", "note": "a" + "中" * 300_000}, ensure_ascii=False)
    value = raw.encode("utf-8")
    assert len(value) > MAX_RAW_BYTES
    with_cut = value[:MAX_RAW_BYTES]
    assert with_cut[-1] & 0xC0 == 0x80  # the cut falls inside a character

    letter = dead_letter("invalid", "bad", value, "licenses", 0, 7, NOW)

    assert "raw_encoding" not in letter
    assert value.decode("utf-8").startswith(letter["raw"])
    assert len(letter["raw"].encode("utf-8")) > MAX_RAW_BYTES - 4
    assert "raw truncated" in letter["detail"]


def test_a_value_that_is_not_utf8_beyond_the_kept_bytes_is_still_base64() -> None:
    """The other half of the sentence: a value that is not UTF-8 is base64, also when the
    bytes that make it so are past what a dead letter keeps."""
    value = b"{" + b"a" * MAX_RAW_BYTES + b"\xff}"
    letter = dead_letter("invalid", "bad", value, "licenses", 0, 7, NOW)
    assert letter["raw_encoding"] == "base64"
    assert base64.b64decode(letter["raw"]) == value[:MAX_RAW_BYTES]


@pytest.mark.parametrize("zone", ["posix/Europe/Berlin", "right/UTC", "right/America/New_York"])
def test_a_zone_database_build_folder_is_no_iana_time_zone_name(zone: str) -> None:
    """CONTRACT (licenses): '`timezone` | IANA name'. The zone folder of many machines (Debian's
    tzdata) also holds `posix/` and `right/` copies of the database: no IANA names, missing from
    the `tzdata` package and from other machines, so the workers (and the read model, the
    notifier) of one deployment would read such a license differently. The machine here may
    have no such folder: then the name is refused as unknown, as it must be anyway."""
    with pytest.raises(ValidationError, match="timezone"):
        License(tenant_id="acme", timezone=zone)
    assert zone not in available_timezones()


def test_iana_time_zone_names_stay_valid() -> None:
    for zone in ("UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+12"):
        assert License(tenant_id="acme", timezone=zone).timezone == zone


def test_a_license_stored_with_such_a_zone_by_an_older_version_still_reads() -> None:
    """Refused as input, kept where it governs already: the stages read their stored license
    again at every publication."""
    try:
        ZoneInfo("posix/UTC")
    except (ZoneInfoNotFoundError, OSError):
        pytest.skip("this machine's zone database has no posix/ folder")
    stored = {"license": {**License(tenant_id="acme").model_dump(mode="json")}}
    stored["license"]["timezone"] = "posix/UTC"
    license_, licensed = license_from("acme", stored)
    assert (license_.timezone, licensed) == ("posix/UTC", True)


@pytest.mark.parametrize(
    ("text", "read_as"),
    [
        ("2026-03-01T10:00:00.1234567891Z", "2026-03-01T10:00:00.123456+00:00"),
        ("2026-03-01T10:00:00.123456789012+02:00", "2026-03-01T10:00:00.123456+02:00"),
        ("2026-03-01T10:00:00." + "9" * 40 + "Z", "2026-03-01T10:00:00.999999+00:00"),
        ("2026-12-31T23:59:60.1234567891Z", "2026-12-31T23:59:59.999999+00:00"),
    ],
)
def test_an_instant_with_more_than_nine_fraction_digits_is_rfc3339(text: str, read_as: str) -> None:
    """CONTRACT: 'timestamps are RFC 3339 with an offset'. RFC 3339 (5.6) bounds no fraction:
    `time-secfrac = "." 1*DIGIT`, and the README says digits past the sixth are cut; a launch
    with ten digits was dead-lettered `invalid` (its learner uncounted)."""
    launch = {
        "event_id": "e1",
        "tenant_id": "acme",
        "learner_id": "l1",
        "element_id": "el",
        "attempt_id": "a1",
        "launched_at": text,
    }
    decoded = decode(Launch, json.dumps(launch).encode())
    assert isinstance(decoded, Launch), decoded
    assert decoded.launched_at.isoformat() == read_as


# -- sentences no test pinned before (they held) ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compacted"),
    [
        (topics.LICENSES, True),  # "`licenses` — compacted, key `tenant_id`"
        (topics.LEARNER_GROUPS, True),  # "`learner-groups` — compacted"
        (topics.ACTIVE_LEARNER_COUNTS, True),  # "`active-learner-counts` — compacted"
        (topics.ATTEMPTS, True),  # "`attempts` — compacted"
        (topics.THRESHOLD_EVENTS, False),
        (topics.DEAD_LETTERS, False),
    ],
)
def test_the_contracts_compacted_topics_are_created_compacted(name: str, compacted: bool) -> None:
    configs = topics.TOPICS_BY_NAME[name].configs()
    assert (configs["cleanup.policy"] == "compact") is compacted


def test_the_receipts_topic_keeps_its_records_without_limit() -> None:
    """CONTRACT (deletion-receipts): 'The receipts are the tenant's deletion audit trail: keep
    the topic's retention unlimited.'"""
    configs = topics.TOPICS_BY_NAME[topics.DELETION_RECEIPTS].configs()
    assert configs == {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


@pytest.mark.parametrize(("months", "surcharge"), [(12, 0), (3, 25), (1, 50)])
def test_the_surcharge_of_each_window_length(months: int, surcharge: int) -> None:
    """CONTRACT: '`surcharge_pct` is the Active Window surcharge: 0 for 12 months, 25 for 3
    months, 50 for 1 month.'"""
    model = ReadModel()
    license_ = {"tenant_id": "acme", "cycle_start": "2026-01-01", "window_months": months}
    model.apply_license(b"acme", json.dumps(license_).encode())
    model.caught_up.set()
    details = api.tenant_details(model, "acme", NOW)
    assert details["license"]["surcharge_pct"] == surcharge
    assert details["window"]["months"] == months


def test_a_webhook_try_without_an_answer_in_10_s_fails() -> None:
    """CONTRACT (Webhooks): 'any other answer or a timeout (10 s) is retried'. The transport's
    own default, which the notifier uses."""
    assert webhooks.TIMEOUT_S == 10.0
    assert webhooks.AiohttpTransport().timeout_s == 10.0
