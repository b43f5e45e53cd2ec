"""The HTTP server (`hippograph serve`): LangServe routes for the chat and search graphs, plus REST.

    app = create_app()                      # services from settings
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every request is authenticated by an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) that maps to
one user; every read and write is scoped to the cubes that user may read or write. The caller's identity never
comes from the request body: the LangServe routes get it through `per_req_config_modifier`, which also namespaces
checkpoint thread ids per user (`thread_key`), so nobody can resume another user's thread.

Routes (all JSON; errors are `{"error": ..., "reason": ..., "status": ...}` with the right 4xx):

    /chat/invoke|batch|stream|stream_events|playground      LangServe, chat graph (checkpointed per user thread)
    /search/invoke|batch|stream|stream_events|playground    LangServe, search graph
    GET  /v1/me                                              the caller and the cubes they may use
    POST/GET /v1/users, DELETE /v1/users/{id}, POST /v1/users/{id}/keys   admin key (or an admin user)
    POST /v1/keys/revoke                                     revoke a key (your own, or any as admin)
    GET/POST /v1/cubes, DELETE /v1/cubes/{id}                cubes
    POST /v1/cubes/{id}/shares, DELETE /v1/cubes/{id}/shares/{user}   sharing, `read` or `write`
    POST/GET /v1/memories, GET/PATCH/DELETE /v1/memories/{id}, GET /v1/memories/{id}/history
    POST /v1/search, POST /v1/chat                           plain-JSON equivalents of the LangServe routes
    POST /v1/documents                                       ingest texts / conversations (ingest graph)
    GET  /v1/documents, DELETE /v1/documents?doc_key=...     list documents of a cube, archive one
    GET  /v1/jobs, GET /v1/jobs/{id}                         enrichment jobs of the caller's cubes
    POST /v1/jobs/{id}/retry                                 requeue a failed job
    GET  /v1/memories/{id}/edges                             edges of a memory (readable ends only)
    /ui                                                      the web inspector (hippograph.ui)
"""

from __future__ import annotations

import hmac
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, FastAPI, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from langchain_core.messages import AnyMessage, BaseMessage
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hippograph.memory import ChatResult, Memory, thread_key, turn_messages
from hippograph.settings import Settings, get_settings
from nodes.state import ChatContext
from stores import limits
from stores.erasure import ErasureReport
from stores.errors import AccessDeniedError, HippographError, InvalidInputError, NotFoundError
from stores.limits import MAX_TEXT_CHARS, TOP_K_MAX, TOP_K_MIN
from stores.models import MemoryItem, MemoryStatus, SearchHit, check_id, check_text
from stores.outbox import Job, JobStatus
from stores.preferences.base import Preference
from stores.registry import Access, Cube, CubeAccess, Share, User
from stores.services import Services

log = logging.getLogger(__name__)

#: The configurable key that carries the authenticated caller into the LangServe runnables.
USER_KEY = "hippograph_user_id"
MAX_PAGE = 500


# -- schemas -------------------------------------------------------------------------------------------------


class Reason(BaseModel):
    error: str
    reason: str
    status: int


#: The message types a chat turn may carry (tool messages belong to an agent's loop, not to a memory turn).
TURN_MESSAGE_TYPES = frozenset({"human", "ai", "system"})
_MESSAGE: TypeAdapter[AnyMessage] = TypeAdapter(AnyMessage)


class ChatRequest(BaseModel):
    """LangServe chat input: the new message(s) of this turn."""

    messages: list[AnyMessage] = Field(min_length=1, max_length=limits.MAX_MESSAGES)

    @field_validator("messages", mode="before")
    @classmethod
    def _shape_ok(cls, messages: Any) -> Any:
        # LangChain's message validators raise TypeError/KeyError (not validation errors) on some malformed
        # messages, which would be 500s: check each one here and turn any failure into a reason.
        if not isinstance(messages, list):
            raise InvalidInputError("`messages` must be a list of message objects")
        for message in messages:
            if isinstance(message, BaseMessage):
                continue
            kind = message.get("type") if isinstance(message, dict) else None
            if not isinstance(kind, str) or kind not in TURN_MESSAGE_TYPES:
                raise InvalidInputError(f"each message is an object with `type` one of {sorted(TURN_MESSAGE_TYPES)}")
            try:
                _MESSAGE.validate_python(message)
            except (ValidationError, TypeError, KeyError, ValueError) as exc:
                raise InvalidInputError(f"invalid {message['type']} message: {str(exc)[:200]}") from None
        return messages

    @field_validator("messages")
    @classmethod
    def _turn_ok(cls, messages: list[AnyMessage]) -> list[AnyMessage]:
        turn_messages(messages)  # checked here, so a bad turn is a 422 before any stream starts
        return messages


class SearchRequest(BaseModel):
    """LangServe search input: the query text."""

    query: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)

    @field_validator("query")
    @classmethod
    def _query_ok(cls, query: str) -> str:
        return check_text(query, "query")


class SearchResult(BaseModel):
    query: str = ""
    memories: list[SearchHit] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    name: str = ""
    is_admin: bool = False


class UserWithKey(BaseModel):
    user: User
    api_key: str


class KeyOut(BaseModel):
    api_key: str


class RevokeKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(min_length=1, max_length=512)


class Me(BaseModel):
    user: User
    cubes: list[CubeAccess]


class NewCube(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cube_id: str
    name: str = ""


class NewShare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str
    access: Access = Access.READ


class Message_(BaseModel):
    role: Literal["human", "user", "ai", "assistant", "system"] = "human"
    content: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    name: str | None = Field(default=None, max_length=200)
    """Who said it (the memory's speaker; default: the caller for user messages, else the role)."""
    id: str | None = Field(default=None, max_length=200)
    """The message id: re-sending the same message writes the same memory."""
    timestamp: str | float | None = None
    """When it was said (ISO 8601, epoch seconds or a date as people write it); default: now."""


class NewMemory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    messages: list[Message_] | None = Field(default=None, max_length=limits.MAX_MESSAGES)
    cube_id: str | None = None
    session_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _metadata_ok(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        return limits.check_metadata(metadata)


class MemoryIds(BaseModel):
    ids: list[str]


class MemoryPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    tags: list[str] | None = Field(default=None, max_length=limits.MAX_TAGS)
    metadata: dict[str, Any] | None = None

    @field_validator("metadata")
    @classmethod
    def _metadata_ok(cls, metadata: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if metadata is None else limits.check_metadata(metadata)


class MemoryPage(BaseModel):
    items: list[MemoryItem]
    limit: int
    offset: int
    next_offset: int | None


class SearchQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    cube_ids: list[str] | None = Field(default=None, max_length=limits.MAX_CUBE_IDS)
    top_k: int = Field(default=10, ge=TOP_K_MIN, le=TOP_K_MAX)
    threshold: float = Field(default=0.0, ge=limits.THRESHOLD_MIN, le=limits.THRESHOLD_MAX)


class ChatTurn(BaseModel):
    """One chat turn: `message` (a text) or `messages` (the LangServe `/chat/invoke` shape), exactly one."""

    model_config = ConfigDict(extra="forbid")
    message: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_CHARS)
    messages: list[Message_] | None = Field(default=None, min_length=1, max_length=limits.MAX_MESSAGES)
    thread_id: str | None = Field(default=None, max_length=limits.MAX_THREAD_ID_CHARS)
    cube_ids: list[str] | None = Field(default=None, max_length=limits.MAX_CUBE_IDS)
    top_k: int | None = Field(default=None, ge=TOP_K_MIN, le=TOP_K_MAX)

    @field_validator("thread_id")
    @classmethod
    def _thread_ok(cls, thread_id: str | None) -> str | None:
        return limits.check_thread_id(thread_id)

    @model_validator(mode="after")
    def _one_of(self) -> ChatTurn:
        if (self.message is None) == (self.messages is None):
            raise InvalidInputError("give exactly one of `message` (a text) or `messages` (a list)")
        return self

    def turn(self) -> str | list[dict[str, str]]:
        """What `Memory.chat` takes: the text, or the messages as role/content dicts."""
        if self.message is not None:
            return self.message
        return [{"role": m.role, "content": m.content} for m in self.messages or []]


class TextDoc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    name: str | None = Field(default=None, max_length=256)
    title: str | None = Field(default=None, max_length=512)


class DocumentsIn(BaseModel):
    """Documents to ingest. Server-side file paths are never accepted over HTTP: send the text."""

    model_config = ConfigDict(extra="forbid")
    texts: list[TextDoc] = Field(default_factory=list, max_length=100)
    conversations: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    cube_id: str | None = None
    mode: Literal["fast", "fine"] = "fast"


class IngestOut(BaseModel):
    results: list[dict[str, Any]] = Field(default_factory=list)
    summary: dict[str, Any] = Field(default_factory=dict)


class DocumentOut(BaseModel):
    doc_key: str
    doc_id: str
    title: str
    kind: str
    path: str | None = None
    chunks: int
    updated_at: float


class JobOut(BaseModel):
    id: str
    kind: str
    status: JobStatus
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    cube_id: str | None = None
    memory_ids: list[str] = Field(default_factory=list)


# -- auth ----------------------------------------------------------------------------------------------------


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _memory(request: Request) -> Memory:
    return request.app.state.memory  # type: ignore[no-any-return]


def authenticate(request: Request) -> User:
    """The user behind the request's API key (401 when missing, invalid or revoked)."""
    key = presented_key(request)
    if key is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    if len(key) > 512:
        raise _unauthorized("invalid or revoked API key")
    try:
        return _services(request).registry.user_for_key(key)
    except (AccessDeniedError, NotFoundError):
        raise _unauthorized("invalid or revoked API key") from None


def require_admin(request: Request) -> str:
    """The admin key from settings, or the key of a user flagged `is_admin`. Returns the principal's name."""
    key = presented_key(request)
    if key is None:
        raise _unauthorized("missing API key")
    admin_key = _services(request).settings.admin_key
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return "admin"
    user = authenticate(request)
    if not user.is_admin:
        raise HTTPException(403, "this route needs the admin key")
    return user.id


Caller = Annotated[User, Depends(authenticate)]
Admin = Annotated[str, Depends(require_admin)]


# -- LangServe runnables -------------------------------------------------------------------------------------


class ScopedGraph(RunnableSerializable[dict[str, Any], dict[str, Any]]):
    """A compiled chat/search graph whose run context (who, which cubes) comes from the authenticated config.

    LangServe calls `invoke(input, config)`; LangGraph wants `context=ChatContext(...)`. This bridges the two,
    reading the caller only from `configurable[USER_KEY]`, which `per_req_config_modifier` sets from the key.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Any
    kind: Literal["chat", "search"]
    settings: Any

    def get_input_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return ChatRequest if self.kind == "chat" else SearchRequest

    def get_output_schema(self, config: RunnableConfig | None = None) -> type[BaseModel]:
        return ChatResult if self.kind == "chat" else SearchResult

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        specs = [
            ConfigurableFieldSpec(id="cube_ids", annotation=list[str] | None, default=None,
                                  description="Cubes to read (default: every cube you may read)."),
            ConfigurableFieldSpec(id="top_k", annotation=int | None, default=None, description="Memories to keep."),
        ]
        if self.kind == "chat":
            specs.insert(0, ConfigurableFieldSpec(id="thread_id", annotation=str | None, default=None,
                                                  description="Your conversation thread (namespaced per user)."))
        return specs

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> dict[str, Any]:
        return self._call_with_config(self._run, input, config, **kwargs)  # type: ignore[arg-type]

    def _run(self, input: Any, config: RunnableConfig) -> dict[str, Any]:
        conf = config.get("configurable") or {}
        user_id = conf.get(USER_KEY)
        if not user_id:
            raise AccessDeniedError("no authenticated caller for this run")
        # The config modifier has checked these already (before any response started); checked again here
        # because a runnable can also be called without it (tests, embedding the app differently).
        top_k = limits.check_top_k(conf["top_k"]) if conf.get("top_k") is not None else self.settings.top_k
        cube_ids = _cube_id_list(conf.get("cube_ids"))
        context = ChatContext(user_id=check_id(user_id, "user id"), cube_ids=cube_ids, top_k=top_k,
                              threshold=self.settings.threshold, min_keep=self.settings.min_keep,
                              mode=self.settings.mode, ingest=self.kind == "chat")
        data = input.model_dump() if isinstance(input, BaseModel) else dict(input or {})
        if self.kind == "chat":
            messages = data.get("messages") or []
            if not messages:
                raise InvalidInputError("a chat turn needs at least one message")
            state = self.graph.invoke({"messages": messages}, config, context=context)
            return ChatResult(answer=state.get("answer", ""), references=state.get("references", []),
                              memories=state.get("memories", []), written_ids=state.get("written_ids", []),
                              timings=state.get("timings", {}),
                              thread_id=str(conf.get("thread_id") or "")).model_dump(mode="json")
        query = data.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidInputError("a search needs a non-empty `query`")
        state = self.graph.invoke({"query": query}, config, context=context)
        return SearchResult(query=query, memories=state.get("memories", []),
                            timings=state.get("timings", {})).model_dump(mode="json")


def _cube_id_list(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise InvalidInputError("cube_ids must be a list of cube id strings")
    if len(value) > limits.MAX_CUBE_IDS:
        raise InvalidInputError(f"at most {limits.MAX_CUBE_IDS} cube ids")
    return [check_id(c, "cube id") for c in value]


def make_config_modifier(registry: Any) -> Any:
    """`per_req_config_modifier`: the caller's identity from the API key, thread ids namespaced per user, and
    every configurable value checked (top_k, thread id, read access to `cube_ids`).

    LangServe runs this before it starts a response, so a bad value or a cube the caller may not read is a
    403/422 with a reason, never a 200 stream cut short.
    """

    def modify(config: dict[str, Any], request: Request) -> dict[str, Any]:
        user = authenticate(request)
        sent = config.get("configurable") or {}
        if not isinstance(sent, dict):
            raise InvalidInputError("config.configurable must be an object")
        thread = limits.check_thread_id(sent.get("thread_id"))
        configurable: dict[str, Any] = {USER_KEY: user.id, "thread_id": thread_key(user.id, thread)}
        if sent.get("top_k") is not None:
            configurable["top_k"] = limits.check_top_k(sent["top_k"])
        cube_ids = _cube_id_list(sent.get("cube_ids"))
        if cube_ids is not None:
            configurable["cube_ids"] = registry.readable(user.id, cube_ids)  # AccessDenied (403) otherwise
        return {**config, "configurable": configurable}

    return modify


async def check_json_body(request: Request) -> None:
    """An app-wide dependency: a JSON body nested deeper than `MAX_JSON_DEPTH`, or too deep to parse, is a 422
    before any route sees it (deep input makes JSON encoders and stores fail with 500s, and burns CPU).
    Bodies that are not JSON are left to the route, which answers with its own reason."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE") or "json" not in request.headers.get(
            "content-type", ""):
        return
    if not (await request.body()).strip():
        return
    try:
        body = await request.json()  # cached on the request: the route does not parse it again
    except RecursionError:
        raise InvalidInputError("request body is nested too deeply") from None
    except ValueError:
        return
    limits.check_json_depth(body, "request body")


#: The LangServe endpoints that take a JSON body (stream_log is disabled).
LANGSERVE_BODY_ENDPOINTS = frozenset({"invoke", "batch", "stream", "stream_events"})


async def check_langserve_body(request: Request) -> None:
    """Check the envelope of a LangServe request before LangServe reads it (a route dependency).

    LangServe answers 500 for some malformed envelopes (an empty or deeply nested body, `"config": null`,
    `"inputs": 5`); these are the client's mistakes, so each is a 422 with a reason here. The parsed body is
    cached on the request (`Request.json`), so LangServe does not parse it again.
    """
    endpoint = request.url.path.rstrip("/").rsplit("/", 1)[-1]
    if request.method != "POST" or endpoint not in LANGSERVE_BODY_ENDPOINTS:
        return
    if not (await request.body()).strip():
        raise InvalidInputError("empty request body: send a JSON object")
    try:
        body = await request.json()
    except RecursionError:
        raise InvalidInputError("request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise InvalidInputError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidInputError("request body must be a JSON object")
    config = body.get("config", {})
    if endpoint == "batch":
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidInputError("`inputs` must be a non-empty list")
        if len(inputs) > limits.MAX_BATCH_INPUTS:
            raise InvalidInputError(f"at most {limits.MAX_BATCH_INPUTS} inputs in one batch")
        if isinstance(config, list) and len(config) != len(inputs):
            raise InvalidInputError(f"{len(config)} configs for {len(inputs)} inputs: give one config or one each")
        configs = config if isinstance(config, list) else [config]
    else:
        if "input" not in body:
            raise InvalidInputError("`input` is required")
        configs = [config]
    for one in configs:
        if not isinstance(one, dict):
            raise InvalidInputError("`config` must be an object")
        if not isinstance(one.get("configurable", {}), dict | None):
            raise InvalidInputError("`config.configurable` must be an object")


# -- middleware and errors -----------------------------------------------------------------------------------


class BodyLimit:
    """Reject request bodies over `max_bytes` with 413 (by Content-Length, and while streaming chunked bodies)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_bytes
                except ValueError:
                    too_big = True
                if too_big:
                    await self._reject(send)
                    return
        if any(name == b"content-length" for name, _ in scope.get("headers", [])):
            await self.app(scope, receive, send)  # framing by Content-Length: checked above
            return
        # No Content-Length (chunked): buffer up to the limit, then replay it to the app.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._reject(send)
                return
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay([{"type": "http.request", "body": bytes(body), "more_body": False}],
                                      receive), send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            {"error": "PayloadTooLarge", "reason": f"request body over {self.max_bytes} bytes", "status": 413},
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    queue = list(messages)

    async def receive() -> Message:
        if queue:
            return queue.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def _error(status: int, error: str, reason: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "reason": reason, "status": status}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HippographError)
    async def hippograph_error(_: Request, exc: HippographError) -> JSONResponse:
        return _error(exc.status_code, type(exc).__name__, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return _error(exc.status_code, "HTTPError", reason, getattr(exc, "headers", None))

    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(StarletteHTTPException)
    async def starlette_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "HTTPError", str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's errors are dicts; LangServe raises some as plain strings ("Invalid JSON body").
        errors = [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} if isinstance(e, dict)
                  else {"loc": [], "msg": str(e)} for e in exc.errors()]
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors) or "invalid request"
        response = _error(422, "ValidationError", reason)
        response.body = response.render({"error": "ValidationError", "reason": reason, "status": 422,
                                         "errors": errors})
        response.headers["content-length"] = str(len(response.body))
        return response

    @app.exception_handler(ValidationError)
    async def pydantic_error(_: Request, exc: ValidationError) -> JSONResponse:
        return _error(422, "ValidationError", str(exc).splitlines()[0] if str(exc) else "invalid input")

    @app.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return _error(422, "InvalidInput", str(exc) or "invalid input")

    @app.exception_handler(RecursionError)
    async def recursion_error(_: Request, exc: RecursionError) -> JSONResponse:
        return _error(422, "InvalidInput", "input is nested too deeply")

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: logged with its traceback, answered as JSON without internals.
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "InternalError", "internal server error (logged on the server)")


# -- REST ----------------------------------------------------------------------------------------------------


def _job_out(job: Job) -> JobOut:
    payload = job.payload or {}
    return JobOut(id=job.id, kind=job.kind, status=job.status, attempts=job.attempts, last_error=job.last_error,
                  created_at=job.created_at, updated_at=job.updated_at, cube_id=payload.get("cube_id"),
                  memory_ids=list(payload.get("memory_ids") or []))


def _visible_job(job: Job, user_id: str, readable: list[str]) -> bool:
    payload = job.payload or {}
    return payload.get("user_id") == user_id or payload.get("cube_id") in readable


def build_rest(memory: Memory) -> APIRouter:
    services = memory.services
    registry = services.registry
    api = APIRouter(prefix="/v1")

    # users and keys (admin)

    @api.post("/users", status_code=201, response_model=UserWithKey, tags=["users"])
    def create_user(body: NewUser, _: Admin) -> UserWithKey:
        user = memory.create_user(body.user_id, name=body.name, is_admin=body.is_admin)
        return UserWithKey(user=user, api_key=memory.create_api_key(user.id))

    @api.get("/users", response_model=list[User], tags=["users"])
    def list_users(_: Admin) -> list[User]:
        return memory.users()

    @api.delete("/users/{user_id}", response_model=ErasureReport, tags=["users"])
    def delete_user(user_id: str, _: Admin) -> ErasureReport:
        """Erase the user and everything they own from every store; the id is never reused."""
        return memory.erase_user(user_id)

    @api.post("/users/{user_id}/keys", status_code=201, response_model=KeyOut, tags=["users"])
    def new_key(user_id: str, _: Admin) -> KeyOut:
        return KeyOut(api_key=registry.create_api_key(check_id(user_id, "user id")))

    @api.post("/keys/revoke", status_code=204, tags=["users"])
    def revoke_key(body: RevokeKey, request: Request) -> None:
        presented = presented_key(request)
        admin_key = services.settings.admin_key
        is_admin = bool(presented and admin_key and hmac.compare_digest(presented.encode(), admin_key.encode()))
        if not is_admin:
            caller = authenticate(request)
            if not caller.is_admin:
                try:
                    owner = registry.user_for_key(body.api_key)
                except (AccessDeniedError, NotFoundError):
                    raise NotFoundError("no such active key") from None
                if owner.id != caller.id:
                    raise NotFoundError("no such active key")
        registry.revoke_api_key(body.api_key)

    @api.get("/me", response_model=Me, tags=["users"])
    def me(caller: Caller) -> Me:
        return Me(user=caller, cubes=memory.cubes(user_id=caller.id))

    @api.delete("/me", response_model=ErasureReport, tags=["users"])
    def erase_me(caller: Caller) -> ErasureReport:
        """Erase yourself: every cube you own, your preferences, threads and jobs, then your user and keys."""
        return memory.erase_user(caller.id)

    @api.get("/me/export", tags=["users"], response_class=FileResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
    def export_me(caller: Caller, background: BackgroundTasks) -> FileResponse:
        """Everything you own as JSON Lines (cubes, memories with history, edges, preferences, documents)."""
        handle, name = tempfile.mkstemp(prefix="hippograph-export-", suffix=".jsonl")
        os.close(handle)
        memory.export(name, user_id=caller.id)
        background.add_task(os.unlink, name)
        return FileResponse(name, media_type="application/x-ndjson", filename=f"{caller.id}.jsonl")

    @api.post("/me/import", tags=["users"])
    async def import_me(request: Request, caller: Caller) -> dict[str, int]:
        """Restore an export (the JSON Lines body) into your account."""
        body = await request.body()
        handle, name = tempfile.mkstemp(prefix="hippograph-import-", suffix=".jsonl")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            return await run_in_threadpool(memory.import_, name, user_id=caller.id)
        finally:
            os.unlink(name)

    @api.delete("/threads/{thread_id}", status_code=204, tags=["users"])
    def delete_thread(thread_id: str, caller: Caller) -> None:
        """Forget one of your chat threads (its checkpoints) for good."""
        memory.delete_thread(thread_id, user_id=caller.id)

    @api.get("/preferences", response_model=list[Preference], tags=["users"])
    def list_preferences(caller: Caller, include_inactive: bool = False) -> list[Preference]:
        return memory.preferences(user_id=caller.id, include_inactive=include_inactive)

    @api.delete("/preferences/{preference_id}", status_code=204, tags=["users"])
    def delete_preference(preference_id: str, caller: Caller) -> None:
        memory.delete_preference(preference_id, user_id=caller.id)

    # cubes and sharing (a share is an invitation the recipient accepts)

    @api.get("/cubes", response_model=list[CubeAccess], tags=["cubes"])
    def list_cubes(caller: Caller) -> list[CubeAccess]:
        return memory.cubes(user_id=caller.id)

    @api.post("/cubes", status_code=201, response_model=Cube, tags=["cubes"])
    def create_cube(body: NewCube, caller: Caller) -> Cube:
        return memory.create_cube(body.cube_id, user_id=caller.id, name=body.name)

    @api.delete("/cubes/{cube_id}", response_model=ErasureReport, tags=["cubes"])
    def delete_cube(cube_id: str, caller: Caller) -> ErasureReport:
        """Erase the cube's data from every store and forget the cube; its id is never reused."""
        return memory.delete_cube(cube_id, user_id=caller.id)

    @api.delete("/cubes/{cube_id}/memories", response_model=ErasureReport, tags=["cubes"])
    def clear_cube(cube_id: str, caller: Caller) -> ErasureReport:
        """Erase everything in the cube but keep the cube (works on your default cube too)."""
        return memory.clear_cube(cube_id, user_id=caller.id)

    @api.get("/cubes/{cube_id}/shares", response_model=list[Share], tags=["cubes"])
    def list_shares(cube_id: str, caller: Caller) -> list[Share]:
        return [s for s in memory.shares(user_id=caller.id) if s.cube_id == cube_id]

    @api.post("/cubes/{cube_id}/shares", status_code=202, tags=["cubes"])
    def share_cube(cube_id: str, body: NewShare, caller: Caller) -> dict[str, str]:
        """Invite a user. The answer is the same whether or not that user exists."""
        memory.share(cube_id, user_id=caller.id, with_user=body.user_id, access=body.access.value)
        return {"status": "invited", "cube_id": cube_id, "user_id": body.user_id}

    @api.delete("/cubes/{cube_id}/shares/{user_id}", status_code=204, tags=["cubes"])
    def unshare_cube(cube_id: str, user_id: str, caller: Caller) -> None:
        memory.unshare(cube_id, user_id=caller.id, with_user=user_id)

    @api.get("/invitations", response_model=list[Share], tags=["cubes"])
    def list_invitations(caller: Caller) -> list[Share]:
        return memory.invitations(user_id=caller.id)

    @api.post("/invitations/{cube_id}/accept", response_model=Share, tags=["cubes"])
    def accept_invitation(cube_id: str, caller: Caller) -> Share:
        return memory.accept_share(cube_id, user_id=caller.id)

    @api.delete("/invitations/{cube_id}", status_code=204, tags=["cubes"])
    def leave_cube(cube_id: str, caller: Caller) -> None:
        """Decline an invitation, or leave a cube shared with you."""
        memory.leave_cube(cube_id, user_id=caller.id)

    # memories

    @api.post("/memories", status_code=201, response_model=MemoryIds, tags=["memories"])
    def add_memory(body: NewMemory, caller: Caller) -> MemoryIds:
        if (body.text is None) == (body.messages is None):
            raise InvalidInputError("give exactly one of `text` or `messages`")
        content: Any = body.text if body.text is not None else [
            {**m.model_dump(exclude_none=True), "role": {"human": "user", "ai": "assistant"}.get(m.role, m.role)}
            for m in body.messages or []
        ]
        ids = memory.add(content, user_id=caller.id, cube_id=body.cube_id, session_id=body.session_id,
                         metadata=body.metadata)
        return MemoryIds(ids=ids)

    @api.get("/memories", response_model=MemoryPage, tags=["memories"])
    def list_memories(
        caller: Caller,
        cube_id: Annotated[list[str] | None, Query()] = None,
        session_id: str | None = None,
        memory_type: str | None = None,
        include_inactive: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> MemoryPage:
        cubes = registry.readable(caller.id, [check_id(c, "cube id") for c in cube_id] if cube_id else None)
        if session_id is not None:
            check_id(session_id, "session id")
        if memory_type is not None and memory_type not in {t.value for t in _memory_types()}:
            raise InvalidInputError(f"unknown memory_type {memory_type!r}")
        statuses = tuple(MemoryStatus) if include_inactive else (MemoryStatus.ACTIVE,)
        items = services.tree.list(cube_ids=cubes, limit=limit + 1, offset=offset, statuses=statuses,
                                   session_id=session_id, memory_type=memory_type) if cubes else []
        more = len(items) > limit
        return MemoryPage(items=items[:limit], limit=limit, offset=offset,
                          next_offset=offset + limit if more else None)

    @api.get("/memories/{memory_id}", response_model=MemoryItem, tags=["memories"])
    def get_memory(memory_id: str, caller: Caller) -> MemoryItem:
        return memory.get(_mid(memory_id), user_id=caller.id)

    @api.patch("/memories/{memory_id}", response_model=MemoryItem, tags=["memories"])
    def update_memory(memory_id: str, body: MemoryPatch, caller: Caller) -> MemoryItem:
        if body.text is None and body.tags is None and body.metadata is None:
            raise InvalidInputError("nothing to update: give text, tags or metadata")
        return memory.update(_mid(memory_id), body.text, user_id=caller.id, tags=body.tags, metadata=body.metadata)

    @api.delete("/memories/{memory_id}", status_code=204, tags=["memories"])
    def delete_memory(memory_id: str, caller: Caller, hard: bool = False) -> None:
        memory.delete(_mid(memory_id), user_id=caller.id, hard=hard)

    @api.get("/memories/{memory_id}/history", response_model=list[MemoryItem], tags=["memories"])
    def memory_history(memory_id: str, caller: Caller) -> list[MemoryItem]:
        return memory.history(_mid(memory_id), user_id=caller.id)

    @api.get("/memories/{memory_id}/edges", tags=["memories"])
    def memory_edges(memory_id: str, caller: Caller) -> list[dict[str, Any]]:
        """Edges touching the memory whose other end the caller may read too (`src -rel-> dst`)."""
        return [e.model_dump(mode="json") for e in memory.edges(_mid(memory_id), user_id=caller.id)]

    @api.post("/search", response_model=list[SearchHit], tags=["memories"])
    def search(body: SearchQuery, caller: Caller) -> list[SearchHit]:
        return memory.search(body.query, user_id=caller.id, cube_ids=body.cube_ids, top_k=body.top_k,
                             threshold=body.threshold)

    @api.post("/chat", response_model=ChatResult, tags=["memories"])
    def chat(body: ChatTurn, caller: Caller) -> ChatResult:
        return memory.chat(body.turn(), user_id=caller.id, thread_id=body.thread_id, cube_ids=body.cube_ids,
                           top_k=body.top_k)

    # documents and jobs

    @api.post("/documents", response_model=IngestOut, tags=["documents"])
    def ingest_documents(body: DocumentsIn, caller: Caller) -> IngestOut:
        if not body.texts and not body.conversations:
            raise InvalidInputError("nothing to ingest: give texts or conversations")
        return IngestOut(**memory.ingest(user_id=caller.id, texts=[t.model_dump(exclude_none=True) for t in body.texts],
                                         conversations=body.conversations, cube_id=body.cube_id, mode=body.mode))

    @api.get("/documents", response_model=list[DocumentOut], tags=["documents"])
    def list_documents(caller: Caller, cube_id: str | None = None) -> list[DocumentOut]:
        return [DocumentOut(**d) for d in memory.documents(user_id=caller.id, cube_id=cube_id)]

    @api.delete("/documents", tags=["documents"])
    def delete_document(
        caller: Caller, doc_key: Annotated[str, Query(min_length=1, max_length=4096)], cube_id: str | None = None
    ) -> dict[str, Any]:
        return {"doc_key": doc_key,
                "archived": memory.delete_document(doc_key, user_id=caller.id, cube_id=cube_id)}

    @api.get("/jobs", response_model=list[JobOut], tags=["jobs"])
    def list_jobs(
        caller: Caller, status: JobStatus | None = None, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
    ) -> list[JobOut]:
        readable = registry.readable(caller.id)
        jobs = services.outbox.list(status=status, limit=5_000)
        return [_job_out(j) for j in jobs if _visible_job(j, caller.id, readable)][:limit]

    @api.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: str, caller: Caller) -> JobOut:
        job = services.outbox.get(job_id) if len(job_id) <= 128 else None
        if job is None or not _visible_job(job, caller.id, registry.readable(caller.id)):
            raise NotFoundError(f"job {job_id} not found")
        return _job_out(job)

    @api.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"])
    def retry_job(job_id: str, caller: Caller) -> JobOut:
        """Requeue a failed job (fresh attempts); needs write access to its cube."""
        return _job_out(memory.retry_job(job_id, user_id=caller.id))

    return api


def _mid(memory_id: str) -> str:
    if not memory_id or len(memory_id) > 128:
        raise NotFoundError("memory not found")
    return memory_id


def _memory_types() -> Any:
    from stores.models import MemoryType

    return MemoryType


# -- the app -------------------------------------------------------------------------------------------------


def create_app(services: Services | None = None, *, settings: Settings | None = None) -> FastAPI:
    """The FastAPI app. Unknown users are never auto-created here: an unknown user is a 404."""
    from langserve import add_routes

    services = services or Services.from_settings(settings or get_settings())
    services.registry.auto_create_users = False
    memory = Memory(services=services)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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


def serve(host: str = "127.0.0.1", port: int = 8000, *, log_level: str = "info") -> None:
    import uvicorn

    uvicorn.run(create_app(), host=host, port=port, log_level=log_level)


def main() -> None:  # `python -m hippograph.server --host 127.0.0.1 --port 8000`
    import argparse

    parser = argparse.ArgumentParser(description="hippograph HTTP server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args()
    serve(args.host, args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
