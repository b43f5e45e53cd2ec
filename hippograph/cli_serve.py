"""`hippograph serve` and `hippograph mcp`: typer commands the main CLI mounts (`app.command()(serve)`)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1 keeps it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the HTTP server: LangServe /chat and /search, REST under /v1, OpenAPI at /docs (API-key auth)."""
    from hippograph.api import serve as run

    run(host, port, log_level=log_level)


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
