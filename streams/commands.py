"""CLI commands of `active-learners`: a one-line error and a non-zero exit on bad input."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from streams.config import ConfigError, Settings
from streams.kafka_admin import (
    BrokerUnavailable,
    TopicMismatch,
    admin_client,
    copartitioned_count,
    ensure_topics,
    is_local_broker,
)
from streams.kafka_io import ProduceError


class CommandError(Exception):
    """A command could not do its job; the message is shown as a one-line error."""


def _require_broker(settings: Settings, timeout_s: float) -> None:
    """Fail with a one-line error, within `timeout_s`, when no broker answers."""
    admin_client(settings, timeout_s=timeout_s).close()


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    if args.partitions is not None:
        settings = replace(settings, partitions=args.partitions)
    report = ensure_topics(settings, timeout_s=args.timeout)
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    print(
        f"{len(report.created)} created, {len(report.existing)} already existed "
        f"({settings.partitions} partitions, replication {settings.replication_factor})"
    )
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    ensure_topics(settings, timeout_s=args.timeout)
    partitions = copartitioned_count(settings, timeout_s=args.timeout)
    if partitions != settings.partitions:
        # The topics exist with another count: work with theirs (routing, broadcasts, parts).
        print(
            f"active-learners worker: the topics have {partitions} partitions; "
            f"using {partitions} (PARTITIONS={settings.partitions} applies to new topics only)",
            file=sys.stderr,
        )
        os.environ["PARTITIONS"] = str(partitions)
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    from streams.app import load
    from streams.logs import log_format, logging_config
    from streams.worker import BoundedWorker

    config = logging_config(log_format(), args.loglevel)
    worker = BoundedWorker(load(), loglevel=args.loglevel, quiet=True, logging_config=config)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; exits the process itself
    return 0


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.dataset import DatasetSpec, dumps, generate

    now = _parse_instant(args.now) if args.now else None
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

    from streams.kafka_io import key_of, produce_records, topic_of
    from streams.topics import ATTEMPT_DELETIONS, LAUNCHES, LICENSES

    _require_broker(settings, args.timeout)
    source = sys.stdin if args.file == "-" else _open_input(args.file)
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


def cmd_counts(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka_io import current_counts

    _require_broker(settings, args.timeout)
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
    print(format_counts_table(rows))
    if args.tenant is not None:
        print()
        print(format_license_details(license_details(settings, args.tenant, counts)))
    return 0


def license_details(settings: Settings, tenant_id: str, counts: dict) -> dict:
    """The License Key details of GET /api/tenants/{tenant_id}, from the topics."""
    from datetime import UTC, datetime

    from streams import api
    from streams.kafka_io import read_topic
    from streams.read_model import ReadModel

    model = ReadModel()
    for key, value in read_topic(settings, "licenses"):
        model.apply_license(key, value)
    for (tenant, start), record in counts.items():
        if tenant == tenant_id:
            model.counts.setdefault(tenant, {})[start] = record
    return api.tenant_details(model, tenant_id, datetime.now(UTC))


def format_license_details(details: dict) -> str:
    lic = details["license"]
    window = details["window"]
    limit = "no limit" if lic["learner_limit"] is None else f"{lic['learner_limit']:,}"
    pct = details["utilization_pct"]
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


def format_counts_table(rows: list[dict]) -> str:
    header = ("tenant", "window", "active", "total", "limit", "utilization")
    lines = [header]
    for record in rows:
        window = record["window"]
        limit = record["learner_limit"]
        pct = record["utilization_pct"]
        lines.append(
            (
                record["tenant_id"] + ("" if record["licensed"] else " (unlicensed)"),
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


def cmd_settle(args: argparse.Namespace, settings: Settings) -> int:
    from streams.settle import wait_until_settled

    def progress(lag: int) -> None:
        print(f"  waiting: {lag:,} records not yet processed", file=sys.stderr, flush=True)

    try:
        waited = wait_until_settled(settings, timeout_s=args.timeout, progress=progress)
    except TimeoutError as exc:
        raise CommandError(str(exc)) from None
    print(f"settled after {waited:.1f}s")
    return 0


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Compare the live counts with an independent recount of a dataset file."""
    import json
    from datetime import UTC, datetime

    from streams.domain.recount import recount
    from streams.kafka_io import current_counts

    launches, licenses = [], {}
    with _open_input(args.dataset) as source:
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


def _prepend_run(path: Path, title: str, command: str, stamp: str, body: str) -> None:
    """Put a run of `bench` or `soak` first among the runs of its results file.

    The runs follow the `<!-- {command} results -->` marker, newest first; what comes before the
    marker (the file's own text) stays as it is.
    """
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    marker = f"<!-- {command} results -->"
    head, _, previous = text.partition(marker)
    flags = " ".join(sys.argv[2:]) or "(defaults)"
    when = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]} UTC"
    entry = f"\n## `active-learners {command} {flags}` on {when}\n\n{body}"
    path.write_text(head.rstrip() + "\n\n" + marker + "\n" + entry + previous, encoding="utf-8")
    print(f"appended to {path}", file=sys.stderr)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from streams.bench import report, rss_table, run_bench

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    bench_settings = replace(
        settings,
        topic_prefix=f"{settings.topic_prefix}bench-{stamp}-",
        state_dir=Path(".bench") / stamp / "state",
        web_port=args.web_port,
    )
    _require_broker(settings, 15.0)
    result = run_bench(
        bench_settings,
        args.launches,
        args.tenants,
        log=lambda text: print(text, file=sys.stderr, flush=True),
        skip_recovery=args.skip_recovery,
        skip_deletion=args.skip_deletion,
        skip_latency=args.skip_latency,
        latency_rate=args.latency_rate,
        latency_s=args.latency_seconds,
    )
    if not args.keep:  # a failed run keeps everything, to be looked at
        _remove_run(bench_settings, bench_settings.state_dir.parent)
    summary = report(result)
    print(summary)
    if args.write:
        body = f"```\n{summary}\n```\n\nRSS as attempts are stored:\n\n{rss_table(result)}\n"
        _prepend_run(Path(args.write), "# Benchmarks", "bench", stamp, body)
    return 0


def _remove_run(settings: Settings, folder: Path, states: str = "state*") -> None:
    """A finished run's topics and state folders (`states` under `folder`) go: gigabytes for a
    bench. Its logs stay."""
    import shutil

    from streams.kafka_admin import delete_topics_with_prefix

    deleted = delete_topics_with_prefix(settings, settings.topic_prefix)
    for state in folder.glob(states):
        shutil.rmtree(state, ignore_errors=True)
    print(
        f"removed {len(deleted)} topics {settings.topic_prefix}* and the run's state folders "
        f"(--keep keeps them); logs in {folder}",
        file=sys.stderr,
    )


def cmd_soak(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from streams.soak import SoakSpec, run_soak

    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    soak_settings = replace(settings, topic_prefix=f"{settings.topic_prefix}soak-{stamp}-")
    spec = SoakSpec(
        workers=args.workers,
        launches=args.launches,
        rounds=args.rounds,
        garbage=args.garbage,
        seed=args.seed,
        broker_faults=is_local_broker(settings) and not args.no_broker_faults,
    )
    _require_broker(settings, 15.0)
    report = run_soak(
        soak_settings,
        spec,
        Path(".soak") / stamp,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    summary = report.summary()
    print(summary)
    if not report.problems and not args.keep:  # a failed run keeps everything, to be looked at
        _remove_run(soak_settings, Path(".soak") / stamp, "*/state")
    if args.write:
        body = (
            f"{spec.workers} workers, {spec.launches:,} launches in {spec.rounds} rounds, "
            f"{spec.garbage:,} garbage records, seed {spec.seed}\n\n```\n{summary}\n```\n"
        )
        _prepend_run(Path(args.write), "# Reliability", "soak", stamp, body)
    return 0 if not report.problems else 1


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    """Seeded schedules of Kafka, workers and crashes over the real stages (no broker)."""
    from streams.tools.simulate.runner import run_seeds

    failed = run_seeds(
        args.seed,
        args.seeds,
        log=lambda text: print(text, flush=True),
        shrink_s=args.shrink_seconds,
        trace=args.trace,
    )
    return 1 if failed else 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    from streams.deletion_cli import ask, parse_attempt, parse_cutoff, read_learners, run_delete

    chosen = [
        x for x in (args.attempt, args.learners_file, args.older_than, args.team, args.role) if x
    ]
    if len(chosen) != 1:
        raise CommandError(
            "give exactly one of --attempt, --learners-file, --older-than, --team, --role "
            "(--team and --role may be repeated)"
        )
    if args.logical and args.preview:
        raise CommandError("--logical and --preview exclude each other")
    try:
        if args.attempt:
            selector: dict = {"attempts": [parse_attempt(text) for text in args.attempt]}
        elif args.learners_file:
            selector = {"learner_ids": read_learners(args.learners_file)}
        elif args.team:
            selector = {"teams": args.team}
        elif args.role:
            selector = {"roles": args.role}
        else:
            from datetime import UTC, datetime

            selector = {"older_than": parse_cutoff(args.older_than, datetime.now(UTC)).isoformat()}
        mode = "logical" if args.logical else "preview" if args.preview else "physical"
        _require_broker(settings, 15.0)
        return run_delete(settings, args.tenant, selector, mode, args.yes, args.timeout, ask)
    except (ValueError, TimeoutError) as exc:
        raise CommandError(str(exc)) from None


def cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    from streams.notifier import SmtpSettings, run_notifier

    SmtpSettings.from_env()  # a bad SMTP setting is a one-line error before anything starts
    ensure_topics(settings, timeout_s=args.timeout)
    run_notifier(settings)
    return 0


def _open_input(path: str):  # type: ignore[no-untyped-def]
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None


def _parse_instant(text: str):  # type: ignore[no-untyped-def]
    from datetime import datetime

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"--now: not an RFC 3339 timestamp: {text!r}") from None
    if value.tzinfo is None:
        raise CommandError(f"--now: needs an offset, e.g. {text}Z")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of at least 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line on stderr and exit 2, instead of argparse's usage dump.
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="active-learners",
        description="Live, exact Active Learner counts per LMS tenant, from Kafka launch events.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    topics = commands.add_parser("topics", help="create every topic (idempotent)")
    topics.add_argument("--partitions", type=_positive_int, help="partitions (default PARTITIONS)")
    topics.add_argument(
        "--timeout", type=_positive_float, default=15.0, help="seconds to wait for the broker"
    )
    topics.set_defaults(handler=cmd_topics)

    worker = commands.add_parser("worker", help="run a worker (all three stages) until stopped")
    worker.add_argument(
        "--loglevel", default="info", choices=["debug", "info", "warn", "error", "crit"]
    )
    worker.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="seconds to wait for the broker"
    )
    worker.set_defaults(handler=cmd_worker)

    generate = commands.add_parser("generate", help="write a realistic seeded dataset (JSON lines)")
    generate.add_argument("--launches", type=_positive_int, default=300_000)
    generate.add_argument("--tenants", type=_positive_int, default=24)
    generate.add_argument("--seed", type=int, default=7)
    generate.add_argument("--now", help="end of the generated history (default 2026-11-28T00:00Z)")
    generate.add_argument("--out", default="-", help="file to write, - for stdout (default)")
    generate.set_defaults(handler=cmd_generate)

    produce = commands.add_parser("produce", help="send JSON lines to their topics")
    produce.add_argument("file", help="JSON lines file, or - for stdin")
    produce.add_argument(
        "--topic",
        choices=["launches", "licenses", "attempt-deletions", "learner-groups"],
        help="send every line as it is to this topic (default: each line's topic by its fields)",
    )
    produce.add_argument("--timeout", type=_positive_float, default=15.0)
    produce.set_defaults(handler=cmd_produce)

    counts = commands.add_parser("counts", help="print the Active Learner counts per tenant window")
    counts.add_argument("--tenant", help="only this tenant")
    counts.add_argument("--current", action="store_true", help="only each tenant's latest window")
    counts.add_argument("--timeout", type=_positive_float, default=15.0)
    counts.set_defaults(handler=cmd_counts)

    settle = commands.add_parser("settle", help="wait until the worker has processed all input")
    settle.add_argument("--timeout", type=_positive_float, default=600.0)
    settle.set_defaults(handler=cmd_settle)

    verify = commands.add_parser("verify", help="compare live counts with a recount of a dataset")
    verify.add_argument("dataset", help="the JSON lines file that was produced")
    verify.set_defaults(handler=cmd_verify)

    notifier = commands.add_parser(
        "notifier", help="e-mail threshold events to administrators (SMTP or an outbox folder)"
    )
    notifier.add_argument("--timeout", type=_positive_float, default=30.0)
    notifier.set_defaults(handler=cmd_notifier)

    delete = commands.add_parser(
        "delete", help="delete attempt records: physical (after a preview), logical, or preview"
    )
    delete.add_argument("--tenant", required=True)
    delete.add_argument(
        "--attempt", action="append", metavar="LEARNER:ATTEMPT", help="an attempt (repeatable)"
    )
    delete.add_argument("--learners-file", help="learner ids, one a line: their earlier attempts")
    delete.add_argument("--older-than", help="8mo, 2y, 6w, 90d, YYYY-MM-DD or a timestamp")
    delete.add_argument(
        "--team", action="append", metavar="ID", help="a team: its learners' earlier attempts"
    )
    delete.add_argument(
        "--role", action="append", metavar="ID", help="a learning role: the same, by role"
    )
    delete.add_argument("--logical", action="store_true", help="hide, keep counting")
    delete.add_argument("--preview", action="store_true", help="only show what would happen")
    delete.add_argument("--yes", action="store_true", help="do not ask before a physical delete")
    delete.add_argument("--timeout", type=_positive_float, default=120.0)
    delete.set_defaults(handler=cmd_delete)

    bench = commands.add_parser("bench", help="measure one worker: throughput, recovery, ...")
    bench.add_argument("--launches", type=_positive_int, default=2_000_000)
    bench.add_argument("--tenants", type=_positive_int, default=200)
    bench.add_argument("--web-port", type=_positive_int, default=6099)
    bench.add_argument("--skip-recovery", action="store_true", help="(and the deletion)")
    bench.add_argument("--skip-deletion", action="store_true")
    bench.add_argument("--skip-latency", action="store_true")
    bench.add_argument("--latency-rate", type=_positive_int, default=5_000, help="launches/s")
    bench.add_argument("--latency-seconds", type=_positive_float, default=30.0)
    bench.add_argument("--write", default="docs/benchmarks.md", help="report file ('' = none)")
    bench.add_argument(
        "--keep", action="store_true", help="keep the run's topics and state folders afterwards"
    )
    bench.set_defaults(handler=cmd_bench)

    simulate = commands.add_parser(
        "simulate", help="run seeded schedules of Kafka, workers and crashes (no broker)"
    )
    simulate.add_argument("--seeds", type=_positive_int, default=1_000, help="how many")
    simulate.add_argument("--seed", type=_non_negative_int, default=0, help="the first seed")
    simulate.add_argument(
        "--trace", action="store_true", help="print every action and event of each run"
    )
    simulate.add_argument(
        "--shrink-seconds",
        type=_positive_float,
        default=60.0,
        help="how long to shrink a failing schedule",
    )
    simulate.set_defaults(handler=cmd_simulate)

    soak = commands.add_parser("soak", help="workers under a schedule of faults, then every check")
    soak.add_argument("--workers", type=_positive_int, default=3)
    soak.add_argument("--launches", type=_positive_int, default=60_000)
    soak.add_argument("--rounds", type=_positive_int, default=8, help="rounds, a fault after each")
    soak.add_argument("--garbage", type=int, default=10_000, help="garbage records (0 = none)")
    soak.add_argument("--seed", type=int, default=1)
    soak.add_argument(
        "--no-broker-faults",
        action="store_true",
        help="never kill the broker (external ones never are)",
    )
    soak.add_argument("--write", default="docs/reliability.md", help="report file ('' = none)")
    soak.add_argument(
        "--keep", action="store_true", help="keep the run's topics and state folders afterwards"
    )
    soak.set_defaults(handler=cmd_soak)
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        settings = Settings.from_env()
        return handler(args, settings)
    except (CommandError, ConfigError, BrokerUnavailable, TopicMismatch, ProduceError) as exc:
        print(f"active-learners {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
