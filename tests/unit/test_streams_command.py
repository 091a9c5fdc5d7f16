"""A process the service starts imports the package its parent runs, wherever it was started from
(streams/config/launch.py): a `streams` folder in the working directory is not imported in its
place, as `python -m streams` alone would (a bench run from one checkout with PYTHONPATH naming
another ran its workers from the first); and a parent that imported another checkout than the
installed one passes that checkout on (helper-118's review)."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from streams.cli.processes import child_command
from streams.config.launch import streams_command, streams_environment


def _decoy(folder: Path) -> Path:
    package = folder / "streams"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("print('DECOY')\n")
    return folder


def test_a_streams_folder_in_the_working_directory_is_not_run(tmp_path: Path) -> None:
    here = _decoy(tmp_path)
    ran = subprocess.run(
        [*streams_command("--version")],
        cwd=here,
        env=streams_environment(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "DECOY" not in ran.stdout
    assert ran.returncode == 0, ran.stderr
    # and the plain form would have run the decoy: the test can fail
    plain = subprocess.run(
        [streams_command()[0], "-m", "streams"], cwd=here, capture_output=True, text=True
    )
    assert "DECOY" in plain.stdout


def test_the_workers_of_processes_n_start_the_same_way() -> None:
    args = argparse.Namespace(loglevel="info", timeout=30.0)
    assert child_command(args)[: len(streams_command())] == streams_command()


CHILD = "import streams; print(streams.__file__)"
PARENT = f"""
import os, subprocess
from streams.config.launch import streams_command, streams_environment
print(__import__("streams").__file__)
child = [*streams_command()[:2], "-c", {CHILD!r}]
print(subprocess.run(child, env=streams_environment(os.environ), capture_output=True, text=True,
                     check=True).stdout.strip())
"""


def test_a_parent_from_another_checkout_passes_it_on(tmp_path: Path) -> None:
    """A parent that imported `streams` from its working directory (`python -m pytest` in a
    second checkout sharing the first's virtualenv) has its children import the same copy, not
    the installed one."""
    source = Path(__import__("streams").__file__).resolve().parent
    checkout = tmp_path / "checkout"
    shutil.copytree(source, checkout / "streams", ignore=shutil.ignore_patterns("__pycache__"))
    ran = subprocess.run(
        [sys.executable, "-c", PARENT],
        cwd=checkout,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    parent, child = ran.stdout.split()
    assert parent.startswith(str(checkout)), parent  # (the test's premise)
    assert child == parent
