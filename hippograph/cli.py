"""The `hippograph` command line."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hippograph.settings import get_settings

app = typer.Typer(help="hippograph: long-term memory for AI agents, built as LangGraph graphs.", no_args_is_help=True)
console = Console()

UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: HIPPOGRAPH_DEFAULT_USER).")]
CubeOpt = Annotated[str | None, typer.Option("--cube", "-c", help="Cube id (default: the user's default cube).")]


def _memory():  # type: ignore[no-untyped-def]
    from hippograph.memory import Memory

    with console.status("Opening memory (loading the embedding model)..."):
        return Memory()


def _user(user: str | None) -> str:
    return user or get_settings().default_user


def _hits_table(hits, title: str) -> Table:  # type: ignore[no-untyped-def]
    table = Table(title=title, show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("signals")
    table.add_column("memory")
    for n, hit in enumerate(hits, 1):
        signals = " ".join(f"{k}={v:.3f}" for k, v in hit.scores.items() if k in ("vector", "bm25", "graph"))
        table.add_row(str(n), f"{hit.score:.4f}", signals, hit.text)
    return table


@app.command()
def demo(
    user: Annotated[str, typer.Option("--user", "-u", help="User the demo creates and talks as.")] = "demo",
    cube: CubeOpt = None,
) -> None:
    """Ingest a short built-in conversation, ask three questions, show memories and answers (offline)."""
    from hippograph.demo import CONVERSATION, DEMO_SESSION, QUESTIONS

    started = time.perf_counter()
    memory = _memory()
    try:
        if cube and cube not in {c.cube.id for c in memory.cubes(user_id=user)}:  # cubes() creates the user
            memory.create_cube(cube, user_id=user)
        ids = memory.add(CONVERSATION, user_id=user, cube_id=cube, session_id=DEMO_SESSION)
        console.print(f"[bold]Stored[/bold] {len(set(ids))} memories for user [cyan]{user}[/cyan] "
                      f"(cube {cube or memory.cubes(user_id=user)[0].cube.id}).")
        for question in QUESTIONS:
            console.rule(f"[bold]Q:[/bold] {question}")
            result = memory.chat(question, user_id=user, thread_id="demo", top_k=5,
                                 cube_ids=[cube] if cube else None, cube_id=cube)
            console.print(_hits_table(result.memories, "retrieved memories"))
            console.print(f"[bold green]A:[/bold green] {result.answer}")
            timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings.items())
            console.print(f"[dim]{timings}[/dim]")
    finally:
        memory.close()
    console.print(f"[dim]demo finished in {time.perf_counter() - started:.1f} s[/dim]")


@app.command()
def add(
    text: Annotated[str, typer.Argument(help="The text to remember.")],
    user: UserOpt = None,
    cube: CubeOpt = None,
    session: Annotated[str | None, typer.Option(help="Session id.")] = None,
) -> None:
    """Remember a piece of text."""
    memory = _memory()
    try:
        ids = memory.add(text, user_id=_user(user), cube_id=cube, session_id=session)
    finally:
        memory.close()
    console.print(f"stored: {', '.join(ids)}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for.")],
    user: UserOpt = None,
    cube: CubeOpt = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 10,
) -> None:
    """Search memories (hybrid recall, fused, thresholded)."""
    memory = _memory()
    try:
        hits = memory.search(query, user_id=_user(user), cube_ids=[cube] if cube else None, top_k=top_k)
    finally:
        memory.close()
    console.print(_hits_table(hits, f"memories for: {query}"))


@app.command()
def chat(
    user: UserOpt = None,
    cube: CubeOpt = None,
    thread: Annotated[str, typer.Option(help="Conversation thread (resumed from its checkpoint).")] = "main",
) -> None:
    """Chat with memory (interactive). Empty line or Ctrl-D quits."""
    memory = _memory()
    user_id = _user(user)
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
def stats(user: UserOpt = None, cube: CubeOpt = None) -> None:
    """Memory counts per readable cube (or just `--cube`), and enrichment job counts."""
    memory = _memory()
    try:
        info = memory.stats(user_id=_user(user), cube_ids=[cube] if cube else None)
    finally:
        memory.close()
    table = Table(title=f"user {info['user_id']}")
    table.add_column("cube")
    table.add_column("memories", justify="right")
    for cube_id, n in info["cubes"].items():
        table.add_row(cube_id, str(n))
    console.print(table)
    console.print("jobs: " + ", ".join(f"{k} {v}" for k, v in info["jobs"].items()))


def _mount() -> None:
    """Sub-commands that live in their own modules (each owns one interface)."""
    from hippograph import cli_jobs
    from hippograph.cli_eval import eval_app
    from hippograph.cli_ingest import documents_app, ingest
    from hippograph.cli_neo4j import neo4j_app
    from hippograph.cli_serve import mcp, serve

    app.command(help="Ingest files and folders (markitdown -> chunk -> memories).")(ingest)
    app.command(help="Serve the HTTP API (LangServe + REST).")(serve)
    app.command(help="Run the MCP server (stdio or streamable HTTP).")(mcp)
    cli_jobs.mount(app, eval_app)  # worker, jobs, eval prefeval
    app.add_typer(eval_app, name="eval")
    app.add_typer(documents_app, name="documents")
    app.add_typer(neo4j_app, name="neo4j", help="Run a local Neo4j 5.26 (needs Java 17+).")


_mount()


def main() -> None:
    from stores.errors import HippographError

    try:
        app()
    except HippographError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
