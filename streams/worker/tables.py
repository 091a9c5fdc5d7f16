"""Every RocksDB table and its changelog topic, in one place. Never rename a table.

Keys are raw bytes joined with '/' (ids never contain '/'), so a prefix such as b"acme/" selects
exactly one tenant's keys in a partition (streams/stages/keys.py lists them).
"""

from __future__ import annotations

import faust
import rocksdict
from faust.stores.rocksdb import RocksDBOptions
from faust.types import TableT

from schemas import topics
from streams.config.settings import BLOCK_CACHE_MB
from streams.worker.app import app
from streams.worker.channels import changelog

RAW_KEYS_JSON_VALUES: faust.Schema = faust.Schema(
    key_type=bytes, key_serializer="raw", value_serializer="json"
)


def rocksdb_options() -> dict[str, int]:
    """Bounded memory per RocksDB: faust opens one DB per table *and partition* (5 x 12 here).

    faust's defaults (64 MiB write buffers x 3 and a 2 GiB block cache, per DB) let RSS grow
    with the data. These keep each DB's memtables at 1 MiB x 2; the block cache is one for the
    whole process (TunedRocksDBOptions below): faust's per-DB cache of `block_cache_size` is
    made, empty, and replaced before the DB opens. A fresh dict each time: faust mutates it.

    SST files of about 8 MiB (faust's default is 64): each file's filter is one block in the
    cache, and a block larger than one of the cache's shards (a 64th of it: 768 KiB at 48 MiB;
    RocksDB's shards are never under 512 KiB) cannot stay there, so every read loads it from the
    file again. Attempts take about 36 bytes a key in the files: one file of 900,000 of them
    (32 MB) has a filter of about 1.1 MB, and a missing key cost 4.5 us instead of 0.4; files
    of 8 MiB hold about 240,000, with 300 KB of filter (docs/benchmarks.md).

    Bloom filters of 10 bits a key (faust's default is 3): most look-ups of the learner stage
    miss (a new attempt, a learner's first launch), and with small memtables a miss probes many
    files; a filter that answers "not here" 99 % of the time instead of ~85 % made a multi-get
    of missing keys 2.8x faster (4.9 -> 1.8 us a key, docs/benchmarks.md), for 1.25 bytes a key.
    """
    return {
        "write_buffer_size": 1 << 20,
        "max_write_buffer_number": 2,
        "target_file_size_base": 8 << 20,
        "block_cache_size": 2 << 20,
        "bloom_filter_size": 10,
    }


# An index block keeps one full key every this many keys, the others as a suffix after the
# prefix they share with it (RocksDB's default is 1: every key whole). Our keys share long
# prefixes (`tenant/learner/`), so the index that RocksDB holds in memory for every SST file
# shrinks by half at 16, without a measurable cost to look-ups (docs/benchmarks.md).
INDEX_BLOCK_RESTART_INTERVAL = 16


# A bloom filter over each memtable's whole keys, of this fraction of the memtable's bytes (20 KiB
# of a 1 MiB memtable; RocksDB takes it from the memtable's arena, so memory stays within the
# memtables' cap). Most look-ups of the learner stage are of keys that are nowhere (a new
# attempt): without it each searched both memtables' skip lists, a walk of cache misses (2.4 us
# an attempt's look-up in the stage alone; 0.9 with it, docs/benchmarks.md).
MEMTABLE_BLOOM_RATIO = 0.02


# The one block cache of a worker process: every DB's data blocks and its SST files' index and
# filter blocks share it. Outside a cache, the index and filters of every SST file stay in memory
# for as long as the file lives, so they grow with the data (1.8 MB at 1M attempts, 17.8 MB at
# 10M, docs/benchmarks.md); in it, memory is bounded by its capacity whatever the data, and what
# does not fit is read back from the files when needed (RocksDB's way to a memory budget).
# Index and filter blocks go to the cache's high-priority part (RocksDB's default), so a scan's
# data blocks do not evict them. Its size: ROCKSDB_BLOCK_CACHE_MB (streams/config/settings.py).


class TunedRocksDBOptions(RocksDBOptions):
    """faust's options of one DB (rocksdb_options() above), plus settings faust does not
    expose. faust builds the block-based table options in `as_options`; this builds them again,
    with the index restart interval, and the process's shared block cache holding index and
    filter blocks too; and it gives each memtable its bloom filter."""

    block_cache: rocksdict.Cache

    @classmethod
    def of(cls, options: RocksDBOptions, block_cache: rocksdict.Cache) -> TunedRocksDBOptions:
        tuned = cls.__new__(cls)
        tuned.__dict__.update(vars(options))
        tuned.block_cache = block_cache
        return tuned

    def as_options(self) -> rocksdict.Options:
        options = super().as_options()
        table = rocksdict.BlockBasedOptions()
        table.set_bloom_filter(self.bloom_filter_size, True)
        table.set_block_cache(self.block_cache)
        table.set_cache_index_and_filter_blocks(True)
        # level 0's files come and go with every flush, and every read looks at each of them
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.binary_search())
        table.set_index_block_restart_interval(INDEX_BLOCK_RESTART_INTERVAL)
        options.set_block_based_table_factory(table)
        options.set_memtable_prefix_bloom_ratio(MEMTABLE_BLOOM_RATIO)
        options.set_memtable_whole_key_filtering(True)
        return options


def _table(name: str, changelog_name: str, help_text: str) -> TableT:
    """A RocksDB table with raw byte keys and JSON values, and its declared changelog topic."""
    return app.Table(
        name,
        schema=RAW_KEYS_JSON_VALUES,
        options=rocksdb_options(),
        changelog_topic=changelog(changelog_name),
        help=help_text,
    )


# Learner stage, partitioned like learner-commands (key tenant/learner).
# The contract's compacted `attempts` topic is the attempts table's changelog: every attempt
# record is published as it is stored, and a physical deletion is its tombstone.
attempts = _table("attempts", topics.ATTEMPTS, "tenant/learner/attempt -> attempt record")
learner_state = _table(
    "learner-state",
    topics.LEARNER_STATE_CHANGELOG,
    "tenant -> the license this partition applied; tenant/learner -> the learner's windows",
)
learner_groups = _table(
    "learner-groups",
    topics.LEARNER_GROUPS_CHANGELOG,
    "tenant/learner -> {teams, roles}: the learner's groups, for team and role deletions",
)
erasures = _table(
    "erasures",
    topics.ERASURES_CHANGELOG,
    "a/t/l/attempt, l/t/l, t/t: erasure markers; done/t/request/part: deletion parts",
)

# Tenant stage, partitioned like tenant-commands (key tenant).
tenant_state = _table(
    "tenant-state",
    topics.TENANT_STATE_CHANGELOG,
    "lic/, parts/, pub/, del/, thr/ + tenant (see streams/worker/agents/tenants.py)",
)


def block_cache(megabytes: int = BLOCK_CACHE_MB) -> rocksdict.Cache:
    """A block cache of `megabytes` for every DB of a process (RocksDB's LRU cache)."""
    return rocksdict.Cache(megabytes << 20)


def tune_stores(cache: rocksdict.Cache) -> None:
    """Give every table's store the tuned options, all with `cache`. Call it at start-up, before
    a partition is assigned: faust opens a partition's DB on assignment, with the options its
    store holds."""
    for table in (attempts, learner_state, learner_groups, erasures, tenant_state):
        store = table.data
        store.rocksdb_options = TunedRocksDBOptions.of(store.rocksdb_options, cache)  # type: ignore[attr-defined]
