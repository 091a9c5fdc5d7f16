"""The stages and the simulator stand on their own: importing them loads no faust, no aiokafka,
no Kafka client and no RocksDB (checked in a fresh interpreter, so nothing else imported them)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import streams.stages
import streams.tools.simulate

FORBIDDEN = ("faust", "aiokafka", "mode", "kafka", "rocksdict")


def modules(package: object) -> list[str]:
    prefix = package.__name__ + "."  # type: ignore[attr-defined]
    return [m.name for m in pkgutil.iter_modules(package.__path__, prefix)]  # type: ignore[attr-defined]


def test_the_stages_and_the_simulator_import_no_faust_kafka_or_rocksdb() -> None:
    names = modules(streams.stages) + modules(streams.tools.simulate)
    assert len(names) >= 10
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
