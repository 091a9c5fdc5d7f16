"""Operating the service: `topics`, `worker`, `settle`, `notifier`."""

from __future__ import annotations

import argparse
import gc
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from schemas import topics
from streams.cli.common import CommandError, require_topics
from streams.cli.state_lock import (
    TABLES,
    check_claim,
    check_state_dir_free,
    claim_state_dir,
    forget_recreated_tables,
    hold_state_dir,
    holds_files,
)
from streams.config.settings import ConfigError, Settings
from streams.kafka.admin import (
    copartitioned_count,
    ensure_topics,
    topic_ids,
)

MAX_PORT = 65535


def cmd_topics(args: argparse.Namespace, settings: Settings) -> int:
    if args.partitions is not None:
        settings = replace(settings, partitions=args.partitions)
    report = ensure_topics(settings, timeout_s=args.timeout, asked=args.partitions is not None)
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    for name in report.updated:
        print(f"updated  {name} (its retention, as this version needs it)")
    # what the topics it made got: PARTITIONS, or the existing topics' count (an input topic made
    # beside them; internal ones of another count are refused: copartitioned_partitions)
    partitions = settings.partitions if report.partitions is None else report.partitions
    shape = f"{partitions} partitions, replication {settings.replication_factor}"
    made = f" (created with {shape})" if report.created else ""
    print(f"{len(report.created)} created, {len(report.existing)} already existed{made}")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    check_worker_settings(args, settings)  # before any topic is created for a worker
    if args.processes > 1:  # the topics that exist, or PARTITIONS for new ones: before creating
        check_processes(args.processes, copartitioned_count(settings, timeout_s=args.timeout))
    ensure_topics(settings, timeout_s=args.timeout)
    partitions = copartitioned_count(settings, timeout_s=args.timeout)
    check_processes(args.processes, partitions)
    if args.processes > 1:
        from streams.cli.processes import run_processes

        return run_processes(args, settings)
    if partitions != settings.partitions:
        # The topics exist with another count: work with theirs (routing, broadcasts, parts).
        print(
            f"active-learners worker: the topics have {partitions} partitions; "
            f"using {partitions} (PARTITIONS={settings.partitions} applies to a new TOPIC_PREFIX "
            "only)",
            file=sys.stderr,
        )
        os.environ["PARTITIONS"] = str(partitions)
    forget_recreated(settings, args.timeout)  # before faust opens a table
    tune_malloc(settings)  # before the worker's buffers are allocated

    from streams.config.logs import log_format, logging_config
    from streams.http import web  # registers the views and the read model on the app
    from streams.worker.agents import ingest, learners, memory, purge, tenants  # noqa: F401  (register)
    from streams.worker.app import app
    from streams.worker.app import settings as running  # the env, PARTITIONS as set above
    from streams.worker.process import BoundedWorker
    from streams.worker.tables import block_cache, tune_stores

    tune_stores(block_cache(settings.rocksdb_block_cache_mb))  # before faust opens a DB

    config = logging_config(log_format(), args.loglevel)
    worker = BoundedWorker(
        app,
        banner=[running.describe(), web.describe()],
        warnings=web.warnings(),
        loglevel=args.loglevel,
        quiet=True,
        logging_config=config,
    )
    tune_garbage_collector()
    worker.execute_from_commandline()  # runs until SIGTERM/SIGINT; exits the process itself
    return 0


def forget_recreated(settings: Settings, timeout_s: float) -> None:
    """The tables of changelogs deleted and made again since this folder last started go
    (streams/cli/state_lock.py: forget_recreated_tables); they restore from the new ones."""
    from streams.stages.store import TABLES as CHANGELOGS

    changelogs = {table: changelog for table, (_, changelog) in CHANGELOGS.items()}
    ids = topic_ids(settings, changelogs.values(), timeout_s=timeout_s)
    for table in forget_recreated_tables(settings.state_dir, changelogs, ids):
        print(
            f"active-learners worker: {settings.topic(changelogs[table])} was made again since "
            f"this state folder last started: its {table} table restores from it",
            file=sys.stderr,
        )


def check_processes(processes: int, partitions: int) -> None:
    if processes > partitions:
        raise CommandError(
            f"--processes {processes} is more than the {partitions} partitions "
            "(a process without a partition would only wait)"
        )


def check_worker_settings(args: argparse.Namespace, settings: Settings) -> None:
    """The worker's own settings: a bad one is a one-line error, nothing created or started."""
    from streams.config.logs import log_format
    from streams.http.tokens import TokenBook

    last_port = settings.web_port + args.processes - 1
    if last_port > MAX_PORT:
        raise CommandError(
            f"WEB_PORT={settings.web_port} with --processes {args.processes} needs the ports up "
            f"to {last_port}; the last port is {MAX_PORT}"
        )
    prepare_state_dir(settings)
    hold_state_dir(settings.state_dir, "worker")  # (a --processes supervisor holds it too)
    if args.processes == 1:
        claim_state_dir(settings.state_dir, "worker", settings.app_id, settings.state_dir / TABLES)
    else:
        check_child_state_dirs(settings, args.processes)
    for note in unused_state(settings.state_dir, args.processes):
        print(f"active-learners worker: {note}", file=sys.stderr)
    TokenBook.from_env()  # a short secret or a bad tokens file
    check_metrics_token()
    log_format()
    check_web_ports(settings, args.processes)


def check_child_state_dirs(settings: Settings, processes: int) -> None:
    """What each child of `worker --processes N` will claim and lock (`STATE_DIR/process-<i>`;
    none uses `STATE_DIR/v1`), checked before any topic is created: a folder of another
    TOPIC_PREFIX, or one a lone worker holds, would otherwise stop that child once the set
    had started (and stop the set with it). Nothing is written: each child claims its own."""
    from streams.cli.processes import child_state_dir

    for index in range(processes):
        folder = child_state_dir(settings.state_dir, index)
        if folder.is_dir():
            check_state_dir_free(folder, "worker")
            check_claim(folder, "worker", settings.app_id, folder / TABLES)


def unused_state(state_dir: Path, processes: int) -> list[str]:
    """Tables in STATE_DIR that this worker (or set of `processes`) will never read: a lone
    worker's `v1` beside a set, a set's `process-<i>` beside a lone worker or past a smaller
    set. Harmless, but they keep their disk space until someone removes them."""
    from streams.cli.processes import child_state_dir

    unused = [] if processes == 1 else [state_dir / TABLES]
    index = processes if processes > 1 else 0
    while child_state_dir(state_dir, index).is_dir():
        unused.append(child_state_dir(state_dir, index))
        index += 1
    who = "this worker" if processes == 1 else f"this set of {processes} processes"
    return [
        f"{folder} holds tables {who} never reads (left by another way of running it); "
        "remove it to free its space"
        for folder in unused
        if folder.is_dir() and holds_files(folder)
    ]


def check_metrics_token() -> None:
    from streams.http.tokens import MIN_SECRET_LENGTH

    token = os.environ.get("METRICS_TOKEN", "").strip()
    if token and len(token) < MIN_SECRET_LENGTH:
        raise CommandError(
            f"METRICS_TOKEN has {len(token)} characters; at least {MIN_SECRET_LENGTH} are needed"
        )


def check_web_ports(settings: Settings, processes: int) -> None:
    """Each process's web port free on the bind address: a port another worker holds, or a
    WEB_HOST that is no address of this host, would otherwise stop the worker only once it
    has joined the consumer group, with a traceback."""
    for port in range(settings.web_port, settings.web_port + processes):
        check_port(settings.web_bind, port, "WEB_HOST/WEB_PORT")


def check_port(host: str, port: int, names: str) -> None:
    """`host:port` free to listen on, else a one-line error naming the settings."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as the web server binds: a port left in TIME_WAIT by a restart is free
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:  # socket.gaierror included: a name that does not resolve
        reason = exc.strerror or str(exc)
        raise ConfigError(f"{names}: cannot listen on {host}:{port} ({reason})") from None


def prepare_state_dir(settings: Settings) -> None:
    """STATE_DIR made, and writable: RocksDB would otherwise fail deep inside the start."""
    path = settings.state_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(f"STATE_DIR={path}: not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"STATE_DIR={path}: cannot create the folder ({exc.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"STATE_DIR={path}: not writable")


def tune_malloc(settings: Settings) -> None:
    """With MALLOC_MMAP_FIXED_KB, fix glibc malloc's mmap threshold at that many KiB
    (streams/worker/malloc.py: fix_mmap_threshold): a flatter RSS for about a tenth of the
    launches/s (docs/benchmarks.md, "A fixed mmap threshold"). Off by default."""
    from streams.worker.malloc import fix_mmap_threshold

    if settings.malloc_mmap_fixed_kb and not fix_mmap_threshold(
        settings.malloc_mmap_fixed_kb * 1024
    ):
        print(
            "active-learners worker: MALLOC_MMAP_FIXED_KB needs glibc's mallopt; ignored",
            file=sys.stderr,
        )


def tune_garbage_collector() -> None:
    """Make Python's cyclic garbage collector run less often in the worker.

    Every batch allocates hundreds of thousands of short-lived objects (decoded launches, rows,
    summaries), and with the default thresholds the collector runs thousands of times a second,
    each full run walking every long-lived object the worker holds. What was imported and built
    before the worker starts is frozen (never walked again), and a young generation of 50,000
    objects instead of 2,000 makes collections rarer: +12 % launches/s in `make bench`
    (docs/benchmarks.md), memory unchanged (the garbage of a batch is freed by reference counts).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def cmd_settle(args: argparse.Namespace, settings: Settings) -> int:
    from streams.kafka.settle import wait_until_settled

    def progress(lag: int) -> None:
        print(f"  waiting: {lag:,} records not yet processed", file=sys.stderr, flush=True)

    # a mistyped TOPIC_PREFIX would otherwise be "settled" at once: nothing to wait for
    require_topics(
        settings, (topics.LAUNCHES, topics.ACTIVE_LEARNER_COUNTS), min(args.timeout, 15.0)
    )
    try:
        waited = wait_until_settled(settings, timeout_s=args.timeout, progress=progress)
    except TimeoutError as exc:
        raise CommandError(str(exc)) from None
    print(f"settled after {waited:.1f}s")
    return 0


def cmd_notifier(args: argparse.Namespace, settings: Settings) -> int:
    from streams.config.logs import log_format
    from streams.notifier.service import SmtpSettings, run_notifier
    from streams.notifier.webhooks import webhook_secret

    # a bad setting is a one-line error before anything starts, before any topic is created
    webhook_secret()
    log_format()
    SmtpSettings.from_env()
    check_metrics_token()
    prepare_state_dir(settings)
    hold_state_dir(settings.state_dir, "notifier")
    claim_state_dir(
        settings.state_dir, "notifier", settings.app_id, settings.state_dir / "notifier"
    )
    if settings.notifier_port:
        check_port(settings.web_host, settings.notifier_port, "WEB_HOST/NOTIFIER_PORT")
    ensure_topics(settings, timeout_s=args.timeout)
    run_notifier(settings)
    return 0
