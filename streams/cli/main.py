"""The `active-learners` command line: its parser, and one-line errors with a non-zero exit on
bad input. The commands live by theme: ops, data, report, deletions, measure."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib import metadata

from kafka.errors import KafkaError

from streams.cli.common import (
    CommandError,
    non_negative_int,
    positive_float,
    positive_int,
    positive_int_up_to,
)
from streams.cli.data import cmd_generate, cmd_produce, cmd_verify
from streams.cli.deletions import cmd_delete
from streams.cli.measure import cmd_bench, cmd_simulate, cmd_soak
from streams.cli.ops import cmd_notifier, cmd_settle, cmd_topics, cmd_worker
from streams.cli.report import cmd_counts
from streams.cli.reports import cmd_forecast, cmd_report
from streams.config.settings import MAX_PARTITIONS, ConfigError, Settings
from streams.kafka.admin import (
    BrokerUnavailable,
    TopicMismatch,
    TopicSetupError,
)
from streams.kafka.io import ProduceError

MAX_LAUNCHES, MAX_TENANTS = 10_000_000, 100_000  # of `generate`


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # One line on stderr and exit 2, instead of argparse's usage dump.
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def package_version() -> str:
    try:
        return metadata.version("active-learners")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="active-learners",
        description="Live, exact Active Learner counts per LMS tenant, from Kafka launch events.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    topics = commands.add_parser("topics", help="create every topic (idempotent)")
    topics.add_argument(
        "--partitions",
        type=positive_int_up_to(MAX_PARTITIONS),
        help="partitions (default PARTITIONS)",
    )
    topics.add_argument(
        "--timeout", type=positive_float, default=15.0, help="seconds to wait for the broker"
    )
    topics.set_defaults(handler=cmd_topics)

    worker = commands.add_parser("worker", help="run a worker (all three stages) until stopped")
    worker.add_argument(
        "--loglevel", default="info", choices=["debug", "info", "warn", "error", "crit"]
    )
    worker.add_argument(
        "--timeout", type=positive_float, default=30.0, help="seconds to wait for the broker"
    )
    worker.add_argument(
        "--processes",
        type=positive_int,
        default=1,
        help="worker processes on this host, one core each (STATE_DIR/process-<i>, WEB_PORT+i)",
    )
    worker.set_defaults(handler=cmd_worker)

    generate = commands.add_parser("generate", help="write a realistic seeded dataset (JSON lines)")
    # the launches are shuffled in memory (about 600 bytes each), and every tenant has learners
    generate.add_argument("--launches", type=positive_int_up_to(MAX_LAUNCHES), default=300_000)
    generate.add_argument("--tenants", type=positive_int_up_to(MAX_TENANTS), default=24)
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
    produce.add_argument("--timeout", type=positive_float, default=15.0)
    produce.set_defaults(handler=cmd_produce)

    counts = commands.add_parser("counts", help="print the Active Learner counts per tenant window")
    counts.add_argument("--tenant", help="only this tenant")
    counts.add_argument("--current", action="store_true", help="only each tenant's latest window")
    counts.add_argument(
        "--format", choices=("table", "csv", "json"), default="table", help="output (default table)"
    )
    counts.add_argument("--timeout", type=positive_float, default=15.0)
    counts.set_defaults(handler=cmd_counts)

    report = commands.add_parser(
        "report", help="who is counted: a window's learners, learners by status, teams and roles"
    )
    report.add_argument("--tenant", required=True)
    report.add_argument("--window", metavar="START", help="a window's start date (default: now)")
    report.add_argument("--status", choices=("active", "inactive"), help="every learner, by status")
    report.add_argument("--by", choices=("team", "role"), help="active learners per team or role")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument("--api", help="a worker's HTTP address (default http://127.0.0.1:WEB_PORT)")
    report.add_argument(
        "--timeout", type=positive_float, default=300.0, help="seconds to wait for the worker"
    )
    report.set_defaults(handler=cmd_report)

    forecast = commands.add_parser(
        "forecast", help="the current window's daily growth, its projection and the limit date"
    )
    forecast.add_argument("--tenant", required=True)
    forecast.add_argument("--format", choices=("table", "json"), default="table")
    forecast.add_argument(
        "--api", help="a worker's HTTP address (default http://127.0.0.1:WEB_PORT)"
    )
    forecast.add_argument(
        "--timeout", type=positive_float, default=60.0, help="seconds to wait for the worker"
    )
    forecast.set_defaults(handler=cmd_forecast)

    settle = commands.add_parser("settle", help="wait until the worker has processed all input")
    settle.add_argument("--timeout", type=positive_float, default=600.0)
    settle.set_defaults(handler=cmd_settle)

    verify = commands.add_parser("verify", help="compare live counts with a recount of a dataset")
    verify.add_argument("dataset", help="the JSON lines file that was produced")
    verify.set_defaults(handler=cmd_verify)

    notifier = commands.add_parser(
        "notifier", help="e-mail threshold events to administrators (SMTP or an outbox folder)"
    )
    notifier.add_argument("--timeout", type=positive_float, default=30.0)
    notifier.set_defaults(handler=cmd_notifier)

    delete = commands.add_parser(
        "delete", help="delete attempt records: physical (after a preview), logical, or preview"
    )
    delete.add_argument("--tenant", required=True)
    delete.add_argument(
        "--attempt",
        action="append",
        metavar="LEARNER:ATTEMPT",
        help="an attempt (repeatable); LEARNER/ATTEMPT when an id contains ':'",
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
    delete.add_argument("--reason", help="why (kept in the receipt: the audit trail)")
    delete.add_argument("--timeout", type=positive_float, default=120.0)
    delete.set_defaults(handler=cmd_delete)

    bench = commands.add_parser("bench", help="measure one worker: throughput, recovery, ...")
    bench.add_argument(
        "--launches",
        type=non_negative_int,
        default=2_000_000,
        help="tracked launches of the throughput phase (0 skips it, recovery and deletion)",
    )
    bench.add_argument("--tenants", type=positive_int, default=200)
    bench.add_argument("--web-port", type=positive_int_up_to(65535), default=6099)
    bench.add_argument("--skip-recovery", action="store_true", help="(and the deletion)")
    bench.add_argument("--skip-deletion", action="store_true")
    bench.add_argument("--skip-latency", action="store_true")
    bench.add_argument(
        "--processes", type=positive_int, default=1, help="worker processes of the throughput phase"
    )
    bench.add_argument(
        "--many-tenants",
        type=non_negative_int,
        default=10_000,
        help="tenants of the 24-monthly-windows phase (0 skips it)",
    )
    bench.add_argument(
        "--skip-postgres",
        action="store_true",
        help="(the PostgreSQL baseline of the same launches)",
    )
    bench.add_argument("--latency-rate", type=positive_int, default=5_000, help="launches/s")
    bench.add_argument("--latency-seconds", type=positive_float, default=30.0)
    bench.add_argument(
        "--report-learners",
        type=non_negative_int,
        default=1_000_000,
        help="learners of the report phase's CSV download (0 skips it)",
    )
    bench.add_argument("--write", default="docs/benchmarks.md", help="report file ('' = none)")
    bench.add_argument(
        "--keep", action="store_true", help="keep the run's topics and state folders afterwards"
    )
    bench.set_defaults(handler=cmd_bench)

    simulate = commands.add_parser(
        "simulate", help="run seeded schedules of Kafka, workers and crashes (no broker)"
    )
    simulate.add_argument("--seeds", type=positive_int, default=1_000, help="how many")
    simulate.add_argument("--seed", type=non_negative_int, default=0, help="the first seed")
    simulate.add_argument(
        "--trace", action="store_true", help="print every action and event of each run"
    )
    simulate.add_argument(
        "--shrink-seconds",
        type=positive_float,
        default=60.0,
        help="how long to shrink a failing schedule",
    )
    simulate.set_defaults(handler=cmd_simulate)

    soak = commands.add_parser("soak", help="workers under a schedule of faults, then every check")
    soak.add_argument("--workers", type=positive_int, default=3)
    soak.add_argument("--launches", type=positive_int, default=60_000)
    soak.add_argument("--rounds", type=positive_int, default=8, help="rounds, a fault after each")
    soak.add_argument(
        "--garbage", type=non_negative_int, default=10_000, help="garbage records (0 = none)"
    )
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
    except (
        CommandError,
        ConfigError,
        BrokerUnavailable,
        TopicMismatch,
        TopicSetupError,
        ProduceError,
    ) as exc:
        print(f"active-learners {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KafkaError as exc:
        # What the Kafka client refused on the way (a record larger than a request may be,
        # a topic ACLs hide, a broker gone mid-command): one line, as for every other error.
        reason = " ".join(str(exc).split())[:300]
        print(
            f"active-learners {args.command}: error: Kafka: {type(exc).__name__}: {reason}",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130
