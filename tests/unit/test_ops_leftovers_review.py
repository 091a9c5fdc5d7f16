"""Small operational defects an earlier session noticed and left (helper-96, 2026-12-05): what
`worker --processes N` checks of its state folder, `topics --partitions N` over a prefix whose
topics exist with another count, SMTP settings without SMTP_HOST, and the notifier's /metrics.
No broker: the decisions are pure, or the broker's answers given."""

from __future__ import annotations

import argparse
import fcntl
import os
from pathlib import Path

import pytest

import streams.cli.ops as ops
from streams.config.settings import ConfigError, Settings
from tests.unit import test_ops_lifecycle_review

state_env = test_ops_lifecycle_review.state_env  # a worker's settings on a tmp STATE_DIR


# -- 1. what a `worker --processes N` supervisor checks of STATE_DIR -------------------------


def _set(monkeypatch: pytest.MonkeyPatch, prefix: str, processes: int = 2) -> None:
    """The checks of `worker --processes N` before any topic is created."""
    monkeypatch.setenv("TOPIC_PREFIX", prefix)
    ops.check_worker_settings(argparse.Namespace(processes=processes), Settings.from_env())


def _tables_of(folder: Path, deployment: str) -> None:
    """A worker's state folder as a worker of `deployment` leaves it."""
    (folder / "v1" / "tables" / "attempts-0.db").mkdir(parents=True)
    (folder / "v1" / "tables" / "attempts-0.db" / "CURRENT").write_text("MANIFEST-000001\n")
    (folder / "worker.deployment").write_text(f"{deployment}\n")


def test_a_set_refuses_a_childs_folder_of_another_topic_prefix(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor claimed STATE_DIR/v1, which no child uses (each has STATE_DIR/process-<i>):
    a set of a fresh TOPIC_PREFIX on the STATE_DIR of an earlier set passed it, created its
    topics, started, and then each child stopped on its own folder's claim (and the set with
    them). It is refused up front now, naming the child's folder."""
    _tables_of(state_env / "process-1", "old-active-learners")
    with pytest.raises(ConfigError, match="process-1 holds the worker state of 'old-") as info:
        _set(monkeypatch, "new-")
    assert "\n" not in str(info.value)
    assert not (state_env / "process-1" / "worker.deployment").read_text().startswith("new-")
    _set(monkeypatch, "old-")  # the set's own deployment: its folders are its own


def test_a_set_is_not_refused_for_tables_its_children_never_use(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """STATE_DIR/v1 of a lone worker of another TOPIC_PREFIX stopped a set that never reads it.
    The set leaves it, and its marker, alone: a lone worker of the new prefix is still refused
    those tables."""
    _tables_of(state_env, "old-active-learners")
    _set(monkeypatch, "new-")
    assert (state_env / "worker.deployment").read_text() == "old-active-learners\n"
    # the set's lock is this process's now; a lone worker's claim is checked as it would be
    with pytest.raises(ConfigError, match="holds the worker state of 'old-"):
        _set(monkeypatch, "new-", processes=1)


def test_a_set_refuses_a_childs_folder_a_lone_worker_holds(
    state_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker started by hand with STATE_DIR=<dir>/process-0 held child 0's folder: the set
    started, created its topics, and child 0 stopped (with the set) on the lock."""
    child = state_env / "process-0"
    child.mkdir(parents=True)
    fd = os.open(child / "worker.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.pwrite(fd, b"4242\n", 0)
        with pytest.raises(ConfigError, match=r"process-0 is in use by another worker \(pid 4242\)"):
            _set(monkeypatch, "p-")
    finally:
        os.close(fd)
    _set(monkeypatch, "p-")  # free again: the check kept no lock of the child's
    fd = os.open(child / "worker.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # would raise if the check had kept it
    finally:
        os.close(fd)
