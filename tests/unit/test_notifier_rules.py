"""The notifier's pure parts: which events are a backfill, the e-mail text, SMTP settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streams.config.settings import ConfigError
from streams.notifier.service import SmtpSettings, build_message, is_backfill

EVENT = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "window": {"start": "2026-11-01", "end": "2026-12-01", "months": 1},
    "threshold_pct": 90,
    "threshold_learners": 450,
    "direction": "up",
    "active_learners": 452,
    "learner_limit": 500,
    "notify": ["a@acme.example", "b@acme.example"],
    "occurred_at": "2026-11-20T10:00:00+00:00",
}


@pytest.mark.parametrize(
    ("end", "now", "backfill"),
    [
        ("2026-12-01", datetime(2026, 11, 20, tzinfo=UTC), False),  # the current window
        ("2026-11-01", datetime(2026, 11, 7, tzinfo=UTC), False),  # ended 6 days ago
        ("2026-11-01", datetime(2026, 11, 8, 0, 0, 1, tzinfo=UTC), True),  # over 7 days
    ],
)
def test_backfill_is_a_window_that_ended_over_7_days_ago(end, now, backfill) -> None:
    assert is_backfill({**EVENT, "window": {**EVENT["window"], "end": end}}, now) is backfill


def test_message_tells_tenant_window_count_limit_and_percentage() -> None:
    message = build_message(EVENT, "lms@example.com")
    assert message["To"] == "a@acme.example, b@acme.example"
    assert message["Subject"] == "Active Learners: acme reached 90% of its limit (452 of 500)"
    body = message.get_content()
    for words in ("452", "90.4% of the licensed limit of 500", "2026-11-01 to 2026-12-01", "450"):
        assert words in body
    down = build_message({**EVENT, "direction": "down", "active_learners": 400}, "x@y.z")
    assert "back below 90%" in down["Subject"]


def test_smtp_settings() -> None:
    assert SmtpSettings.from_env({}) is None
    smtp = SmtpSettings.from_env({"SMTP_HOST": "mail", "SMTP_STARTTLS": "true"})
    assert smtp is not None and (smtp.port, smtp.starttls) == (587, True)
    with pytest.raises(ConfigError, match="SMTP_PORT"):
        SmtpSettings.from_env({"SMTP_HOST": "mail", "SMTP_PORT": "twenty-five"})
    with pytest.raises(ConfigError, match="SMTP_STARTTLS"):
        SmtpSettings.from_env({"SMTP_HOST": "mail", "SMTP_STARTTLS": "maybe"})
