"""A late conflict receipt is matched to the receipt its successor kept by the fingerprint of
its request (`tenants._fingerprint_of`), recomputed from the receipt alone. It must be the
fingerprint ingest gave the request, or the repair sends nothing for it: checked here over
requests of every selector kind, mode and spelling, through ingest itself (helper-72's review:
a fingerprint that took every request for a preview passed the stage tests)."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import orjson

from schemas import topics
from streams.domain.deletions import reused_id_error
from streams.stages import commands
from streams.stages.ingest import IngestStage, error_receipt
from streams.stages.memory import MemoryStore
from streams.stages.store import Record
from streams.stages.tenants import _fingerprint_of

IDS = ["a", "Z", "0", "é", "e\u0301", "ß", "😀", "\u2028", " ", "-", ".", "中", "%", "\\", '"']
OFFSETS = ["Z", "z", "+00:00", "-00:00", "+05:30", "+0530", "-08:00", "+14:00", "-0945"]


def an_id(draw: random.Random) -> str:
    return "".join(draw.choice(IDS) for _ in range(draw.randint(1, 5)))


def an_instant(draw: random.Random) -> str:
    year = draw.choice((1970, 2000, 2024, 2026))
    day = f"{year}-{draw.randint(1, 12):02d}-{draw.randint(1, 28):02d}"
    text = f"{day}{draw.choice('Tt ')}{draw.randint(0, 23):02d}:{draw.randint(0, 59):02d}"
    if draw.random() < 0.8:
        text += f":{draw.randint(0, 59):02d}"
        if draw.random() < 0.5:
            text += "." + "".join(draw.choice("0123456789") for _ in range(draw.randint(1, 9)))
    return text + draw.choice(OFFSETS)


def a_request(draw: random.Random) -> dict[str, object]:
    kind = draw.choice(("attempts", "learner_ids", "older_than", "teams", "roles"))
    request: dict[str, object] = {
        "request_id": "r1",
        "tenant_id": "acme",
        "mode": draw.choice(("physical", "logical", "preview")),
        "requested_at": an_instant(draw),
    }
    if kind == "attempts":
        pool = [{"learner_id": an_id(draw), "attempt_id": an_id(draw)} for _ in range(3)]
        request[kind] = [draw.choice(pool) for _ in range(draw.randint(1, 6))]
    elif kind == "older_than":
        request[kind] = an_instant(draw)
    else:
        pool = [an_id(draw) for _ in range(3)]
        request[kind] = [draw.choice(pool) for _ in range(draw.randint(1, 6))]
    return request


def test_a_conflict_receipt_gives_back_the_fingerprint_ingest_gave_its_request() -> None:
    draw = random.Random(72)
    store = MemoryStore(partitions=1)
    ingest = IngestStage(1)
    checked = 0
    for offset in range(600):
        request = a_request(draw)
        raw = json.dumps(request).encode() if draw.random() < 0.5 else orjson.dumps(request)
        batch = store.batch()
        # far in the future: no request is refused for its time
        ingest.on_deletion(batch, Record(b"acme", raw, topics.ATTEMPT_DELETIONS, 0, offset, 2**42))
        sent = [commands.decode(value) for _, value in batch._outputs[(topics.TENANT_COMMANDS, 0)]]
        assert len(sent) == 1 and isinstance(sent[0], commands.DeletionRequest), raw
        body = dict(sent[0].request)
        fingerprint = body.pop("fingerprint")
        # the error receipt the tenant stage makes of it, as it travels
        receipt = error_receipt(body, reused_id_error("r1"), datetime(2026, 12, 4, tzinfo=UTC))
        assert _fingerprint_of(orjson.loads(orjson.dumps(receipt))) == fingerprint, raw
        checked += 1
    assert checked == 600
