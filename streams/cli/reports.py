"""`report` and `forecast`: the administrators' reports, asked of a worker's HTTP API.

The learners' attempts live in the workers' partitions, so these commands ask a worker (any:
it gathers from the others): `--api` (default `http://127.0.0.1:$WEB_PORT`), with the token in
`ACTIVE_LEARNERS_TOKEN` when the API needs one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from streams.cli.common import CommandError
from streams.config.settings import Settings
from streams.domain.reports import csv_line, terminal_text


def api_base(args: argparse.Namespace, settings: Settings) -> str:
    base = (args.api or f"http://127.0.0.1:{settings.web_port}").rstrip("/")
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018  (raises ValueError for a port that is no number)
    except ValueError as exc:
        raise CommandError(f"--api: not a URL: {base!r} ({exc})") from None
    # urllib would also open file:// and ftp:// addresses: only a worker's API is asked
    if parts.scheme not in ("http", "https") or not parts.hostname or not _url_text(base):
        raise CommandError(
            f"--api: expected http://host:port or https://... (ASCII, no spaces), got {base!r}"
        )
    return base


def _url_text(url: str) -> bool:
    return url.isascii() and url.isprintable() and " " not in url


def api_token() -> str:
    """ACTIVE_LEARNERS_TOKEN; a token is printable ASCII (an HTTP header cannot carry more)."""
    token = os.environ.get("ACTIVE_LEARNERS_TOKEN", "").strip()
    if token and not (token.isascii() and token.isprintable()):
        raise CommandError(
            "ACTIVE_LEARNERS_TOKEN must be printable ASCII, without line breaks or other "
            "control characters"
        )
    return token


def fetch(base: str, path: str, timeout_s: float = 300.0) -> bytes:
    """The body of a GET; a one-line CommandError for an error answer or no answer."""
    request = urllib.request.Request(base + path)
    token = api_token()
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
        if isinstance(reason, TimeoutError):  # connected, or connecting, but no answer
            raise CommandError(
                f"{base}{path}: no answer within {timeout_s:g}s (a busy worker: see --timeout)"
            ) from None
        raise CommandError(f"no worker answers at {base} ({reason}); see --api") from None
    except (http.client.HTTPException, ValueError) as error:  # not HTTP, or a bad URL after all
        reason = " ".join(str(error).split())
        raise CommandError(f"{base}{path}: {type(error).__name__}: {reason}; see --api") from None


def fetch_json(base: str, path: str, timeout_s: float = 300.0) -> Any:
    """The JSON answer of a GET; a one-line CommandError when it is not JSON."""
    try:
        return json.loads(fetch(base, path, timeout_s))
    except ValueError:
        raise CommandError(f"{base}{path}: the answer is not JSON (is --api a worker?)") from None


def unexpected(base: str, exc: Exception) -> CommandError:
    """An answer without the fields a report reads: not this version's worker API."""
    reason = " ".join(str(exc).split())
    return CommandError(f"{base}: unexpected answer ({type(exc).__name__}: {reason}); see --api")


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = [header, *([terminal_text(cell) for cell in row] for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    base = api_base(args, settings)
    try:
        return report(args, base)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise unexpected(base, exc) from None


def report(args: argparse.Namespace, base: str) -> int:
    tenant = quote(args.tenant, safe="")
    if args.by is not None and args.status is not None:
        raise CommandError("--by and --status exclude each other")
    if args.window is not None and args.status is not None:
        raise CommandError("--status reports every learner against the current window: no --window")
    window = (
        args.window or fetch_json(base, f"/api/tenants/{tenant}", args.timeout)["window"]["start"]
    )
    if args.by is not None:
        path = f"/api/tenants/{tenant}/windows/{quote(window, safe='')}/groups"
        answer = fetch_json(base, path, args.timeout)
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
    body = fetch(base, f"{path}?{urlencode(wanted)}", args.timeout)
    if args.format != "table":
        sys.stdout.buffer.write(body)
        return 0
    try:
        # lines end at LF only: orjson leaves U+2028 and U+0085 in an id unescaped, and
        # str.splitlines would cut that row in two
        lines = body.decode().split("\n")
        rows_out = [_learner_line(json.loads(line)) for line in lines if line.strip()]
    except ValueError:
        raise CommandError(
            f"{base}{path}: the answer is not JSON lines (is --api a worker?)"
        ) from None
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
    answer = fetch_json(base, f"/api/tenants/{quote(args.tenant, safe='')}/forecast", args.timeout)
    try:
        return forecast(args, answer)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise unexpected(base, exc) from None


def forecast(args: argparse.Namespace, answer: Any) -> int:
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
