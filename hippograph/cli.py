"""The `hippograph` command line.

Start-up matters for a command people type: this module imports only typer and rich at load time (`--help`
needs nothing else); each command imports and opens what it uses, when it runs. `stats` and `add` never
import LangGraph, compile a graph or open preference memory; `search` compiles the memories-only search graph
(no preference memory: Milvus Lite stays shut) while the embedder loads beside it; and the one-shot commands run
without the in-process worker thread (jobs wait in the durable outbox for `chat`, `serve` or `hippograph worker`).
A finished command exits without unloading its modules (`exit_now`).
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hippograph.memory import Memory
    from hippograph.stores.models import SearchHit

app = typer.Typer(help="hippograph: long-term memory for AI agents, built as LangGraph graphs.", no_args_is_help=True)
console = Console()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: HIPPOGRAPH_DEFAULT_USER).")]
CubeOpt = Annotated[str | None, typer.Option("--cube", "-c", help="Cube id (default: the user's default cube).")]
ReadCubeOpt = Annotated[str | None, typer.Option(
    "--cube", "-c", help="Read only this cube (default: every cube you may read: yours and accepted shares).")]

#: Characters of a memory `search` shows unless `--full`.
SNIPPET_CHARS = 240
#: Retrievers whose names `search` shows as "found by" (fusion's own numbers, rrf/relative, are not signals).
SIGNALS = ("vector", "bm25", "entity", "prf", "graph", "time", "working")


def open_memory(*, worker: bool = False) -> Memory:
    """A `Memory` from settings. One-shot commands pass `worker=False`: a worker thread that dies with the
    command would only slow it down (chat and demo keep the `HIPPOGRAPH_WORKER_IN_PROCESS` setting)."""
    from hippograph.memory import Memory
    from hippograph.settings import Settings, get_settings

    settings = get_settings() if worker else Settings(worker_in_process=False)
    with console.status("Opening memory..."):
        return Memory(settings)


def default_user(user: str | None) -> str:
    if user:
        return user
    from hippograph.settings import get_settings

    return get_settings().default_user


#: Signals whose own score means something to a reader (a cosine, a BM25 score); the others just found it.
SCORED_SIGNALS = ("vector", "bm25", "entity")


def found_by(hit: SearchHit) -> str:
    """The retrievers that found the memory, with their own score where it has a meaning: no zeros for the
    retrievers that did not find it."""
    names = [name for name in SIGNALS if name in hit.ranks]
    return ", ".join(f"{name} {hit.scores.get(name, 0.0):.2f}" if name in SCORED_SIGNALS else name
                     for name in names) or "-"


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def hits_table(hits: list[SearchHit], title: str, *, full: bool = False) -> Table:
    table = Table(title=title, show_lines=full)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("found by", max_width=24)
    table.add_column("memory", ratio=1, overflow="fold")
    for n, hit in enumerate(hits, 1):
        body = hit.text if full else snippet(hit.text)
        where = f"[dim]{hit.item.key} · {hit.item.cube_id}[/dim]\n" if full else ""
        table.add_row(str(n), f"{hit.score:.3f}", found_by(hit), where + body)
    return table


@app.command()
def demo(
    user: Annotated[str, typer.Option("--user", "-u", help="User the demo creates and talks as.")] = "demo",
    cube: CubeOpt = None,
) -> None:
    """Store a short built-in conversation, ask three questions, show memories and answers (offline)."""
    from hippograph.demo import run_demo

    run_demo(open_memory(worker=True), user=user, cube=cube, console=console, table=hits_table)


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="The text to remember.")],
    user: UserOpt = None,
    cube: CubeOpt = None,
    session: Annotated[str | None, typer.Option(help="Session id.")] = None,
) -> None:
    """Remember a piece of text."""
    memory = open_memory()
    try:
        ids = memory.add(text, user_id=default_user(user), cube_id=cube, session_id=session)
    finally:
        memory.close()
    console.print(f"stored: {', '.join(ids)}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: UserOpt = None,
    cube: ReadCubeOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many memories to show.")] = 10,
    full: Annotated[bool, typer.Option("--full", help="Whole memories with key and cube, not snippets.")] = False,
) -> None:
    """Search memories (hybrid recall, fused, thresholded): best first, with the retrievers that found each."""
    memory = open_memory()
    memory.services.prefetch(embedder=True)  # the model loads while the search graph is imported and compiled
    try:
        hits = memory.search(query, user_id=default_user(user), cube_ids=[cube] if cube else None, top_k=top_k)
    finally:
        memory.close()
    console.print(hits_table(hits, f"{len(hits)} memories for: {query}", full=full))


@app.command()
def chat(
    user: UserOpt = None,
    cube: Annotated[str | None, typer.Option(
        "--cube", "-c", help="Read only this cube and remember the turns in it (default: read every readable "
        "cube, remember in your default cube).")] = None,
    thread: Annotated[str, typer.Option(help="Conversation thread (resumed from its checkpoint).")] = "main",
) -> None:
    """Chat with memory (interactive). Empty line or Ctrl-D quits."""
    memory = open_memory(worker=True)
    memory.services.prefetch(embedder=True, preferences=True)  # while the user types the first message
    user_id = default_user(user)
    console.print(f"[dim]user {user_id}, thread {thread}; empty line to quit[/dim]")
    try:
        while True:
            try:
                message = console.input("[bold cyan]you>[/bold cyan] ").strip()
            except EOFError:
                break
            if not message:
                break
            result = memory.chat(message, user_id=user_id, thread_id=thread, cube_ids=[cube] if cube else None,
                                 cube_id=cube)
            console.print(f"[bold green]hippograph>[/bold green] {result.answer}")
            for ref in result.references:
                console.print(f"  [dim][{ref['n']}] {ref['id']}[/dim]")
    finally:
        memory.close()


@app.command()
def stats(user: UserOpt = None, cube: ReadCubeOpt = None) -> None:
    """Memory counts per readable cube (or just `--cube`), and enrichment job counts."""
    memory = open_memory()
    try:
        info = memory.stats(user_id=default_user(user), cube_ids=[cube] if cube else None)
    finally:
        memory.close()
    table = Table(title=f"user {info['user_id']}")
    table.add_column("cube", overflow="fold")
    table.add_column("memories", justify="right")
    for cube_id, n in info["cubes"].items():
        table.add_row(cube_id, str(n))
    console.print(table)
    console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in info["jobs"].items()))


def _mount() -> None:
    """Sub-commands that live in their own modules (each owns one interface; all import lazily)."""
    from importlib.metadata import entry_points

    from hippograph import cli_admin, cli_jobs
    from hippograph.cli_ingest import documents_app, ingest
    from hippograph.cli_neo4j import neo4j_app
    from hippograph.cli_serve import mcp, serve

    app.command(help="Ingest files and folders (markitdown -> chunk -> memories).")(ingest)
    app.command(help="Serve the HTTP API (LangServe + REST).")(serve)
    app.command(help="Run the MCP server (stdio or streamable HTTP).")(mcp)
    cli_admin.mount(app)  # users, keys, cubes, share, export, import, erase
    cli_jobs.mount(app)  # worker, jobs
    # Plugins (`hippograph eval` from the evals package): they sit above the runtime, which never imports them.
    for plugin in entry_points(group="hippograph.cli"):
        app.add_typer(plugin.load(), name=plugin.name)
    app.add_typer(documents_app, name="documents")
    app.add_typer(neo4j_app, name="neo4j", help="Run a local Neo4j 5.26 (needs Java 17+).")


_mount()


def main() -> None:
    exit_now(run())


def run() -> int:
    """Run the command line; its exit code."""
    try:
        app()
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            return done.code or 0
        print(done.code, file=sys.stderr)
        return 1
    except Exception as exc:
        from hippograph.stores.errors import HippographError

        if not isinstance(exc, HippographError):
            raise
        Console(stderr=True).print(f"[red]error:[/red] {exc}")  # errors on stderr: stdout stays the command's output
        return 2
    return 0


def exit_now(code: int) -> NoReturn:
    """Exit once the command is done, skipping the interpreter's teardown when nothing else runs: unloading
    the ~1,500 modules a search imports (LangGraph, pydantic schemas, onnxruntime) takes 0.3-0.5 s after the
    answer is printed (mypy's command line exits the same way). Exit handlers still run (log files, temporary
    files) and output is flushed first; a live non-daemon thread gets the ordinary exit, which waits for it."""
    if any(not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
