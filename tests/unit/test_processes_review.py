"""`worker --processes N` as a supervisor (streams/cli/processes.py), with stand-in children.

Each child stands in for a worker: it stops on SIGTERM/SIGINT through the worker's own
ShutdownGuard (as BoundedWorker does: every signal goes to the guard; a clean stop takes a
moment), and it writes its pid to `STATE_DIR/pid` once it listens for signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import asyncio, os, signal
    from pathlib import Path
    from streams.worker.shutdown import ShutdownGuard

    guard = ShutdownGuard("worker", grace_s=10)

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda s=signum: (guard.signalled(s), stop.set()))
        state = Path(os.environ["STATE_DIR"])
        state.mkdir(parents=True, exist_ok=True)
        (state / "pid").write_text(str(os.getpid()))
        await stop.wait()
        await asyncio.sleep(0.5)  # the clean stop: flush, commit, close

    asyncio.run(main())
    """
)

SUPERVISOR = textwrap.dedent(
    """
    import argparse, os, signal, subprocess, sys
    from streams.cli import processes
    try:
        from streams.cli.common import CommandError
    except ImportError:
        CommandError = ()
    from streams.config.settings import Settings

    CHILD = {child!r}
    processes.child_command = lambda args: [sys.executable, "-c", CHILD]
    real_popen = subprocess.Popen
    started = []

    def popen(*args, **kwargs):
        mode = os.environ.get("SPAWN_FAULT", "")
        if mode == "fail-second" and started:
            raise OSError(11, "Resource temporarily unavailable")
        child = real_popen(*args, **kwargs)
        started.append(child)
        if mode == "signal-first" and len(started) == 1:
            os.kill(os.getpid(), signal.SIGTERM)  # a stop while the children start
        return child

    processes.subprocess.Popen = popen
    args = argparse.Namespace(processes={n}, loglevel="info", timeout=5.0)
    try:
        sys.exit(processes.run_processes(args, Settings.from_env()))
    except CommandError as exc:  # as streams/cli/main.py: run() shows it
        print(f"active-learners worker: error: {{exc}}", file=sys.stderr)
        sys.exit(1)
    """
)


class Set:
    def __init__(self, tmp_path: Path, n: int, fault: str = "") -> None:
        self.n = n
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.state = tmp_path / "state"
        # a file, not a pipe: a child left running would hold a pipe open for ever
        self.stderr_path = tmp_path / "stderr"
        with open(self.stderr_path, "w") as stderr:
            self.process = self._start(n, fault, stderr)

    def _start(self, n: int, fault: str, stderr: object) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR.format(child=CHILD, n=n)],
            env={
                **os.environ,
                "PYTHONPATH": str(REPO),
                "STATE_DIR": str(self.state),
                "WEB_PORT": "20000",
                "SPAWN_FAULT": fault,
            },
            stderr=stderr,
            text=True,
            start_new_session=True,  # its own process group, as under a terminal or a unit
        )

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def child_pids(self, timeout_s: float = 30) -> list[int]:
        deadline = time.monotonic() + timeout_s
        files = [self.state / f"process-{i}" / "pid" for i in range(self.n)]
        while time.monotonic() < deadline:
            if all(f.exists() and f.read_text() for f in files):
                return [int(f.read_text()) for f in files]
            time.sleep(0.05)
        raise AssertionError("the children did not start")

    def started_pids(self) -> list[int]:
        files = sorted(self.state.glob("process-*/pid"))
        return [int(f.read_text()) for f in files if f.read_text()]


def running(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(running(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if running(pid)]


@pytest.fixture
def sets(tmp_path: Path) -> Iterator[list[Set]]:
    made: list[Set] = []
    yield made
    for one in made:  # nothing left running, whatever the test found
        time.sleep(0.5)  # (a child just started writes its pid file)
        if one.process.poll() is None:
            os.killpg(one.process.pid, signal.SIGKILL)
            one.process.wait()
        for pid in one.started_pids():
            if running(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_sent_to_the_whole_process_group_is_one_clean_stop(
    signum: int, sets: list[Set], tmp_path: Path
) -> None:
    """Ctrl-C in a terminal sends SIGINT to every process of the foreground group (systemd's
    default KillMode=control-group does the same with SIGTERM): each child gets the signal
    itself and once more from the supervisor, which its ShutdownGuard takes for an operator's
    second signal: it exits at once, without its clean stop, and the set exits 130/143."""
    for round_ in range(3):  # (a child may take both signals as one: rarely, not 3 times)
        one = Set(tmp_path / str(round_), 2)
        sets.append(one)
        one.child_pids()
        os.killpg(one.process.pid, signum)
        code = one.process.wait(timeout=30)
        stderr = one.stderr()
        assert "exiting now" not in stderr, stderr
        assert code == 0, stderr


def test_children_stop_when_the_supervisor_is_killed(sets: list[Set], tmp_path: Path) -> None:
    """kill -9 of the supervisor (the OOM killer, an impatient operator): its children ran on,
    holding the web ports and RocksDB, and the restarted set failed on "Address already in
    use" until someone found and killed them."""
    one = Set(tmp_path, 2)
    sets.append(one)
    pids = one.child_pids()
    os.kill(one.process.pid, signal.SIGKILL)
    one.process.wait()
    assert wait_gone(pids, 15) == []


def test_a_stop_while_the_children_start_stops_every_child(sets: list[Set], tmp_path: Path) -> None:
    """SIGTERM after the first child was started and before the second: the second was started
    anyway, never got a signal, and the supervisor waited for it forever."""
    one = Set(tmp_path, 2, fault="signal-first")
    sets.append(one)
    try:
        one.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the set did not stop; still running: {one.started_pids()}")
    assert wait_gone(one.started_pids(), 15) == []


def test_a_child_that_cannot_be_started_leaves_no_other_running(
    sets: list[Set], tmp_path: Path
) -> None:
    """The second child cannot be started (EAGAIN: a process limit): the supervisor ended with
    a traceback and left the first child running, without a supervisor."""
    one = Set(tmp_path, 2, fault="fail-second")
    sets.append(one)
    code = one.process.wait(timeout=30)
    stderr = one.stderr()
    assert code != 0
    assert wait_gone(one.started_pids(), 15) == [], stderr
    assert "Traceback" not in stderr, stderr


def test_more_processes_than_partitions_is_refused_before_any_topic_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--processes 5` on a new TOPIC_PREFIX with PARTITIONS=4: the 16 topics were created, and
    only then was the command refused."""
    from streams.cli import ops
    from streams.cli.main import run
    from streams.tools.worker_process import free_port

    def created(*args: object, **kwargs: object) -> None:
        raise AssertionError("topics created for a refused command")

    monkeypatch.setattr(ops, "ensure_topics", created)
    monkeypatch.setattr(ops, "copartitioned_count", lambda settings, timeout_s: 4)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("WEB_PORT", str(free_port()))
    monkeypatch.setenv("PARTITIONS", "4")
    assert run(["worker", "--processes", "5"]) == 1
    err = capsys.readouterr().err
    assert "--processes 5 is more than the 4 partitions" in err and err.count("\n") == 1


def test_a_stop_sent_to_every_process_by_the_service_manager_is_one_clean_stop(
    sets: list[Set], tmp_path: Path
) -> None:
    """systemd's default KillMode=control-group sends SIGTERM to the supervisor and to every
    child: each child got it once itself and once from the supervisor, took the second for an
    operator's "exit now" (no clean stop) and the set exited 143, a failed stop for systemd."""
    for round_ in range(2):
        one = Set(tmp_path / str(round_), 2)
        sets.append(one)
        pids = one.child_pids()
        for pid in pids:  # (signals that arrive together may merge into one: a moment apart)
            os.kill(pid, signal.SIGTERM)
        time.sleep(0.2)
        os.kill(one.process.pid, signal.SIGTERM)
        code = one.process.wait(timeout=30)
        stderr = one.stderr()
        assert "exiting now" not in stderr, stderr
        assert code == 0, stderr
