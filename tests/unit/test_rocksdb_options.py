"""The tables' RocksDB options: the tuned index keeps table readers small (real RocksDB)."""

from __future__ import annotations

from pathlib import Path

import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.worker.tables import TunedRocksDBOptions, rocksdb_options


def readers_memory(options: RocksDBOptions, path: Path, keys: int) -> tuple[int, list[bytes]]:
    """Table-reader bytes of a DB holding `keys` attempt-like rows, and some keys read back."""
    db = options.open(path)
    try:
        for n in range(keys):
            key = f"tenant-{n % 40:03d}/learner-{n // 7:07d}/attempt-{n:08d}".encode()
            db[key] = b'{"launched_at":"2026-05-05T10:00:00+00:00","logically_deleted":false}'
        db.flush()
        memory = db.property_int_value("rocksdb.estimate-table-readers-mem") or 0
        sample = [
            f"tenant-{n % 40:03d}/learner-{n // 7:07d}/attempt-{n:08d}".encode()
            for n in range(0, keys, 997)
        ]
        found = [value for value in db.get(sample) if value is not None]
        assert len(found) == len(sample), "every key written is read back"
        return memory, sample
    finally:
        db.close()


def test_the_tuned_index_halves_the_table_readers_and_reads_the_same(tmp_path: Path) -> None:
    faust_default = RocksDBOptions(**rocksdb_options(), use_rocksdict=True)
    tuned = TunedRocksDBOptions.of(RocksDBOptions(**rocksdb_options(), use_rocksdict=True))
    plain, _ = readers_memory(faust_default, tmp_path / "faust", 150_000)
    smaller, _ = readers_memory(tuned, tmp_path / "tuned", 150_000)
    assert plain > 0
    assert smaller < plain * 0.75, (smaller, plain)


def test_the_tuned_options_keep_faust_s_settings() -> None:
    base = RocksDBOptions(**rocksdb_options(), use_rocksdict=True)
    tuned = TunedRocksDBOptions.of(base)
    assert vars(tuned) == vars(base)
    assert isinstance(tuned.as_options(), rocksdict.Options)
