"""Document ingestion throughput per format (fast mode) and where the time goes.

Generates a deterministic synthetic corpus per format (md, txt, html, csv, json, docx, pptx, xlsx, pdf) with
nested headings where the format has them, ingests each format into its own cube through the ingest graph, and
reports MB/s, chunks/s and pages/s (pdf pages, pptx slides) plus the per-stage time: convert (markitdown),
chunk (chonkie / langchain splitters), extract, embed (MiniLM by default), write (tree store + edges +
registry) and dedup (minus embed). Stage times are summed over documents (they run as parallel `Send`
branches, so the sum can exceed the wall time). A re-ingest of everything measures the unchanged-file path.

    .venv/bin/python -m hippograph.evals.bench_ingest [--docs 6] [--embedder minilm|hashing] [--chunker recursive]

Writes evals/out/bench_ingest.json.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hippograph.evals.common import OUT, console, print_table, write_json

WORDS = [
    "memory", "graph", "agent", "retrieval", "scheduler", "pipeline", "vector", "token", "section", "chapter",
    "invoice", "shipment", "region", "telescope", "meteor", "garden", "recipe", "battery", "protocol",
    "cluster", "replica",
    "index", "budget", "forecast", "contract", "harbour", "festival", "museum", "glacier", "volcano",
    "orchard", "library",
]


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 18))]
    return " ".join(words).capitalize() + "."


def _paragraph(rng: random.Random, sentences: int = 5) -> str:
    return " ".join(_sentence(rng) for _ in range(sentences))


def _outline(rng: random.Random, chapters: int = 4, sections: int = 3) -> list[tuple[int, str, str]]:
    """(level, heading, paragraph) triples."""
    out = []
    for c in range(chapters):
        out.append((1, f"Chapter {c + 1}: {rng.choice(WORDS).title()}", _paragraph(rng)))
        for s in range(sections):
            out.append((2, f"Section {c + 1}.{s + 1} {rng.choice(WORDS)}", _paragraph(rng, 6)))
    return out


def write_md(path: Path, rng: random.Random) -> int:
    path.write_text("\n\n".join(f"{'#' * lvl} {h}\n\n{p}" for lvl, h, p in _outline(rng)), encoding="utf-8")
    return 1


def write_txt(path: Path, rng: random.Random) -> int:
    path.write_text("\n\n".join(p for _, _, p in _outline(rng)), encoding="utf-8")
    return 1


def write_html(path: Path, rng: random.Random) -> int:
    body = "".join(f"<h{lvl}>{h}</h{lvl}><p>{p}</p>" for lvl, h, p in _outline(rng))
    path.write_text(f"<html><head><title>{path.stem}</title></head><body>{body}</body></html>", encoding="utf-8")
    return 1


def write_csv(path: Path, rng: random.Random) -> int:
    rows = ["id,region,item,note"] + [f"{i},{rng.choice(WORDS)},{rng.choice(WORDS)},{_sentence(rng)}"
                                      for i in range(120)]
    path.write_text("\n".join(rows), encoding="utf-8")
    return 1


def write_json_doc(path: Path, rng: random.Random) -> int:
    data = [{"title": h, "level": lvl, "text": p} for lvl, h, p in _outline(rng)]
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return 1


def write_docx(path: Path, rng: random.Random) -> int:
    import docx

    document = docx.Document()
    for lvl, h, p in _outline(rng):
        document.add_heading(h, level=lvl)
        document.add_paragraph(p)
    document.save(str(path))
    return 1


def write_pptx(path: Path, rng: random.Random) -> int:
    from pptx import Presentation

    deck = Presentation()
    slides = 0
    for _lvl, h, p in _outline(rng):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = h
        slide.placeholders[1].text = p
        slides += 1
    deck.save(str(path))
    return slides


def write_xlsx(path: Path, rng: random.Random) -> int:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["id", "region", "item", "note"])
    for i in range(120):
        sheet.append([i, rng.choice(WORDS), rng.choice(WORDS), _sentence(rng)])
    book.save(str(path))
    return 1


def write_pdf(path: Path, rng: random.Random) -> int:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for lvl, h, p in _outline(rng):
        if lvl == 1:
            pdf.add_page()
        pdf.multi_cell(0, 6, h, new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 6, p, new_x="LMARGIN", new_y="NEXT")
    pdf.output(str(path))
    return pdf.pages_count


WRITERS: dict[str, Callable[[Path, random.Random], int]] = {
    "md": write_md, "txt": write_txt, "html": write_html, "csv": write_csv, "json": write_json_doc,
    "docx": write_docx, "pptx": write_pptx, "xlsx": write_xlsx, "pdf": write_pdf,
}
STAGES = ["convert", "chunk", "extract", "embed", "dedup", "write"]


def run(docs: int, embedder: str, chunker: str, formats: list[str]) -> dict[str, Any]:
    from hippograph.graphs.ingest import IngestContext, build_ingest_graph
    from hippograph.settings import Settings
    from hippograph.stores.services import Services

    root = Path(tempfile.mkdtemp(prefix="bench_ingest_"))
    settings = Settings(data_dir=root / "data", embedder=embedder, chunker=chunker)  # type: ignore[arg-type]
    services = Services.from_settings(settings)
    graph = build_ingest_graph(services)
    services.registry.ensure_user("bench")
    # Model and tokenizer loads are start-up cost, not ingest time.
    services.embeddings.embed_query("warm up")
    from hippograph.nodes.ingest_chunk import chunk_markdown
    from hippograph.nodes.ingest_convert import _markitdown

    chunk_markdown("# warm\n\nup the chunker imports", {"chunker": chunker, "chunk_tokens": 64, "chunk_overlap": 0,
                                                        "tokenizer": settings.chunk_tokenizer})
    _markitdown()
    results: dict[str, Any] = {}
    for fmt in formats:
        folder = root / "corpus" / fmt
        folder.mkdir(parents=True)
        rng = random.Random(fmt)
        pages = sum(WRITERS[fmt](folder / f"doc{i}.{fmt}", rng) for i in range(docs))
        size = sum(p.stat().st_size for p in folder.iterdir())
        cube = f"bench.{fmt}"
        services.registry.create_cube("bench", cube)
        context = IngestContext(user_id="bench", cube_id=cube)
        started = time.perf_counter()
        out = graph.invoke({"paths": [str(folder)]}, context=context)
        wall = time.perf_counter() - started
        again_started = time.perf_counter()
        again = graph.invoke({"paths": [str(folder)]}, context=context)
        rewall = time.perf_counter() - again_started
        summary = out["summary"]
        stages = dict(summary["stage_ms"])
        stages["write"] = stages.get("write", 0.0) - stages.get("embed", 0.0)  # write embeds, step by step
        results[fmt] = {
            "files": docs, "bytes": size, "pages": pages, "chunks": summary["chunks"], "memories": summary["added"],
            "errors": summary["errors"], "wall_s": wall, "mb_per_s": size / 1e6 / wall,
            "chunks_per_s": summary["chunks"] / wall, "pages_per_s": pages / wall,
            "stage_ms": {k: round(stages.get(k, 0.0), 1) for k in STAGES},
            "reingest_wall_s": rewall, "reingest_added": again["summary"]["added"],
        }
        console.print(f"{fmt}: {summary['chunks']} chunks in {wall:.2f}s")
    services.close()
    return {"embedder": embedder, "chunker": chunker, "chunk_tokens": settings.chunk_tokens,
            "tokenizer": settings.chunk_tokenizer, "docs_per_format": docs, "formats": results}


def write_big_text(path: Path, megabytes: float) -> int:
    """A plain-text file of about `megabytes` MB (paragraphs of the corpus vocabulary, no headings)."""
    rng = random.Random("big")
    size, parts, total = int(megabytes * 1e6), [], 0
    while total < size:
        paragraph = _paragraph(rng, rng.randint(3, 8))
        parts.append(paragraph)
        total += len(paragraph) + 2
    path.write_text("\n\n".join(parts)[:size], encoding="utf-8")
    return path.stat().st_size


def run_big(megabytes: float, embedder: str, chunker: str) -> dict[str, Any]:
    """The big-file case: one plain-text file through the ingest graph against the raw embedder on the same
    chunk texts (same process, same model; half the raw chunks before the graph, half after). Both show progress
    per chunk."""
    from rich.progress import Progress

    from hippograph.graphs.ingest import IngestContext, build_ingest_graph
    from hippograph.nodes.ingest_chunk import chunk_markdown
    from hippograph.settings import Settings
    from hippograph.stores.embedders import embed_array
    from hippograph.stores.services import Services

    root = Path(tempfile.mkdtemp(prefix="bench_ingest_big_"))
    settings = Settings(data_dir=root / "data", embedder=embedder, chunker=chunker,  # type: ignore[arg-type]
                        worker_in_process=False)
    services = Services.from_settings(settings)
    graph = build_ingest_graph(services)
    services.registry.ensure_user("bench")
    services.embeddings.embed_query("warm up")
    path = root / "big.txt"
    size = write_big_text(path, megabytes)
    config = {"chunker": chunker, "chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
              "tokenizer": settings.chunk_tokenizer}
    started = time.perf_counter()
    chunks, _ = chunk_markdown(path.read_text(encoding="utf-8"), config)
    chunk_s = time.perf_counter() - started
    texts = [c["text"] for c in chunks]
    step = settings.ingest_batch
    # The raw embedder runs on the first half of the chunks before the graph and on the second half after it:
    # on a shared machine whose load drifts, both phases then see the same stretch of time on average.
    half = (len(texts) // 2 // step) * step or len(texts)
    with Progress(console=console) as progress:
        raw = progress.add_task("raw embedder", total=len(texts))

        def embed_raw(part: list[str]) -> float:
            started = time.perf_counter()
            for at in range(0, len(part), step):
                embed_array(services.embeddings, part[at : at + step])
                progress.update(raw, advance=len(part[at : at + step]))
            return time.perf_counter() - started

        raw_s = embed_raw(texts[:half])
        task = progress.add_task("ingest graph", total=len(texts))
        started = time.perf_counter()
        out: dict[str, Any] = {}
        for _namespace, kind, value in graph.stream(
                {"paths": [str(path)]}, context=IngestContext(user_id="bench"), stream_mode=["custom", "values"],
                subgraphs=True):
            if kind == "custom" and isinstance(value, dict) and value.get("ingest") == "chunks":
                progress.update(task, advance=value["step"])
            elif kind == "values" and not _namespace and isinstance(value, dict):
                out = value
        wall = time.perf_counter() - started
        raw_s += embed_raw(texts[half:])
    summary = out["summary"]
    stages = dict(summary["stage_ms"])
    stages["write"] = stages.get("write", 0.0) - stages.get("embed", 0.0)
    services.close()
    return {"megabytes": size / 1e6, "bytes": size, "chunks": summary["chunks"], "errors": summary["errors"],
            "chunking_s": chunk_s, "raw_embed_s": raw_s, "raw_chunks_per_s": len(texts) / raw_s,
            "ingest_wall_s": wall, "ingest_chunks_per_s": summary["chunks"] / wall,
            "ratio": (summary["chunks"] / wall) / (len(texts) / raw_s), "write_step": step,
            # same run, same moment: the share of the graph's wall time spent in the embedder (1 = no overhead);
            # on a shared machine this is steadier than the ratio of two phases run one after the other
            "embed_share_of_wall": summary["stage_ms"].get("embed", 0.0) / 1000.0 / wall,
            "stage_ms": {k: round(stages.get(k, 0.0), 1) for k in STAGES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=6, help="documents per format")
    parser.add_argument("--embedder", default="minilm")
    parser.add_argument("--chunker", default="recursive", choices=["recursive", "sentence", "langchain"])
    parser.add_argument("--formats", default=",".join(WRITERS))
    parser.add_argument("--big-mb", type=float, default=5.0,
                        help="size of the one big plain-text file (MB) measured against the raw embedder; 0 skips")
    parser.add_argument("--out", type=Path, default=OUT / "bench_ingest.json")
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    report = run(args.docs, args.embedder, args.chunker, formats) if formats else {
        "embedder": args.embedder, "chunker": args.chunker, "formats": {}}
    if args.big_mb > 0:
        big = report["big_text"] = run_big(args.big_mb, args.embedder, args.chunker)
        print_table(f"One {big['megabytes']:.1f} MB text file ({args.embedder}): ingest graph vs raw embedder, same "
                    "chunks", ["chunks", "chunking s", "raw embedder chunks/s", "ingest chunks/s", "ratio",
                               "embed share of ingest wall", "where the time goes"],
                    [[big["chunks"], big["chunking_s"], big["raw_chunks_per_s"], big["ingest_chunks_per_s"],
                      big["ratio"], big["embed_share_of_wall"],
                      " ".join(f"{k} {v / 1000:.1f}s" for k, v in big["stage_ms"].items() if v)]])
    rows = []
    for fmt, r in report["formats"].items():
        total = sum(r["stage_ms"].values()) or 1.0
        share = " ".join(f"{k} {100 * v / total:.0f}%" for k, v in r["stage_ms"].items() if v >= 0.005 * total)
        rows.append([fmt, r["files"], r["pages"], f"{r['bytes'] / 1024:.0f}", r["chunks"], r["wall_s"],
                     r["mb_per_s"] * 1000, r["chunks_per_s"], r["pages_per_s"], r["reingest_added"], share])
    if rows:
        print_table(f"Ingest throughput, fast mode ({report['embedder']}, {report['chunker']}, "
                    f"{report['chunk_tokens']} {report['tokenizer']} tokens)",
                    ["format", "files", "pages", "KiB", "chunks", "wall s", "KB/s", "chunks/s", "pages/s",
                     "re-ingest added", "where the time goes"], rows)
    console.print(f"wrote {write_json(args.out, report)}")


if __name__ == "__main__":
    main()
