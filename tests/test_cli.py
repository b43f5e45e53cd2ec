"""The installed `hippograph` command, run as a real process: demo, add, search, stats, errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nodes.respond import NO_MODEL_NOTE

HIPPOGRAPH = Path(sys.executable).parent / "hippograph"


def run(tmp_path: Path, *args: str, embedder: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200",
           "HIPPOGRAPH_WORKER_IN_PROCESS": "false"}
    env.pop("HIPPOGRAPH_CHAT_MODEL", None)
    if embedder:
        env["HIPPOGRAPH_EMBEDDER"] = embedder
    return subprocess.run([str(HIPPOGRAPH), *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)


def test_demo_prints_memories_and_answers_offline_with_the_real_embedder(tmp_path: Path) -> None:
    out = run(tmp_path, "demo")
    assert out.returncode == 0, out.stderr[-3000:]
    text = " ".join(out.stdout.split())  # rich wraps long lines
    assert "Stored 9 memories for user demo" in text
    assert text.count("retrieved memories") == 3 and text.count("A: ") == 3
    assert "marine biologist in Lisbon" in text and "married in Porto on June 14th" in text
    assert "teacher Rui" in text
    assert " ".join(NO_MODEL_NOTE.split()) in text  # says that no model is set
    # a second demo stores nothing new: stable ids and content hashes keep duplicates out
    before = cube_count(run(tmp_path, "stats", "--user", "demo"), "demo.default")
    assert before >= 9
    assert run(tmp_path, "demo").returncode == 0
    assert cube_count(run(tmp_path, "stats", "--user", "demo"), "demo.default") == before


def cube_count(stats: subprocess.CompletedProcess[str], cube: str) -> int:
    assert stats.returncode == 0, stats.stderr[-2000:]
    (line,) = [ln for ln in stats.stdout.splitlines() if cube in ln]
    return int(line.replace("│", " ").split()[-1])


def test_add_search_stats_and_errors(tmp_path: Path) -> None:
    added = run(tmp_path, "add", "The boiler service is booked for 3 March", "--user", "kim", embedder="hashing:64")
    assert added.returncode == 0 and "stored: " in added.stdout
    run(tmp_path, "add", "Kim's bike has a flat tyre", "--user", "kim", embedder="hashing:64")
    found = run(tmp_path, "search", "when is the boiler service", "--user", "kim", "-k", "1", embedder="hashing:64")
    assert found.returncode == 0 and "boiler service is booked" in found.stdout and "flat tyre" not in found.stdout
    stats = run(tmp_path, "stats", "--user", "kim", "--cube", "kim.default", embedder="hashing:64")
    assert cube_count(stats, "kim.default") == 2
    other = run(tmp_path, "search", "boiler", "--user", "lee", embedder="hashing:64")
    assert other.returncode == 0 and "boiler" not in other.stdout.split("memories for: boiler", 1)[1]
    denied = run(tmp_path, "stats", "--user", "lee", "--cube", "kim.default", embedder="hashing:64")
    assert denied.returncode == 2 and "may not read cube 'kim.default'" in denied.stdout
    empty = run(tmp_path, "add", "", "--user", "kim", embedder="hashing:64")
    assert empty.returncode == 2 and "error" in empty.stdout


def test_demo_into_a_named_cube(tmp_path: Path) -> None:
    out = run(tmp_path, "demo", "--user", "zed", "--cube", "zed.notes", embedder="hashing:64")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Stored 9 memories for user zed (cube zed.notes)" in " ".join(out.stdout.split())
    assert cube_count(run(tmp_path, "stats", "--user", "zed", "--cube", "zed.notes", embedder="hashing:64"),
                      "zed.notes") >= 9
    default = run(tmp_path, "stats", "--user", "zed", "--cube", "zed.default", embedder="hashing:64")
    assert cube_count(default, "zed.default") == 0  # nothing leaked into the default cube
