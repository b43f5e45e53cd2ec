"""Helpers shared by the eval and benchmark scripts: data paths, percentiles, report output."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

from hippograph.stores.tree.neo4j_server import free_port as free_port  # benchmarks take ports from here

REPO = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    """The licensed shared data, read in place: `$HIPPOGRAPH_SHARED_DATA`, else `<repo>/../shared/data`."""
    env = os.environ.get("HIPPOGRAPH_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


SHARED_DATA = shared_data_dir()
OUT = REPO / "evals" / "out"
console = Console()


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    arr = np.asarray(samples_ms, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p95_ms": float(np.percentile(arr, 95)),
            "mean_ms": float(arr.mean())}


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False))
    return path


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right" if column != columns[0] else "left")
    for row in rows:
        table.add_row(*[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


# -- server processes (benchmarks and tests start real servers on 127.0.0.1) -------------------------------



def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Wait until `url` answers below 500, or fail early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server process (kill it if it does not stop within 20 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
