"""A deletion builds each removed attempt's marker from its attempt key, without decoding it:
the key it builds must be the one `attempt_marker` builds from the ids, which is the key a later
launch of the attempt is checked against (a wrong one would let the launch be counted again)."""

from __future__ import annotations

import random

from streams.stages import keys

ODD = ["a", "é", "x", "a b", "#epoch", "lic", "日本", "%2F", "a" * 256, "x/a"[:1], "\u00a0"]


def test_the_marker_of_an_attempt_key_is_the_marker_of_its_ids() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        tenant, learner, attempt = (rng.choice(ODD) + str(rng.randrange(100)) for _ in range(3))
        marker_of = keys.attempt_markers_of(tenant)
        built = marker_of(keys.attempt(tenant, learner, attempt))
        assert built == keys.attempt_marker(tenant, learner, attempt), (tenant, learner, attempt)
