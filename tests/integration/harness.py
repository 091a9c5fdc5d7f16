"""Running real worker processes and waiting for conditions with a deadline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from streams.config import Settings
from streams.kafka_io import produce_records

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def worker_env(settings: Settings, web_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "STATE_DIR": str(settings.state_dir),
        "WEB_PORT": str(web_port),
        "PARTITIONS": str(settings.partitions),
    }


class WorkerProcess:
    """`active-learners worker` (or another command) as a child process, its log in a file."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        command: str = "worker",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = command
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.web_port = 0  # a free port, chosen again at every start

    def start(self) -> WorkerProcess:
        self.web_port = free_port()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", self.command],
            env={**worker_env(self.settings, self.web_port), **self.extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_reason(self) -> str:
        """How the process ended: "SIGKILL", "exit 0", ... ("running" while it runs)."""
        if self.process is None or self.process.poll() is None:
            return "running"
        code = self.process.returncode
        return signal.Signals(-code).name if code < 0 else f"exit {code}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit, no flush."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for(condition: Callable[[], T], timeout_s: float, what: str, interval_s: float = 1.0) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what} (last: {last!r})")


def produce_json(settings: Settings, topic: str, records: Iterable[dict[str, Any]]) -> int:
    """Send dicts as JSON with the contract's recommended keys."""
    from streams.kafka_io import key_of

    return produce_records(
        settings,
        ((topic, key_of(topic, record), json.dumps(record).encode()) for record in records),
    )
