"""The HTTP API and the dashboard of a real worker, on a real broker, in a real browser.

One worker (with read and admin tokens) serves the whole module: three tenants with their
licenses and a history of launches. The JSON API is checked against an independent recount; the
dashboard is driven in headless Chromium (Debian's `chromium`, installed by the Makefile) through
Playwright. A browser that cannot start fails the test: it is never skipped.

SCREENSHOTS_DIR=docs/screenshots keeps the browser's screenshots there (`make screenshots`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from streams.config.settings import Settings
from streams.domain.recount import cut_for, recount
from streams.domain.windows import window_of
from streams.kafka.admin import broker_answers, ensure_topics
from tests.integration.harness import WorkerProcess, produce_json, wait_for
from tests.integration.test_compound_faults import broker as kafka
from tests.integration.test_compound_faults import local_broker

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
READ_TOKEN = "read-token-for-tests-0123456789abcdef"
ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"
FIRST_OF_MONTH = NOW.date().replace(day=1)


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


LICENSES = {
    # 12-month windows, three years of history: the chart has several bars
    "acme": {
        "tenant_id": "acme",
        "cycle_start": years_before(FIRST_OF_MONTH, 3).isoformat(),
        "window_months": 12,
        "learner_limit": 20,
        "thresholds": [50, 100],
        "notify": ["admin@acme.example"],
    },
    "globex": {
        "tenant_id": "globex",
        "cycle_start": years_before(FIRST_OF_MONTH, 1).isoformat(),
        "window_months": 3,
        "learner_limit": 100,
        "thresholds": [80],
    },
    "initech": {
        "tenant_id": "initech",
        "cycle_start": years_before(FIRST_OF_MONTH, 1).isoformat(),
        "window_months": 1,
        "learner_limit": 10,
        "thresholds": [50, 90],
    },
}
# learners in the current window: 13/20 = 65 %, 4/100 = 4 %, 9/10 = 90 %
CURRENT = {"acme": 13, "globex": 4, "initech": 9}


def launch(tenant: str, learner: str, attempt: str, at: datetime) -> dict[str, Any]:
    return {
        "event_id": f"{tenant}-{attempt}",
        "tenant_id": tenant,
        "learner_id": learner,
        "element_id": "course-1",
        "attempt_id": attempt,
        "launched_at": at.isoformat(),
        "content_type": "scorm",
    }


def dataset() -> list[dict[str, Any]]:
    launches = []
    for tenant, learners in CURRENT.items():
        for n in range(learners):
            launches.append(
                launch(tenant, f"{tenant}-l{n}", f"now-{n}", NOW - timedelta(minutes=2))
            )
    for years_ago, learners in ((1, 7), (2, 4)):  # acme's earlier windows
        at = NOW - timedelta(days=365 * years_ago + 20)
        for n in range(learners):
            launches.append(launch("acme", f"acme-y{years_ago}-{n}", f"old-{years_ago}-{n}", at))
    return launches


# acme's learners 5-8 are in team "sales" (their attempts are in the current window)
GROUPS = [
    {"tenant_id": "acme", "learner_id": f"acme-l{n}", "teams": ["sales"], "roles": ["rep"]}
    for n in range(5, 9)
]


def current_window(tenant: str) -> str:
    return window_of(cut_for(LICENSES[tenant]), NOW).start.isoformat()


@dataclass
class Site:
    """The worker under test, and what it was fed."""

    worker: WorkerProcess
    launches: list[dict[str, Any]]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.worker.web_port}"

    def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, decoded JSON or text, headers); 4xx and 5xx are answers too."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=90) as response:
                status, raw, headers = response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            status, raw, headers = error.code, error.read(), dict(error.headers)
        text = raw.decode()
        try:
            return status, json.loads(text), headers
        except ValueError:
            return status, text, headers

    def expected(self, deleted_learners: set[str] = frozenset()) -> dict[tuple[str, str], tuple]:
        kept = [r for r in self.launches if r["learner_id"] not in deleted_learners]
        return recount(kept, LICENSES, NOW)


@pytest.fixture(scope="module")
def site(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder = tmp_path_factory.mktemp("web")
    settings = replace(
        broker, topic_prefix=f"test-web-{os.getpid()}-", state_dir=folder / "state", partitions=4
    )
    ensure_topics(settings)
    produce_json(settings, "licenses", LICENSES.values())
    launches = dataset()
    produce_json(settings, "launches", launches)
    produce_json(settings, "learner-groups", GROUPS)
    worker = WorkerProcess(
        settings,
        folder / "worker.log",
        extra_env={
            "API_READ_TOKENS": f"viewer:{READ_TOKEN}",
            "API_ADMIN_TOKENS": f"ops:{ADMIN_TOKEN}",
        },
    ).start()
    site = Site(worker, launches)
    try:
        expected = site.expected()

        def settled() -> bool:
            if not worker.alive():
                raise AssertionError(f"the worker died:\n{worker.log_tail()}")
            try:
                status, answer, _ = site.call("GET", "/api/tenants", READ_TOKEN)
            except OSError:
                return False  # not listening yet
            if status != 200:
                return False
            live = {t["tenant_id"]: t["active_learners"] for t in answer["tenants"]}
            wanted = {t: expected[(t, current_window(t))][0] for t in LICENSES}
            return live == wanted

        wait_for(settled, 180, "the API's counts to equal the recount")
        yield site
    finally:
        worker.stop()


# -- the JSON API -----------------------------------------------------------------------------


def test_tokens_guard_the_api(site: Site) -> None:
    status, answer, headers = site.call("GET", "/api/tenants")
    assert status == 401 and "bearer token" in answer["error"]
    assert headers.get("WWW-Authenticate") == "Bearer"
    assert site.call("GET", "/api/tenants", "not-a-token")[0] == 401
    assert site.call("GET", "/api/tenants", READ_TOKEN)[0] == 200
    assert site.call("GET", "/api/tenants", ADMIN_TOKEN)[0] == 200  # admin can read
    status, answer, _ = site.call(
        "POST", "/api/tenants/acme/deletions", READ_TOKEN, {"mode": "logical", "learner_ids": ["x"]}
    )
    assert status == 403 and answer["error"] == "this call needs an admin token"
    # operations stay open
    assert site.call("GET", "/health")[1]["read_model"] is True
    assert site.call("GET", "/metrics")[0] == 200
    # tokens never reach the log
    log = site.worker.log_path.read_text()
    assert READ_TOKEN not in log and ADMIN_TOKEN not in log


def test_tenants_are_listed_with_their_utilization(site: Site) -> None:
    status, answer, _ = site.call("GET", "/api/tenants", READ_TOKEN)
    assert status == 200
    by_id = {t["tenant_id"]: t for t in answer["tenants"]}
    assert set(by_id) == set(LICENSES)
    for tenant, license_ in LICENSES.items():
        summary = by_id[tenant]
        active = CURRENT[tenant]
        assert summary["licensed"] is True
        assert summary["active_learners"] == active
        assert summary["learner_limit"] == license_["learner_limit"]
        assert summary["utilization_pct"] == pytest.approx(100 * active / license_["learner_limit"])
        assert summary["window"]["start"] == current_window(tenant)
    assert by_id["acme"]["total_learners"] == 13 + 7 + 4


def test_license_details_match_the_contract(site: Site) -> None:
    status, details, _ = site.call("GET", "/api/tenants/acme", READ_TOKEN)
    assert status == 200
    assert details["license"]["surcharge_pct"] == 0
    assert details["license"]["window_months"] == 12
    assert details["license"]["notify"] == ["admin@acme.example"]
    assert details["window"]["start"] == current_window("acme")
    assert details["window"]["months"] == 12
    assert (details["active_learners"], details["total_learners"]) == (13, 24)
    assert details["thresholds"] == [
        {"pct": 50, "learners": 10, "reached": True},
        {"pct": 100, "learners": 20, "reached": False},
    ]
    assert site.call("GET", "/api/tenants/globex", READ_TOKEN)[1]["license"]["surcharge_pct"] == 25
    assert site.call("GET", "/api/tenants/initech", READ_TOKEN)[1]["license"]["surcharge_pct"] == 50


def test_window_history_is_oldest_first_and_exact(site: Site) -> None:
    status, answer, _ = site.call("GET", "/api/tenants/acme/windows", READ_TOKEN)
    assert status == 200
    starts = [w["window"]["start"] for w in answer["windows"]]
    assert starts == sorted(starts)
    expected = {
        start: counts[0] for (tenant, start), counts in site.expected().items() if tenant == "acme"
    }
    live = {w["window"]["start"]: w["active_learners"] for w in answer["windows"]}
    assert {start: live.get(start) for start in expected} == expected
    assert sorted(expected.values()) == [4, 7, 13]


def test_bad_requests_get_a_one_line_4xx(site: Site) -> None:
    status, answer, _ = site.call("GET", "/api/tenants/nobody", READ_TOKEN)
    assert status == 404 and "nobody" in answer["error"]
    assert site.call("GET", "/api/tenants/nobody/windows", READ_TOKEN)[0] == 404
    for body, words in (
        ([1, 2], "JSON object"),
        ({"mode": "erase", "learner_ids": ["x"]}, "mode"),
        ({"mode": "preview"}, "older_than"),
        ({"mode": "preview", "learner_ids": ["x"], "tenant_id": "globex"}, "tenant_id"),
    ):
        status, answer, _ = site.call("POST", "/api/tenants/acme/deletions", ADMIN_TOKEN, body)
        assert status == 400, (body, answer)
        assert words in answer["error"] and "\n" not in answer["error"], answer
    status, answer, _ = site.call("GET", "/api/tenants/acme/deletions/no-such-request", READ_TOKEN)
    assert status == 404


def test_a_preview_answers_its_receipt_and_changes_nothing(site: Site) -> None:
    gone = {"acme-l0", "acme-l1", "acme-l2"}
    body = {"mode": "preview", "learner_ids": sorted(gone), "request_id": "web-preview-1"}
    status, receipt, _ = site.call("POST", "/api/tenants/acme/deletions", ADMIN_TOKEN, body)
    assert status == 200, receipt
    assert receipt["request_id"] == "web-preview-1" and receipt["mode"] == "preview"
    assert (receipt["attempts_affected"], receipt["learners_affected"]) == (3, 3)
    window = current_window("acme")
    assert [(w["start"], w["active_before"], w["active_after"]) for w in receipt["windows"]] == [
        (window, 13, 10)
    ]
    stored = site.call("GET", "/api/tenants/acme/deletions/web-preview-1", READ_TOKEN)
    assert stored[0] == 200 and stored[1] == receipt
    assert site.call("GET", "/api/tenants/acme", READ_TOKEN)[1]["active_learners"] == 13


def test_openapi_documents_every_call(site: Site) -> None:
    status, document, _ = site.call("GET", "/api/openapi.json", READ_TOKEN)
    assert status == 200 and document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {
        "/api/tenants",
        "/api/tenants/{tenant_id}",
        "/api/tenants/{tenant_id}/windows",
        "/api/tenants/{tenant_id}/deletions",
        "/api/tenants/{tenant_id}/deletions/{request_id}",
    }


def test_metrics_have_a_gauge_per_tenant(site: Site) -> None:
    _, text, _ = site.call("GET", "/metrics")
    for tenant, active in CURRENT.items():
        assert f'active_learners_tenant_active{{tenant="{tenant}"}} {active}.0' in text
    assert 'active_learners_tenant_limit{tenant="acme"} 20.0' in text
    assert 'active_learners_tenant_utilization_pct{tenant="initech"} 90.0' in text
    assert "active_learners_count_latency_seconds_bucket" in text
    # lag is measured every 15 s; everything was consumed, so each input topic's lag is 0
    wanted = [f'active_learners_consumer_lag{{topic="{t}"}} 0.0' for t in ("launches", "licenses")]
    wait_for(
        lambda: all(line in site.call("GET", "/metrics")[1] for line in wanted),
        60,
        "the consumer lag of launches and licenses to be measured as 0",
    )


def test_metrics_show_rocksdb_memory_by_table_and_kind(site: Site) -> None:
    """The worker holds attempts: their table's memtables are not empty, and every table has
    each kind of memory reported (sampled every 10 s)."""

    def rocksdb_lines() -> dict[tuple[str, str], float] | None:
        found = {}
        for line in site.call("GET", "/metrics")[1].splitlines():
            match = re.match(
                r'active_learners_rocksdb_memory_bytes\{kind="(\w+)",table="([\w-]+)"\} (\S+)',
                line,
            )
            if match:
                found[(match[2], match[1])] = float(match[3])
        return found if found.get(("attempts", "memtables"), 0) > 0 else None

    sizes = wait_for(rocksdb_lines, 60, "RocksDB's memory in /metrics")
    tables = ("attempts", "learner-state", "learner-groups", "erasures", "tenant-state")
    kinds = ("memtables", "table_readers")
    shared = {("all", "block_cache")}  # one cache for every table, counted once
    assert set(sizes) == {(table, kind) for table in tables for kind in kinds} | shared
    assert all(size >= 0 for size in sizes.values())
    assert sizes[("all", "block_cache")] <= site.worker.settings.rocksdb_block_cache_mb << 20
    text = site.call("GET", "/metrics")[1]
    in_use = re.search(r'^active_learners_malloc_bytes\{kind="in_use"\} (\S+)$', text, re.M)
    assert in_use and float(in_use[1]) > 1 << 20, "glibc malloc's bytes in use"
    blocks = re.search(r"^active_learners_python_allocated_blocks (\S+)$", text, re.M)
    assert blocks and float(blocks[1]) > 10_000, "Python's allocated blocks"


def test_every_table_is_opened_with_the_tuned_index_and_the_shared_cache(site: Site) -> None:
    """RocksDB writes the options a DB was opened with beside it: every partition DB of every
    table has the index restart interval of streams/worker/tables.py, not RocksDB's 1, keeps
    its index and filter blocks in the block cache, and that cache is the process's one, of
    ROCKSDB_BLOCK_CACHE_MB."""
    options = list(site.worker.settings.state_dir.rglob("OPTIONS-*"))
    assert len(options) >= 5 * 4, "a DB per table and partition"
    for path in options:
        text = path.read_text()
        assert "index_block_restart_interval=16" in text, path
        assert "cache_index_and_filter_blocks=true" in text, path
        assert "pin_l0_filter_and_index_blocks_in_cache=true" in text, path
        assert "target_file_size_base=8388608" in text, path
    # each DB's LOG names its block cache by address, with the cache's capacity
    caches: set[str] = set()
    for path in site.worker.settings.state_dir.rglob("LOG"):
        text = path.read_text(errors="replace")
        found = re.search(r"block_cache: (0x[0-9a-f]+)\n.*?capacity : (\d+)", text, re.S)
        assert found, path
        assert int(found[2]) == site.worker.settings.rocksdb_block_cache_mb << 20, path
        caches.add(found[1])
    assert len(caches) == 1, caches


# -- the dashboard, in headless Chromium ------------------------------------------------------


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium")
    if not path:
        pytest.fail("no chromium on this machine: `make test` installs Debian's chromium package")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=chromium_path(),
                headless=True,
                args=[
                    "--no-sandbox",  # root in CI containers
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                ],
            )
        except Error as exc:
            pytest.fail(f"headless Chromium did not start: {exc}", pytrace=False)
        yield chromium
        chromium.close()


def screenshot(page: Any, name: str, tmp: Path) -> None:
    folder = Path(os.environ.get("SCREENSHOTS_DIR") or tmp)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@contextmanager
def attacker_site(action: str, preview_id: str | None, csrf: str | None) -> Iterator[str]:
    """A page on another origin (another port) that posts the delete form as soon as it loads,
    the CSRF token included (as if it had leaked): the dashboard must refuse it by its origin."""
    html = f"""<!doctype html><form method=post action="{action}">
<input name=preview_request_id value="{preview_id}"><input name=confirm value=acme>
<input name=csrf value="{csrf}"></form><script>document.forms[0].submit()</script>""".encode()

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()


def sign_in(page: Any, site: Site, token: str) -> None:
    page.goto(site.base + "/")
    assert page.url.endswith("/signin")  # not signed in: sent to the form
    page.fill("input[name=token]", token)
    page.click("form[action='/signin'] button")
    page.wait_for_url(site.base + "/")


def test_the_dashboard_in_a_browser(site: Site, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()

    # a wrong token is refused on the sign-in form
    page.goto(site.base + "/signin")
    page.fill("input[name=token]", "not-a-token")
    page.click("form[action='/signin'] button")
    assert "That token is not valid." in page.inner_text(".error")

    # the overview: every tenant, by utilization, highest first
    sign_in(page, site, READ_TOKEN)
    rows = page.locator("tbody tr")
    tenants = [rows.nth(i).locator("td").first.inner_text().split()[0] for i in range(rows.count())]
    assert tenants == ["initech", "acme", "globex"]
    assert "90.0 %" in rows.nth(0).inner_text()
    screenshot(page, "overview", tmp_path)

    # one tenant: license details, a bar per window with learners, the limit line
    page.click("a[href='/tenants/acme']")
    page.wait_for_url(site.base + "/tenants/acme")
    assert page.inner_text("h1") == "acme"
    cards = page.inner_text(".grid")
    assert "13" in cards and "24" in cards and "65.0 %" in cards
    license_table = page.inner_text("table >> nth=0")
    assert "12 months (surcharge 0 %)" in license_table
    assert "50 % = 10 \u2713 reached" in license_table
    windows = site.call("GET", "/api/tenants/acme/windows", READ_TOKEN)[1]["windows"]
    assert page.locator("svg rect.bar").count() == len(windows) >= 3
    figures = page.locator("svg text.value").all_text_contents()
    assert figures == [str(w["active_learners"]) for w in windows]
    assert "limit" in (page.text_content("div.card svg") or "")

    # the reports: the window's growth with its projection, the advisor, teams, counted learners
    assert page.locator("#growth polyline.daily").count() == 1
    assert page.locator("#growth line.projection").count() == 1
    assert "projected at the window's end" in page.inner_text("main")
    advisor_rows = page.locator("#advisor tbody tr")
    assert advisor_rows.count() >= 12
    # 13 active learners against a limit of 20: nothing to recommend, and the table says why
    assert "Under the limit already: no deletion is needed." in page.inner_text("#advisor")
    assert "the smallest deletion under the limit" not in page.inner_text("#advisor")
    assert "sales" in page.inner_text("#groups") and "in no team" in page.inner_text("#groups")
    learners = page.locator("#learners tbody tr")
    assert learners.count() == 13
    assert learners.first.locator("td").first.inner_text() == "acme-l0"
    with page.expect_download() as download:
        page.click("#learners-csv")
    rows = download.value.path().read_text().splitlines()
    assert rows[0].startswith("learner_id,first_attempt_at") and len(rows) == 1 + 13

    # a read token is offered neither previews nor deletions
    assert page.locator("#preview").count() == 0
    assert "Previews and deletions need an admin token" in page.inner_text("main")

    # an admin: sign out, sign in
    page.click("header button")  # sign out
    page.wait_for_url(site.base + "/signin")
    sign_in(page, site, ADMIN_TOKEN)
    page.goto(site.base + "/tenants/acme")

    # a preview by date: the earlier windows would be emptied
    before = (NOW - timedelta(days=100)).date().isoformat()
    page.fill("#preview input[name=older_than]", before)
    page.click("#preview button")
    result = page.inner_text(".result")
    assert "would delete 11 attempts of 11 learners" in result
    earlier = sorted(w["window"]["start"] for w in windows)[:2]
    assert f"window {earlier[0]}: 4 \u2192 0" in result
    assert f"window {earlier[1]}: 7 \u2192 0" in result

    # a preview from the form shows each window's before -> after, and changes nothing
    page.fill("#preview textarea[name=learner_ids]", "acme-l0\nacme-l1")
    page.click("#preview button")
    result = page.inner_text(".result")
    assert "would delete 2 attempts of 2 learners" in result
    assert f"window {current_window('acme')}: 13 \u2192 11" in result
    screenshot(page, "tenant", tmp_path)

    # a preview by team
    page.fill("#preview textarea[name=teams]", "sales")
    page.click("#preview button")
    assert "would delete 4 attempts of 4 learners" in page.inner_text(".result")

    # the delete form deletes what the preview showed
    def preview_acme_l0() -> None:
        page.goto(site.base + "/tenants/acme")
        page.fill("#preview textarea[name=learner_ids]", "acme-l0")
        page.fill("#preview input[name=reason]", "left the company")
        page.click("#preview button")
        assert "would delete 1 attempts of 1 learners" in page.inner_text(".result")

    preview_acme_l0()
    # a page on another origin posts the delete form in the admin's browser: refused
    preview_id = page.get_attribute("#delete input[name=preview_request_id]", "value")
    csrf = page.get_attribute("#delete input[name=csrf]", "value")
    with attacker_site(site.base + "/tenants/acme/delete", preview_id, csrf) as evil:
        other = context.new_page()  # the same browser: the admin's session cookie
        other.goto(evil)
        other.wait_for_url(site.base + "/tenants/acme/delete")
        assert "a form posted from another site is refused" in other.inner_text(".error")
        other.close()
    assert site.call("GET", "/api/tenants/acme", READ_TOKEN)[1]["active_learners"] == 13

    # the tenant id must be typed
    page.fill("#delete input[name=confirm]", "acme-typo")
    page.click("#delete button")
    assert "type acme to confirm the deletion" in page.inner_text(".error")
    preview_acme_l0()
    page.fill("#delete input[name=confirm]", "acme")
    page.click("#delete button")
    assert "deleted 1 attempts of 1 learners" in page.inner_text(".result")
    audit = page.inner_text("#audit")
    assert "physical" in audit and "ops" in audit and "left the company" in audit

    expected = site.expected({"acme-l0"})[("acme", current_window("acme"))][0]
    assert expected == 12
    wait_for(
        lambda: site.call("GET", "/api/tenants/acme", READ_TOKEN)[1]["active_learners"] == expected,
        60,
        "acme's Active Learners to drop after the physical deletion",
    )
    page.goto(site.base + "/tenants/acme")
    assert "12" in page.inner_text(".grid")
    context.close()


# -- last: it crashes the broker -------------------------------------------------------------


@pytest.mark.skipif(not local_broker(), reason="crashes and restarts the local broker")
def test_a_deletion_in_a_broker_outage_answers_503_and_is_carried_out_later(
    site: Site, broker: Settings
) -> None:
    body = {"mode": "preview", "learner_ids": ["acme-l5"], "request_id": "in-an-outage"}
    kafka("crash")
    try:
        status, answer, _ = site.call("POST", "/api/tenants/acme/deletions", ADMIN_TOKEN, body)
    finally:
        kafka("start")
    assert status == 503, answer
    assert "in-an-outage" in answer["error"] and "\n" not in answer["error"]
    wait_for(lambda: broker_answers(broker), 120, "the broker back")

    # the send went on in the worker: the request is carried out once Kafka is back
    def receipt() -> dict[str, Any] | None:
        if not site.worker.alive():
            pytest.fail(f"the worker died:\n{site.worker.log_tail()}")
        status, answer, _ = site.call("GET", "/api/tenants/acme/deletions/in-an-outage", READ_TOKEN)
        return answer if status == 200 else None

    stored = wait_for(receipt, 180, "the receipt of the request sent during the outage")
    assert stored["learners_affected"] == 1, stored
