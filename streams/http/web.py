"""HTTP views of every worker: the JSON API, the dashboard, health and Prometheus metrics.

Answers come from the read model (streams/http/read_model.py), never from the agents' tables, so no
request waits for or blocks the stream processing. A deletion is produced to `attempt-deletions`
like any other request and answered with its receipt once the read model has it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote, unquote

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from schemas import topics
from streams.http import api, dashboard
from streams.http.auth import COOKIE, Access, Tokens, bearer
from streams.http.openapi import document
from streams.http.outputs_reader import model
from streams.worker.app import app
from streams.worker.runtime import new_batch

log = logging.getLogger(__name__)

tokens = Tokens.from_env()
RECEIPT_WAIT_S = 60.0
SEND_WAIT_S = 30.0


def _access(request: Request, cookie: bool) -> Access:
    token = bearer(request.headers.get("Authorization"))
    if token is None and cookie:
        token = unquote(request.cookies.get(COOKIE, "")) or None
    return tokens.access(token)


class ApiView(View):
    """JSON in and out; `{"error": ...}` with a 4xx status; a token when tokens are set."""

    needs = Access.READ

    def fail(self, status: int, message: str) -> Response:
        return self.json({"error": message}, status=status)

    def refused(self, request: Request, needs: Access | None = None) -> Response | None:
        access = _access(request, cookie=False)
        if access is Access.NONE:
            return self.json(
                {"error": "a valid bearer token is needed (Authorization: Bearer <token>)"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if access.value < (needs or self.needs).value:
            return self.fail(403, "this call needs an admin token")
        return None


@app.page("/api/tenants")
class Tenants(ApiView):
    async def get(self, request: Request) -> Response:
        return self.refused(request) or self.json(api.tenants(model, datetime.now(UTC)))


@app.page("/api/tenants/{tenant_id}")
class TenantDetails(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        refused = self.refused(request)
        if refused:
            return refused
        try:
            return self.json(api.tenant_details(model, tenant_id, datetime.now(UTC)))
        except api.ApiError as exc:
            return self.fail(exc.status, exc.message)


@app.page("/api/tenants/{tenant_id}/windows")
class TenantWindows(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        refused = self.refused(request)
        if refused:
            return refused
        try:
            return self.json(api.tenant_windows(model, tenant_id))
        except api.ApiError as exc:
            return self.fail(exc.status, exc.message)


async def submit(request_record: dict[str, Any]) -> dict[str, Any] | None:
    """Produce a deletion request; its receipt, or None when it takes over RECEIPT_WAIT_S.

    ApiError(503) when Kafka does not take the request within SEND_WAIT_S (a broker outage).
    The send goes on in the background (shielded), so the request may still be carried out:
    the answer names its request id, whose receipt tells.
    """
    batch = new_batch()
    tenant_id = request_record["tenant_id"]
    batch.emit(
        topics.ATTEMPT_DELETIONS,
        tenant_id.encode(),
        json.dumps(request_record).encode(),
    )
    try:
        await asyncio.wait_for(asyncio.shield(batch.flush()), SEND_WAIT_S)
    except TimeoutError:
        raise api.ApiError(
            503,
            f"Kafka did not take request {request_record['request_id']} within "
            f"{SEND_WAIT_S:g} s; it may still be carried out: ask for its receipt later",
        ) from None
    return await model.wait_for_receipt(tenant_id, request_record["request_id"], RECEIPT_WAIT_S)


@app.page("/api/tenants/{tenant_id}/deletions")
class Deletions(ApiView):
    needs = Access.ADMIN

    async def post(self, request: Request, tenant_id: str) -> Response:
        refused = self.refused(request)
        if refused:
            return refused
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return self.fail(400, "the body is not JSON")
        try:
            record = api.deletion_request(tenant_id, body, datetime.now(UTC))
        except api.ApiError as exc:
            return self.fail(exc.status, exc.message)
        try:
            receipt = await submit(record)
        except api.ApiError as exc:
            return self.fail(exc.status, exc.message)
        if receipt is None:
            return self.json({"request_id": record["request_id"]}, status=202)
        return self.json(receipt)


@app.page("/api/tenants/{tenant_id}/deletions/{request_id}")
class Receipt(ApiView):
    async def get(self, request: Request, tenant_id: str, request_id: str) -> Response:
        refused = self.refused(request)
        if refused:
            return refused
        receipt = model.receipt(tenant_id, request_id)
        if receipt is None:
            return self.fail(404, f"no receipt for request {request_id!r} of {tenant_id!r} (yet)")
        return self.json(receipt)


@app.page("/api/openapi.json")
class OpenApi(ApiView):
    async def get(self, request: Request) -> Response:
        return self.refused(request) or self.json(document())


# -- the dashboard ----------------------------------------------------------------------------


class Page(View):
    """A dashboard page: a read token (header or sign-in cookie), else to the sign-in form."""

    def to(self, location: str, cookie: str | None = None) -> Response:
        headers = {"Location": location}
        if cookie is not None:
            headers["Set-Cookie"] = cookie
        return self.html("", status=303, headers=headers)

    def allowed(self, request: Request, needs: Access = Access.READ) -> bool:
        return _access(request, cookie=True).value >= needs.value

    def signed_in(self, request: Request) -> bool:
        return tokens.required and _access(request, cookie=True) is not Access.NONE


@app.page("/")
class Overview(Page):
    async def get(self, request: Request) -> Response:
        if not self.allowed(request):
            return self.to("/signin")
        summaries = api.tenants(model, datetime.now(UTC))["tenants"]
        return self.html(dashboard.tenants_page(summaries, self.signed_in(request)))


@app.page("/tenants/{tenant_id}")
class TenantPage(Page):
    async def get(self, request: Request, tenant_id: str, result: str = "") -> Response:
        if not self.allowed(request):
            return self.to("/signin")
        try:
            details = api.tenant_details(model, tenant_id, datetime.now(UTC))
        except api.ApiError as exc:
            page = dashboard.page("Not found", f"<h1>{escape(exc.message)}</h1>", False)
            return self.html(page, status=404)
        windows = api.tenant_windows(model, tenant_id)["windows"]
        events = model.recent_events(tenant_id)
        html = dashboard.tenant_page(details, windows, events, self.signed_in(request), result)
        return self.html(html)


class DeletionForm(Page):
    mode = "preview"
    needs = Access.READ

    async def post(self, request: Request, tenant_id: str) -> Response:
        if not self.allowed(request, self.needs):
            message = "a physical deletion needs an admin token" if self.allowed(request) else ""
            if not message:
                return self.to("/signin")
            return await self.result(request, tenant_id, f'<div class="error">{message}</div>', 403)
        form = await request.post()
        try:
            if self.mode == "physical" and form.get("confirm", "").strip() != tenant_id:
                raise api.ApiError(400, f"type {tenant_id} to confirm the deletion")
            selector = api.form_selector(
                model, tenant_id, form.get("older_than") or "", form.get("learner_ids") or ""
            )
            body = {"mode": self.mode, **selector.request_fields()}
            record = api.deletion_request(tenant_id, body, datetime.now(UTC))
            receipt = await submit(record)
        except api.ApiError as exc:
            error = f'<div class="error">{escape(exc.message)}</div>'
            return await self.result(request, tenant_id, error, exc.status)
        if receipt is None:
            waiting = f"no receipt yet for {record['request_id']}; it will come"
            return await self.result(request, tenant_id, f'<div class="error">{waiting}</div>')
        return await self.result(request, tenant_id, dashboard.receipt_html(receipt))

    async def result(
        self, request: Request, tenant_id: str, html: str, status: int = 200
    ) -> Response:
        response: Response = await TenantPage(self.app, self.web).get(request, tenant_id, html)
        response.set_status(status)  # type: ignore[attr-defined]
        return response


@app.page("/tenants/{tenant_id}/preview")
class PreviewForm(DeletionForm):
    mode = "preview"


@app.page("/tenants/{tenant_id}/delete")
class DeleteForm(DeletionForm):
    mode = "physical"
    needs = Access.ADMIN


@app.page("/signin")
class SignIn(Page):
    async def get(self, request: Request) -> Response:
        return self.html(dashboard.signin_page())

    async def post(self, request: Request) -> Response:
        form = await request.post()
        token = (form.get("token") or "").strip()
        if tokens.access(token) is Access.NONE:
            return self.html(dashboard.signin_page("That token is not valid."), status=401)
        cookie = f"{COOKIE}={quote(token)}; HttpOnly; SameSite=Strict; Path=/"
        return self.to("/", cookie)


@app.page("/signout")
class SignOut(Page):
    async def post(self, request: Request) -> Response:
        return self.to("/signin", f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")


# -- operations -------------------------------------------------------------------------------


@app.page("/metrics")
class Metrics(View):
    async def get(self, request: Request) -> Response:
        return self.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/health")
class Health(View):
    async def get(self, request: Request) -> Response:
        return self.json(
            {"status": "ok", "app": app.conf.id, "read_model": model.caught_up.is_set()}
        )
