"""LangServe routes for the chat and search graphs: the caller from the API key, checked before any stream."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from langchain_core.runnables.utils import ConfigurableFieldSpec
from pydantic import BaseModel, ConfigDict

from hippograph.api.auth import authenticate
from hippograph.api.schemas import ChatRequest, SearchRequest, SearchResult
from hippograph.graphs.chat import TURN_DURABILITY
from hippograph.memory import ChatResult, thread_key
from hippograph.nodes.state import ChatContext
from hippograph.stores import limits
from hippograph.stores.errors import AccessDeniedError, InvalidInputError
from hippograph.stores.models import check_id

#: The configurable key that carries the authenticated caller into the LangServe runnables.
USER_KEY = "hippograph_user_id"

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
            state = self.graph.invoke({"messages": messages}, config, context=context, durability=TURN_DURABILITY)
            return ChatResult.from_state(state, thread_id=str(conf.get("thread_id") or "")).model_dump(mode="json")
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
