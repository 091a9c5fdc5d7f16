"""The JSON API (see the contract's "HTTP API → Calls"), registered on the worker's app.

Every call names its caller first (streams/http/views.py), and a tenant the caller's token does
not cover is answered exactly as a tenant that does not exist. A deletion is produced to
`attempt-deletions` like any other request and answered with its receipt once the read model
has it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from faust.web import Request, Response

from schemas import topics
from streams.domain.deletions import is_reused_id_receipt
from streams.http import api
from streams.http.access import Caller, deletion_refusal
from streams.http.openapi import document
from streams.http.outputs_reader import model
from streams.http.views import ApiView, id_path
from streams.worker.app import app, settings
from streams.worker.runtime import new_input_batch

RECEIPT_WAIT_S = 60.0
SEND_WAIT_S = 30.0


@app.page("/api/tenants")
class Tenants(ApiView):
    async def get(self, request: Request) -> Response:
        return self.json(api.tenants(model, datetime.now(UTC), self.caller(request)))


@app.page(id_path("/api/tenants/{tenant_id}"))
class TenantDetails(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request))
        return self.json(api.tenant_details(model, tenant_id, datetime.now(UTC)))


@app.page(id_path("/api/tenants/{tenant_id}/windows"))
class TenantWindows(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request))
        return self.json(api.tenant_windows(model, tenant_id))


async def submit(request_record: dict[str, Any]) -> dict[str, Any] | None:
    """Produce a deletion request; its receipt, or None when it takes over RECEIPT_WAIT_S.

    ApiError(503) when Kafka does not take the request within SEND_WAIT_S (a broker outage).
    The send goes on in the background (shielded), so the request may still be carried out:
    the answer names its request id, whose receipt tells.
    """
    batch = new_input_batch()
    tenant_id = request_record["tenant_id"]
    batch.emit(
        topics.ATTEMPT_DELETIONS,
        tenant_id.encode(),
        # UTF-8 as it is, as the selector's limit is measured (SELECTOR_MAX_BYTES): json.dumps
        # wrote every non-ASCII character as a 6-byte escape, so 512 KiB of CJK learner ids
        # became a record over the 1,000,000 bytes a batch takes, and the caller a 500
        orjson.dumps(request_record),
    )
    try:
        await asyncio.wait_for(asyncio.shield(batch.flush()), SEND_WAIT_S)
    except TimeoutError:
        raise api.ApiError(
            503,
            f"Kafka did not take request {request_record['request_id']!r} within "
            f"{SEND_WAIT_S:g} s; it may still be carried out: ask for its receipt later (to send "
            "it again, use the same request_id and requested_at)",
            fields={
                "request_id": request_record["request_id"],
                "requested_at": request_record["requested_at"],
            },
        ) from None
    return await model.wait_for_receipt(
        tenant_id,
        request_record["request_id"],
        RECEIPT_WAIT_S,
        api.receipt_matcher(request_record),
    )


async def delete(
    caller: Caller, tenant_id: str, body: Any
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    """One deletion request from a caller, through every guard rail: (status, answer, record).
    The dashboard's forms come this way too."""
    api.require_tenant(model, tenant_id, caller)
    refusal = deletion_refusal(caller, None)  # a read token: refused whatever the body says
    if refusal is not None:
        raise api.ApiError(403, refusal)
    now = datetime.now(UTC)
    record = api.deletion_request(tenant_id, body, now, caller.name)
    refusal = deletion_refusal(caller, record["mode"])
    if refusal is not None:
        raise api.ApiError(403, refusal)
    earlier = api.earlier_delivery(model, record, "requested_at" in body)
    if earlier is not None:
        return 200, earlier, record
    api.check_preview(model, record, body, now, settings.deletion_max_share)
    deadline = asyncio.get_running_loop().time() + RECEIPT_WAIT_S
    receipt = await submit(record)
    if receipt is not None and is_reused_id_receipt(receipt) and "requested_at" not in body:
        # Another request took the id first. Without requested_at, mode and selector decide
        # (earlier_delivery): a retry sent while the first call is under way got a
        # requested_at of its own, so the stages told it apart; the first one's receipt tells.
        receipt = await first_request_receipt(record, receipt, deadline)
    if receipt is None:
        return 202, {"request_id": record["request_id"]}, record
    if is_reused_id_receipt(receipt):  # another request took the id first
        raise api.ApiError(409, receipt["error"])
    return 200, receipt, record


async def first_request_receipt(
    record: dict[str, Any], refused: dict[str, Any], deadline: float
) -> dict[str, Any] | None:
    """The receipt of the request that owns `record`'s request id when that request is
    `record`'s (mode and selector), else `record`'s own error receipt `refused`; None when the
    owner's receipt does not come by `deadline`."""
    owner = await model.wait_for_receipt(
        record["tenant_id"],
        record["request_id"],
        max(0.0, deadline - asyncio.get_running_loop().time()),
        lambda receipt: not is_reused_id_receipt(receipt),
    )
    if owner is None:
        return None
    return owner if api.same_request(owner, record, requested_at_given=False) else refused


@app.page(id_path("/api/tenants/{tenant_id}/deletions"))
class Deletions(ApiView):
    async def get(self, request: Request, tenant_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request), trail=True)
        limit = request.query.get("limit")  # type: ignore[attr-defined]
        return self.json(api.deletions(model, tenant_id, limit))

    async def post(self, request: Request, tenant_id: str) -> Response:
        caller = self.caller(request)
        status, answer, _ = await delete(caller, tenant_id, await self.body(request))
        return self.json(answer, status=status)


@app.page(id_path("/api/tenants/{tenant_id}/deletions/{request_id}"))
class Receipt(ApiView):
    async def get(self, request: Request, tenant_id: str, request_id: str) -> Response:
        api.require_tenant(model, tenant_id, self.caller(request), trail=True)
        receipt = model.receipt(tenant_id, request_id)
        if receipt is None:
            raise api.ApiError(404, f"no receipt for request {request_id!r} of {tenant_id!r} (yet)")
        return self.json(receipt)


@app.page("/api/openapi.json")
class OpenApi(ApiView):
    async def get(self, request: Request) -> Response:
        self.caller(request)
        return self.json(document())
