"""The database an LMS would count with instead: PostgreSQL, measured on the same launches.

What an LMS does today (issue 19): insert every attempt into a table, 1,000 rows a transaction
with `ON CONFLICT DO NOTHING` (a resumed attempt is the same row), and ask
`COUNT(DISTINCT learner_id)` of a tenant's window when someone looks (the table has the
attempt's primary key and an index on (tenant, launched_at) for that query). `measure` starts a
throw-away PostgreSQL server (initdb in a temporary folder, a Unix socket only, the server's
default durability: fsync and synchronous commit on), loads the launches through `psql` and
times the load and the count query, then removes the server and its folder.

PostgreSQL refuses to run as root: as root, the server runs as the `postgres` user that
Debian's package creates. Without the binaries (or that user) `available()` says why, and the
benchmark prints a note instead of a figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from streams.tools.worker_process import free_port

ROWS_PER_TRANSACTION = 1_000
BIN_FOLDERS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
TIMING = re.compile(r"^Time: ([\d.]+) ms", re.MULTILINE)


@dataclass
class Baseline:
    rows: int
    load_s: float
    count_ms: float  # one tenant's window: COUNT(DISTINCT learner_id), best of three
    window_rows: int  # the rows that query goes over: that tenant's in that window
    version: str

    @property
    def per_s(self) -> float:
        return self.rows / self.load_s if self.load_s else 0.0

    def line(self) -> str:
        return (
            f"PostgreSQL baseline {self.per_s:,.0f}/s ({self.version}: {self.rows:,} attempts "
            f"inserted {ROWS_PER_TRANSACTION:,} a transaction with ON CONFLICT DO NOTHING in "
            f"{self.load_s:.1f} s; COUNT(DISTINCT) of one tenant's window over its "
            f"{self.window_rows:,} rows in {self.count_ms:.0f} ms)"
        )


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in BIN_FOLDERS:
        if (folder / name).exists():
            return str(folder / name)
    return None


def available() -> str | None:
    """None when a baseline can be measured here, else why not (one line)."""
    missing = [name for name in ("initdb", "pg_ctl", "psql") if _binary(name) is None]
    if missing:
        return f"PostgreSQL not installed ({', '.join(missing)} not found; Debian: postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL will not start as root"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and no 'postgres' user to run PostgreSQL as"
    return None


def _as_server_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def insert_statements(launches: Iterable[tuple[bytes, bytes]]) -> Iterator[str]:
    """SQL: one INSERT of 1,000 rows per statement, each its own transaction (autocommit)."""
    rows: list[str] = []
    for _, value in launches:
        launch = json.loads(value)
        rows.append(
            "("
            + ",".join(
                _literal(launch[name])
                for name in ("tenant_id", "learner_id", "attempt_id", "element_id", "launched_at")
            )
            + ")"
        )
        if len(rows) == ROWS_PER_TRANSACTION:
            yield _insert(rows)
            rows = []
    if rows:
        yield _insert(rows)


def _insert(rows: list[str]) -> str:
    return (
        "INSERT INTO attempts (tenant_id, learner_id, attempt_id, element_id, launched_at) VALUES "
        + ",".join(rows)
        + " ON CONFLICT DO NOTHING;\n"
    )


SCHEMA = """
CREATE TABLE attempts (
  tenant_id text NOT NULL,
  learner_id text NOT NULL,
  attempt_id text NOT NULL,
  element_id text NOT NULL,
  launched_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, learner_id, attempt_id)
);
CREATE INDEX attempts_by_time ON attempts (tenant_id, launched_at);
"""


class Server:
    """A throw-away PostgreSQL server in a temporary folder, reachable by its Unix socket."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="al-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.started = False

    def _run(self, command: list[str], input: str | None = None) -> str:
        """The command's output; a failure raises with its stderr."""
        return subprocess.run(
            command, check=True, capture_output=True, text=True, input=input
        ).stdout

    def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        assert initdb and pg_ctl
        self._run(
            _as_server_user(
                [initdb, "-D", str(self.data), "-A", "trust", "-U", "bench", "-E", "UTF8"]
            )
        )
        options = f"-k {self.folder} -p {self.port} -c listen_addresses=''"
        self._run(
            _as_server_user(
                [
                    pg_ctl,
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.folder / "log"),
                    "-w",
                    "start",
                ]
            )
        )
        self.started = True

    def psql(self, script: str | Path, timing: bool = False) -> str:
        psql = _binary("psql")
        assert psql
        command = [psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.folder)]
        command += ["-p", str(self.port), "-U", "bench", "-d", "postgres"]
        if isinstance(script, Path):
            command += ["-f", str(script)]
            return self._run(command)
        prefix = "\\timing on\n" if timing else ""
        return self._run(command, input=prefix + script)

    def stop(self) -> None:
        if self.started:
            pg_ctl = _binary("pg_ctl")
            assert pg_ctl
            subprocess.run(
                _as_server_user([pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(self.folder, ignore_errors=True)


def measure(
    launches: Iterable[tuple[bytes, bytes]], tenant: str, window: tuple[str, str]
) -> Baseline:
    """Load `launches` as PostgreSQL would hold them, then count `tenant`'s learners in `window`
    ([start, end) as RFC 3339 instants)."""
    server = Server()
    try:
        server.start()
        version = "PostgreSQL " + server.psql("SHOW server_version;").split()[0]
        server.psql(SCHEMA)
        script = server.folder / "load.sql"
        rows = 0
        with script.open("w", encoding="utf-8") as out:
            for statement in insert_statements(launches):
                out.write(statement)
                rows += statement.count("),(") + 1
        script.chmod(0o644)
        started = time.monotonic()
        server.psql(script)
        load_s = time.monotonic() - started
        server.psql("ANALYZE attempts;")
        in_window = (
            f"FROM attempts WHERE tenant_id = {_literal(tenant)} "
            f"AND launched_at >= {_literal(window[0])} AND launched_at < {_literal(window[1])};\n"
        )
        timed = server.psql(f"SELECT COUNT(DISTINCT learner_id) {in_window}" * 3, timing=True)
        count_ms = min(float(ms) for ms in TIMING.findall(timed))
        window_rows = int(server.psql(f"SELECT COUNT(*) {in_window}"))
        return Baseline(rows, load_s, count_ms, window_rows, version)
    finally:
        server.stop()
