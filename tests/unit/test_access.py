"""Who may call what: named tokens, the failure limiter, sessions, hosts, and the guard rails of
a physical deletion through the API (pure logic, no broker; the rules run against a real worker
in tests/integration/test_access.py)."""

from __future__ import annotations

import hashlib
import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from streams.config.settings import ConfigError, Settings
from streams.http import api
from streams.http.access import (
    OPEN,
    Caller,
    Sessions,
    deletion_refusal,
    host_allowed,
    host_name,
    is_json,
)
from streams.http.read_model import ReadModel
from streams.http.tokens import TokenBook
from streams.worker.failed_secrets import FailureLimiter, bearer

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
READ = "r" * 32
ADMIN = "a" * 40


def sha(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def tokens_file(path: Path, *tokens: dict[str, object]) -> Path:
    path.write_text(json.dumps({"tokens": list(tokens)}))
    return path


def test_env_tokens_have_names_roles_and_every_tenant() -> None:
    book = TokenBook.from_env(
        {"API_READ_TOKENS": f"viewer:{READ}", "API_ADMIN_TOKENS": f"ops:{ADMIN}"}
    )
    viewer, ops = book.find(READ), book.find(ADMIN)
    assert viewer is not None and viewer.name == "viewer" and not viewer.admin
    assert ops is not None and ops.admin and ops.sees("any-tenant")
    assert book.find("r" * 31) is None and book.find(None) is None
    assert READ not in book.describe() and "1 read, 1 admin" in book.describe()


@pytest.mark.parametrize(
    "env, words",
    [
        ({"API_ADMIN_TOKENS": "ops:short"}, "at least 32"),
        ({"API_ADMIN_TOKENS": ADMIN}, "name:secret"),
        ({"API_READ_TOKENS": f"ops:{READ}", "API_ADMIN_TOKENS": f"ops:{ADMIN}"}, "two tokens"),
        ({"API_TOKENS_FILE": "/nonexistent/tokens.json"}, "cannot read"),
    ],
)
def test_bad_token_settings_stop_the_worker_with_one_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        TokenBook.from_env(env)
    assert words in str(info.value) and "\n" not in str(info.value)
    assert ADMIN not in str(info.value), "a secret never appears in an error"


def test_a_tokens_file_scopes_tenants_and_is_reread_when_it_changes(tmp_path: Path) -> None:
    path = tokens_file(
        tmp_path / "tokens.json",
        {"name": "acme-admin", "sha256": sha(ADMIN), "role": "admin", "tenants": ["acme"]},
    )
    book = TokenBook.from_env({"API_TOKENS_FILE": str(path)})
    token = book.find(ADMIN)
    assert token is not None and token.sees("acme") and not token.sees("globex")
    # rotation: the old secret goes, a new one comes, no restart
    new_secret = "n" * 48
    tokens_file(path, {"name": "acme-admin", "sha256": sha(new_secret), "role": "admin",
                       "tenants": ["acme"], "comment": "rotated"})  # fmt: skip
    assert book.find(ADMIN) is None and book.find(new_secret) is not None
    # a broken file fails closed: no token of it is accepted until it is fixed
    path.write_text("{not json")
    assert book.find(new_secret) is None
    assert book.configured, "a broken file never turns the service into open mode"


def test_a_reread_tokens_file_cannot_give_a_name_to_a_second_token(tmp_path: Path) -> None:
    """A name signs the deletions a token asks for (requested_by): a file re-read later that
    reuses another token's name is refused whole, as at start."""
    path = tokens_file(tmp_path / "tokens.json")
    book = TokenBook.from_env({"API_ADMIN_TOKENS": "ops:" + ADMIN, "API_TOKENS_FILE": str(path)})
    reader = "r" * 40
    tokens_file(path, {"name": "ops", "sha256": sha(reader), "role": "read", "tenants": ["acme"]})
    names = [token.name for token in book.tokens()]
    assert names == ["ops"]  # the admin token only: the file's tokens are refused
    assert book.find(reader) is None and book.find(ADMIN) is not None


@pytest.mark.parametrize(
    "entry, words",
    [
        ({"name": "x", "sha256": "abc", "role": "admin", "tenants": ["*"]}, "64 hex"),
        ({"name": "x", "sha256": sha(ADMIN), "role": "owner", "tenants": ["*"]}, "read or admin"),
        ({"name": "x", "sha256": sha(ADMIN), "role": "read", "tenants": []}, "tenants"),
        ({"name": "bad name", "sha256": sha(ADMIN), "role": "read", "tenants": ["*"]}, "name"),
    ],
)
def test_a_bad_tokens_file_names_its_problem(
    tmp_path: Path, entry: dict[str, object], words: str
) -> None:
    path = tokens_file(tmp_path / "tokens.json", entry)
    with pytest.raises(ConfigError, match=words):
        TokenBook.from_env({"API_TOKENS_FILE": str(path)})


def test_open_mode_binds_locally_and_reads_and_previews_only() -> None:
    open_settings = Settings.from_env({"WEB_HOST": "0.0.0.0"})
    assert open_settings.web_bind == "127.0.0.1", "without tokens, never beyond this host"
    secured = Settings.from_env({"WEB_HOST": "0.0.0.0", "API_ADMIN_TOKENS": f"ops:{ADMIN}"})
    assert secured.web_bind == "0.0.0.0"
    assert secured.advertised_host == socket.gethostname(), "bound to every interface"
    assert set(secured.allowed_hosts) == {
        "localhost",
        "127.0.0.1",
        "0.0.0.0",
        socket.gethostname().lower(),
    }
    listed = Settings.from_env({"WEB_ALLOWED_HOSTS": "Al.Example.com", "WEB_ADVERTISED_HOST": "w1"})
    assert listed.allowed_hosts == ("al.example.com", "w1"), "and the other workers' calls"
    assert deletion_refusal(OPEN, "preview") is None
    assert "configure an admin token" in (deletion_refusal(OPEN, "physical") or "")
    reader = Caller("viewer", admin=False, tenants=frozenset({"acme"}))
    assert deletion_refusal(reader, "preview") == "this call needs an admin token"
    assert deletion_refusal(reader, None) == "this call needs an admin token"
    assert deletion_refusal(OPEN, None) is None, "open mode: the body decides"
    assert reader.visible(["acme", "globex"]) == ["acme"]


def test_ten_failures_in_a_minute_block_an_address_for_a_minute() -> None:
    clock = [0.0]
    limiter = FailureLimiter(clock=lambda: clock[0])
    for _ in range(9):
        limiter.failed("10.0.0.1")
        clock[0] += 5
    assert limiter.blocked_for("10.0.0.1") == 0, "nine failures are allowed"
    limiter.failed("10.0.0.1")
    assert limiter.blocked_for("10.0.0.1") == pytest.approx(60)
    assert limiter.blocked_for("10.0.0.2") == 0, "only that address"
    clock[0] += 60.5
    assert limiter.blocked_for("10.0.0.1") == 0, "for one minute"
    for _ in range(9):  # failures spread over more than a minute never block
        limiter.failed("10.0.0.3")
        clock[0] += 61
    limiter.failed("10.0.0.3")
    assert limiter.blocked_for("10.0.0.3") == 0


def test_an_ipv6_client_is_limited_over_its_whole_64_network() -> None:
    """A host is given a /64 and picks its addresses in it freely: limited per address, it
    would get ten more tries from every one of them."""
    limiter = FailureLimiter(clock=lambda: 0.0)
    for host in range(1, 11):
        limiter.failed(f"2a01:4f8:1:2::{host:x}")
    assert limiter.blocked_for("2a01:4f8:1:2:ffff::1") == pytest.approx(60)
    assert limiter.blocked_for("2a01:4f8:1:3::1") == 0, "the next /64 is somebody else"
    for host in range(1, 11):  # unique-local (private) addresses are picked as freely
        limiter.failed(f"fd00:1:2:3::{host:x}")
    assert limiter.blocked_for("fd00:1:2:3::ffff") == pytest.approx(60)
    assert limiter.blocked_for("fd00:1:2:4::1") == 0
    for _ in range(10):  # an IPv4 client reaching a dual-stack socket shows IPv4-mapped
        limiter.failed("::ffff:192.0.2.7")
    assert limiter.blocked_for("192.0.2.7") == pytest.approx(60)
    assert limiter.blocked_for("192.0.2.8") == 0, "IPv4 addresses stay apart"
    assert limiter.blocked_for("unknown") == 0


def test_ipv6_addresses_that_are_not_one_clients_64_stay_apart() -> None:
    """IPv4 clients behind a NAT64 translator or a Teredo server share an IPv6 /64: each is
    limited as its own IPv4 address; a 6to4 site (a /48 of its own) as its IPv4 address;
    link-local and loopback addresses per address."""
    limiter = FailureLimiter(clock=lambda: 0.0)
    for _ in range(10):
        limiter.failed("64:ff9b::c000:207")  # 192.0.2.7 through NAT64
        limiter.failed("fe80::1")
    assert limiter.blocked_for("192.0.2.7") == pytest.approx(60)
    assert limiter.blocked_for("64:ff9b::c000:208") == 0, "192.0.2.8 is another client"
    assert limiter.blocked_for("fe80::1") == pytest.approx(60)
    assert limiter.blocked_for("fe80::2") == 0
    for subnet in range(10):  # a 6to4 site spreads its hosts over its /48's /64s
        limiter.failed(f"2002:c000:221:{subnet:x}::1")  # site 192.0.2.33
    assert limiter.blocked_for("2002:c000:221:ffff::9") == pytest.approx(60)
    assert limiter.blocked_for("192.0.2.33") == pytest.approx(60)
    assert limiter.blocked_for("2002:c000:222::1") == 0, "192.0.2.34 is another site"
    for _ in range(10):  # an IPv6 address carrying loopback is not this host's loopback
        limiter.failed("2002:7f00:1::1")
        limiter.failed("64:ff9b::7f00:1")
    assert limiter.blocked_for("127.0.0.1") == 0 and limiter.blocked_for("::ffff:127.0.0.1") == 0
    assert limiter.blocked_for("2002:7f00:1::2") == 0, "counted as an address of its own"
    assert limiter.blocked_for("64:ff9b::c000:209") == 0, "not the translator's other clients"
    teredo = "2001:0:4136:e378:8000:63bf:3fff:fdd2"  # client 192.0.2.45 (RFC 4380's example)
    for _ in range(10):
        limiter.failed(teredo)
    assert limiter.blocked_for("192.0.2.45") == pytest.approx(60)


def test_sessions_expire_and_end_at_sign_out() -> None:
    clock = [0.0]
    sessions = Sessions(clock=lambda: clock[0])
    token = TokenBook.from_env({"API_ADMIN_TOKENS": f"ops:{ADMIN}"}).find(ADMIN)
    assert token is not None
    session = sessions.open(token)
    assert ADMIN not in session.id and session.csrf != session.id
    assert sessions.get(session.id) == session and sessions.get("guess") is None
    clock[0] += 8 * 3600
    assert sessions.get(session.id) is None, "8 hours"
    again = sessions.open(token)
    sessions.close(again.id)
    assert sessions.get(again.id) is None


def test_hosts_and_content_types() -> None:
    assert host_name("LocalHost:6066") == "localhost" and host_name("[::1]:6066") == "::1"
    assert host_name("::1") == "::1"
    assert host_allowed("localhost:6066", ("localhost",))
    assert not host_allowed("evil.example:6066", ("localhost",)) and not host_allowed(None, ())
    assert is_json("application/json; charset=utf-8") and not is_json("text/plain")
    assert not is_json(None)
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None


def receipt(request_id: str, mode: str, **fields: object) -> bytes:
    return json.dumps(
        {
            "request_id": request_id,
            "tenant_id": "acme",
            "mode": mode,
            "selector": {"kind": "older_than", "values": ["2026-06-01T00:00:00+00:00"]},
            "requested_at": "2026-11-20T11:55:00+00:00",
            "requested_by": "ops",
            "reason": None,
            "attempts_affected": 10,
            "learners_affected": 4,
            "windows": [{"start": "2026-10-01", "active_before": 10, "active_after": 8}],
            "completed_at": "2026-11-20T11:55:01+00:00",
            "error": None,
            **fields,
        }
    ).encode()


def physical(**body: object) -> tuple[dict[str, object], dict[str, object]]:
    body = {"mode": "physical", "older_than": "2026-06-01T00:00:00Z", **body}
    return api.deletion_request("acme", body, NOW, "ops"), body


def test_a_physical_deletion_needs_a_fresh_preview_of_the_same_selector() -> None:
    model = ReadModel()
    model.apply_receipt(receipt("p1", "preview"))
    model.apply_receipt(receipt("old", "preview", completed_at="2026-11-20T11:44:00+00:00"))
    learner = {"kind": "learner_ids", "values": ["l1"]}
    model.apply_receipt(receipt("other", "preview", selector=learner))
    big = [{"start": "w", "active_before": 10, "active_after": 4}]
    model.apply_receipt(receipt("big", "preview", windows=big))
    model.apply_receipt(receipt("done", "physical"))

    def refusal(**body: object) -> str | None:
        record, full = physical(**body)
        try:
            api.check_preview(model, record, full, NOW, max_share=50)
        except api.ApiError as exc:
            assert exc.status == 409
            return exc.message
        return None

    assert refusal(preview_request_id="p1") is None
    assert "needs preview_request_id" in (refusal() or "")
    assert "not a preview" in (refusal(preview_request_id="nope") or "")
    assert "not a preview" in (refusal(preview_request_id="done") or "")
    assert "16 minutes old" in (refusal(preview_request_id="old") or "")
    assert "other attempts" in (refusal(preview_request_id="other") or "")
    assert '"force": true' in (refusal(preview_request_id="big") or "")
    assert refusal(preview_request_id="big", force=True) is None
    assert api.removed_share(json.loads(receipt("big", "preview", windows=big))) == (60.0, "w")


def test_a_request_id_names_one_request() -> None:
    model = ReadModel()
    model.apply_receipt(receipt("r1", "physical"))
    record, _ = physical(request_id="r1", requested_at="2026-11-20T11:55:00Z")
    assert api.earlier_delivery(model, record, True) is not None, "a redelivery: its receipt"
    record, _ = physical(request_id="r1")  # no requested_at given: mode and selector decide
    assert api.earlier_delivery(model, record, False) is not None
    record, _ = physical(request_id="r1", older_than="2026-07-01T00:00:00Z")
    with pytest.raises(api.ApiError) as info:
        api.earlier_delivery(model, record, False)
    assert info.value.status == 409 and "already used for another request" in info.value.message
    record, _ = physical(request_id="r2")
    assert api.earlier_delivery(model, record, False) is None


def test_the_audit_trail_lists_a_tenants_receipts_newest_first() -> None:
    model = ReadModel()
    for number in range(5):
        model.apply_receipt(receipt(f"r{number}", "preview"))
    listed = api.deletions(model, "acme", "3")["deletions"]
    assert [r["request_id"] for r in listed] == ["r4", "r3", "r2"]
    assert len(api.deletions(model, "acme", None)["deletions"]) == 5
    assert api.deletions(model, "globex", None)["deletions"] == []
    for bad in ("0", "-1", "x", "100001"):
        with pytest.raises(api.ApiError):
            api.deletions(model, "acme", bad)


def test_a_tenant_outside_the_token_is_a_404_like_one_that_does_not_exist() -> None:
    model = ReadModel()
    model.apply_receipt(receipt("r1", "preview"))
    model.apply_license(b"acme", json.dumps({"tenant_id": "acme", "cycle_start": "2026-01-01",
                                             "window_months": 12}).encode())  # fmt: skip
    model.caught_up.set()
    globex_only = Caller("g", admin=True, tenants=frozenset({"globex"}))
    errors = []
    for tenant in ("acme", "nobody"):
        with pytest.raises(api.ApiError) as info:
            api.require_tenant(model, tenant, globex_only)
        errors.append((info.value.status, info.value.message.replace(tenant, "T")))
    assert errors[0] == errors[1] and errors[0][0] == 404
    api.require_tenant(model, "acme", OPEN)
    assert api.tenants(model, NOW, globex_only) == {"tenants": []}
    assert timedelta(minutes=15) == api.PREVIEW_MAX_AGE


def test_faust_reads_no_setting_of_its_own_from_the_environment() -> None:
    """faust takes WEB_BIND/WEB_HOST from the environment over the app's arguments: an env
    `WEB_BIND=0.0.0.0` must not bind an open-mode worker beyond this host."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "WEB_BIND": "0.0.0.0", "WEB_HOST": "0.0.0.0"}
    for name in ("API_TOKENS_FILE", "API_READ_TOKENS", "API_ADMIN_TOKENS"):
        env.pop(name, None)
    shown = subprocess.run(
        [sys.executable, "-c", "from streams.worker.app import app; print(app.conf.web_bind)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert shown == "127.0.0.1"


def test_workers_sign_their_calls_to_each_other() -> None:
    from streams.http.access import internal_call_valid, sign_internal

    key = b"k" * 32
    header = sign_internal(key, "/internal/reports/rows/3?tenant=acme", 1_000_000.0)
    assert internal_call_valid(key, header, "/internal/reports/rows/3?tenant=acme", 1_000_100.0)
    assert not internal_call_valid(key, header, "/internal/reports/rows/4?tenant=acme", 1_000_100)
    assert not internal_call_valid(b"x" * 32, header, "/internal/reports/rows/3?tenant=acme", 1e6)
    assert not internal_call_valid(key, header, "/internal/reports/rows/3?tenant=acme", 1_000_400)
    assert not internal_call_valid(key, None, "/", 1e6) and not internal_call_valid(
        key, "x:y", "/", 1e6
    )


def test_a_request_under_a_used_id_never_hides_the_request_that_owns_it() -> None:
    """Found by the security review: a read token sent a preview under the id of an admin's
    physical deletion a moment later; its error receipt came first and took the id's place, so
    the deletion vanished from the audit trail and the admin was answered with the error."""
    import asyncio

    from streams.domain.deletions import reused_id_error

    physical_record, _ = physical(request_id="r1", requested_at="2026-11-20T11:55:00Z")
    physical_record = {**physical_record, "requested_by": "ops"}
    conflict = receipt(
        "r1",
        "preview",
        requested_by="viewer",
        error=reused_id_error("r1"),
        attempts_affected=0,
        windows=[],
    )
    owner = receipt("r1", "physical", requested_by="ops")

    async def scenario() -> tuple[dict[str, object] | None, ReadModel]:
        model = ReadModel()
        waiting = asyncio.ensure_future(
            model.wait_for_receipt("acme", "r1", 5, api.receipt_matcher(physical_record))
        )
        await asyncio.sleep(0)
        model.apply_receipt(conflict)
        model.apply_receipt(conflict)  # redelivered: one entry
        model.apply_receipt(owner)
        return await waiting, model

    answered, model = asyncio.run(scenario())
    assert answered is not None and answered["mode"] == "physical" and answered["error"] is None
    assert model.receipt("acme", "r1")["mode"] == "physical"  # type: ignore[index]
    trail = model.receipts_of("acme", 10)
    assert [(r["mode"], r["requested_by"]) for r in trail] == [
        ("physical", "ops"),
        ("preview", "viewer"),
    ]


def test_the_client_address_behind_a_trusted_proxy() -> None:
    from streams.worker.failed_secrets import client_address

    proxies = ("10.0.0.5",)
    assert client_address("10.0.0.5", "203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("10.0.0.5", "1.1.1.1, 203.0.113.9", proxies) == "203.0.113.9"
    assert client_address("203.0.113.9", "1.1.1.1", proxies) == "203.0.113.9", "not a proxy"
    assert client_address("10.0.0.5", None, proxies) == "10.0.0.5"
    # networks: every proxy of a load balancer's subnet
    subnet = ("10.0.0.0/8", "fd00::/8")
    assert client_address("10.3.2.1", "203.0.113.9, 10.9.9.9", subnet) == "203.0.113.9"
    assert client_address("fd00::7", "2001:db8::1", subnet) == "2001:db8::1"
    assert client_address("11.0.0.1", "203.0.113.9", subnet) == "11.0.0.1", "outside the network"
    with pytest.raises(ConfigError, match="WEB_TRUSTED_PROXIES"):
        Settings.from_env({"WEB_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"})
    assert host_name("[127.0.0.1]evil.com") == "" and host_name("localhost:abc") == ""


def test_our_cookies_are_read_by_their_exact_name_and_only_once() -> None:
    from types import SimpleNamespace

    from multidict import CIMultiDict

    from streams.http.views import our_cookie

    def request(*headers: str) -> SimpleNamespace:
        return SimpleNamespace(headers=CIMultiDict(("Cookie", header) for header in headers))

    name = "__Host-al_session"
    assert our_cookie(request(f"a=1; {name}=s3cret; b=2"), name) == "s3cret"
    assert our_cookie(request("a=1", f" {name} = s3cret"), name) == "s3cret"
    assert our_cookie(request("a=1"), name) is None
    # a sibling subdomain's "\u2000__Host-..." has no prefix for the browser (it may carry a
    # Domain) but aiohttp strips the space: never ours
    assert our_cookie(request(f"\u2000{name}=planted; {name}=s3cret"), name) is None
    assert our_cookie(request(f"{name}=s3cret; {name}\u00a0=planted"), name) is None
    # two of one name: which one the browser meant cannot be told
    assert our_cookie(request(f"{name}=one", f"{name}=two"), name) is None
    assert our_cookie(request(f"__host-al_session=x; {name}=s3cret"), name) == "s3cret"
