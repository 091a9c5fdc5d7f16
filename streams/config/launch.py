"""How the service starts a Python process of its own: a worker of `worker --processes N`, the
bench's and the tests' workers.

`python -m streams` puts the current directory first on `sys.path`, ahead of `PYTHONPATH` and
the installed package: a `streams` folder in the directory a worker was started from would be
imported instead of this package, and a bench run from one checkout with `PYTHONPATH` naming
another ran its workers from the first (found on 2026-12-07: a day of before/after pairs had
run the same code in both halves, docs/benchmarks.md). `-P` (Python 3.11) leaves the current
directory out, so a child imports `streams` from where its parent's interpreter does: the
installed package, or the checkout `PYTHONPATH` names.
"""

from __future__ import annotations

import sys


def streams_command(*args: str) -> list[str]:
    """The command line of `python -m streams ARGS` that imports the parent's own package."""
    return [sys.executable, "-P", "-m", "streams", *args]
