"""One process owns a Milvus Lite file: the layout rule, checked up front.

Milvus Lite runs inside the process that opens its `.db` and holds an exclusive lock on it, so a second process
(a separate `hippograph worker`, another server, a CLI search while the server runs) cannot open it: before
this rule it got pymilvus' bare "Open local milvus failed" on every preference read or write, and each
enrichment job burnt its retries. Now every process that uses a Lite file claims `<file>.owner` first (an
advisory `flock`, released by the OS when the process dies, even on `kill -9`) and writes who it is into it;
a second process gets a `ProcessLayoutError` naming the owner and the two layouts that work: one process
(the server with its in-process worker), or a Milvus server shared through `HIPPOGRAPH_MILVUS_URI`.

Claims are counted per process: the server, its in-process worker and its preference store share one lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from hippograph.stores.errors import ProcessLayoutError


def is_lite_uri(uri: str | Path) -> bool:
    """A local Milvus Lite file (anything without a scheme) rather than a Milvus server URI."""
    return "://" not in str(uri)


@dataclass
class _Held:
    fd: int
    count: int


_HELD: dict[str, _Held] = {}
_GUARD = threading.Lock()


def _owner_path(uri: str | Path) -> str:
    return os.path.abspath(str(uri)) + ".owner"


def _describe_owner(path: str) -> str:
    try:
        info = json.loads(Path(path).read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    command = " ".join(info.get("argv", [])[:4]) or "?"
    return f"process {info.get('pid', '?')} ({command})"


class LiteFileClaim:
    """This process's share of the ownership of one Milvus Lite file; `release()` it when done (idempotent)."""

    def __init__(self, uri: str | Path) -> None:
        self.path = _owner_path(uri)
        self._released = False

    def release(self) -> None:
        with _GUARD:
            if self._released:
                return
            self._released = True
            held = _HELD.get(self.path)
            if held is None:
                return
            held.count -= 1
            if held.count > 0:
                return
            del _HELD[self.path]
            _release_lite_server(self.path.removesuffix(".owner"))
            with contextlib.suppress(OSError):
                fcntl.flock(held.fd, fcntl.LOCK_UN)
            os.close(held.fd)


def _release_lite_server(db_path: str) -> None:
    """Stop this process's Milvus Lite server for the file, so its own lock goes with ours."""
    with contextlib.suppress(Exception):
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(db_path)


def claim_lite_file(uri: str | Path) -> LiteFileClaim | None:
    """Claim a Milvus Lite file for this process (None for a server URI: servers are shared by design).

    Raises `ProcessLayoutError` when another live process owns the file.
    """
    if not str(uri) or not is_lite_uri(uri):
        return None
    path = _owner_path(uri)
    with _GUARD:
        held = _HELD.get(path)
        if held is not None:
            held.count += 1
            return LiteFileClaim(uri)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ProcessLayoutError(
                f"the preference file {os.path.abspath(str(uri))} is owned by {_describe_owner(path)}: a Milvus "
                "Lite file serves one process only. Either run one process (e.g. `hippograph serve`, whose "
                "enrichment worker runs inside it, or use that process's API), or share preference memory "
                "between processes through a Milvus server: set HIPPOGRAPH_MILVUS_URI=http://host:19530."
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "argv": sys.argv, "since": time.time()}).encode())
        _HELD[path] = _Held(fd=fd, count=1)
        return LiteFileClaim(uri)
