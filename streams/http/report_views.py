"""The administrators' reports (contract: HTTP API → Calls), and the internal call behind them.

Row reports stream: the answer starts once every partition's first chunk is in, and goes on
chunk by chunk (JSON, JSON lines or CSV), so memory stays flat for a million learners.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web as aiohttp_web
from faust.web import Request, Response

from streams.domain import reports as pure
from streams.domain.recount import cut_for
from streams.domain.reports import Span
from streams.domain.windows import Window, add_months, local_midnight, window_of, window_starting
from streams.http import api
from streams.http.access import (
    EVERY_ANSWER,
    INTERNAL_HEADER,
    internal_call_fresh,
    internal_call_valid,
    internal_message,
)
from streams.http.outputs_reader import model
from streams.http.reports import (
    ROW_KINDS,
    added_groups,
    aggregates,
    cluster_key,
    local_aggregate,
    local_rows,
    query,
    rows,
)
from streams.http.views import ApiView, break_stream, id_path
from streams.stages import keys
from streams.worker.app import app
from streams.worker.runtime import local_state

FORMATS = ("json", "jsonl", "csv")
WINDOW_COLUMNS = ("learner_id", "first_attempt_at", "last_attempt_at", "attempts", "teams", "roles")
LEARNER_COLUMNS = ("learner_id", "status", "last_attempt_at", "teams", "roles")

log = logging.getLogger(__name__)


def instant(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def window_record(row: list[Any]) -> dict[str, Any]:
    learner, first, last, attempts, teams, roles = row
    return {
        "learner_id": learner,
        "first_attempt_at": instant(first),
        "last_attempt_at": instant(last),
        "attempts": attempts,
        "teams": teams,
        "roles": roles,
    }


def _cell(ids: list[str]) -> str:
    """Teams or roles in a CSV cell: a JSON array (ids may hold any character)."""
    return orjson.dumps(ids).decode() if ids else "[]"


def window_csv(row: list[Any]) -> tuple[Any, ...]:
    learner, first, last, attempts, teams, roles = row
    first_at = instant(first)
    last_at = first_at if last == first else instant(last)
    return pure.spreadsheet_text(learner), first_at, last_at, attempts, _cell(teams), _cell(roles)


def learner_csv(row: list[Any]) -> tuple[Any, ...]:
    learner, active, last, teams, roles = row
    status = "active" if active else "inactive"
    return pure.spreadsheet_text(learner), status, instant(last), _cell(teams), _cell(roles)


def learner_record(row: list[Any]) -> dict[str, Any]:
    learner, active, last, teams, roles = row
    return {
        "learner_id": learner,
        "status": "active" if active else "inactive",
        "last_attempt_at": instant(last),
        "teams": teams,
        "roles": roles,
    }


def license_window(
    tenant_id: str, start: str | None = None, now: datetime | None = None
) -> tuple[Window, str]:
    """A window of the tenant (the current one without `start`: at `now`, by default the
    clock's) and its time zone; 404 for a date no window starts on."""
    license_ = model.license_of(tenant_id)
    cut = cut_for(license_)
    if start is None:
        return window_of(cut, now or datetime.now(UTC)), cut.timezone
    try:
        day = api.calendar_date(start)
    except ValueError:
        raise api.ApiError(400, f"not a date (YYYY-MM-DD): {start[:40]!r}") from None
    try:
        window = window_starting(cut, day)
    except (ValueError, OverflowError):  # a date at the ends of the calendar
        window = None
    if window is None:
        raise api.ApiError(404, f"no window of {tenant_id!r} starts on {start}")
    return window, cut.timezone


def span(window: Window) -> Span:
    return Span(window.start_at.timestamp(), window.end_at.timestamp())


def output_format(request: Request) -> str:
    chosen = request.query.get("format", "json")  # type: ignore[attr-defined]
    if chosen not in FORMATS:
        raise api.ApiError(400, "format must be json, jsonl or csv")
    return str(chosen)


async def stream(
    request: Request,
    chunks: AsyncIterator[list[list[Any]]],
    fmt: str,
    columns: tuple[str, ...],
    record: Callable[[list[Any]], dict[str, Any]],
    name: str,
    filename: str,
    csv_row: Callable[[list[Any]], tuple[Any, ...]],
) -> Any:
    """Rows as JSON (`{name: [...]}`), JSON lines or CSV, written chunk by chunk."""
    first = await anext(chunks, None)  # a refusal (503: a partition without a worker) comes here
    response = aiohttp_web.StreamResponse(headers=dict(EVERY_ANSWER))
    if fmt == "csv":
        response.content_type = "text/csv"
        response.charset = "utf-8"
        response.headers["Content-Disposition"] = (
            f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
        )
    else:
        response.content_type = "application/x-ndjson" if fmt == "jsonl" else "application/json"
    await response.prepare(request)  # type: ignore[arg-type]
    if request.method == "HEAD":  # type: ignore[attr-defined]
        # The headers alone (RFC 9110): a streamed answer has no length to say where a body
        # ends, so rows written after a HEAD's headers were read as the next answer on the
        # connection (and scanning them was work for nothing).
        await chunks.aclose()  # type: ignore[attr-defined]
        await response.write_eof()
        return response
    try:
        if fmt == "csv":
            await response.write(pure.csv_line(columns).encode())
        elif fmt == "json":
            await response.write(b'{"' + name.encode() + b'": [')
        written = 0
        chunk = first
        while chunk:
            await response.write(_encode(chunk, fmt, record, csv_row, written == 0))
            written += len(chunk)
            chunk = await anext(chunks, None)
        if fmt == "json":
            await response.write(b"]}")
        await response.write_eof()
    except Exception as exc:
        raise break_stream(request, exc) from exc
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return response


def _encode(
    chunk: list[list[Any]],
    fmt: str,
    record: Callable[[list[Any]], dict[str, Any]],
    csv_row: Callable[[list[Any]], tuple[Any, ...]],
    first: bool,
) -> bytes:
    if fmt == "csv":  # one writer for the chunk, no dict per row
        return pure.csv_rows([csv_row(row) for row in chunk]).encode()
    records = [record(row) for row in chunk]
    if fmt == "jsonl":
        return b"".join(orjson.dumps(item) + b"\n" for item in records)
    body = b",".join(orjson.dumps(item) for item in records)
    return body if first else b"," + body


async def counted_learners(request: Request, tenant_id: str, start: str | None, fmt: str) -> Any:
    """The learners counted in a window (the current one without `start`), streamed."""
    window, _ = license_window(tenant_id, start)
    chunks = rows("window", query(tenant_id, span(window)))
    name = f"{tenant_id}-{window.start.isoformat()}-learners.csv"
    return await stream(
        request, chunks, fmt, WINDOW_COLUMNS, window_record, "learners", name, window_csv
    )


@app.page(id_path("/api/tenants/{tenant_id}/windows/{start}/learners"))
class WindowLearners(ApiView):
    async def get(self, request: Request, tenant_id: str, start: str) -> Any:
        api.require_tenant(model, tenant_id, self.caller(request))
        return await counted_learners(request, tenant_id, start, output_format(request))


@app.page(id_path("/api/tenants/{tenant_id}/learners"))
class TenantLearners(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Any:
        api.require_tenant(model, tenant_id, self.caller(request))
        fmt = output_format(request)
        status = request.query.get("status")  # type: ignore[attr-defined]
        if status not in (None, "active", "inactive"):
            raise api.ApiError(400, "status must be active or inactive")
        window, _ = license_window(tenant_id)
        chunks = rows("learners", query(tenant_id, span(window)))
        if status is not None:
            chunks = _with_status(chunks, status == "active")
        name = f"{tenant_id}-learners{'-' + status if status else ''}.csv"
        return await stream(
            request, chunks, fmt, LEARNER_COLUMNS, learner_record, "learners", name, learner_csv
        )


async def _with_status(
    chunks: AsyncIterator[list[list[Any]]], active: bool
) -> AsyncIterator[list[list[Any]]]:
    async for chunk in chunks:
        kept = [row for row in chunk if row[1] is active]
        if kept:
            yield kept


@app.page(id_path("/api/tenants/{tenant_id}/windows/{start}/groups"))
class WindowGroups(ApiView):
    async def get(self, request: Request, tenant_id: str, start: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request))
        window, _ = license_window(tenant_id, start)
        tally = added_groups(await aggregates("groups", query(tenant_id, span(window))))
        return self.json(
            {"tenant_id": tenant_id, "window": api.window_ref(window), **tally.as_json()}
        )


async def forecast(tenant_id: str, now: datetime | None = None) -> dict[str, Any]:
    # One moment for the window, its count and today: read again after the partitions answered
    # (seconds), the clock put the next window's count beside a window that ended meanwhile
    now = now or datetime.now(UTC)
    window, zone = license_window(tenant_id, now=now)
    parts = await aggregates("firsts", query(tenant_id, span(window), tz=zone))
    firsts: dict[str, int] = {}
    for part in parts:
        for day, count in part.items():
            firsts[day] = firsts.get(day, 0) + count
    head = _head(tenant_id, window, now)
    today = now.astimezone(ZoneInfo(zone)).date()
    return {**head, **pure.forecast(firsts, window.start, window.end, today, head["learner_limit"])}


def _head(tenant_id: str, window: Window, now: datetime) -> dict[str, Any]:
    """What the forecast and the advisor start with: the window, its count now, the limit."""
    license_ = model.license_of(tenant_id) or {}
    _, record = api.current_record(model, tenant_id, now)
    return {
        "tenant_id": tenant_id,
        "window": api.window_ref(window),
        "active_learners": record["active_learners"],
        "learner_limit": license_.get("learner_limit"),
    }


async def advisor(tenant_id: str, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)  # one moment for the window, the cut-offs and the count
    window, zone = license_window(tenant_id, now=now)
    today = now.astimezone(ZoneInfo(zone)).date()  # the tenant's date: its month starts are local
    starts = pure.month_starts(add_months(window.start, -12), min(window.end, today))
    cutoffs = [local_midnight(day, zone) for day in starts]
    cutoffs = [cutoff for cutoff in cutoffs if cutoff <= now]
    params = query(
        tenant_id, span(window), tz=zone, cutoffs=",".join(repr(c.timestamp()) for c in cutoffs)
    )
    parts = await aggregates("advisor", params)
    active_after = [sum(part[0][i] for part in parts) for i in range(len(cutoffs))]
    removed = [sum(part[1][i] for part in parts) for i in range(len(cutoffs))]
    options = [
        {
            # in the tenant's zone: its date is the local date the dashboard shows
            "older_than": cutoff.astimezone(ZoneInfo(zone)).isoformat(),
            "active_learners_after": active_after[i],
            "attempts_removed": removed[i],
        }
        for i, cutoff in enumerate(cutoffs)
    ]
    head = _head(tenant_id, window, now)
    return {
        **head,
        "options": options,
        "smallest_under_limit": pure.smallest_under_limit(
            options, head["learner_limit"], head["active_learners"]
        ),
    }


@app.page(id_path("/api/tenants/{tenant_id}/forecast"))
class Forecast(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request))
        return self.json(await forecast(tenant_id))


@app.page(id_path("/api/tenants/{tenant_id}/advisor"))
class Advisor(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request))
        return self.json(await advisor(tenant_id))


# -- the internal call: one partition's part, for another worker ------------------------------


@app.page("/internal/reports/{kind}/{partition}")
class PartitionReport(ApiView):
    async def get(self, request: Request, kind: str, partition: str) -> Any:
        params = dict(request.query)  # type: ignore[attr-defined]
        message = internal_message(request.path, params)  # type: ignore[attr-defined]
        signed = request.headers.get(INTERNAL_HEADER)
        if not internal_call_fresh(signed, time.time()):
            raise api.ApiError(401, "a worker's signed call is needed")
        try:
            key = await cluster_key()
        except Exception as exc:  # Kafka unreachable, a timeout: the asking worker tries again
            log.warning("cannot check a worker's call: no deployment key (%r)", exc)
            raise api.ApiError(503, "this worker cannot read the deployment's key yet") from None
        if not internal_call_valid(key, signed, message, time.time()):
            raise api.ApiError(401, "a worker's signed call is needed")
        if not partition.isdigit() or not local_state.owns(keys.ATTEMPTS, int(partition)):
            raise api.ApiError(409, f"this worker does not hold learner partition {partition}")
        if kind not in ROW_KINDS:
            return self.json(await local_aggregate(kind, int(partition), params))
        response = aiohttp_web.StreamResponse(headers=dict(EVERY_ANSWER))
        response.content_type = "application/x-ndjson"
        await response.prepare(request)  # type: ignore[arg-type]
        chunks = local_rows(kind, int(partition), params)
        try:
            async for chunk in chunks:
                await response.write(orjson.dumps(chunk) + b"\n")
            await response.write_eof()
        except Exception as exc:  # also the asking worker closing early (a first page)
            raise break_stream(request, exc) from exc
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]
        return response
