"""The dashboard's pages and forms, registered on the worker's app.

Sign-in exchanges the secret for a server-side session; every form carries a CSRF token. A
physical deletion is two steps: a preview shows its effect, and only that preview's page offers
the delete form (an admin types the tenant id; `force` when it removes more than
DELETION_MAX_SHARE % of a window). The delete form names the preview, whose selector is used:
what is deleted is what was previewed. Both steps go through the API's guard rails.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from faust.web import Request, Response

from streams.domain.selectors import Selector
from streams.http import api, dashboard, report_views, reports
from streams.http.access import OPEN, Caller, deletion_refusal
from streams.http.api_views import delete
from streams.http.outputs_reader import model
from streams.http.views import (
    SESSION_COOKIE,
    Page,
    cookie_name,
    find_token,
    id_path,
    over_tls,
    refused_secret,
    sessions,
    tokens,
)
from streams.worker.app import app, settings

FIRST_PAGE = 50


async def tenant_reports(tenant_id: str, active_learners: int, now: datetime) -> dict[str, Any]:
    """What the tenant page shows of the reports (gathered from every worker), of the moment
    its license details show: a window that ends while the page is gathered must not put one
    window's details beside the next window's reports."""
    window, _ = report_views.license_window(tenant_id, now=now)
    params = reports.query(tenant_id, report_views.span(window))
    try:
        forecast, advisor, groups, first = await reports.all_or_none(
            report_views.forecast(tenant_id, now),
            report_views.advisor(tenant_id, now),
            reports.aggregates("groups", params),
            reports.first_rows("window", params, FIRST_PAGE),
        )
    except api.ApiError as exc:
        return {"error": exc.message}
    return {
        "forecast": forecast,
        "advisor": advisor,
        "groups": reports.added_groups(groups).as_json(),
        "learners": [report_views.window_record(row) for row in first],
        "total": active_learners,
        "csv_href": dashboard.tenant_path(tenant_id, "/learners.csv"),
    }


@app.page(id_path("/tenants/{tenant_id}/learners.csv"))
class LearnersCsv(Page):
    """The counted learners of the current window as CSV, for a signed-in administrator."""

    async def get(self, request: Request, tenant_id: str) -> Any:
        api.require_tenant(model, tenant_id, self.caller(request))
        return await report_views.counted_learners(request, tenant_id, None, "csv")


def chrome(caller: Caller) -> dict[str, Any]:
    """What the page header shows: the caller, and whether the figures may still be missing."""
    return {
        "who": None if caller is OPEN else caller.name,
        "catching_up": not model.caught_up.is_set(),
    }


@app.page("/")
class Overview(Page):
    async def get(self, request: Request) -> Response:
        caller = self.caller(request)
        summaries = api.tenants(model, datetime.now(UTC), caller, partial=True)["tenants"]
        return self.answer(
            request, lambda csrf: dashboard.tenants_page(summaries, csrf, **chrome(caller))
        )


@app.page(id_path("/tenants/{tenant_id}"))
class TenantPage(Page):
    async def get(self, request: Request, tenant_id: str) -> Response:
        return await self.show(request, tenant_id, self.caller(request))

    async def show(
        self,
        request: Request,
        tenant_id: str,
        caller: Caller,
        result: str = "",
        status: int = 200,
    ) -> Response:
        api.require_tenant(model, tenant_id, caller, partial=True)  # shown in red, if partial
        now = datetime.now(UTC)  # one moment for the whole page
        details = api.tenant_details(model, tenant_id, now)
        windows = api.tenant_windows(model, tenant_id)["windows"]
        events = model.recent_events(tenant_id)
        receipts = model.receipts_of(tenant_id, 20)
        shown = await tenant_reports(tenant_id, details["active_learners"], now)
        return self.answer(
            request,
            lambda csrf: dashboard.tenant_page(
                details,
                windows,
                events,
                receipts,
                csrf,
                result=result,
                reports=shown,
                may_preview=deletion_refusal(caller, "preview") is None,
                **chrome(caller),
            ),
            status,
        )

    async def ask(
        self,
        request: Request,
        tenant_id: str,
        caller: Caller,
        body: Callable[[], dict[str, Any]],
    ) -> dict[str, Any] | Response:
        """A form's deletion request through the API's guard rails: its receipt, or the tenant
        page with the refusal (or with "no receipt yet")."""
        try:
            api.require_tenant(model, tenant_id, caller)
            refusal = deletion_refusal(caller, None)  # a read token: before the form is read
            if refusal is not None:
                raise api.ApiError(403, refusal)
            status, answer, _ = await delete(caller, tenant_id, body())
        except api.ApiError as exc:
            error = dashboard.error_html(exc.message)
            return await self.show(request, tenant_id, caller, error, exc.status)
        if status != 200:
            return await self.show(request, tenant_id, caller, dashboard.waiting_html(answer))
        return answer


@app.page(id_path("/tenants/{tenant_id}/preview"))
class PreviewForm(TenantPage):
    async def post(self, request: Request, tenant_id: str) -> Response:
        form = await self.form(request)
        caller = self.caller(request)

        def body() -> dict[str, Any]:
            selector = api.form_selector(model, tenant_id, form)
            return {"mode": "preview", **selector.request_fields(), **_reason(form)}

        answer = await self.ask(request, tenant_id, caller, body)
        if not isinstance(answer, dict):
            return answer
        share, _ = api.removed_share(answer)
        csrf, _ = self.csrf(request)  # the form's own, checked above
        confirm = dashboard.confirm_form(
            answer,
            tenant_id,
            csrf,
            admin=caller.admin,
            needs_force=share > settings.deletion_max_share,
            max_share=settings.deletion_max_share,
        )
        return await self.show(request, tenant_id, caller, dashboard.receipt_html(answer) + confirm)


@app.page(id_path("/tenants/{tenant_id}/delete"))
class DeleteForm(TenantPage):
    async def post(self, request: Request, tenant_id: str) -> Response:
        form = await self.form(request)
        caller = self.caller(request)

        def body() -> dict[str, Any]:
            if not _confirmed(form.get("confirm", ""), tenant_id):
                raise api.ApiError(400, f"type {tenant_id} to confirm the deletion")
            preview_id = form.get("preview_request_id", "")
            preview = model.receipt(tenant_id, preview_id)
            if preview is None or preview.get("selector") is None:
                raise api.ApiError(409, "preview the deletion first")
            return {
                "mode": "physical",
                **Selector.from_json(preview["selector"]).request_fields(),
                **_reason(form),
                "preview_request_id": preview_id,
                "force": form.get("force") == "yes",
            }

        answer = await self.ask(request, tenant_id, caller, body)
        if not isinstance(answer, dict):
            return answer
        return await self.show(request, tenant_id, caller, dashboard.receipt_html(answer))


# -- the same pages for the tenants "." and ".." (dashboard.DOT_IDS): the id in the query ------


def _tenant_in_query(request: Request) -> str:
    tenant_id = request.query.get("id")  # type: ignore[attr-defined]
    if tenant_id not in dashboard.DOT_IDS:
        # every other id has its path under /tenants/
        raise api.ApiError(404, "no such page: a tenant's page is /tenants/<tenant id>")
    return str(tenant_id)


@app.page("/tenant")
class DotTenantPage(TenantPage):
    async def get(self, request: Request) -> Response:  # type: ignore[override]
        return await super().get(request, _tenant_in_query(request))


@app.page("/tenant/learners.csv")
class DotLearnersCsv(LearnersCsv):
    async def get(self, request: Request) -> Any:  # type: ignore[override]
        return await super().get(request, _tenant_in_query(request))


@app.page("/tenant/preview")
class DotPreviewForm(PreviewForm):
    # GET too (a reload after a preview shows the page, as /tenants/<id>/preview does): the
    # inherited one wants the tenant id, which only the query holds here
    async def get(self, request: Request) -> Response:  # type: ignore[override]
        return await super().get(request, _tenant_in_query(request))

    async def post(self, request: Request) -> Response:  # type: ignore[override]
        return await super().post(request, _tenant_in_query(request))


@app.page("/tenant/delete")
class DotDeleteForm(DeleteForm):
    async def get(self, request: Request) -> Response:  # type: ignore[override]
        return await super().get(request, _tenant_in_query(request))

    async def post(self, request: Request) -> Response:  # type: ignore[override]
        return await super().post(request, _tenant_in_query(request))


def _confirmed(typed: str, tenant_id: str) -> bool:
    """Whether the administrator typed the tenant id. Spaces around it do not count: an id may
    begin or end with spaces (" acme" is valid), which the page does not show, and the path, not
    this field, names the tenant. Something must be typed, also for an id of spaces only."""
    stripped = typed.strip()
    return typed == tenant_id or (stripped != "" and stripped == tenant_id.strip())


def _reason(form: dict[str, str]) -> dict[str, str]:
    reason = form.get("reason", "").strip()
    return {"reason": reason} if reason else {}


@app.page("/signin")
class SignIn(Page):
    async def get(self, request: Request) -> Response:
        if not tokens.configured:
            return self.to("/")
        return self.answer(request, dashboard.signin_page)

    async def post(self, request: Request) -> Response:
        form = await self.form(request)  # the sign-in form has its CSRF token too
        if not tokens.configured:
            # open mode: no secret to guess, so no failure to count (ten would lock every
            # local user of the dashboard and the API out for a minute)
            return self.to("/")
        token = find_token(request, form.get("token", "").strip())
        if token is None:
            refused_secret(request, "a dashboard sign-in")
            return self.answer(
                request, lambda csrf: dashboard.signin_page(csrf, "That token is not valid."), 401
            )
        session = sessions.open(token)
        response = self.to("/")
        response.set_cookie(  # type: ignore[attr-defined]
            cookie_name(SESSION_COOKIE, request),
            session.id,
            httponly=True,
            samesite="Strict",
            secure=over_tls(request),
            path="/",
            max_age=int(sessions.lifetime_s),
        )
        return response


@app.page("/signout")
class SignOut(Page):
    async def post(self, request: Request) -> Response:
        await self.form(request)
        session = self.session(request)
        if session is not None:
            sessions.close(session.id)
        response = self.to("/signin")
        # a __Host- cookie is removed only by a Set-Cookie that is Secure too
        response.del_cookie(  # type: ignore[attr-defined]
            cookie_name(SESSION_COOKIE, request),
            path="/",
            secure=over_tls(request),
            httponly=True,
            samesite="Strict",
        )
        return response
