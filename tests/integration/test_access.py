"""Every rule of the contract's "HTTP API → Access" and the deletion guard rails, against a real
worker on a real broker, over real HTTP.

Two workers: one with named tokens (a tokens file scoped to tenants, env tokens for every
tenant, a metrics token), bound to 0.0.0.0 so that requests can come from several loopback
addresses (the failure limiter counts per address); and one in open mode.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import admin_client, ensure_topics
from streams.tools.worker_process import free_port
from tests.integration.harness import WorkerProcess, produce_json, wait_for

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
ADMIN = "admin-secret-for-every-tenant-0123456789"
VIEWER = "viewer-secret-for-every-tenant-012345678"
ACME_ADMIN = "acme-admin-secret-from-the-tokens-file-0123"
ACME_VIEWER = "acme-viewer-secret-from-the-tokens-file-012"
METRICS = "metrics-secret-0123456789abcdef0123456789"
LICENSES = [
    {"tenant_id": t, "cycle_start": "2020-01-01", "window_months": 12, "learner_limit": 100}
    for t in ("acme", "globex")
]


def launches() -> list[dict[str, Any]]:
    """acme: 10 learners this window; globex: 3."""
    records = []
    for tenant, learners in (("acme", 10), ("globex", 3)):
        for number in range(learners):
            records.append(
                {
                    "event_id": f"{tenant}-{number}",
                    "tenant_id": tenant,
                    "learner_id": f"l{number}",
                    "element_id": "course",
                    "attempt_id": f"a{number}",
                    "launched_at": (NOW - timedelta(hours=number + 1)).isoformat(),
                    "content_type": "scorm",
                }
            )
    return records


def tokens_file(path: Path, **secrets: tuple[str, str, list[str]]) -> None:
    """name -> (secret, role, tenants), stored as the contract says: only the SHA-256."""
    entries = [
        {
            "name": name,
            "sha256": hashlib.sha256(secret.encode()).hexdigest(),
            "role": role,
            "tenants": tenants,
        }
        for name, (secret, role, tenants) in secrets.items()
    ]
    path.write_text(json.dumps({"tokens": entries}))


@dataclass
class Answer:
    status: int
    body: Any
    headers: http.client.HTTPMessage

    @property
    def error(self) -> str:
        return str(self.body.get("error")) if isinstance(self.body, dict) else ""


@dataclass
class Server:
    worker: WorkerProcess
    tokens_path: Path | None

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        source: str = "127.0.0.1",
        host: str = "localhost",
        content_type: str = "application/json",
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request from the loopback address `source`, with `Host: host:port`."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.worker.web_port, timeout=90, source_address=(source, 0)
        )
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        sent = {"Host": f"{host}:{self.worker.web_port}", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if data is not None:
            sent["Content-Type"] = content_type
        try:
            connection.request(method, path, body=data, headers=sent)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        try:
            decoded: Any = json.loads(text)
        except ValueError:
            decoded = text
        return Answer(response.status, decoded, response.headers)


def start(
    broker: Settings, folder: Path, name: str, env: dict[str, str], tokens_path: Path | None
) -> Server:
    settings = replace(
        broker,
        topic_prefix=f"test-access-{name}-{os.getpid()}-",
        state_dir=folder / name,
        partitions=2,
    )
    ensure_topics(settings)
    produce_json(settings, "licenses", LICENSES)
    produce_json(settings, "launches", launches())
    worker = WorkerProcess(settings, folder / f"{name}.log", extra_env=env).start()
    server = Server(worker, tokens_path)
    token = ADMIN if env.get("API_ADMIN_TOKENS") else None

    def counted() -> bool:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        try:
            answer = server.call("GET", "/api/tenants", token)
        except OSError:
            return False
        active = {t["tenant_id"]: t["active_learners"] for t in answer.body.get("tenants", [])}
        return answer.status == 200 and active == {"acme": 10, "globex": 3}

    wait_for(counted, 180, f"the {name} worker's counts")
    return server


@pytest.fixture(scope="module")
def secured(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("access")
    tokens_path = folder / "tokens.json"
    tokens_file(
        tokens_path,
        acme_admin=(ACME_ADMIN, "admin", ["acme"]),
        acme_viewer=(ACME_VIEWER, "read", ["acme"]),
    )
    env = {
        "API_TOKENS_FILE": str(tokens_path),
        "API_ADMIN_TOKENS": f"ops:{ADMIN}",
        "API_READ_TOKENS": f"viewer:{VIEWER}",
        "METRICS_TOKEN": METRICS,
        "WEB_HOST": "0.0.0.0",
        "WEB_ALLOWED_HOSTS": "localhost,127.0.0.1",
        "DELETION_MAX_SHARE": "50",
    }
    server = start(broker, folder, "secured", env, tokens_path)
    try:
        yield server
    finally:
        server.worker.stop()


@pytest.fixture(scope="module")
def open_mode(broker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("open")
    server = start(broker, folder, "open", {"WEB_HOST": "0.0.0.0"}, None)
    try:
        yield server
    finally:
        server.worker.stop()


# -- tokens ---------------------------------------------------------------------------------------


def test_every_api_call_needs_a_valid_token(secured: Server) -> None:
    for path in ("/api/tenants", "/api/tenants/acme", "/api/openapi.json", "/"):
        answer = secured.call("GET", path)
        assert answer.status in (401, 303), (path, answer.status)
    answer = secured.call("GET", "/api/tenants", "x" * 40)
    assert answer.status == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer token" in answer.error
    assert secured.call("GET", "/api/tenants", VIEWER).status == 200
    log = secured.worker.log_text()
    assert "refused a bearer token from 127.0.0.1" in log
    for secret in (ADMIN, VIEWER, ACME_ADMIN, ACME_VIEWER, METRICS, "x" * 40):
        assert secret not in log, "no secret ever reaches the log"


def test_a_read_token_reads_but_never_asks_for_a_deletion(secured: Server) -> None:
    for mode in ("preview", "physical", "logical"):
        answer = secured.call(
            "POST", "/api/tenants/acme/deletions", VIEWER, {"mode": mode, "learner_ids": ["l1"]}
        )
        assert answer.status == 403 and answer.error == "this call needs an admin token"
    # whatever the body: the call itself is an admin call
    answer = secured.call("POST", "/api/tenants/acme/deletions", VIEWER, {"mode": "erase"})
    assert answer.status == 403
    preview = {"mode": "preview", "learner_ids": ["l1"]}
    answer = secured.call("POST", "/api/tenants/acme/deletions", ADMIN, preview)
    assert answer.status == 200 and answer.body["requested_by"] == "ops"


def test_a_token_sees_only_its_tenants(secured: Server) -> None:
    listed = secured.call("GET", "/api/tenants", ACME_VIEWER).body["tenants"]
    assert [t["tenant_id"] for t in listed] == ["acme"]
    assert secured.call("GET", "/api/tenants/acme", ACME_VIEWER).status == 200
    hidden = secured.call("GET", "/api/tenants/globex", ACME_VIEWER)
    missing = secured.call("GET", "/api/tenants/nobody", ACME_VIEWER)
    assert hidden.status == missing.status == 404
    assert hidden.error.replace("globex", "T") == missing.error.replace("nobody", "T")
    for path in ("/windows", "/deletions", "/deletions/some-request"):
        assert secured.call("GET", "/api/tenants/globex" + path, ACME_VIEWER).status == 404
    body = {"mode": "preview", "learner_ids": ["l1"]}
    assert secured.call("POST", "/api/tenants/globex/deletions", ACME_ADMIN, body).status == 404
    # the dashboard too: the overview lists acme only, globex's page is a 404
    overview = secured.call("GET", "/", ACME_VIEWER)
    assert overview.status == 200 and "/tenants/acme" in overview.body
    assert "globex" not in overview.body
    assert secured.call("GET", "/tenants/globex", ACME_VIEWER).status == 404


def test_tokens_rotate_without_a_restart(secured: Server) -> None:
    assert secured.tokens_path is not None
    rotated = "acme-viewer-rotated-secret-0123456789abcdef"
    tokens_file(
        secured.tokens_path,
        acme_admin=(ACME_ADMIN, "admin", ["acme"]),
        acme_viewer=(rotated, "read", ["acme"]),
    )
    try:
        assert secured.call("GET", "/api/tenants/acme", rotated).status == 200
        assert secured.call("GET", "/api/tenants/acme", ACME_VIEWER).status == 401
    finally:
        tokens_file(
            secured.tokens_path,
            acme_admin=(ACME_ADMIN, "admin", ["acme"]),
            acme_viewer=(ACME_VIEWER, "read", ["acme"]),
        )
    wait_for(
        lambda: secured.call("GET", "/api/tenants/acme", ACME_VIEWER).status == 200,
        10,
        "the restored tokens file to be read again",
    )


def test_ten_failures_from_one_address_get_429_for_a_minute(secured: Server) -> None:
    for _ in range(10):
        assert secured.call("GET", "/api/tenants", "w" * 40, source="127.0.0.2").status == 401
    blocked = secured.call("GET", "/api/tenants", VIEWER, source="127.0.0.2")
    assert blocked.status == 429 and 0 < int(blocked.headers["Retry-After"]) <= 61
    assert secured.call("GET", "/api/tenants", VIEWER, source="127.0.0.3").status == 200
    assert secured.call("GET", "/health", source="127.0.0.2").status == 200, "probes stay open"
    assert "refused a bearer token from 127.0.0.2" in secured.worker.log_text()


def test_a_signed_in_browser_is_not_locked_out_by_failures_from_its_address(
    secured: Server,
) -> None:
    # admins behind one NAT address share it with whoever fails there
    office = "127.0.0.4"
    form = secured.call("GET", "/signin", source=office)
    pre = cookies_of(form)["al_form"].value
    signed = secured.call(
        "POST",
        "/signin",
        raw=urlencode({"token": ADMIN, "csrf": csrf_in(form.body)}).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"Cookie": f"al_form={pre}"},
        source=office,
    )
    session = {"Cookie": f"al_session={cookies_of(signed)['al_session'].value}"}
    for _ in range(10):
        assert secured.call("GET", "/api/tenants", "v" * 40, source=office).status == 401
    assert secured.call("GET", "/api/tenants", VIEWER, source=office).status == 429
    assert secured.call("GET", "/signin", source=office).status == 429, "no new sign-in"
    page = secured.call("GET", "/tenants/acme", headers=session, source=office)
    assert page.status == 200 and "ops" in page.body, "the session goes on"
    # but a session is no licence to guess: a secret sent beside it is still blocked
    guess = {**session, "Authorization": "Bearer " + "g" * 40}
    assert secured.call("GET", "/api/tenants", headers=guess, source=office).status == 429
    sign_in_again = secured.call(
        "POST",
        "/signin",
        raw=urlencode({"token": "g" * 40, "csrf": csrf_in(page.body)}).encode(),
        content_type="application/x-www-form-urlencoded",
        headers=session,
        source=office,
    )
    assert sign_in_again.status == 429
    refused = secured.worker.log_text().count("refused a bearer token from 127.0.0.4 ")
    assert refused == 10, "the guess beside the session was never checked"
    made_up = {"Cookie": "al_session=" + "x" * 43}
    assert secured.call("GET", "/tenants/acme", headers=made_up, source=office).status == 429


# -- requests the server refuses before anything else --------------------------------------------


def test_a_foreign_host_gets_400(secured: Server) -> None:
    for path in ("/api/tenants", "/", "/health", "/no-such-page"):
        answer = secured.call("GET", path, VIEWER, host="evil.example")
        assert answer.status == 400 and "unknown host" in answer.error, path
    assert secured.call("GET", "/api/tenants", VIEWER, host="127.0.0.1").status == 200


def test_a_post_that_is_not_json_gets_415_and_bad_json_400(secured: Server) -> None:
    body = json.dumps({"mode": "preview", "learner_ids": ["l1"]}).encode()
    answer = secured.call(
        "POST", "/api/tenants/acme/deletions", ADMIN, raw=body, content_type="text/plain"
    )
    assert answer.status == 415 and "application/json" in answer.error
    for raw in (b"{not json", b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"):
        answer = secured.call("POST", "/api/tenants/acme/deletions", ADMIN, raw=raw)
        assert answer.status == 400 and "not JSON" in answer.error


def test_answers_carry_the_security_headers(secured: Server) -> None:
    page = secured.call("GET", "/", VIEWER)
    policy = page.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy and "script-src" not in policy
    assert "default-src 'none'" in policy
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "same-origin"
    api = secured.call("GET", "/api/tenants", VIEWER)
    assert api.headers["X-Content-Type-Options"] == "nosniff"


# -- operations ----------------------------------------------------------------------------------


def test_health_ready_and_metrics(secured: Server) -> None:
    assert secured.call("GET", "/health").status == 200
    ready = secured.call("GET", "/ready")
    assert ready.status == 200 and ready.body["partitions_restored"] is True
    assert secured.call("GET", "/metrics").status == 401
    assert secured.call("GET", "/metrics", VIEWER).status == 401, "API tokens are not it"
    metrics = secured.call("GET", "/metrics", METRICS)
    assert metrics.status == 200 and "active_learners_" in metrics.body


def test_ready_is_503_until_the_partitions_are_restored(broker: Settings, tmp_path: Path) -> None:
    settings = replace(broker, topic_prefix=f"test-ready-{os.getpid()}-", state_dir=tmp_path / "s")
    ensure_topics(settings)
    worker = WorkerProcess(settings, tmp_path / "ready.log").start()
    server = Server(worker, None)
    seen: set[int] = set()

    def ready() -> bool:
        if not worker.alive():
            raise AssertionError(f"the worker died:\n{worker.log_tail()}")
        try:
            status = server.call("GET", "/ready").status
        except OSError:
            return False
        seen.add(status)
        return status == 200

    try:
        wait_for(ready, 180, "/ready to answer 200", interval_s=0.05)
    finally:
        worker.stop()
    assert 503 in seen, "the web server answers before the partitions are restored: 503 then"


# -- dashboard sessions ----------------------------------------------------------------------------


def form_post(server: Server, path: str, fields: dict[str, str], cookies: dict[str, str]) -> Answer:
    return server.call(
        "POST",
        path,
        raw=urlencode(fields).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())},
    )


def cookies_of(answer: Answer) -> dict[str, Any]:
    jar: SimpleCookie = SimpleCookie()
    for header in answer.headers.get_all("Set-Cookie") or []:
        jar.load(header)
    return {name: morsel for name, morsel in jar.items()}


def csrf_in(html: str) -> str:
    marker = 'name="csrf" value="'
    return html[html.index(marker) + len(marker) :].split('"')[0]


def test_sign_in_exchanges_the_secret_for_a_session(secured: Server) -> None:
    form = secured.call("GET", "/signin")
    pre = cookies_of(form)["al_form"]
    assert pre["httponly"] and pre["samesite"] == "Strict"
    csrf = csrf_in(form.body)
    assert csrf == pre.value

    without_csrf = form_post(secured, "/signin", {"token": ADMIN}, {"al_form": pre.value})
    assert without_csrf.status == 403 and "CSRF" in without_csrf.body
    signed = form_post(secured, "/signin", {"token": ADMIN, "csrf": csrf}, {"al_form": pre.value})
    assert signed.status == 303 and signed.headers["Location"] == "/"
    session = cookies_of(signed)["al_session"]
    assert session["httponly"] and session["samesite"] == "Strict" and not session["secure"]
    assert int(session["max-age"]) == 8 * 3600
    assert ADMIN not in session.value and ADMIN not in str(signed.headers)

    jar = {"al_session": session.value}
    page = secured.call("GET", "/tenants/acme", headers={"Cookie": f"al_session={session.value}"})
    assert page.status == 200 and "ops" in page.body
    session_csrf = csrf_in(page.body)
    preview = {"older_than": "", "learner_ids": "l2", "csrf": session_csrf}
    assert form_post(secured, "/tenants/acme/preview", {**preview, "csrf": "x"}, jar).status == 403
    answer = form_post(secured, "/tenants/acme/preview", preview, jar)
    assert answer.status == 200 and "would delete 1 attempts of 1 learners" in answer.body

    # sign-out ends the session: the same cookie is sent to the sign-in form afterwards
    out = form_post(secured, "/signout", {"csrf": session_csrf}, jar)
    assert out.status == 303 and out.headers["Location"] == "/signin"
    again = secured.call("GET", "/tenants/acme", headers={"Cookie": f"al_session={session.value}"})
    assert again.status == 303 and again.headers["Location"] == "/signin"


def test_over_tls_the_cookies_are_host_only_and_a_bare_name_is_not_a_session(
    secured: Server,
) -> None:
    tls = {"X-Forwarded-Proto": "https"}  # as a TLS-terminating proxy says it
    form = secured.call("GET", "/signin", headers=tls)
    pre = cookies_of(form)["__Host-al_form"]
    assert pre["secure"] and pre["path"] == "/" and not pre["domain"]
    csrf = csrf_in(form.body)
    signed = secured.call(
        "POST",
        "/signin",
        raw=urlencode({"token": ADMIN, "csrf": csrf}).encode(),
        content_type="application/x-www-form-urlencoded",
        headers={**tls, "Cookie": f"__Host-al_form={pre.value}"},
    )
    assert signed.status == 303
    session = cookies_of(signed)["__Host-al_session"]
    assert session["secure"] and session["path"] == "/" and session["httponly"]
    assert "al_session" not in cookies_of(signed), "only the host-only name"

    host_only = {**tls, "Cookie": f"__Host-al_session={session.value}"}
    assert secured.call("GET", "/tenants/acme", headers=host_only).status == 200
    # the bare name is what a sibling subdomain could plant: over TLS it is no session
    planted = {**tls, "Cookie": f"al_session={session.value}"}
    answer = secured.call("GET", "/tenants/acme", headers=planted)
    assert answer.status == 303 and answer.headers["Location"] == "/signin"

    page = secured.call("GET", "/tenants/acme", headers=host_only)
    out = secured.call(
        "POST",
        "/signout",
        raw=urlencode({"csrf": csrf_in(page.body)}).encode(),
        content_type="application/x-www-form-urlencoded",
        headers=host_only,
    )
    assert out.status == 303
    removed = cookies_of(out)["__Host-al_session"]
    assert removed["secure"] and removed.value == "" and removed["max-age"] == "0"


# -- the deletion guard rails and the audit trail --------------------------------------------------


def test_a_physical_deletion_needs_a_matching_recent_preview(secured: Server) -> None:
    path = "/api/tenants/acme/deletions"
    delete = {"mode": "physical", "learner_ids": ["l9"], "reason": "left the company"}
    answer = secured.call("POST", path, ADMIN, delete)
    assert answer.status == 409 and "preview_request_id" in answer.error

    other = secured.call("POST", path, ADMIN, {"mode": "preview", "learner_ids": ["l8"]})
    assert other.status == 200
    mismatched = {**delete, "preview_request_id": other.body["request_id"]}
    answer = secured.call("POST", path, ADMIN, mismatched)
    assert answer.status == 409 and "other attempts" in answer.error

    preview = secured.call(
        "POST", path, ADMIN, {"mode": "preview", "learner_ids": ["l9"], "request_id": "g-p1"}
    )
    assert preview.status == 200 and preview.body["attempts_affected"] == 1
    done = secured.call(
        "POST", path, ADMIN, {**delete, "preview_request_id": "g-p1", "request_id": "g-d1"}
    )
    assert done.status == 200, done.body
    assert (done.body["mode"], done.body["attempts_affected"]) == ("physical", 1)
    assert done.body["requested_by"] == "ops" and done.body["reason"] == "left the company"
    assert done.body["selector"] == {"kind": "learner_ids", "values": ["l9"]}

    # the same request again is answered with its receipt; another under its id is a 409
    again = secured.call(
        "POST", path, ADMIN, {**delete, "preview_request_id": "g-p1", "request_id": "g-d1"}
    )
    assert again.status == 200 and again.body == done.body
    reused = secured.call(
        "POST",
        path,
        ADMIN,
        {"mode": "physical", "learner_ids": ["l7"], "request_id": "g-d1"},
    )
    assert reused.status == 409 and "already used for another request" in reused.error

    # the audit trail: newest first, who and why
    trail = secured.call("GET", path + "?limit=2", VIEWER)
    assert trail.status == 200
    assert [r["request_id"] for r in trail.body["deletions"]] == ["g-d1", "g-p1"]
    assert secured.call("GET", path + "?limit=zero", VIEWER).status == 400


def test_a_large_deletion_needs_force(secured: Server) -> None:
    path = "/api/tenants/globex/deletions"
    everyone = {"mode": "physical", "older_than": NOW.isoformat()}
    preview = secured.call("POST", path, ADMIN, {**everyone, "mode": "preview"})
    assert preview.status == 200 and preview.body["attempts_affected"] == 3
    body = {**everyone, "preview_request_id": preview.body["request_id"]}
    refused = secured.call("POST", path, ADMIN, body)
    assert refused.status == 409 and '"force": true' in refused.error
    assert "100 %" in refused.error and "DELETION_MAX_SHARE=50" in refused.error
    assert secured.call("POST", path, ADMIN, {**body, "force": "yes"}).status == 400
    forced = secured.call("POST", path, ADMIN, {**body, "force": True})
    assert forced.status == 200 and forced.body["attempts_affected"] == 3
    wait_for(
        lambda: secured.call("GET", "/api/tenants/globex", ADMIN).body["active_learners"] == 0,
        60,
        "globex's count to drop to 0",
    )


def test_receipts_are_kept_for_ever(secured: Server) -> None:
    settings = secured.worker.settings
    admin = admin_client(settings)
    try:
        name = settings.topic(topics.DELETION_RECEIPTS)
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
    finally:
        admin.close()
    configs = {key: entry["value"] for key, entry in described["topic"][name].items()}
    assert configs["retention.ms"] == "-1" and configs["cleanup.policy"] == "delete"


# -- open mode -------------------------------------------------------------------------------------


def test_open_mode_reads_and_previews_but_never_deletes(open_mode: Server) -> None:
    assert open_mode.call("GET", "/api/tenants").status == 200
    path = "/api/tenants/acme/deletions"
    preview = open_mode.call("POST", path, body={"mode": "preview", "learner_ids": ["l1"]})
    assert preview.status == 200 and preview.body["requested_by"] == "open-mode"
    for mode in ("physical", "logical"):
        answer = open_mode.call("POST", path, body={"mode": mode, "learner_ids": ["l1"]})
        assert answer.status == 403 and "configure an admin token to delete" in answer.error
    assert open_mode.call("GET", "/", host="evil.example").status == 400
    log = open_mode.worker.log_text()
    assert "WARNING" in log and "open mode, bound to 127.0.0.1" in log


def test_open_mode_binds_127_0_0_1_even_when_web_host_says_otherwise(open_mode: Server) -> None:
    connection = http.client.HTTPConnection("127.0.0.2", open_mode.worker.web_port, timeout=5)
    with pytest.raises(ConnectionRefusedError):
        connection.request("GET", "/health")
    connection.close()


def test_what_the_security_review_found_stays_fixed(secured: Server, broker: Settings) -> None:
    # faust's own table and router views answer no one
    for path in ("/table/", "/router/", "/table/attempts/x/"):
        assert secured.call("GET", path, ADMIN).status == 404, path
    # aiohttp's own answers under /api are the contract's JSON errors, without version banners
    missing = secured.call("GET", "/api/no-such-call", VIEWER)
    assert (
        missing.status == 404 and missing.error and missing.headers["Server"] == "active-learners"
    )
    # a Host with text after its brackets is no host
    assert secured.call("GET", "/api/tenants", VIEWER, host="[127.0.0.1]evil.com").status == 400
    # an instant before the year 1 in UTC, and a limit in other digits, are 400s, not 500s
    body = {"mode": "preview", "older_than": "0001-01-01T00:00:00+14:00"}
    assert secured.call("POST", "/api/tenants/acme/deletions", ADMIN, body).status == 400
    assert secured.call("GET", "/api/tenants/acme/deletions?limit=%C2%B2", VIEWER).status == 400
    # a selector too big for one request is refused before it is sent
    huge = {"mode": "preview", "learner_ids": [f"learner-{n:08d}-{'x' * 200}" for n in range(3000)]}
    answer = secured.call("POST", "/api/tenants/acme/deletions", ADMIN, huge)
    assert answer.status == 400 and "split the request" in answer.error
    # a tokens variable of nothing but commas never starts an open worker on every interface
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TOPIC_PREFIX": f"test-commas-{os.getpid()}-",
        "API_ADMIN_TOKENS": ",",
        "WEB_HOST": "0.0.0.0",
        "WEB_PORT": str(free_port()),
    }
    started = subprocess.run(
        [sys.executable, "-m", "streams", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 1 and "holds no token" in started.stderr
