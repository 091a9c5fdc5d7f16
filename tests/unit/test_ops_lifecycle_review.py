"""The state folder across the operators' life cycle (helper-91's review).

faust keeps every table partition in `STATE_DIR/v1/tables/<table>-<partition>.db`, whatever
the TOPIC_PREFIX: the folder does not say which deployment's changelogs its rows and stored
offsets belong to. A folder whose stored offset lies past the end of the changelog it is
restored from (topics deleted and made again, a fresh TOPIC_PREFIX on the same STATE_DIR, a
changelog partition Kafka truncated) holds rows no record of that changelog wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
from pathlib import Path

import pytest
import rocksdict
from faust.types import TP

import streams.cli.ops as ops
from streams.config.settings import ConfigError, Settings
from streams.stages import keys
from streams.stages.store import epoch_header
from streams.tools.worker_process import free_port
from streams.worker.recovery import BulkRecovery
from streams.worker.state import OFFSET_KEY


def _restore(db: rocksdict.Rdict, highwaters: dict[TP, int]) -> BulkRecovery:
    class Restore(BulkRecovery):
        def __init__(self) -> None:  # the decision and the write path: no app, no consumer
            self.active_highwaters = highwaters

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return db

        async def _restore(self, todo: dict[TP, int], offsets: dict[TP, int | None]) -> None:
            self.todo = dict(todo)
            self.read_from = {tp: offsets[tp] for tp in todo}

    return Restore()


@pytest.mark.parametrize("highwater", [-1, 0, 4])
def test_a_stored_offset_past_the_changelogs_end_restores_from_the_start(
    tmp_path: Path, highwater: int
) -> None:
    """A folder that stored offset 9 of a changelog that now ends at `highwater` (-1: empty)
    holds another changelog's rows, with its fence: kept, its attempts were counted on top of
    the deployment's (and its fence turned the deployment's own records into a deposed owner's),
    or faust's consistency check stopped the worker at every start (an offset of 0 passed even
    that check). It is restored from the changelog's start, as a wiped folder is."""
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    tp = TP("attempts", 0)
    db.put(b"old/learner/attempt", b"{}")
    db.put(keys.FENCE, epoch_header((40, 90))[0][1])
    db.put(OFFSET_KEY, b"9")
    offsets: dict[TP, int | None] = {tp: 9}
    restore = _restore(db, {tp: highwater})
    asyncio.run(restore.bulk_restore({tp}, offsets))
    kept = dict(db.items())
    db.close()
    assert kept == {}
    if highwater >= 0:
        assert restore.todo == {tp: highwater} and restore.read_from == {tp: -1}
    # faust's own check and seek take -1 for "nothing read" (None is no offset to seek to)
    assert offsets[tp] == -1


def test_a_stored_offset_within_the_changelog_reads_on_from_it(tmp_path: Path) -> None:
    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    tp = TP("attempts", 0)
    db.put(b"t/learner/attempt", b"{}")
    db.put(OFFSET_KEY, b"9")
    offsets: dict[TP, int | None] = {tp: 9}
    restore = _restore(db, {tp: 12})
    asyncio.run(restore.bulk_restore({tp}, offsets))
    kept = dict(db.items())
    db.close()
    assert kept[b"t/learner/attempt"] == b"{}"
    assert restore.todo == {tp: 12} and restore.read_from == {tp: 9}


# -- a STATE_DIR of another TOPIC_PREFIX ------------------------------------------------------


def _free_port() -> int:
    # below the ephemeral range, with the ports after it free too (`worker --processes N`
    # checks WEB_PORT .. WEB_PORT + N - 1): a port bind(0) handed back was an ephemeral one,
    # and the next one was taken by another process's connection now and then
    return free_port()


@pytest.fixture
def state_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WEB_PORT", str(_free_port()))
    monkeypatch.setenv("NOTIFIER_PORT", "0")
    for name in ("API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS", "SMTP_HOST"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "state"


def _worker(monkeypatch: pytest.MonkeyPatch, prefix: str) -> None:
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    ops.check_worker_settings(argparse.Namespace(processes=1), Settings.from_env())


def test_a_worker_refuses_the_tables_of_another_topic_prefix(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """faust's table folders do not name the TOPIC_PREFIX: a worker of a fresh prefix read on
    from the stored offsets of the earlier prefix's changelogs, and once its own changelogs
    passed them, counted the earlier deployment's attempts with its own."""
    _worker(monkeypatch, "old-")
    _write_tables(state_env, "attempts-0.db")
    _worker(monkeypatch, "old-")  # a restart of the same deployment
    with pytest.raises(ConfigError, match="holds the worker state of 'old-active-learners'"):
        _worker(monkeypatch, "new-")
    shutil.rmtree(state_env / "v1")  # what the error says to do
    (state_env / "v1" / "tables").mkdir(parents=True)  # (faust's empty folders hold nothing)
    _worker(monkeypatch, "new-")
    _write_tables(state_env, "attempts-0.db")
    with pytest.raises(ConfigError, match="holds the worker state of 'new-active-learners'"):
        _worker(monkeypatch, "old-")


def test_a_folder_of_an_earlier_version_is_taken_for_this_deployments(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_tables(state_env, "attempts-0.db")
    _worker(monkeypatch, "p-")
    assert (state_env / "worker.deployment").read_text() == "p-active-learners\n"
    with pytest.raises(ConfigError, match="another TOPIC_PREFIX"):
        _worker(monkeypatch, "q-")


class _Reached(Exception):
    pass


def test_a_notifier_refuses_the_events_mailed_for_another_topic_prefix(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notifier's store of handled events is `STATE_DIR/notifier`, whatever the prefix, and
    event ids are the same for the same tenant, window, threshold and crossing: a notifier of a
    fresh prefix skipped every such event as a redelivery, and mailed nothing."""

    def reached(*args: object, **kwargs: object) -> None:
        raise _Reached

    monkeypatch.setattr(ops, "ensure_topics", reached)
    args = argparse.Namespace(timeout=1.0)
    monkeypatch.setenv("TOPIC_PREFIX", "old-")
    with pytest.raises(_Reached):
        ops.cmd_notifier(args, Settings.from_env())
    (state_env / "notifier" / "sent.db").mkdir(parents=True)
    (state_env / "notifier" / "sent.db" / "CURRENT").write_text("MANIFEST-000001\n")
    monkeypatch.setenv("TOPIC_PREFIX", "new-")
    with pytest.raises(ConfigError, match="holds the notifier state of 'old-active-learners'"):
        ops.cmd_notifier(args, Settings.from_env())
    # the worker's claim is its own: a worker of the new prefix may share the folder
    _worker(monkeypatch, "new-")


# -- changelogs deleted and made again under their names ---------------------------------------

IDS = {
    "attempts": "0b7e-attempts",
    "learner-state-changelog": "0b7e-learner-state",
    "learner-groups-changelog": "0b7e-learner-groups",
    "erasures-changelog": "0b7e-erasures",
    "tenant-state-changelog": "0b7e-tenant-state",
}


def _start_worker(monkeypatch: pytest.MonkeyPatch, ids: dict[str, str]) -> None:
    """`active-learners worker` up to the point where faust would start (no broker: the
    topics exist with 12 partitions and the `ids`)."""

    def reached(*args: object, **kwargs: object) -> None:
        raise _Reached

    monkeypatch.setattr(ops, "ensure_topics", lambda *args, **kwargs: None)
    monkeypatch.setattr(ops, "copartitioned_count", lambda *args, **kwargs: 12)
    monkeypatch.setattr(
        ops, "topic_ids", lambda settings, names, timeout_s: dict(ids), raising=False
    )
    monkeypatch.setattr(ops, "tune_malloc", reached)
    monkeypatch.setenv("TOPIC_PREFIX", "p-")
    monkeypatch.setenv("PARTITIONS", "12")
    with pytest.raises(_Reached):
        ops.cmd_worker(argparse.Namespace(processes=1, timeout=1.0), Settings.from_env())


def _tables(state: Path) -> list[str]:
    folder = state / "v1" / "tables"
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def _write_tables(state: Path, *names: str) -> None:
    for name in names:
        (state / "v1" / "tables" / name).mkdir(parents=True)
        (state / "v1" / "tables" / name / "CURRENT").write_text("MANIFEST-000001\n")


def test_the_tables_of_a_changelog_made_again_restore_from_it(
    state_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A changelog deleted and made again under its name (another cluster's broker under the
    same TOPIC_PREFIX, a test broker reset) starts again at offset 0: a partition whose folder
    stored an offset within the new changelog read on from it and kept the rows of records the
    new topic never had. Its table's folders go (the other tables' stay), as a wiped
    folder's would."""
    _start_worker(monkeypatch, IDS)
    _write_tables(state_env, "attempts-0.db", "attempts-11.db", "learner-state-0.db")
    _start_worker(monkeypatch, IDS)  # a restart: the same topics
    assert _tables(state_env) == ["attempts-0.db", "attempts-11.db", "learner-state-0.db"]
    capsys.readouterr()
    _start_worker(monkeypatch, {**IDS, "attempts": "5c1d-attempts"})
    assert _tables(state_env) == ["learner-state-0.db"]
    assert "p-attempts was made again" in capsys.readouterr().err
    _write_tables(state_env, "attempts-0.db")
    _start_worker(monkeypatch, {**IDS, "attempts": "5c1d-attempts"})
    assert _tables(state_env) == ["attempts-0.db", "learner-state-0.db"]


def test_a_folder_that_never_recorded_its_topics_keeps_its_tables(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of an earlier version (or a broker that gives no topic ids) cannot tell."""
    _write_tables(state_env, "attempts-0.db", "tenant-state-3.db")
    _start_worker(monkeypatch, IDS)
    _start_worker(monkeypatch, {})
    assert _tables(state_env) == ["attempts-0.db", "tenant-state-3.db"]
