"""The fast launch decoder against the contract's model: never accepts what the model refuses,
never reads a value differently, and takes the common form (streams/domain/launch_decoder.py)."""

from __future__ import annotations

import random

import orjson
import pytest
from pydantic import ValidationError

from schemas.launches import Launch
from streams.domain.decoding import decode
from streams.domain.launch_decoder import LaunchFields, fast_launch

BASE = {
    "event_id": "e-1",
    "tenant_id": "acme",
    "learner_id": "learner-7",
    "element_id": "el-3",
    "attempt_id": "at-9",
    "launched_at": "2026-03-01T10:00:00Z",
    "content_type": "scorm",
}


def _model(raw: bytes) -> Launch | None:
    try:
        return Launch.model_validate_json(raw)
    except ValidationError:
        return None


def agrees_with_model(raw: bytes) -> LaunchFields | None:
    """The fast answer, after checking it against the model's."""
    fast = fast_launch(raw)
    if fast is None:
        return None
    model = _model(raw)
    assert model is not None, f"fast path accepted what the model refuses: {raw!r}"
    for name in LaunchFields.__struct_fields__:
        assert getattr(fast, name) == getattr(model, name), (name, raw)
    assert fast.launched_at.isoformat() == model.launched_at.isoformat(), raw
    assert fast.launched_at.utcoffset() == model.launched_at.utcoffset(), raw
    assert fast.launched_at.timestamp() == model.launched_at.timestamp(), raw
    return fast


def raw_of(**changes: object) -> bytes:
    record = {**BASE, **changes}
    return orjson.dumps({k: v for k, v in record.items() if v is not DROP})


DROP = object()

COMMON = [
    raw_of(),
    raw_of(content_type=DROP),
    raw_of(content_type=None),
    raw_of(content_type="  Video "),
    raw_of(tracking="None_Resource "),
    raw_of(tracking="none"),
    raw_of(launched_by="admin"),
    raw_of(launched_at="2026-03-01T10:00:00.5+05:45"),
    raw_of(launched_at="2026-03-01T10:00:00.123456-03:00"),
    raw_of(launched_at="1900-01-01T00:00:00Z"),
    raw_of(launched_at="2026-03-01T10:00:00-00:00"),
    raw_of(learner_id="x" * 256, extra={"ignored": 1} and 5, note="ünïcödé ✓"),
    raw_of(learner_id="Müller O'Brien (ext)", score=1.5, flag=True, none=None),
    raw_of(event_id="/ever\x01y thing"),  # event ids are any 1-256 characters
    raw_of(content_type=""),
    orjson.dumps(BASE, option=orjson.OPT_INDENT_2),
]


@pytest.mark.parametrize("raw", COMMON)
def test_the_common_form_takes_the_fast_path_with_the_models_values(raw: bytes) -> None:
    assert agrees_with_model(raw) is not None


HOSTILE = [
    raw_of(note="{ is fine in a string }"),  # valid, but read by the model
    b"",
    b"null",
    b"[]",
    b'"text"',
    b"\xef\xbb\xbf" + raw_of(),  # a byte order mark
    raw_of()[:-1],  # cut short
    raw_of() + b"x",
    raw_of() + b" ",
    b"\xff" + raw_of(),
    raw_of(learner_id="a\udc00b".encode("utf-8", "surrogatepass").decode("utf-8", "replace")),
    raw_of().replace(b'"acme"', b'"ac\\ud800me"'),  # a lone surrogate escape
    raw_of().replace(b'"acme"', b'"ac\\u0000me"'),
    raw_of().replace(b'"acme"', b'"ac\\/me"'),
    raw_of().replace(b"}", b',"big":123456789012345678901234567890}'),
    raw_of().replace(b"}", b',"inf":1e400}'),
    raw_of().replace(b"}", b',"n":' + b"1" * 4301 + b"}"),  # found by an attack: jiter refuses
    raw_of().replace(b"}", b',"n":-' + b"9" * 4301 + b"e-10}"),
    raw_of().replace(b"}", b',"n":' + b"1" * 4300 + b"}"),  # both accept
    raw_of().replace(b"}", b',"n":0.' + b"1" * 5000 + b"}"),
    raw_of().replace(b"}", b',"nan":NaN}'),
    raw_of().replace(b"}", b',"deep":' + b"[" * 300 + b"]" * 300 + b"}"),
    raw_of().replace(b"}", b',"deep":' + b'{"a":' * 300 + b"1" + b"}" * 300 + b"}"),
    raw_of().replace(b"}", b',"learner_id":"other"}'),  # a duplicate key
    raw_of().replace(b"}", b',"launched_by":"admin","launched_by":"learner"}'),
    raw_of(note="x").replace(b'"x"', b'"\xff"'),  # not UTF-8 inside a string
    raw_of(learner_id="x").replace(b'"x"', b'"\xc3"'),
    raw_of().replace(b'"acme"', b'"\xed\xa0\x80"'),  # an encoded surrogate
    raw_of().replace(b'"tenant_id"', b'"Tenant_id"'),
    raw_of().replace(b"}", b',"tenant_id":null}'),
    raw_of().replace(b'"acme"', b'"acme\\u002f"'),
    raw_of().replace(b'"acme"', b'"ac\\u002fme"'),
    raw_of(learner_id="x" * 257),
    raw_of(learner_id=""),
    raw_of(tenant_id="a/b"),
    raw_of(element_id="a\x7fb"),
    raw_of(attempt_id="a\nb"),
    raw_of(attempt_id=7),
    raw_of(event_id=""),
    raw_of(event_id="e" * 257),
    raw_of(event_id=12),
    raw_of(event_id=None),
    raw_of(tenant_id=DROP),
    raw_of(launched_at=DROP),
    raw_of(launched_at=1772359200),
    raw_of(launched_at="1772359200"),
    raw_of(launched_at="2026-03-01T10:00:00"),
    raw_of(launched_at="2026-03-01 10:00:00Z"),
    raw_of(launched_at="2026-03-01t10:00:00z"),
    raw_of(launched_at="2026-03-01T10:00Z"),
    raw_of(launched_at="2026-03-01T10:00:00.1234567Z"),
    raw_of(launched_at="2026-03-01T10:00:00+0530"),
    raw_of(launched_at="2026-03-01T10:00:00+24:00"),
    raw_of(launched_at="2026-03-01T10:00:00.5+05:95"),  # found by the mutations below
    raw_of(launched_at="2026-03-01T10:00:00+05:60"),
    raw_of(launched_at="2026-03-01T10:00:00+23:59"),
    raw_of(launched_at="2026-03-01T10:00:60Z"),
    raw_of(launched_at="2016-12-31T23:59:60Z"),  # a leap second: valid, the model's call
    raw_of(launched_at="2016-12-31T15:59:60.5-08:00"),
    raw_of(launched_at="2026-02-30T10:00:00Z"),
    raw_of(launched_at="2026-03-01T24:00:00Z"),
    raw_of(launched_at="0001-01-01T00:00:00+14:00"),
    raw_of(launched_at="1899-12-31T23:59:59Z"),
    raw_of(launched_at="1900-01-01T00:30:00+01:00"),
    raw_of(launched_at="9000-01-01T00:00:00Z"),
    raw_of(launched_at="2500-01-01T00:00:00Z"),
    raw_of(launched_at="2499-12-31T23:59:59Z"),
    raw_of(launched_at="2500-01-01T00:30:00+01:00"),
    raw_of(launched_at="\uff18\uff10\uff12\uff16-03-01T10:00:00Z"),  # full-width digits
    raw_of(launched_at=" 2026-03-01T10:00:00Z"),
    raw_of(content_type=5),
    raw_of(content_type="x" * 65),  # valid (no bound), but a case the two must agree on
    raw_of(content_type=" " + "x" * 64 + " "),
    raw_of(tracking=None),
    raw_of(tracking="off"),
    raw_of(launched_by="Admin"),
    raw_of(launched_by=" admin"),
    raw_of(launched_by=None),
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_input_is_read_as_the_model_reads_it(raw: bytes) -> None:
    agrees_with_model(raw)
    # and whatever path it takes, decode() answers as the model does
    assert isinstance(decode(Launch, raw), Launch) == (_model(raw) is not None)


def test_what_the_model_refuses_never_takes_the_fast_path() -> None:
    refused = [raw for raw in HOSTILE if _model(raw) is None]
    assert len(refused) > 40  # the list above is mostly invalid launches
    assert all(fast_launch(raw) is None for raw in refused)


ALPHABET = '{}[]":,\\/ .-+0123456789TZtzeE\x00\x1f\x7fa\u00e9\u2028\U0001f600'


def _mutations(rng: random.Random, raw: bytes) -> bytes:
    text = raw.decode()
    for _ in range(rng.randint(1, 3)):
        place = rng.randrange(len(text) + 1)
        action = rng.random()
        if action < 0.4:
            text = text[:place] + rng.choice(ALPHABET) + text[place:]
        elif action < 0.8:
            text = text[:place] + text[place + 1 :]
        else:
            text = text[:place] + rng.choice(ALPHABET) + text[place + 1 :]
    return text.encode("utf-8", "surrogatepass")


def test_random_mutations_of_launches_agree_with_the_model() -> None:
    rng = random.Random(20261130)
    fast_answers = 0
    for index in range(50_000):
        raw = _mutations(rng, COMMON[index % len(COMMON)])
        if agrees_with_model(raw) is not None:
            fast_answers += 1
    assert fast_answers > 1_000  # many mutations keep a valid launch, and take the fast path
