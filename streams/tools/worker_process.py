"""`active-learners worker` (or another command) as a child process: the one harness the
integration tests, the benchmark and the soak start workers with.

A worker gets its settings through the environment (TOPIC_PREFIX, STATE_DIR, ...), writes its log
to a file of its own, and is stopped with SIGTERM (a clean stop) or SIGKILL (a crash). Its peak
resident memory can be sampled (the benchmark's figure).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from streams.config.launch import streams_command, streams_environment
from streams.config.settings import Settings

T = TypeVar("T")

# what a worker logs once its launch reader has its partitions: it is counting
READY_LINE = "launch reader:"


# `--processes N` serves on WEB_PORT .. WEB_PORT + N - 1: a port is chosen with this many free
PORTS_KEPT_FREE = 4


def free_port() -> int:
    """A port nobody listens on, with the PORTS_KEPT_FREE - 1 after it, below the kernel's range
    of ephemeral ports: a port bind(0) hands back is an ephemeral one, which an outgoing
    connection (a Kafka client's) may take before the worker listens on it (seen once in CI:
    "Address already in use")."""
    low = _ephemeral_low()
    if low < 11_000:  # a host whose ephemeral ports start low: the kernel's own choice, then
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    draw = random.Random()
    for _ in range(1_000):
        port = draw.randrange(10_000, low - PORTS_KEPT_FREE)
        if all(_bindable(candidate) for candidate in range(port, port + PORTS_KEPT_FREE)):
            return port
    raise RuntimeError(f"no free port below {low} on 127.0.0.1")


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def worker_env(settings: Settings, web_port: int) -> dict[str, str]:
    """The environment that gives a child process `settings`."""
    return {
        **streams_environment(os.environ),
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "TOPIC_PREFIX": settings.topic_prefix,
        "STATE_DIR": str(settings.state_dir),
        "WEB_PORT": str(web_port),
        "NOTIFIER_PORT": str(web_port),  # (a notifier's /metrics: a process is one or the other)
        "PARTITIONS": str(settings.partitions),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (Linux: `worker --processes N` is a
    supervisor and N workers), 0.0 when it is gone."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(rss_mb(int(child)) for child in children)


def cpu_seconds(pid: int, main_threads: bool = False) -> float:
    """CPU time (user and system) of a process and its children so far, 0.0 when it is gone.
    `main_threads`: of each one's main thread alone, what the event loops of a worker's
    processes did (the stages), without RocksDB's and the Kafka clients' threads."""
    stat = f"/proc/{pid}/task/{pid}/stat" if main_threads else f"/proc/{pid}/stat"
    try:
        # the fields after the command's name, which is in parentheses and may hold spaces
        fields = Path(stat).read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:  # (a kernel without CONFIG_PROC_CHILDREN: the process's own time)
        return own
    return own + sum(cpu_seconds(int(child), main_threads) for child in children)


def main_thread_cpu_seconds(pid: int) -> float:
    """`cpu_seconds` of the main threads alone."""
    return cpu_seconds(pid, main_threads=True)


def wait_for(
    condition: Callable[[], T],
    timeout_s: float,
    what: str,
    interval_s: float = 1.0,
    error: type[Exception] = AssertionError,
) -> T:
    """Poll `condition` until it returns something truthy; raise `error` naming `what` at the
    deadline (an AssertionError in tests, a TimeoutError in the tools)."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval_s)
    raise error(f"timed out after {timeout_s:g}s waiting for {what} (last: {last!r})")


class WorkerProcess:
    """One child process of `python -m streams <command>`, its log appended to `log_path`."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        command: str = "worker",
        extra_env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        web_port: int | None = None,
        sample_rss: bool = False,
    ) -> None:
        self.settings = settings
        self.log_path = log_path
        self.command = command
        self.extra_env = extra_env or {}
        self.args = list(args)
        self.fixed_port = web_port
        self.web_port = 0  # a free port, chosen again at every start, unless fixed
        self.sample_rss = sample_rss
        self.peak_rss_mb = 0.0
        self.started = 0.0
        self.started_wall = 0.0  # the same moment as `started`, in epoch seconds
        self.process: subprocess.Popen[bytes] | None = None
        self._log_mark = 0
        self._sampling = threading.Event()

    @property
    def name(self) -> str:
        return self.log_path.stem

    def start(self) -> WorkerProcess:
        self.web_port = self.fixed_port if self.fixed_port is not None else free_port()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._log_mark = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.started = time.monotonic()
        self.started_wall = time.time()
        with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                streams_command(self.command, *self.args),
                env={**worker_env(self.settings, self.web_port), **self.extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.sample_rss:
            self._sampling.clear()
            threading.Thread(target=self._sample, args=(self.process,), daemon=True).start()
        return self

    def _sample(self, process: subprocess.Popen[bytes]) -> None:
        while not self._sampling.is_set() and process.poll() is None:
            self.peak_rss_mb = max(self.peak_rss_mb, rss_mb(process.pid))
            self._sampling.wait(0.25)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_alive(self) -> None:
        """Raise when the process has ended (a tool waiting on it would wait forever)."""
        if not self.alive():
            raise RuntimeError(f"the {self.command} {self.exit_reason()}; see {self.log_path}")

    def exit_reason(self) -> str:
        """How the process ended: "SIGKILL", "exit 0", ... ("running" while it runs)."""
        if self.process is None:
            return "never started"
        code = self.process.poll()
        if code is None:
            return "running"
        return signal.Signals(-code).name if code < 0 else f"exit {code}"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit, no flush."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)
        self._sampling.set()

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM, and SIGKILL if it is still there after `timeout_s`."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._sampling.set()

    def wipe(self) -> None:
        """Lose the state folder (a new disk)."""
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)

    def log_text(self, since_start: bool = False) -> str:
        try:
            with open(self.log_path, "rb") as log:
                if since_start:
                    log.seek(self._log_mark)
                return log.read().decode(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_text()
        return "\n".join(text.splitlines()[-lines:]) if text else "(no log)"

    def wait_ready(self, timeout_s: float = 300.0, processes: int = 1) -> float:
        """Until this start of the worker has its launch partitions (each of its `processes`
        has had some); returns the seconds it took."""

        def ready() -> bool:
            self.check_alive()
            return self.log_text(since_start=True).count(READY_LINE) >= processes

        wait_for(ready, timeout_s, f"{self.log_path.stem} ready", 0.1, TimeoutError)
        return time.monotonic() - self.started
