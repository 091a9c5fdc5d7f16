"""The `active-learners` command."""

from __future__ import annotations

import contextlib
import os
import select
import sys

from streams.cli.main import run


def main(argv: list[str] | None = None) -> int:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
        # what is still buffered goes now, not at the interpreter's exit, where a reader gone
        # would print "Exception ignored ... BrokenPipeError" and exit 120
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        if not _stdout_closed():
            raise  # another pipe or socket: an error of its own, not a reader gone
        # whoever read stdout went away (`counts --format csv | head`): stop quietly, as Unix
        # tools do; stdout goes to /dev/null so that Python's flush at exit does not fail again
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _stdout_closed() -> bool:
    """stdout is a pipe whose reader is gone (poll says POLLERR for its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
