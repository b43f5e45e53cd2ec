"""`hippograph ingest PATH... [--cube C] [--recursive]`: documents into tree memory through the ingest graph.

A progress bar advances per document as the graph's `Send` branches finish; a summary table lists every file
(status, chunks, memories added / skipped / superseded / archived, time) with totals. A bad file (unreadable,
encrypted, empty, binary, corrupt) is reported on its own row and never stops the batch. Exit code 0 when every
document was ingested (or unchanged), 1 when some failed, 2 for bad arguments (unknown cube, no access).

`hippograph documents list|delete` shows a cube's documents and archives one (its memories are soft-deleted,
history kept).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
documents_app = typer.Typer(help="List a cube's ingested documents, or archive one.", no_args_is_help=True)
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: HIPPOGRAPH_DEFAULT_USER).")]
CubeOpt = Annotated[str | None, typer.Option("--cube", "-c", help="Cube id (default: the user's default cube).")]

_STYLE = {"new": "green", "changed": "yellow", "unchanged": "dim", "error": "red"}


def _table(rows: list[dict[str, Any]], summary: dict[str, Any], seconds: float) -> Table:
    table = Table(title=f"Ingested {len(rows)} document(s) in {seconds:.1f}s")
    for name, justify in [("file", "left"), ("status", "left"), ("chunks", "right"), ("added", "right"),
                          ("skipped", "right"), ("superseded", "right"), ("archived", "right"), ("ms", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        status = row["status"]
        label = f"[{_STYLE.get(status, 'white')}]{status}[/]"
        if row.get("error"):
            label += f": {row['error']}"
        ms = sum((row.get("timings") or {}).get(k, 0.0) for k in ("convert", "chunk", "extract", "dedup", "write"))
        table.add_row(Path(str(row["document"])).name, label, str(row["chunks"]), str(row["added"]),
                      str(row["skipped"]), str(row["superseded"]), str(row["archived"]), f"{ms:.0f}")
    table.add_section()
    table.add_row("total", f"{summary.get('errors', 0)} error(s), {summary.get('unchanged', 0)} unchanged",
                  str(summary.get("chunks", 0)), str(summary.get("added", 0)), str(summary.get("skipped", 0)),
                  str(summary.get("superseded", 0)), str(summary.get("archived", 0)), f"{seconds * 1000:.0f}")
    return table


def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or directories (pdf, docx, pptx, xlsx, html, md, txt, "
                                                     "csv, json ...).")],
    cube: Annotated[str | None, typer.Option("--cube", "-c", help="Cube id (default: the user's default cube).")]
    = None,
    recursive: Annotated[bool, typer.Option("--recursive", "-r", help="Descend into sub-directories.")] = False,
    user: Annotated[str | None, typer.Option("--user", "-u", help="User id (default: HIPPOGRAPH_DEFAULT_USER).")]
    = None,
    mode: Annotated[str, typer.Option("--mode", help="fast (chunks) or fine (also LLM facts).")] = "fast",
) -> None:
    """Ingest documents into tree memory: convert, chunk, extract, dedup, write (idempotent)."""
    from graphs.ingest import IngestContext, build_ingest_graph
    from hippograph.settings import Settings
    from stores.errors import HippographError
    from stores.services import Services

    settings = Settings()
    if mode not in ("fast", "fine"):
        raise typer.BadParameter("--mode is fast or fine")
    with console.status("Opening memory (loading the embedding model)..."):
        services = Services.from_settings(settings)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    fine: Literal["fast", "fine"] = "fine" if mode == "fine" else "fast"
    context = IngestContext(user_id=user or settings.default_user, cube_id=cube, recursive=recursive, mode=fine)
    try:
        graph = build_ingest_graph(services)
        with Progress(TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.description}"), console=console, transient=False) as progress:
            task = progress.add_task("planning", total=None)
            for update in graph.stream({"paths": [str(p) for p in paths]}, context=context, stream_mode="updates"):
                for node, value in update.items():
                    if node == "plan" and value:
                        progress.update(task, total=len(value.get("sources", [])), description="")
                    elif node == "document" and value:
                        for row in value.get("results", []):
                            rows.append(row)
                            name = Path(str(row["document"])).name
                            if row["status"] == "error":
                                progress.console.print(f"[red]skipped[/] {name}: {row['error']}")
                            progress.update(task, advance=1, description=name)
                    elif node == "summarize" and value:
                        summary = value.get("summary", {})
    except HippographError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        services.close()
    rows.sort(key=lambda r: r.get("order", 0))
    console.print(_table(rows, summary, time.perf_counter() - started))
    if any(r["status"] == "error" for r in rows):
        raise typer.Exit(1)


def _open_memory():  # type: ignore[no-untyped-def]
    from hippograph.memory import Memory
    from hippograph.settings import Settings

    with console.status("Opening memory (loading the embedding model)..."):
        return Memory(Settings(worker_in_process=False))


@documents_app.command("list")
def list_documents(user: UserOpt = None, cube: CubeOpt = None) -> None:
    """The active documents of a cube."""
    from stores.errors import HippographError

    memory = _open_memory()
    try:
        docs = memory.documents(user_id=user or memory.settings.default_user, cube_id=cube)
    except HippographError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        memory.close()
    table = Table(title=f"{len(docs)} document(s)")
    for name in ("document", "kind", "chunks", "updated"):
        table.add_column(name, justify="right" if name == "chunks" else "left")
    for doc in docs:
        table.add_row(doc["doc_key"], doc["kind"], str(doc["chunks"]),
                      time.strftime("%Y-%m-%d %H:%M", time.localtime(doc["updated_at"])))
    console.print(table)


@documents_app.command("delete")
def delete_documents(
    documents: Annotated[list[str], typer.Argument(help="Document keys as `documents list` shows them, or file "
                                                        "paths (resolved).")],
    user: UserOpt = None,
    cube: CubeOpt = None,
) -> None:
    """Archive documents: their memories are soft-deleted (kept with status `deleted`)."""
    from stores.errors import HippographError

    memory = _open_memory()
    failed = False
    try:
        for doc in documents:
            try:
                n = memory.delete_document(doc, user_id=user or memory.settings.default_user, cube_id=cube)
                console.print(f"archived {doc}: {n} memories")
            except HippographError as exc:
                console.print(f"[red]error:[/] {exc}")
                failed = True
    finally:
        memory.close()
    if failed:
        raise typer.Exit(1)
