"""Eval reports: `NAME.json` (the numbers), `NAME.md` (a table) and `NAME.png` (recall by category, per system)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(report: dict[str, Any], *, title: str = "") -> str:
    systems: dict[str, dict[str, Any]] = report.get("systems", {})
    ks = report.get("config", {}).get("ks") or sorted(
        int(k.split("@")[1]) for k in next(iter(systems.values()), {}) if k.startswith("recall@")
    )
    sessions = any(f"session_any@{ks[0]}" in row for row in systems.values())
    lines = [f"## {title}", ""] if title else []
    note = report.get("questions_note", "categories 1-4 with evidence")
    lines.append(f"{report.get('questions', 0)} questions ({note}).")
    lines.append("")
    head = ["system", *[f"R@{k}" for k in ks], *([f"session_any@{k}" for k in ks] if sessions else []),
            "search p50 ms", "search p95 ms", "CPU p50 ms", "CPU p95 ms", "ingest turns/s"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in systems.items():
        cells = [name, *[_fmt(row.get(f"recall@{k}")) for k in ks],
                 *([_fmt(row.get(f"session_any@{k}")) for k in ks] if sessions else []),
                 _fmt(row.get("search_p50_ms")), _fmt(row.get("search_p95_ms")), _fmt(row.get("search_cpu_p50_ms")),
                 _fmt(row.get("search_cpu_p95_ms")), _fmt(row.get("ingest_turns_per_s"))]
        lines.append("| " + " | ".join(cells) + " |")
    categories: list[str] = []
    for row in systems.values():
        categories += [c for c in row.get("by_category", {}) if c not in categories]
    if categories:
        k = 10 if 10 in ks else ks[len(ks) // 2]
        metrics = [f"recall@{k}", *([f"session_any@{k}"] if sessions else [])]
        for metric in metrics:
            label = f"R@{k}" if metric.startswith("recall") else metric
            lines += ["", f"{label} by category:", ""]
            head = ["system", *[f"{c} ({systems[next(iter(systems))]['by_category'].get(c, {}).get('questions', '')})"
                                for c in categories]]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for name, row in systems.items():
                by = row.get("by_category", {})
                lines.append("| " + " | ".join([name, *[_fmt(by.get(c, {}).get(metric)) for c in categories]])
                             + " |")
    qa = report.get("qa") or {}
    if qa.get("skipped"):
        lines += ["", f"QA skipped: {qa.get('reason', '')}"]
    elif qa:
        lines += ["", f"QA (hippograph's top 10 memories, answered and judged by {qa['model']}):", "",
                  "| category | questions | token F1 | judge accuracy |", "|---|---|---|---|"]
        for name, row in [*qa.get("by_category", {}).items(), ("overall", qa)]:
            lines.append(f"| {name} | {row['questions']} | {_fmt(row['f1'])} | {_fmt(row['judge_accuracy'])} |")
    return "\n".join(lines) + "\n"


def bar_chart(report: dict[str, Any], path: Path, *, k: int = 10, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems: dict[str, dict[str, Any]] = report.get("systems", {})
    categories: list[str] = []
    for row in systems.values():
        categories += [c for c in row.get("by_category", {}) if c not in categories]
    groups = [*categories, "overall"]
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4))
    for i, (name, row) in enumerate(systems.items()):
        values = [row.get("by_category", {}).get(c, {}).get(f"recall@{k}", 0.0) for c in categories]
        values.append(row.get(f"recall@{k}", 0.0))
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name)
    ax.set_xticks(x, groups)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"evidence recall@{k}")
    ax.set_title(title or f"recall@{k} by category")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(report: dict[str, Any], out_dir: Path, *, name: str, title: str = "") -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{name}.json", "md": out_dir / f"{name}.md", "png": out_dir / f"{name}.png"}
    paths["json"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    paths["md"].write_text(markdown_table(report, title=title), encoding="utf-8")
    k = 10 if 10 in (report.get("config", {}).get("ks") or [10]) else report["config"]["ks"][0]
    bar_chart(report, paths["png"], k=k, title=title)
    return paths
