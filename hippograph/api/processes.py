"""`hippograph serve --processes N`: N API processes and one enrichment worker process on one machine.

One server process is GIL-bound at about 1.2 cores, and its in-process enrichment worker takes a third of that
(evals/results/load.md). Several processes can share the embedded tree store, registry, outbox and checkpoints
(SQLite files), but not a Milvus Lite file: Milvus Lite runs inside the process that opens it. So this
supervisor claims the preference file, serves it to every child from one Milvus Lite server process over
127.0.0.1, and runs

    milvus_lite server (preferences)  +  hippograph worker (enrichment, niced)  +  N x hippograph serve

all on the same data dir, which a one-process `hippograph serve` opens again as before. The API processes bind
the port with SO_REUSEPORT: the kernel spreads connections evenly over them (one shared listening socket, as
uvicorn's `--workers` has, let one process take most of a burst of new connections and queue them behind its
GIL). With `HIPPOGRAPH_MILVUS_URI` set (a Milvus server), no Milvus Lite server is started. A child that dies is
started again; SIGINT/SIGTERM stops them all, and the children die with the supervisor even when it is killed
(Linux: a parent-death signal).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from hippograph.settings import Settings, get_settings
from hippograph.stores.errors import ProcessLayoutError
from hippograph.stores.preferences.lite_owner import claim_lite_file, is_lite_uri
from hippograph.stores.tree.neo4j_server import free_port

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 60.0
"""How long the Milvus Lite server may take to listen (it loads the collection's rows first)."""

CRASH_LOOP_S = 10.0
"""A child that exits this soon after it started is not started again (a bad setting, a taken port): the
supervisor stops everything and says which child failed."""

WORKER_NICENESS = 10
"""The enrichment worker yields the CPU to the API processes: its work is deferred by design, and under load it
catches up once requests ease (the outbox keeps every job), instead of adding to every answer's latency."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGTERM this child when its parent dies, so a killed supervisor leaves no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _background() -> None:  # pragma: no cover - runs in the child between fork and exec
    _die_with_parent()
    os.nice(WORKER_NICENESS)


@dataclass
class Child:
    """One supervised process: its command, and whether it runs in the background (niced)."""

    name: str
    args: list[str]
    env: dict[str, str]
    background: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    started_at: float = 0.0

    def start(self) -> None:
        setup = None if sys.platform != "linux" else _background if self.background else _die_with_parent
        self.proc = subprocess.Popen(self.args, env=self.env, preexec_fn=setup)
        self.started_at = time.monotonic()

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_listening(port: int, child: Child) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if (code := child.exited()) is not None:
            raise ProcessLayoutError(f"{child.name} exited with code {code} before it listened")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ProcessLayoutError(f"{child.name} did not listen on 127.0.0.1:{port} within {STARTUP_TIMEOUT_S:.0f} s")


@contextmanager
def shared_preferences(settings: Settings) -> Iterator[tuple[dict[str, str], list[Child]]]:
    """The environment the children need to share preference memory, and the process to supervise with them: a
    Milvus Lite server over the settings' preference file (claimed by this process while it runs; started again
    on the same port if it dies), or nothing when a Milvus server URI is set."""
    if not is_lite_uri(settings.milvus_path):
        yield {}, []
        return
    claim = claim_lite_file(settings.milvus_path)  # ProcessLayoutError if a one-process server holds it
    port = free_port()
    milvus = Child("the Milvus Lite server", [sys.executable, "-m", "milvus_lite", "server", "--data-dir",
                                              settings.milvus_path, "--host", "127.0.0.1", "--port", str(port)],
                   dict(os.environ))
    try:
        milvus.start()
        _wait_listening(port, milvus)
        yield {"HIPPOGRAPH_MILVUS_URI": f"http://127.0.0.1:{port}"}, [milvus]
    finally:
        milvus.stop()
        if claim is not None:
            claim.release()


def serve_processes(host: str, port: int, *, processes: int, log_level: str = "info") -> None:
    """Run the API in `processes` (>= 2) processes and enrichment in one niced `hippograph worker` process until
    SIGINT/SIGTERM, starting again any child that dies. Every child reads its settings from the environment, as
    a one-process server does."""
    if processes < 2:
        raise ValueError("serve_processes runs 2 or more API processes (one process: `hippograph.api.serve`)")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with shared_preferences(get_settings()) as (shared, servers):
        env = {**os.environ, **shared, "HIPPOGRAPH_WORKER_IN_PROCESS": "false"}
        serve = [sys.executable, "-m", "hippograph", "serve", "--host", host, "--port", str(port), "--log-level",
                 log_level, "--reuse-port"]
        children = [Child(f"API process {i + 1}", serve, env) for i in range(processes)]
        children.append(Child("the enrichment worker", [sys.executable, "-m", "hippograph", "worker"], env,
                              background=True))
        try:
            for child in children:
                child.start()
            while not stop.wait(0.5):
                for child in [*servers, *children]:
                    if (code := child.exited()) is None:
                        continue
                    if time.monotonic() - child.started_at < CRASH_LOOP_S:
                        raise ProcessLayoutError(f"{child.name} exited with code {code} right after it started "
                                                 "(its log above says why)")
                    log.warning("%s exited with code %s: starting it again", child.name, code)
                    child.start()
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.stop()
