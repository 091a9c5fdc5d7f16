"""The tables' RocksDB options (real RocksDB): index and filter blocks live in the one block cache
of the process, so what RocksDB keeps in memory is bounded by that cache whatever the data."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from faust.stores.rocksdb import RocksDBOptions

from streams.config.settings import ConfigError, Settings
from streams.worker import tables
from streams.worker.state import SHARED, RocksState
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


def index_bytes(db: rocksdict.Rdict) -> float:
    """Bytes of index blocks in the DB's block cache (RocksDB's entry statistics by role; the
    first ask of a cache may find them not collected yet, so it asks twice)."""
    db.property_value("rocksdb.block-cache-entry-stats")
    stats = db.property_value("rocksdb.block-cache-entry-stats") or ""
    found = re.search(r"IndexBlock\(\d+,([\d.]+) (KB|MB)", stats)
    assert found, stats
    return float(found[1]) * (1 << (10 if found[2] == "KB" else 20))


def test_the_tuned_index_is_a_quarter_the_size_and_reads_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index keeps one whole key every 16 instead of every key: its blocks take far less of
    the cache (they took as much memory beside it before the cache held them)."""
    whole = tuned(block_cache(64))
    monkeypatch.setattr(tables, "INDEX_BLOCK_RESTART_INTERVAL", 1)
    every_key = filled(whole, tmp_path / "every", 150_000)
    monkeypatch.undo()
    every_16th = filled(tuned(block_cache(64)), tmp_path / "tuned", 150_000)
    try:
        read_back(every_key, 150_000)
        read_back(every_16th, 150_000)
        plain, smaller = index_bytes(every_key), index_bytes(every_16th)
        assert plain > 0
        assert smaller < plain * 0.75, (smaller, plain)
    finally:
        every_key.close()
        every_16th.close()


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
        # both DBs report the one cache's usage
        assert first.property_int_value("rocksdb.block-cache-usage") == cache.get_usage()
        assert second.property_int_value("rocksdb.block-cache-usage") == cache.get_usage()
    finally:
        first.close()
        second.close()


class _Store:
    """What RocksState reads of a faust table's store: its open DBs and its options."""

    def __init__(self, options: TunedRocksDBOptions, dbs: dict[int, rocksdict.Rdict]) -> None:
        self.rocksdb_options, self._dbs = options, dbs


class _Table:
    def __init__(self, store: _Store) -> None:
        self.data = store


def test_the_gauge_counts_the_shared_cache_once(tmp_path: Path) -> None:
    """Two tables over one cache: the cache's bytes once (not once per DB), under `all`, still
    counted when no DB is open; each table's own memtables and table readers apart."""
    cache = block_cache(8)
    options = tuned(cache)
    first = filled(options, tmp_path / "a", 50_000)
    second = filled(options, tmp_path / "b", 50_000)
    try:
        read_back(first, 50_000)
        read_back(second, 50_000)
        state = RocksState(
            {
                "one": _Table(_Store(options, {0: first})),
                "two": _Table(_Store(options, {0: second})),
            }  # type: ignore[dict-item]
        )
        memory = state.memory()
        assert memory[(SHARED, "block_cache")] == cache.get_usage() > 0
        assert set(memory) == {
            (table, kind) for table in ("one", "two") for kind in ("memtables", "table_readers")
        } | {(SHARED, "block_cache")}
    finally:
        first.close()
        second.close()
    closed = RocksState({"one": _Table(_Store(options, {}))})  # type: ignore[dict-item]
    assert closed.memory()[(SHARED, "block_cache")] == cache.get_usage()


async def _stores() -> list[Any]:
    """Every table's store (faust makes it on first use, inside a running loop)."""
    return [
        table.data
        for table in (
            tables.attempts,
            tables.learner_state,
            tables.learner_groups,
            tables.erasures,
            tables.tenant_state,
        )
    ]


def test_tune_stores_gives_every_table_the_one_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    stores = asyncio.run(_stores())
    for store in stores:  # put each store's options back after the test
        monkeypatch.setattr(store, "rocksdb_options", store.rocksdb_options)
    cache = block_cache(8)
    tables.tune_stores(cache)
    for store in stores:
        options = store.rocksdb_options
        assert isinstance(options, TunedRocksDBOptions)
        assert options.block_cache is cache
        assert options.target_file_size_base == 8 << 20


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


def test_memtables_have_a_whole_key_bloom_filter_and_read_right(tmp_path: Path) -> None:
    """Each memtable has its bloom filter over whole keys (MEMTABLE_BLOOM_RATIO): a look-up of a
    key that is nowhere skips the skip lists. Keys in the memtables, in files, deleted and never
    written all read right; a scan still sees every row in order (no prefix extractor)."""
    db = tuned(block_cache(8)).open(tmp_path / "db")
    for n in range(3_000):
        db[key(n)] = b"1"
    db.flush()  # these in a file, the next in the memtable
    for n in range(3_000, 6_000):
        db[key(n)] = b"2"
    for n in range(0, 6_000, 11):
        del db[key(n)]
    options = next(tmp_path.glob("db/OPTIONS-*")).read_text()
    assert re.search(r"^\s*memtable_whole_key_filtering=true$", options, re.M)
    ratio = re.search(r"^\s*memtable_prefix_bloom_size_ratio=([0-9.]+)$", options, re.M)
    assert ratio is not None and float(ratio.group(1)) == tables.MEMTABLE_BLOOM_RATIO
    wanted = [key(n) for n in range(6_000)]
    expected = [None if n % 11 == 0 else (b"1" if n < 3_000 else b"2") for n in range(6_000)]
    assert db.get(wanted) == expected
    missing = [key(n) for n in range(6_000, 9_000)]
    assert db.get(missing) == [None] * len(missing)
    scanned = [k for k, _ in db.items(from_key=b"tenant-")]
    assert scanned == sorted(k for k, v in zip(wanted, expected, strict=True) if v is not None)
    db.close()
