"""Load benchmark: the real HTTP server under 1-128 concurrent clients (search / chat / add mix).

The server runs as a user starts it: `hippograph serve --processes N` on 127.0.0.1 (N = 1: one process with
the enrichment worker inside; N > 1: N API processes, one `hippograph worker` process and one Milvus Lite
server process for preferences, all on one data dir), MiniLM embeddings, no chat model (the answer step is the
extractive no-model responder: this measures hippograph, not an LLM). An asyncio httpx driver runs `clients`
concurrent clients per level for `--duration` seconds each (closed loop, or pausing `--think` seconds on
average between an answer and the next request); every client is one of `--users` users with its own API
key, so the load is multi-tenant. Per level: throughput, p50/p95/p99 per operation, and errors (status >= 400
or a transport error). The driver shares the machine's cores with the server: the numbers are a floor.

Backends: `embedded` (the default install) and `neo4j` (tree memory in a local Neo4j 5.26 the benchmark
starts; everything else as above).

    .venv/bin/python -m hippograph.evals.bench_load --backends embedded --levels 1 8 32 128 --think 1 \
        --api-processes 3

Writes evals/results/load.json, load.md and load.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hippograph.evals.common import REPO, console, free_port, print_table, stop_process, wait_http, write_json

RESULTS = REPO / "evals" / "results"
ADMIN = "bench-admin-key"
OPS = ("search", "chat", "add")
TOPICS = ["hiking in the Alps", "sourdough baking", "jazz concerts", "learning Portuguese", "vegetarian curries",
          "cycling to work", "chess openings", "gardening tomatoes", "marathon training", "watercolour painting",
          "board games", "sailing lessons", "coffee roasting", "bird watching", "film photography"]
PLACES = ["Lisbon", "Berlin", "Kyoto", "Oslo", "Montreal", "Nairobi", "Lima", "Hanoi"]


def memory_text(rng: random.Random, i: int) -> str:
    topic, place = rng.choice(TOPICS), rng.choice(PLACES)
    return f"Note {i}: I spent the weekend {topic} near {place} and want to do more {topic.split()[0]} next month."


def query_text(rng: random.Random) -> str:
    return f"what did I do about {rng.choice(TOPICS)} in {rng.choice(PLACES)}?"


@dataclass
class Level:
    clients: int
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    errors: dict[str, int] = field(default_factory=lambda: {op: 0 for op in OPS})
    error_samples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        total = sum(len(v) for v in self.latencies.values())
        out: dict[str, Any] = {"clients": self.clients, "seconds": round(self.seconds, 2), "requests": total,
                               "throughput_rps": round(total / self.seconds, 2) if self.seconds else 0.0,
                               "errors": sum(self.errors.values()), "error_samples": self.error_samples[:5]}
        for op in OPS:
            values = np.asarray(self.latencies[op], dtype=np.float64)
            out[op] = {"n": int(values.size), "errors": self.errors[op],
                       **({f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 95, 99)}
                          if values.size else {})}
        return out


async def client_loop(http: httpx.AsyncClient, key: str, level: Level, deadline: float, mix: dict[str, float],
                      rng: random.Random, counter: list[int], think: float = 0.0) -> None:
    """One client: a request, its answer, then (with `think` > 0) a pause of `think` seconds on average
    (exponential, as people and agents pause between turns), until the deadline."""
    auth = {"Authorization": f"Bearer {key}"}
    ops, weights = list(mix), list(mix.values())
    while time.monotonic() < deadline:
        if think > 0:
            await asyncio.sleep(min(rng.expovariate(1 / think), max(0.0, deadline - time.monotonic())))
            if time.monotonic() >= deadline:
                break
        op = rng.choices(ops, weights)[0]
        if op == "search":
            request = http.post("/v1/search", json={"query": query_text(rng), "top_k": 10}, headers=auth)
        elif op == "chat":
            request = http.post("/v1/chat", json={"message": query_text(rng), "thread_id": f"load-{rng.randrange(8)}"},
                                headers=auth)
        else:
            counter[0] += 1
            request = http.post("/v1/memories", json={"text": memory_text(rng, 10_000_000 + counter[0])},
                                headers=auth)
        started = time.perf_counter()
        try:
            response = await request
            failed = response.status_code >= 400
            detail = f"{op} {response.status_code} {response.text[:200]}"
        except httpx.HTTPError as exc:
            failed, detail = True, f"{op} {type(exc).__name__}: {exc}"
        elapsed = (time.perf_counter() - started) * 1000
        if failed:
            level.errors[op] += 1
            if len(level.error_samples) < 20:
                level.error_samples.append(detail)
        else:
            level.latencies[op].append(elapsed)


async def run_level(url: str, keys: list[str], clients: int, duration: float, mix: dict[str, float],
                    seed: int, think: float = 0.0) -> Level:
    """`clients` concurrent clients for `duration` seconds. Each client has its own connection, as separate
    agents and apps do (one shared pool would funnel all of them through the few connections it keeps warm,
    which then sit on whichever server process accepted them)."""
    level = Level(clients)
    one = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        https = [await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=120, limits=one))
                 for _ in range(clients)]
        started = time.monotonic()
        deadline = started + duration
        counter = [seed * 1_000_000]
        await asyncio.gather(*(client_loop(https[i], keys[i % len(keys)], level, deadline, mix,
                                           random.Random(seed * 1000 + i), counter, think)
                               for i in range(clients)))
        level.seconds = time.monotonic() - started
    return level


# -- servers ------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    env: dict[str, str]
    workers: int
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    closers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        for close in reversed(self.closers):
            close()


def start_stack(backend: str, tmp: Path, api_processes: int) -> Stack:
    env = {"HIPPOGRAPH_DATA_DIR": str(tmp / "data"), "HIPPOGRAPH_EMBEDDER": "minilm", "HIPPOGRAPH_CHAT_MODEL": "",
           "HIPPOGRAPH_ADMIN_KEY": ADMIN}
    stack = Stack(env=env, workers=api_processes)
    if backend == "neo4j":
        from hippograph.stores.tree.neo4j_server import LocalNeo4j

        server = LocalNeo4j(tmp / "neo4j")
        server.start()
        stack.closers.append(server.close)
        env.update({"HIPPOGRAPH_TREE_BACKEND": "neo4j", "HIPPOGRAPH_NEO4J_URI": server.uri,
                    "HIPPOGRAPH_NEO4J_USER": server.auth[0], "HIPPOGRAPH_NEO4J_PASSWORD": server.auth[1]})
    return stack


def seed(stack: Stack, users: int, per_user: int, rng: random.Random) -> None:
    """Users and their memories, written through `Memory` (the public API) before the server starts."""
    from hippograph.memory import Memory
    from hippograph.settings import Settings

    saved = dict(os.environ)
    os.environ.update(stack.env)
    try:
        memory = Memory(Settings(worker_in_process=False))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        for u in range(users):
            user = f"load-{u:03d}"
            memory.create_user(user)
            memory.add([{"role": "user", "content": memory_text(rng, i)} for i in range(per_user)], user_id=user)
    finally:
        memory.close()


def start_api(stack: Stack, tmp: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """`hippograph serve --processes N`, as a user starts it (N > 1: N API processes, a worker process and a
    Milvus Lite server process for preferences; 1: one process with the worker inside)."""
    port = free_port()
    log = (tmp / "api.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hippograph", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--processes", str(stack.workers), "--log-level", "warning"],
        cwd=REPO, env={**os.environ, **stack.env}, stdout=log, stderr=subprocess.STDOUT)
    stack.procs.append(proc)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/healthz", proc)
    return url, proc


def api_keys(url: str, users: int) -> list[str]:
    keys = []
    with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=60) as admin:
        for u in range(users):
            r = admin.post(f"/v1/users/load-{u:03d}/keys")
            r.raise_for_status()
            keys.append(r.json()["api_key"])
    return keys


def bench_backend(backend: str, processes: int, args: argparse.Namespace, mix: dict[str, float]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"hippograph-load-{backend}-"))
    stack = start_stack(backend, tmp, processes)
    try:
        t0 = time.monotonic()
        seed(stack, args.users, args.memories, random.Random(args.seed))
        console.print(f"[{backend}] seeded {args.users} users x {args.memories} memories in "
                      f"{time.monotonic() - t0:.0f}s")
        url, _ = start_api(stack, tmp)
        keys = api_keys(url, args.users)
        asyncio.run(run_level(url, keys, 4 * processes, 5.0, mix, seed=0))  # warm-up: caches in every process
        levels = []
        for n, clients in enumerate(args.levels, start=1):
            level = asyncio.run(run_level(url, keys, clients, args.duration, mix, seed=n, think=args.think))
            summary = level.summary()
            levels.append(summary)
            console.print(f"[{backend} x{processes}] {clients:>4} clients: {summary['throughput_rps']:.1f} req/s, "
                          f"search p95 {summary['search'].get('p95_ms', float('nan')):.0f} ms, "
                          f"errors {summary['errors']}")
        return {"backend": backend, "api_processes": stack.workers, "levels": levels}
    finally:
        stack.close()


# -- report -------------------------------------------------------------------------------------------------


def clients_kind(report: dict[str, Any]) -> str:
    think = report.get("think_s", 0.0)
    return (f"clients pausing {think:g} s on average (exponential) between an answer and their next request"
            if think else "closed-loop clients (each sends its next request as soon as it has an answer)")


def markdown(report: dict[str, Any], stem: str = "load") -> str:
    mix = ", ".join(f"{op} {share:.0%}" for op, share in report["mix"].items())
    lines = [
        "# HTTP server under load (`evals/bench_load.py`)",
        "",
        f"{report['machine']}; {report['users']} users with {report['memories_per_user']} memories each, "
        f"MiniLM, no chat model; mix {mix}; {report['duration_s']:.0f} s per level of {clients_kind(report)}. "
        f"Errors = HTTP status >= 400 or a transport error. Chart: `{stem}.png`; raw: `{stem}.json`.",
        "",
        "| backend | API processes | clients | req/s | errors | search p50/p95/p99 ms | chat p50/p95/p99 ms "
        "| add p50/p95/p99 ms |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for run in report["runs"]:
        for lv in run["levels"]:
            cells = []
            for op in OPS:
                s = lv[op]
                cells.append(f"{s['p50_ms']:.0f} / {s['p95_ms']:.0f} / {s['p99_ms']:.0f}" if s["n"] else "-")
            lines.append(f"| {run['backend']} | {run['api_processes']} | {lv['clients']} | {lv['throughput_rps']:.1f} "
                         f"| {lv['errors']} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def chart(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for run in report["runs"]:
        clients = [lv["clients"] for lv in run["levels"]]
        name = f"{run['backend']} x{run['api_processes']}"
        right.plot(clients, [lv["throughput_rps"] for lv in run["levels"]], marker="o", label=name)
        for op, style in (("search", "-"), ("chat", "--"), ("add", ":")):
            p95 = [lv[op].get("p95_ms", np.nan) for lv in run["levels"]]
            left.plot(clients, p95, style, marker="o", label=f"{name} {op}")
    left.axhline(150, color="grey", linewidth=0.8)
    left.text(1, 160, "search goal at 32 clients: p95 150 ms", fontsize=8, color="grey")
    for ax, title, ylabel in ((left, "p95 latency", "ms"), (right, "throughput", "requests / s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    left.set_yscale("log")
    fig.suptitle(f"hippograph HTTP server under load: {clients_kind(report)}\n{report['machine']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="*", default=["embedded", "neo4j"], choices=["embedded", "neo4j"])
    ap.add_argument("--levels", type=int, nargs="*", default=[1, 8, 32, 128])
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--memories", type=int, default=200, help="memories per user before the run")
    ap.add_argument("--api-processes", type=int, nargs="*", default=[1],
                    help="`hippograph serve --processes N`, one run per value (1: the worker inside the one process)")
    ap.add_argument("--mix", default="search=0.7,chat=0.2,add=0.1")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean seconds a client pauses between answer and next request (0: closed loop, no pause)")
    ap.add_argument("--out", type=Path, default=RESULTS / "load")
    args = ap.parse_args(argv)
    mix = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    if set(mix) - set(OPS):
        ap.error(f"--mix takes {', '.join(OPS)}")
    report: dict[str, Any] = {"machine": f"{os.cpu_count()} CPUs, driver and server on one machine",
                              "duration_s": args.duration, "users": args.users, "memories_per_user": args.memories,
                              "mix": mix, "think_s": args.think, "runs": []}
    for backend in args.backends:
        for processes in args.api_processes:
            report["runs"].append(bench_backend(backend, processes, args, mix))
    write_json(args.out.with_suffix(".json"), report)
    args.out.with_suffix(".md").write_text(markdown(report, args.out.stem))
    chart(report, args.out.with_suffix(".png"))
    rows = [[run["backend"], run["api_processes"], lv["clients"], lv["throughput_rps"], lv["errors"],
             lv["search"].get("p95_ms", float("nan")), lv["chat"].get("p95_ms", float("nan")),
             lv["add"].get("p95_ms", float("nan"))] for run in report["runs"] for lv in run["levels"]]
    print_table("HTTP load", ["backend", "processes", "clients", "req/s", "errors", "search p95", "chat p95",
                              "add p95"], rows)
    console.print(f"wrote {args.out.with_suffix('.json')}, .md, .png")
    return report


if __name__ == "__main__":
    main()
