"""The TreeStore contract: every backend (embedded, Neo4j) must pass every test here."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SourceRef, content_hash
from hippograph.stores.tree.base import Edge, RecallQuery, Rel, TreeStore

DIM = 64
EMB = HashingEmbeddings(DIM)


def mem(text: str, *, cube: str = "c1", user: str = "u1", **fields: object) -> MemoryItem:
    return MemoryItem(user_id=user, cube_id=cube, text=text, embedding=EMB.embed_query(text), **fields)  # type: ignore[arg-type]


def test_add_get_round_trip_keeps_every_field(tree_store: TreeStore) -> None:
    item = mem(
        "Ana moved to Lisbon in May", key="Ana on moving", tags=["move", "lisbon"],
        memory_type=MemoryType.USER, source="conversation",
        source_refs=[SourceRef(kind="message", ref="m-1", extra={"speaker": "Ana"})],
        session_id="s1", turn_index=3, confidence=0.8, metadata={"lang": "en", "n": 2},
    )
    assert tree_store.add([item]) == [item.id]
    (got,) = tree_store.get([item.id])
    assert got.model_dump(exclude={"embedding"}) == item.model_dump(exclude={"embedding"})
    assert got.content_hash == content_hash("ana  moved to LISBON in may")


def test_get_keeps_order_skips_unknown_and_filters_by_cube(tree_store: TreeStore) -> None:
    a, b = mem("alpha fact"), mem("beta fact", cube="c2")
    tree_store.add([a, b])
    assert [m.id for m in tree_store.get([b.id, "nope", a.id])] == [b.id, a.id]
    assert [m.id for m in tree_store.get([a.id, b.id], cube_ids=["c2"])] == [b.id]


def test_add_same_id_replaces(tree_store: TreeStore) -> None:
    item = mem("first version")
    tree_store.add([item])
    replacement = mem("second version", id=item.id)
    tree_store.add([replacement])
    assert tree_store.count(cube_ids=["c1"]) == 1
    assert tree_store.get([item.id])[0].text == "second version"
    assert [h.id for h in tree_store.text_search("first", cube_ids=["c1"])] == []


def test_add_rejects_missing_or_wrong_size_embedding_and_writes_nothing(tree_store: TreeStore) -> None:
    good = mem("good one")
    no_vector = MemoryItem(user_id="u1", cube_id="c1", text="no vector")
    with pytest.raises(InvalidInputError):
        tree_store.add([good, no_vector])
    wrong = mem("wrong size")
    wrong.embedding = [0.1] * (DIM + 1)
    with pytest.raises(InvalidInputError):
        tree_store.add([good, wrong])
    assert tree_store.count(cube_ids=["c1"]) == 0


def test_update_changes_fields_and_unknown_id_raises(tree_store: TreeStore) -> None:
    item = mem("I like tea")
    tree_store.add([item])
    item.text, item.tags = "I like green tea", ["drinks"]
    item.embedding = EMB.embed_query(item.text)
    tree_store.update(item)
    (got,) = tree_store.get([item.id])
    assert (got.text, got.tags) == ("I like green tea", ["drinks"])
    assert tree_store.text_search("green", cube_ids=["c1"])[0].id == item.id
    with pytest.raises(NotFoundError):
        tree_store.update(mem("ghost"))


def test_soft_delete_hides_from_search_but_keeps(tree_store: TreeStore) -> None:
    keep, gone = mem("keep the kayak"), mem("delete the kayak")
    tree_store.add([keep, gone])
    assert tree_store.delete([gone.id]) == 1
    assert tree_store.delete([gone.id]) == 0  # already deleted
    assert tree_store.get([gone.id])[0].status == MemoryStatus.DELETED
    assert [h.id for h in tree_store.text_search("kayak", cube_ids=["c1"])] == [keep.id]
    assert [h.id for h in tree_store.vector_search(EMB.embed_query("delete the kayak"), cube_ids=["c1"], k=5)] == [
        keep.id
    ]
    assert tree_store.count(cube_ids=["c1"]) == 1
    assert tree_store.count(cube_ids=["c1"], statuses=list(MemoryStatus)) == 2


def test_hard_delete_removes_memory_and_edges(tree_store: TreeStore) -> None:
    a, b = mem("turn one"), mem("turn two")
    tree_store.add([a, b])
    tree_store.add_edges([Edge(src=a.id, rel=Rel.NEXT, dst=b.id)])
    assert tree_store.delete([b.id], hard=True) == 1
    assert tree_store.get([b.id]) == []
    assert tree_store.edges([a.id]) == []
    assert tree_store.vector_search(EMB.embed_query("turn two"), cube_ids=["c1"], k=5)[0].id == a.id
    assert tree_store.count(cube_ids=["c1"], statuses=list(MemoryStatus)) == 1


def test_supersede_keeps_history(tree_store: TreeStore) -> None:
    old = mem("Ana lives in Porto")
    tree_store.add([old])
    new = mem("Ana lives in Lisbon")
    assert tree_store.supersede(old.id, new) == new.id
    (old_now,) = tree_store.get([old.id])
    assert old_now.status == MemoryStatus.SUPERSEDED and old_now.valid_to is not None
    edges = tree_store.edges([new.id], rel=Rel.SUPERSEDES)
    assert [(e.src, e.dst) for e in edges] == [(new.id, old.id)]
    assert [h.id for h in tree_store.text_search("Ana lives", cube_ids=["c1"])] == [new.id]
    with pytest.raises(NotFoundError):
        tree_store.supersede("missing-id", mem("x"))


def test_vector_search_orders_by_cosine_and_respects_k(tree_store: TreeStore) -> None:
    texts = ["red apple pie", "red apple", "green apple tart", "blue whale song", "stock market crash"]
    items = [mem(t) for t in texts]
    tree_store.add(items)
    hits = tree_store.vector_search(EMB.embed_query("red apple"), cube_ids=["c1"], k=3)
    assert [h.text for h in hits][:2] == ["red apple", "red apple pie"]
    assert len(hits) == 3
    scores = [h.scores["vector"] for h in hits]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert [h.ranks["vector"] for h in hits] == [0, 1, 2]


def test_vector_search_returns_k_from_small_cube_next_to_big_one(tree_store: TreeStore) -> None:
    big = [mem(f"common words number {i} about apples", cube="big") for i in range(300)]
    small = [mem(f"small cube memory {i}", cube="small") for i in range(12)]
    tree_store.add(big)
    tree_store.add(small)
    hits = tree_store.vector_search(EMB.embed_query("apples common words"), cube_ids=["small"], k=10)
    assert len(hits) == 10
    assert {h.item.cube_id for h in hits} == {"small"}


def test_searches_never_cross_cubes(tree_store: TreeStore) -> None:
    tree_store.add([mem("secret plan alpha", cube="c1", user="u1"), mem("secret plan beta", cube="c2", user="u2")])
    for hits in (
        tree_store.text_search("secret plan", cube_ids=["c2"], k=10),
        tree_store.vector_search(EMB.embed_query("secret plan"), cube_ids=["c2"], k=10),
    ):
        assert [h.text for h in hits] == ["secret plan beta"]
    assert tree_store.text_search("secret", cube_ids=[], k=10) == []
    assert tree_store.list(cube_ids=["c3"]) == []


def test_text_search_keeps_to_scope_when_better_matches_are_elsewhere(tree_store: TreeStore) -> None:
    # The cube is most of the table while the strongest matches live in another cube or are superseded: the
    # search still returns k in-scope active hits, best first (the embedded store then filters after matching).
    mine = [mem(f"kayak trip number {i} with friends and a long list of other words") for i in range(30)]
    theirs = [mem(f"kayak kayak kayak {i}", cube="c2", user="u2") for i in range(20)]
    old = mem("kayak kayak kayak kayak")
    tree_store.add([*mine, *theirs, old])
    tree_store.supersede(old.id, mem("the boat is sold"))
    hits = tree_store.text_search("kayak", cube_ids=["c1"], k=8)
    assert len(hits) == 8
    assert {h.item.cube_id for h in hits} == {"c1"} and old.id not in {h.id for h in hits}
    assert [h.scores["bm25"] for h in hits] == sorted((h.scores["bm25"] for h in hits), reverse=True)
    assert {h.id for h in tree_store.text_search("kayak", cube_ids=["c2"], k=25)} == {m.id for m in theirs}
    then = tree_store.text_search("kayak", cube_ids=["c1"], k=8,
                                  statuses=(MemoryStatus.ACTIVE, MemoryStatus.SUPERSEDED))
    assert then[0].id == old.id


def test_text_search_ranks_matches_and_reports_bm25(tree_store: TreeStore) -> None:
    tree_store.add([mem(t) for t in [
        "the violin concert was wonderful", "I play the violin and the violin is old", "a quiet evening at home",
        "football match on sunday", "cooking pasta with basil",
    ]])
    hits = tree_store.text_search("violin", cube_ids=["c1"], k=10)
    assert {h.text for h in hits} == {"the violin concert was wonderful", "I play the violin and the violin is old"}
    assert all(h.scores["bm25"] > 0 for h in hits)
    assert hits[0].scores["bm25"] >= hits[1].scores["bm25"]


@pytest.mark.parametrize("query", [
    '"', 'violin" OR "x', "NEAR(violin home)", "violin*", "violin AND NOT home", "title:violin",
    "+violin -home && || ! ( ) { } [ ] ^ ~ * ? : \\ /", "') DETACH DELETE n //", "\u0000violin", "",
])
def test_text_search_treats_query_syntax_as_plain_text(tree_store: TreeStore, query: str) -> None:
    tree_store.add([mem("I play the violin"), mem("quiet evening at home")])
    hits = tree_store.text_search(query, cube_ids=["c1"], k=10)  # must not raise
    assert all("violin" in h.text or "home" in h.text for h in hits)
    assert tree_store.count(cube_ids=["c1"]) == 2


def test_neighbours_adjacent_turns_and_parents(tree_store: TreeStore) -> None:
    turns = [mem(f"turn {i}", session_id="s1", turn_index=i) for i in range(5)]
    other = mem("other session turn", session_id="s2", turn_index=2)
    topic = mem("topic: music", memory_type=MemoryType.TOPIC)
    child = mem("likes jazz", parent_id=topic.id)
    tree_store.add([*turns, other, topic, child])
    tree_store.add_edges([Edge(src=child.id, rel=Rel.PARENT, dst=topic.id)])
    near = {m.text for m in tree_store.neighbours([turns[2].id], cube_ids=["c1"], window=1)}
    assert near == {"turn 1", "turn 3"}
    assert {m.text for m in tree_store.neighbours([child.id], cube_ids=["c1"])} == {"topic: music"}
    assert {m.text for m in tree_store.neighbours([topic.id], cube_ids=["c1"])} == {"likes jazz"}
    assert tree_store.neighbours([turns[2].id], cube_ids=["other-cube"]) == []


def test_edges_are_idempotent_and_directional(tree_store: TreeStore) -> None:
    a, b, c = mem("a fact"), mem("b fact"), mem("c fact")
    tree_store.add([a, b, c])
    tree_store.add_edges([Edge(src=a.id, rel=Rel.RELATE_TO, dst=b.id), Edge(src=c.id, rel=Rel.PARENT, dst=a.id)])
    tree_store.add_edges([Edge(src=a.id, rel=Rel.RELATE_TO, dst=b.id)])
    assert [(e.src, e.rel, e.dst) for e in tree_store.edges([a.id])] == [(a.id, Rel.RELATE_TO, b.id)]
    assert [(e.src, e.dst) for e in tree_store.edges([a.id], direction="in")] == [(c.id, a.id)]
    assert len(tree_store.edges([a.id], direction="both")) == 2
    assert tree_store.edges([a.id], rel=Rel.PARENT) == []


def test_hybrid_search_equals_the_two_searches(tree_store: TreeStore) -> None:
    tree_store.add([mem(f"note {i} about {'apples' if i % 3 else 'pears'} and more") for i in range(30)])
    tree_store.add([mem("apples elsewhere", cube="c2")])
    q = EMB.embed_query("apples")
    dense, lexical = tree_store.hybrid_search(q, "apples AND (pears", cube_ids=["c1"], k=7)
    assert [h.id for h in dense] == [h.id for h in tree_store.vector_search(q, cube_ids=["c1"], k=7)]
    assert [h.id for h in lexical] == [h.id for h in tree_store.text_search("apples AND (pears", cube_ids=["c1"], k=7)]
    assert len(dense) == 7 and len(lexical) == 7 and all(h.item.cube_id == "c1" for h in dense + lexical)
    assert tree_store.hybrid_search(q, "!!!", cube_ids=["c1"], k=3)[1] == []


def test_delete_edges_removes_exactly_those_edges(tree_store: TreeStore) -> None:
    a, b, c = mem("a fact"), mem("b fact"), mem("c fact")
    tree_store.add([a, b, c])
    tree_store.add_edges([Edge(src=a.id, rel=Rel.NEXT, dst=b.id), Edge(src=b.id, rel=Rel.NEXT, dst=c.id),
                          Edge(src=a.id, rel=Rel.RELATE_TO, dst=b.id)])
    removed = tree_store.delete_edges([Edge(src=a.id, rel=Rel.NEXT, dst=b.id), Edge(src=c.id, rel=Rel.NEXT, dst=a.id),
                                       Edge(src=a.id, rel=Rel.NEXT, dst="ghost")])
    assert removed == 1  # reversed and unknown edges are not there to remove
    assert sorted((e.src, e.rel, e.dst) for e in tree_store.edges([a.id, b.id])) == sorted(
        [(a.id, Rel.RELATE_TO, b.id), (b.id, Rel.NEXT, c.id)])
    assert tree_store.delete_edges([]) == 0 and len(tree_store.get([a.id, b.id, c.id])) == 3


def test_edge_to_a_missing_memory_is_refused_and_writes_nothing(tree_store: TreeStore) -> None:
    a, b = mem("a fact"), mem("b fact")
    tree_store.add([a, b])
    with pytest.raises(NotFoundError, match="ghost"):
        tree_store.add_edges([Edge(src=a.id, rel=Rel.RELATE_TO, dst=b.id), Edge(src=a.id, rel=Rel.NEXT, dst="ghost")])
    assert tree_store.edges([a.id], direction="both") == []  # the batch is one transaction
    tree_store.add_edges([])  # nothing to do is not an error


def test_find_by_hash_only_active_in_cube(tree_store: TreeStore) -> None:
    a, b = mem("Same Text"), mem("same   text", cube="c2")
    tree_store.add([a, b])
    assert tree_store.find_by_hash("c1", [content_hash("same text"), "0" * 64]) == {content_hash("same text"): a.id}
    tree_store.delete([a.id])
    assert tree_store.find_by_hash("c1", [content_hash("same text")]) == {}


def test_list_pages_newest_first_with_filters(tree_store: TreeStore) -> None:
    items = [mem(f"note {i}", created_at=1000.0 + i, session_id="s1" if i % 2 else "s2") for i in range(7)]
    tree_store.add(items)
    page1 = tree_store.list(cube_ids=["c1"], limit=3)
    page2 = tree_store.list(cube_ids=["c1"], limit=3, offset=3)
    assert [m.text for m in page1] == ["note 6", "note 5", "note 4"]
    assert [m.text for m in page2] == ["note 3", "note 2", "note 1"]
    assert [m.text for m in tree_store.list(cube_ids=["c1"], session_id="s1")] == ["note 5", "note 3", "note 1"]
    assert tree_store.list(cube_ids=["c1"], memory_type=MemoryType.TOPIC.value) == []


def test_count_by_cube_and_status(tree_store: TreeStore) -> None:
    tree_store.add([mem("x1"), mem("x2"), mem("y1", cube="c2")])
    assert tree_store.count(cube_ids=["c1"]) == 2
    assert tree_store.count(cube_ids=["c1", "c2"]) == 3
    assert tree_store.count() == 3
    assert tree_store.count(cube_ids=[]) == 0


def test_persists_across_reopen(open_tree_store: Callable[[], TreeStore]) -> None:
    first = open_tree_store()
    item = mem("remember me after restart", session_id="s", turn_index=0)
    first.add([item])
    first.close()
    second = open_tree_store()
    assert second.get([item.id])[0].text == "remember me after restart"
    assert second.vector_search(EMB.embed_query("remember me after restart"), cube_ids=["c1"], k=1)[0].id == item.id
    assert second.text_search("restart", cube_ids=["c1"])[0].id == item.id


def test_concurrent_writers_lose_nothing(open_tree_store: Callable[[], TreeStore]) -> None:
    stores = [open_tree_store(), open_tree_store()]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = stores[n % 2]
        try:
            for batch in range(5):
                store.add([mem(f"writer {n} batch {batch} item {i}") for i in range(10)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert stores[0].count(cube_ids=["c1"]) == 200
    # Each handle sees the other's writes in vector search too (caches catch up).
    hits = stores[1].vector_search(EMB.embed_query("writer 0 batch 4 item 9"), cube_ids=["c1"], k=1)
    assert hits[0].text == "writer 0 batch 4 item 9"


# -- entity graph (issue 12) ---------------------------------------------------------------------------------


def test_mentions_link_memories_to_entities_idempotently(tree_store: TreeStore) -> None:
    a, b = mem("Ana flew to Lisbon"), mem("Lisbon has trams")
    tree_store.add([a, b])
    assert tree_store.add_mentions({a.id: ["ana", "lisbon"], b.id: ["lisbon", "tram"]}) == 4
    assert tree_store.add_mentions({a.id: ["ana", "lisbon", "lisbon"]}) == 0  # idempotent, duplicates once
    assert tree_store.mentions([a.id, b.id, "nope"]) == {a.id: ["ana", "lisbon"], b.id: ["lisbon", "tram"]}
    assert tree_store.edges([a.id]) == []  # MENTIONS edges are not memory-to-memory edges


def test_mentions_of_an_unknown_memory_are_refused_and_nothing_is_written(tree_store: TreeStore) -> None:
    a = mem("Ana flew to Lisbon")
    tree_store.add([a])
    with pytest.raises(NotFoundError):
        tree_store.add_mentions({a.id: ["ana"], "ghost": ["lisbon"]})
    assert tree_store.mentions([a.id]) == {}


def test_entity_search_ranks_shared_rare_entities_first_within_cubes(tree_store: TreeStore) -> None:
    both = mem("Ana and Joe met in Lisbon")
    ana = mem("Ana bought a kayak")
    joe = mem("Joe likes kayaks too")
    other_cube = mem("Ana in another cube", cube="c2")
    fillers = [mem(f"Joe note {i}") for i in range(3)]  # Joe is common, Ana is rarer
    tree_store.add([both, ana, joe, other_cube, *fillers])
    tree_store.add_mentions({both.id: ["ana", "joe", "lisbon"], ana.id: ["ana", "kayak"], joe.id: ["joe", "kayak"],
                             other_cube.id: ["ana"], **{f.id: ["joe"] for f in fillers}})
    hits = tree_store.entity_search(["ana", "joe"], cube_ids=["c1"], k=10)
    assert hits[0].id == both.id
    assert hits[0].scores["entity"] > hits[1].scores["entity"] > 0
    assert hits[1].id == ana.id  # ana (2 mentions) weighs more than joe (5 mentions)
    assert {h.id for h in hits} == {both.id, ana.id, joe.id, *(f.id for f in fillers)}
    assert [h.ranks["entity"] for h in hits] == list(range(len(hits)))
    assert other_cube.id not in {h.id for h in tree_store.entity_search(["ana"], cube_ids=["c1"])}
    assert [h.id for h in tree_store.entity_search(["ana"], cube_ids=["c2"])] == [other_cube.id]
    assert len(tree_store.entity_search(["ana", "joe"], cube_ids=["c1"], k=2)) == 2
    assert tree_store.entity_search(["nobody"], cube_ids=["c1"]) == []


def test_entity_search_skips_deleted_memories_and_hard_delete_removes_orphan_entities(tree_store: TreeStore) -> None:
    a, b = mem("Ana in Lisbon"), mem("Ana in Porto")
    tree_store.add([a, b])
    tree_store.add_mentions({a.id: ["ana", "lisbon"], b.id: ["ana", "porto"]})
    tree_store.delete([b.id])
    assert [h.id for h in tree_store.entity_search(["ana", "porto"], cube_ids=["c1"])] == [a.id]
    tree_store.delete([a.id], hard=True)
    assert tree_store.mentions([a.id]) == {}
    # lisbon was only a's: gone; a memory re-mentioning it starts a new entity (1 edge created)
    c = mem("Lisbon again")
    tree_store.add([c])
    assert tree_store.add_mentions({c.id: ["lisbon"]}) == 1
    assert [h.id for h in tree_store.entity_search(["lisbon"], cube_ids=["c1"])] == [c.id]


def test_delete_mentions_removes_edges_and_orphans_only(tree_store: TreeStore) -> None:
    a, b = mem("Ana in Lisbon"), mem("Ana at home")
    tree_store.add([a, b])
    tree_store.add_mentions({a.id: ["ana", "lisbon"], b.id: ["ana"]})
    assert tree_store.delete_mentions([a.id, "nope"]) == 2
    assert tree_store.delete_mentions([a.id]) == 0
    assert tree_store.mentions([a.id, b.id]) == {b.id: ["ana"]}
    assert tree_store.entity_search(["lisbon"], cube_ids=["c1"]) == []
    assert [h.id for h in tree_store.entity_search(["ana"], cube_ids=["c1"])] == [b.id]


@pytest.mark.parametrize("name", ["x' }) DETACH DELETE n //", "a|b", 'q"; DROP TABLE entities; --', "ünï cödé"])
def test_entity_names_are_data_never_syntax(tree_store: TreeStore, name: str) -> None:
    a, b = mem("first"), mem("second")
    tree_store.add([a, b])
    tree_store.add_mentions({a.id: [name], b.id: ["plain"]})
    assert tree_store.mentions([a.id]) == {a.id: [name]}
    assert [h.id for h in tree_store.entity_search([name], cube_ids=["c1"])] == [a.id]
    assert tree_store.count(cube_ids=["c1"]) == 2
    assert tree_store.mentions([b.id]) == {b.id: ["plain"]}


def test_erase_cube_removes_memories_edges_and_entities_of_that_cube_only(tree_store: TreeStore) -> None:
    a, b, c = mem("Ana flew to Lisbon", cube="gone"), mem("Lisbon has trams", cube="gone"), mem("Ben stays home")
    tree_store.add([a, b, c])
    tree_store.add_edges([Edge(src=a.id, rel=Rel.NEXT, dst=b.id)])
    tree_store.add_mentions({a.id: ["lisbon"], b.id: ["lisbon", "tram"], c.id: ["home"]})
    tree_store.delete([b.id])  # soft-deleted memories go too

    assert tree_store.erase_cube("gone") == 2

    assert tree_store.get([a.id, b.id]) == [] and tree_store.count(cube_ids=["gone"], statuses=tuple(MemoryStatus)) == 0
    assert tree_store.edges([a.id, b.id]) == []
    assert tree_store.mentions([a.id, b.id]) == {}
    assert tree_store.text_search("Lisbon trams", cube_ids=["gone"]) == []
    assert [h.id for h in tree_store.vector_search(EMB.embed_query("Ana flew to Lisbon"), cube_ids=["gone"])] == []
    assert tree_store.get([c.id])[0].text == "Ben stays home" and tree_store.mentions([c.id]) == {c.id: ["home"]}
    assert tree_store.erase_cube("gone") == 0  # idempotent


def test_scrub_after_an_erasure_keeps_every_other_memory_findable(tree_store: TreeStore) -> None:
    kept = [mem(f"Ben keeps note {i} about trams", cube="kept") for i in range(30)]
    tree_store.add([*kept, *(mem(f"Ana note {i} about Lisbon", cube="gone") for i in range(30))])
    tree_store.add_mentions({m.id: ["tram"] for m in kept})
    tree_store.erase_cube("gone")

    tree_store.scrub()  # may rewrite the store's files (embedded: VACUUM); row ids and indexes must survive

    assert tree_store.count(cube_ids=["kept"]) == 30 and tree_store.count(cube_ids=["gone"]) == 0
    assert [h.id for h in tree_store.text_search("note 7 trams", cube_ids=["kept"], k=1)] == [kept[7].id]
    vector = EMB.embed_query("Ben keeps note 12 about trams")
    assert tree_store.vector_search(vector, cube_ids=["kept"], k=1)[0].id == kept[12].id
    assert len(tree_store.entity_search(["tram"], cube_ids=["kept"], k=50)) == 30
    tree_store.add([mem("Ben rides the new tram line", cube="kept")])  # still writable
    assert tree_store.count(cube_ids=["kept"]) == 31


def test_embeddings_returns_the_stored_vectors(tree_store: TreeStore) -> None:
    a = mem("Ana flew to Lisbon")
    tree_store.add([a])
    vectors = tree_store.embeddings([a.id, "nope"])
    assert list(vectors) == [a.id]
    assert [round(float(x), 5) for x in vectors[a.id]] == [round(x, 5) for x in EMB.embed_query("Ana flew to Lisbon")]


def _recall_fixture(tree_store: TreeStore) -> MemoryItem:
    """Two sessions of turns about fruit (one session's working memory too), a topic with children, entities,
    and the same words in another cube."""
    turns = [mem(f"turn {i}: {'apples' if i % 2 else 'pears'} with ana in lisbon", session_id=f"s{i // 6}",
                 turn_index=i % 6) for i in range(12)]
    topic = mem("topic: fruit", memory_type=MemoryType.TOPIC)
    children = [mem(f"fact {i}: apples are sweet", parent_id=topic.id) for i in range(3)]
    working = [mem(f"working note {i} on apples", session_id="s0", memory_type=MemoryType.WORKING) for i in range(3)]
    tree_store.add([*turns, topic, *children, *working, mem("apples with ana in lisbon", cube="c2", session_id="s0",
                                                            turn_index=1)])
    tree_store.add_edges([Edge(src=c.id, rel=Rel.PARENT, dst=topic.id) for c in children])
    tree_store.add_mentions({t.id: ["ana", "lisbon"] if i % 3 else ["ana"] for i, t in enumerate(turns)})
    tree_store.add_mentions({children[0].id: ["lisbon"]})
    tree_store.delete([turns[5].id])  # deleted memories are nobody's neighbour or hit
    return topic


@pytest.mark.parametrize("text", ["apples in lisbon", "OR NOT AND", "apples') RETURN 1 //"])
def test_recall_round_equals_the_separate_calls(tree_store: TreeStore, text: str) -> None:
    topic = _recall_fixture(tree_store)
    vector = EMB.embed_query("apples with ana")
    query = RecallQuery(vector=vector, text=text, cube_ids=["c1"], k=6, entity_names=["ana", "lisbon"], entity_k=4,
                        working_cube_id="c1", working_session_id="s0", working_limit=2, expand=3, expand_window=1)
    got = tree_store.recall_round(query)
    assert [h.id for h in got.dense] == [h.id for h in tree_store.vector_search(vector, cube_ids=["c1"], k=6)]
    assert [h.id for h in got.lexical] == [h.id for h in tree_store.text_search(text, cube_ids=["c1"], k=6)]
    entity = tree_store.entity_search(["ana", "lisbon"], cube_ids=["c1"], k=4)
    assert [(h.id, round(h.scores["entity"], 6)) for h in got.entity] == [
        (h.id, round(h.scores["entity"], 6)) for h in entity]
    assert len(got.entity) == 4 and len(got.dense) == 6
    working = tree_store.list(cube_ids=["c1"], session_id="s0", memory_type=MemoryType.WORKING.value, limit=2)
    assert [m.id for m in got.working] == [m.id for m in working] and len(working) == 2
    assert all(h.item.cube_id == "c1" for h in got.dense + got.lexical + got.entity)
    if got.near is not None:  # a backend that reads neighbours ahead answers `neighbours` exactly from them
        assert len(got.near.seeds) == 3 and got.near.seeds <= {h.id for h in got.dense + got.lexical}
        assert got.dense[0].id in got.near.seeds  # the best dense hit is always a seed
        seeds = sorted(got.near.seeds)
        for chosen in (seeds, seeds[:1], seeds[::-1], seeds[1::2]):
            ahead = got.near.of(chosen)
            assert ahead is not None
            assert [m.id for m in ahead] == [m.id for m in tree_store.neighbours(chosen, cube_ids=["c1"], window=1)]
        assert got.near.of([*seeds[:1], topic.id if topic.id not in got.near.seeds else "not-read"]) is None


def test_recall_round_reads_nothing_it_was_not_asked_for(tree_store: TreeStore) -> None:
    _recall_fixture(tree_store)
    vector = EMB.embed_query("apples")
    got = tree_store.recall_round(RecallQuery(vector=vector, text="apples", cube_ids=["c1"], k=5))
    assert got.entity == [] and got.working == [] and len(got.dense) == 5 and len(got.lexical) == 5
    assert tree_store.recall_round(RecallQuery(vector=vector, text="apples", cube_ids=["nobody"], k=5,
                                               entity_names=["ana"], working_cube_id="nobody",
                                               working_session_id="s0", working_limit=5)).dense == []
    # values that would be Cypher or SQL if pasted into a query find nothing and change nothing
    hostile = "s0' OR 1=1 }) DETACH DELETE m //"
    got = tree_store.recall_round(RecallQuery(vector=vector, text=hostile, cube_ids=["c1"], k=5,
                                              entity_names=[hostile, "ana' OR '1'='1"], working_cube_id="c1",
                                              working_session_id=hostile, working_limit=5, expand=2))
    assert got.entity == [] and got.working == [] and len(got.dense) == 5
    assert tree_store.count(cube_ids=["c1"]) == 18 and len(tree_store.entity_search(["ana"], cube_ids=["c1"])) == 10
