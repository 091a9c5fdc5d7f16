"""Reports gathered from every learner partition, whichever worker holds it.

A tenant's learners are spread over every learner partition, and each partition lives on one
worker. A report asks each partition for its part: a partition of this worker is read from its
RocksDB tables (streams/stages/reports.py); another worker's is asked over HTTP
(`GET /internal/reports/...`, signed with the deployment's key, streams/kafka/cluster_key.py),
which the faust assignor says where to find. Rows come from each partition in chunks ordered by
learner id and are merged on the fly, so a report of a million learners streams through in
flat memory; aggregates (groups, daily firsts, advisor tallies) are added up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from schemas import topics
from streams.domain.reports import GroupTally, Span, merge_ordered
from streams.http.access import INTERNAL_HEADER, internal_message, sign_internal
from streams.http.api import ApiError
from streams.kafka.cluster_key import obtain_cluster_key
from streams.stages import keys, metrics
from streams.stages import reports as partition_reports
from streams.worker.agents.learners import stage as learner_stage
from streams.worker.app import app, settings
from streams.worker.runtime import local_state
from streams.worker.state import PartitionNotHeld

ROW_KINDS = ("window", "learners")
INTERNAL_READ_TIMEOUT_S = 120.0  # silence of another worker's answer before it counts as failed
# Partition scans running at once on this worker (each yields between chunks of 1,000 rows): many
# concurrent reports share these, and the agents keep their turn on the event loop.
SCANS = asyncio.Semaphore(4)

_key: bytes | None = None
_key_lock = asyncio.Lock()


async def cluster_key() -> bytes:
    """The deployment's key, read from Kafka once. One read at a time: the requests that need
    it meanwhile wait for that read instead of each starting one of their own."""
    global _key
    if _key is None:
        async with _key_lock:
            if _key is None:
                loop = asyncio.get_running_loop()
                _key = await loop.run_in_executor(None, obtain_cluster_key, settings)
    return _key


def placement() -> dict[int, str | None]:
    """Every learner partition: None when this worker holds it, else the URL of its holder.
    ApiError(503) while one has no holder (a rebalance)."""
    topic = settings.topic(topics.ATTEMPTS)
    holders = {
        partition: url
        for url, assigned in app.assignor.table_metadata(topic).items()
        for partition in assigned.get(topic, ())
    }
    own = str(app.conf.canonical_url)
    found: dict[int, str | None] = {}
    for partition in range(settings.partitions):
        if local_state.owns(keys.ATTEMPTS, partition):
            found[partition] = None
        elif holders.get(partition) not in (None, own):
            found[partition] = holders[partition]
        else:
            raise ApiError(
                503,
                f"learner partition {partition} has no worker right now (a rebalance); "
                "try again in a few seconds",
            )
    return found


def query(tenant_id: str, span: Span, **extra: str) -> dict[str, str]:
    return {"tenant": tenant_id, "start": repr(span.start), "end": repr(span.end), **extra}


def span_of(params: dict[str, str]) -> Span:
    return Span(float(params["start"]), float(params["end"]))


# -- what one partition answers (here, or at the internal endpoint of its holder) ----------------


async def local_rows(kind: str, partition: int, params: dict[str, str]) -> AsyncIterator[list[Any]]:
    report = partition_reports.window_rows if kind == "window" else partition_reports.learner_rows
    chunks = report(local_state.held_reads(), partition, params["tenant"], span_of(params))
    try:
        while True:
            async with SCANS:
                try:
                    chunk = await anext(chunks, None)
                except PartitionNotHeld as exc:  # a rebalance took it while the report read
                    raise _moved(exc) from exc
            if chunk is None:
                return
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


def _moved(exc: PartitionNotHeld) -> ApiError:
    return ApiError(503, f"{exc} (a rebalance); try again in a few seconds")


async def local_aggregate(kind: str, partition: int, params: dict[str, str]) -> Any:
    tallied = _from_tallies(kind, partition, params)
    if tallied is not None:
        metrics.report_parts_total.labels(kind, "tallies").inc()
        return tallied
    if kind in ("firsts", "advisor"):
        metrics.report_parts_total.labels(kind, "scan").inc()
    async with SCANS:
        try:
            return await _aggregate(kind, partition, params)
        except PartitionNotHeld as exc:  # a rebalance took it while the report read
            raise _moved(exc) from exc


def _from_tallies(kind: str, partition: int, params: dict[str, str]) -> Any:
    """The forecast's and the advisor's part from the tallies the learner stage keeps (no
    scan), or None when they cannot answer it (then the attempts are scanned)."""
    counters, tenant, span = learner_stage.counters, params["tenant"], span_of(params)
    if kind == "firsts":
        return partition_reports.tallied_firsts(counters, partition, tenant, span, params["tz"])
    if kind == "advisor" and "tz" in params:
        cutoffs = [float(c) for c in params["cutoffs"].split(",") if c]
        return partition_reports.tallied_advisor(
            counters, partition, tenant, span, params["tz"], cutoffs
        )
    return None


async def _aggregate(kind: str, partition: int, params: dict[str, str]) -> Any:
    tenant, span, reads = params["tenant"], span_of(params), local_state.held_reads()
    if kind == "groups":
        tally = await partition_reports.groups(reads, partition, tenant, span)
        return tally.as_json()
    if kind == "firsts":
        return await partition_reports.daily_firsts(reads, partition, tenant, span, params["tz"])
    if kind == "advisor":
        cutoffs = [float(c) for c in params["cutoffs"].split(",") if c]
        return await partition_reports.advisor(reads, partition, tenant, span, cutoffs)
    raise ApiError(404, f"no report {kind!r}")


# -- asking another worker ------------------------------------------------------------------------


@asynccontextmanager
async def _remote(
    url: str, kind: str, partition: int, params: dict[str, str]
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The answer of the worker holding a partition; ApiError(503) when it fails, before or
    while it answers. No overall deadline: a big report reads as fast as its client does."""
    path = f"/internal/reports/{kind}/{partition}"
    message = internal_message(path, params)
    try:
        key = await cluster_key()
    except Exception as exc:  # Kafka unreachable or slow: the cluster key cannot be read
        raise ApiError(
            503, f"cannot ask the worker holding learner partition {partition}: {exc}"
        ) from exc
    headers = {INTERNAL_HEADER: sign_internal(key, message, time.time())}
    timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=INTERNAL_READ_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url.rstrip("/") + path, params=params, headers=headers) as response,
        ):
            if response.status != 200:
                text = (await response.text())[:200].replace("\n", " ")
                raise ApiError(
                    503,
                    f"learner partition {partition}'s worker answered {response.status}: {text}",
                )
            yield response
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ApiError(
            503,
            f"the worker holding learner partition {partition} did not answer: "
            f"{type(exc).__name__}",
        ) from None


async def remote_rows(
    url: str, kind: str, partition: int, params: dict[str, str]
) -> AsyncIterator[list[Any]]:
    async with _remote(url, kind, partition, params) as response:
        pending = b""
        # one chunk of rows a line, of any length (aiohttp's readline stops at 64 KiB)
        async for data in response.content.iter_any():
            *lines, tail = data.split(b"\n")
            if lines:
                lines[0], pending = pending + lines[0], tail
                for line in lines:
                    if line:
                        yield orjson.loads(line)
            else:
                pending += tail
        if pending.strip():
            yield orjson.loads(pending)


async def remote_aggregate(url: str, kind: str, partition: int, params: dict[str, str]) -> Any:
    async with _remote(url, kind, partition, params) as response:
        return await response.json()


# -- gathering ------------------------------------------------------------------------------------


async def rows(
    kind: str, params: dict[str, str], out_chunk: int = 5_000
) -> AsyncIterator[list[list[Any]]]:
    """Every partition's rows of `kind`, merged by learner id, in chunks."""
    streams = [
        local_rows(kind, partition, params)
        if url is None
        else remote_rows(url, kind, partition, params)
        for partition, url in placement().items()
    ]
    async for chunk in merge_ordered(streams, out_chunk):
        yield chunk


async def aggregates(kind: str, params: dict[str, str]) -> list[Any]:
    """Every partition's aggregate of `kind` (to be added up)."""
    return await all_or_none(
        *(
            local_aggregate(kind, partition, params)
            if url is None
            else remote_aggregate(url, kind, partition, params)
            for partition, url in placement().items()
        )
    )


async def all_or_none(*calls: Awaitable[Any]) -> list[Any]:
    """Every call's answer; when one fails, the others are cancelled before its error goes up
    (asyncio.gather would leave them asking other workers for an answer nobody reads)."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


async def first_rows(kind: str, params: dict[str, str], count: int) -> list[list[Any]]:
    """The first `count` rows of a report (a dashboard's first page)."""
    taken: list[list[Any]] = []
    chunks = rows(kind, params, out_chunk=count)
    try:
        async for chunk in chunks:
            taken.extend(chunk[: count - len(taken)])
            if len(taken) >= count:
                break
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return taken


def added_groups(parts: list[Any]) -> GroupTally:
    total = GroupTally()
    for part in parts:
        total.merge(GroupTally.from_json(part))
    return total
