"""scripts/stage_bench.py: the learner stage alone, timed, over memory or real RocksDB state. Its
figures are quoted in docs/benchmarks.md, so what it times must be the stage counting right."""

from __future__ import annotations

import asyncio
import importlib.util
import pathlib
from datetime import datetime

import pytest

from streams.domain.windows import DEFAULT_CUT, window_of

_path = pathlib.Path(__file__).parents[2] / "scripts" / "stage_bench.py"
_spec = importlib.util.spec_from_file_location("stage_bench", _path)
stage_bench = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(stage_bench)  # type: ignore[union-attr]


def test_the_recount_is_each_windows_learners_and_each_tenants() -> None:
    rows = stage_bench.bench_rows(3_000, seed=5)
    assert len({row[3] for row in rows}) == 3_000  # every launch a new attempt
    active: dict[tuple[str, str], set[str]] = {}
    learners: dict[str, set[str]] = {}
    for tenant, learner, _, _, launched_at, *_ in rows:
        window = window_of(DEFAULT_CUT, datetime.fromisoformat(launched_at)).start.isoformat()
        active.setdefault((tenant, window), set()).add(learner)
        learners.setdefault(tenant, set()).add(learner)
    expected = {key: (len(ids), len(learners[key[0]])) for key, ids in active.items()}
    assert stage_bench.recount(3_000, 5) == expected
    assert len({window for _, window in expected}) > 1  # more than one window to count


@pytest.mark.parametrize("rocksdb", [False, True], ids=["memory", "rocksdb"])
def test_the_stage_counts_every_window_right(
    rocksdb: bool, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small commands and groups: later groups read what earlier flushes stored
    monkeypatch.setattr(stage_bench, "COMMAND_LAUNCHES", 50)
    monkeypatch.setattr(stage_bench, "GROUP_COMMANDS", 2)
    cpu, counted = asyncio.run(stage_bench.run(3_000, 5, tmp_path if rocksdb else None))
    assert counted == stage_bench.recount(3_000, 5)
    assert cpu > 0
    if rocksdb:  # the state went to RocksDB, not to memory
        assert any(path.name.startswith("attempts-") for path in tmp_path.iterdir())


def test_wrong_counts_fail_the_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def one_learner_short(launches: int, seed: int, folder: object) -> tuple[float, dict]:
        counted = stage_bench.recount(launches, seed)
        key = min(key for key in counted if key[0] == "big")
        active, total = counted[key]
        counted[key] = (active - 1, total)
        return 1e-6, counted

    monkeypatch.setattr(stage_bench, "run", one_learner_short)
    # the worker's collector tuning (a freeze and thresholds) is for a process of its own
    monkeypatch.setattr(stage_bench, "tune_garbage_collector", lambda: None)
    assert stage_bench.main(["--launches", "500"]) == 1
    assert "counts wrong in 1 tenant windows, e.g. big" in capsys.readouterr().err


def test_no_launches_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        stage_bench.main(["--launches", "0"])
    assert exit_.value.code == 2
    assert "--launches must be at least 1" in capsys.readouterr().err
