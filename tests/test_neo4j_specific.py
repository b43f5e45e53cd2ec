"""Neo4j-only behaviour, on a real Neo4j 5.26 server (`tests/neo4j_fixture.py`): schema, injection safety,
filtered vector search, failure handling, tree operations, export/import.

Run alone with: `.venv/bin/python -m pytest tests/test_neo4j_specific.py` (tests/conftest.py loads the plugin)
"""

from __future__ import annotations

import dataclasses
import io
import socket
import threading
import time
from typing import Any, cast

import numpy as np
import pytest

from hippograph.stores.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType
from hippograph.stores.tree import ops
from hippograph.stores.tree.base import Edge, Rel
from hippograph.stores.tree.embedded import EmbeddedTreeStore
from hippograph.stores.tree.neo4j import (
    FULLTEXT_INDEX,
    ID_CONSTRAINT,
    RANGE_INDEXES,
    SESSION_TYPE_INDEX,
    TURN_INDEX,
    VECTOR_INDEX,
    Neo4jTreeStore,
    lucene_query,
    scope_token,
    scoped_lucene,
)
from hippograph.stores.tree.neo4j_server import LocalNeo4j, free_port

pytestmark = pytest.mark.neo4j

DIM = 8


def vec(rng: np.random.Generator, dim: int = DIM) -> list[float]:
    v = rng.normal(size=dim)
    return (v / np.linalg.norm(v)).tolist()


def item(cube: str = "c1", text: str = "a memory", rng: np.random.Generator | None = None, **kw: Any) -> MemoryItem:
    rng = rng or np.random.default_rng(abs(hash(text)) % 2**32)
    return MemoryItem(user_id="u1", cube_id=cube, text=text, embedding=vec(rng), **kw)


def exact_top(vectors: dict[str, list[float]], query: list[float], k: int) -> list[str]:
    ids = list(vectors)
    m = np.asarray([vectors[i] for i in ids])
    sims = m @ np.asarray(query)
    return [ids[i] for i in np.argsort(-sims)[:k]]


def test_settings_tree_backend_neo4j_opens_a_neo4j_store(neo4j_server: Any, tmp_path: Any) -> None:
    """`HIPPOGRAPH_TREE_BACKEND=neo4j` wiring (the chat-graph tests on Neo4j pass their store in directly)."""
    from hippograph.stores.services import Services
    from hippograph.stores.settings import Settings
    from tests.neo4j_fixture import wipe_database

    wipe_database(neo4j_server.uri, neo4j_server.auth)
    settings = Settings(data_dir=tmp_path, embedder="hashing:64", worker_in_process=False, tree_backend="neo4j",
                        neo4j_uri=neo4j_server.uri, neo4j_user=neo4j_server.auth[0],
                        neo4j_password=neo4j_server.auth[1])
    services = Services.from_settings(settings)
    try:
        assert isinstance(services.tree, Neo4jTreeStore)
    finally:
        services.close()


# --- schema --------------------------------------------------------------------------------------------------


def test_constraint_and_indexes_exist(neo4j_tree_store: Neo4jTreeStore) -> None:
    schema = neo4j_tree_store.schema()
    constraints = {c["name"]: c for c in schema["constraints"]}
    assert constraints[ID_CONSTRAINT]["type"] == "UNIQUENESS"
    assert constraints[ID_CONSTRAINT]["labelsOrTypes"] == ["Memory"]
    assert constraints[ID_CONSTRAINT]["properties"] == ["id"]
    indexes = {i["name"]: i for i in schema["indexes"]}
    vector = indexes[VECTOR_INDEX]
    assert vector["type"] == "VECTOR" and vector["state"] == "ONLINE"
    assert vector["options"]["indexConfig"]["vector.dimensions"] == DIM
    assert vector["options"]["indexConfig"]["vector.similarity_function"] == "COSINE"
    fulltext = indexes[FULLTEXT_INDEX]
    assert fulltext["type"] == "FULLTEXT"
    assert set(fulltext["properties"]) == {"text", "key", "tags", "ft_scope"}
    for name, prop in RANGE_INDEXES.items():
        assert indexes[name]["type"] == "RANGE" and indexes[name]["properties"] == [prop]
    assert indexes[TURN_INDEX]["type"] == "RANGE"
    assert indexes[TURN_INDEX]["properties"] == ["cube_id", "session_id", "turn_index"]
    assert indexes[SESSION_TYPE_INDEX]["properties"] == ["cube_id", "session_id", "memory_type"]
    for prop in ("cube_id", "status", "created_at"):
        assert prop in RANGE_INDEXES.values()


def test_text_search_is_scoped_inside_lucene_with_the_unscoped_scores(neo4j_tree_store: Neo4jTreeStore) -> None:
    store = neo4j_tree_store
    mine = [item("mine", f"lisbon trams note {i}") for i in range(3)]
    store.add([*mine, *(item(f"other{c}", f"lisbon lisbon trams trams {i}") for c in range(4) for i in range(30))])
    lucene = lucene_query("lisbon trams")
    assert scoped_lucene(lucene, ["mine"]) == f"+ft_scope:({scope_token('mine')})^0 +(lisbon trams)"

    hits = store.text_search("lisbon trams", cube_ids=["mine"], k=10)

    assert sorted(h.id for h in hits) == sorted(m.id for m in mine)
    with store._driver.session(database=store.database) as s:  # the same words, unscoped, straight from Lucene
        raw = {r["id"]: r["score"] for r in s.run(
            "CALL db.index.fulltext.queryNodes($index, $q) YIELD node, score RETURN node.id AS id, score",
            index=FULLTEXT_INDEX, q=lucene)}
        scoped = s.run("CALL db.index.fulltext.queryNodes($index, $q) YIELD node RETURN count(node) AS n",
                       index=FULLTEXT_INDEX, q=scoped_lucene(lucene, ["mine"])).single()["n"]
    assert scoped == 3 and len(raw) == 123  # Lucene itself only scored the cube's matches
    assert all(abs(h.scores["bm25"] - raw[h.id]) < 1e-6 for h in hits)  # the cube clause adds nothing
    assert all("ft_scope" not in h.item.model_dump() for h in hits)


def test_a_database_from_before_the_scoped_index_is_migrated(neo4j_server: Any) -> None:
    from tests.neo4j_fixture import make_neo4j_tree_store

    old = make_neo4j_tree_store(neo4j_server, DIM)
    kept = item("c1", "the lisbon tram timetable")
    old.add([kept, item("c2", "lisbon tram museum")])
    with old._driver.session(database=old.database) as s:  # as an older hippograph left it
        s.run("MATCH (m:Memory) REMOVE m.ft_scope").consume()
        s.run(f"DROP INDEX {FULLTEXT_INDEX}").consume()
        s.run(f"CREATE FULLTEXT INDEX {FULLTEXT_INDEX} FOR (m:Memory) ON EACH [m.text, m.key, m.tags] "
              "OPTIONS {indexConfig: {`fulltext.analyzer`: 'english'}}").consume()
        s.run("CALL db.awaitIndexes(60)").consume()
    old.close()

    store = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM)
    try:
        fulltext = {i["name"]: i for i in store.schema()["indexes"]}[FULLTEXT_INDEX]
        assert set(fulltext["properties"]) == {"text", "key", "tags", "ft_scope"}
        assert [h.id for h in store.text_search("lisbon tram", cube_ids=["c1"])] == [kept.id]
    finally:
        store.close()


def test_duplicate_id_in_one_batch_is_one_node(neo4j_tree_store: Neo4jTreeStore) -> None:
    a = item(text="first")
    b = item(text="second").model_copy(update={"id": a.id})
    neo4j_tree_store.add([a, b])
    assert neo4j_tree_store.count(cube_ids=["c1"]) == 1
    assert neo4j_tree_store.get([a.id])[0].text == "second"


def test_dimension_mismatch_with_data_is_refused(neo4j_server: Any, neo4j_tree_store: Neo4jTreeStore) -> None:
    neo4j_tree_store.add([item()])
    with pytest.raises(InvalidInputError, match="dimension"):
        Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM + 1)
    with pytest.raises(InvalidInputError):
        neo4j_tree_store.add([MemoryItem(user_id="u1", cube_id="c1", text="x", embedding=[1.0] * (DIM + 1))])
    with pytest.raises(InvalidInputError):
        neo4j_tree_store.add([MemoryItem(user_id="u1", cube_id="c1", text="no vector")])


# --- injection safety ----------------------------------------------------------------------------------------

NASTY_QUERIES = [
    '"',
    '"unbalanced phrase',
    "AND",
    "OR NOT AND",
    "*",
    "?",
    "text:apple",
    "apple~2",
    "apple^10",
    "(apple",
    "apple)",
    "[a TO z]",
    "{a TO z}",
    "\\",
    "/apple.*/",
    "&& || !",
    "apple AND NOT banana",
    "+apple -banana",
    "id:* OR cube_id:*",
    "'}) MATCH (n) DETACH DELETE n //",
    "$ids; CALL db.clearQueryCaches()",
    "`Memory`",
    "\x00\x01",
    "🍎 apple",
    "a" * 5000,
    " ".join(f"w{i}" for i in range(3000)),
]


@pytest.mark.parametrize("query", NASTY_QUERIES)
def test_text_search_query_syntax_is_plain_text(neo4j_tree_store: Neo4jTreeStore, query: str) -> None:
    s = neo4j_tree_store
    s.add([item(text="apple pie recipe"), item(text="banana bread"), item(cube="other", text="apple secret")])
    hits = s.text_search(query, cube_ids=["c1"], k=5)
    assert all(h.item.cube_id == "c1" for h in hits)
    assert all(h.scores["bm25"] > 0 for h in hits)
    if "apple" in query.lower():
        assert any("apple" in h.text for h in hits)
    assert s.count() == 3  # nothing deleted, nothing leaked


def test_lucene_query_builder_escapes_everything() -> None:
    assert lucene_query("NOT apple AND OR") == "apple"  # no operators (and Lucene drops "not" anyway)
    assert lucene_query("apples AND pears") == "apples pears"  # lower-case: "and" is a word, then a stop word
    assert lucene_query("text:apple~2") == "text apple 2"
    assert lucene_query("!!!") == ""
    assert lucene_query("what is the") == "what"  # only stop words: keep those Lucene keeps rather than nothing
    assert lucene_query("OR NOT AND") == ""  # nothing Lucene keeps: no text search (scoped, it would match all)


HOSTILE_TEXTS = [
    "'}) MATCH (n) DETACH DELETE n //",
    '"; DROP INDEX memory_embedding; //',
    "$cubes ${cubes} {{cubes}} %s %(x)s",
    "Robert'); MATCH (m:Memory) SET m.cube_id = 'mine' //",
    "text with \\ backslash and `backticks` and \n newlines \t tabs",
    "unicode: 日本語 ✓ 🍎 \u202e reversed",
]


def test_hostile_text_and_ids_are_stored_verbatim(neo4j_tree_store: Neo4jTreeStore) -> None:
    s = neo4j_tree_store
    cube = "tenant-1:eu@corp.example_x"
    items = [
        item(cube=cube, text=t, key=t[:20], tags=[t[:10], "tag"], metadata={"k": t}, session_id=cube)
        for t in HOSTILE_TEXTS
    ]
    s.add(items)
    s.add([item(cube="bystander", text="bystander memory")])
    got = s.get([i.id for i in items])
    assert [g.text for g in got] == HOSTILE_TEXTS
    assert [g.metadata["k"] for g in got] == HOSTILE_TEXTS
    assert all(g.cube_id == cube for g in got)
    assert s.count(cube_ids=["bystander"]) == 1
    assert s.count(cube_ids=[cube]) == len(HOSTILE_TEXTS)
    # Cube filters are parameters: a hostile cube string matches nothing and breaks nothing.
    for evil in ["' OR 1=1 //", "*", "c1' OR m.cube_id IS NOT NULL //"]:
        assert s.get([i.id for i in items], cube_ids=[evil]) == []
        assert s.list(cube_ids=[evil]) == []
        assert s.vector_search(items[0].embedding or [], cube_ids=[evil], k=3) == []
        assert s.text_search("match", cube_ids=[evil]) == []
        assert s.count(cube_ids=[evil]) == 0
    with pytest.raises(ValueError, match="invalid id"):  # the model refuses such ids before any backend
        MemoryItem(user_id="u1", cube_id="' OR 1=1 //", text="x")
    assert s.text_search("DETACH DELETE", cube_ids=[cube], k=10)
    assert s.schema()["indexes"]  # the indexes survived
    assert {i["name"] for i in s.schema()["indexes"]} >= {VECTOR_INDEX, FULLTEXT_INDEX}


# --- filtered vector search ----------------------------------------------------------------------------------


def test_filtered_vector_search_returns_k_beside_a_big_cube(neo4j_server: Any) -> None:
    from tests.neo4j_fixture import make_neo4j_tree_store

    # A low exact threshold and oversampling force the ANN path even for this test-sized cube.
    s = make_neo4j_tree_store(neo4j_server, DIM, exact_threshold=20, oversample=1.0, min_candidates=20, min_fetch=20,
                              cache_cube_rows=0)
    try:
        rng = np.random.default_rng(7)
        big = [item(cube="big", text=f"big {i}", rng=rng) for i in range(4000)]
        small = [item(cube="small", text=f"small {i}", rng=rng) for i in range(400)]
        s.add(big)
        s.add(small)
        vectors = {m.id: m.embedding or [] for m in small}
        recalls = []
        for _ in range(10):
            q = vec(rng)
            hits = s.vector_search(q, cube_ids=["small"], k=10)
            assert len(hits) == 10
            assert all(h.item.cube_id == "small" for h in hits)
            assert s.last_plan["path"] == "ann"
            truth = exact_top(vectors, q, 10)
            recalls.append(len({h.id for h in hits} & set(truth)) / 10)
            # scores are plain cosines, best first
            for h in hits:
                assert h.scores["vector"] == pytest.approx(float(np.dot(vectors[h.id], q)), abs=1e-4)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        assert np.mean(recalls) >= 0.9
        # Most of the small cube deleted: only 12 active remain, and all 12 must come back for k=10/20.
        s.delete([m.id for m in small[12:]])
        q = vec(rng)
        assert len(s.vector_search(q, cube_ids=["small"], k=10)) == 10
        assert s.last_plan["path"] == "exact-fallback"
        assert len(s.vector_search(q, cube_ids=["small"], k=20)) == 12
        assert len(s.vector_search(q, cube_ids=["small"], k=20, statuses=list(MemoryStatus))) == 20
        # The exact path (small cube, default threshold) gives the true top-k.
        exact = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM, cache_cube_rows=0)
        hits = exact.vector_search(q, cube_ids=["small"], k=5, statuses=list(MemoryStatus))
        assert exact.last_plan["path"] == "exact"
        assert [h.id for h in hits] == exact_top(vectors, q, 5)
        exact.close()
    finally:
        s.close()


def test_ann_reads_only_the_best_candidates_vectors_with_the_same_answer(neo4j_server: Any) -> None:
    """Re-scoring the best 3k candidates by the index's score returns what re-scoring all of them returns."""
    from tests.neo4j_fixture import make_neo4j_tree_store

    s = make_neo4j_tree_store(neo4j_server, DIM, exact_threshold=20, min_candidates=50, min_fetch=200,
                              cache_cube_rows=0)
    try:
        rng = np.random.default_rng(11)
        mine = [item(cube="mine", text=f"mine {i}", rng=rng) for i in range(1500)]
        s.add(mine)
        s.add([item(cube="other", text=f"other {i}", rng=rng) for i in range(500)])
        vectors = {m.id: m.embedding or [] for m in mine}
        for _ in range(10):
            q = vec(rng)
            s.rescore_factor = 0  # every candidate's vector read (the former plan)
            every = s.vector_search(q, cube_ids=["mine"], k=10)
            s.rescore_factor = 3
            best = s.vector_search(q, cube_ids=["mine"], k=10)
            assert s.last_plan["path"] == "ann"
            assert [h.id for h in best] == [h.id for h in every]
            assert len(set(h.id for h in best) & set(exact_top(vectors, q, 10))) >= 9
    finally:
        s.close()


def test_a_stale_cached_index_size_never_cuts_results_short(neo4j_server: Any) -> None:
    from tests.neo4j_fixture import make_neo4j_tree_store

    s = make_neo4j_tree_store(neo4j_server, DIM, exact_threshold=20, min_candidates=20, min_fetch=20,
                              size_cache_s=3600, cache_cube_rows=0)
    try:
        rng = np.random.default_rng(12)
        s.add([item(cube="grow", text=f"first {i}", rng=rng) for i in range(5)])
        assert len(s.vector_search(vec(rng), cube_ids=["grow"], k=10)) == 5  # caches index total 5
        s.add([item(cube="grow", text=f"later {i}", rng=rng) for i in range(300)])
        s._sizes = {k: v for k, v in s._sizes.items() if k != ("grow",)}  # the cube is re-counted, the total not
        hits = s.vector_search(vec(rng), cube_ids=["grow"], k=10)
        assert len(hits) == 10 and s.last_plan["path"] == "ann"
    finally:
        s.close()


def test_cached_cube_vectors_follow_every_write_from_any_process(neo4j_server: Any) -> None:
    """The in-process copy of a cube's vectors answers like the exact Cypher path, and a write through another
    store object (another process) is seen by the next search: new, updated, deleted and restored memories."""
    from tests.neo4j_fixture import make_neo4j_tree_store

    cached = make_neo4j_tree_store(neo4j_server, DIM)
    exact = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM, cache_cube_rows=0)
    other = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM)  # "another process"
    try:
        rng = np.random.default_rng(13)
        mine = [item(cube="kept", text=f"kept {i}", rng=rng) for i in range(300)]
        other.add(mine)
        other.add([item(cube="next", text=f"next {i}", rng=rng) for i in range(50)])

        def same(q: list[float], k: int = 10, path: str = "cache", **kw: Any) -> list[str]:
            got = [h.id for h in cached.vector_search(q, cube_ids=["kept"], k=k, **kw)]
            assert cached.last_plan["path"] == path
            want = [h.id for h in exact.vector_search(q, cube_ids=["kept"], k=k, **kw)]
            assert got == want
            return got

        q = vec(rng)
        first = same(q)
        assert same(q) == first  # served from the copy (no reload): same answer
        twin = item(cube="kept", text="a twin of the query", rng=rng)
        twin.embedding = list(q)
        other.add([twin])
        assert same(q)[0] == twin.id  # a new memory written elsewhere is found at once
        moved = cached.get([first[0]])[0]
        moved.embedding = [-x for x in q]
        other.update(moved)
        assert first[0] not in same(q)  # an updated vector is re-read
        other.delete([twin.id])
        assert twin.id not in same(q)  # a deleted memory never comes back
        assert same(q, statuses=list(MemoryStatus))[0] == twin.id
        other.delete([m.id for m in mine[:290]])  # most of the cube gone: the copy widens down to the whole cube
        active = exact.vector_search(q, cube_ids=["kept"], k=400)
        assert len(active) < 20 and len(same(q, k=20)) == len(active)
        assert [h.id for h in cached.vector_search(q, cube_ids=["kept", "next"], k=5)] == \
            [h.id for h in exact.vector_search(q, cube_ids=["kept", "next"], k=5)]
        other.erase_cube("kept")  # erased elsewhere: the copy is dropped, nothing comes back
        assert cached.vector_search(q, cube_ids=["kept"], k=5, statuses=list(MemoryStatus)) == []
        assert cached._vcache.get("kept") is None or cached._vcache["kept"].size == 0
    finally:
        for s in (cached, exact, other):
            s.close()


def test_kept_vectors_catch_up_on_writes_alone_and_hybrid_answers_in_one_query(neo4j_server: Any) -> None:
    """A write elsewhere is caught up by reading only the vectors written since (the copy is not re-read whole),
    and hybrid search from the copy answers like the Neo4j paths, in one query when nothing was written."""
    from tests.neo4j_fixture import make_neo4j_tree_store

    cached = make_neo4j_tree_store(neo4j_server, DIM, cache_cube_rows=1000)
    plain = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM, cache_cube_rows=0)
    other = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM, cache_cube_rows=0)
    try:
        rng = np.random.default_rng(21)
        other.add([item(cube="hy", text=f"hybrid note {i} about {('apples', 'boats')[i % 2]}", rng=rng)
                   for i in range(200)])
        q = vec(rng)

        def both() -> tuple[list[str], list[str]]:
            dense, lexical = cached.hybrid_search(q, "apples", cube_ids=["hy"], k=10)
            assert cached.last_plan["path"] == "cache"
            want_dense, want_lexical = plain.hybrid_search(q, "apples", cube_ids=["hy"], k=10)
            assert [h.id for h in dense] == [h.id for h in want_dense]
            # full text: the same scores best first (Lucene's top-n cut may pick other memories among equal scores)
            assert [round(h.score, 4) for h in lexical] == [round(h.score, 4) for h in want_lexical]
            assert all("apples" in h.text for h in lexical)
            for got, want in zip(dense, want_dense, strict=True):
                assert got.scores["vector"] == pytest.approx(want.scores["vector"], abs=1e-5)
            return [h.id for h in dense], [h.id for h in lexical]

        both()
        copy = cached._vcache["hy"]
        queries: list[str] = []
        run = QuerySpy(cached, queries)
        both()
        assert len(queries) == 1, queries  # the copy is current: one query for dense and full text
        twin = item(cube="hy", text="the query's twin, apples", rng=rng)
        twin.embedding = list(q)
        other.add([twin])
        queries.clear()
        assert both()[0][0] == twin.id
        assert cached._vcache["hy"] is copy and copy.size == 201  # caught up in place, not re-read whole
        assert any("_v > $since" in text for text in queries)
        run.undo()
    finally:
        for s in (cached, plain, other):
            s.close()


def test_recall_is_one_query_from_kept_vectors_and_equals_the_call_by_call_recall(neo4j_server: Any) -> None:
    """Recall's first round (dense, full text, entities, working memory) and the neighbours of its seeds come back
    in one query when the cube's vectors are kept; the candidates and every signal equal the call-by-call path
    (vectors not kept), and a seed outside the read-ahead falls back to `neighbours`."""
    from types import SimpleNamespace

    from hippograph.nodes.retrieve_tree import recall
    from hippograph.stores.recall_config import RecallConfig
    from hippograph.stores.tree.base import NeighbourReadAhead
    from tests.neo4j_fixture import make_neo4j_tree_store

    kept = make_neo4j_tree_store(neo4j_server, DIM, cache_cube_rows=1000)
    plain = Neo4jTreeStore(neo4j_server.uri, auth=neo4j_server.auth, dimension=DIM, cache_cube_rows=0)
    try:
        rng = np.random.default_rng(5)
        turns = [item(text=f"turn {i}: Ana talked about {('apples', 'boats', 'Lisbon')[i % 3]}", rng=rng,
                      session_id=f"s{i // 8}", turn_index=i % 8) for i in range(40)]
        working = [item(text=f"working note {i}", rng=rng, session_id="s0", memory_type=MemoryType.WORKING)
                   for i in range(3)]
        kept.add([*turns, *working, item(cube="c2", text="Ana talked about apples", rng=rng)])
        kept.add_mentions({t.id: ["ana", "lisbon"] if i % 3 == 2 else ["ana"] for i, t in enumerate(turns)})
        q = vec(rng)

        def candidates(store: Neo4jTreeStore) -> dict[str, dict[str, float]]:
            hits = recall(cast(Any, SimpleNamespace(tree=store)), "What did Ana say about apples in Lisbon?", q,
                          cube_ids=["c1"], pool=10, session_id="s0", write_cube_id="c1", cfg=RecallConfig())
            # vector scores: float32 in numpy (kept) vs Neo4j's cosine, equal to 1e-5
            return {h.id: {**{k: round(v, 5) for k, v in h.scores.items()},
                           **{f"rank:{k}": v for k, v in h.ranks.items()}} for h in hits}

        want = candidates(plain)
        assert {"vector", "bm25", "entity", "working", "graph"} <= {s for v in want.values() for s in v}
        candidates(kept)  # the first search reads the cube's vectors
        queries: list[str] = []
        spy = QuerySpy(kept, queries)
        assert candidates(kept) == want
        assert len(queries) == 1, queries
        spy.undo()

        real = kept.recall_round
        kept.recall_round = lambda query: dataclasses.replace(  # type: ignore[method-assign]
            real(query), near=NeighbourReadAhead(seeds=frozenset(), rows=()))
        queries.clear()
        spy = QuerySpy(kept, queries)
        assert candidates(kept) == want
        assert len(queries) == 2 and "UNION" in queries[1]  # the neighbours, asked separately
        spy.undo()
    finally:
        kept.close()
        plain.close()


def test_working_memory_list_seeks_the_session_index(neo4j_server: Any) -> None:
    """`list` by session and type (recall reads a session's working memory on every search) seeks the
    `(cube_id, session_id, memory_type)` index instead of filtering every memory of the cube."""
    from tests.neo4j_fixture import make_neo4j_tree_store

    store = make_neo4j_tree_store(neo4j_server, DIM)
    try:
        rng = np.random.default_rng(8)
        store.add([item(text=f"turn {i}", rng=rng, session_id="s1", turn_index=i) for i in range(300)]
                  + [item(text=f"working {i}", rng=rng, session_id="s1", memory_type=MemoryType.WORKING)
                     for i in range(3)])
        queries: list[str] = []
        spy = QuerySpy(store, queries)
        got = store.list(cube_ids=["c1"], session_id="s1", memory_type=MemoryType.WORKING.value, limit=5)
        spy.undo()
        assert sorted(m.text for m in got) == ["working 0", "working 1", "working 2"]
        with store._session() as s:
            # The planner decides on index statistics: sample the fresh index as a store in use would have it.
            s.run(f"CALL db.resampleIndex('{SESSION_TYPE_INDEX}')").consume()
            s.run("CALL db.awaitIndexes(60)").consume()
            s.run("CALL db.clearQueryCaches()").consume()
            profile = s.run("PROFILE " + queries[0], cubes=["c1"], states=["active"], session="s1",
                            type=MemoryType.WORKING.value, offset=0, limit=5).consume().profile
        operators: list[dict[str, Any]] = []
        pending = [profile]
        while pending:
            op = pending.pop()
            operators.append(op)
            pending.extend(op.get("children", []))
        seeks = [op for op in operators if "IndexSeek" in op["operatorType"]]
        assert seeks and "(cube_id, session_id, memory_type)" in seeks[0]["args"]["Details"], [
            (o["operatorType"], o["args"].get("Details")) for o in operators][-2:]
        assert max(op.get("rows", 0) for op in seeks) == 3  # the 3 working memories, not the cube's 303
    finally:
        store.close()


class QuerySpy:
    """Record the Cypher text of every query a store runs (through its sessions' transactions)."""

    def __init__(self, store: Neo4jTreeStore, into: list[str]) -> None:
        self.store, self.original = store, store._read

        def read(fn: Any) -> Any:
            def spied(tx: Any) -> Any:
                real_run = tx.run

                def run(query: str, *args: Any, **kwargs: Any) -> Any:
                    into.append(query)
                    return real_run(query, *args, **kwargs)

                tx.run = run
                return fn(tx)

            return self.original(spied)

        store._read = read  # type: ignore[method-assign]

    def undo(self) -> None:
        self.store._read = self.original  # type: ignore[method-assign]


# --- failures ------------------------------------------------------------------------------------------------


def test_unreachable_uri_names_the_uri() -> None:
    port = free_port()  # nothing listens there
    uri = f"bolt://127.0.0.1:{port}"
    t = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=f"127.0.0.1:{port}"):
        Neo4jTreeStore(uri, dimension=DIM, connection_timeout=2)
    assert time.monotonic() - t < 30


def test_restart_mid_run_fails_clearly_then_reconnects_and_never_half_writes(tmp_path: Any) -> None:
    server = LocalNeo4j(tmp_path / "db")
    server.start()
    try:
        s = Neo4jTreeStore(server.uri, auth=server.auth, dimension=DIM, retry_time=2)
        rng = np.random.default_rng(1)
        s.add([item(text=f"before {i}", rng=rng) for i in range(10)])
        server.stop()
        with pytest.raises(BackendUnavailableError, match=str(server.port)):
            s.add([item(text="while down", rng=rng)])
        with pytest.raises(BackendUnavailableError, match=str(server.port)):
            s.count()
        server.start()
        assert s.count() == 10  # the same store object reconnects
        assert not s.text_search("while down", cube_ids=["c1"])

        # A crash (SIGKILL) in the middle of a big batch: after recovery the batch is all there or not at all.
        batch = [item(text=f"batch {i}", rng=rng) for i in range(30000)]
        errors: list[BaseException] = []

        def write() -> None:
            try:
                s.add(batch)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=write)
        worker.start()
        time.sleep(1.0)
        server.stop(kill=True)
        worker.join(timeout=120)
        server.start()
        n = s.count()
        assert n in (10, 10 + len(batch)), n
        if n == 10:
            assert errors and isinstance(errors[0], BackendUnavailableError)
        s.close()
    finally:
        server.close()


def test_store_does_not_bind_anything_but_loopback(neo4j_server: Any) -> None:
    if not isinstance(neo4j_server, LocalNeo4j):
        pytest.fail("this check needs the local server")
    port = int(neo4j_server.uri.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    ips = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)} - {"127.0.0.1"}
    for ip in ips:
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((ip, port)) != 0


# --- tree operations -----------------------------------------------------------------------------------------


def build_tree(s: Any) -> dict[str, MemoryItem]:
    rng = np.random.default_rng(3)
    t: dict[str, MemoryItem] = {}
    t["root"] = item(text="topic: food", memory_type=MemoryType.TOPIC, rng=rng)
    t["fruit"] = item(text="topic: fruit", memory_type=MemoryType.TOPIC, rng=rng)
    t["veg"] = item(text="topic: vegetables", memory_type=MemoryType.TOPIC, rng=rng)
    t["apple"] = item(text="likes apples", rng=rng)
    t["pear"] = item(text="likes pears", rng=rng)
    t["leek"] = item(text="hates leeks", rng=rng)
    s.add(list(t.values()))
    ops.set_parent(s, t["fruit"].id, t["root"].id)
    ops.set_parent(s, t["veg"].id, t["root"].id)
    for k in ("apple", "pear"):
        ops.set_parent(s, t[k].id, t["fruit"].id)
    ops.set_parent(s, t["leek"].id, t["veg"].id)
    return t


def tree_ops_check(s: Any) -> None:
    t = build_tree(s)
    assert {m.id for m in ops.children(s, t["fruit"].id)} == {t["apple"].id, t["pear"].id}
    assert [m.id for m in ops.ancestors(s, t["apple"].id)] == [t["fruit"].id, t["root"].id]
    sub = ops.subtree(s, t["root"].id)
    assert sub[0] == (s.get([t["root"].id])[0], 0)
    depth = {m.id: d for m, d in sub}
    assert depth == {
        t["root"].id: 0,
        t["fruit"].id: 1,
        t["veg"].id: 1,
        t["apple"].id: 2,
        t["pear"].id: 2,
        t["leek"].id: 2,
    }
    assert [m.id for m in ops.parents(s, t["leek"].id)] == [t["veg"].id]
    with pytest.raises(InvalidInputError, match="cycle"):
        ops.set_parent(s, t["root"].id, t["apple"].id)
    # neighbours follow the tree too
    assert {m.id for m in s.neighbours([t["fruit"].id], cube_ids=["c1"])} == {t["root"].id, t["apple"].id, t["pear"].id}
    # history: apple v1 -> v2 -> v3
    v2 = item(text="likes green apples")
    v3 = item(text="likes green apples, not red")
    s.supersede(t["apple"].id, v2)
    s.supersede(v2.id, v3)
    for any_version in (t["apple"].id, v2.id, v3.id):
        assert [m.id for m in ops.history(s, any_version)] == [t["apple"].id, v2.id, v3.id]
    versions = ops.history(s, v3.id)
    assert [m.status for m in versions] == [MemoryStatus.SUPERSEDED, MemoryStatus.SUPERSEDED, MemoryStatus.ACTIVE]
    assert all(m.valid_to is not None for m in versions[:2])
    assert ops.current_version(s, t["apple"].id).id == v3.id
    # merged duplicates point to the survivor
    dup = item(text="likes pears a lot")
    s.add([dup])
    s.add_edges([Edge(src=dup.id, rel=Rel.MERGED_INTO, dst=t["pear"].id)])
    assert ops.current_version(s, dup.id).id == t["pear"].id
    with pytest.raises(NotFoundError):
        ops.history(s, "missing-id")


def test_tree_operations_on_neo4j(neo4j_tree_store: Neo4jTreeStore) -> None:
    tree_ops_check(neo4j_tree_store)


def test_tree_operations_on_embedded(tmp_path: Any) -> None:
    s = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=DIM)
    try:
        tree_ops_check(s)
    finally:
        s.close()


def test_add_edges_needs_both_ends(neo4j_tree_store: Neo4jTreeStore) -> None:
    a = item(text="exists")
    neo4j_tree_store.add([a])
    with pytest.raises(NotFoundError):
        neo4j_tree_store.add_edges([Edge(src=a.id, rel=Rel.RELATE_TO, dst="nope")])
    assert neo4j_tree_store.edges([a.id], direction="both") == []


# --- export / import -----------------------------------------------------------------------------------------


def populated(s: Any) -> dict[str, MemoryItem]:
    t = build_tree(s)
    v2 = item(text="likes green apples")
    s.supersede(t["apple"].id, v2)
    s.delete([t["leek"].id])
    turns = [item(text=f"turn {i}", session_id="s1", turn_index=i) for i in range(3)]
    s.add(turns)
    s.add_edges([Edge(src=turns[i].id, rel=Rel.NEXT, dst=turns[i + 1].id, props={"gap": i}) for i in range(2)])
    s.add([item(cube="other", text="not exported")])
    return t


def snapshot(s: Any, cube: str) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str, str, str]]]:
    items = s.list(cube_ids=[cube], limit=1000, statuses=list(MemoryStatus))
    dumped = {m.id: m.model_dump(mode="json", exclude={"cube_id"}) for m in items}
    edges = {(e.src, e.rel.value, e.dst, str(sorted(e.props.items()))) for e in s.edges(list(dumped), direction="out")}
    return dumped, edges


def test_export_import_round_trip(neo4j_server: Any, tmp_path: Any) -> None:
    from tests.neo4j_fixture import make_neo4j_tree_store

    src = make_neo4j_tree_store(neo4j_server, DIM)
    try:
        populated(src)
        before = snapshot(src, "c1")
        vectors = src.embeddings(list(before[0]))
        path = tmp_path / "c1.jsonl"
        counts = ops.export_cube(src, "c1", path)
        assert counts == {"memories": 10, "edges": len(before[1])}
        assert "not exported" not in path.read_text()
        # Neo4j -> JSONL -> embedded
        emb = EmbeddedTreeStore(tmp_path / "tree.sqlite", dimension=DIM)
        assert ops.import_cube(emb, path)["memories"] == 10
        assert snapshot(emb, "c1") == before
        # Neo4j -> JSONL -> the same Neo4j, wiped
        src.wipe()
        src.close()
        src = make_neo4j_tree_store(neo4j_server, DIM)
        result = ops.import_cube(src, path)
        assert result == {"memories": 10, "edges": len(before[1]), "edges_skipped": 0}
        assert snapshot(src, "c1") == before
        after = src.embeddings(list(before[0]))
        for k, v in vectors.items():
            assert np.allclose(after[k], v, atol=1e-6)
        # re-homed into another cube through a stream
        buf = io.StringIO()
        ops.export_cube(emb, "c1", buf)
        buf.seek(0)
        emb2 = EmbeddedTreeStore(tmp_path / "tree2.sqlite", dimension=DIM)
        ops.import_cube(emb2, buf, cube_id="c9")
        assert snapshot(emb2, "c9") == before
        emb.close()
        emb2.close()
    finally:
        src.close()


def test_cli_start_status_stop(tmp_path: Any) -> None:
    from typer.testing import CliRunner

    from hippograph.cli_neo4j import neo4j_app
    from hippograph.stores.tree.neo4j_server import status

    runner = CliRunner()
    data, port = tmp_path / "neo4j", free_port()
    assert runner.invoke(neo4j_app, ["status", "-d", str(data)]).exit_code == 1
    try:
        started = runner.invoke(neo4j_app, ["start", "-d", str(data), "-p", str(port), "--heap", "512m"])
        assert started.exit_code == 0, started.output
        assert f"bolt://127.0.0.1:{port}" in started.output
        state = status(data)
        assert state["running"] and state["reachable"]
        s = Neo4jTreeStore(state["uri"], dimension=DIM)
        s.add([item(text="from the cli server")])
        assert s.count() == 1
        s.close()
        assert runner.invoke(neo4j_app, ["status", "-d", str(data)]).exit_code == 0
        again = runner.invoke(neo4j_app, ["start", "-d", str(data), "-p", str(port)])
        assert "already running" in again.output
    finally:
        stopped = runner.invoke(neo4j_app, ["stop", "-d", str(data)])
    assert "stopped" in stopped.output
    assert not status(data)["running"]
