"""Found by a review (2026-12-04, helper-69): two ways `| head` still ends a command noisily.

streams/__main__.py ends a command quietly when the reader of its stdout is gone (`counts
--format csv | head`), but only for a BrokenPipeError that leaves `run`:
- `generate` (stdout by default: `generate | head` is the way to look at a dataset) turns every
  OSError of its writes into a CommandError: "error: --out: cannot write stdout: Broken pipe";
- output still in Python's stdout buffer when the command returns (a short table) is written
  at the interpreter's exit, after `main`: "Exception ignored ... BrokenPipeError", exit 120.

The real command in a child process, its stdout a pipe whose reader is gone before it starts
(`| head -n 0`, or a `head` that read its lines while the command still wrote)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def run_into_a_gone_reader(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    # stdout buffered as in a user's shell (the tests' environment may set PYTHONUNBUFFERED)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env["PYTHONPATH"] = str(REPO)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone: every write to the pipe fails with EPIPE
    try:
        return subprocess.run(
            [sys.executable, "-m", "streams", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    "launches",
    [
        pytest.param(5_000, id="written while the command runs"),
        pytest.param(1, id="still buffered when it returns"),
    ],
)
def test_generate_into_a_reader_that_is_gone_ends_quietly(launches: int, tmp_path: Path) -> None:
    done = run_into_a_gone_reader(
        ["generate", "--launches", str(launches), "--tenants", "1"], tmp_path
    )
    assert done.stderr.decode() == "", "a reader gone (| head) is no error to report"
    assert done.returncode == 1, "as streams/__main__.py ends a command whose reader is gone"
