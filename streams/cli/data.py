"""Datasets: `generate`, `produce`, `verify` (live counts against a recount)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from datetime import datetime, timedelta
from typing import Any, TextIO

from schemas.common import EARLIEST_YEAR
from streams.cli.common import (
    CommandError,
    first_error,
    open_input,
    parse_instant,
    require_broker,
    require_topics,
)
from streams.config.settings import Settings


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.tools.dataset import DatasetSpec, dumps, generate

    now = parse_instant(args.now) if args.now else None
    spec = DatasetSpec(launches=args.launches, tenants=args.tenants, seed=args.seed, now=now)
    check_history_start(spec.now, spec.history_days)
    out = sys.stdout if args.out == "-" else open_output(args.out)
    written = 0
    try:
        with contextlib.nullcontext(out) if out is sys.stdout else out:
            for record in generate(spec):
                out.write(dumps(record) + "\n")
                written += 1
    except OSError as exc:  # a full disk, say (closing flushes: it may fail too)
        if isinstance(exc, BrokenPipeError) and out is sys.stdout:
            raise  # `generate | head`: streams/__main__.py tells a reader gone from an error
        where = "stdout" if out is sys.stdout else args.out
        raise CommandError(f"--out: cannot write {where}: {exc.strerror}") from None
    if args.out != "-":
        print(f"wrote {written} records to {args.out}", file=sys.stderr)
    return 0


def check_history_start(now: datetime | None, history_days: int) -> None:
    """The launches span `history_days` before `--now`: each must be a valid launch (from the
    year 1900 on), or the dataset is dead-lettered and refused by `verify`."""
    if now is not None and (now - timedelta(days=history_days)).year < EARLIEST_YEAR:
        raise CommandError(
            f"--now: the history of {history_days} days before it must start in "
            f"{EARLIEST_YEAR} or later"
        )


def open_output(path: str) -> TextIO:
    if not path:
        raise CommandError("--out: give a file name, or - for stdout")
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:  # a missing folder, a folder, no permission
        raise CommandError(f"--out: cannot write {path}: {exc.strerror}") from None


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from schemas.topics import ATTEMPT_DELETIONS, INPUTS, LAUNCHES, LICENSES
    from streams.kafka.io import key_of, produce_records, topic_of

    # a missing file, or a line that cannot be routed, is told before any wait for the broker,
    # and a bad line sends nothing, not the lines before it. A pipe (`produce <(zcat x.gz)`)
    # is read once, as stdin is: checked first, it had nothing left to send (helper-102)
    if args.file != "-" and not args.topic and os.path.isfile(args.file):
        check_routable(args.file)
    elif args.file != "-":
        open_input(args.file).close()
    require_broker(settings, args.timeout)
    require_topics(settings, [args.topic] if args.topic else INPUTS, args.timeout)
    source = read_stdin() if args.file == "-" else open_input(args.file, "surrogateescape")
    counts: dict[str, int] = {LAUNCHES: 0, LICENSES: 0, ATTEMPT_DELETIONS: 0}

    def records():  # type: ignore[no-untyped-def]
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            if args.topic:
                # sent as it is, bytes that are not UTF-8 included: the service dead-letters
                # what it cannot read
                topic, key = args.topic, None
                value = line.rstrip("\n").encode("utf-8", "surrogateescape")
                with contextlib.suppress(ValueError, AttributeError, RecursionError):
                    key = key_of(topic, json.loads(line))
            else:
                try:
                    record = json_object(line)
                    topic = topic_of(record)
                except ValueError as exc:
                    # (stdin or a pipe only: a file's lines were all checked before)
                    went = sum(counts.values())
                    before = "1 record" if went == 1 else f"{went:,} records"
                    raise CommandError(
                        f"{args.file}:{number}: {exc} ({before} before it went; use --topic to "
                        "send lines as they are)"
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


def check_routable(path: str) -> None:
    """Every line of a file a JSON object `produce` can route, or a CommandError naming the first
    that is not, before anything is sent: a user who fixes that line and runs the command again
    sends each record once."""
    from streams.kafka.io import topic_of

    with open_input(path, "surrogateescape") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                topic_of(json_object(line))
            except ValueError as exc:
                raise CommandError(
                    f"{path}:{number}: {exc}; nothing was sent (use --topic to send lines as "
                    "they are)"
                ) from None


def read_stdin() -> TextIO:
    """stdin as UTF-8 text, bytes that are not UTF-8 kept (as surrogates) to be told apart."""
    if isinstance(sys.stdin, io.TextIOWrapper):
        sys.stdin.reconfigure(encoding="utf-8", errors="surrogateescape")
    return sys.stdin


def json_object(line: str) -> dict[str, Any]:
    """One JSON lines record; a ValueError saying what is wrong with it."""
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:  # surrogates: the file's bytes were not UTF-8
        raise ValueError("not UTF-8") from None
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not JSON (nested too deep)") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record


def read_dataset(path: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """A dataset's launches and latest licenses; `<file>:<line>: reason` for a record the
    service would not count (the recount would then differ for no fault of the service)."""
    from pydantic import ValidationError

    from schemas import topics
    from schemas.launches import Launch
    from schemas.licenses import License
    from streams.kafka.io import topic_of

    launches, licenses = [], {}
    with open_input(path, "surrogateescape") as source:
        for number, line in enumerate(source, start=1):
            if not line.strip():
                continue
            try:
                record = json_object(line)
                topic = topic_of(record)  # as `produce` routes it
                if topic == topics.LAUNCHES:
                    Launch.model_validate(record)
                    launches.append(record)
                elif topic == topics.LICENSES:
                    License.model_validate(record)
                    licenses[record["tenant_id"]] = record
            except ValidationError as exc:
                raise CommandError(f"{path}:{number}: {first_error(exc)}") from None
            except ValueError as exc:
                raise CommandError(f"{path}:{number}: {exc}") from None
    return launches, licenses


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Compare the live counts with an independent recount of a dataset file."""
    from datetime import UTC, datetime

    from streams.domain.recount import recount
    from streams.kafka.io import current_counts

    launches, licenses = read_dataset(args.dataset)  # a bad file is told before any wait
    require_broker(settings, 15.0)
    # a missing topic reads as no counts: every window would seem wrong (helper-90)
    require_topics(settings, ["active-learner-counts"], 15.0)
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
