"""CLI commands for the enrichment worker and the job outbox, plus `eval prefeval`.

The lead mounts them: `app.command("worker")(worker)`, `app.command("jobs")(jobs)`,
(or `mount(app)`). `hippograph eval` is a plugin the `evals` package registers (entry point group `hippograph.cli`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def worker(
    once: Annotated[bool, typer.Option(help="Exit when the outbox has no job left.")] = False,
    max_jobs: Annotated[int | None, typer.Option(help="Stop after this many jobs.")] = None,
    lease: Annotated[float, typer.Option(help="Seconds a claimed job stays leased (renewed while running).")] = 120.0,
    poll: Annotated[float, typer.Option(help="Seconds between polls of an empty outbox.")] = 0.5,
) -> None:
    """Run the enrichment worker: claim jobs, run the enrich graph (checkpointed per job), mark done/failed."""
    from hippograph.worker import run_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    n = run_worker(once=once, max_jobs=max_jobs, lease_seconds=lease, poll_interval=poll)
    console.print(f"processed {n} jobs in {time.time() - started:.1f}s")


jobs_app = typer.Typer(help="Enrichment jobs: list them (default) or requeue failed ones (`retry`).",
                       invoke_without_command=True, no_args_is_help=False)


@jobs_app.callback()
def jobs(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only jobs in this status: pending, running, done, failed.")
                      ] = None,
    limit: Annotated[int, typer.Option(help="How many jobs to list (newest first).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List enrichment jobs with status, attempts and last error."""
    if ctx.invoked_subcommand is not None:
        return
    from hippograph.settings import get_settings
    from hippograph.stores.outbox import JobStatus
    from hippograph.stores.services import open_outbox

    if status is not None and status not in {s.value for s in JobStatus}:
        raise typer.BadParameter(f"status must be one of {', '.join(s.value for s in JobStatus)}")
    outbox = open_outbox(get_settings())
    try:
        listed = outbox.list(status=JobStatus(status) if status else None, limit=limit)
        counts = outbox.counts()
    finally:
        close = getattr(outbox, "close", None)
        if close is not None:
            close()
    if as_json:
        console.print_json(json.dumps({"counts": counts, "jobs": [j.model_dump(mode="json") for j in listed]}))
        return
    table = Table(title="jobs " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    for col in ("id", "kind", "status", "attempts", "updated", "last error"):
        table.add_column(col, justify="right" if col == "attempts" else "left")
    colours = {"done": "green", "failed": "red", "running": "yellow", "pending": "cyan"}
    for job in listed:
        table.add_row(job.id[:8], job.kind, f"[{colours.get(job.status.value, 'white')}]{job.status.value}[/]",
                      str(job.attempts), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(job.updated_at)),
                      (job.last_error.splitlines() or [""])[0][:80])
    console.print(table)


@jobs_app.command("retry")
def retry(
    job_id: Annotated[str | None, typer.Argument(help="The job id (as `hippograph jobs --json` prints it).")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Requeue every failed job.")] = False,
) -> None:
    """Requeue a failed job (or every failed one) with a fresh set of attempts; a worker picks it up next."""
    from hippograph.settings import get_settings
    from hippograph.stores.outbox import JobStatus
    from hippograph.stores.services import open_outbox

    if (job_id is None) == (not failed):
        raise typer.BadParameter("give one job id or --failed")
    outbox = open_outbox(get_settings())
    try:
        if failed:
            ids = [j.id for j in outbox.list(status=JobStatus.FAILED, limit=1_000_000)]
            done = sum(outbox.retry(i) for i in ids)
            console.print(f"requeued {done} failed job(s)")
            return
        assert job_id is not None
        job = outbox.get(job_id)
        if job is None:
            console.print(f"[red]error:[/red] no job {job_id}")
            raise typer.Exit(1)
        if not outbox.retry(job_id):
            console.print(f"[red]error:[/red] job {job_id} is {job.status.value}; only failed or pending jobs "
                          "can be requeued")
            raise typer.Exit(1)
        console.print(f"requeued {job_id}")
    finally:
        close = getattr(outbox, "close", None)
        if close is not None:
            close()


def mount(app: typer.Typer) -> None:
    app.command("worker")(worker)
    app.add_typer(jobs_app, name="jobs")
