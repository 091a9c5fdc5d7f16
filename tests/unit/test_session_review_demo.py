"""`make demo` run again while the previous demo runs (scripts/demo.sh stops it first): the new
worker must find WEB_PORT free. The worker now checks its port at once (streams/cli/ops.py:
check_web_ports) instead of binding it only after recovery, so the script must wait for the old
worker to be gone, not two seconds: a worker takes longer to stop (`make down` waits 20 s), and
a refused demo worker leaves `settle` waiting half an hour for nothing.

The script's stopping block is run as it is, against a stand-in that holds a port and takes a
few seconds to stop on SIGTERM, as a worker does."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from streams.cli.ops import check_web_ports
from streams.config.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

SLOW_TO_STOP = """
import signal, socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen()
def stop(signum, frame):
    time.sleep(3)  # a worker's shutdown: commits, agents, RocksDB
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(server.getsockname()[1], flush=True)
while True:
    signal.pause()
"""


def stopping_block() -> str:
    script = (ROOT / "scripts" / "demo.sh").read_text()
    found = re.search(r"^for process in worker notifier; do\n.*?^done\n", script, re.M | re.S)
    assert found, "scripts/demo.sh stops the previous demo's worker and notifier"
    return found.group(0)


def test_a_demo_run_again_finds_the_previous_workers_port_free(tmp_path: Path) -> None:
    previous = subprocess.Popen(
        [sys.executable, "-c", SLOW_TO_STOP], stdout=subprocess.PIPE, text=True
    )
    # reaped as soon as it ends, as init reaps the previous demo's worker (a zombie child of
    # this test would look alive to the script's `kill -0`)
    threading.Thread(target=previous.wait, daemon=True).start()
    try:
        assert previous.stdout is not None
        port = int(previous.stdout.readline())
        run = tmp_path / ".demo"
        run.mkdir()
        (run / "worker.pid").write_text(f"{previous.pid}\n")
        subprocess.run(
            ["bash", "-c", f"set -euo pipefail\nRUN={run}\n{stopping_block()}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        settings = Settings.from_env({"WEB_PORT": str(port)})
        check_web_ports(settings, 1)  # what the new demo worker checks at once: no ConfigError
    finally:
        if previous.poll() is None:
            os.kill(previous.pid, signal.SIGKILL)
        previous.wait(timeout=30)
