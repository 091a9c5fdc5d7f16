"""What the tenant stage keeps of what it published (`pub/{tenant}`) stays under Kafka's record
limit for every license Kafka takes, however many windows the tenant has.

`pub/{tenant}` held the whole license beside the published windows: a license whose
`webhooks` list (no cap: "Kafka's record limit bounds it", schemas/licenses.py) takes most of
a record fitted every record it is stored in alone (`lic/{tenant}`, the License commands),
but with a century of monthly windows beside it the record passed 1,000,000 bytes: every
partial count of the tenant was given up, and its counts froze.
"""

from __future__ import annotations

import json

from schemas import topics
from streams.stages.store import MAX_RECORD_BYTES
from tests.stages.pipeline import Pipeline, launch, license_

YEARS = 126  # 1900 to 2025: 1,512 monthly windows


def _webhooks(total_bytes: int) -> list[str]:
    """Distinct URLs of 2,000 characters, about `total_bytes` in a JSON list."""
    each = 2_000
    return [
        f"https://hooks.example.com/{n:06d}/" + "x" * (each - 33)
        for n in range(total_bytes // each)
    ]


def test_a_large_license_beside_a_century_of_monthly_windows_keeps_counting() -> None:
    p = Pipeline(partitions=2)
    lic = license_("acme", cycle_start="1900-01-01", window_months=1, webhooks=_webhooks(975_000))
    size = len(json.dumps(lic).encode())
    assert 950_000 < size < MAX_RECORD_BYTES - 20_000, size  # far below Kafka's 1 MiB
    p.produce(topics.LICENSES, lic)
    for month in range(YEARS * 12):
        at = f"{1900 + month // 12}-{month % 12 + 1:02d}-10T10:00:00Z"
        p.produce(topics.LAUNCHES, launch("acme", "l0", f"a{month}", at))
    p.settle()
    assert p.world.gave_up == [] and p.dead_letters() == []
    assert p.active("acme", "1900-01-01") == 1
    assert p.active("acme", "2025-12-01") == 1
    assert p.active("acme", "2026-03-01") == 0  # the current window
    # a new learner still counts
    p.produce(topics.LAUNCHES, launch("acme", "l1", "a1", "2026-03-11T10:00:00Z"))
    p.settle()
    assert p.active("acme", "2026-03-01") == 1
    assert p.check() == []
