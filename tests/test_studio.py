"""`langgraph dev` (LangGraph Studio's server) serves the graphs of langgraph.json, offline, on a loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_http import free_port, stop, wait_http

LANGGRAPH = Path(sys.executable).parent / "langgraph"


async def _flow(url: str) -> None:
    from langgraph_sdk import get_client

    client = get_client(url=url)
    assistants = await client.assistants.search(limit=20)
    assert {a["graph_id"] for a in assistants} >= {"chat", "search", "ingest", "enrich"}

    # put a memory in through the ingest graph, then chat on a thread: the answer cites it
    ingest = await client.runs.wait(None, "ingest", input={"texts": [
        {"text": "Ana moved to Lisbon in May 2024 and works at the aquarium.", "name": "ana-notes"}]},
        context={"user_id": "ana"})
    assert ingest["summary"]["errors"] == 0, ingest

    thread = await client.threads.create()
    out = await client.runs.wait(thread["thread_id"], "chat",
                                 input={"messages": [{"role": "user", "content": "Where does Ana live?"}]},
                                 context={"user_id": "ana"})
    assert "Lisbon" in out["answer"], out
    assert out["memories"] and any("Lisbon" in m["item"]["text"] for m in out["memories"])
    assert out["written_ids"]

    assert not {"query_vector", "read_cube_ids", "write_cube_id", "user_id"} & set(out)  # internal channels
    # a second turn resumes the thread from the server's checkpoint (typed state restored without warnings)
    again = await client.runs.wait(thread["thread_id"], "chat",
                                   input={"messages": [{"role": "user", "content": "And where does she work?"}]},
                                   context={"user_id": "ana"})
    assert "aquarium" in again["answer"], again

    state = await client.threads.get_state(thread["thread_id"])
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai", "human", "ai"]

    # another user's run on the same server does not see Ana's memories
    other = await client.runs.wait(None, "search", input={"query": "Where does Ana live? Lisbon"},
                                   context={"user_id": "bo"})
    assert not any("Lisbon" in m["item"]["text"] for m in other.get("memories", []))


@pytest.mark.slow
def test_langgraph_dev_chat_flow(tmp_path: Path) -> None:
    if not LANGGRAPH.exists():
        pytest.skip("langgraph-cli[inmem] is not installed")
    port = free_port()
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(tmp_path / "data"), "HIPPOGRAPH_EMBEDDER": "hashing:64",
           "HIPPOGRAPH_WORKER_IN_PROCESS": "false", "HIPPOGRAPH_CHAT_MODEL": "", "LANGSMITH_TRACING": "false",
           "LANGCHAIN_TRACING_V2": "false", "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    log = tmp_path / "langgraph-dev.log"
    # The repository's langgraph.json with its dependency path made absolute, run from a temp dir, so the dev
    # server's `.langgraph_api` state stays out of the repository. Graphs are named by module (not file path):
    # the server then imports hippograph.studio once, and the four graphs share one set of stores.
    config = json.loads((REPO / "langgraph.json").read_text())
    assert config["graphs"] == {name: f"hippograph.studio:{name}" for name in ("chat", "search", "ingest", "enrich")}
    assert config["dependencies"] == ["."]
    # strict checkpoint deserialisation: LangGraph registers the types of each graph's state schema with the
    # server's checkpointer, so typed chat state resumes without "unregistered type" warnings
    assert config["env"] == {"LANGGRAPH_STRICT_MSGPACK": "true"}
    config["dependencies"] = [str(REPO)]
    (tmp_path / "langgraph.json").write_text(json.dumps(config))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(LANGGRAPH), "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
             "--port", str(port), "--config", str(tmp_path / "langgraph.json")],
            cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/ok", proc, timeout=180)
        asyncio.run(asyncio.wait_for(_flow(f"http://127.0.0.1:{port}"), timeout=300))
    finally:
        stop(proc)
        print(log.read_text()[-4000:])
    # a clean log: no tracebacks, no second Milvus Lite opened by a second copy of the module, no warnings
    # about checkpoints, durability on stateless runs, or faiss probing
    text = log.read_text()
    for noise in ("Traceback", "DataDirLockedError", "Deserializing unregistered type", "durability",
                  "swigfaiss", "Method not implemented", "too_many_pings"):
        assert noise not in text, noise
