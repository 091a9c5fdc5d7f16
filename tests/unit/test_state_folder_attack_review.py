"""The state folder's claim and its record of topic ids, attacked (helper-94's review of
helper-91's `claim_state_dir` and `forget_recreated_tables`).

Both files are written by the worker itself at every start, before faust opens a table; a file
the worker cannot take (a crash that left it empty) or a folder layout it cannot see through (a
tables folder on another disk, linked) must neither stop every later start nor let another
deployment's tables through.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from collections import Counter
from pathlib import Path

import pytest
import rocksdict
from faust.tables.recovery import Recovery
from faust.types import TP

import streams.cli.ops as ops
from streams.config.settings import ConfigError, Settings
from streams.worker.recovery import BulkRecovery
from streams.worker.state import OFFSET_KEY
from tests.unit import test_ops_lifecycle_review

_RAW = rocksdict.Options(raw_mode=True)


state_env = test_ops_lifecycle_review.state_env  # a worker's settings on a tmp STATE_DIR


class _Reached(Exception):
    pass


IDS = {
    "attempts": "0b7e-attempts",
    "learner-state-changelog": "0b7e-learner-state",
    "learner-groups-changelog": "0b7e-learner-groups",
    "erasures-changelog": "0b7e-erasures",
    "tenant-state-changelog": "0b7e-tenant-state",
}


def _start_worker(monkeypatch: pytest.MonkeyPatch, prefix: str, ids: dict[str, str]) -> None:
    """`active-learners worker` up to the point where faust would start (no broker: the
    topics exist with 12 partitions and the `ids`)."""

    def reached(*args: object, **kwargs: object) -> None:
        raise _Reached

    monkeypatch.setattr(ops, "ensure_topics", lambda *args, **kwargs: None)
    monkeypatch.setattr(ops, "copartitioned_count", lambda *args, **kwargs: 12)
    monkeypatch.setattr(ops, "topic_ids", lambda settings, names, timeout_s: dict(ids))
    monkeypatch.setattr(ops, "tune_malloc", reached)
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    monkeypatch.setenv("PARTITIONS", "12")
    with pytest.raises(_Reached):
        ops.cmd_worker(argparse.Namespace(processes=1, timeout=1.0), Settings.from_env())


def _write_table(tables: Path, name: str) -> None:
    (tables / name).mkdir(parents=True)
    (tables / name / "CURRENT").write_text("MANIFEST-000001\n")


def _tables(state: Path) -> list[str]:
    return sorted(path.name for path in (state / "v1" / "tables").iterdir())


# -- a marker or a record the worker cannot take ----------------------------------------------


@pytest.mark.parametrize("text", ["", "\n", "  "])
def test_an_empty_deployment_marker_does_not_stop_every_start(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """The marker is written (without an fsync) at the first start, when the folder has no
    tables yet: a power loss in the seconds after it can leave it empty beside tables RocksDB
    did sync. The worker then stopped at every start with "holds the worker state of '', not
    of 'p-active-learners'", and what the error asked (remove STATE_DIR/v1) cost a full
    restore. An empty marker names nobody: the folder is taken as one that has none."""
    state_env.mkdir(parents=True)
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    (state_env / "worker.deployment").write_text(text)
    _start_worker(monkeypatch, "p-", IDS)
    assert (state_env / "worker.deployment").read_text() == "p-active-learners\n"
    assert _tables(state_env) == ["attempts-0.db"]


@pytest.mark.parametrize("text", ["", '{"attempts": "0b7e-att'])
def test_a_topics_record_cut_short_does_not_stop_every_start(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """`worker.topics` is rewritten at every start (no fsync): a crash can leave it empty or
    cut short. The worker then stopped at every start with "cannot read worker.topics" until
    an operator removed it. A record that cannot be read says nothing about the topics: the
    tables are kept, as for a folder without one, and the record written again."""
    _start_worker(monkeypatch, "p-", IDS)
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    (state_env / "worker.topics").write_text(text)
    _start_worker(monkeypatch, "p-", IDS)
    assert _tables(state_env) == ["attempts-0.db"]
    # written again: a changelog made again since is found at the next start
    _start_worker(monkeypatch, "p-", {**IDS, "attempts": "5c1d-attempts"})
    assert _tables(state_env) == []


# -- a tables folder linked to another disk -----------------------------------------------------


def test_the_claim_sees_tables_in_a_linked_folder(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """faust opens `STATE_DIR/v1/tables` through a symlink (the tables on a disk of their own)
    as any folder; the claim's look for files did not follow it (`Path.rglob` does not follow
    links to folders), found none, and wrote the new deployment's name over the earlier one:
    the new TOPIC_PREFIX read on from the earlier changelogs' stored offsets, which the claim
    is there to prevent (helper-91)."""
    disk = tmp_path / "disk" / "tables"
    disk.mkdir(parents=True)
    (state_env / "v1").mkdir(parents=True)
    (state_env / "v1" / "tables").symlink_to(disk)
    _start_worker(monkeypatch, "old-", IDS)
    _write_table(disk, "attempts-0.db")
    with pytest.raises(ConfigError, match="holds the worker state of 'old-active-learners'"):
        _start_worker(monkeypatch, "new-", IDS)
    assert (state_env / "worker.deployment").read_text() == "old-active-learners\n"


def test_a_table_folder_that_cannot_be_removed_is_a_one_line_error(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A changelog made again: its table's folders go. One that is a symlink (a partition on
    another disk) cannot go with `shutil.rmtree`: the start stopped with a traceback
    ("OSError: [Errno None] None: ...") instead of a one-line error naming the folder."""
    _start_worker(monkeypatch, "p-", IDS)
    _write_table(tmp_path / "disk", "attempts-0.db")
    (state_env / "v1" / "tables").mkdir(parents=True)
    (state_env / "v1" / "tables" / "attempts-0.db").symlink_to(tmp_path / "disk" / "attempts-0.db")
    with pytest.raises(ConfigError, match=r"cannot remove attempts-0\.db"):
        _start_worker(monkeypatch, "p-", {**IDS, "attempts": "5c1d-attempts"})
    # nothing recorded: once the folder is dealt with, the next start removes the table again
    assert "0b7e-attempts" in (state_env / "worker.topics").read_text()


# -- a partition whose highwater the recovery never read ---------------------------------------


def test_a_partition_assigned_while_the_offsets_are_read_keeps_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust's recovery reads the highwaters of the assigned changelog partitions, then their
    start offsets, each step awaiting the broker, over one set (`Recovery.active_tps`), which
    a rebalance changes in place (`on_rebalance`: cleared, then the new assignment added, with
    each one's stored offset) before it signals the recovery to start again. A step that
    resumes before it sees the signal goes on with partitions whose highwater was never read:
    `_past_the_end` took the missing highwater for -1, so any stored offset for one lying past
    the changelog's end, and deleted every row of a partition nothing was wrong with; the next
    recovery restored it from the changelog's start (minutes at scale). Without a highwater
    there is nothing to decide: the recovery that the rebalance starts reads it."""
    dbs = {
        tp: rocksdict.Rdict(str(tmp_path / str(tp.partition)), options=_RAW)
        for tp in (TP("attempts", 0), TP("attempts", 1))
    }
    held, assigned = TP("attempts", 0), TP("attempts", 1)
    dbs[assigned].put(b"t/learner/attempt", b"{}")
    dbs[assigned].put(OFFSET_KEY, b"41")

    async def build_offsets(
        self: Recovery, consumer: object, tps: set[TP], destination: dict[TP, int], title: str
    ) -> None:
        await asyncio.sleep(0)  # faust: the earliest offsets, from the broker
        tps.add(assigned)  # a rebalance meanwhile (faust's `_add`: the stored offset)
        destination[assigned] = 41

    monkeypatch.setattr(Recovery, "_build_offsets", build_offsets)

    class Restore(BulkRecovery):
        def __init__(self) -> None:  # the decision and the write path: no app, no consumer
            self.active_highwaters = Counter({held: 9})  # read before the rebalance

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return dbs[tp]

        async def _restore(self, todo: dict[TP, int], offsets: dict[TP, int | None]) -> None:
            self.todo = dict(todo)

    restore = Restore()
    offsets = {held: 9}
    asyncio.run(restore._build_offsets(None, {held}, offsets, "active"))
    kept = dict(dbs[assigned].items())
    for db in dbs.values():
        db.close()
    assert kept[b"t/learner/attempt"] == b"{}"
    assert offsets[assigned] == 41


def test_a_folder_taken_over_by_another_prefix_does_not_report_its_topics_made_again(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the claim's error asks (remove STATE_DIR/v1, start the new TOPIC_PREFIX) kept the
    earlier deployment's `worker.topics`: the next start compared the new prefix's topic ids
    with the earlier prefix's and said of every changelog "was made again since this state
    folder last started", of topics nobody deleted. The record is the deployment's, as the
    tables are."""
    _start_worker(monkeypatch, "old-", IDS)
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    with pytest.raises(ConfigError, match="another TOPIC_PREFIX"):
        _start_worker(monkeypatch, "new-", IDS)
    shutil.rmtree(state_env / "v1")  # what the error says to do
    capsys.readouterr()
    _start_worker(monkeypatch, "new-", {topic: f"new-{id_}" for topic, id_ in IDS.items()})
    assert "made again" not in capsys.readouterr().err
    # and the new deployment's topics are recorded: one made again later is found
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    _start_worker(monkeypatch, "new-", {**IDS, "attempts": "5c1d-attempts"})
    assert "new-attempts was made again" in capsys.readouterr().err


# -- what held --------------------------------------------------------------------------------


@pytest.mark.parametrize("stored", [0, 7, 12])
def test_an_up_to_date_partition_is_kept_and_nothing_read(tmp_path: Path, stored: int) -> None:
    """faust's highwater is the changelog's end offset - 1, the offset of its last record: the
    offset a partition stores once it applied that record. Equal to it, the partition is up to
    date (not past the end): kept, and nothing read."""
    db = rocksdict.Rdict(str(tmp_path / "db"), options=_RAW)
    tp = TP("tenant-state-changelog", 3)
    db.put(b"t/state", b"{}")
    db.put(OFFSET_KEY, str(stored).encode())

    class Restore(BulkRecovery):
        def __init__(self) -> None:
            self.active_highwaters = Counter({tp: stored})
            self.todo: dict[TP, int] = {}

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return db

        async def _restore(self, todo: dict[TP, int], offsets: dict[TP, int | None]) -> None:
            self.todo = dict(todo)

    restore, offsets = Restore(), {tp: stored}
    asyncio.run(restore.bulk_restore({tp}, offsets))
    kept = dict(db.items())
    db.close()
    assert kept[b"t/state"] == b"{}" and offsets[tp] == stored and restore.todo == {}


def test_a_broker_too_slow_to_describe_the_changelogs_is_a_one_line_error(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The topic ids are read after the topics were made sure of: a broker that answers those
    requests and then not this one stops the start with one line (the service manager starts it
    again), before a table folder is touched."""
    from kafka.errors import KafkaTimeoutError

    from streams.cli.main import run

    def slow(*args: object, **kwargs: object) -> dict[str, str]:
        raise KafkaTimeoutError("Timeout after 1000 ms")

    _start_worker(monkeypatch, "p-", IDS)
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    monkeypatch.setattr(ops, "topic_ids", slow)
    capsys.readouterr()
    assert run(["worker", "--timeout", "1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KafkaTimeoutError" in err
    assert _tables(state_env) == ["attempts-0.db"]


def test_only_the_folders_of_a_made_again_tables_partitions_go(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`<table>-*.db` also matches folders of names that start with the table's: only
    `<table>-<partition>.db` goes."""
    _start_worker(monkeypatch, "p-", IDS)
    for name in ("attempts-0.db", "attempts-11.db", "attempts-x-0.db", "attempts-backups"):
        _write_table(state_env / "v1" / "tables", name)
    _write_table(state_env / "v1" / "tables", "learner-state-3.db")
    _start_worker(monkeypatch, "p-", {**IDS, "attempts": "5c1d-attempts"})
    assert _tables(state_env) == ["attempts-backups", "attempts-x-0.db", "learner-state-3.db"]


def test_prefixes_that_differ_in_case_are_two_deployments(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kafka's topic names are case-sensitive: `Prod-` and `prod-` name other topics."""
    _start_worker(monkeypatch, "Prod-", IDS)
    _write_table(state_env / "v1" / "tables", "attempts-0.db")
    with pytest.raises(ConfigError, match="holds the worker state of 'Prod-active-learners'"):
        _start_worker(monkeypatch, "prod-", IDS)
