"""`active-learners worker --processes N`: N worker processes on one host, as N hosts would be.

A worker is one Python process, so it uses one core. Partitions are independent, so N processes
share them exactly as N hosts do: the same consumer group, each process with a state folder of
its own (`STATE_DIR/process-<i>`) and a web port of its own (`WEB_PORT + i`, advertised to the
others for reports). Nothing else is shared, and every guarantee between hosts holds between
them.

This process only supervises: it forwards SIGTERM and SIGINT to every child, and when one child
ends without being asked to, it stops the others and exits with that child's code, so that the
service manager sees a failure and restarts the whole set (a half-running set would leave the
failed process's partitions to the others, and hide the failure).

The children run in a process group of their own, so a signal sent to the supervisor's group (a
terminal's Ctrl-C, `kill -- -PGID`) reaches each child once, from the supervisor: a worker takes
a second signal for an operator's "exit now" and would skip its clean stop. A child gets SIGTERM
when the supervisor dies (Linux: PR_SET_PDEATHSIG), so a kill -9 of the supervisor leaves no
worker running without one. A signal that arrives while the children are being started waits
until they all are, then goes to every one of them. A service manager that signals every
process of the unit (systemd's default KillMode=control-group) reaches each child twice, itself
and through this process: the child's ShutdownGuard takes the two as one stop.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from streams.cli.common import CommandError
from streams.config.launch import streams_command, streams_environment
from streams.config.settings import Settings
from streams.worker.shutdown import SUPERVISED_ENV

STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _libc() -> ctypes.CDLL | None:
    """The C library of this process (its prctl), on Linux."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018  (present)
    except (OSError, AttributeError):
        return None
    return libc


def _child_setup(libc: ctypes.CDLL | None, supervisor: int) -> None:
    """In the child, between fork and exec: the stop signals the supervisor held back while
    starting its children unblocked, and SIGTERM when the supervisor dies."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    if libc is not None:
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != supervisor:  # it died before that: stop as if it had just now
            os.kill(os.getpid(), signal.SIGTERM)


def child_state_dir(state_dir: Path, index: int) -> Path:
    """Child `index`'s STATE_DIR (its lock, its claim, its tables): the supervisor's own
    folder holds only the set's lock."""
    return state_dir / f"process-{index}"


def child_environment(settings: Settings, index: int) -> dict[str, str]:
    """What makes child `index` a worker of its own: its state folder and web port."""
    return {
        **streams_environment(os.environ),
        "STATE_DIR": str(child_state_dir(settings.state_dir, index)),
        "WEB_PORT": str(settings.web_port + index),
        SUPERVISED_ENV: str(os.getpid()),  # its ShutdownGuard: see there
    }


def child_command(args: argparse.Namespace) -> list[str]:
    return streams_command("worker", "--loglevel", args.loglevel, "--timeout", str(args.timeout))


def run_processes(args: argparse.Namespace, settings: Settings) -> int:
    """Run `args.processes` workers until stopped; the exit code of the set."""
    stopping = False
    children: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    libc, supervisor = _libc(), os.getpid()
    # a stop is held back until every child is started: then it reaches every one of them
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for index in range(args.processes):
            children.append(
                subprocess.Popen(
                    child_command(args),
                    env=child_environment(settings, index),
                    process_group=0,
                    preexec_fn=lambda: _child_setup(libc, supervisor),
                )
            )
    except (OSError, subprocess.SubprocessError) as exc:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
        raise CommandError(
            f"cannot start worker process {len(children)} of {args.processes} ({exc}); "
            "the others were stopped"
        ) from None
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    print(
        f"active-learners worker: {args.processes} processes "
        f"(pids {', '.join(str(child.pid) for child in children)}; web ports "
        f"{settings.web_port}-{settings.web_port + args.processes - 1})",
        file=sys.stderr,
        flush=True,
    )
    by_pid = {child.pid: child for child in children}
    while True:  # the first child to end (a signal to us is forwarded meanwhile)
        pid, status = os.wait()
        if pid in by_pid:
            break
    first = by_pid[pid]
    first.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    code = first.returncode
    if not stopping:
        print(
            f"active-learners worker: process {pid} ended with {code}; stopping the others",
            file=sys.stderr,
            flush=True,
        )
        forward(signal.SIGTERM, None)
    for child in children:
        child.wait()
        if child.returncode != 0 and code == 0:
            code = child.returncode
    if not stopping and code == 0:
        code = 1  # a child that ends unasked is a failure, whatever it said
    return 128 - code if code < 0 else code  # killed by a signal: 128 + its number
