"""A process the service starts imports the service's own package, wherever it was started from
(streams/config/launch.py): a `streams` folder in the working directory is not imported in its
place, as `python -m streams` alone would (a bench run from one checkout with PYTHONPATH naming
another ran its workers from the first)."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

from streams.cli.processes import child_command
from streams.config.launch import streams_command


def _decoy(folder: Path) -> Path:
    package = folder / "streams"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("print('DECOY')\n")
    return folder


def test_a_streams_folder_in_the_working_directory_is_not_run(tmp_path: Path) -> None:
    here = _decoy(tmp_path)
    ran = subprocess.run(
        [*streams_command("--version")], cwd=here, capture_output=True, text=True, timeout=60
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
