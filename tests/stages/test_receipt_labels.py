"""The receipts' counter keeps a series per licensed tenant only: a deletion request may name
any tenant id, and made-up ids must not grow `/metrics` without bound."""

from __future__ import annotations

from schemas import topics
from streams.stages import metrics
from tests.stages.pipeline import Pipeline, deletion, launch, license_


def receipts(tenant: str, mode: str) -> float | None:
    """The counter's value for the labels, None while it has no such series (read without
    making one)."""
    for family in metrics.receipts_total.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == {"tenant": tenant, "mode": mode}:
                return sample.value
    return None


def test_receipts_of_unlicensed_tenants_share_one_series() -> None:
    p = Pipeline(partitions=2)
    p.produce(topics.LICENSES, license_("acme"))
    for tenant in ("acme", "made-up-1", "made-up-2"):
        p.produce(topics.LAUNCHES, launch(tenant, "l1", "a1", "2026-02-10T10:00:00Z"))
    p.flow()
    p.advance(3600)
    before = {t: receipts(t, "preview") for t in ("acme", "", "made-up-1", "made-up-2")}
    for n, tenant in enumerate(("acme", "made-up-1", "made-up-2")):
        p.produce(
            topics.ATTEMPT_DELETIONS,
            deletion(tenant, f"r{n}", "preview", p.now, learner_ids=["l1"]),
        )
    p.flow()
    p.settle()
    assert all(p.receipts(f"r{n}") for n in range(3))
    assert (receipts("acme", "preview") or 0) - (before["acme"] or 0) == 1
    assert (receipts("", "preview") or 0) - (before[""] or 0) == 2
    assert receipts("made-up-1", "preview") is None
    assert receipts("made-up-2", "preview") is None
    assert p.check() == []
