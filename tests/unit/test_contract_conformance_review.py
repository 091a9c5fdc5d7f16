"""Contract sentences read line by line against the code (a conformance review, helper-89).

Each test names the sentence of CONTRACT.md it pins.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from streams.domain.dead_letters import MAX_RAW_BYTES, dead_letter

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
