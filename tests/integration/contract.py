"""Every record the service wrote to an output topic, held against the topic's published JSON
Schema (schemas/json/, generated from the pydantic models): the records cannot drift from the
contract without a test failing."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
from kafka import KafkaConsumer, TopicPartition

from schemas.registry import JSON_DIR, TOPIC_MODELS
from streams.config.settings import Settings

OUTPUT_TOPICS = tuple(topic for topic, (_, is_input) in TOPIC_MODELS.items() if not is_input)
_VALIDATORS: dict[str, Any] = {}


def validator(topic: str) -> Any:
    if topic not in _VALIDATORS:
        schema = json.loads((JSON_DIR / f"{topic}.json").read_text(encoding="utf-8"))
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
        _VALIDATORS[topic] = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return _VALIDATORS[topic]


def contract_violations(settings: Settings, timeout_s: float = 60.0) -> tuple[int, list[str]]:
    """(records checked, one line per record that breaks its topic's schema)."""
    consumer = KafkaConsumer(**settings.kafka_python(), enable_auto_commit=False)
    checked, problems = 0, []
    try:
        by_name = {settings.topic(topic): topic for topic in OUTPUT_TOPICS}
        tps = [
            TopicPartition(name, partition)
            for name in by_name
            for partition in sorted(consumer.partitions_for_topic(name) or ())
        ]
        if not tps:
            return 0, []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                problems.append(f"reading the output topics took more than {timeout_s:g}s")
                break
            for tp, records in consumer.poll(timeout_ms=500).items():
                topic = by_name[tp.topic]
                for record in records:
                    if record.value is None:
                        continue  # a tombstone of a compacted topic
                    checked += 1
                    try:
                        validator(topic).validate(json.loads(record.value))
                    except (ValueError, jsonschema.ValidationError) as exc:
                        reason = getattr(exc, "message", str(exc))
                        problems.append(f"{topic}[{tp.partition}]@{record.offset}: {reason}")
        return checked, problems
    finally:
        consumer.close()
