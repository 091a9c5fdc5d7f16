"""An independent recount of Active and Total Learners straight from launch and license records.

The checker of tests, the demo and the benchmark: plain sets over the whole input, with none of
the pipeline's incremental state. It applies the same contract rules (tracked, repeat/conflict,
the latest license of a tenant) in the simplest way that could work.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

from streams.domain.selectors import Selector, instant
from streams.domain.tracking import is_tracked
from streams.domain.windows import DEFAULT_CUT, Cut, window_of

FUTURE_TOLERANCE = timedelta(hours=1)


def recount(
    launches: Iterable[Mapping[str, Any]],
    licenses: Mapping[str, Mapping[str, Any]],
    now: datetime,
) -> dict[tuple[str, str], tuple[int, int]]:
    """{(tenant, window start ISO): (active, total)} for every window with learners.

    `launches` are decoded launch dicts in delivery order (the first of two conflicting launches
    of one attempt wins, as in the service); `licenses` maps tenant -> its latest license dict.
    """
    attempts: dict[tuple[str, str, str], tuple[str, datetime]] = {}
    for launch in launches:
        launched_at = datetime.fromisoformat(str(launch["launched_at"]).replace("Z", "+00:00"))
        if launched_at > now + FUTURE_TOLERANCE:
            continue
        tracked = is_tracked(
            launch.get("launched_by", "learner"),
            launch.get("content_type"),
            launch.get("tracking", "tracked"),
        )
        if not tracked:
            continue
        key = (launch["tenant_id"], launch["learner_id"], launch["attempt_id"])
        attempts.setdefault(key, (launch["element_id"], launched_at))

    active: dict[tuple[str, str], set[str]] = defaultdict(set)
    learners: dict[str, set[str]] = defaultdict(set)
    for (tenant, learner, _), (_, launched_at) in attempts.items():
        window = window_of(cut_for(licenses.get(tenant)), launched_at)
        active[(tenant, window.start.isoformat())].add(learner)
        learners[tenant].add(learner)
    return {key: (len(members), len(learners[key[0]])) for key, members in active.items()}


def cut_for(license_: Mapping[str, Any] | None) -> Cut:
    if license_ is None:
        return DEFAULT_CUT
    return Cut(
        date.fromisoformat(str(license_.get("cycle_start", "1970-01-01"))),
        int(license_.get("window_months", 12)),
        str(license_.get("timezone", "UTC")),
    )


def without_deleted(
    launches: Iterable[Mapping[str, Any]],
    request: Mapping[str, Any],
    groups: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> list[Mapping[str, Any]]:
    """The launches a physical deletion request leaves (applied after all of them).

    `groups` maps (tenant, learner) to its `{teams, roles}` when the request is applied (for the
    `teams` and `roles` selectors).
    """

    selector = Selector.of_fields(request)
    requested = request.get("requested_at")  # only learners and groups need it
    requested_at = instant(str(requested)) if requested is not None else None
    kept = []
    for launch in launches:
        if launch["tenant_id"] != request["tenant_id"]:
            kept.append(launch)
            continue
        gone = selector.selects(
            launch["learner_id"],
            launch["attempt_id"],
            instant(str(launch["launched_at"])),
            requested_at,
            (groups or {}).get((launch["tenant_id"], launch["learner_id"])),
        )
        if not gone:
            kept.append(launch)
    return kept
