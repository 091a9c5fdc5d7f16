"""helper-87 (2026-12-05): SMTP_FROM's domain in its ASCII form by IDNA 2008, not Python's `idna`
codec (IDNA 2003 makes `fußball.de` another domain); a domain literal in other scripts refused."""

from __future__ import annotations

import pytest

from streams.config.settings import ConfigError
from streams.notifier.smtp import SmtpSettings


@pytest.mark.parametrize(
    ("written", "ascii_form"),
    [
        ("lms@fußball.de", "lms@xn--fuball-cta.de"),  # IDNA 2003 maps ß to ss: fussball.de
        (
            "lms@ς.gr",
            "lms@xn--3xa.gr",
        ),  # IDNA 2003 maps the final sigma to the medial one: xn--4xa.gr
    ],
)
def test_a_sender_domain_is_not_turned_into_another_domain(written: str, ascii_form: str) -> None:
    """`fußball.de` and `fussball.de` are two registered domains; the notifier would send as a
    domain the operator does not own (SPF/DMARC fail, or the other owner's bounces)."""
    smtp = SmtpSettings.from_env({"SMTP_HOST": "mail.example", "SMTP_FROM": written})
    assert smtp is not None and smtp.sender == ascii_form


def test_a_domain_literal_with_other_scripts_is_refused_not_mangled() -> None:
    """`lms@[ä]` becomes `lms@xn--[]-via`: the brackets are IDNA-encoded as a label."""
    with pytest.raises(ConfigError):
        SmtpSettings.from_env({"SMTP_HOST": "mail.example", "SMTP_FROM": "lms@[ä]"})
