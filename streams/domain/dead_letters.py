"""Building `dead-letters` records: the reason, a one-line detail and the original bytes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import orjson
from pydantic import ValidationError

# Kafka's default max.message.bytes is 1 MiB; keep a dead letter (raw text + base64 growth) below.
MAX_RAW_BYTES = 600_000
MAX_DETAIL_CHARS = 500


def summarize_validation_error(error: ValidationError, max_errors: int = 3) -> str:
    """`field: message; field: message` for the first few errors, in one line."""
    parts = []
    for item in error.errors(include_url=False, include_input=False)[:max_errors]:
        location = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    more = error.error_count() - max_errors
    if more > 0:
        parts.append(f"and {more} more")
    return one_line("; ".join(parts))


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_DETAIL_CHARS else text[: MAX_DETAIL_CHARS - 1] + "…"


def dead_letter(
    reason: str,
    detail: str,
    raw: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    now: datetime,
) -> dict[str, Any]:
    """A `dead-letters` value (schemas/dead_letters.py)."""
    raw_text: str | None = None
    encoding: str | None = None
    if raw is not None:
        kept = raw[:MAX_RAW_BYTES]
        if len(raw) > MAX_RAW_BYTES:
            detail = f"{detail} (raw truncated to {MAX_RAW_BYTES} of {len(raw)} bytes)"
        try:
            raw_text = kept.decode("utf-8")
        except UnicodeDecodeError:
            raw_text = base64.b64encode(kept).decode("ascii")
            encoding = "base64"
    record: dict[str, Any] = {
        "reason": reason,
        "detail": one_line(detail),
        "raw": raw_text,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "rejected_at": now.isoformat(),
    }
    if encoding:
        record["raw_encoding"] = encoding
    return record


def encode(value: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON (orjson: the hot path encodes a command per partition per batch)."""
    return orjson.dumps(value)
