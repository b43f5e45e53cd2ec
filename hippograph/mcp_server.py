"""The MCP server (`hippograph mcp`): hippograph memory as MCP tools, over stdio or streamable HTTP.

Built on the official MCP Python SDK (`mcp.server.mcpserver.MCPServer`, the SDK's FastMCP). Tools:
search_memories, add_memory, get_memory, update_memory, delete_memory, chat, list_cubes, share_cube,
ingest_document, job_status. The access rules are the HTTP server's: every call is scoped to the caller's
readable/writable cubes, and chat threads are namespaced per user.

Who the caller is:
- stdio: the user of `HIPPOGRAPH_API_KEY` (settings.api_key) when set, else `HIPPOGRAPH_DEFAULT_USER`.
- streamable HTTP: the API key of each request (`Authorization: Bearer <key>` or `X-API-Key`); no key, no access.

    hippograph mcp                                   # stdio
    hippograph mcp --transport http --port 8765      # http://127.0.0.1:8765/mcp
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from hippograph.settings import Settings, get_settings
from hippograph.stores.errors import AccessDeniedError, HippographError

if TYPE_CHECKING:  # the stores and graphs load when the first tool runs, not before `initialize` is answered
    from hippograph.memory import Memory
    from hippograph.stores.models import MemoryItem
    from hippograph.stores.services import Services

log = logging.getLogger(__name__)

Transport = Literal["stdio", "http"]


def _item(item: MemoryItem) -> dict[str, Any]:
    return item.model_dump(mode="json", include={"id", "text", "key", "cube_id", "user_id", "tags", "memory_type",
                                                 "source", "session_id", "status", "created_at", "updated_at",
                                                 "metadata"})


class HippoMCP:
    """The tools, bound to one `Memory` and one way of telling who the caller is.

    The `Memory` is built by the first tool call that needs it (or by `warm_up`, in the background), not with
    the server: a client's `initialize` and `tools/list` are answered at once instead of after seconds of
    opening stores and loading graph libraries, and a data dir that cannot be opened is reported by the tool
    calls, with its reason, rather than by a server that never starts."""

    def __init__(self, memory: Memory | Callable[[], Memory], transport: Transport) -> None:
        self._memory: Memory | None = None
        self._open: Callable[[], Memory] | None = None
        if callable(memory):
            self._open = memory
        else:
            self._memory = memory
        self._lock = threading.Lock()
        self.transport = transport
        self._stdio_user: str | None = None

    @property
    def memory(self) -> Memory:
        with self._lock:
            if self._memory is None:
                assert self._open is not None
                try:
                    self._memory = self._open()
                except HippographError:
                    raise
                except Exception as exc:  # the SDK would say only "Error executing tool": say why
                    raise ToolError(f"cannot open hippograph memory ({type(exc).__name__}): {exc}") from exc
            return self._memory

    @property
    def memory_opened(self) -> bool:
        return self._memory is not None

    def warm_up(self) -> threading.Thread:
        """Build the `Memory` in a daemon thread, so the first tool call finds it ready. A failure is left for
        that call to raise again, with its reason."""

        def build() -> None:
            try:
                self.memory  # noqa: B018 -- the property builds it
            except Exception:
                log.debug("MCP warm-up failed; the first tool call reports it", exc_info=True)

        thread = threading.Thread(target=build, name="hippograph-mcp-warm-up", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        with self._lock:
            if self._memory is not None:
                self._memory.close()

    # -- identity ------------------------------------------------------------------------------------------

    def caller(self, ctx: Context | None) -> str:
        if self.transport == "http":
            from hippograph.api.auth import api_key_from_headers

            headers = ctx.headers if ctx is not None else None
            key = api_key_from_headers(headers) if headers is not None else None
            if not key:
                raise ToolError("unauthorized: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
            try:
                return self.memory.user_for_key(key).id
            except AccessDeniedError:
                raise ToolError("unauthorized: invalid or revoked API key") from None
        if self._stdio_user is None:
            settings = self.memory.settings
            if settings.api_key:
                try:
                    self._stdio_user = self.memory.user_for_key(settings.api_key).id
                except AccessDeniedError:
                    raise ToolError("unauthorized: HIPPOGRAPH_API_KEY is invalid or revoked") from None
            else:
                self._stdio_user = self.memory.ensure_user(settings.default_user).id
        return self._stdio_user

    # -- tools ---------------------------------------------------------------------------------------------

    def search_memories(self, query: str, cube_ids: list[str] | None = None, top_k: int = 10,
                        ctx: Context | None = None) -> dict[str, Any]:
        hits = self.memory.search(query, user_id=self.caller(ctx), cube_ids=cube_ids, top_k=top_k)
        return {"memories": [{**_item(h.item), "score": h.score} for h in hits]}

    def add_memory(self, text: str, cube_id: str | None = None, session_id: str | None = None,
                   metadata: dict[str, Any] | None = None, ctx: Context | None = None) -> dict[str, Any]:
        ids = self.memory.add(text, user_id=self.caller(ctx), cube_id=cube_id, session_id=session_id,
                              metadata=metadata)
        return {"ids": ids}

    def get_memory(self, memory_id: str, ctx: Context | None = None) -> dict[str, Any]:
        return _item(self.memory.get(memory_id, user_id=self.caller(ctx)))

    def update_memory(self, memory_id: str, text: str | None = None, tags: list[str] | None = None,
                      metadata: dict[str, Any] | None = None, ctx: Context | None = None) -> dict[str, Any]:
        return _item(self.memory.update(memory_id, text, user_id=self.caller(ctx), tags=tags, metadata=metadata))

    def delete_memory(self, memory_id: str, hard: bool = False, ctx: Context | None = None) -> dict[str, Any]:
        self.memory.delete(memory_id, user_id=self.caller(ctx), hard=hard)
        return {"deleted": memory_id, "hard": hard}

    def chat(self, message: str, thread_id: str | None = None, cube_ids: list[str] | None = None,
             top_k: int | None = None, ctx: Context | None = None) -> dict[str, Any]:
        result = self.memory.chat(message, user_id=self.caller(ctx), thread_id=thread_id, cube_ids=cube_ids,
                                  top_k=top_k)
        return {"answer": result.answer, "references": result.references,
                "memories": [{**_item(h.item), "score": h.score} for h in result.memories],
                "written_ids": result.written_ids, "thread_id": result.thread_id}

    def list_cubes(self, ctx: Context | None = None) -> dict[str, Any]:
        cubes = self.memory.cubes(user_id=self.caller(ctx))
        return {"cubes": [{"id": c.cube.id, "name": c.cube.name, "owner_id": c.cube.owner_id,
                           "access": c.access.value, "owned": c.owned} for c in cubes]}

    def share_cube(self, cube_id: str, user_id: str, access: Literal["read", "write"] = "read",
                   ctx: Context | None = None) -> dict[str, Any]:
        self.memory.share(cube_id, user_id=self.caller(ctx), with_user=user_id, access=access)
        return {"status": "invited", "cube_id": cube_id, "user_id": user_id, "access": access}

    def list_invitations(self, ctx: Context | None = None) -> dict[str, Any]:
        return {"invitations": [s.model_dump(mode="json") for s in self.memory.invitations(user_id=self.caller(ctx))]}

    def accept_share(self, cube_id: str, ctx: Context | None = None) -> dict[str, Any]:
        return self.memory.accept_share(cube_id, user_id=self.caller(ctx)).model_dump(mode="json")

    def leave_cube(self, cube_id: str, ctx: Context | None = None) -> dict[str, Any]:
        self.memory.leave_cube(cube_id, user_id=self.caller(ctx))
        return {"left": cube_id}

    def delete_cube(self, cube_id: str, ctx: Context | None = None) -> dict[str, Any]:
        return self.memory.delete_cube(cube_id, user_id=self.caller(ctx)).model_dump(mode="json")

    def list_preferences(self, ctx: Context | None = None) -> dict[str, Any]:
        prefs = self.memory.preferences(user_id=self.caller(ctx))
        return {"preferences": [p.model_dump(mode="json", include={"id", "kind", "topic", "text", "cube_id"})
                                for p in prefs]}

    def delete_preference(self, preference_id: str, ctx: Context | None = None) -> dict[str, Any]:
        self.memory.delete_preference(preference_id, user_id=self.caller(ctx))
        return {"deleted": preference_id}

    def export_memories(self, ctx: Context | None = None) -> dict[str, Any]:
        """Everything you own as JSON Lines text (cubes, memories with history, edges, preferences, documents)."""
        caller = self.caller(ctx)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "export.jsonl"
            counts = self.memory.export(path, user_id=caller)
            return {"counts": counts, "jsonl": path.read_text(encoding="utf-8")}

    def ingest_document(self, text: str, name: str | None = None, title: str | None = None,
                        cube_id: str | None = None, ctx: Context | None = None) -> dict[str, Any]:
        doc = {"text": text, **({"name": name} if name else {}), **({"title": title} if title else {})}
        return self.memory.ingest(user_id=self.caller(ctx), texts=[doc], cube_id=cube_id)

    def job_status(self, job_id: str, ctx: Context | None = None) -> dict[str, Any]:
        job = self.memory.job(job_id, user_id=self.caller(ctx))
        payload = job.payload or {}
        return {"id": job.id, "kind": job.kind, "status": job.status.value, "attempts": job.attempts,
                "last_error": job.last_error, "cube_id": payload.get("cube_id"),
                "memory_ids": list(payload.get("memory_ids") or [])}


TOOLS = ("search_memories", "add_memory", "get_memory", "update_memory", "delete_memory", "chat", "list_cubes",
         "share_cube", "list_invitations", "accept_share", "leave_cube", "delete_cube", "list_preferences",
         "delete_preference", "export_memories", "ingest_document", "job_status")


def _wrap(method: Any) -> Any:
    """A tool function with the method's signature whose hippograph errors become MCP tool errors (with reason)."""
    import functools

    @functools.wraps(method)
    def tool(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except HippographError as exc:
            raise ToolError(f"{type(exc).__name__} ({exc.status_code}): {exc}") from None

    return tool


def create_mcp_server(services: Services | None = None, *, transport: Transport = "stdio",
                      settings: Settings | None = None) -> MCPServer:
    """The MCP server. Its `Memory` (on `services`, or on stores opened from `settings`) is built on first use."""

    def open_memory() -> Memory:
        from hippograph.memory import Memory
        from hippograph.stores.services import Services

        opened = services or Services.from_settings(settings or get_settings())
        if transport == "http":
            opened.registry.auto_create_users = False
        return Memory(services=opened)

    hippo = HippoMCP(open_memory, transport)
    server: MCPServer = MCPServer(
        "hippograph",
        instructions="Long-term memory: search, add, get, update and delete memories; chat with memory; "
        "list and share cubes; ingest documents; check enrichment jobs.",
    )
    for name in TOOLS:
        method = getattr(hippo, name)
        server.add_tool(_wrap(method), name=name, description=(method.__doc__ or "").strip() or _DOCS[name])
    server.hippo = hippo  # type: ignore[attr-defined]
    return server


_DOCS = {
    "search_memories": "Search your memories (and cubes shared with you). Returns memories, best first.",
    "add_memory": "Remember a piece of text in your default cube or a cube you may write.",
    "get_memory": "Get one memory by id.",
    "update_memory": "Change a memory's text, tags or metadata (same id; the old text is kept as a version).",
    "delete_memory": "Delete a memory (soft by default; hard=true removes it).",
    "chat": "One chat turn with memory: recall, answer with citations, remember the turn.",
    "list_cubes": "The cubes you may read, with your access (read or write).",
    "share_cube": "Invite another user to a cube you own (read or read-write); they must accept.",
    "list_invitations": "Cubes other users invited you to, waiting for you to accept.",
    "accept_share": "Accept an invitation: the cube then feeds your recall (its memories marked as shared).",
    "leave_cube": "Decline an invitation or leave a cube shared with you.",
    "delete_cube": "Erase a cube you own from every store (its id is never reused).",
    "list_preferences": "Your preferences (explicit and implicit).",
    "delete_preference": "Erase one of your preferences.",
    "ingest_document": "Ingest a text document (Markdown welcome): converted, chunked and stored as memories.",
    "job_status": "Status of a background enrichment job.",
}


def run(transport: Transport = "stdio", *, host: str = "127.0.0.1", port: int = 8765) -> None:
    if transport == "stdio":
        logging.basicConfig(level=logging.WARNING)  # stderr: stdout belongs to the stdio transport
        server = create_mcp_server(transport="stdio")
        server.hippo.warm_up()  # type: ignore[attr-defined]
        server.run("stdio")
        return
    import uvicorn

    server = create_mcp_server(transport="http")
    server.hippo.warm_up()  # type: ignore[attr-defined]
    app = server.streamable_http_app(host=host)
    uvicorn.run(app, host=host, port=port, log_level="warning")
