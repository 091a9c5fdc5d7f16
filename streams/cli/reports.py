"""`report` and `forecast`: the administrators' reports, asked of a worker's HTTP API.

The learners' attempts live in the workers' partitions, so these commands ask a worker (any:
it gathers from the others): `--api` (default `http://127.0.0.1:$WEB_PORT`), with the token in
`ACTIVE_LEARNERS_TOKEN` when the API needs one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode

from streams.cli.common import CommandError
from streams.config.settings import Settings
from streams.domain.reports import csv_line


def api_base(args: argparse.Namespace, settings: Settings) -> str:
    return (args.api or f"http://127.0.0.1:{settings.web_port}").rstrip("/")


def fetch(base: str, path: str, timeout_s: float = 300.0) -> bytes:
    """The body of a GET; a one-line CommandError for an error answer or no answer."""
    request = urllib.request.Request(base + path)
    token = os.environ.get("ACTIVE_LEARNERS_TOKEN", "").strip()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        try:
            message = json.loads(error.read())["error"]
        except (ValueError, KeyError, TypeError):
            message = error.reason
        raise CommandError(f"{base}{path}: {error.code} {message}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise CommandError(f"no worker answers at {base} ({reason}); see --api") from None


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    base = api_base(args, settings)
    tenant = quote(args.tenant, safe="")
    if args.by is not None and args.status is not None:
        raise CommandError("--by and --status exclude each other")
    if args.window is not None and args.status is not None:
        raise CommandError("--status reports every learner against the current window: no --window")
    window = args.window or json.loads(fetch(base, f"/api/tenants/{tenant}"))["window"]["start"]
    if args.by is not None:
        path = f"/api/tenants/{tenant}/windows/{quote(window, safe='')}/groups"
        answer = json.loads(fetch(base, path))
        if args.format == "json":
            print(json.dumps(answer, indent=2))
            return 0
        groups = answer["teams" if args.by == "team" else "roles"]
        rows = [(g["id"], f"{g['active_learners']:,}") for g in groups]
        if args.by == "team":
            rows.append(("(in no team)", f"{answer['unassigned']:,}"))
        if args.format == "csv":
            sys.stdout.write(csv_line((args.by, "active_learners")))
            for name, count in rows:
                sys.stdout.write(csv_line((name, count.replace(",", ""))))
            return 0
        print(f"Active Learners of {args.tenant}, window {window}, by {args.by}")
        print(table((args.by, "active"), rows))
        return 0
    wanted = {"format": "jsonl" if args.format == "table" else args.format}
    if args.status is not None:
        path = f"/api/tenants/{tenant}/learners"
        wanted["status"] = args.status
    else:
        path = f"/api/tenants/{tenant}/windows/{quote(window, safe='')}/learners"
    body = fetch(base, f"{path}?{urlencode(wanted)}")
    if args.format != "table":
        sys.stdout.buffer.write(body)
        return 0
    rows_out = [_learner_line(json.loads(line)) for line in body.decode().splitlines() if line]
    title = f"status {args.status}" if args.status else f"counted in window {window}"
    print(f"Learners of {args.tenant}, {title}: {len(rows_out):,}")
    header: tuple[str, ...] = (
        "learner",
        "first attempt",
        "last attempt",
        "attempts",
        "teams",
        "roles",
    )
    if args.status:
        header = ("learner", "status", "last attempt", "teams", "roles")
    print(table(header, rows_out))
    return 0


def _learner_line(row: dict[str, Any]) -> tuple[str, ...]:
    teams, roles = ", ".join(row["teams"]), ", ".join(row["roles"])
    if "status" in row:
        return (row["learner_id"], row["status"], row["last_attempt_at"][:19], teams, roles)
    return (
        row["learner_id"],
        row["first_attempt_at"][:19],
        row["last_attempt_at"][:19],
        str(row["attempts"]),
        teams,
        roles,
    )


def cmd_forecast(args: argparse.Namespace, settings: Settings) -> int:
    base = api_base(args, settings)
    answer = json.loads(fetch(base, f"/api/tenants/{quote(args.tenant, safe='')}/forecast"))
    if args.format == "json":
        print(json.dumps(answer, indent=2))
        return 0
    window = answer["window"]
    limit = answer["learner_limit"]
    print(f"Forecast of {args.tenant}, window {window['start']} .. {window['end']}")
    print(
        f"  Active Learners now        {answer['active_learners']:,}"
        + ("" if limit is None else f" of {limit:,}")
    )
    print(f"  projected at window end    {answer['projected_at_window_end']:,}")
    print(f"  limit reached on           {answer['limit_reached_on'] or '-'}")
    print(f"  method                     {answer['method']}")
    print(
        table(
            ("date", "active"),
            [(d["date"], f"{d['active_learners']:,}") for d in answer["daily"][-14:]],
        )
    )
    return 0
