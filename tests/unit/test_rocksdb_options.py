"""The tables' RocksDB options (real RocksDB): index and filter blocks live in the one block cache
of the process, so what RocksDB keeps in memory is bounded by that cache whatever the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.config.settings import ConfigError, Settings
from streams.worker.state import BLOCK_CACHE_USAGE
from streams.worker.tables import TunedRocksDBOptions, block_cache, rocksdb_options

TABLE_READERS = "rocksdb.estimate-table-readers-mem"


def key(n: int) -> bytes:
    return f"tenant-{n % 40:03d}/learner-{n // 7:07d}/attempt-{n:08d}".encode()


def filled(options: RocksDBOptions, path: Path, keys: int) -> rocksdict.Rdict:
    """A DB holding `keys` attempt-like rows, compacted into the files of its last level (whose
    index and filter blocks, unlike level 0's, the cache may evict)."""
    db = options.open(path)
    for n in range(keys):
        db[key(n)] = b'{"launched_at":"2026-05-05T10:00:00+00:00","logically_deleted":false}'
    db.flush()
    db.compact_range(None, None)
    return db


def read_back(db: rocksdict.Rdict, keys: int) -> None:
    """Every 97th key is found, and keys never written are not."""
    wanted = [key(n) for n in range(0, keys, 97)]
    assert all(value is not None for value in db.get(wanted)), "every key written is read back"
    missing = [key(n) for n in range(keys, keys + 5_000)]
    assert db.get(missing) == [None] * len(missing)


def tuned(cache: rocksdict.Cache) -> TunedRocksDBOptions:
    return TunedRocksDBOptions.of(RocksDBOptions(**rocksdb_options(), use_rocksdict=True), cache)


def test_index_and_filters_are_in_the_cache_not_beside_it(tmp_path: Path) -> None:
    """faust's own options keep each SST file's index and filter blocks in memory beside the
    cache, for as long as the file lives; the tuned ones put them in the shared cache."""
    faust_default = RocksDBOptions(**rocksdb_options(), use_rocksdict=True)
    plain = filled(faust_default, tmp_path / "faust", 150_000)
    cache = block_cache(8)
    mine = filled(tuned(cache), tmp_path / "tuned", 150_000)
    try:
        read_back(plain, 150_000)
        read_back(mine, 150_000)
        beside = plain.property_int_value(TABLE_READERS) or 0
        assert beside > 150_000 * 10 // 8, "faust's: at least the filter's 10 bits a key"
        assert (mine.property_int_value(TABLE_READERS) or 0) < beside // 10
        assert cache.get_usage() > 150_000 * 10 // 8, "the filter is in the cache now"
    finally:
        plain.close()
        mine.close()


def test_a_small_cache_bounds_the_memory_and_every_read_is_still_right(tmp_path: Path) -> None:
    """Filters larger than the cache: it stays within its capacity, evicting blocks and reading
    them back from the files; no read answers wrongly for it."""
    capacity = 256 << 10
    cache = rocksdict.Cache(capacity)
    first = filled(tuned(cache), tmp_path / "a", 200_000)
    second = filled(tuned(cache), tmp_path / "b", 200_000)  # 2 x 250 KB of filters alone
    try:
        for db in (first, second, first):
            read_back(db, 200_000)
            assert cache.get_usage() <= capacity
        # both DBs report the one cache's usage (streams/worker/state.py counts it once)
        assert first.property_int_value(BLOCK_CACHE_USAGE) == cache.get_usage()
        assert second.property_int_value(BLOCK_CACHE_USAGE) == cache.get_usage()
    finally:
        first.close()
        second.close()


def test_the_tuned_options_keep_faust_s_settings() -> None:
    base = RocksDBOptions(**rocksdb_options(), use_rocksdict=True)
    cache = block_cache(8)
    options = TunedRocksDBOptions.of(base, cache)
    assert {name: value for name, value in vars(options).items() if name != "block_cache"} == vars(
        base
    )
    assert options.block_cache is cache
    assert isinstance(options.as_options(), rocksdict.Options)


def test_the_cache_size_is_a_setting() -> None:
    assert Settings.from_env({}).rocksdb_block_cache_mb == 48
    assert Settings.from_env({"ROCKSDB_BLOCK_CACHE_MB": "256"}).rocksdb_block_cache_mb == 256
    assert (
        "ROCKSDB_BLOCK_CACHE_MB=256"
        in Settings.from_env({"ROCKSDB_BLOCK_CACHE_MB": "256"}).describe()
    )
    with pytest.raises(ConfigError, match="ROCKSDB_BLOCK_CACHE_MB must be at least 8, got 4"):
        Settings.from_env({"ROCKSDB_BLOCK_CACHE_MB": "4"})
    with pytest.raises(ConfigError, match="ROCKSDB_BLOCK_CACHE_MB must be a whole number"):
        Settings.from_env({"ROCKSDB_BLOCK_CACHE_MB": "48M"})
