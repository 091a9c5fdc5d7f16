"""Measuring it: `bench`, `soak`, `simulate` (the tools of streams/tools)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from streams.cli.common import CommandError, require_broker
from streams.config.settings import Settings
from streams.kafka.admin import (
    is_local_broker,
)


def prepend_run(path: Path, title: str, command: str, stamp: str, body: str) -> None:
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


def check_write(text: str) -> None:
    """`--write` names a file that can be written: told at the start, not after the run."""
    if not text:
        return
    path = Path(text)
    if path.is_dir():
        raise CommandError(f"--write: {text} is a folder; give a file name, or '' for none")
    if not path.parent.is_dir():
        raise CommandError(f"--write: no folder {path.parent} for {text}; give '' for no report")


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from datetime import UTC, datetime

    from streams.tools.bench import report, report_table, rss_table, run_bench

    check_write(args.write)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    bench_settings = replace(
        settings,
        topic_prefix=f"{settings.topic_prefix}bench-{stamp}-",
        state_dir=Path(".bench") / stamp / "state",
        web_port=args.web_port,
    )
    require_broker(settings, 15.0)
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
        report_learners=args.report_learners,
        skip_postgres=args.skip_postgres,
        processes=args.processes,
        many_tenants=args.many_tenants,
    )
    if not args.keep:  # a failed run keeps everything, to be looked at
        remove_run(bench_settings, bench_settings.state_dir.parent)
    summary = report(result)
    print(summary)
    if args.write:
        body = f"```\n{summary}\n```\n"
        if result.rss_curve_mb:
            body += f"\nRSS as attempts are stored:\n\n{rss_table(result)}\n"
        if result.report_learners:
            body += f"\n{report_table(result)}\n"
        prepend_run(Path(args.write), "# Benchmarks", "bench", stamp, body)
    return 0


def remove_run(settings: Settings, folder: Path, states: str = "state*") -> None:
    """A finished run's topics and state folders (`states` under `folder`) go: gigabytes for a
    bench. Its logs stay."""
    import shutil

    from streams.kafka.admin import delete_topics_with_prefix

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

    from streams.tools.soak import SoakSpec, run_soak

    check_write(args.write)
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
    require_broker(settings, 15.0)
    report = run_soak(
        soak_settings,
        spec,
        Path(".soak") / stamp,
        log=lambda text: print(text, file=sys.stderr, flush=True),
    )
    summary = report.summary()
    print(summary)
    if not report.problems and not args.keep:  # a failed run keeps everything, to be looked at
        remove_run(soak_settings, Path(".soak") / stamp, "*/state")
    if args.write:
        body = (
            f"{spec.workers} workers, {spec.launches:,} launches in {spec.rounds} rounds, "
            f"{spec.garbage:,} garbage records, seed {spec.seed}\n\n```\n{summary}\n```\n"
        )
        prepend_run(Path(args.write), "# Reliability", "soak", stamp, body)
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
