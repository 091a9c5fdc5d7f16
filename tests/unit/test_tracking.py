"""The tracked-launch rule as a truth table."""

from __future__ import annotations

import pytest

from streams.domain.tracking import is_tracked

# launched_by, content_type, tracking -> tracked?
TRUTH_TABLE = [
    ("learner", "scorm", "tracked", True),
    ("learner", "scorm", "none", True),  # SCORM is always tracked
    ("learner", "scorm", "none_resource", True),
    ("learner", "SCORM", "none", True),
    ("learner", "video", "tracked", True),
    ("learner", "video", "none", False),
    ("learner", "video", "none_resource", False),
    ("learner", "document", "tracked", True),
    ("learner", None, "tracked", True),
    ("learner", None, "none", False),
    ("admin", "scorm", "tracked", False),  # catalog launches never count
    ("admin", "video", "tracked", False),
    ("admin", None, "none", False),
]


@pytest.mark.parametrize(("launched_by", "content_type", "tracking", "expected"), TRUTH_TABLE)
def test_tracked_launch_rule(launched_by, content_type, tracking, expected) -> None:
    assert is_tracked(launched_by, content_type, tracking) is expected
