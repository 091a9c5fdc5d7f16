"""Datasets: `generate`, `produce`, `verify` (live counts against a recount)."""

from __future__ import annotations

import argparse
import contextlib
import sys

from streams.cli.common import CommandError, open_input, parse_instant, require_broker
from streams.config.settings import Settings


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.dataset import DatasetSpec, dumps, generate

    now = parse_instant(args.now) if args.now else None
    spec = DatasetSpec(launches=args.launches, tenants=args.tenants, seed=args.seed, now=now)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        written = 0
        for record in generate(spec):
            out.write(dumps(record) + "\n")
            written += 1
    finally:
        if out is not sys.stdout:
            out.close()
    if args.out != "-":
        print(f"wrote {written} records to {args.out}", file=sys.stderr)
    return 0


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    import json

    from schemas.topics import ATTEMPT_DELETIONS, LAUNCHES, LICENSES
    from streams.kafka.io import key_of, produce_records, topic_of

    require_broker(settings, args.timeout)
    source = sys.stdin if args.file == "-" else open_input(args.file)
    counts: dict[str, int] = {LAUNCHES: 0, LICENSES: 0, ATTEMPT_DELETIONS: 0}

    def records():  # type: ignore[no-untyped-def]
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            if args.topic:
                topic, key, value = args.topic, None, line.rstrip("\n").encode()
                # sent as it is: the service dead-letters what it cannot read
                with contextlib.suppress(ValueError, AttributeError):
                    key = key_of(topic, json.loads(line))
            else:
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    topic = topic_of(record)
                except ValueError as exc:
                    raise CommandError(
                        f"{args.file}:{number}: {exc} (use --topic to send lines as they are)"
                    ) from None
                key, value = key_of(topic, record), line.rstrip("\n").encode()
            counts[topic] = counts.get(topic, 0) + 1
            yield topic, key, value

    def progress(sent: int) -> None:
        print(f"  {sent:,} records sent", file=sys.stderr)

    try:
        sent = produce_records(settings, records(), progress)
    finally:
        if source is not sys.stdin:
            source.close()
    summary = ", ".join(f"{n:,} to {settings.topic(t)}" for t, n in counts.items() if n)
    print(f"produced {sent:,} records: {summary or 'nothing'}")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Compare the live counts with an independent recount of a dataset file."""
    import json
    from datetime import UTC, datetime

    from streams.domain.recount import recount
    from streams.kafka.io import current_counts

    launches, licenses = [], {}
    with open_input(args.dataset) as source:
        for line in source:
            if not line.strip():
                continue
            record = json.loads(line)
            if "event_id" in record:
                launches.append(record)
            elif "cycle_start" in record or "window_months" in record:
                licenses[record["tenant_id"]] = record
    expected = recount(launches, licenses, datetime.now(UTC))
    live = current_counts(settings, timeout_s=120)
    wrong = [
        f"{tenant} {start}: live {live.get((tenant, start), {}).get('active_learners')}, "
        f"recount {active}"
        for (tenant, start), (active, _) in sorted(expected.items())
        if live.get((tenant, start), {}).get("active_learners") != active
    ]
    if wrong:
        for line in wrong[:20]:
            print(f"  mismatch  {line}")
        raise CommandError(f"{len(wrong)} of {len(expected)} windows differ from the recount")
    print(f"verified: all {len(expected)} windows with learners match an independent recount")
    return 0
