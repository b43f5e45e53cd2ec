"""`hippograph neo4j start|stop|status`: a local Neo4j 5.26 for users who have Java but no Neo4j.

The server runs in the background (its own process group) from Maven Central jars cached under
`~/.cache/hippograph/neo4j-5.26` (`HIPPOGRAPH_NEO4J_HOME`); its store, log and PID file live in `--data-dir`.
It listens on 127.0.0.1 only, with authentication disabled. Point hippograph at it with
`HIPPOGRAPH_TREE_BACKEND=neo4j HIPPOGRAPH_NEO4J_URI=bolt://127.0.0.1:PORT`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hippograph.stores.errors import HippographError

neo4j_app = typer.Typer(help="Run a local Neo4j 5.26 (needs Java 17+ and Maven on first start).", no_args_is_help=True)
console = Console()


def _default_data_dir() -> Path:
    env = os.environ.get("HIPPOGRAPH_NEO4J_DATA")
    return Path(env) if env else Path(".neo4j")


DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", "-d", help="Store, log and PID file (default: ./.neo4j or HIPPOGRAPH_NEO4J_DATA)."),
]


def _table(state: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    running = state.get("running")
    table.add_row("state", "[green]running[/green]" if running else "[red]stopped[/red]")
    for key in ("uri", "pid", "port", "data_dir", "log"):
        if state.get(key) is not None:
            table.add_row(key, str(state[key]))
    if running:
        table.add_row(
            "bolt", "[green]answering[/green]" if state.get("reachable") else "[yellow]not answering[/yellow]"
        )
        started = state.get("started_at")
        if started:
            table.add_row("uptime", f"{time.time() - float(started):.0f} s")
    return table


@neo4j_app.command()
def start(
    data_dir: DataDirOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Bolt port on 127.0.0.1.")] = 7687,
    heap: Annotated[str, typer.Option(help="JVM max heap, e.g. 1g, 512m.")] = "1g",
    pagecache: Annotated[int, typer.Option(help="Page cache in MiB.")] = 256,
) -> None:
    """Start the local Neo4j in the background (fetching the jars with Maven the first time)."""
    from hippograph.stores.tree.neo4j_server import ensure_jars, start_detached

    d = data_dir or _default_data_dir()
    try:
        with console.status("Fetching the Neo4j jars (first run only)..."):
            ensure_jars()
        with console.status(f"Starting Neo4j on 127.0.0.1:{port}..."):
            state = start_detached(d, port, heap=heap, pagecache_mb=pagecache)
    except HippographError as exc:
        console.print(f"[red]could not start Neo4j:[/red] {exc}")
        raise typer.Exit(1) from None
    if state.get("already_running"):
        console.print("[yellow]already running[/yellow]")
    console.print(_table(state))
    console.print(f"[dim]use it: HIPPOGRAPH_TREE_BACKEND=neo4j HIPPOGRAPH_NEO4J_URI={state['uri']}[/dim]")


@neo4j_app.command()
def stop(data_dir: DataDirOpt = None) -> None:
    """Stop the local Neo4j of this data dir (clean shutdown by its PID)."""
    from hippograph.stores.tree.neo4j_server import stop as stop_server

    d = data_dir or _default_data_dir()
    with console.status("Stopping Neo4j..."):
        was = stop_server(d)
    console.print("[green]stopped[/green]" if was else "[yellow]was not running[/yellow]")


@neo4j_app.command()
def status(data_dir: DataDirOpt = None) -> None:
    """Is the local Neo4j of this data dir running, and does Bolt answer? (exit code 1 if not)"""
    from hippograph.stores.tree.neo4j_server import status as server_status

    state = server_status(data_dir or _default_data_dir())
    console.print(_table(state))
    if not (state.get("running") and state.get("reachable")):
        raise typer.Exit(1)


__all__ = ["neo4j_app"]
