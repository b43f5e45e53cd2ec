"""`hippograph ingest PATH... [--cube C] [--recursive]`: documents into tree memory through the ingest graph.

Two progress bars: files (one tick per finished document) and chunks (the write node's custom stream events,
one tick per embedded and written step, so a 5 MB file visibly advances). A summary table lists every file
(status, chunks, memories added / skipped / superseded / archived, time, and the reason for a skipped or failed
file) under an honest headline: how many were ingested, unchanged, skipped and failed. Files hippograph does
not take (unsupported binary types, empty, over the size limit) are "skipped" and do not fail the command.
Exit code 0 when nothing failed, 1 when some file failed (missing, unreadable, corrupt, encrypted), 2 for bad
arguments (unknown cube, no access).

`hippograph documents list|delete` shows a cube's documents and archives one (its memories are soft-deleted,
history kept).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()
documents_app = typer.Typer(help="List a cube's ingested documents, or archive one.", no_args_is_help=True)
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="User id (default: HIPPOGRAPH_DEFAULT_USER).")]
CubeOpt = Annotated[str | None, typer.Option("--cube", "-c", help="Cube id (default: the user's default cube).")]

_STYLE = {"new": "green", "changed": "yellow", "unchanged": "dim", "skipped": "blue", "error": "red"}


def headline(rows: list[dict[str, Any]], seconds: float) -> str:
    """`5 files in 3.2 s: 3 ingested, 1 unchanged, 1 skipped, 0 failed`: counts that add up."""
    count = {status: sum(r["status"] == status for r in rows) for status in _STYLE}
    return (f"{len(rows)} file(s) in {seconds:.1f} s: {count['new'] + count['changed']} ingested, "
            f"{count['unchanged']} unchanged, {count['skipped']} skipped, {count['error']} failed")


def _table(rows: list[dict[str, Any]], summary: dict[str, Any], seconds: float) -> Table:
    """One row per file (fits 80 columns: names wrap, never cut); reasons and warnings go in `_notes`."""
    table = Table(title=headline(rows, seconds))
    table.add_column("file", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    for name in ("chunks", "added", "kept", "s"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        status = f"[{_STYLE.get(row['status'], 'white')}]{row['status']}[/]"
        changes = [f"{row[k]} {k}" for k in ("superseded", "archived") if row.get(k)]
        ms = sum((row.get("timings") or {}).get(k, 0.0) for k in ("convert", "chunk", "extract", "dedup", "write"))
        table.add_row(Path(str(row["document"])).name, " ".join([status, *changes]), str(row["chunks"]),
                      str(row["added"]), str(row["skipped"]), f"{ms / 1000:.1f}")
    table.add_section()
    table.add_row("total", "", str(summary.get("chunks", 0)), str(summary.get("added", 0)),
                  str(summary.get("skipped", 0)), f"{seconds:.1f}")
    return table


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    """Why a file was skipped or failed, and what to know about one that was ingested (a guessed encoding)."""
    notes = []
    for row in rows:
        name = Path(str(row["document"])).name
        if row["status"] in ("error", "skipped"):
            label = "failed" if row["status"] == "error" else "skipped"
            notes.append(f"[{_STYLE[row['status']]}]{label}[/] {name}: {row.get('error')}")
        notes += [f"[yellow]warning[/] {name}: {warning}" for warning in row.get("warnings") or []]
    return notes


class IngestProgress:
    """The files bar (plan -> one tick per document row) and the chunks bar (write steps' custom events)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.files: TaskID = progress.add_task("files", total=None, name="")
        self.chunks: TaskID = progress.add_task("chunks", total=0, name="")
        self.seen: dict[str, int] = {}  # document -> chunks counted so far

    def planned(self, sources: int) -> None:
        self.progress.update(self.files, total=sources)

    def chunk_step(self, event: dict[str, Any]) -> None:
        document = str(event.get("document", ""))
        if document not in self.seen:
            self.seen[document] = 0
            total = self.progress.tasks[self.chunks].total or 0
            self.progress.update(self.chunks, total=total + int(event.get("total", 0)), name=Path(document).name)
        self.seen[document] += int(event.get("step", 0))
        self.progress.update(self.chunks, advance=int(event.get("step", 0)))

    def finished(self, row: dict[str, Any]) -> None:
        self.progress.update(self.files, advance=1, name=Path(str(row["document"])).name)


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
    from hippograph.graphs.ingest import IngestContext, build_ingest_graph
    from hippograph.settings import Settings
    from hippograph.stores.errors import HippographError
    from hippograph.stores.services import Services

    settings = Settings(worker_in_process=False)
    if mode not in ("fast", "fine"):
        raise typer.BadParameter("--mode is fast or fine")
    with console.status("Opening memory..."):
        services = Services.from_settings(settings)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    fine: Literal["fast", "fine"] = "fine" if mode == "fine" else "fast"
    context = IngestContext(user_id=user or settings.default_user, cube_id=cube, recursive=recursive, mode=fine)
    try:
        graph = build_ingest_graph(services)
        with Progress(TextColumn("[bold]{task.description:>6}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.fields[name]}"), console=console) as progress:
            bars = IngestProgress(progress)
            stream = graph.stream({"paths": [str(p) for p in paths]}, context=context,
                                  stream_mode=["updates", "custom"], subgraphs=True)
            for namespace, kind, value in stream:
                if kind == "custom" and isinstance(value, dict) and value.get("ingest") == "chunks":
                    bars.chunk_step(value)
                elif kind == "updates" and not namespace and isinstance(value, dict):  # top graph's nodes only
                    for node, update in value.items():
                        if node == "plan" and update:
                            bars.planned(len(update.get("sources", [])))
                        elif node == "document" and update:
                            for row in update.get("results", []):
                                rows.append(row)
                                bars.finished(row)
                        elif node == "summarize" and update:
                            summary = update.get("summary", {})
    except HippographError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    finally:
        services.close()
    rows.sort(key=lambda r: r.get("order", 0))
    console.print(_table(rows, summary, time.perf_counter() - started))
    for note in _notes(rows):
        console.print(note)
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
    from hippograph.stores.errors import HippographError

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
        table.add_column(name, justify="right" if name == "chunks" else "left",
                         overflow="fold" if name == "document" else "ellipsis", ratio=3 if name == "document" else None)
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
    from hippograph.stores.errors import HippographError

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
