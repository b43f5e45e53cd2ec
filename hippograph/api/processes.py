"""`hippograph serve --processes N`: N API processes and one enrichment worker process on one machine.

One server process is GIL-bound at about 1.2 cores, and its in-process enrichment worker takes a third of that
(evals/results/load.md). Several processes can share the embedded tree store, registry, outbox and checkpoints
(SQLite files), but not a Milvus Lite file: Milvus Lite runs inside the process that opens it. So this
supervisor claims the preference file, serves it to every child from one Milvus Lite server process over
127.0.0.1, and then runs

    milvus_lite server (preferences)  +  hippograph worker (enrichment)  +  uvicorn with N processes (the API)

all on the same data dir, which a one-process `hippograph serve` opens again as before. With
`HIPPOGRAPH_MILVUS_URI` set (a Milvus server), no Milvus Lite server is started. The worker and the Milvus Lite
server die with the supervisor (Linux: a parent-death signal), even when it is killed.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hippograph.settings import Settings, get_settings
from hippograph.stores.errors import ProcessLayoutError
from hippograph.stores.preferences.lite_owner import claim_lite_file, is_lite_uri

STARTUP_TIMEOUT_S = 60.0
"""How long the Milvus Lite server may take to listen (it loads the collection's rows first)."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when its parent dies, so a killed supervisor leaves no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ProcessLayoutError(f"{what} exited with code {proc.returncode} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ProcessLayoutError(f"{what} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s")


def _child(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def shared_preferences(settings: Settings) -> Iterator[dict[str, str]]:
    """The environment the children need to share preference memory: a Milvus Lite server over the settings'
    preference file (claimed by this process while it runs), or nothing when a Milvus server URI is set."""
    if not is_lite_uri(settings.milvus_path):
        yield {}
        return
    claim = claim_lite_file(settings.milvus_path)  # ProcessLayoutError if a one-process server holds it
    port = _free_port()
    milvus = _child([sys.executable, "-m", "milvus_lite", "server", "--data-dir", settings.milvus_path,
                     "--host", "127.0.0.1", "--port", str(port)], dict(os.environ))
    try:
        _wait_listening(port, milvus, "the Milvus Lite server")
        yield {"HIPPOGRAPH_MILVUS_URI": f"http://127.0.0.1:{port}"}
    finally:
        _stop(milvus)
        if claim is not None:
            claim.release()


def serve_processes(host: str, port: int, *, processes: int, log_level: str = "info") -> None:
    """Run the API in `processes` (>= 2) uvicorn processes and enrichment in one `hippograph worker` process,
    until SIGINT/SIGTERM; then stop the worker (it finishes its current job step) and the preference server.
    Every child reads its settings from the environment, as a one-process server does."""
    import uvicorn

    if processes < 2:
        raise ValueError("serve_processes runs 2 or more API processes (one process: `hippograph.api.serve`)")
    with shared_preferences(get_settings()) as env:
        # The children read their settings from the environment; uvicorn's processes inherit this one's.
        os.environ.update({**env, "HIPPOGRAPH_WORKER_IN_PROCESS": "false"})
        worker = _child([sys.executable, "-m", "hippograph", "worker"], dict(os.environ))
        try:
            uvicorn.run("hippograph.api:create_app", factory=True, host=host, port=port, workers=processes,
                        log_level=log_level, timeout_keep_alive=75)
        finally:
            _stop(worker)
