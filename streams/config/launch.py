"""How the service starts a Python process of its own: a worker of `worker --processes N`, the
bench's and the tests' workers.

A child must run the code its parent runs. `python -m streams` puts the current directory first
on `sys.path`: a `streams` folder in the directory a worker was started from was imported
instead of the parent's package (and a bench run from one checkout with `PYTHONPATH` naming
another ran its workers from the first: found on 2026-12-07, when a day of before/after pairs
had run the same code in both halves, docs/benchmarks.md). So a child starts with `-P` (Python
3.11), which leaves the current directory out, and with the folder its parent imported `streams`
from first on its `PYTHONPATH` (a parent that imported it from its own working directory, such
as `python -m pytest` in a checkout that is not the installed one, passes that checkout on).
An installed package's folder is site-packages, already on every interpreter's path, and is
not added: ahead of the standard library it could shadow it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

import streams

_INSTALLED = ("site-packages", "dist-packages")


def streams_command(*args: str) -> list[str]:
    """The command line of `python -m streams ARGS` for a child (see `streams_environment`)."""
    return [sys.executable, "-P", "-m", "streams", *args]


def streams_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a child that imports `streams` from where this process did."""
    root = str(Path(streams.__file__).resolve().parents[1])
    if Path(root).name in _INSTALLED:
        return dict(env)
    paths = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path]
    return {**env, "PYTHONPATH": os.pathsep.join([root, *paths])}
