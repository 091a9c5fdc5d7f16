"""The local broker's cluster id never reads as an option to the storage formatter.

A clean-clone CI run failed when the drawn id began with "-": `kafka-storage format -t -...`
answered "argument --cluster-id/-t: expected one argument" and no broker started.
"""

import base64
import importlib.util
import subprocess
import sys
import uuid
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "kafka" / "cluster_id.py"


def load_cluster_id_module():
    spec = importlib.util.spec_from_file_location("kafka_cluster_id", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_id_that_would_start_with_a_dash_is_drawn_again():
    draws = iter([bytes([0xF8]) + bytes(15), bytes([0x10]) + bytes(15)])
    cluster_id = load_cluster_id_module().new_cluster_id(lambda n: next(draws))
    assert base64.urlsafe_b64encode(bytes([0xF8]) + bytes(15)).decode().startswith("-")
    assert cluster_id == base64.urlsafe_b64encode(bytes([0x10]) + bytes(15)).decode().rstrip("=")


def test_the_script_prints_a_base64url_uuid_without_padding():
    printed = subprocess.run(
        [sys.executable, str(SCRIPT)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert len(printed) == 22 and not printed.startswith("-")
    assert uuid.UUID(bytes=base64.urlsafe_b64decode(printed + "=="))
