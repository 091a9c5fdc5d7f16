"""Which partition of an internal topic a key belongs to.

`learner-commands` and `tenant-commands` are internal: only this service writes them, always with
an explicit partition from `partition_for`. CRC-32 is in C (about 0.2 µs a key) where the
pure-Python murmur2 of the Kafka clients costs about 20 µs, and the hot path routes every launch.
The table changelogs (`attempts` included) follow their table's partition, so a key always lands
in the same partition of its compacted topic.
"""

from __future__ import annotations

from zlib import crc32


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of `key` among `partitions` (stable across processes and versions)."""
    return crc32(key) % partitions


def learner_partition(tenant_id: str, learner_id: str, partitions: int) -> int:
    """Where a learner's attempts, membership and erasure markers live."""
    return partition_for(f"{tenant_id}/{learner_id}".encode(), partitions)


def tenant_partition(tenant_id: str, partitions: int) -> int:
    """Where a tenant's license, partial counts and published records live (tenant stage)."""
    return partition_for(tenant_id.encode(), partitions)
