"""The installed `hippograph` command, run as a real process: demo, add, search, stats, errors."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from hippograph.nodes.respond import NO_MODEL_NOTE

HIPPOGRAPH = Path(sys.executable).parent / "hippograph"


def run(tmp_path: Path, *args: str, embedder: str | None = None, stdin: str | None = None, columns: int = 200
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(tmp_path / "data"), "COLUMNS": str(columns),
           "HIPPOGRAPH_WORKER_IN_PROCESS": "false"}
    env.pop("HIPPOGRAPH_CHAT_MODEL", None)
    # each command is a new interpreter: cache its bytecode (outside the tree) as an installed copy would,
    # or every run recompiles langgraph & co from source
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.setdefault("PYTHONPYCACHEPREFIX", str(Path(tempfile.gettempdir()) / "hippograph-test-pycache"))
    if embedder:
        env["HIPPOGRAPH_EMBEDDER"] = embedder
    return subprocess.run([str(HIPPOGRAPH), *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path, input=stdin if stdin is not None else "")


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
    assert denied.returncode == 2 and "may not read cube 'kim.default'" in denied.stderr and not denied.stdout
    empty = run(tmp_path, "add", "", "--user", "kim", embedder="hashing:64")
    assert empty.returncode == 2 and "error" in empty.stderr


def test_demo_into_a_named_cube(tmp_path: Path) -> None:
    out = run(tmp_path, "demo", "--user", "zed", "--cube", "zed.notes", embedder="hashing:64")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Stored 9 memories for user zed (cube zed.notes)" in " ".join(out.stdout.split())
    assert cube_count(run(tmp_path, "stats", "--user", "zed", "--cube", "zed.notes", embedder="hashing:64"),
                      "zed.notes") >= 9
    default = run(tmp_path, "stats", "--user", "zed", "--cube", "zed.default", embedder="hashing:64")
    assert cube_count(default, "zed.default") == 0  # nothing leaked into the default cube


def test_help_and_stats_open_only_what_they_need(tmp_path: Path) -> None:
    # the CLI module loads no graph library, embedder runtime or Milvus client: `--help` stays fast
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, hippograph.cli; heavy = ('langgraph', 'langchain_core', 'onnxruntime', "
         "'pymilvus', 'datasketch', 'sqlalchemy'); print(sorted(m for m in heavy if m in sys.modules))"],
        capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "[]", probe.stdout + probe.stderr
    assert "users" in run(tmp_path, "--help").stdout
    # stats on a fresh data dir: no chat checkpoints, no Milvus Lite file (preference memory stays closed)
    unknown = run(tmp_path, "stats", "--user", "kim", embedder="hashing:64")
    assert unknown.returncode == 2 and "unknown user 'kim'" in unknown.stderr
    assert run(tmp_path, "users", "create", "kim", embedder="hashing:64").returncode == 0
    assert cube_count(run(tmp_path, "stats", "--user", "kim", embedder="hashing:64"), "kim.default") == 0
    data = tmp_path / "data"
    assert (data / "registry.sqlite").exists()
    assert not (data / "checkpoints.sqlite").exists() and not list(data.glob("preferences*"))
    # search runs the memories-only search graph: no Milvus Lite, no chat checkpoints, no enrichment worker
    assert run(tmp_path, "add", "Kim keeps the spare key under the mat", "--user", "kim",
               embedder="hashing:64").returncode == 0
    found = run(tmp_path, "search", "spare key", "--user", "kim", embedder="hashing:64")
    assert found.returncode == 0 and "spare key" in found.stdout, found.stderr[-2000:]
    assert not list(data.glob("preferences*")) and not (data / "checkpoints.sqlite").exists()
    assert not (data / "enrich_checkpoints.sqlite").exists()


def test_stats_loads_no_graph_library_embedder_runtime_or_milvus(tmp_path: Path) -> None:
    # the stats command, run in this interpreter to see what it imported: stores only
    assert run(tmp_path, "users", "create", "kim", embedder="hashing:64").returncode == 0
    code = ("import sys; from hippograph.cli import run; sys.argv = ['hippograph', 'stats', '--user', 'kim']\n"
            "assert run() == 0\n"
            "heavy = ('langgraph', 'langsmith.run_trees', 'langchain_core.tracers', 'onnxruntime', 'pymilvus', "
            "'pandas', 'datasketch', 'dateparser', 'spacy', 'markitdown', 'chonkie')\n"
            "print('HEAVY', sorted(m for m in heavy if m in sys.modules))")
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(tmp_path / "data"), "HIPPOGRAPH_EMBEDDER": "minilm"}
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert probe.returncode == 0 and "kim.default" in probe.stdout, probe.stdout + probe.stderr
    assert "HEAVY []" in probe.stdout, probe.stdout


def test_exit_now_flushes_runs_exit_handlers_and_waits_for_live_threads() -> None:
    # the command line skips interpreter teardown, never the output, the exit handlers or a running thread
    code = ("import atexit, threading, time; from hippograph.cli import exit_now\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            "print('answer ' * 2000)\n"  # more than a pipe buffer: lost if not flushed
            "if {thread}:\n"
            "    threading.Thread(target=lambda: (time.sleep(0.3), print('thread finished'))).start()\n"
            "exit_now(3)\n")
    for thread in (False, True):
        out = subprocess.run([sys.executable, "-c", code.format(thread=thread)], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 3, out.stderr
        assert out.stdout.count("answer") == 2000 and "exit handler ran" in out.stdout
        assert ("thread finished" in out.stdout) is thread


def test_search_shows_snippets_and_only_the_signals_that_found_a_memory(tmp_path: Path) -> None:
    long_text = "The quarterly report " + " ".join(f"paragraph{n} about budgets" for n in range(120))
    assert run(tmp_path, "add", long_text, "--user", "kim", embedder="hashing:64").returncode == 0
    short = run(tmp_path, "search", "quarterly report budgets", "--user", "kim", embedder="hashing:64")
    assert short.returncode == 0, short.stderr[-2000:]
    text = " ".join(short.stdout.split())
    assert "The quarterly report" in text and "…" in text and "paragraph119" not in text
    assert "vector" in text and "bm25 0.00" not in text and "=0.000" not in text
    full = run(tmp_path, "search", "quarterly report budgets", "--user", "kim", "--full", embedder="hashing:64")
    assert "paragraph119" in full.stdout.replace("│", "").replace("\n", "") and "kim.default" in full.stdout


def test_users_keys_cubes_sharing_export_import_and_erase(tmp_path: Path) -> None:
    def ok(*args: str) -> str:
        out = run(tmp_path, *args, embedder="hashing:64")
        assert out.returncode == 0, f"{args}: {out.stdout[-1500:]} {out.stderr[-1500:]}"
        return " ".join(out.stdout.replace("│", " ").split())

    created = run(tmp_path, "users", "create", "ana", "--name", "Ana", "--key", embedder="hashing:64").stdout
    assert "created user ana" in created
    key = created.strip().splitlines()[-1].removeprefix("API key (shown once): ")
    assert len(key) >= 20 and " " not in key
    assert "revoked" in ok("keys", "revoke", key)
    ok("users", "create", "ben")
    assert "created cube ana.work" in ok("cubes", "create", "ana.work", "--user", "ana")
    ok("add", "The office moves to Porto in June", "--user", "ana", "--cube", "ana.work")

    # a share is an invitation: ben reads nothing until he accepts; only the owner may share
    ok("share", "invite", "ana.work", "--with", "ben", "--user", "ana")
    assert "ana.work ana ben read pending (invitation to you)" in ok("share", "list", "--user", "ben")
    denied = run(tmp_path, "share", "invite", "ana.work", "--with", "lee", "--user", "ben", embedder="hashing:64")
    assert denied.returncode == 2 and "error" in denied.stdout
    assert "accepted ana.work from ana" in ok("share", "accept", "ana.work", "--user", "ben")
    assert "ana.work ana read 1" in ok("cubes", "list", "--user", "ben")
    ok("share", "leave", "ana.work", "--user", "ben")
    assert "ana.work" not in ok("cubes", "list", "--user", "ben")

    # export, erase the user (asks first), import the file as someone new: the memory is back, in their cube
    exported = tmp_path / "ana.jsonl"
    assert "exported to" in ok("export", str(exported), "--user", "ana")
    refused = run(tmp_path, "erase", "--user", "ana", embedder="hashing:64", stdin="n\n")
    assert refused.returncode == 1 and "nothing changed" in refused.stdout
    erased = ok("erase", "--user", "ana", "--yes")
    assert "erased user ana" in erased and "memories 1" in erased
    assert "imported from" in ok("import", str(exported), "--user", "cy")
    assert cube_count(run(tmp_path, "stats", "--user", "cy", embedder="hashing:64"), "cy.work") == 1
    missing = run(tmp_path, "import", str(tmp_path / "nope.jsonl"), "--user", "cy", embedder="hashing:64")
    assert missing.returncode == 2 and "no such file" in missing.stdout


def test_ingest_reports_skipped_and_failed_files_honestly(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    long_name = "handbook-of-the-company-with-a-rather-long-file-name-2026-edition.md"
    (docs / long_name).write_text("# Handbook\n\nThe office opens at nine and closes at six.\n", encoding="utf-8")
    (docs / "menu.txt").write_bytes("Caf\xe9 cr\xe8me br\xfbl\xe9e every Friday.\n".encode("latin-1"))
    (docs / "blob.bin").write_bytes(bytes(range(256)) * 8)
    out = run(tmp_path, "ingest", str(docs), str(tmp_path / "missing.pdf"), embedder="hashing:64", columns=80)
    assert out.returncode == 1, out.stdout + out.stderr[-2000:]  # the missing file is a failure
    lines = out.stdout.splitlines()
    text = " ".join(out.stdout.split())
    assert "4 file(s) in" in text and "2 ingested, 0 unchanged, 1 skipped, 1 failed" in text
    assert all(len(line) <= 80 for line in lines)
    assert long_name in "".join(line.strip("│ ").split("│")[0].strip() for line in lines if "│" in line)
    assert "skipped blob.bin: unsupported file type .bin (binary)" in out.stdout
    assert "failed missing.pdf: no such file" in out.stdout
    assert "warning menu.txt: not UTF-8" in out.stdout and "chunks" in out.stdout
    # only unsupported files: skipped, nothing failed, exit 0; re-ingest finds the rest unchanged
    again = run(tmp_path, "ingest", str(docs), embedder="hashing:64")
    assert again.returncode == 0 and "0 ingested, 2 unchanged, 1 skipped, 0 failed" in " ".join(again.stdout.split())
