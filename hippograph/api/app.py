"""The FastAPI app of `hippograph serve`: REST, LangServe routes, the /ui inspector, error handlers, body limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from hippograph.api.auth import authenticate
from hippograph.api.body_limit import BodyLimit
from hippograph.api.errors import install_error_handlers
from hippograph.api.langserve import ScopedGraph, check_json_body, check_langserve_body, make_config_modifier
from hippograph.api.rest import build_rest
from hippograph.memory import Memory
from hippograph.settings import Settings, get_settings
from hippograph.stores.services import Services


def create_app(services: Services | None = None, *, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app. Unknown users are never auto-created here: an unknown user is a 404."""
    from langserve import add_routes

    services = services or Services.from_settings(settings or get_settings())
    services.registry.auto_create_users = False
    memory = Memory(services=services)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Before the port takes connections: the embedder's model and preference memory, else the first
        # requests of every process wait seconds for them.
        await asyncio.to_thread(services.warm_up)
        yield
        memory.close()

    app = FastAPI(
        lifespan=lifespan,
        dependencies=[Depends(check_json_body)],
        title="hippograph",
        version="0.1.0",
        description="Long-term memory for AI agents: LangServe routes for the chat and search graphs, and REST. "
        "Authenticate with `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
    )
    app.state.services = services
    app.state.memory = memory
    install_error_handlers(app)
    app.include_router(build_rest(memory))
    from hippograph.ui import install_ui  # the /ui web inspector (same API-key auth)

    install_ui(app, memory)

    modifier = make_config_modifier(services.registry)
    auth = [Depends(authenticate), Depends(check_langserve_body)]
    chat = ScopedGraph(graph=memory._chat, kind="chat", settings=services.settings)
    search = ScopedGraph(graph=memory._search, kind="search", settings=services.settings)
    for path, runnable in (("/chat", chat), ("/search", search)):
        add_routes(app, runnable, path=path, input_type=runnable.get_input_schema(),
                   output_type=runnable.get_output_schema(), per_req_config_modifier=modifier,
                   dependencies=auth, disabled_endpoints=["stream_log"], enable_feedback_endpoint=False)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(BodyLimit, max_bytes=services.settings.max_request_bytes)  # type: ignore[arg-type]
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info", reuse_port: bool = False) -> None:
    """Run the app in this process. `reuse_port`: bind with SO_REUSEPORT, so several processes serve one port and
    the kernel spreads new connections evenly over them (`hippograph serve --processes N` starts them so)."""
    import socket

    import uvicorn

    # Keep idle connections longer than clients and load balancers do (uvicorn's 5 s default closes them under a
    # client that is about to reuse one: a reset instead of an answer).
    config = uvicorn.Config(create_app(), host=host, port=port, log_level=log_level, timeout_keep_alive=75)
    if not reuse_port:
        uvicorn.Server(config).run()
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))  # uvicorn listens once the app has started: no connection waits on a warm-up
    uvicorn.Server(config).run(sockets=[sock])
