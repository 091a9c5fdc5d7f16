"""Webhooks on the real broker: a real notifier process reads `licenses` and `threshold-events`
and POSTs to real HTTP receivers on localhost (http.server in a thread). Also the HTTP transport
alone against such a receiver (no broker)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from streams.config.settings import Settings
from streams.kafka.admin import ensure_topics
from streams.kafka.io import produce_records
from streams.notifier.webhooks import AiohttpTransport, Answer
from tests.integration.harness import WorkerProcess, free_port, wait_for
from tests.integration.test_thresholds import ADDRESSES, NOW, notifier_done, synthetic_event

pytestmark = pytest.mark.integration

SECRET = "integration-webhook-secret-0123456789abcdef"


@dataclass(frozen=True)
class Request:
    path: str
    event_id: str | None
    signature: str | None
    content_type: str | None
    body: bytes
    status: int  # what the receiver answered


class Receiver:
    """A real HTTP server on 127.0.0.1: records every POST; answers 500 while `failing`, else
    `status` (with a Location header for a 3xx), after `delay_s`."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.failing = False
        self.status = 204
        self.delay_s = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay_s)
                status = 500 if receiver.failing else receiver.status
                with receiver._lock:
                    receiver.requests.append(
                        Request(
                            self.path,
                            self.headers.get("X-Active-Learners-Event"),
                            self.headers.get("X-Active-Learners-Signature"),
                            self.headers.get("Content-Type"),
                            body,
                            status,
                        )
                    )
                try:
                    self.send_response(status)
                    if 300 <= status < 400:
                        self.send_header("Location", "/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up waiting (the timeout test)
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        # a secret in the query, as many webhook URLs have: the notifier never logs it
        self.url = f"http://127.0.0.1:{port}/hooks?token=receiver-own-token"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def seen(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> list[str | None]:
        return [r.event_id for r in self.seen() if 200 <= r.status < 300]

    def failed(self) -> int:
        return sum(1 for r in self.seen() if r.status >= 300)


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """What a receiver does (docs/webhooks.md): HMAC-SHA256 of the raw body, compared in
    constant time."""
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


def license_record(tenant_id: str, webhooks: list[str]) -> tuple[str, bytes, bytes]:
    value = {
        "tenant_id": tenant_id,
        "cycle_start": "2026-01-01",
        "window_months": 1,
        "learner_limit": 10,
        "webhooks": webhooks,
        # the list the events carry (an event's `notify` is its license's): the notifier mails
        # only addresses the tenant's latest license still names
        "notify": ADDRESSES,
    }
    return topics.LICENSES, tenant_id.encode(), json.dumps(value).encode()


def event_record(event_id: str, tenant_id: str) -> tuple[str, bytes, bytes]:
    value = {
        **synthetic_event(0, NOW.date() + timedelta(days=20)),
        "event_id": event_id,
        "tenant_id": tenant_id,
    }
    # formatted as no serializer of ours would: the body must be these bytes, not a re-encoding
    return topics.THRESHOLD_EVENTS, tenant_id.encode(), json.dumps(value, indent=1).encode()


def notifier_process(settings: Settings, tmp_path: Path) -> WorkerProcess:
    return WorkerProcess(
        settings,
        tmp_path / "notifier.log",
        command="notifier",
        extra_env={"WEBHOOK_SECRET": SECRET},
    )


def test_deliveries_are_signed_retried_in_order_and_a_failing_receiver_holds_up_no_one(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    with Receiver() as acme, Receiver() as globex:
        acme.failing = True  # from the first delivery on, until the test says otherwise
        acme_events = [event_record(f"acme-{n}", "acme") for n in range(3)]
        produce_records(settings, [license_record("acme", [acme.url]), *acme_events])
        notifier = notifier_process(settings, tmp_path).start()
        try:
            wait_for(lambda: acme.failed() >= 2, 60, "two failed tries of acme's first event")
            # A tenant licensed while the notifier runs, with an event right behind its license:
            # the license is read before the event, and the event is not held up by acme's.
            globex_event = event_record("globex-0", "globex")
            produce_records(settings, [license_record("globex", [globex.url]), globex_event])
            wait_for(lambda: globex.delivered() == ["globex-0"], 60, "globex's delivery")
            # acme's receiver is still failing; its later events wait; the e-mails went out
            assert acme.delivered() == []
            assert {r.event_id for r in acme.seen()} == {"acme-0"}
            outbox = settings.state_dir / "outbox"
            wait_for(lambda: len(list(outbox.glob("*.eml"))) == 4, 60, "every e-mail")

            acme.failing = False
            wait_for(lambda: len(acme.delivered()) == 3, 120, "acme's events once it recovered")
            wait_for(lambda: notifier_done(settings), 60, "every event committed")
            assert notifier.alive(), notifier.log_tail()
        finally:
            notifier.stop()

    requests = acme.seen()
    failures = acme.failed()
    assert failures >= 2
    # in order: the first event until it was taken, then the others, each once
    assert [r.event_id for r in requests] == ["acme-0"] * (failures + 1) + ["acme-1", "acme-2"]
    assert [r.status for r in requests] == [500] * failures + [204] * 3
    bodies = {json.loads(raw)["event_id"]: raw for _, _, raw in acme_events}
    for request in [*requests, *globex.seen()]:
        assert request.path == "/hooks?token=receiver-own-token"
        assert request.content_type == "application/json"
        assert verify(SECRET.encode(), request.body, request.signature), request
        assert not verify(b"another-secret-of-32-characters!", request.body, request.signature)
    retried = [r for r in requests if r.event_id == "acme-0"]
    assert {r.body for r in retried} == {bodies["acme-0"]}  # the exact bytes of the record
    assert [r.body for r in requests[-2:]] == [bodies["acme-1"], bodies["acme-2"]]
    assert globex.seen()[0].body == globex_event[2]

    log = notifier.log_text()
    assert "Traceback" not in log
    assert "receiver-own-token" not in log  # the log shows scheme and host only
    assert "webhook: event acme-0 to http://127.0.0.1:" in log and "failed (HTTP 500)" in log


def test_a_delivery_pending_when_the_notifier_crashes_is_delivered_after_its_restart(
    settings: Settings, tmp_path: Path
) -> None:
    ensure_topics(settings)
    with Receiver() as acme:
        acme.failing = True
        produce_records(settings, [license_record("acme", [acme.url]), event_record("e-1", "acme")])
        notifier = notifier_process(settings, tmp_path).start()
        try:
            wait_for(lambda: acme.failed() >= 1, 60, "a failed try")
            # the event's offset is committed: from now on only the notifier's RocksDB has it
            wait_for(lambda: notifier_done(settings), 60, "the event committed")
            notifier.kill()
            acme.failing = False
            notifier.start()
            wait_for(lambda: acme.delivered() == ["e-1"], 60, "the delivery after the restart")
            assert notifier.alive(), notifier.log_tail()
        finally:
            notifier.stop()
    # the restarted notifier found the delivery in its RocksDB (the event was committed) and
    # made it; it mailed nothing again
    after_restart = notifier.log_text(since_start=True)
    assert "1 deliveries pending" in after_restart
    assert "webhook: event e-1 delivered to http://127.0.0.1:" in after_restart
    assert {r.event_id for r in acme.seen()} == {"e-1"}
    delivered = [r for r in acme.seen() if r.status == 204]
    assert verify(SECRET.encode(), delivered[0].body, delivered[0].signature)
    assert len(list((settings.state_dir / "outbox").glob("*.eml"))) == 1


def test_a_url_taken_off_the_license_gets_no_more_tries_and_one_kept_goes_on(
    settings: Settings, tmp_path: Path
) -> None:
    """An operator takes a webhook URL off a license (its receiver gone, or no longer trusted):
    the events queued for it are dropped at their next try instead of POSTed there for up to
    24 h; a URL the license keeps is delivered as before."""
    ensure_topics(settings)
    with Receiver() as gone, Receiver() as kept:
        gone.failing = kept.failing = True
        produce_records(
            settings,
            [license_record("acme", [gone.url, kept.url]), event_record("e-1", "acme")],
        )
        notifier = notifier_process(settings, tmp_path).start()
        try:
            wait_for(lambda: gone.failed() >= 2 and kept.failed() >= 2, 60, "retries")
            produce_records(settings, [license_record("acme", [kept.url])])
            wait_for(lambda: "dropped event e-1" in notifier.log_text(), 60, "e-1 dropped")
            assert "no longer in the license's webhooks" in notifier.log_text()
            tries_to_gone = len(gone.seen())
            kept.failing = False
            wait_for(lambda: kept.delivered() == ["e-1"], 60, "e-1 delivered to the URL kept")
            produce_records(settings, [event_record("e-2", "acme")])
            wait_for(lambda: kept.delivered() == ["e-1", "e-2"], 60, "e-2 delivered")
            assert len(gone.seen()) == tries_to_gone  # nothing POSTed there since it was dropped
            assert notifier.alive(), notifier.log_tail()
        finally:
            notifier.stop()
    assert "receiver-own-token" not in notifier.log_text()


# -- the HTTP transport alone (no broker) --------------------------------------------------------


def post(url: str, timeout_s: float = 10.0) -> Answer:
    async def once() -> Answer:
        transport = AiohttpTransport(timeout_s)
        try:
            return await transport.post(url, b'{"a": 1}', {"Content-Type": "application/json"})
        finally:
            await transport.close()

    return asyncio.run(once())


@pytest.mark.parametrize(
    ("status", "delivered"),
    [(200, True), (202, True), (204, True), (302, False), (404, False), (500, False)],
)
def test_only_a_2xx_answer_delivers_and_redirects_are_not_followed(
    status: int, delivered: bool
) -> None:
    with Receiver() as receiver:
        receiver.status = status
        assert post(receiver.url) == Answer(delivered, f"HTTP {status}")
        assert [r.path for r in receiver.seen()] == ["/hooks?token=receiver-own-token"]


def test_no_answer_in_time_and_no_server_are_failed_tries() -> None:
    with Receiver() as receiver:
        receiver.delay_s = 3.0
        assert post(receiver.url, timeout_s=0.5) == Answer(False, "no answer within 0.5 s")
    answer = post(f"http://127.0.0.1:{free_port()}/hooks?token=secret-token")
    assert not answer.delivered and answer.detail.startswith("ClientConnectorError")
    assert "secret-token" not in answer.detail
