"""Which launches create attempt records (and so count)."""

from __future__ import annotations

UNTRACKED = frozenset({"none", "none_resource"})


def is_tracked(launched_by: str, content_type: str | None, tracking: str) -> bool:
    """A launch counts when a learner launched it and it is SCORM or its tracking is on.

    SCORM is always tracked; other content is tracked unless its Utilization Tracking is `none`
    or `none_resource`; a launch from LMS Admin > Catalog (`admin`) never counts. Content type
    and tracking compare case-insensitively, with surrounding whitespace trimmed.
    """
    if launched_by != "learner":
        return False
    if content_type is not None and content_type.strip().lower() == "scorm":
        return True
    return tracking.strip().lower() not in UNTRACKED
