"""`hippograph eval ...`: offline evals and benchmarks.

The runtime never imports `evals`: this Typer group plugs into the `hippograph` CLI through the entry point group
`hippograph.cli` (pyproject), so the layers point one way (evals on top) and `hippograph --help` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

eval_app = typer.Typer(help="Offline evals and benchmarks (LoCoMo, LongMemEval, ...).", no_args_is_help=True)
console = Console()


def _ks(value: str) -> list[int]:
    try:
        ks = sorted({int(v) for v in value.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter(f"--k must be comma-separated integers, not {value!r}") from None
    if not ks or ks[0] < 1:
        raise typer.BadParameter("--k needs at least one positive integer")
    return ks


def _default_data(*parts: str) -> Path:
    from hippograph.evals.loaders import shared_data_dir

    return shared_data_dir().joinpath(*parts)


@eval_app.command("locomo")
def locomo(
    data: Annotated[Path | None, typer.Option(help="A LoCoMo-format JSON file (default: the shared dev set).")] = None,
    out: Annotated[Path, typer.Option(help="Output dir for locomo.json, locomo.md, locomo.png.")] = Path(
        "evals/results"),
    backend: Annotated[str, typer.Option(help="Tree backend: embedded or neo4j.")] = "embedded",
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "5,10,20",
    limit: Annotated[int | None, typer.Option(help="Only the first N conversations.")] = None,
    sample: Annotated[list[str] | None, typer.Option(help="Only these sample ids (repeatable).")] = None,
    systems: Annotated[str | None, typer.Option(
        help="Comma-separated systems (default: hippograph,hippograph_chat,bm25,dense,langgraph_inmemory, plus "
             "mem0 when the `peers` extra is installed).")] = None,
    ablations: Annotated[bool, typer.Option(help="Also run the ablation steps (adds locomo_ablations.*).")] = False,
) -> None:
    """LoCoMo evidence recall@k and session_any@k: hippograph through its public API (`Memory.ingest` and the chat
    graph to write, `Memory.search` to ask) vs BM25, dense, InMemoryStore and mem0 on the same turns."""
    from hippograph.evals.locomo import ablation_markdown, run_ablations, run_locomo
    from hippograph.evals.report import markdown_table

    if backend not in ("embedded", "neo4j"):
        raise typer.BadParameter("--backend must be embedded or neo4j")
    path = data or _default_data("locomo", "locomo10_dev.json")
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {path}")
    ks = _ks(k)
    from hippograph.evals.baselines import CachedEmbeddings
    from hippograph.stores.embedders import MiniLMEmbeddings

    embeddings = CachedEmbeddings(MiniLMEmbeddings())  # one cache: the ablations re-embed nothing the run did
    report = run_locomo(path, out, backend=backend, ks=ks, limit=limit, samples=sample, embeddings=embeddings,
                        systems=[s.strip() for s in systems.split(",") if s.strip()] if systems else None)
    console.print(markdown_table(report, title="LoCoMo evidence recall"))
    if ablations:
        rows = run_ablations(path, ks=ks, limit=limit, samples=sample, embeddings=embeddings)
        (out / "locomo_ablations.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
        table = ablation_markdown(rows)
        (out / "locomo_ablations.md").write_text(table, encoding="utf-8")
        with (out / "locomo.md").open("a", encoding="utf-8") as md:
            md.write("\n## Ablations (cumulative; each row adds one idea)\n\n" + table)
        console.print(table)
    console.print(f"[dim]wrote {out / 'locomo.json'}, {out / 'locomo.md'}, {out / 'locomo.png'}[/dim]")


@eval_app.command("longmemeval")
def longmemeval(
    data: Annotated[Path | None, typer.Option(help="A LongMemEval JSON file (original schema).")] = None,
    out: Annotated[Path, typer.Option(help="Output dir for longmemeval.json/.md.")] = Path("evals/results"),
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "5,10,20",
    limit: Annotated[int | None, typer.Option(help="Only the first N questions.")] = None,
) -> None:
    """LongMemEval turn recall@k, session recall and session_any@k per question type: hippograph through
    `Memory.ingest` + `Memory.search` vs BM25 and dense on the same turns."""
    from hippograph.evals.longmemeval import run_longmemeval
    from hippograph.evals.report import markdown_table

    path = data or _default_data("longmemeval", "longmemeval_sample2.json")
    if not path.is_file():
        raise typer.BadParameter(f"no such file: {path}")
    report = run_longmemeval(path, ks=_ks(k), limit=limit)
    out.mkdir(parents=True, exist_ok=True)
    (out / "longmemeval.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    table = markdown_table(report, title="LongMemEval recall")
    (out / "longmemeval.md").write_text(table, encoding="utf-8")
    console.print(table)


@eval_app.command("prefeval")
def prefeval(
    data: Annotated[Path | None, typer.Option(help="A PrefEval-layout dir (default: ../shared/data/prefeval).")
                    ] = None,
    out: Annotated[Path, typer.Option(help="Output dir for prefeval.json, .md and .png.")] = Path(
        "evals/results/prefeval"),
    k: Annotated[str, typer.Option("--k", help="Distractor turns, comma-separated.")] = "10,300",
    limit: Annotated[int | None, typer.Option(help="Only the first N items per topic.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for distractor sampling.")] = 0,
    kinds: Annotated[str, typer.Option(help="explicit,implicit_choice,implicit_persona")] = (
        "explicit,implicit_choice,implicit_persona"),
    model: Annotated[str | None, typer.Option(help="Extract with this chat model (init_chat_model string).")
                     ] = None,
) -> None:
    """PrefEval retrieval: is the stated preference in the top 1/3/5 recalled, with k distractor turns?"""
    from hippograph.evals.prefeval import KINDS, run_prefeval

    data = data or _default_data("prefeval")
    if not (data / "explicit_preference").is_dir():
        raise typer.BadParameter(f"{data} does not look like PrefEval data (no explicit_preference/)")
    chosen = [x.strip() for x in kinds.split(",") if x.strip()]
    if bad := [x for x in chosen if x not in KINDS]:
        raise typer.BadParameter(f"unknown kinds {bad}; choose from {', '.join(KINDS)}")
    ks = _ks(k)
    chat_model = None
    if model:
        from hippograph.stores.services import load_chat_model

        chat_model = load_chat_model(model)
    results = run_prefeval(data, out, ks=ks, kinds=chosen, limit_per_topic=limit, seed=seed,
                           chat_model=chat_model)
    table = Table(title="PrefEval preference retrieval")
    for col in ("kind", "k", "top1", "top3", "top5"):
        table.add_column(col)
    for kind, per_k in results.items():
        for kk, res in per_k.items():
            o = res["overall"]
            table.add_row(kind, kk, f"{o['top1']:.3f}", f"{o['top3']:.3f}", f"{o['top5']:.3f}")
    console.print(table)
    console.print(f"wrote {out / 'prefeval.json'}, {out / 'prefeval.md'}, {out / 'prefeval.png'}")
