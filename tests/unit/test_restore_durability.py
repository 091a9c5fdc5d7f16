"""A bulk restore writes each fetch with one WriteBatch that holds its records, the offset they
reach and the fence. A process killed in the middle of a restore must leave a partition whose
stored changelog offset matches its data: every record up to the offset, none after it, so the
next start resumes exactly where the data ends.

Real RocksDB, a real process killed with os._exit (no close, no flush); the memtables are kept
small so that some of them reach disk before the kill and some do not.

(Writing restores without RocksDB's write-ahead log was tried: a quarter less write cost, but it
needs a flush of every restored partition before the stage's first logged write, and that flush
made a worker ready later, not sooner: docs/benchmarks.md.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import rocksdict

from streams.worker.state import OFFSET_KEY

BATCHES = 120
PER_BATCH = 400

CHILD = textwrap.dedent(
    """
    import os, sys
    from collections import namedtuple
    import rocksdict
    from faust.types import TP
    from streams.worker.recovery import BulkRecovery
    from streams.stages.store import epoch_header

    path, kill_after = sys.argv[1], int(sys.argv[2])
    batches, per = int(sys.argv[3]), int(sys.argv[4])
    options = rocksdict.Options(raw_mode=True)
    options.set_write_buffer_size(256 * 1024)
    db = rocksdict.Rdict(path, options=options)

    class Restore(BulkRecovery):
        def __init__(self):  # only the write path is exercised: no app, no consumer
            pass
        def _db(self, tp):
            return db

    Record = namedtuple("Record", "offset key value headers")
    header = epoch_header((1, 0))
    restore, tp, offsets = Restore(), TP("changelog", 0), {}
    for b in range(batches):
        records = [
            Record(b * per + i, b"k%06d" % (b * per + i), b"v" * 120, header)
            for i in range(per)
        ]
        restore._write(tp, records, 10**12, offsets)
        if b == kill_after:
            break
    os._exit(0)
    """
)


def run_child(path: Path, kill_after: int) -> None:
    args = [str(path), str(kill_after), str(BATCHES), str(PER_BATCH)]
    subprocess.run([sys.executable, "-c", CHILD, *args], check=True)


def stored(path: Path) -> tuple[int, set[int]]:
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    try:
        raw = db.get(OFFSET_KEY)
        offset = int(raw) if raw is not None else -1
        present = {int(key[1:]) for key, _ in db.items() if key.startswith(b"k")}
        return offset, present
    finally:
        db.close()


@pytest.mark.parametrize("kill_after", [0, 40, BATCHES - 1])
def test_a_restore_killed_midway_keeps_every_batch_with_its_offset(
    tmp_path: Path, kill_after: int
) -> None:
    run_child(tmp_path / "db", kill_after)
    offset, present = stored(tmp_path / "db")
    # every batch written before the kill is there (the write-ahead log), with its offset
    assert offset == (kill_after + 1) * PER_BATCH - 1
    assert present == set(range(offset + 1))


class _Table:
    """What RocksState reads of a faust table: its partition databases."""

    def __init__(self, db: rocksdict.Rdict) -> None:
        self.data = self
        self._dbs = {0: db}
        self._db = db

    def _db_for_partition(self, partition: int) -> rocksdict.Rdict:
        return self._db


def test_a_deposed_owners_record_is_skipped_and_marked_on_disk_for_repair(tmp_path: Path) -> None:
    """The restore skips a record of a lower epoch than one applied and marks its key in the same
    write, with the record's offset; the mark outlives a restart and is no tenant's key (a tenant
    may be named "#repair")."""
    from collections import namedtuple

    from faust.types import TP

    from streams.stages import keys
    from streams.stages.store import epoch_header
    from streams.worker.recovery import BulkRecovery
    from streams.worker.state import RocksState

    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))

    class Restore(BulkRecovery):
        def __init__(self) -> None:  # only the write path: no app, no consumer
            pass

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return db

    Record = namedtuple("Record", "offset key value headers")
    old, new = epoch_header((1, 5)), epoch_header((2, 6))
    records = [
        Record(0, b"t/l/a1", b'{"v": "old owner"}', old),
        Record(1, b"#repair/l/a1", b'{"v": "a tenant named #repair"}', new),
        Record(2, b"t/l/a1", b'{"v": "new owner"}', new),
        Record(3, b"t/l/a1", b'{"v": "deposed owner, late"}', old),
        Record(4, b"t/l/a2", None, old),
    ]
    written = Restore()._write(TP("attempts-changelog", 0), records, 10**12, {})
    assert written == 3
    # a later fetch skips another record of a marked key: the mark names both
    later = [Record(5, b"t/l/a1", b'{"v": "deposed owner, later"}', old)]
    assert Restore()._write(TP("attempts-changelog", 0), later, 10**12, {}) == 0
    db.put(keys.REPAIR + b"t/l/a3", b"")  # a mark of an older version: no offsets
    db.close()

    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    state = RocksState({keys.ATTEMPTS: _Table(db)})  # type: ignore[dict-item]
    try:
        assert db.get(b"t/l/a1") == b'{"v": "new owner"}'
        assert db.get(b"#repair/l/a1") == b'{"v": "a tenant named #repair"}'
        # each mark names the offsets of the skipped records, to be read back and answered
        assert state.repairs(keys.ATTEMPTS, 0) == {
            b"t/l/a1": [3, 5],
            b"t/l/a2": [4],
            b"t/l/a3": [],
        }
        state.forget_repairs(keys.ATTEMPTS, 0, [b"t/l/a1", b"t/l/a2", b"t/l/a3"])
        assert state.repairs(keys.ATTEMPTS, 0) == {}
        assert db.get(b"#repair/l/a1") == b'{"v": "a tenant named #repair"}'
    finally:
        db.close()


def test_a_local_write_never_takes_the_stored_offset_or_fence_back(tmp_path: Path) -> None:
    """The offset a restore reads on from and the highest epoch applied only grow: a write that
    names lower ones (the in-memory state keeps the maximum too) keeps the stored ones."""
    from streams.stages import keys
    from streams.stages.store import epoch_header
    from streams.worker.state import RocksState

    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    state = RocksState({keys.ATTEMPTS: _Table(db)})  # type: ignore[dict-item]
    try:
        state.apply(keys.ATTEMPTS, 0, {b"t/l/a1": b"{}"}, 10, (3, 4))
        state.apply(keys.ATTEMPTS, 0, {b"t/l/a2": b"{}"}, 7, (2, 9))
        assert state.restored_offset(keys.ATTEMPTS, 0) == 10
        assert db.get(keys.FENCE) == epoch_header((3, 4))[0][1]
        assert db.get(b"t/l/a2") == b"{}", "the rows are written all the same"
        state.apply(keys.ATTEMPTS, 0, {}, 12, (3, 5))
        assert state.restored_offset(keys.ATTEMPTS, 0) == 12
        assert db.get(keys.FENCE) == epoch_header((3, 5))[0][1]
    finally:
        db.close()


@pytest.mark.parametrize("moved_on", [False, True])
def test_a_folder_with_marks_restores_from_the_start_once_the_changelog_moved_on(
    tmp_path: Path, moved_on: bool
) -> None:
    """Seed 9513857: a folder whose marks name records every later owner took restores from
    the changelog's start (`stages.store.starts_afresh`); with nothing after its offset, it
    keeps its rows and marks, which the takeover answers."""
    from faust.types import TP

    from streams.stages import keys
    from streams.worker.recovery import BulkRecovery

    db = rocksdict.Rdict(str(tmp_path / "db"), options=rocksdict.Options(raw_mode=True))
    tp = TP("learner-state-changelog", 0)

    class Restore(BulkRecovery):
        def __init__(self) -> None:  # only the decision: no app, no consumer
            self.active_highwaters = {tp: 15 if moved_on else 9}

        def _db(self, tp: TP) -> rocksdict.Rdict:
            return db

    db.put(b"lic/a b", b"{}")
    db.put(keys.REPAIR + b"m/a b/m", b"7")
    db.put(OFFSET_KEY, b"9")
    offsets = {tp: 9}
    restore = Restore()
    if restore._marked_and_moved_on(tp, offsets[tp]):
        restore._forget(tp, offsets)

    kept = dict(db.items())
    db.close()
    if moved_on:
        assert offsets[tp] is None and kept == {}
    else:
        assert offsets[tp] == 9 and kept[keys.REPAIR + b"m/a b/m"] == b"7"
