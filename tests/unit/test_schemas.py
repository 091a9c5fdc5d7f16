"""The wire contract: each model accepts the contract's examples and refuses bad input clearly."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest
from pydantic import ValidationError

from schemas.deletions import DeletionRequest
from schemas.launches import Launch
from schemas.licenses import License, default_license
from schemas.registry import JSON_DIR, TOPIC_MODELS, json_schema_text
from streams.domain.decoding import Rejected, decode

LAUNCH = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "learner_id": "l-1",
    "element_id": "course-7",
    "attempt_id": "a-1",
    "launched_at": "2026-03-01T10:00:00Z",
    "content_type": "scorm",
}
LICENSE = {
    "tenant_id": "acme",
    "cycle_start": "2026-01-31",
    "window_months": 1,
    "learner_limit": 500,
    "thresholds": [100, 80, 90],
    "notify": ["admin@acme.example"],
    "timezone": "Europe/Berlin",
}
DELETION = {
    "request_id": "r-1",
    "tenant_id": "acme",
    "mode": "physical",
    "requested_at": "2026-03-01T10:00:00+01:00",
    "older_than": "2025-07-01T00:00:00Z",
}


def test_launch_accepts_contract_example_and_applies_defaults() -> None:
    launch = Launch.model_validate(LAUNCH)
    assert launch.launched_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert (launch.tracking, launch.launched_by) == ("tracked", "learner")


def test_launch_ignores_unknown_fields() -> None:
    launch = Launch.model_validate({**LAUNCH, "browser": "firefox"})
    assert not hasattr(launch, "browser")


def test_license_accepts_contract_example_and_sorts_thresholds() -> None:
    lic = License.model_validate(LICENSE)
    assert lic.cycle_start == date(2026, 1, 31)
    assert lic.thresholds == (80, 90, 100)


def test_default_license_matches_contract() -> None:
    lic = default_license("t")
    assert (lic.cycle_start, lic.window_months, lic.timezone) == (date(1970, 1, 1), 12, "UTC")
    assert (lic.learner_limit, lic.thresholds) == (None, ())


@pytest.mark.parametrize(
    "selector",
    [
        {"attempts": [{"learner_id": "l-1", "attempt_id": "a-1"}]},
        {"learner_ids": ["l-1", "l-2"]},
        {"older_than": "2025-07-01T00:00:00Z"},
    ],
)
def test_deletion_accepts_each_selector(selector: dict) -> None:
    base = {k: v for k, v in DELETION.items() if k != "older_than"}
    request = DeletionRequest.model_validate({**base, **selector})
    assert request.request_id == "r-1"


# (model, changes to its example, words the error message must contain)
REJECTIONS = [
    (Launch, {"launched_at": "2026-03-01T10:00:00"}, "timezone"),
    (Launch, {"launched_at": 1772359200}, "RFC 3339"),
    (Launch, {"tracking": "sometimes"}, "tracked"),
    (Launch, {"launched_by": "robot"}, "learner"),
    (Launch, {"learner_id": "x" * 300_000}, "at most 256"),
    (Launch, {"tenant_id": "a/b"}, "pattern"),
    (Launch, {"attempt_id": ""}, "at least 1"),
    (Launch, {"element_id": None}, "string"),
    (License, {"window_months": 2}, "window_months"),
    (License, {"timezone": "Mars/Olympus_Mons"}, "unknown IANA time zone"),
    (License, {"thresholds": [0]}, "greater than or equal to 1"),
    (License, {"thresholds": [1001]}, "less than or equal to 1000"),
    (License, {"learner_limit": 0}, "greater than or equal to 1"),
    (License, {"cycle_start": "2026-1-5"}, "YYYY-MM-DD"),
    (License, {"notify": ["not-an-address"]}, "e-mail"),
    # one address per entry: never a list, a name, a comment or a control character
    (License, {"notify": ["a@acme.example, b@acme.example"]}, "not an e-mail address"),
    (License, {"notify": ["a@acme.example,b@acme.example"]}, "one bare e-mail address"),
    (License, {"notify": ["a@acme.example;b@acme.example"]}, "one bare e-mail address"),
    (License, {"notify": ["Ann <ann@acme.example>"]}, "not an e-mail address"),
    (License, {"notify": ["Ann<ann@acme.example>"]}, "one bare e-mail address"),
    (License, {"notify": ["<ann@acme.example>"]}, "one bare e-mail address"),
    (License, {"notify": ["(boss)ann@acme.example"]}, "one bare e-mail address"),
    (License, {"notify": ["ann@acme.example\r\nBcc:all@acme.example"]}, "control character"),
    (License, {"notify": ["ann@acme.example\t"]}, "control character"),
    (License, {"notify": ["ann@acme.example\u2028"]}, "control character"),
    (DeletionRequest, {"learner_ids": ["l-1"]}, "exactly one selector"),
    (DeletionRequest, {"older_than": None}, "got none"),
    (DeletionRequest, {"mode": "shred"}, "physical"),
    (DeletionRequest, {"requested_at": "yesterday"}, "RFC 3339"),
]


def _example(model: type) -> dict:
    return {Launch: LAUNCH, License: LICENSE, DeletionRequest: DELETION}[model]


@pytest.mark.parametrize(("model", "changes", "words"), REJECTIONS)
def test_models_reject_bad_input_with_readable_message(model, changes, words) -> None:
    record = {**_example(model), **changes}
    record = {k: v for k, v in record.items() if v is not None or k != "older_than"}
    with pytest.raises(ValidationError) as info:
        model.model_validate(record)
    message = str(info.value)
    assert words in message
    assert len(message) < 2_000, "an error message must stay readable, even for a 300 KB id"


@pytest.mark.parametrize(
    "address", ["ann@acme.example", "o'brien@acme.example", "first.last+tag@mail.acme.example"]
)
def test_license_accepts_one_plain_address_per_notify_entry(address: str) -> None:
    assert License.model_validate({**LICENSE, "notify": [address]}).notify == (address,)


def test_a_license_with_two_addresses_in_one_entry_is_dead_lettered_as_invalid() -> None:
    raw = json.dumps({**LICENSE, "notify": ["admin@acme.example", "a@x.example,b@y.example"]})
    rejected = decode(License, raw.encode())
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid"
    assert rejected.detail.startswith("notify.1: must be one bare e-mail address")


def test_missing_required_field_is_named() -> None:
    record = {k: v for k, v in LAUNCH.items() if k != "attempt_id"}
    with pytest.raises(ValidationError, match="attempt_id"):
        Launch.model_validate(record)


@pytest.mark.parametrize("topic", sorted(TOPIC_MODELS))
def test_json_schema_files_match_the_models(topic: str) -> None:
    path = JSON_DIR / f"{topic}.json"
    assert path.exists(), f"{path} is missing: run `make schemas`"
    assert path.read_text(encoding="utf-8") == json_schema_text(topic), (
        f"{path} differs from the models: run `make schemas`"
    )
    assert json.loads(path.read_text())["title"].startswith(topic)


# -- webhooks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.acme.example/active-learners",
        "http://127.0.0.1:8080/hook?tenant=acme&token=abc",  # a receiver's own secret may be here
        "HTTPS://Hooks.Acme.Example:8443/x",  # the scheme in any case
        "http://[::1]:9000/",
        "https://bücher.example/hook",  # an internationalized host name
        "https://hooks.acme.example/" + "x" * 2000,
    ],
)
def test_license_accepts_absolute_http_and_https_webhooks(url: str) -> None:
    assert License.model_validate({**LICENSE, "webhooks": [url]}).webhooks == (url,)


def test_webhooks_are_optional_and_a_repeated_url_counts_once() -> None:
    assert License.model_validate(LICENSE).webhooks == ()
    hooks = ["https://b.example/", "https://a.example/", "https://b.example/"]
    assert License.model_validate({**LICENSE, "webhooks": hooks}).webhooks == (
        "https://b.example/",
        "https://a.example/",
    )


# (webhooks, words of the error message); no message repeats the URL (it may hold a secret)
WEBHOOK_REJECTIONS = [
    (["ftp://hooks.acme.example/"], "must be an absolute http:// or https:// URL, not 'ftp'"),
    (["hooks.acme.example/x"], "must be an absolute http:// or https:// URL"),
    (["/relative/path"], "must be an absolute http:// or https:// URL"),
    (["http:hooks.acme.example"], "must be an absolute http:// or https:// URL"),
    (["javascript:alert(1)"], "not 'javascript'"),
    (["https://user:secret@hooks.acme.example/"], "must not carry credentials"),
    (["https://token@hooks.acme.example/"], "must not carry credentials"),
    (["https:///path-only"], "has no host"),
    (["https://hooks.acme.example:99999/"], "is not a URL"),
    (["https://hooks.acme.example:0/"], "has port 0"),
    (["https://[::1/"], "is not a URL"),
    (["https://a..example/"], "not a valid DNS name"),
    (["https://hooks.acme.example/a b"], "white space"),
    (["https://hooks.acme.example/\r\nX-Injected: 1"], "control character"),
    (["https://hooks.acme.example/\u2028"], "control character"),
    (["https://hooks.acme.example/\x7f"], "control character"),
    (["https://hooks.acme.example/" + "x" * 2030], "at most 2048 characters"),
    ([""], "at least 1 character"),
    ("https://hooks.acme.example/", "tuple"),  # a list, not one string
    ([42], "string"),
]


@pytest.mark.parametrize(("webhooks", "words"), WEBHOOK_REJECTIONS)
def test_license_refuses_bad_webhooks_with_a_readable_message(webhooks, words) -> None:
    with pytest.raises(ValidationError) as info:
        License.model_validate({**LICENSE, "webhooks": webhooks})
    message = str(info.value)
    assert words in message
    assert "secret@" not in message.split("input_value=")[0]


def test_a_license_with_a_bad_webhook_is_dead_lettered_as_invalid() -> None:
    hooks = ["https://hooks.acme.example/", "https://user:pw@hooks.acme.example/"]
    raw = json.dumps({**LICENSE, "webhooks": hooks})
    rejected = decode(License, raw.encode())
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid"
    assert rejected.detail == "webhooks.1: must not carry credentials (user:password@)"


def test_the_worker_dead_letters_a_license_with_a_bad_webhook_and_keeps_the_last_good_one() -> None:
    # the real stages in-process (tests/stages/pipeline.py), no broker
    from schemas import topics
    from tests.stages.pipeline import Pipeline, launch, license_

    p = Pipeline(partitions=1)
    good = license_("acme", learner_limit=1, thresholds=[100], webhooks=["https://a.example/h"])
    p.produce(topics.LICENSES, good)
    p.produce(topics.LICENSES, {**good, "learner_limit": 50, "webhooks": ["ftp://a.example/h"]})
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-02-10T10:00:00Z"))
    p.settle()
    [letter] = p.dead_letters()
    assert (letter["reason"], letter["source"]["offset"]) == ("invalid", 1)
    assert letter["detail"].startswith("webhooks.0: must be an absolute http:// or https:// URL")
    # the limit of 1 still governs: the one learner crossed its 100% threshold
    assert [(e["threshold_pct"], e["learner_limit"]) for e in p.events("acme")] == [(100, 1)]


def test_a_license_names_at_most_100_addresses() -> None:
    """(tests/stages/test_threshold_bounds.py has why); one stored by an older version before
    the bound keeps governing its tenant, and thresholds stay unbounded (1-1000 each)."""
    from schemas.licenses import MAX_NOTIFY, License
    from streams.domain.decoding import Rejected, decode
    from streams.domain.licenses import license_from

    addresses = [f"admin{k}@acme.example" for k in range(MAX_NOTIFY + 1)]
    many = {"tenant_id": "acme", "notify": addresses, "thresholds": list(range(1, 1001))}
    refused = decode(License, json.dumps(many).encode())
    assert isinstance(refused, Rejected) and refused.reason == "invalid"
    assert refused.detail == f"notify: at most {MAX_NOTIFY} addresses, not {MAX_NOTIFY + 1}"
    taken = decode(License, json.dumps({**many, "notify": addresses[:MAX_NOTIFY]}).encode())
    assert isinstance(taken, License) and len(taken.thresholds) == 1000
    stored, licensed = license_from("acme", {"license": many})
    assert licensed and len(stored.notify) == MAX_NOTIFY + 1
