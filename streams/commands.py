"""CLI commands of `active-learners`. Each prints a one-line error and exits non-zero on bad input."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from streams.config import ConfigError, Settings


class CommandError(Exception):
    """A command could not do its job; the message is shown as a one-line error."""


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka_admin import BrokerUnavailable, ensure_topics

    if args.partitions is not None:
        settings = _replace(settings, partitions=args.partitions)
    try:
        report = ensure_topics(settings, timeout_s=args.timeout)
    except BrokerUnavailable as exc:
        raise CommandError(str(exc)) from exc
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
    from streams.kafka_admin import BrokerUnavailable, ensure_topics

    try:
        ensure_topics(settings, timeout_s=args.timeout)
    except BrokerUnavailable as exc:
        raise CommandError(str(exc)) from exc
    settings.state_dir.mkdir(parents=True, exist_ok=True)

    from faust.worker import Worker

    from streams.app import load

    worker = Worker(load(), loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; exits the process itself
    return 0


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)  # type: ignore[arg-type]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
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
        "--loglevel", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.add_argument(
        "--timeout", type=_positive_float, default=30.0, help="seconds to wait for the broker"
    )
    worker.set_defaults(handler=cmd_worker)
    return parser


def run(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    try:
        settings = Settings.from_env()
        return handler(args, settings)
    except (CommandError, ConfigError) as exc:
        print(f"active-learners {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
