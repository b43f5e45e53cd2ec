"""Bad input to the Python facade (`Memory`) is a typed `InvalidInputError` with a reason, with the same limits as
REST (`stores/limits.py`), and nothing is written; one bad document in an ingest batch is an error row."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hippograph.memory import Memory
from hippograph.settings import Settings
from hippograph.stores import limits
from hippograph.stores.errors import HippographError, InvalidInputError

DIM = 64


@pytest.fixture(scope="module")
def memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Memory]:
    data = tmp_path_factory.mktemp("facade") / "data"
    with Memory(Settings(data_dir=data, embedder=f"hashing:{DIM}", worker_in_process=False,
                         chunk_tokenizer="word")) as mem:
        mem.add("I drink green tea every morning", user_id="ana")
        mem.create_cube("bea.work", user_id="bea")
        yield mem


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def _count(memory: Memory, user: str) -> int:
    return len(memory.list(user_id=user, include_inactive=True, limit=1000))


@pytest.mark.parametrize("top_k", [0, -1, 10**9, "5", True, 2.5, None])
def test_chat_top_k_out_of_range_is_typed(memory: Memory, top_k: Any) -> None:
    if top_k is None:  # None means "the configured default": not an error
        assert memory.chat("what do I drink?", user_id="ana", top_k=None).answer
        return
    before = _count(memory, "ana")
    with pytest.raises(InvalidInputError, match="top_k"):
        memory.chat("what do I drink?", user_id="ana", top_k=top_k)
    assert _count(memory, "ana") == before  # the turn was not remembered


@pytest.mark.parametrize("top_k", [0, -1, limits.TOP_K_MAX + 1, "5", False])
def test_search_top_k_out_of_range_is_typed(memory: Memory, top_k: Any) -> None:
    with pytest.raises(InvalidInputError, match="top_k"):
        memory.search("tea", user_id="ana", top_k=top_k)


@pytest.mark.parametrize("threshold", [math.nan, math.inf, -math.inf, -1, 5, 1.0001, "0.5", None, True])
def test_search_threshold_out_of_range_is_typed(memory: Memory, threshold: Any) -> None:
    with pytest.raises(InvalidInputError, match="threshold"):
        memory.search("tea", user_id="ana", threshold=threshold)
    with pytest.raises(InvalidInputError, match="threshold"):  # the inspector's audited search: same limits
        memory.explain_search("tea", user_id="ana", threshold=threshold)


def test_limits_edges_are_accepted(memory: Memory) -> None:
    """The boundaries themselves are valid: the limits are inclusive, as in REST's schema."""
    for top_k in (limits.TOP_K_MIN, limits.TOP_K_MAX):
        assert [h.text for h in memory.search("green tea", user_id="ana", top_k=top_k)][:1] == \
            ["I drink green tea every morning"]
    assert memory.search("green tea", user_id="ana", threshold=limits.THRESHOLD_MAX)
    assert memory.search("green tea", user_id="ana", threshold=0)


def test_share_with_unknown_access_is_typed(memory: Memory) -> None:
    with pytest.raises(InvalidInputError, match="access"):
        memory.share("bea.work", user_id="bea", with_user="ana", access="admin")
    assert "bea.work" not in [c.cube.id for c in memory.cubes(user_id="ana")]


@pytest.mark.parametrize("metadata", [
    _deep(limits.MAX_METADATA_DEPTH + 1),
    _deep(5000),  # deeper than Python's recursion limit: checked without recursion
    {"n": math.nan},
    {"n": [1, math.inf]},
    {1: "non-string key"},
    {"big": "x" * (limits.MAX_METADATA_BYTES + 1)},
    {"surrogate": "\ud800"},
    {"obj": object()},
    ["not", "a", "dict"],
])
def test_bad_metadata_is_typed_and_nothing_is_written(memory: Memory, metadata: Any) -> None:
    before = _count(memory, "ana")
    with pytest.raises(InvalidInputError, match="metadata"):
        memory.add("a note with metadata", user_id="ana", metadata=metadata)
    assert _count(memory, "ana") == before
    item = memory.list(user_id="ana")[0]
    with pytest.raises(InvalidInputError, match="metadata"):
        memory.update(item.id, user_id="ana", metadata=metadata)
    assert memory.get(item.id, user_id="ana").metadata == item.metadata


def test_metadata_at_the_depth_limit_is_kept(memory: Memory) -> None:
    metadata = _deep(limits.MAX_METADATA_DEPTH)
    [memory_id] = memory.add("a note with deep metadata", user_id="ana", metadata=metadata)
    assert memory.get(memory_id, user_id="ana").metadata == metadata


@pytest.mark.parametrize("thread_id", ["\ud800", "a\x00b", "line\nbreak", "", "t" * (limits.MAX_THREAD_ID_CHARS + 1),
                                       5, ["t"]])
def test_bad_thread_id_is_typed(memory: Memory, thread_id: Any) -> None:
    with pytest.raises(InvalidInputError, match="thread id"):
        memory.chat("hello", user_id="ana", thread_id=thread_id)


@pytest.mark.parametrize("text", ["\x00", "\x00\x00\x00", "\u200b", "\u200b\u200c\u200d\ufeff", "\x01\x02\x1f",
                                  " \t\n\u00a0\u2028", "\u00ad"])
def test_invisible_only_text_is_rejected_everywhere(memory: Memory, text: str) -> None:
    before = _count(memory, "ana")
    for call in (lambda: memory.add(text, user_id="ana"),
                 lambda: memory.add([{"role": "user", "content": text}], user_id="ana"),
                 lambda: memory.search(text, user_id="ana"),
                 lambda: memory.chat(text, user_id="ana")):
        with pytest.raises(InvalidInputError, match=r"empty|control|zero-width"):
            call()
    assert _count(memory, "ana") == before


def test_text_with_some_visible_characters_is_kept(memory: Memory) -> None:
    [memory_id] = memory.add("\u200bzero\x00width\u200b", user_id="ana")
    assert memory.get(memory_id, user_id="ana").text == "\u200bzero\x00width\u200b"


@pytest.mark.parametrize("tags", ["tag", [1], [""], ["t" * (limits.MAX_TAG_CHARS + 1)], ["a"] * (limits.MAX_TAGS + 1)])
def test_bad_tags_are_typed(memory: Memory, tags: Any) -> None:
    item = memory.list(user_id="ana")[0]
    with pytest.raises(InvalidInputError, match="tag"):
        memory.update(item.id, user_id="ana", tags=tags)


def test_chat_takes_a_text_or_a_list_of_messages(memory: Memory) -> None:
    out = memory.chat([{"role": "user", "content": "what do I drink in the morning?"}], user_id="ana",
                      thread_id="list")
    assert "green tea" in " ".join(h.text for h in out.memories)
    for bad in ([], [{"role": "assistant", "content": "only the assistant"}], [{"nope": 1}], 5, None,
                [{"role": "user", "content": "\x00"}]):
        with pytest.raises(InvalidInputError):
            memory.chat(bad, user_id="ana")  # type: ignore[arg-type]


@pytest.mark.parametrize("cube_ids", [5, "ana.default", [5], ["ok"] * (limits.MAX_CUBE_IDS + 1)])
def test_bad_cube_ids_are_typed(memory: Memory, cube_ids: Any) -> None:
    with pytest.raises(InvalidInputError, match="cube"):
        memory.search("tea", user_id="ana", cube_ids=cube_ids)


def test_one_bad_document_is_an_error_row_not_an_abort(memory: Memory, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a_good.md").write_text("# Kettle\n\nThe kettle in the office kitchen is blue.\n")
    (docs / "b_bad.txt").write_text("x" * 100_000)  # one 100 KB "word": a chunk over the text limit
    (docs / "c_good.md").write_text("# Plant\n\nThe office plant is watered on Fridays.\n")
    out = memory.ingest([docs], user_id="ana", texts=[{"text": "y" * 100_000, "name": "bad-text"},
                                                       {"text": "The printer is on floor 2.", "name": "printer"}])
    rows = {Path(r["document"]).name: r for r in out["results"]}
    assert rows["a_good.md"]["status"] == "new" and rows["a_good.md"]["added"] >= 1
    assert rows["c_good.md"]["status"] == "new" and rows["c_good.md"]["added"] >= 1
    assert rows["printer"]["status"] == "new"
    for bad in ("b_bad.txt", "bad-text"):
        assert rows[bad]["status"] == "error" and "32,000" in rows[bad]["error"], rows[bad]
    assert out["summary"]["documents"] == 5 and out["summary"]["errors"] == 2
    texts = " ".join(h.text for h in memory.search("office kitchen kettle plant printer", user_id="ana", top_k=20))
    assert "kettle" in texts and "plant" in texts and "printer" in texts


@pytest.fixture(scope="module")
def tenants_memory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Memory, str, list[str]]]:
    """alice (the victim, with a secret in two cubes and a chat thread) and mallory, in one `Memory`."""
    secret = "alicesecret7f3a91"
    data = tmp_path_factory.mktemp("injection") / "data"
    with Memory(Settings(data_dir=data, embedder=f"hashing:{DIM}", worker_in_process=False)) as mem:
        mem.create_cube("alice.work", user_id="alice")
        ids = mem.add(f"vault code {secret}", user_id="alice") + \
            mem.add(f"work vault {secret}", user_id="alice", cube_id="alice.work")
        mem.chat(f"remember {secret}", user_id="alice", thread_id="main")
        mem.ensure_user("mallory")
        yield mem, secret, ids


def _alice_view(memory: Memory) -> tuple[Any, ...]:
    items = memory.list(user_id="alice", include_inactive=True, limit=1000)
    return (sorted((m.id, m.cube_id, m.text, str(m.status)) for m in items),
            sorted((c.cube.id, str(c.access)) for c in memory.cubes(user_id="alice")))


def test_injection_corpus_through_the_facade(tenants_memory: tuple[Memory, str, list[str]]) -> None:
    """Every hostile id (the corpus the HTTP benchmark uses, and alice's own memory ids) in every id position of
    every `Memory` call, as mallory: a typed error or a result without alice's data, and alice's data unchanged."""
    from hippograph.evals.bench_reliability import injection_ids

    memory, secret, alice_ids = tenants_memory
    before = _alice_view(memory)
    m = "mallory"
    calls: list[tuple[str, Any]] = []
    for bad in [*injection_ids(), *alice_ids]:
        calls += [
            ("get", lambda b=bad: memory.get(b, user_id=m)),
            ("update", lambda b=bad: memory.update(b, "mallory was here", user_id=m)),
            ("delete", lambda b=bad: memory.delete(b, user_id=m, hard=True)),
            ("history", lambda b=bad: memory.history(b, user_id=m)),
            ("edges", lambda b=bad: memory.edges(b, user_id=m)),
            ("neighbourhood", lambda b=bad: memory.neighbourhood(b, user_id=m)),
            ("search cube_ids", lambda b=bad: memory.search("vault code", user_id=m, cube_ids=[b])),
            ("explain cube_ids", lambda b=bad: memory.explain_search("vault code", user_id=m, cube_ids=[b])),
            ("chat cube_ids", lambda b=bad: memory.chat("vault code?", user_id=m, cube_ids=[b])),
            ("chat thread_id", lambda b=bad: memory.chat("what did I ask you to remember?", user_id=m,
                                                         thread_id=b)),
            ("chat write cube", lambda b=bad: memory.chat("note this", user_id=m, cube_id=b)),
            ("list cube_ids", lambda b=bad: memory.list(user_id=m, cube_ids=[b])),
            ("browse cube_ids", lambda b=bad: memory.browse(user_id=m, cube_ids=[b])),
            ("add cube_id", lambda b=bad: memory.add("mallory was here", user_id=m, cube_id=b)),
            ("add session_id", lambda b=bad: memory.add("mallory note", user_id=m, session_id=b)),
            ("documents", lambda b=bad: memory.documents(user_id=m, cube_id=b)),
            ("delete_document", lambda b=bad: memory.delete_document(b, user_id=m, cube_id=b)),
            ("ingest cube_id", lambda b=bad: memory.ingest(user_id=m, texts=["mallory doc"], cube_id=b)),
            ("delete_cube", lambda b=bad: memory.delete_cube(b, user_id=m)),
            ("clear_cube", lambda b=bad: memory.clear_cube(b, user_id=m)),
            ("share", lambda b=bad: memory.share(b, user_id=m, with_user="alice")),
            ("accept_share", lambda b=bad: memory.accept_share(b, user_id=m)),
            ("leave_cube", lambda b=bad: memory.leave_cube(b, user_id=m)),
            ("delete_thread", lambda b=bad: memory.delete_thread(b, user_id=m)),
            ("delete_preference", lambda b=bad: memory.delete_preference(b, user_id=m)),
            ("job", lambda b=bad: memory.job(b, user_id=m)),
            ("stats", lambda b=bad: memory.stats(user_id=m, cube_ids=[b])),
        ]
        if bad != "alice":  # the facade trusts user_id (it is the caller); a hostile variant must not be alice
            calls += [("search as", lambda b=bad: memory.search("vault code", user_id=b)),
                      ("list as", lambda b=bad: memory.list(user_id=b))]
    untyped: list[str] = []
    for name, call in calls:
        try:
            result = call()
        except HippographError:
            continue
        except Exception as exc:  # the point of the test: any other exception is a failure
            untyped.append(f"{name}: {type(exc).__name__}: {exc}"[:300])
            continue
        assert secret not in repr(result), f"cross-tenant read through {name}"
    assert not untyped, "\n".join(untyped[:10])
    assert _alice_view(memory) == before  # no cross-tenant write
    again = memory.chat("what did I ask you to remember?", user_id="alice", thread_id="main")
    assert secret in " ".join(h.text for h in again.memories)
