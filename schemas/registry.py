"""Which model describes which topic, and the JSON Schema files generated from them."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.attempts import AttemptRecord
from schemas.counts import CountRecord
from schemas.dead_letters import DeadLetter
from schemas.deletions import DeletionReceipt, DeletionRequest
from schemas.groups import LearnerGroups
from schemas.launches import Launch
from schemas.licenses import License
from schemas.thresholds import ThresholdEvent

JSON_DIR = Path(__file__).parent / "json"

# topic name (without TOPIC_PREFIX) -> (model, whether the service reads it)
TOPIC_MODELS: dict[str, tuple[type[BaseModel], bool]] = {
    "launches": (Launch, True),
    "licenses": (License, True),
    "attempt-deletions": (DeletionRequest, True),
    "learner-groups": (LearnerGroups, True),
    "active-learner-counts": (CountRecord, False),
    "threshold-events": (ThresholdEvent, False),
    "attempts": (AttemptRecord, False),
    "deletion-receipts": (DeletionReceipt, False),
    "dead-letters": (DeadLetter, False),
}


def json_schema_text(topic: str) -> str:
    """The JSON Schema of a topic's values, as written to schemas/json/<topic>.json."""
    model, is_input = TOPIC_MODELS[topic]
    schema = model.model_json_schema(mode="validation" if is_input else "serialization")
    schema["title"] = f"{topic}: {schema.get('title', model.__name__)}"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_json_schemas(directory: Path = JSON_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for topic in TOPIC_MODELS:
        path = directory / f"{topic}.json"
        path.write_text(json_schema_text(topic), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_json_schemas():
        print(f"wrote {path}")
