"""The administrator's side of the HTTP server (the License Key details, the dashboard, the
reports) attacked over HTTP, the worker's real app in-process (tests/unit/web_harness.py), the
reports over the real stages in memory (review 2026-12-05, helper-88). What it found:

- A HEAD of a streamed report (the learner lists, the dashboard's CSV) was answered with every
  row after its headers, with no length: a kept-alive connection read the rows as the next
  answer's status line.
- The dashboard wrote a window as "2026-02-28 - 2026-03-31": its `end` is the next window's
  first day, read by an administrator as the last day of this one.
- A deletion request of non-ASCII learner ids within the 512 KiB selector limit was produced
  with `\\uXXXX` escapes (json.dumps), over the 1,000,000 bytes a record may take: a 500.
- `/signout` (POST only) answered a HEAD with a 405 without `Allow`, while a GET's 405 said
  `Allow: HEAD,POST`.
- The forecast read the clock again after gathering the partitions: across a window's end it
  paired the next window's count with the ended window's days.
- aiohttp's pattern for a `{tenant_id}` segment refuses `{` and `}`: every call and page of a
  tenant `acme{eu}` (a valid id) was "not found".
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from schemas import topics
from streams.domain.selectors import Selector
from streams.http import api_views, pages, report_views
from streams.stages.batch import DurableBatch
from tests.stages.pipeline import Pipeline, launch, license_
from tests.stages.test_report_views import wire
from tests.unit.test_reports_http_hostile_review import acme_in_apia
from tests.unit.web_harness import ADMIN_ALL, READ_ALL, Server, bearer, isolate

NOW = datetime(2026, 3, 20, 12, tzinfo=UTC)


@pytest.fixture
def wired(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server) -> Pipeline:
    """acme, billed monthly from the 31st in Apia, with three learners in its current window
    (2026-02-28 to 2026-03-31)."""
    p = acme_in_apia(monkeypatch, tmp_path, ["l0", "l1", "l2"])
    monkeypatch.setattr(pages, "datetime", report_views.datetime)  # the pages at NOW too
    return p


STREAMED = [
    "/api/tenants/acme/windows/2026-02-28/learners",
    "/api/tenants/acme/windows/2026-02-28/learners?format=csv",
    "/api/tenants/acme/windows/2026-02-28/learners?format=jsonl",
    "/api/tenants/acme/learners",
    "/api/tenants/acme/learners?format=csv",
    "/tenants/acme/learners.csv",
]


@pytest.mark.parametrize("path", STREAMED)
def test_a_head_of_a_streamed_report_answers_its_headers_and_no_body(
    wired: Pipeline, server: Server, path: str
) -> None:
    """A HEAD was answered with the whole report after its headers, with neither a length nor
    chunks to say where it ends: on a kept-alive connection the client (or a proxy's pooled
    connection) read the rows as the next answer's status line ("Bad status line: learner_id,
    status, ..."), and every HEAD scanned the tenant's attempts for nothing."""
    request = (
        f"HEAD {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {READ_ALL}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    status, answer = server.raw(request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert status == 200, answer[:300]
    assert b"Content-Type:" in head, head  # the headers a GET has
    assert body == b"", body[:200]
    get = server.call("GET", path, headers=bearer(READ_ALL))
    assert get.status == 200 and b"l2" in get.body  # the GET still streams every row


@pytest.mark.parametrize("path", ["/", "/tenants/acme"])
def test_the_current_window_is_shown_to_its_last_day_not_the_next_windows_first(
    wired: Pipeline, server: Server, path: str
) -> None:
    """acme's window began 2026-02-28 and the next one begins 2026-03-31 (billing on the 31st):
    the pages said "2026-02-28 - 2026-03-31", which an administrator reads as "March 31 still
    counts in this window". A window's `end` is the next one's start; its last day is the day
    before."""
    session = server.sign_in(READ_ALL)
    page = server.page(path, session).text
    assert "2026-02-28 &ndash; 2026-03-30" in page or "2026-02-28 \u2013 2026-03-30" in page
    assert "2026-03-31" not in page.replace("2026-03-31T", "")


class WorkerBatch:
    """A deletion request's batch as the worker makes it: `emit` refuses what Kafka would
    (streams/stages/batch.py: a record over MAX_RECORD_BYTES), `flush` keeps what was sent."""

    sent: list[bytes] = []

    def __init__(self) -> None:
        self.batch = DurableBatch(None, None, None)  # type: ignore[arg-type]

    def emit(self, topic: str, key: bytes | None, value: bytes | None) -> None:
        self.batch.emit(topic, key, value)
        assert value is not None
        WorkerBatch.sent.append(value)

    async def flush(self) -> None:
        return None


def test_a_deletion_of_learners_with_non_ascii_ids_within_the_selector_limit_is_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server
) -> None:
    """670 learner ids of 256 CJK characters: a selector of 511,243 bytes, under the contract's
    512 KiB, which the API accepted. It was produced as `json.dumps` writes it, every such
    character as a 6-byte `\\uXXXX` escape: 1,018,591 bytes, over the 1,000,000 a record may
    take, so the batch refused it and the administrator got a 500 ("internal error") for a
    request the service takes."""
    isolate(monkeypatch, tmp_path)
    monkeypatch.setattr(api_views, "new_input_batch", WorkerBatch)
    monkeypatch.setattr(api_views, "RECEIPT_WAIT_S", 0.01)  # no stage here to answer it
    monkeypatch.setattr(WorkerBatch, "sent", [])
    ids = [f"{n:04d}" + "\u5b66" * 252 for n in range(670)]
    body = {"mode": "preview", "learner_ids": ids}
    assert Selector.of("learner_ids", ids).too_large() is None

    answer = server.call(
        "POST", "/api/tenants/acme/deletions", headers=bearer(ADMIN_ALL), json=body
    )

    assert answer.status == 202, answer.text[:300]
    (record,) = WorkerBatch.sent
    assert json.loads(record)["learner_ids"] == ids


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_sign_out_allows_only_post_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server, method: str
) -> None:
    """`/signout` takes a POST only. A GET's 405 said `Allow: HEAD,POST`, yet a HEAD got a 405
    too, and that one had no `Allow` at all (RFC 9110: a 405 must have one)."""
    isolate(monkeypatch, tmp_path)
    answer = server.call(method, "/signout", headers=bearer(READ_ALL))
    assert answer.status == 405
    assert answer.headers.get("Allow") == "POST", answer.headers.get("Allow")


def test_the_forecast_is_of_one_moment_also_when_a_window_ends_while_it_is_gathered(
    wired: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forecast chose its window, gathered the partitions' tallies (seconds, for a big
    tenant on several workers) and only then read the clock again for its count: a window that
    ended meanwhile was answered with the next window's count (0) beside its own daily figures
    (3 learners), and a projection from them."""
    window_end = datetime(2026, 3, 30, 11, tzinfo=UTC)  # 2026-03-31T00:00 in Apia (+13:00)
    readings = iter([window_end - timedelta(seconds=1)])

    class Moving(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            # the first reading before the end, every later one after it
            return next(readings, window_end + timedelta(seconds=1)).astimezone(tz)

    monkeypatch.setattr(report_views, "datetime", Moving)

    answer = asyncio.run(report_views.forecast("acme"))

    assert answer["window"]["start"] == "2026-02-28"
    assert answer["active_learners"] == answer["daily"][-1]["active_learners"] == 3


def test_the_tenant_page_shows_its_reports_of_the_moment_of_its_details(
    wired: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same at the page's scale (found after helper-88's review): the tenant page read the
    clock for its license details, and its reports (the window of the learners' table, the
    forecast, the advisor) read it again each, so a window that ended while the page was
    gathered put one window's details beside the next window's reports."""
    window_end = datetime(2026, 3, 30, 11, tzinfo=UTC)  # 2026-03-31T00:00 in Apia (+13:00)

    class After(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return (window_end + timedelta(seconds=1)).astimezone(tz)

    monkeypatch.setattr(report_views, "datetime", After)  # every reading the reports make

    shown = asyncio.run(pages.tenant_reports("acme", 3, window_end - timedelta(seconds=1)))

    assert shown["forecast"]["window"]["start"] == "2026-02-28"
    assert shown["forecast"]["active_learners"] == 3
    assert shown["advisor"]["window"]["start"] == "2026-02-28"
    assert len(shown["learners"]) == 3  # the window the details show, not the next one's 0


BRACED = "acme{eu}"  # a valid tenant id: 1-256 characters, no `/`, no control character
BRACED_CALLS = [
    "/api/tenants/{t}",
    "/api/tenants/{t}/windows",
    "/api/tenants/{t}/learners",
    "/api/tenants/{t}/windows/2026-02-28/learners",
    "/api/tenants/{t}/windows/2026-02-28/groups",
    "/api/tenants/{t}/forecast",
    "/api/tenants/{t}/advisor",
    "/api/tenants/{t}/deletions",
    "/api/tenants/{t}/deletions/r%7B1%7D",
    "/tenants/{t}",
    "/tenants/{t}/learners.csv",
]


@pytest.mark.parametrize("call", BRACED_CALLS)
def test_a_tenant_whose_id_holds_braces_has_its_details_reports_and_pages(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, server: Server, call: str
) -> None:
    """aiohttp's pattern for a `{tenant_id}` segment is `[^{}/]+`: every call and page of a
    tenant `acme{eu}` (and every receipt of a request `r{1}`) answered 404 "not found", and the
    tenants page linked to a page that did not exist."""
    isolate(monkeypatch, tmp_path)
    p = Pipeline(partitions=3, start=NOW)
    p.produce(topics.LICENSES, license_(BRACED, cycle_start="2026-01-31", window_months=1))
    p.produce(topics.LAUNCHES, launch(BRACED, "l0", "a0", "2026-03-05T10:00:00+00:00"))
    p.settle()
    wire(monkeypatch, p, NOW, http=True)
    report_views.model.apply_receipt(receipt_of(BRACED, "r{1}"))
    path = call.format(t=quote(BRACED, safe=""))

    answer = server.call("GET", path, headers=bearer(READ_ALL))

    assert answer.status == 200, (path, answer.status, answer.text[:200])
    if path.startswith("/api/"):  # the tenant's answer: it names the tenant or its learner
        assert BRACED in answer.text or '"l0"' in answer.text, answer.text[:200]


def receipt_of(tenant_id: str, request_id: str) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "tenant_id": tenant_id,
            "mode": "preview",
            "selector": {"kind": "learner_ids", "values": ["l0"]},
            "requested_at": "2026-03-20T11:00:00+00:00",
            "requested_by": "admin-all",
            "reason": None,
            "attempts_affected": 1,
            "learners_affected": 1,
            "windows": [{"start": "2026-02-28", "active_before": 1, "active_after": 0}],
            "completed_at": "2026-03-20T11:00:01+00:00",
            "error": None,
        }
    ).encode()
