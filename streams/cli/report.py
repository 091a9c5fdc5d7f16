"""Reading the counts: `counts` (a table, or one tenant's License Key details)."""

from __future__ import annotations

import argparse
import json
import sys

from streams.cli.common import CommandError, require_broker, require_topics
from streams.config.settings import Settings
from streams.domain.reports import (
    csv_line,
    csv_rows,
    shown_utilization,
    spreadsheet_text,
    terminal_text,
)


def cmd_counts(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.io import current_counts

    require_broker(settings, args.timeout)
    require_topics(settings, ["active-learner-counts"], args.timeout)
    counts = current_counts(settings, timeout_s=max(args.timeout, 60))
    rows = [
        record
        for (tenant, _), record in sorted(counts.items())
        if args.tenant is None or tenant == args.tenant
    ]
    if args.current:
        latest: dict[str, dict] = {}
        for record in rows:  # windows are sorted by start: the last one is the current one
            latest[record["tenant_id"]] = record
        rows = list(latest.values())
    if args.tenant is not None and not rows:
        raise CommandError(
            f"no counts for tenant {args.tenant!r} in {settings.topic('active-learner-counts')}"
        )
    if args.format == "csv":
        sys.stdout.write(format_counts_csv(rows))
        return 0
    if args.format == "json":
        print(json.dumps({"counts": rows}, indent=2))
        return 0
    print(format_counts_table(rows))
    if args.tenant is not None:
        print()
        print(format_license_details(license_details(settings, args.tenant, counts)))
    return 0


def license_details(settings: Settings, tenant_id: str, counts: dict) -> dict:
    """The License Key details of GET /api/tenants/{tenant_id}, from the topics."""
    from datetime import UTC, datetime

    from streams.domain.sources import position_of
    from streams.http import api
    from streams.http.read_model import ReadModel
    from streams.kafka.io import read_records

    model = ReadModel()
    for record in read_records(settings, "licenses"):  # ordered as the service orders them
        model.apply_license(
            record.key, record.value, position_of(record.partition, record.offset, record.timestamp)
        )
    for (tenant, start), record in counts.items():
        if tenant == tenant_id:
            model.apply_count(f"{tenant}/{start}".encode(), json.dumps(record).encode())
    return api.tenant_details(model, tenant_id, datetime.now(UTC))


def format_license_details(details: dict) -> str:
    lic = details["license"]
    window = details["window"]
    limit = "no limit" if lic["learner_limit"] is None else f"{lic['learner_limit']:,}"
    pct = shown_utilization(details["active_learners"], lic["learner_limit"])
    lines = [
        f"License Key details of {details['tenant_id']}"
        + ("" if details["licensed"] else " (no license: the default one)"),
        f"  Active Learner Start Date  {lic['cycle_start']} ({lic['timezone']})",
        f"  Active Window              {lic['window_months']} months, surcharge "
        f"{lic['surcharge_pct']} %",
        f"  current window             {window['start']} .. {window['end']}",
        f"  Active Learners            {details['active_learners']:,} of {limit}"
        + ("" if pct is None else f" ({pct:.1f} %)"),
        f"  Total Learners             {details['total_learners']:,}",
    ]
    for threshold in details["thresholds"]:
        reached = "reached" if threshold["reached"] else "not reached"
        lines.append(
            f"  threshold {threshold['pct']:>4} %         {threshold['learners']:,} learners, "
            f"{reached}"
        )
    return "\n".join(lines)


CSV_COLUMNS = (
    "tenant_id",
    "window_start",
    "window_end",
    "window_months",
    "active_learners",
    "total_learners",
    "learner_limit",
    "utilization_pct",
    "licensed",
    "updated_at",
)


def format_counts_csv(rows: list[dict]) -> str:
    """The count records as CSV (RFC 4180, a header row; an empty cell for no limit)."""
    lines = []
    for record in rows:
        window = record["window"]
        lines.append(
            (
                spreadsheet_text(record["tenant_id"]),
                window["start"],
                window["end"],
                window["months"],
                record["active_learners"],
                record["total_learners"],
                "" if record["learner_limit"] is None else record["learner_limit"],
                "" if record["utilization_pct"] is None else record["utilization_pct"],
                str(record["licensed"]).lower(),
                record.get("updated_at") or "",
            )
        )
    return csv_line(CSV_COLUMNS) + csv_rows(lines)


def format_counts_table(rows: list[dict]) -> str:
    header = ("tenant", "window", "active", "total", "limit", "utilization")
    lines = [header]
    for record in rows:
        window = record["window"]
        limit = record["learner_limit"]
        pct = shown_utilization(record["active_learners"], limit)
        lines.append(
            (
                terminal_text(record["tenant_id"])
                + ("" if record["licensed"] else " (unlicensed)"),
                f"{window['start']} .. {window['end']} ({window['months']}m)",
                f"{record['active_learners']:,}",
                f"{record['total_learners']:,}",
                "-" if limit is None else f"{limit:,}",
                "-" if pct is None else f"{pct:.1f}%",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        cells = [
            cell.ljust(width) if i < 2 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)
