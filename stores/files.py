"""Private files: hippograph's data dir is readable by its owner only (0700), its files too (0600).

SQLite gives a database's `-wal` and `-shm` files the database file's mode, so creating each database file 0600
before SQLite opens it is enough for those; a data dir made before this rule is tightened when opened.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | Path) -> Path:
    """Create `path` (and parents) owner-only; tighten it and everything in it if it already existed."""
    path = Path(path)
    existed = path.exists()
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(path, DIR_MODE)
    if existed:
        for root, dirs, files in os.walk(path):
            for name in dirs:
                os.chmod(os.path.join(root, name), DIR_MODE)
            for name in files:
                os.chmod(os.path.join(root, name), FILE_MODE)
    return path


def private_file(path: str | Path) -> Path:
    """Create an empty owner-only file at `path` if none exists (SQLite then opens it as a new database)."""
    path = Path(path)
    if str(path) != ":memory:" and not path.exists():
        path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    return path
