"""`hippograph serve` and `hippograph mcp`: typer commands the main CLI mounts (`app.command()(serve)`)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    processes: Annotated[int, typer.Option(
        min=1, help="API processes. 1: one process with the enrichment worker inside it. More: that many API "
        "processes, one `hippograph worker` process and one Milvus Lite server process for preferences, on "
        "the same data dir (on 2 cores, 3 answer 32 concurrent clients fastest).")] = 1,
    reuse_port: Annotated[bool, typer.Option(
        hidden=True, help="Bind with SO_REUSEPORT (how `--processes` starts each API process).")] = False,
) -> None:
    """Run the HTTP server: LangServe /chat and /search, REST under /v1, OpenAPI at /docs (API-key auth)."""
    if processes > 1:
        from hippograph.api.processes import serve_processes

        serve_processes(host, port, processes=processes, log_level=log_level)
        return
    from hippograph.api import serve as run

    run(host, port, log_level=log_level, reuse_port=reuse_port)


def mcp(
    transport: Annotated[str, typer.Option(help="`stdio` (default) or `http` (streamable HTTP at /mcp).")] = "stdio",
    host: Annotated[str, typer.Option(help="Interface to bind (http transport).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (http transport).")] = 8765,
) -> None:
    """Run the MCP server. stdio acts as HIPPOGRAPH_API_KEY's user (or HIPPOGRAPH_DEFAULT_USER); http takes the
    API key of each request."""
    if transport not in ("stdio", "http"):
        raise typer.BadParameter("transport must be stdio or http", param_hint="--transport")
    from hippograph.mcp_server import run

    mode: Literal["stdio", "http"] = "stdio" if transport == "stdio" else "http"
    run(mode, host=host, port=port)
