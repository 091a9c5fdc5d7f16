"""`active-learners delete`: build a request, preview it, confirm, send, print the receipt."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from pydantic import ValidationError

from schemas import topics
from schemas.common import MAX_ID_LENGTH
from schemas.deletions import DeletionRequest
from streams.cli.common import (
    CommandError,
    read_timestamp,
    require_broker,
    require_topics,
    shortened,
)
from streams.config.settings import Settings
from streams.domain.decoding import FUTURE_TOLERANCE
from streams.domain.deletions import build_request
from streams.domain.selectors import Selector, id_lines
from streams.domain.windows import add_months
from streams.kafka.io import new_producer

RELATIVE = re.compile(r"^([0-9]+)(mo|y|w|d)$")  # ASCII digits, as every other option


def parse_cutoff(text: str, now: datetime) -> datetime:
    """`8mo`, `2y`, `6w`, `90d` before now; a date `2026-03-01` (UTC midnight); or a timestamp."""
    match = RELATIVE.match(text.strip())
    if match:
        unit = match.group(2)
        try:
            amount = int(match.group(1))  # more than 4,300 digits raise: the calendar's end
            if unit in ("mo", "y"):
                months = amount * (12 if unit == "y" else 1)
                day = add_months(now.date(), -months)
                return datetime.combine(day, now.timetz())
            days = amount * (7 if unit == "w" else 1)
            return now - timedelta(days=days)
        except (OverflowError, ValueError):  # before the year 1 of the calendar
            shown = shortened(text.strip())
            raise ValueError(f"--older-than: {shown} reaches before the year 1") from None
    expected = "expected 8mo, 2y, 6w, 90d, a date YYYY-MM-DD or a timestamp"
    shown = shortened(text)
    if len(text) == 10:
        if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text):  # `2026-W01-1` is a date too
            raise ValueError(f"--older-than: {expected}; got {shown!r}")
        try:
            return datetime.combine(date.fromisoformat(text), day_time(0), UTC)
        except ValueError:
            raise ValueError(f"--older-than: {expected}; got {shown!r}") from None
    # a timestamp as the worker reads one (the contract's `Timestamp`: RFC 3339 forms, a leap
    # second, `z`), not as `fromisoformat` does (it refused those, and took forms the model
    # refuses: helper-83)
    return read_timestamp(text, "--older-than", expected)


def future_checked(cutoff: datetime) -> datetime:
    """A cut-off after now would erase launches yet to come: the worker refuses it (an error
    receipt); said here before anything is sent, and without a worker to answer."""
    if cutoff > datetime.now(UTC) + FUTURE_TOLERANCE:
        raise ValueError(f"--older-than: {cutoff.isoformat()} is in the future")
    return cutoff


def parse_attempt(text: str) -> dict[str, str]:
    """`LEARNER/ATTEMPT` (no id contains '/'), or `LEARNER:ATTEMPT` when that is the only ':'
    (ids may contain ':': `urn:l:7:a1` could be split in two places, and the wrong split would
    name an attempt that does not exist, deleting nothing without a word)."""
    separator = "/" if "/" in text else ":"
    parts = text.split(separator)
    if len(parts) != 2 or not parts[0] or not parts[1]:
        if separator == ":" and len(parts) > 2:
            raise ValueError(
                f"--attempt: {text!r} has more than one ':'; write LEARNER/ATTEMPT "
                "(no id contains '/')"
            )
        raise ValueError(f"--attempt: expected LEARNER:ATTEMPT or LEARNER/ATTEMPT, got {text!r}")
    return {"learner_id": parts[0], "attempt_id": parts[1]}


def read_learners(path: str) -> list[str]:
    """One learner id a line, each exactly as written but for surrounding white space. No line
    is a comment: any string is a valid id, `#1` too, and a skipped one would silently stay.
    A byte order mark (a spreadsheet's export) is no part of the first id."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"--learners-file: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"--learners-file: {path} is not UTF-8 text") from None
    learners = id_lines(text)  # an id may hold U+2028: a line ends at CR or LF only
    if not learners:
        raise ValueError(f"--learners-file: {path} names no learners")
    return learners


# the options that give a request's fields, to name in an error
OPTIONS = {
    "tenant_id": "--tenant",
    "attempts": "--attempt",
    "learner_ids": "--learners-file",
    "older_than": "--older-than",
    "teams": "--team",
    "roles": "--role",
    "reason": "--reason",
}


def check_request(request: dict[str, Any]) -> None:
    """The contract's rules, before anything is sent: the worker dead-letters a request that
    breaks them, and the CLI would wait for a receipt that never comes."""
    try:
        DeletionRequest.model_validate(request)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        if error["type"] == "string_unicode":  # bytes the locale could not decode (surrogates)
            message = "not valid text: it holds bytes that are not UTF-8"
        elif field in ("teams", "roles") and error["type"].startswith("string_"):
            message = f"an id is 1 to {MAX_ID_LENGTH} characters"
        elif error["type"].startswith("string_"):  # too long, empty, with '/' ...
            message = f"an id is 1 to {MAX_ID_LENGTH} characters, no '/' and no control character"
        else:
            message = " ".join(str(error["msg"]).split()).removeprefix("Value error, ")
        raise ValueError(f"{OPTIONS.get(field, field)}: {message}") from None


def request_bytes(request: dict[str, Any]) -> bytes:
    """The request's record: UTF-8 as it is, as the selector's limit is measured. json.dumps
    wrote each non-ASCII character as a 6-byte escape, so a selector of non-ASCII ids within
    its 512 KiB made a record past Kafka's 1 MiB (check_request has refused surrogates)."""
    return orjson.dumps(request)


def send_and_wait(settings: Settings, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Send a request to attempt-deletions and wait for its receipt."""
    receipts = settings.topic(topics.DELETION_RECEIPTS)
    consumer = KafkaConsumer(**settings.kafka_python())
    try:
        tps = [TopicPartition(receipts, p) for p in consumer.partitions_for_topic(receipts) or ()]
        consumer.assign(tps)
        consumer.seek_to_end(*tps)
        for tp in tps:
            consumer.position(tp)  # pin the end before sending, so the receipt cannot be missed
        producer = new_producer(settings)
        producer.send(
            settings.topic(topics.ATTEMPT_DELETIONS),
            key=request["tenant_id"].encode(),
            value=request_bytes(request),
        ).get(timeout=30)
        producer.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    receipt = json.loads(record.value) if record.value else None
                    if receipt and receipt.get("request_id") == request["request_id"]:
                        return receipt
        raise TimeoutError(
            f"no receipt for {request['request_id']} within {timeout_s:g}s (is a worker running?)"
        )
    finally:
        consumer.close()


def describe(receipt: dict[str, Any]) -> str:
    verb = {"preview": "would affect", "physical": "deleted", "logical": "hid"}.get(
        receipt["mode"], "affected"
    )
    lines = [
        f"{receipt['mode']} {receipt['request_id']} for tenant {receipt['tenant_id']}: "
        f"{verb} {receipt['attempts_affected']:,} attempts of {receipt['learners_affected']:,} "
        "learners"
    ]
    if receipt.get("error"):
        lines = [f"{receipt['mode']} {receipt['request_id']}: refused: {receipt['error']}"]
    for window in receipt.get("windows", []):
        lines.append(
            f"  window {window['start']}: {window['active_before']:,} -> "
            f"{window['active_after']:,} active learners"
        )
    return "\n".join(lines)


def cli_user() -> str:
    """Who runs the CLI, as deletion requests record it: `cli:<login name>`."""
    try:
        name = getpass.getuser()
        name.encode("utf-8")  # $USER of bytes the locale cannot decode holds surrogates
        return f"cli:{name}"
    except (KeyError, OSError):  # a container user without a passwd entry or $USER
        return f"cli:uid-{os.getuid()}"
    except UnicodeEncodeError:
        return f"cli:uid-{os.getuid()}"


def run_delete(
    settings: Settings,
    tenant_id: str,
    selector: Selector,
    mode: str,
    assume_yes: bool,
    timeout_s: float,
    confirm: Callable[[str], bool],
    reason: str | None = None,
) -> int:
    now = datetime.now(UTC)
    signed = {"requested_by": cli_user()[:256], "reason": reason}
    if mode == "physical":
        preview = send_and_wait(
            settings, build_request(tenant_id, "preview", selector, now, **signed), timeout_s
        )
        print(describe(preview))
        if preview.get("error"):
            return 1
        if preview["attempts_affected"] == 0:
            print("nothing to delete")
            return 0
        if not assume_yes and not confirm(
            f"Delete these {preview['attempts_affected']:,} attempts for good? [y/N] "
        ):
            print("not deleted")
            return 1
    request = build_request(tenant_id, mode, selector, now, **signed)
    receipt = send_and_wait(settings, request, timeout_s)
    print(describe(receipt))
    return 1 if receipt.get("error") else 0


NO_TERMINAL = "a physical delete needs confirmation: run it in a terminal or add --yes"


def ask(question: str) -> bool:
    if not sys.stdin.isatty():
        raise ValueError(NO_TERMINAL)
    return input(question).strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:

    options = (args.attempt, args.learners_file, args.older_than, args.team, args.role)
    chosen = [x for x in options if x is not None]  # an empty value is given, and refused below
    if len(chosen) != 1:
        raise CommandError(
            "give exactly one of --attempt, --learners-file, --older-than, --team, --role "
            "(--team and --role may be repeated)"
        )
    if args.logical and args.preview:
        raise CommandError("--logical and --preview exclude each other")
    if args.reason is not None and len(args.reason) > 1000:
        raise CommandError(f"--reason: at most 1,000 characters, got {len(args.reason):,}")
    try:
        if args.attempt is not None:
            selector = Selector.of("attempts", [parse_attempt(text) for text in args.attempt])
        elif args.learners_file is not None:
            selector = Selector.of("learner_ids", read_learners(args.learners_file))
        elif args.team is not None:
            selector = Selector.of("teams", args.team)
        elif args.role is not None:
            selector = Selector.of("roles", args.role)
        else:
            cutoff = parse_cutoff(args.older_than, datetime.now(UTC))
            selector = Selector.of("older_than", [future_checked(cutoff)])
        too_large = selector.too_large()
        if too_large is not None:
            raise CommandError(too_large)  # before any request is sent, a preview included
        mode = "logical" if args.logical else "preview" if args.preview else "physical"
        signed = {"requested_by": cli_user()[:256], "reason": args.reason}
        check_request(build_request(args.tenant, mode, selector, datetime.now(UTC), **signed))
        if mode == "physical" and not args.yes and not sys.stdin.isatty():
            raise CommandError(NO_TERMINAL)  # now, not after a preview was sent
        require_broker(settings, min(args.timeout, 15.0))
        require_topics(
            settings, (topics.ATTEMPT_DELETIONS, topics.DELETION_RECEIPTS), min(args.timeout, 15.0)
        )
        return run_delete(
            settings, args.tenant, selector, mode, args.yes, args.timeout, ask, args.reason
        )
    except (ValueError, TimeoutError) as exc:
        raise CommandError(str(exc)) from None
