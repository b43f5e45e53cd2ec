"""Start-up of the command line: each command as a fresh process, timed from outside.

    python -m hippograph.evals.bench_startup [--runs 7] [--baseline /path/to/other/checkout]

A data dir gets one `hippograph demo` (the real embedder), then `--help`, `stats` and `search` run `--runs` times
each after a warm-up run (bytecode cached, as after a user's first run). Each run's wall time and CPU time come
from the operating system's accounting of the finished child (`os.wait4`). With `--baseline`, the
same commands run from that checkout too (its source first on `PYTHONPATH`), alternating run by run, so a busy
machine slows both alike; the table then shows the ratio. Prints a table, writes evals/out/bench_startup.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from hippograph.evals.common import OUT, console, print_table, write_json

COMMANDS = {"--help": ["--help"], "stats": ["stats", "--user", "demo"],
            "search": ["search", "lisbon", "--user", "demo"]}


def timed_run(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, float]:
    """One whole process: wall seconds and CPU seconds (user + sys). (Not peak memory: a forked child's peak
    counts the launcher's own pages from before its exec.)"""
    with tempfile.TemporaryFile() as errors:
        began = time.perf_counter()
        child = subprocess.Popen([sys.executable, "-m", "hippograph", *args], env=env, cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - began
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"hippograph {' '.join(args)} exited {child.returncode}: {errors.read()!r}")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime}


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    return {key: {"median": statistics.median(r[key] for r in runs), "min": min(r[key] for r in runs),
                  "max": max(r[key] for r in runs)} for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="another checkout of hippograph to compare against")
    parser.add_argument("--out", type=Path, default=OUT / "bench_startup.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env.update(HIPPOGRAPH_DATA_DIR=str(home / "data"), HIPPOGRAPH_WORKER_IN_PROCESS="false",
                   PYTHONPYCACHEPREFIX=str(home / "pycache"))  # cached bytecode, as after a first run
        variants = {"now": env}
        if args.baseline:
            variants["baseline"] = {**env, "PYTHONPATH": str(args.baseline.resolve())}
        console.print("storing the demo memories (real embedder) ...")
        subprocess.run([sys.executable, "-m", "hippograph", "demo"], env=env, cwd=home, check=True,
                       stdout=subprocess.DEVNULL)
        results: dict[str, dict[str, Any]] = {}
        for name, command in COMMANDS.items():
            runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for variant_env in variants.values():
                timed_run(command, variant_env, home)  # warm-up: bytecode compiled and cached
            for _ in tqdm(range(args.runs), desc=f"hippograph {name}", leave=False):
                for variant, variant_env in variants.items():
                    runs[variant].append(timed_run(command, variant_env, home))
            results[name] = {variant: summary(r) for variant, r in runs.items()}
            if args.baseline:
                ratios = [a["wall_s"] / b["wall_s"] for a, b in zip(runs["now"], runs["baseline"], strict=True)]
                results[name]["wall_ratio_median"] = statistics.median(ratios)

    columns = ["command", "wall s median", "wall s min-max", "CPU s"]
    if args.baseline:
        columns += ["baseline wall s", "ratio now/baseline"]
    rows = []
    for name, result in results.items():
        now = result["now"]
        row = [f"hippograph {name}", now["wall_s"]["median"], f"{now['wall_s']['min']:.2f}-{now['wall_s']['max']:.2f}",
               now["cpu_s"]["median"]]
        if args.baseline:
            row += [result["baseline"]["wall_s"]["median"], result["wall_ratio_median"]]
        rows.append(row)
    print_table(f"start-up, whole processes ({args.runs} runs after a warm-up; medians)", columns, rows)
    load = os.getloadavg()[0]
    path = write_json(args.out, {"runs": args.runs, "load_avg_1min_at_end": load,
                                 "baseline": str(args.baseline) if args.baseline else None, "commands": results})
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
