"""The read model's receipts are bounded in bytes, not only in number (helper-88 noticed it,
2026-12-05): a receipt echoes its selector (up to 512 KiB), the receipts topic keeps every
receipt for ever, and every worker read all of them: 100,000 receipts of large learner files
could take 50 GB of each worker. The oldest receipts are let go first; each test failed when
written."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

import streams.http.read_model as read_model
from streams.domain.deletions import REUSED_ID
from streams.http.read_model import ReadModel

BUDGET = 1_000_000  # the test's MAX_RECEIPT_BYTES


@pytest.fixture(autouse=True)
def small_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(read_model, "MAX_RECEIPT_BYTES", BUDGET, raising=False)


def receipt(tenant: str, n: int, learners: int = 2_000, **fields: Any) -> dict[str, Any]:
    """A receipt of a learner-file deletion: about 20 KB for 2,000 learners."""
    return {
        "request_id": f"r-{n}",
        "tenant_id": tenant,
        "mode": "preview",
        "selector": {
            "kind": "learner_ids",
            "values": [f"learner-{i:05d}" for i in range(learners)],
        },
        "requested_at": "2026-01-20T10:00:00+00:00",
        "requested_by": "cli:ops",
        "reason": "GDPR",
        "attempts_affected": 0,
        "learners_affected": 0,
        "windows": [],
        "completed_at": "2026-01-20T10:00:01+00:00",
        "error": None,
        **fields,
    }


def held_bytes(model: ReadModel) -> int:
    """The bytes of the distinct receipts the model still holds (a receipt sits in `receipts`
    and in its tenant's trail as one object)."""
    held = {id(raw): len(raw) for raw in model.receipts.values()}
    for trail in model._trail.values():
        held.update({id(raw): len(raw) for _, raw in trail.values()})
    return sum(held.values())


def test_receipts_of_large_selectors_stay_within_the_byte_budget() -> None:
    model = ReadModel()
    size = len(json.dumps(receipt("t-0", 0)).encode())
    count = 5 * BUDGET // size  # five budgets' worth, over a few tenants
    for n in range(count):
        model.apply_receipt(json.dumps(receipt(f"t-{n % 3}", n)).encode())
    assert held_bytes(model) <= BUDGET
    newest = count - 1
    assert model.receipt(f"t-{newest % 3}", f"r-{newest}") == receipt(f"t-{newest % 3}", newest)
    assert model.receipt("t-0", "r-0") is None  # the oldest went first
    kept = model.receipts_of(f"t-{newest % 3}", 10_000)
    assert kept[0] == receipt(f"t-{newest % 3}", newest)  # the trail newest first, as before
    assert len(kept) >= (BUDGET // size) // 3 - 1


def test_a_receipt_redelivered_is_counted_once() -> None:
    """The same receipt read twice (a redelivery; an error receipt of a reused id, which has
    its own trail entry) takes its bytes once."""
    model = ReadModel()
    first = json.dumps(receipt("t", 1, learners=10)).encode()
    reused = json.dumps(receipt("t", 1, learners=10, error=f"request_id r-1 {REUSED_ID}")).encode()
    for value in (first, first, reused, reused):
        model.apply_receipt(value)
    assert model._held_bytes == len(first) + len(reused) == held_bytes(model)


def test_one_receipt_over_the_budget_is_still_kept_alone() -> None:
    """The newest receipt stays however large: a request's own receipt is what its caller
    waits for."""
    model = ReadModel()
    model.apply_receipt(json.dumps(receipt("t", 1, learners=10)).encode())
    big = receipt("t", 2, learners=80_000)  # about 1.3 MB
    model.apply_receipt(json.dumps(big).encode())
    assert model.receipt("t", "r-2") == big
    assert model.receipt("t", "r-1") is None
    assert model.receipts_of("t", 10) == [big]


def test_the_byte_count_follows_the_number_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Receipts let go by the number bounds free their bytes in the count too, so the budget
    never evicts for bytes it no longer holds."""
    monkeypatch.setattr(read_model, "MAX_TRAIL", 5)
    monkeypatch.setattr(read_model, "MAX_RECEIPTS", 7)
    model = ReadModel()
    for n in range(40):
        model.apply_receipt(json.dumps(receipt(f"t-{n % 2}", n, learners=5)).encode())
    assert model._held_bytes == held_bytes(model)
    assert len(model._held) == len(
        {(t, e) for t, trail in model._trail.items() for e in trail} | set(model.receipts)
    )


def test_one_tenants_large_receipts_leave_the_other_tenants_trails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The budget in all let the oldest receipts go whoever's they were: one tenant's audits of
    large learner files pushed every other tenant's audit trail out of the API. A tenant's own
    receipts are bounded first (MAX_TENANT_RECEIPT_BYTES)."""
    monkeypatch.setattr(read_model, "MAX_TENANT_RECEIPT_BYTES", BUDGET // 4, raising=False)
    model = ReadModel()
    small = [receipt(f"small-{n}", n, learners=3) for n in range(20)]
    for value in small:
        model.apply_receipt(json.dumps(value).encode())
    for n in range(100, 300):  # 200 receipts of 20 KB: four budgets in all, of one tenant
        model.apply_receipt(json.dumps(receipt("big", n)).encode())
    for value in small:
        assert model.receipts_of(value["tenant_id"], 10) == [value]
    kept = model.receipts_of("big", 10_000)
    assert kept[0] == receipt("big", 299)
    assert sum(len(json.dumps(r).encode()) for r in kept) <= BUDGET // 4


def test_the_bookkeeping_holds_under_any_order_of_receipts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Random receipts of a few tenants (redeliveries, error receipts of reused ids, sizes from
    tiny to large) under small bounds of every kind: after each, what is counted is exactly
    what `receipts` and the trails hold, and every bound holds but for a lone newest receipt."""
    monkeypatch.setattr(read_model, "MAX_TRAIL", 6)
    monkeypatch.setattr(read_model, "MAX_RECEIPTS", 9)
    monkeypatch.setattr(read_model, "MAX_RECEIPT_BYTES", 40_000)
    monkeypatch.setattr(read_model, "MAX_TENANT_RECEIPT_BYTES", 15_000, raising=False)
    rng = random.Random(20261205)
    model = ReadModel()
    sent: list[bytes] = []
    for _ in range(3_000):
        if sent and rng.random() < 0.2:
            value = rng.choice(sent)  # a redelivery
        else:
            tenant, n = f"t-{rng.randrange(4)}", rng.randrange(30)
            error = f"request_id r-{n} {REUSED_ID}" if rng.random() < 0.2 else None
            fields = {"error": error, "completed_at": f"2026-01-20T10:00:{rng.randrange(60):02d}Z"}
            value = json.dumps(receipt(tenant, n, rng.choice([1, 20, 400, 1_500]), **fields))
            sent.append(value := value.encode())
        model.apply_receipt(value)
        held = {(t, e) for t, trail in model._trail.items() for e in trail} | set(model.receipts)
        assert set(model._held) == held
        assert model._held_bytes == sum(model._held.values()) == held_bytes(model)
        for tenant, mine in model._tenant_held.items():
            assert model._tenant_bytes[tenant] == sum(mine.values())
            assert model._tenant_bytes[tenant] <= 15_000 or len(mine) == 1
        assert model._held_bytes <= 40_000 or len(model._held) == 1
