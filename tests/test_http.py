"""The HTTP server over a real socket: a uvicorn process on 127.0.0.1, REST and LangServe, auth and sharing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hippograph.evals.common import free_port, stop_process, wait_http
from tests.conftest import REPO

ADMIN = "test-admin-key-0123456789"


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


def start_server(data_dir: Path, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full_env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data_dir), "HIPPOGRAPH_EMBEDDER": "hashing:64",
                "HIPPOGRAPH_ADMIN_KEY": ADMIN, "HIPPOGRAPH_WORKER_IN_PROCESS": "false",
                "HIPPOGRAPH_MAX_REQUEST_BYTES": "200000", "HIPPOGRAPH_CHAT_MODEL": "", **env}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "hippograph", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT,
        )


@dataclass
class Server:
    url: str
    proc: subprocess.Popen[bytes]
    keys: dict[str, str]

    def client(self, user: str | None = None, *, key: str | None = None) -> httpx.Client:
        headers = {}
        if key or user:
            headers["Authorization"] = f"Bearer {key or self.keys[user or '']}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def running_server(tmp: Path, users: tuple[str, ...]) -> Iterator[Server]:
    """`hippograph serve` on `tmp/data` with these users (and their API keys) created by the admin."""
    port = free_port()
    proc = start_server(tmp / "data", port, tmp / "server.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        keys: dict[str, str] = {}
        with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=30) as admin:
            for user in users:
                r = admin.post("/v1/users", json={"user_id": user})
                assert r.status_code == 201, r.text
                keys[user] = r.json()["api_key"]
        yield Server(url, proc, keys)
    finally:
        stop(proc)
        print((tmp / "server.log").read_text()[-3000:])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("http"), ("alice", "bob", "carol")) as running:
        yield running


def _ids(hits: list[dict]) -> set[str]:
    return {h["item"]["id"] for h in hits}


def test_auth_and_admin(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        r = anon.get("/v1/me")
        assert r.status_code == 401 and r.json()["reason"].startswith("missing API key")
        assert anon.get("/v1/me", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert anon.post("/search/invoke", json={"input": {"query": "x"}}).status_code == 401
        assert anon.get("/openapi.json").status_code == 200
    with server.client("alice") as alice:
        assert alice.get("/v1/me").json()["user"]["id"] == "alice"
        r = alice.post("/v1/users", json={"user_id": "mallory"})
        assert r.status_code == 403 and r.json()["error"] == "HTTPError"
        assert alice.get("/v1/users").status_code == 403
    with server.client(key=ADMIN) as admin:
        assert {u["id"] for u in admin.get("/v1/users").json()} >= {"alice", "bob", "carol"}
        r = admin.post("/v1/users", json={"user_id": "alice"})
        assert r.status_code == 422 and "already exists" in r.json()["reason"]
        assert admin.post("/v1/users", json={"user_id": "bad id!"}).status_code == 422
        assert admin.post("/v1/users/nobody/keys").status_code == 404


def test_memory_crud_paging_filters_history(server: Server) -> None:
    with server.client("alice") as alice:
        r = alice.post("/v1/memories", json={"text": "I moved to Lisbon in May", "session_id": "s1"})
        assert r.status_code == 201, r.text
        lisbon = r.json()["ids"][0]
        r = alice.post("/v1/memories", json={"messages": [{"role": "user", "content": f"fact number {n}"}
                                                         for n in range(5)], "session_id": "s2"})
        assert len(r.json()["ids"]) == 5
        got = alice.get(f"/v1/memories/{lisbon}").json()
        assert got["text"] == "I moved to Lisbon in May" and got["cube_id"] == "alice.default"

        page1 = alice.get("/v1/memories", params={"session_id": "s2", "limit": 2}).json()
        assert len(page1["items"]) == 2 and page1["next_offset"] == 2
        seen = {m["id"] for m in page1["items"]}
        offset = page1["next_offset"]
        for _ in range(10):  # bounded paging loop
            if offset is None:
                break
            page = alice.get("/v1/memories", params={"session_id": "s2", "limit": 2, "offset": offset}).json()
            seen |= {m["id"] for m in page["items"]}
            offset = page["next_offset"]
        assert len(seen) == 5 and lisbon not in seen
        assert alice.get("/v1/memories", params={"memory_type": "nonsense"}).status_code == 422
        assert alice.get("/v1/memories", params={"limit": 0}).status_code == 422

        r = alice.patch(f"/v1/memories/{lisbon}", json={"text": "I moved to Porto in June", "tags": ["home"]})
        assert r.status_code == 200 and r.json()["id"] == lisbon and r.json()["tags"] == ["home"]
        history = alice.get(f"/v1/memories/{lisbon}/history").json()
        assert [(v["id"] == lisbon, v["text"], v["status"]) for v in history] == [
            (True, "I moved to Porto in June", "active"), (False, "I moved to Lisbon in May", "superseded")]
        hits = alice.post("/v1/search", json={"query": "Porto June", "top_k": 3}).json()
        assert lisbon in _ids(hits)

        assert alice.patch(f"/v1/memories/{lisbon}", json={}).status_code == 422
        assert alice.delete(f"/v1/memories/{lisbon}", params={"hard": "true"}).status_code == 204
        r = alice.get(f"/v1/memories/{lisbon}")
        assert r.status_code == 404 and r.json()["error"] == "NotFoundError"


def test_user_isolation_every_route(server: Server) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        secret = alice.post("/v1/memories", json={"text": "alice secret: the vault code is 4417"}).json()["ids"][0]
        assert bob.get(f"/v1/memories/{secret}").status_code == 404
        assert bob.get(f"/v1/memories/{secret}/history").status_code == 404
        assert bob.patch(f"/v1/memories/{secret}", json={"text": "pwned"}).status_code == 404
        assert bob.delete(f"/v1/memories/{secret}").status_code == 404
        assert secret not in _ids(bob.post("/v1/search", json={"query": "vault code 4417"}).json())
        assert all(m["id"] != secret for m in bob.get("/v1/memories", params={"limit": 500}).json()["items"])
        # crafted filters and ids
        for crafted in (["alice.default"], ["bob.default", "alice.default"]):
            r = bob.post("/v1/search", json={"query": "vault", "cube_ids": crafted})
            assert r.status_code == 403 and "may not read" in r.json()["reason"]
            assert bob.get("/v1/memories", params={"cube_id": crafted}).status_code == 403
        assert bob.post("/v1/search", json={"query": "vault", "cube_ids": ["x' OR 1=1 --"]}).status_code in (403, 422)
        for crafted_id in ("' OR '1'='1", "%", "*", secret + "' OR 1=1"):
            assert bob.get(f"/v1/memories/{crafted_id}").status_code in (404, 422)
        assert bob.post("/v1/memories", json={"text": "x", "cube_id": "alice.default"}).status_code == 403
        # LangServe: identity comes from the key, never from the body or config
        body = {"input": {"query": "vault code 4417"},
                "config": {"configurable": {"hippograph_user_id": "alice", "user_id": "alice"}}}
        r = bob.post("/search/invoke", json=body)
        assert r.status_code == 200 and secret not in _ids(r.json()["output"]["memories"])
        r = bob.post("/search/invoke", json={"input": {"query": "vault"},
                                             "config": {"configurable": {"cube_ids": ["alice.default"]}}})
        assert r.status_code == 403
        r = bob.post("/chat/invoke", json={"input": {"messages": [{"type": "human", "content": "vault code?"}]},
                                           "config": {"configurable": {"thread_id": "alice/main"}}})
        assert r.status_code == 200
        out = r.json()["output"]
        assert secret not in _ids(out["memories"]) and "4417" not in out["answer"]
        assert out["thread_id"] == "bob/alice/main"
        # the owner still sees it
        assert secret in _ids(alice.post("/v1/search", json={"query": "vault code 4417"}).json())


def test_sharing_grants_exactly_the_shared_cube(server: Server) -> None:
    with server.client("alice") as alice, server.client("bob") as bob, server.client("carol") as carol:
        assert alice.post("/v1/cubes", json={"cube_id": "alice.work", "name": "work"}).status_code == 201
        work = alice.post("/v1/memories", json={"text": "project kiwi ships on friday",
                                                "cube_id": "alice.work"}).json()["ids"][0]
        private = alice.post("/v1/memories", json={"text": "kiwi allergy diary"}).json()["ids"][0]
        assert bob.get(f"/v1/memories/{work}").status_code == 404
        assert bob.post("/v1/cubes/alice.work/shares", json={"user_id": "bob"}).status_code == 404
        assert alice.post("/v1/cubes/alice.work/shares", json={"user_id": "bob", "access": "read"}).status_code == 202
        assert bob.get(f"/v1/memories/{work}").status_code == 404  # an invitation until Bob accepts
        assert [i["cube_id"] for i in bob.get("/v1/invitations").json()] == ["alice.work"]
        assert bob.post("/v1/invitations/alice.work/accept").status_code == 200

        cubes = {c["cube"]["id"]: c["access"] for c in bob.get("/v1/cubes").json()}
        assert cubes == {"bob.default": "write", "alice.work": "read"}
        assert bob.get(f"/v1/memories/{work}").status_code == 200
        assert bob.get(f"/v1/memories/{private}").status_code == 404
        hits = _ids(bob.post("/v1/search", json={"query": "kiwi", "top_k": 20}).json())
        assert work in hits and private not in hits
        r = bob.post("/search/invoke", json={"input": {"query": "kiwi"}, "config": {"configurable": {"top_k": 20}}})
        assert work in _ids(r.json()["output"]["memories"]) and private not in _ids(r.json()["output"]["memories"])
        r = bob.patch(f"/v1/memories/{work}", json={"text": "bob was here"})
        assert r.status_code == 403 and r.json()["error"] == "AccessDeniedError"
        assert bob.post("/v1/memories", json={"text": "x", "cube_id": "alice.work"}).status_code == 403
        assert bob.post("/v1/cubes/alice.work/shares", json={"user_id": "carol"}).status_code == 403
        assert carol.get(f"/v1/memories/{work}").status_code == 404

        assert alice.post("/v1/cubes/alice.work/shares", json={"user_id": "bob", "access": "write"}).status_code == 202
        assert bob.patch(f"/v1/memories/{work}", json={"text": "project kiwi ships monday"}).status_code == 200
        assert bob.delete(f"/v1/memories/{private}").status_code == 404

        assert alice.delete("/v1/cubes/alice.work/shares/bob").status_code == 204
        assert bob.get(f"/v1/memories/{work}").status_code == 404


def test_revoked_keys_fail(server: Server) -> None:
    with server.client(key=ADMIN) as admin:
        key = admin.post("/v1/users/bob/keys").json()["api_key"]
    with server.client(key=key) as bob2:
        assert bob2.get("/v1/me").status_code == 200
        with server.client("carol") as carol:  # somebody else's key: not theirs to revoke
            assert carol.post("/v1/keys/revoke", json={"api_key": key}).status_code == 404
        assert bob2.get("/v1/me").status_code == 200
        assert bob2.post("/v1/keys/revoke", json={"api_key": key}).status_code == 204
        assert bob2.get("/v1/me").status_code == 401
        assert bob2.post("/search/invoke", json={"input": {"query": "x"}}).status_code == 401
    with server.client("bob") as bob:  # the first key still works
        assert bob.get("/v1/me").status_code == 200


def test_langserve_chat_flows_and_jobs(server: Server) -> None:
    with server.client("carol") as carol, server.client("bob") as bob:
        carol.post("/v1/memories", json={"text": "My cat is called Miso"})
        msg = {"input": {"messages": [{"type": "human", "content": "What is my cat called?"}]},
               "config": {"configurable": {"thread_id": "pets"}}}
        r = carol.post("/chat/invoke", json=msg)
        assert r.status_code == 200, r.text
        out = r.json()["output"]
        assert "Miso" in out["answer"] and out["thread_id"] == "carol/pets" and out["written_ids"]
        r = carol.post("/chat/batch", json={"inputs": [msg["input"], msg["input"]]})
        assert r.status_code == 200 and len(r.json()["output"]) == 2
        with carol.stream("POST", "/chat/stream", json=msg) as stream:
            body = "".join(stream.iter_text())
        assert "event: data" in body and "Miso" in body and "event: end" in body
        with carol.stream("POST", "/search/stream_events", json={"input": {"query": "cat"}}) as stream:
            events = "".join(stream.iter_text())
        assert "on_chain_start" in events and "Miso" in events
        assert carol.get("/chat/input_schema").status_code == 200
        assert "messages" in carol.get("/chat/input_schema").json()["properties"]
        # plain REST chat namespaced the same way
        assert carol.post("/v1/chat", json={"message": "and my cat?", "thread_id": "pets"}).json()["thread_id"] \
            == "carol/pets"

        jobs = carol.get("/v1/jobs").json()
        assert jobs and all(j["cube_id"] == "carol.default" for j in jobs)
        assert carol.get(f"/v1/jobs/{jobs[0]['id']}").status_code == 200
        assert bob.get(f"/v1/jobs/{jobs[0]['id']}").status_code == 404
        assert all(j["cube_id"] != "carol.default" for j in bob.get("/v1/jobs").json())


def test_documents_ingest_list_and_archive(server: Server) -> None:
    with server.client("alice") as alice, server.client("bob") as bob:
        doc = "# Handbook\n\nThe office coffee machine is descaled every Tuesday by Rosa.\n"
        r = alice.post("/v1/documents", json={"texts": [{"text": doc, "name": "handbook"}]})
        assert r.status_code == 200, r.text
        assert r.json()["summary"]["documents"] == 1 and r.json()["summary"]["errors"] == 0
        assert any("descaled" in h["item"]["text"]
                   for h in alice.post("/v1/search", json={"query": "coffee machine descaled"}).json())
        assert not any("descaled" in h["item"]["text"]
                       for h in bob.post("/v1/search", json={"query": "coffee machine descaled"}).json())
        assert bob.post("/v1/documents", json={"texts": [{"text": doc}], "cube_id": "alice.default"}).status_code \
            == 403
        assert alice.post("/v1/documents", json={"paths": ["/etc/passwd"]}).status_code == 422
        assert [d["doc_key"] for d in alice.get("/v1/documents").json()] == ["handbook"]
        assert bob.get("/v1/documents", params={"cube_id": "alice.default"}).status_code == 403
        assert bob.delete("/v1/documents", params={"doc_key": "handbook", "cube_id": "alice.default"}).status_code \
            == 403
        assert bob.delete("/v1/documents", params={"doc_key": "handbook"}).status_code == 404  # not in bob's cube
        r = alice.delete("/v1/documents", params={"doc_key": "handbook"})
        assert r.status_code == 200 and r.json()["archived"] >= 1, r.text
        assert alice.get("/v1/documents").json() == []
        assert not any("descaled" in h["item"]["text"]
                       for h in alice.post("/v1/search", json={"query": "coffee machine descaled"}).json())
        assert alice.delete("/v1/documents", params={"doc_key": "handbook"}).status_code == 404
        assert alice.delete("/v1/documents").status_code == 422


def test_errors_are_json_with_reasons(server: Server) -> None:
    with server.client("alice") as alice:
        r = alice.post("/v1/memories", content=b"x" * 300_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while it streams in
            yield b'{"text": "'
            for _ in range(30):
                yield b"y" * 10_000
            yield b'"}'

        r = alice.post("/v1/memories", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"] == "PayloadTooLarge"
        r = alice.post("/v1/memories", json={"text": ""})
        assert r.status_code == 422 and r.json()["reason"]
        r = alice.post("/v1/memories", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and "reason" in r.json()
        r = alice.get("/v1/nowhere")
        assert r.status_code == 404 and r.json()["reason"]
        r = alice.post("/v1/search", json={"query": "x", "top_k": 10_000})
        assert r.status_code == 422


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=8,
)
IDS = st.sampled_from(["alice.default", "bob.default", "carol.default", "alice.work", "carol", "alice", "x",
                       "' OR 1=1 --", "../../etc/passwd", "%00", "*", "a" * 200])


def from_schema(schema: dict, spec: dict, depth: int = 0) -> st.SearchStrategy:
    """A loose strategy for a JSON schema: mostly the right shape, sometimes anything (negative cases)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = spec["components"]["schemas"][name]
    if depth > 4:
        return JSON
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | JSON
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of([from_schema(s, spec, depth + 1) for s in schema[key]])
    kind = schema.get("type")
    typed: st.SearchStrategy
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        typed = st.fixed_dictionaries({}, optional={k: from_schema(v, spec, depth + 1) for k, v in props.items()})
    elif kind == "array":
        typed = st.lists(from_schema(schema.get("items", {}), spec, depth + 1), max_size=4)
    elif kind == "string":
        typed = IDS | st.text(max_size=60)
    elif kind == "integer":
        typed = st.integers(-5, 600) | st.integers()
    elif kind == "number":
        typed = st.floats(allow_nan=False, allow_infinity=False)
    elif kind == "boolean":
        typed = st.booleans()
    elif kind == "null":
        typed = st.none()
    else:
        typed = JSON
    return st.one_of(typed, typed, typed, JSON)


def request_strategy(spec: dict) -> st.SearchStrategy:
    operations = []
    for path, item in spec["paths"].items():
        if not path.startswith("/v1/") or path.startswith(("/v1/users", "/v1/keys")):
            continue  # fuzzing must not delete users or revoke keys
        for method, op in item.items():
            if (path, method) != ("/v1/me", "delete"):  # erasing yourself ends the run (the key goes with you)
                operations.append((path, method, op))

    @st.composite
    def build(draw: st.DrawFn) -> tuple[str, str, dict, object]:
        path, method, op = draw(st.sampled_from(operations))
        params: dict = {}
        for param in op.get("parameters", []):
            if param["in"] == "path":
                value = draw(IDS | st.text(min_size=1, max_size=60).filter(lambda t: t not in (".", "..")))
                path = path.replace("{" + param["name"] + "}", quote(value, safe=""))
            elif param["in"] == "query" and draw(st.booleans()):
                value = draw(from_schema(param.get("schema", {}), spec))
                params[param["name"]] = value if isinstance(value, list) else json.dumps(value) \
                    if isinstance(value, dict | type(None)) else str(value)
        body = None
        if "requestBody" in op:
            schema = op["requestBody"]["content"]["application/json"]["schema"]
            body = draw(from_schema(schema, spec))
        return method, path, params, body

    return build()


def test_fuzz_rest_api_no_5xx(server: Server) -> None:
    """Hypothesis over the REST part of the OpenAPI (shaped and random inputs, crafted ids): never a 5xx.

    (schemathesis 4.15's object generation breaks on this hypothesis version: `many.more` is gone.)"""
    spec = httpx.get(server.url + "/openapi.json").json()
    failures: list[str] = []
    seen: dict[int, int] = {}

    with server.client("carol") as carol:

        @settings(max_examples=300, deadline=None, database=None, derandomize=True,  # the same 300 every run
                  suppress_health_check=list(HealthCheck))
        @given(request=request_strategy(spec))
        def run(request: tuple[str, str, dict, object]) -> None:
            method, path, params, body = request
            response = carol.request(method, path, params=params, json=body)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(f"{method} {path} {params} {body!r} -> {response.status_code}: {response.text[:300]}")
            elif response.status_code >= 400:
                assert response.json()["reason"]

        run()
    print("status codes:", dict(sorted(seen.items())))
    assert not failures, "\n".join(failures[:10])
    assert sum(n for code, n in seen.items() if code < 300) > 10
    assert server.proc.poll() is None
