"""Every codec a Kafka producer may compress with can be read by the worker and the CLI.

The broker keeps batches as producers sent them; one batch the clients cannot decompress
stalls its partition for good (tests/integration/test_compressed_input.py has the story). The
codecs come from the extras of aiokafka and kafka-python in pyproject.toml.
"""

from __future__ import annotations

import pytest
from aiokafka import codec as aiokafka_codec
from kafka import codec as kafka_python_codec

CODECS = ("gzip", "snappy", "lz4", "zstd")
PAYLOAD = b'{"tenant_id": "acme", "learner_id": "l1"}' * 50


@pytest.mark.parametrize("codec", CODECS)
def test_the_worker_s_client_reads_every_codec(codec: str) -> None:
    assert getattr(aiokafka_codec, f"has_{codec}")(), f"aiokafka cannot read {codec}"
    encode = getattr(aiokafka_codec, f"{codec}_encode")
    decode = getattr(aiokafka_codec, f"{codec}_decode")
    assert decode(encode(PAYLOAD)) == PAYLOAD


@pytest.mark.parametrize("codec", CODECS)
def test_the_cli_s_client_reads_every_codec(codec: str) -> None:
    assert getattr(kafka_python_codec, f"has_{codec}")(), f"kafka-python cannot read {codec}"
    encode = getattr(kafka_python_codec, f"{codec}_encode")
    decode = getattr(kafka_python_codec, f"{codec}_decode")
    assert decode(encode(PAYLOAD)) == PAYLOAD
