"""Reading one partition's keys of a table by prefix, straight from its RocksDB.

Tenant-wide work (a license re-cut, a tenant-wide deletion, a tick) needs the keys of one tenant
*in this partition only*. faust's table API cannot iterate by prefix, so we read the partition's
RocksDB directly. Rules: every call returns a list and closes its iterator, so no iterator is
ever held across an `await`; writes go through `streams.state.StateBatch`; a caller that scans
flushes its batch first (a scan sees RocksDB, not a batch's pending writes).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from faust.types import CollectionT

from streams.state import OFFSET_KEY, db_of


def scan_prefix(table: CollectionT, partition: int, prefix: bytes) -> list[tuple[bytes, Any]]:
    """Every (key, decoded JSON value) of `table` in `partition` whose key starts with `prefix`."""
    rows, _ = scan_chunk(table, partition, prefix, after=None, limit=None)
    return rows


def scan_chunk(
    table: CollectionT,
    partition: int,
    prefix: bytes,
    after: bytes | None,
    limit: int | None,
    group_of: Callable[[bytes], bytes] | None = None,
) -> tuple[list[tuple[bytes, Any]], bytes | None]:
    """Up to about `limit` rows with `prefix`, starting after key `after`; and where to resume.

    With `group_of`, a chunk never splits a group (e.g. one learner's attempts): it may run past
    `limit` to the end of the group it is in. The resume key is None when the prefix is done.
    """
    db = db_of(table, partition)
    rows: list[tuple[bytes, Any]] = []
    last_group: bytes | None = None
    iterator = db.items(from_key=after if after is not None else prefix)
    try:
        for key, value in iterator:
            if not key.startswith(prefix):
                return rows, None
            if key in (after, OFFSET_KEY) or value is None:
                continue
            if limit is not None and len(rows) >= limit:
                group = group_of(key) if group_of else None
                if group is None or group != last_group:
                    return rows, rows[-1][0]
            rows.append((key, orjson.loads(value)))
            if group_of is not None:
                last_group = group_of(key)
    finally:
        del iterator
    return rows, None


def learner_of_key(key: bytes) -> bytes:
    """`tenant/learner` of a `tenant/learner/attempt` key: the group of a learner's attempts."""
    tenant, _, rest = key.partition(b"/")
    learner, _, _ = rest.partition(b"/")
    return tenant + b"/" + learner


def has_prefix(table: CollectionT, partition: int, prefix: str) -> bool:
    """Whether any key of `table` in `partition` starts with `prefix` (one seek)."""
    start = prefix.encode()
    iterator = db_of(table, partition).keys(from_key=start)
    try:
        for key in iterator:
            return bool(key.startswith(start))
        return False
    finally:
        del iterator
