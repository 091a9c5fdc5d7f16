"""Every RocksDB table and its changelog topic, in one place. Never rename a table.

Keys are raw bytes joined with '/' (ids never contain '/'), so a prefix such as b"acme/" selects
exactly one tenant's keys in a partition (see streams/partition_scan.py).
"""

from __future__ import annotations

import faust

from streams import topics
from streams.app import app
from streams.channels import changelog

RAW_KEYS_JSON_VALUES: faust.Schema = faust.Schema(
    key_type=bytes, key_serializer="raw", value_serializer="json"
)

# Learner stage, partitioned like learner-commands (key tenant/learner).
attempts = app.Table(
    "attempts",
    schema=RAW_KEYS_JSON_VALUES,
    # The contract's compacted `attempts` topic is this table's changelog: every attempt record
    # is published as it is stored, and a physical deletion is its tombstone.
    changelog_topic=changelog(topics.ATTEMPTS),
    help="tenant/learner/attempt -> attempt record",
)
learner_state = app.Table(
    "learner-state",
    schema=RAW_KEYS_JSON_VALUES,
    changelog_topic=changelog(topics.LEARNER_STATE_CHANGELOG),
    help="tenant/learner -> {window start: attempts in it}",
)
learner_licenses = app.Table(
    "learner-licenses",
    schema=RAW_KEYS_JSON_VALUES,
    changelog_topic=changelog(topics.LEARNER_LICENSES_CHANGELOG),
    help="tenant -> the license as this partition last applied it (one copy per partition)",
)

# Tenant stage, partitioned like tenant-commands (key tenant).
tenant_state = app.Table(
    "tenant-state",
    schema=RAW_KEYS_JSON_VALUES,
    changelog_topic=changelog(topics.TENANT_STATE_CHANGELOG),
    help="lic/tenant, part/tenant/partition, pub/tenant",
)
