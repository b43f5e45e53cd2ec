"""The MCP server through real MCP client sessions: stdio (a subprocess) and streamable HTTP (a uvicorn process)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from hippograph.memory import Memory
from hippograph.settings import Settings
from hippograph.stores.services import Services
from tests.conftest import REPO
from tests.test_http import free_port, stop, wait_http

TOOLS = {"search_memories", "add_memory", "get_memory", "update_memory", "delete_memory", "chat", "list_cubes",
         "share_cube", "list_invitations", "accept_share", "leave_cube", "delete_cube", "list_preferences",
         "delete_preference", "export_memories", "ingest_document", "job_status"}


def env_for(data_dir: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data_dir), "HIPPOGRAPH_EMBEDDER": "hashing:64",
            "HIPPOGRAPH_WORKER_IN_PROCESS": "false", "HIPPOGRAPH_CHAT_MODEL": "", **extra}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Users alice and bob with keys and one memory each, written before any server starts."""
    data = tmp_path_factory.mktemp("mcp") / "data"
    # The fixture's own Milvus Lite file: Milvus Lite keeps its lock for the life of the process that opened it.
    settings = Settings(data_dir=data, embedder="hashing:64", worker_in_process=False,
                        milvus_uri=str(data.parent / "fixture-preferences.db"))
    with Memory(services=Services.from_settings(settings)) as memory:
        registry = memory.services.registry
        keys = {}
        for user in ("alice", "bob"):
            registry.create_user(user)
            keys[user] = registry.create_api_key(user)
        revoked = registry.create_api_key("alice")
        registry.revoke_api_key(revoked)
        bob_secret = memory.add("bob's locker combination is 9182", user_id="bob")[0]
        registry.create_cube("bob", "bob.shared")
        bob_shared = memory.add("bob shares: standup moved to 10am", user_id="bob", cube_id="bob.shared")[0]
    yield {"data": data, "keys": keys, "revoked": revoked, "bob_secret": bob_secret, "bob_shared": bob_shared}


async def _text(result: Any) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def stdio_params(world: dict[str, Any], key: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "hippograph", "mcp"], cwd=str(REPO),
                                 env=env_for(world["data"], HIPPOGRAPH_API_KEY=key))


async def _stdio_session(world: dict[str, Any]) -> None:
    async with Client(stdio_params(world, world["keys"]["alice"]), read_timeout_seconds=120) as alice:
        assert {t.name for t in (await alice.list_tools()).tools} == TOOLS

        added = await alice.call_tool("add_memory", {"text": "alice's favourite tea is genmaicha"})
        assert not added.is_error, await _text(added)
        mine = added.structured_content["ids"][0]
        found = await alice.call_tool("search_memories", {"query": "favourite tea genmaicha", "top_k": 5})
        ids = [m["id"] for m in found.structured_content["memories"]]
        assert mine in ids and world["bob_secret"] not in ids
        assert (await alice.call_tool("get_memory", {"memory_id": mine})).structured_content["text"].endswith(
            "genmaicha")

        # access rules: bob's memories are invisible through every tool, and crafted filters are refused
        for tool, args in (("get_memory", {"memory_id": world["bob_secret"]}),
                           ("update_memory", {"memory_id": world["bob_secret"], "text": "pwned"}),
                           ("delete_memory", {"memory_id": world["bob_secret"], "hard": True})):
            result = await alice.call_tool(tool, args)
            assert result.is_error and "NotFoundError (404)" in await _text(result), tool
        result = await alice.call_tool("search_memories", {"query": "locker combination", "cube_ids": ["bob.default"]})
        assert result.is_error and "AccessDeniedError (403)" in await _text(result)
        result = await alice.call_tool("search_memories", {"query": "locker combination 9182"})
        assert world["bob_secret"] not in [m["id"] for m in result.structured_content["memories"]]
        result = await alice.call_tool("share_cube", {"cube_id": "bob.default", "user_id": "alice"})
        assert result.is_error and "NotFoundError" in await _text(result)
        result = await alice.call_tool("add_memory", {"text": "x", "cube_id": "bob.default"})
        assert result.is_error and "AccessDeniedError" in await _text(result)

        chat = await alice.call_tool("chat", {"message": "What is my favourite tea?", "thread_id": "t"})
        assert not chat.is_error, await _text(chat)
        assert "genmaicha" in chat.structured_content["answer"]
        assert chat.structured_content["thread_id"] == "alice/t"
        assert "9182" not in chat.structured_content["answer"]

        cubes = (await alice.call_tool("list_cubes", {})).structured_content["cubes"]
        assert [c["id"] for c in cubes] == ["alice.default"]
        shared = await alice.call_tool("share_cube", {"cube_id": "alice.default", "user_id": "bob", "access": "read"})
        assert not shared.is_error, await _text(shared)


def test_stdio_session_tools_and_access_rules(world: dict[str, Any]) -> None:
    asyncio.run(asyncio.wait_for(_stdio_session(world), timeout=300))


async def _revoked(world: dict[str, Any]) -> None:
    async with Client(stdio_params(world, world["revoked"]), read_timeout_seconds=120) as client:
        result = await client.call_tool("search_memories", {"query": "tea"})
        assert result.is_error and "invalid or revoked" in await _text(result)


def test_stdio_revoked_key_is_refused(world: dict[str, Any]) -> None:
    asyncio.run(asyncio.wait_for(_revoked(world), timeout=300))


async def _unopenable(data: Path) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "hippograph", "mcp"], cwd=str(REPO),
                                   env=env_for(data))
    async with Client(params, read_timeout_seconds=120) as client:  # `initialize` answered without any store
        assert {t.name for t in (await client.list_tools()).tools} == TOOLS
        result = await client.call_tool("list_cubes", {})
        assert result.is_error and str(data) in await _text(result)  # the first tool call says what is wrong


def test_stdio_answers_initialize_before_memory_opens(tmp_path: Path) -> None:
    # The data dir is a file: no store can open. The server still answers `initialize` and `tools/list`
    # (Memory is built by the first tool call, which then reports the reason), instead of dying at start.
    data = tmp_path / "not-a-dir"
    data.write_text("x")
    asyncio.run(asyncio.wait_for(_unopenable(data), timeout=300))


async def _http_session(url: str, world: dict[str, Any]) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    def client_for(key: str | None) -> Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        http = httpx2.AsyncClient(headers=headers, timeout=120)
        return Client(streamable_http_client(url, http_client=http), read_timeout_seconds=120)

    async with client_for(world["keys"]["bob"]) as bob:
        assert {t.name for t in (await bob.list_tools()).tools} == TOOLS
        found = await bob.call_tool("search_memories", {"query": "locker combination 9182"})
        assert not found.is_error, await _text(found)
        assert world["bob_secret"] in [m["id"] for m in found.structured_content["memories"]]
        shared = await bob.call_tool("share_cube", {"cube_id": "bob.shared", "user_id": "alice", "access": "read"})
        assert not shared.is_error, await _text(shared)
    async with client_for(world["keys"]["alice"]) as alice:
        found = await alice.call_tool("search_memories", {"query": "standup locker combination", "top_k": 20})
        assert world["bob_shared"] not in [m["id"] for m in found.structured_content["memories"]]  # not accepted
        invited = (await alice.call_tool("list_invitations", {})).structured_content["invitations"]
        assert [(i["cube_id"], i["owner_id"]) for i in invited] == [("bob.shared", "bob")]
        accepted = await alice.call_tool("accept_share", {"cube_id": "bob.shared"})
        assert not accepted.is_error, await _text(accepted)
        found = await alice.call_tool("search_memories", {"query": "standup locker combination", "top_k": 20})
        ids = [m["id"] for m in found.structured_content["memories"]]
        assert world["bob_shared"] in ids and world["bob_secret"] not in ids
        result = await alice.call_tool("update_memory", {"memory_id": world["bob_shared"], "text": "cancelled"})
        assert result.is_error and "AccessDeniedError" in await _text(result)
    async with client_for(None) as anonymous:
        result = await anonymous.call_tool("list_cubes", {})
        assert result.is_error and "unauthorized" in await _text(result)
    async with client_for(world["revoked"]) as revoked:
        result = await revoked.call_tool("list_cubes", {})
        assert result.is_error and "invalid or revoked" in await _text(result)


def test_streamable_http_session(world: dict[str, Any], tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "mcp.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "hippograph", "mcp", "--transport", "http", "--port",
                                 str(port)], cwd=REPO, env=env_for(world["data"]), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/mcp", proc)
        asyncio.run(asyncio.wait_for(_http_session(f"http://127.0.0.1:{port}/mcp", world), timeout=300))
    finally:
        stop(proc)
        print((tmp_path / "mcp.log").read_text()[-3000:])
