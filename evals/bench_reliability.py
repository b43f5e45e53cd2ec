"""Reliability benchmark: fuzzed requests to every HTTP route (REST, LangServe invoke/batch/stream/stream_events,
MCP over streamable HTTP) against a real server, counting 5xx, cut streams and cross-tenant reads or writes.

    python -m hippograph.evals.bench_reliability [--requests 50000] [--seed N] [--workers 4] [--embedder minilm]

Against a fresh `hippograph serve` process on 127.0.0.1 (then a `hippograph mcp --transport http` one):
- fuzz: shaped requests from per-route templates, most of them mutated (a value swapped for a hostile one, a
  key dropped or added, the raw body broken); every answer must be < 500 and every 4xx must carry a reason; a
  200 stream must end with `event: end` (403/422 come before a stream starts, never inside it).
- injection: a corpus of hostile ids (`\\n`, quotes, `*`, `../`, NUL, unicode, very long) in every id position of
  every route, sent by `mallory`; `alice`'s secret must never appear in an answer, and alice's memories, cubes
  and chat thread must be the same afterwards (0 cross-tenant reads, 0 cross-tenant writes).
- MCP: fuzzed JSON-RPC `tools/call` (and broken bodies) over streamable HTTP, then the same hostile ids in every
  id argument of every tool, as mallory, against a data dir where alice keeps a secret.

Prints tables and writes `evals/out/bench_reliability.json` (5xx count, requests, per route). `tests/test_fuzz.py`
runs the same code with a fixed seed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from langserve.lzstring import LZString
from tqdm import tqdm

from hippograph.evals.common import OUT, REPO, console, free_port, print_table, stop_process, wait_http, write_json

ADMIN_KEY = "reliability-admin-" + "0" * 16
#: Routes the fuzzing user must not call: they end the run (deleting yourself revokes your key).
SELF_DESTRUCTIVE = frozenset({"DELETE /v1/me"})
STREAM_ENDPOINTS = ("stream", "stream_events")

# -- servers -------------------------------------------------------------------------------------------------


@dataclass
class Running:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path


@contextmanager
def server(data_dir: Path, *, embedder: str, command: str = "serve", path: str = "/healthz",
           extra_args: tuple[str, ...] = ()) -> Iterator[Running]:
    """A server process (`hippograph <command> --host 127.0.0.1 --port <free>`) on its own data dir."""
    port = free_port()
    env = {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data_dir), "HIPPOGRAPH_EMBEDDER": embedder,
           "HIPPOGRAPH_ADMIN_KEY": ADMIN_KEY, "HIPPOGRAPH_WORKER_IN_PROCESS": "false",
           "HIPPOGRAPH_MAX_REQUEST_BYTES": "300000", "HIPPOGRAPH_CHAT_MODEL": ""}
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{command}-{port}.log"
    with log.open("ab") as out:
        argv = [sys.executable, "-m", "hippograph", command, "--host", "127.0.0.1", "--port", str(port), *extra_args]
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + path, proc)
        yield Running(url, proc, log)
    finally:
        stop_process(proc)


@dataclass
class Tenants:
    """The users of a run: `bob` fuzzes, `mallory` injects, `alice` is the victim whose data must not leak."""

    url: str
    keys: dict[str, str]
    secret: str
    secret_ids: list[str]

    def client(self, user: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.keys[user]}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=120)


def set_up_tenants(url: str) -> Tenants:
    keys: dict[str, str] = {}
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN_KEY}, timeout=60) as admin:
        for user in ("alice", "bob", "mallory"):
            response = admin.post("/v1/users", json={"user_id": user})
            response.raise_for_status()
            keys[user] = response.json()["api_key"]
    secret = f"alicesecret{uuid.uuid4().hex[:12]}"
    tenants = Tenants(url, keys, secret, [])
    with tenants.client("alice") as alice:
        alice.post("/v1/cubes", json={"cube_id": "alice.work"}).raise_for_status()
        for cube in ("alice.default", "alice.work"):
            response = alice.post("/v1/memories", json={"text": f"vault code {secret} in {cube}", "cube_id": cube})
            response.raise_for_status()
            tenants.secret_ids += response.json()["ids"]
        alice.post("/v1/chat", json={"message": f"remember {secret}", "thread_id": "main"}).raise_for_status()
    with tenants.client("bob") as bob:
        bob.post("/v1/cubes", json={"cube_id": "bob.work"}).raise_for_status()
        bob.post("/v1/memories", json={"text": "bob likes green tea"}).raise_for_status()
    return tenants


def alice_view(tenants: Tenants) -> dict[str, Any]:
    """Everything alice can see: her memories (all statuses), cubes and shares, documents. Compared before and
    after a run: any difference is a cross-tenant write."""
    with tenants.client("alice") as alice:
        items = alice.get("/v1/memories", params={"limit": 500, "include_inactive": True}).json()["items"]
        return {"memories": sorted((m["id"], m["cube_id"], m["text"], m["status"]) for m in items),
                "cubes": sorted(json.dumps(c, sort_keys=True) for c in alice.get("/v1/cubes").json()),
                "documents": sorted(d["doc_key"] for d in alice.get("/v1/documents").json())}


# -- hostile values ------------------------------------------------------------------------------------------


def injection_ids() -> list[str]:
    """Ids an attacker might try: trailing newline, quotes, wildcards, traversal, NUL, unicode, very long, and the
    victim's own ids with decorations."""
    return ["alice.default\n", "alice.default\r\n", "trap\n", "alice.work'", 'alice.work"', "alice.*", "*", "%",
            "../alice.default", "../../etc/passwd", "alice.default\x00", "\x00", "alice.defaul\u0074\u200b",
            "ａｌｉｃｅ.default", "alice.default/../bob.default", "' OR 1=1 --", '" OR ""="', "alice.default OR true",
            "MATCH (n) DETACH DELETE n", "a" * 129, "a" * 5000, "\ud800", "alice", "alice.work", "alice.default",
            "ALICE.DEFAULT", " alice.default", "alice.default ", "😀", "${jndi:ldap://x}", "{{7*7}}"]


NASTY_STRINGS = ["", " ", "\x00", "\u200b\u200b", "\ufeff", "\x01\x02\x7f", "\ud800", "x", "0.5", "5", "null",
                 "NaN", "read", "write", "admin", "human", "ai", "system", "tool", "fast", "fine", "😀" * 20,
                 "é" * 300, "a" * 40_000, "x\n", *injection_ids()[:20]]


def _deep(levels: int, kind: str = "dict") -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value} if kind == "dict" else [value]
    return value


NASTY_VALUES: list[Any] = [None, True, False, 0, -1, 1, 5, 200, 201, 10**9, 2**63, -(2**63) - 1, 10**40, 0.5, -0.0,
                           1e308, float("nan"), float("inf"), float("-inf"), [], {}, [None], {"": None}, [[[]]],
                           _deep(20), _deep(300), _deep(60, "list"), {"type": "human"}, [{"type": "human"}],
                           ["alice.default"], ["alice.default", "bob.default"], [1, 2], {"configurable": None}]


def nasty(rng: random.Random) -> Any:
    return rng.choice(NASTY_STRINGS) if rng.random() < 0.45 else copy.deepcopy(rng.choice(NASTY_VALUES))


def broken_body(rng: random.Random) -> bytes:
    """A raw body no JSON parser should accept (or one that is valid but absurd)."""
    choices: list[Callable[[], bytes]] = [
        lambda: b"",
        lambda: b"{",
        lambda: b"[" * 5000 + b"]" * 5000,
        lambda: b'{"input": ' + b"[" * 3000 + b"]" * 3000 + b"}",
        lambda: b'{"a":' * 2000 + b"1" + b"}" * 2000,
        lambda: b"\xff\xfe\x00garbage",
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64))),
        lambda: b"null",
        lambda: b"5",
        lambda: b'"string"',
        lambda: b"[]",
        lambda: b'{"input": NaN, "config": Infinity}',
        lambda: b'{"input": {"query": "x"}, "input": 5}',
        lambda: b'{"inputs": [' + b'{"query": "x"},' * 200 + b'{"query": "y"}]}',
    ]
    return rng.choice(choices)()


# -- requests ------------------------------------------------------------------------------------------------


@dataclass
class FuzzRequest:
    route: str
    """`METHOD /template`, the unit of the per-route table."""
    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    body: bytes | None = None
    auth: str = "user"
    """`user` (the fuzzing user's key), `none` or `bad` (a key that does not exist)."""


def _message(rng: random.Random) -> dict[str, Any]:
    return {"type": rng.choice(["human", "human", "ai", "system"]), "content": rng.choice(
        ["what do I like to drink?", "remember: the meeting moved to 3pm", "hi"])}


def _configurable(rng: random.Random, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rng.random() < 0.5:
        out["top_k"] = rng.choice([1, 5, 20])
    if rng.random() < 0.4:
        out["cube_ids"] = rng.choice([["bob.default"], ["bob.default", "bob.work"], []])
    if kind == "chat" and rng.random() < 0.6:
        out["thread_id"] = rng.choice(["t1", "t2", "a/b", "main"])
    return out


def _runnable_input(rng: random.Random, kind: str) -> dict[str, Any]:
    if kind == "chat":
        return {"messages": [{"type": "human", "content": rng.choice(["what do I like?", "tea or coffee?"])}]
                + ([_message(rng)] if rng.random() < 0.2 else [])}
    return {"query": rng.choice(["green tea", "vault code", "what do I like", "meeting"])}


def langserve_body(rng: random.Random, kind: str, endpoint: str) -> dict[str, Any]:
    config = {"configurable": _configurable(rng, kind)}
    if endpoint == "batch":
        n = rng.randint(1, 2)
        body: dict[str, Any] = {"inputs": [_runnable_input(rng, kind) for _ in range(n)]}
        body["config"] = [copy.deepcopy(config) for _ in range(n)] if rng.random() < 0.3 else config
        return body
    body = {"input": _runnable_input(rng, kind), "config": config}
    if endpoint == "stream_events" and rng.random() < 0.3:
        body["include_names"] = ["scope"]
    return body


def rest_body(rng: random.Random, route: str) -> dict[str, Any] | None:
    text = rng.choice(["I drink green tea every morning", "the meeting moved to 3pm", "ok"])
    bodies: dict[str, Callable[[], dict[str, Any]]] = {
        "POST /v1/memories": lambda: rng.choice([
            {"text": text}, {"text": text, "cube_id": "bob.work", "metadata": {"src": "fuzz", "n": [1, {"a": 2}]}},
            {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "noted"}],
             "session_id": "s1"}]),
        "PATCH /v1/memories/{memory_id}": lambda: {"text": text, "tags": ["a"], "metadata": {"k": "v"}},
        "POST /v1/search": lambda: {"query": text, "top_k": 5, "threshold": 0.1, "cube_ids": ["bob.default"]},
        "POST /v1/chat": lambda: rng.choice([
            {"message": "what do I drink?", "thread_id": "t1"},
            {"messages": [{"role": "user", "content": "what do I drink?"}], "top_k": 5}]),
        "POST /v1/documents": lambda: rng.choice([
            {"texts": [{"text": "# Notes\n\nThe printer is on floor 2.", "name": "notes"}]},
            {"conversations": [{"conversation_id": "c1", "session_id": "s1",
                                "messages": [{"speaker": "bob", "text": "see you at 5"}]}], "cube_id": "bob.work"}]),
        "POST /v1/cubes": lambda: {"cube_id": f"bob.c{rng.randint(0, 20)}", "name": "c"},
        "POST /v1/cubes/{cube_id}/shares": lambda: {"user_id": rng.choice(["alice", "mallory"]), "access": "read"},
        "POST /v1/keys/revoke": lambda: {"api_key": "hg_" + "x" * 20},
        "POST /v1/users": lambda: {"user_id": "eve"},
    }
    make = bodies.get(route)
    return make() if make else None


def mutate(value: Any, rng: random.Random) -> Any:
    """Swap one leaf (or container) for a hostile value, drop a key, or add one."""
    if not isinstance(value, dict | list) or not value or rng.random() < 0.2:
        return nasty(rng)
    if isinstance(value, dict):
        key = rng.choice(list(value))
        roll = rng.random()
        if roll < 0.15:
            value.pop(key)
        elif roll < 0.25:
            value[rng.choice(["extra", "user_id", "hippograph_user_id", "paths", "__proto__"])] = nasty(rng)
        else:
            value[key] = mutate(value[key], rng)
        return value
    index = rng.randrange(len(value))
    value[index] = mutate(value[index], rng)
    return value


def _encode(body: Any) -> bytes:
    try:
        return json.dumps(body, allow_nan=True).encode("utf-8")
    except (ValueError, RecursionError):
        return b"{}"


def _path_value(rng: random.Random, kind: str, known: dict[str, list[str]]) -> str:
    if rng.random() < 0.45:
        value = rng.choice(injection_ids() + NASTY_STRINGS[:12])
    else:
        value = rng.choice(known.get(kind) or ["x"])
    return _quote(value)


def _quote(value: str) -> str:
    """Percent-encode a path segment or query value; lone surrogates go out as their (invalid) UTF-8 bytes."""
    return quote(value, safe="", errors="surrogatepass") or "%20"


def with_query(path: str, params: dict[str, Any]) -> str:
    if not params:
        return path
    return path + "?" + "&".join(f"{_quote(k)}={_quote(str(v))}" for k, v in params.items())


class Fuzzer:
    """Deterministic for a given seed: the same requests in the same order."""

    def __init__(self, spec: dict[str, Any], seed: int, known: dict[str, list[str]], *,
                 valid_share: float = 0.25) -> None:
        self.rng = random.Random(seed)
        self.valid_share = valid_share
        """The share of bodies sent as the template made them (the rest are mutated or broken)."""
        self.known = known
        self.operations: list[tuple[str, str, dict[str, Any]]] = []
        for path, item in spec["paths"].items():
            for method, op in item.items():
                if path.endswith("token_feedback") or f"{method.upper()} {path}" in SELF_DESTRUCTIVE:
                    continue  # feedback is disabled (404 from LangServe, nothing to fuzz)
                self.operations.append((method.upper(), path, op))
        self.operations.sort(key=lambda o: (o[1], o[0]))
        # Schema routes take no input worth fuzzing and cost ~40 ms each (LangServe rebuilds the JSON schema).
        self.weights = [0.15 if path.endswith("_schema") else 1.0 for _, path, _ in self.operations]

    def __iter__(self) -> Iterator[FuzzRequest]:
        while True:
            yield self.next()

    def next(self) -> FuzzRequest:
        rng = self.rng
        method, template, op = rng.choices(self.operations, self.weights)[0]
        route = f"{method} {template}"
        path = template
        for name, kind in (("memory_id", "memory"), ("cube_id", "cube"), ("user_id", "user"), ("job_id", "job")):
            if "{" + name + "}" in path:
                path = path.replace("{" + name + "}", _path_value(rng, kind, self.known))
        if "{config_hash}" in path:
            config = {"configurable": _configurable(rng, "chat")}
            if rng.random() < 0.5:
                config = mutate(config, rng)
            hashed = LZString.compressToEncodedURIComponent(_encode(config).decode()) if rng.random() < 0.7 \
                else _quote(str(nasty(rng))[:200])
            path = path.replace("{config_hash}", hashed)
        params = self._params(op)
        body: Any = None
        if method in ("POST", "PATCH"):
            kind, _, endpoint = template.lstrip("/").partition("/")
            endpoint = endpoint.rsplit("/", 1)[-1]
            if kind in ("chat", "search") and endpoint in ("invoke", "batch", "stream", "stream_events"):
                body = langserve_body(rng, kind, endpoint)
            else:
                body = rest_body(rng, route)
            roll = rng.random()
            raw = None
            if roll < 0.1:
                raw = broken_body(rng)
            elif roll < 1.0 - self.valid_share:
                for _ in range(rng.choice([1, 1, 1, 2, 3])):
                    body = mutate(body, rng)
            if raw is None:
                raw = _encode(body)
            body = raw
        auth = rng.choices(["user", "none", "bad"], weights=[94, 3, 3])[0]
        return FuzzRequest(route, method, path, params, body, auth)

    def _params(self, op: dict[str, Any]) -> dict[str, Any]:
        rng = self.rng
        params: dict[str, Any] = {}
        for param in op.get("parameters", []):
            if param["in"] != "query" or rng.random() < 0.5:
                continue
            name = param["name"]
            if name in ("cube_id", "doc_key") and rng.random() < 0.5:
                params[name] = rng.choice(self.known.get("cube" if name == "cube_id" else "doc") or ["x"])
            elif rng.random() < 0.5:
                params[name] = rng.choice(["0", "1", "10", "500", "501", "-1", "true", "false", "10000000000000",
                                           "NaN", "queued", "failed", "LongTermMemory"])
            else:
                value = nasty(rng)
                params[name] = value if isinstance(value, str) else json.dumps(value, allow_nan=True)[:200]
        return params


# -- running -------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    route: str
    status: int
    problem: str = ""
    """Empty when fine; otherwise what was wrong (5xx, a 4xx without reason, a stream cut or failed)."""
    leaked: bool = False


def send(client: httpx.Client, request: FuzzRequest, secret: str, keys: dict[str, str]) -> Outcome:
    headers = {"content-type": "application/json"}
    if request.auth == "user":
        headers["Authorization"] = f"Bearer {keys['bob']}"
    elif request.auth == "bad":
        headers["Authorization"] = "Bearer hg_not_a_key"
    try:
        with client.stream(request.method, with_query(request.path, request.params), content=request.body,
                           headers=headers) as response:
            text = "".join(response.iter_text())
    except httpx.HTTPError as exc:
        return Outcome(request.route, 599, f"transport error: {type(exc).__name__}: {exc}")
    leaked = secret in text
    status = response.status_code
    problem = ""
    if status >= 500:
        problem = f"{status}: {text[:300]}"
    elif status >= 400:
        try:
            if not json.loads(text).get("reason"):
                problem = f"{status} without a reason: {text[:200]}"
        except (ValueError, AttributeError):
            problem = f"{status} not JSON: {text[:200]}"
    elif request.path.rsplit("/", 1)[-1] in STREAM_ENDPOINTS and ("event: error" in text
                                                                  or "event: end" not in text):
        problem = f"stream cut or failed after 200: {text[-300:]}"
    return Outcome(request.route, status, problem, leaked)


@dataclass
class FuzzReport:
    requests: int = 0
    per_route: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    problems: list[str] = field(default_factory=list)
    leaks: int = 0
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(c["5xx"] for c in self.per_route.values())

    def add(self, request: FuzzRequest, outcome: Outcome) -> None:
        self.requests += 1
        bucket = self.per_route[outcome.route]
        bucket["requests"] += 1
        bucket[f"{outcome.status // 100}xx"] += 1
        if outcome.problem:
            bucket["problems"] += 1
            self.problems.append(f"{request.method} {request.path} params={request.params} "
                                 f"body={(request.body or b'')[:200]!r} -> {outcome.problem}")
        if outcome.leaked:
            self.leaks += 1
            bucket["leaks"] += 1
            self.problems.append(f"LEAK of alice's secret: {request.method} {request.path}")

    def table(self) -> tuple[list[str], list[list[Any]]]:
        columns = ["route", "requests", "2xx", "4xx", "5xx", "problems", "leaks"]
        rows = [[route, *(c[k] for k in columns[1:])] for route, c in sorted(self.per_route.items())]
        return columns, rows

    def as_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "server_errors": self.server_errors, "problems": len(self.problems),
                "leaks": self.leaks, "seconds": round(self.seconds, 1),
                "per_route": {r: dict(c) for r, c in sorted(self.per_route.items())},
                "first_problems": self.problems[:20]}


def known_ids(tenants: Tenants) -> dict[str, list[str]]:
    """Real ids to aim at: bob's own (so some requests succeed) and alice's (which must stay out of reach)."""
    with tenants.client("bob") as bob:
        mine = [m["id"] for m in bob.get("/v1/memories").json()["items"]]
    return {"memory": mine + tenants.secret_ids, "cube": ["bob.default", "bob.work", "alice.default", "alice.work"],
            "user": ["alice", "bob", "mallory", "nobody"], "job": ["1", "x"], "doc": ["notes", "text:x"]}


def run_fuzz(tenants: Tenants, *, requests: int, seed: int, workers: int = 4, valid_share: float = 0.25,
             progress: bool = True) -> FuzzReport:
    spec = httpx.get(tenants.url + "/openapi.json", timeout=60).json()
    fuzzer = Fuzzer(spec, seed, known_ids(tenants), valid_share=valid_share)
    batch = [fuzzer.next() for _ in range(requests)]
    report = FuzzReport()
    start = time.perf_counter()
    with httpx.Client(base_url=tenants.url, timeout=120) as client, ThreadPoolExecutor(workers) as pool:
        outcomes = pool.map(lambda r: send(client, r, tenants.secret, tenants.keys), batch)
        for request, outcome in tqdm(zip(batch, outcomes, strict=True), total=len(batch), disable=not progress,
                                     desc="fuzz", unit="req"):
            report.add(request, outcome)
    report.seconds = time.perf_counter() - start
    return report


# -- cross-tenant injection ----------------------------------------------------------------------------------


def injection_requests(tenants: Tenants) -> Iterator[tuple[str, str, str, dict[str, Any], Any]]:
    """(route, method, path, params, json body) with each hostile id in each id position of each route."""
    for bad in injection_ids() + tenants.secret_ids:
        q = _quote(bad)
        yield "GET /v1/memories/{id}", "GET", f"/v1/memories/{q}", {}, None
        yield "PATCH /v1/memories/{id}", "PATCH", f"/v1/memories/{q}", {}, {"text": "mallory was here"}
        yield "DELETE /v1/memories/{id}", "DELETE", f"/v1/memories/{q}", {"hard": "true"}, None
        yield "GET /v1/memories/{id}/history", "GET", f"/v1/memories/{q}/history", {}, None
        yield "GET /v1/memories?cube_id", "GET", "/v1/memories", {"cube_id": bad}, None
        yield "GET /v1/memories?session_id", "GET", "/v1/memories", {"session_id": bad}, None
        yield "POST /v1/memories cube_id", "POST", "/v1/memories", {}, {"text": "mallory was here", "cube_id": bad}
        yield "POST /v1/memories session_id", "POST", "/v1/memories", {}, {"text": "m", "session_id": bad}
        yield "POST /v1/search cube_ids", "POST", "/v1/search", {}, {"query": "vault code", "cube_ids": [bad]}
        yield "POST /v1/chat cube_ids", "POST", "/v1/chat", {}, {"message": "vault code?", "cube_ids": [bad]}
        yield "POST /v1/chat thread_id", "POST", "/v1/chat", {}, {"message": "what did I say?", "thread_id": bad}
        yield "POST /v1/documents cube_id", "POST", "/v1/documents", {}, {"texts": [{"text": "m"}], "cube_id": bad}
        yield "GET /v1/documents?cube_id", "GET", "/v1/documents", {"cube_id": bad}, None
        yield "DELETE /v1/documents", "DELETE", "/v1/documents", {"doc_key": bad, "cube_id": bad}, None
        yield "POST /v1/cubes", "POST", "/v1/cubes", {}, {"cube_id": bad}
        yield "DELETE /v1/cubes/{id}", "DELETE", f"/v1/cubes/{q}", {}, None
        yield "POST /v1/cubes/{id}/shares", "POST", f"/v1/cubes/{q}/shares", {}, {"user_id": "mallory"}
        yield "POST /v1/cubes/mallory.default/shares", "POST", "/v1/cubes/mallory.default/shares", {}, \
            {"user_id": bad, "access": "write"}
        yield "DELETE /v1/cubes/{id}/shares/{user}", "DELETE", f"/v1/cubes/{q}/shares/mallory", {}, None
        yield "GET /v1/jobs/{id}", "GET", f"/v1/jobs/{q}", {}, None
        yield "DELETE /v1/users/{id}", "DELETE", f"/v1/users/{q}", {}, None
        for kind, body in (("search", {"query": "vault code"}),
                           ("chat", {"messages": [{"type": "human", "content": "vault code?"}]})):
            spoofs: list[dict[str, Any]] = [{"cube_ids": [bad]}]
            if kind == "chat":
                spoofs.append({"thread_id": bad})  # search runs have no thread
            if "alice" in bad.lower():  # identity in the config is ignored: try it with alice-like ids only
                spoofs += [{"hippograph_user_id": bad}, {"user_id": bad}]
            for configurable in spoofs:
                for endpoint in ("invoke", "stream", "stream_events"):
                    yield (f"POST /{kind}/{endpoint} {next(iter(configurable))}", "POST", f"/{kind}/{endpoint}",
                           {}, {"input": body, "config": {"configurable": configurable}})
                yield (f"POST /{kind}/batch {next(iter(configurable))}", "POST", f"/{kind}/batch", {},
                       {"inputs": [body], "config": {"configurable": configurable}})


def run_injection(tenants: Tenants) -> dict[str, Any]:
    """Mallory aims every hostile id at alice's data through every route: count reads (alice's secret in an
    answer) and writes (any change in what alice sees), and any 5xx."""
    before = alice_view(tenants)
    per_route: dict[str, Counter[str]] = defaultdict(Counter)
    problems: list[str] = []
    with tenants.client("mallory") as mallory:
        for route, method, path, params, body in injection_requests(tenants):
            content = _encode(body) if body is not None else None
            with mallory.stream(method, with_query(path, params), content=content,
                                headers={"content-type": "application/json"}) as response:
                text = "".join(response.iter_text())
            counts = per_route[route]
            counts["requests"] += 1
            counts[f"{response.status_code // 100}xx"] += 1
            if tenants.secret in text:  # (her memory ids may be echoed in a 404's reason: mallory sent them)
                counts["reads"] += 1
                problems.append(f"cross-tenant read: {method} {path} {params} {body!r:.120}")
            if response.status_code >= 500:
                problems.append(f"{response.status_code}: {method} {path} {params} {body!r:.120} -> {text[:200]}")
    after = alice_view(tenants)
    writes = sum(len(set(before[k]) ^ set(after[k])) for k in before)
    if writes:
        problems.append(f"cross-tenant writes: alice's view changed: {before} -> {after}")
    with tenants.client("alice") as alice:  # alice's thread still answers from her own turn
        turn = alice.post("/v1/chat", json={"message": "what did I ask you to remember?", "thread_id": "main"})
        if tenants.secret not in turn.text:
            problems.append("alice's chat thread lost her secret")
    return {"requests": sum(c["requests"] for c in per_route.values()),
            "reads": sum(c["reads"] for c in per_route.values()), "writes": writes,
            "server_errors": sum(c["5xx"] for c in per_route.values()),
            "per_route": {r: dict(c) for r, c in sorted(per_route.items())}, "problems": problems[:20]}


# -- MCP over streamable HTTP --------------------------------------------------------------------------------


def run_mcp_fuzz(url: str, key: str, *, requests: int, seed: int) -> dict[str, Any]:
    """Raw JSON-RPC to `/mcp` (initialize, then fuzzed tools/call and broken bodies): never a 5xx."""
    rng = random.Random(seed)
    tools = {"search_memories": {"query": "tea"}, "add_memory": {"text": "note"}, "get_memory": {"memory_id": "x"},
             "update_memory": {"memory_id": "x", "text": "y"}, "delete_memory": {"memory_id": "x"},
             "chat": {"message": "hi"}, "list_cubes": {}, "share_cube": {"cube_id": "x", "user_id": "y"},
             "ingest_document": {"text": "# t\n\nbody"}, "job_status": {"job_id": "x"}}
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    with httpx.Client(base_url=url, timeout=120) as client:
        headers = _mcp_session(client, key)
        for n in range(requests):
            name = rng.choice(sorted(tools))
            message: Any = {"jsonrpc": "2.0", "id": n + 1, "method": "tools/call",
                            "params": {"name": name, "arguments": copy.deepcopy(tools[name])}}
            raw = broken_body(rng) if rng.random() < 0.1 else _encode(mutate(message, rng)
                                                                        if rng.random() < 0.8 else message)
            response = client.post("/mcp", headers=headers, content=raw)
            statuses[f"{response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                problems.append(f"{response.status_code}: {raw[:200]!r} -> {response.text[:200]}")
    return {"requests": requests, "server_errors": statuses["5xx"], "statuses": dict(statuses),
            "problems": problems[:20]}


def _mcp_session(client: httpx.Client, key: str) -> dict[str, str]:
    """Initialize an MCP streamable-HTTP session; the headers for its later requests."""
    base = {"Authorization": f"Bearer {key}", "content-type": "application/json",
            "accept": "application/json, text/event-stream"}
    init = client.post("/mcp", headers=base, json={
        "jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "fuzz", "version": "0"}}})
    session = init.headers.get("mcp-session-id")
    headers = {**base, **({"mcp-session-id": session} if session else {})}
    client.post("/mcp", headers=headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    return headers


@dataclass
class McpWorld:
    """A data dir where alice keeps a secret (in two cubes and a chat thread) and mallory has an API key."""

    data_dir: Path
    embedder: str
    mallory_key: str
    secret: str
    alice_ids: list[str]

    def alice_view(self) -> tuple[Any, ...]:
        """What alice sees, read with `Memory` while no server holds the data dir."""
        from hippograph.memory import Memory
        from hippograph.settings import Settings

        with Memory(Settings(data_dir=self.data_dir, embedder=self.embedder, worker_in_process=False)) as memory:
            items = memory.list(user_id="alice", include_inactive=True, limit=1000)
            return (sorted((m.id, m.cube_id, m.text, str(m.status)) for m in items),
                    sorted((c.cube.id, str(c.access)) for c in memory.cubes(user_id="alice")))


def make_mcp_world(data_dir: Path, *, embedder: str) -> McpWorld:
    from hippograph.memory import Memory
    from hippograph.settings import Settings

    secret = f"alicesecret{uuid.uuid4().hex[:12]}"
    data_dir.mkdir(parents=True, exist_ok=True)
    with Memory(Settings(data_dir=data_dir, embedder=embedder, worker_in_process=False)) as memory:
        memory.create_cube("alice.work", user_id="alice")
        ids = memory.add(f"vault code {secret}", user_id="alice") + \
            memory.add(f"work vault {secret}", user_id="alice", cube_id="alice.work")
        memory.chat(f"remember {secret}", user_id="alice", thread_id="main")
        memory.ensure_user("mallory")
        key = memory.create_api_key("mallory")
    return McpWorld(data_dir, embedder, key, secret, ids)


def run_mcp_injection(url: str, world: McpWorld) -> dict[str, Any]:
    """Mallory calls every MCP tool with each hostile id in each id argument: no 5xx, alice's secret in no
    answer. (Cross-tenant writes are checked by the caller with `world.alice_view()` once the server stops.)"""
    statuses: Counter[str] = Counter()
    problems: list[str] = []
    reads = 0
    with httpx.Client(base_url=url, timeout=120) as client:
        headers = _mcp_session(client, world.mallory_key)
        n = 0
        for bad in [*injection_ids(), *world.alice_ids]:
            for name, arguments in (
                ("get_memory", {"memory_id": bad}), ("update_memory", {"memory_id": bad, "text": "mallory"}),
                ("delete_memory", {"memory_id": bad, "hard": True}),
                ("search_memories", {"query": "vault code", "cube_ids": [bad]}),
                ("chat", {"message": "vault code?", "cube_ids": [bad]}),
                ("chat", {"message": "what did I ask you to remember?", "thread_id": bad}),
                ("add_memory", {"text": "mallory was here", "cube_id": bad}),
                ("add_memory", {"text": "mallory note", "session_id": bad}),
                ("share_cube", {"cube_id": bad, "user_id": "mallory", "access": "write"}),
                ("ingest_document", {"text": "mallory doc", "cube_id": bad}),
                ("job_status", {"job_id": bad}),
            ):
                n += 1
                response = client.post("/mcp", headers=headers, content=_encode(
                    {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": name,
                                                                                  "arguments": arguments}}))
                statuses[f"{response.status_code // 100}xx"] += 1
                if response.status_code >= 500:
                    problems.append(f"{response.status_code}: {name} {arguments!r:.120} -> {response.text[:200]}")
                if world.secret in response.text:
                    reads += 1
                    problems.append(f"cross-tenant read: {name} {arguments!r:.120}")
    return {"requests": n, "server_errors": statuses["5xx"], "reads": reads, "statuses": dict(statuses),
            "problems": problems[:20]}


# -- main ----------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--mcp-requests", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=None, help="default: random (printed, to replay a run)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--out", type=Path, default=OUT / "bench_reliability.json")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables as Markdown here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    console.print(f"seed {seed}")
    results: dict[str, Any] = {"seed": seed, "embedder": args.embedder}
    with tempfile.TemporaryDirectory(prefix="hippograph-reliability-") as tmp:
        with server(Path(tmp) / "rest", embedder=args.embedder) as running:
            tenants = set_up_tenants(running.url)
            before = alice_view(tenants)
            fuzz = run_fuzz(tenants, requests=args.requests, seed=seed, workers=args.workers)
            results["fuzz"] = fuzz.as_json()
            results["fuzz"]["alice_view_changed"] = alice_view(tenants) != before
            results["injection"] = run_injection(tenants)
        world = make_mcp_world(Path(tmp) / "mcp", embedder=args.embedder)
        before_mcp = world.alice_view()
        with server(world.data_dir, embedder=args.embedder, command="mcp", path="/mcp",
                    extra_args=("--transport", "http")) as running:
            results["mcp"] = run_mcp_fuzz(running.url, world.mallory_key, requests=args.mcp_requests, seed=seed)
            results["mcp_injection"] = run_mcp_injection(running.url, world)
        results["mcp_injection"]["writes"] = int(world.alice_view() != before_mcp)
    columns, rows = fuzz.table()
    print_table(f"Fuzz: {fuzz.requests} requests, seed {seed}", columns, rows)
    inj = results["injection"]
    print_table("Cross-tenant injection (mallory -> alice)", ["route", "requests", "2xx", "4xx", "5xx", "reads"],
                [[r, c.get("requests", 0), c.get("2xx", 0), c.get("4xx", 0), c.get("5xx", 0), c.get("reads", 0)]
                 for r, c in inj["per_route"].items()])
    print_table("Summary", ["part", "requests", "5xx", "problems", "cross-tenant reads", "cross-tenant writes"], [
        ["fuzz (REST + LangServe)", fuzz.requests, fuzz.server_errors, len(fuzz.problems), fuzz.leaks,
         int(results["fuzz"]["alice_view_changed"])],
        ["injection corpus", inj["requests"], inj["server_errors"], len(inj["problems"]), inj["reads"],
         inj["writes"]],
        ["MCP HTTP fuzz", results["mcp"]["requests"], results["mcp"]["server_errors"],
         len(results["mcp"]["problems"]), "-", "-"],
        ["MCP injection corpus", results["mcp_injection"]["requests"], results["mcp_injection"]["server_errors"],
         len(results["mcp_injection"]["problems"]), results["mcp_injection"]["reads"],
         results["mcp_injection"]["writes"]]])
    for problem in (fuzz.problems + inj["problems"] + results["mcp"]["problems"]
                    + results["mcp_injection"]["problems"])[:10]:
        console.print(f"[red]{problem}")
    console.print(f"wrote {write_json(args.out, results)}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_report(results, fuzz))
        console.print(f"wrote {args.markdown}")


def markdown_report(results: dict[str, Any], fuzz: FuzzReport) -> str:
    inj, mcp, mi = results["injection"], results["mcp"], results["mcp_injection"]
    lines = [f"# Reliability: fuzzing and cross-tenant injection (seed {results['seed']}, "
             f"embedder {results['embedder']})", "",
             "`python -m hippograph.evals.bench_reliability` against a real `hippograph serve` / `hippograph mcp` "
             "process.", "",
             "| part | requests | 5xx | problems | cross-tenant reads | cross-tenant writes |",
             "|---|---:|---:|---:|---:|---:|",
             f"| fuzz (REST + LangServe) | {fuzz.requests} | {fuzz.server_errors} | {len(fuzz.problems)} | "
             f"{fuzz.leaks} | {int(results['fuzz']['alice_view_changed'])} |",
             f"| injection corpus | {inj['requests']} | {inj['server_errors']} | {len(inj['problems'])} | "
             f"{inj['reads']} | {inj['writes']} |",
             f"| MCP streamable HTTP fuzz | {mcp['requests']} | {mcp['server_errors']} | {len(mcp['problems'])} "
             "| - | - |",
             f"| MCP injection corpus | {mi['requests']} | {mi['server_errors']} | {len(mi['problems'])} | "
             f"{mi['reads']} | {mi['writes']} |",
             "", f"Fuzz: {fuzz.requests} requests in {fuzz.seconds:.0f} s.", "",
             "| route | requests | 2xx | 4xx | 5xx | problems |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| `{route}` | {c['requests']} | {c['2xx']} | {c['4xx']} | {c['5xx']} | {c['problems']} |"
              for route, c in sorted(fuzz.per_route.items())]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
