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
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from types import FrameType

from streams.config.settings import Settings


def child_environment(settings: Settings, index: int) -> dict[str, str]:
    """What makes child `index` a worker of its own: its state folder and web port."""
    return {
        **os.environ,
        "STATE_DIR": str(settings.state_dir / f"process-{index}"),
        "WEB_PORT": str(settings.web_port + index),
    }


def child_command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "streams",
        "worker",
        "--loglevel",
        args.loglevel,
        "--timeout",
        str(args.timeout),
    ]


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

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for index in range(args.processes):
        children.append(
            subprocess.Popen(child_command(args), env=child_environment(settings, index))
        )
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
