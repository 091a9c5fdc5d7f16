"""One process of a kind per STATE_DIR: a second worker (or notifier) started on a folder one
already uses stops with a one-line error before it touches anything.

Two workers on one folder would otherwise start and split the partitions between them, each
opening the RocksDB folders of its own; a rebalance then hands one of them a folder the other
wrote a moment ago, and the invariants that make local state trustworthy (docs/architecture.md:
a partition's state is its owner's, checked against the changelog on a takeover) assume a
folder has one writer at a time. A worker and a notifier share a folder by design (their files
differ), so each kind has a lock of its own: `STATE_DIR/worker.lock`, `STATE_DIR/notifier.lock`.

The lock is `flock(2)` on that file, held until the process ends: the kernel releases it when
the process dies however it dies (SIGKILL included), so a crash leaves no stale lock behind. The
file holds the holder's pid, for the error message only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from streams.config.settings import ConfigError

TABLES = "v1"  # faust's folder of the tables' RocksDB databases in STATE_DIR (app version 1)

# the open lock files of this process, by path: held until it exits
_held: dict[Path, int] = {}


def hold_state_dir(state_dir: Path, kind: str) -> Path:
    """Take `STATE_DIR/<kind>.lock` for the rest of this process, or raise ConfigError naming
    the process that holds it. Taking it again in the same process is a no-op."""
    path = state_dir / f"{kind}.lock"
    if path in _held:
        return path
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot open {path.name} ({exc.strerror})"
        ) from None
    _lock(fd, state_dir, kind)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[path] = fd
    return path


def check_state_dir_free(state_dir: Path, kind: str) -> None:
    """ConfigError, as `hold_state_dir` gives it, when a process holds `STATE_DIR/<kind>.lock`
    now; the lock is not kept (for a folder a child process will hold: `worker --processes`)."""
    try:
        fd = os.open(state_dir / f"{kind}.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # never held
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot open {kind}.lock ({exc.strerror})"
        ) from None
    _lock(fd, state_dir, kind)
    os.close(fd)  # the lock with it


def _lock(fd: int, state_dir: Path, kind: str) -> None:
    """`flock` of the open lock file `fd`, or ConfigError (the fd then closed)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise ConfigError(
            f"STATE_DIR={state_dir} is in use by another {kind}{holder}; "
            f"give each {kind} a STATE_DIR of its own"
        ) from None
    except OSError as exc:  # a file system without locks (some network mounts)
        os.close(fd)
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot lock {kind}.lock ({exc.strerror})"
        ) from None


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def claim_state_dir(state_dir: Path, kind: str, app_id: str, data: Path) -> None:
    """The `kind` state of STATE_DIR (in `data`) is the deployment `app_id`'s (TOPIC_PREFIX and
    the app's name), or ConfigError. Call it with the folder's lock held.

    Neither faust's table folders (`STATE_DIR/v1/tables/<table>-<partition>.db`) nor the
    notifier's store of events it mailed name the TOPIC_PREFIX they were written for. A worker
    started on a fresh TOPIC_PREFIX (as "Upgrading" in the README asks) with the STATE_DIR of
    the earlier one read on from the earlier changelogs' stored offsets: their rows were counted
    with the new deployment's (once its changelogs passed those offsets), and the notifier
    skipped every event whose id the earlier one had handled (helper-91). So
    `STATE_DIR/<kind>.deployment` names the deployment whose state `data` holds; a folder with
    none, written by an earlier version, is taken for this deployment's. A folder taken over
    from another deployment (its `data` removed) loses that one's `STATE_DIR/<kind>.topics`
    too (forget_recreated_tables): its topic ids are not this deployment's (helper-94)."""
    marker = state_dir / f"{kind}.deployment"
    named = check_claim(state_dir, kind, app_id, data)
    if named == app_id:
        return
    try:
        if named is not None:  # the earlier deployment's record of its topics goes with it
            (state_dir / f"{kind}.topics").unlink(missing_ok=True)
        _write_durably(marker, f"{app_id}\n")
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot write {marker.name} ({exc.strerror})"
        ) from None


def check_claim(state_dir: Path, kind: str, app_id: str, data: Path) -> str | None:
    """The deployment `STATE_DIR/<kind>.deployment` names (None: none), or ConfigError when it
    is another than `app_id` and `data` holds its state (see `claim_state_dir`). Writes
    nothing: for a folder a child process will claim (`worker --processes`)."""
    marker = state_dir / f"{kind}.deployment"
    try:
        # empty: a crash (power loss) before the first start's write reached the disk, beside
        # tables RocksDB did sync; it names nobody, as no marker does (helper-94)
        named: str | None = marker.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        named = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"STATE_DIR={state_dir}: cannot read {marker.name} ({exc})") from None
    if named not in (None, app_id) and holds_files(data):
        raise ConfigError(
            f"STATE_DIR={state_dir} holds the {kind} state of {named!r}, not of {app_id!r} "
            f"(another TOPIC_PREFIX); give this {kind} a STATE_DIR of its own, or remove "
            f"{data} to start it afresh"
        )
    return named


def forget_recreated_tables(
    state_dir: Path, changelogs: Mapping[str, str], ids: Mapping[str, str]
) -> list[str]:
    """Remove the RocksDB folders (`STATE_DIR/v1/tables/<table>-<partition>.db`) of every
    table whose changelog topic (`changelogs`: table -> topic) has another Kafka id (`ids`:
    topic -> id) than when this folder last started, and record the ids
    (`STATE_DIR/worker.topics`); the tables removed. Call it with the folder's lock held,
    before faust opens a table.

    A topic deleted and made again under its name (another cluster's broker under the same
    TOPIC_PREFIX, a reset test broker) starts its offsets again at 0: a folder that stored an
    offset within the new changelog read on from there, and kept the rows of records the new
    topic never had (helper-91; one past its end is restored from the start,
    streams/worker/recovery.py). Removed, the tables restore from the new changelogs, as a
    wiped folder does. A folder without the record (a first start, an earlier version's) keeps
    its tables. Removing before recording: a crash in between removes them again."""
    record = state_dir / "worker.topics"
    try:
        known = json.loads(record.read_text(encoding="utf-8"))
        if not isinstance(known, dict):
            raise ValueError("not a JSON object")
    except (FileNotFoundError, ValueError):
        # none, or cut short by a crash (it is written again at every start): it says nothing
        # of the topics, and the tables stay, as in a folder without one (helper-94)
        known = {}
    except OSError as exc:
        raise ConfigError(f"STATE_DIR={state_dir}: cannot read {record.name} ({exc})") from None
    stale = [
        table
        for table, topic in changelogs.items()
        if topic in ids and known.get(topic) not in (None, ids[topic])
    ]
    folder = state_dir / TABLES / "tables"
    for table in stale:
        for path in folder.glob(f"{table}-*.db"):
            if path.name[len(table) + 1 : -len(".db")].isdigit():
                _remove(state_dir, path)
    try:
        _write_durably(record, json.dumps({**known, **ids}, sort_keys=True))
    except OSError as exc:
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot write {record.name} ({exc.strerror})"
        ) from None
    return stale


def holds_files(data: Path) -> bool:
    """Whether `data` holds a file, through symlinked folders too (`STATE_DIR/v1/tables` on a
    disk of its own: faust opens it as any folder; `Path.rglob` does not follow it)."""
    return any(files for _, _, files in os.walk(data, followlinks=True))


def _remove(state_dir: Path, path: Path) -> None:
    """A table partition's folder removed, or a one-line ConfigError (a symlink to a folder
    elsewhere, which `shutil.rmtree` refuses; a folder without the rights)."""
    try:
        shutil.rmtree(path)
    except OSError as exc:
        reason = exc.strerror or ("a symbolic link" if path.is_symlink() else str(exc))
        raise ConfigError(
            f"STATE_DIR={state_dir}: cannot remove {path.name} ({reason}); remove it by hand "
            "(its table restores from the changelog)"
        ) from None


def _write_durably(path: Path, text: str) -> None:
    """`path` holds `text` whole, or its earlier content, after a crash (a power loss too)."""
    partial = path.with_name(f"{path.name}.partial")
    with partial.open("w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)
    # the rename too; some file systems (network, FUSE) take no fsync of a folder
    with contextlib.suppress(OSError):
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
