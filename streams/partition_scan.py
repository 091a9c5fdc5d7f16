"""Reading one partition's keys of a table by prefix, straight from its RocksDB.

Tenant-wide work (a license re-cut, a tenant-wide deletion, a tick) needs the keys of one tenant
*in this partition only*. faust's table API cannot iterate by prefix, so we read the partition's
RocksDB directly. Rules: read everything first (the result is a list), then write through the
table API; never hold an iterator across an `await`.
"""

from __future__ import annotations

import json
from typing import Any

from faust.types import CollectionT

OFFSET_KEY = b"__faust\x00offset__"


def scan_prefix(table: CollectionT, partition: int, prefix: bytes) -> list[tuple[bytes, Any]]:
    """Every (key, decoded JSON value) of `table` in `partition` whose key starts with `prefix`."""
    db = table.data._db_for_partition(partition)  # type: ignore[attr-defined]
    found: list[tuple[bytes, Any]] = []
    for key, value in db.items(from_key=prefix):
        if not key.startswith(prefix):
            break
        if key == OFFSET_KEY or value is None:
            continue
        found.append((key, json.loads(value)))
    return found
