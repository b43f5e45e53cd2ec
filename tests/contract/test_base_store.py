"""The LangGraph `BaseStore` contract: `HippoStore` (on both tree backends) must pass the same tests as
langgraph's own `InMemoryStore`, which runs here as the reference (indexed with the same hashing embedder).

Modelled on langgraph's `libs/checkpoint/tests/test_store.py`: put/get/delete, namespace validation, namespace
listing (prefix, suffix, wildcards, max_depth, limit/offset), search by prefix with filters and operators, query
ranking, paging, updates, batch/abatch, TTL. Where HippoStore deviates on purpose (a namespace's first label is a
user; every item is a memory the chat graph recalls), the `test_hippostore_*` tests assert the deviation and
say why. Ordering of a search without a query is store-defined (InMemoryStore: insertion order; PostgresStore and
HippoStore: most recently updated first), so the shared tests compare those results as sets.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    PutOp,
    SearchItem,
    SearchOp,
)
from langgraph.store.memory import InMemoryStore

from hippograph.store import HippoStore
from hippograph.stores.embedders import HashingEmbeddings
from hippograph.stores.errors import AccessDeniedError, InvalidInputError
from hippograph.stores.services import Services
from hippograph.stores.settings import Settings
from tests.conftest import DIM

HIPPO_BACKENDS = ["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)]
STORES = ["inmemory", "hippo-embedded", pytest.param("hippo-neo4j", marks=pytest.mark.neo4j)]


def open_services(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Services:
    """Default services in a temp dir (hashing embedder); tree memory on `backend` (Neo4j: wiped first)."""
    tree = None
    if backend == "neo4j":
        from tests.neo4j_fixture import make_neo4j_tree_store

        tree = make_neo4j_tree_store(request.getfixturevalue("neo4j_server"), DIM)
    settings = Settings(data_dir=tmp_path / "data", embedder=f"hashing:{DIM}", worker_in_process=False)
    return Services.from_settings(settings, tree=tree)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BaseStore]:
    """An empty store: the reference InMemoryStore, or an unbound HippoStore on one tree backend."""
    if request.param == "inmemory":
        # HippoStore embeds the value's `content` field, so the reference indexes the same field.
        yield InMemoryStore(index={"dims": DIM, "embed": HashingEmbeddings(DIM), "fields": ["content"]})
        return
    services = open_services(request, tmp_path, request.param.removeprefix("hippo-"))
    try:
        yield HippoStore(services)
    finally:
        services.close()


@pytest.fixture(params=HIPPO_BACKENDS)
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    svc = open_services(request, tmp_path, request.param)
    try:
        yield svc
    finally:
        svc.close()


def keys(items: list[SearchItem]) -> list[str]:
    return [i.key for i in items]


# -- put / get / delete ---------------------------------------------------------------------------------------


def test_put_then_get_returns_the_item_and_unknown_keys_are_none(store: BaseStore) -> None:
    value = {"content": "Ana drinks oat milk flat whites", "kind": "food", "n": 2, "meta": {"tags": ["am", "pm"]}}
    store.put(("ana", "prefs"), "drink", value)
    item = store.get(("ana", "prefs"), "drink")
    assert isinstance(item, Item)
    assert (item.namespace, item.key, item.value) == (("ana", "prefs"), "drink", value)
    assert isinstance(item.created_at, datetime) and item.created_at.tzinfo is not None
    assert item.updated_at >= item.created_at
    assert store.get(("ana", "prefs"), "nope") is None
    assert store.get(("ana", "other"), "drink") is None  # same key, other namespace
    assert store.get(("ana",), "drink") is None  # a prefix of the namespace is another namespace


def test_put_on_an_existing_key_replaces_the_value(store: BaseStore) -> None:
    store.put(("ana", "prefs"), "drink", {"content": "Ana drinks oat milk", "kind": "food"})
    before = store.get(("ana", "prefs"), "drink")
    store.put(("ana", "prefs"), "drink", {"content": "Ana now drinks espresso"})
    after = store.get(("ana", "prefs"), "drink")
    assert before is not None and after is not None
    assert after.value == {"content": "Ana now drinks espresso"}  # replaced, not merged: "kind" is gone
    assert after.updated_at >= before.updated_at
    assert keys(store.search(("ana",))) == ["drink"]  # still one item


def test_delete_removes_the_item_and_deleting_a_missing_key_is_a_no_op(store: BaseStore) -> None:
    store.put(("ana", "prefs"), "drink", {"content": "oat milk"})
    store.put(("ana", "prefs"), "music", {"content": "fado"})
    store.delete(("ana", "prefs"), "music")
    assert store.get(("ana", "prefs"), "music") is None
    assert keys(store.search(("ana", "prefs"))) == ["drink"]
    store.delete(("ana", "prefs"), "music")
    store.delete(("ana", "never"), "k")
    assert store.get(("ana", "prefs"), "drink") is not None


def test_invalid_namespaces_are_refused(store: BaseStore) -> None:
    for namespace in [(), ("ana", "a.b"), ("ana", "fun", ""), ("langgraph", "foo")]:
        with pytest.raises(InvalidNamespaceError):
            store.put(namespace, "k", {"content": "x"})
    store.put(("ana", "langgraph", "x"), "k", {"content": "only the first label is reserved"})
    assert store.get(("ana", "langgraph", "x"), "k") is not None


# -- namespaces -----------------------------------------------------------------------------------------------

NAMESPACES = [
    ("a", "b", "c"),
    ("a", "b", "d", "e"),
    ("a", "b", "d", "i"),
    ("a", "b", "f"),
    ("a", "c", "f"),
    ("b", "a", "f"),
    ("users", "123"),
    ("users", "456", "settings"),
    ("admin", "users", "789"),
]


def test_list_namespaces_by_prefix_suffix_wildcards_depth_and_page(store: BaseStore) -> None:
    assert store.list_namespaces() == []
    for i, namespace in enumerate(NAMESPACES):
        store.put(namespace, f"id_{i}", {"data": f"value_{i:02d}"})
    assert store.list_namespaces() == sorted(NAMESPACES)
    assert store.list_namespaces(prefix=("a", "b")) == [
        ("a", "b", "c"), ("a", "b", "d", "e"), ("a", "b", "d", "i"), ("a", "b", "f")]
    assert store.list_namespaces(suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("a",), suffix=("f",)) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(prefix=("a", "*", "f")) == [("a", "b", "f"), ("a", "c", "f")]
    assert store.list_namespaces(suffix=("*", "f")) == [("a", "b", "f"), ("a", "c", "f"), ("b", "a", "f")]
    assert store.list_namespaces(prefix=("*", "users")) == [("admin", "users", "789")]
    assert store.list_namespaces(prefix=("users", "*")) == [("users", "123"), ("users", "456", "settings")]
    assert store.list_namespaces(prefix=("*", "users"), suffix=("*", "settings")) == []
    assert store.list_namespaces(prefix=("a", "b"), max_depth=3) == [("a", "b", "c"), ("a", "b", "d"), ("a", "b", "f")]
    assert store.list_namespaces(max_depth=2) == [
        ("a", "b"), ("a", "c"), ("admin", "users"), ("b", "a"), ("users", "123"), ("users", "456")]
    assert store.list_namespaces(prefix=("a", "b"), limit=2) == [("a", "b", "c"), ("a", "b", "d", "e")]
    assert store.list_namespaces(prefix=("a", "b"), offset=2) == [("a", "b", "d", "i"), ("a", "b", "f")]
    assert store.list_namespaces(prefix=("users", "123")) == [("users", "123")]
    assert store.list_namespaces(prefix=("nonexistent",)) == []


def test_list_namespaces_pages_with_limit_and_offset(store: BaseStore) -> None:
    for i in range(12):
        store.put(("pg", f"sub_{i:02d}"), "k", {"data": i})
    assert store.list_namespaces(prefix=("pg",), limit=5) == [("pg", f"sub_{i:02d}") for i in range(5)]
    assert store.list_namespaces(prefix=("pg",), limit=5, offset=5) == [("pg", f"sub_{i:02d}") for i in range(5, 10)]
    assert store.list_namespaces(prefix=("pg",), limit=5, offset=10) == [("pg", "sub_10"), ("pg", "sub_11")]
    assert len(store.list_namespaces(prefix=("pg",))) == 12  # default limit is 100


# -- search: prefix, filters, paging --------------------------------------------------------------------------


def put_pantry(store: BaseStore) -> None:
    store.put(("ana", "pantry"), "oats", {"content": "rolled oats", "kind": "grain", "n": 1,
                                          "meta": {"lang": "en", "shelf": 2}, "tags": ["dry", "bulk"]})
    store.put(("ana", "pantry"), "rice", {"content": "basmati rice", "kind": "grain", "n": 2,
                                          "meta": {"lang": "en", "shelf": 3}, "tags": ["dry"]})
    store.put(("ana", "pantry"), "milk", {"content": "oat milk", "kind": "dairy", "n": 3,
                                          "meta": {"lang": "pt", "shelf": 1}, "tags": []})
    store.put(("ana", "pantry", "fridge"), "eggs", {"content": "free range eggs", "kind": "protein", "n": 4,
                                                    "meta": {"lang": "en", "shelf": 1}, "tags": ["fresh"]})
    store.put(("bo", "pantry"), "tea", {"content": "black tea", "kind": "drink", "n": 5,
                                        "meta": {"lang": "en", "shelf": 1}, "tags": []})


def found(store: BaseStore, prefix: tuple[str, ...], **kwargs: object) -> set[str]:
    return set(keys(store.search(prefix, **kwargs)))  # type: ignore[arg-type]


def test_search_without_query_lists_the_namespace_prefix(store: BaseStore) -> None:
    put_pantry(store)
    assert found(store, ("ana",)) == {"oats", "rice", "milk", "eggs"}
    assert found(store, ("ana", "pantry")) == {"oats", "rice", "milk", "eggs"}  # sub-namespaces included
    assert found(store, ("ana", "pantry", "fridge")) == {"eggs"}
    assert found(store, ("bo",)) == {"tea"}
    assert found(store, ("ana", "nothing")) == set()
    hits = store.search(("ana", "pantry", "fridge"))
    assert isinstance(hits[0], SearchItem) and hits[0].score is None  # no query: no score
    assert hits[0].namespace == ("ana", "pantry", "fridge") and hits[0].value["kind"] == "protein"


def test_search_filters_by_exact_value_nested_value_and_list(store: BaseStore) -> None:
    put_pantry(store)
    assert found(store, ("ana",), filter={"kind": "grain"}) == {"oats", "rice"}
    assert found(store, ("ana",), filter={"kind": "grain", "n": 2}) == {"rice"}  # every condition must hold
    assert found(store, ("ana",), filter={"kind": "nope"}) == set()
    assert found(store, ("ana",), filter={"meta": {"lang": "en"}}) == {"oats", "rice", "eggs"}  # nested: subset
    assert found(store, ("ana",), filter={"meta": {"lang": "en", "shelf": 1}}) == {"eggs"}
    assert found(store, ("ana",), filter={"meta": {"shelf": {"$gte": 2}}}) == {"oats", "rice"}  # operators nest
    assert found(store, ("ana",), filter={"tags": ["dry"]}) == {"rice"}  # a list matches the whole list
    assert found(store, ("ana",), filter={"tags": ["dry", "bulk"]}) == {"oats"}


def test_search_filter_operators(store: BaseStore) -> None:
    put_pantry(store)
    assert found(store, ("ana",), filter={"n": {"$eq": 2}}) == {"rice"}
    assert found(store, ("ana",), filter={"n": {"$ne": 2}}) == {"oats", "milk", "eggs"}
    assert found(store, ("ana",), filter={"n": {"$gt": 2}}) == {"milk", "eggs"}
    assert found(store, ("ana",), filter={"n": {"$gte": 2}}) == {"rice", "milk", "eggs"}
    assert found(store, ("ana",), filter={"n": {"$lt": 2}}) == {"oats"}
    assert found(store, ("ana",), filter={"n": {"$lte": 2}}) == {"oats", "rice"}
    assert found(store, ("ana",), filter={"n": {"$gt": 1, "$lt": 4}}) == {"rice", "milk"}  # a range
    assert found(store, ("ana",), filter={"kind": {"$eq": "dairy"}, "n": {"$gte": 3}}) == {"milk"}
    assert found(store, ("ana",), filter={"kind": {"$ne": "grain"}}) == {"milk", "eggs"}
    with pytest.raises(ValueError):  # an unknown operator is an error, not "no match"
        store.search(("ana",), filter={"n": {"$regex": "1"}})


def test_search_pages_with_limit_and_offset(store: BaseStore) -> None:
    for i in range(12):
        store.put(("ana", "log"), f"k{i:02d}", {"content": f"entry {i}", "i": i})
    assert len(store.search(("ana", "log"))) == 10  # default limit
    pages = [keys(store.search(("ana", "log"), limit=5, offset=o)) for o in (0, 5, 10, 15)]
    assert [len(p) for p in pages] == [5, 5, 2, 0]
    assert sorted(k for page in pages for k in page) == [f"k{i:02d}" for i in range(12)]  # disjoint, complete
    assert found(store, ("ana", "log"), filter={"i": {"$gte": 6}}, limit=3) <= {f"k{i:02d}" for i in range(6, 12)}
    assert len(store.search(("ana", "log"), filter={"i": {"$gte": 6}}, limit=3)) == 3


# -- search: query ranking ------------------------------------------------------------------------------------

DOCS = {
    "py": {"content": "python tutorial for beginners", "lang": "py"},
    "ts": {"content": "typescript guide for web developers", "lang": "ts"},
    "stew": {"content": "slow cooked beef stew recipe", "lang": "food"},
    "pyadv": {"content": "advanced python decorators and generators", "lang": "py"},
}


def test_query_ranks_by_similarity_with_scores(store: BaseStore) -> None:
    for key, value in DOCS.items():
        store.put(("ana", "docs"), key, value)
    hits = store.search(("ana", "docs"), query="python tutorial for beginners")
    assert hits[0].key == "py" and len(hits) == 4
    scores = [h.score for h in hits]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    assert keys(store.search(("ana", "docs"), query="beef stew recipe", limit=1)) == ["stew"]
    assert keys(store.search(("ana", "docs"), query="typescript web developers guide", limit=1)) == ["ts"]
    # limit/offset page through the same ranking
    assert keys(store.search(("ana", "docs"), query="python tutorial for beginners", limit=2, offset=1)) == \
        keys(hits)[1:3]
    # a filter narrows the ranked candidates
    ranked_py = keys(store.search(("ana", "docs"), query="python generators", filter={"lang": "py"}))
    assert ranked_py == ["pyadv", "py"]
    assert keys(store.search(("ana", "docs", "sub"), query="python")) == []  # the prefix still applies


def test_query_search_after_an_update_ranks_the_new_value(store: BaseStore) -> None:
    for key, value in DOCS.items():
        store.put(("ana", "docs"), key, value)
    store.put(("ana", "docs"), "stew", {"content": "rust ownership and borrowing explained", "lang": "rs"})
    assert keys(store.search(("ana", "docs"), query="rust ownership borrowing", limit=1)) == ["stew"]
    assert "stew" not in keys(store.search(("ana", "docs"), query="beef stew recipe", limit=1))


# -- batch, async, TTL ----------------------------------------------------------------------------------------


def test_batch_returns_one_result_per_op_in_order(store: BaseStore) -> None:
    assert store.batch([PutOp(("ana", "b"), "k1", {"content": "first"}),
                        PutOp(("ana", "b", "c"), "k2", {"content": "second", "n": 2})]) == [None, None]
    got, missing, searched, listed = store.batch([
        GetOp(("ana", "b"), "k1"),
        GetOp(("ana", "b"), "nope"),
        SearchOp(("ana",), filter={"n": 2}),
        ListNamespacesOp(match_conditions=(MatchCondition("prefix", ("ana",)),)),
    ])
    assert isinstance(got, Item) and got.value == {"content": "first"}
    assert missing is None
    assert keys(searched) == ["k2"]  # type: ignore[arg-type]
    assert listed == [("ana", "b"), ("ana", "b", "c")]
    assert store.batch([PutOp(("ana", "b"), "k1", None)]) == [None]  # a None value deletes
    assert store.get(("ana", "b"), "k1") is None


def test_async_api_matches_the_sync_api(store: BaseStore) -> None:
    async def run() -> None:
        await store.aput(("ana", "async"), "k", {"content": "async works", "n": 1})
        got = await store.aget(("ana", "async"), "k")
        assert got is not None and got.value == {"content": "async works", "n": 1}
        assert keys(await store.asearch(("ana",), filter={"n": {"$gte": 1}})) == ["k"]
        assert await store.alist_namespaces(prefix=("ana",)) == [("ana", "async")]
        results = await store.abatch([GetOp(("ana", "async"), "k"), GetOp(("ana", "async"), "nope")])
        assert [r.key if isinstance(r, Item) else r for r in results] == ["k", None]
        assert await store.abatch([]) == []
        await store.adelete(("ana", "async"), "k")
        assert await store.aget(("ana", "async"), "k") is None

    asyncio.run(run())


def test_ttl_is_not_supported_and_a_ttl_is_refused(store: BaseStore) -> None:
    # HippoStore keeps long-term memory: forgetting is an explicit delete (or erasure), never a timer, so it
    # declares `supports_ttl = False` and BaseStore refuses a ttl. (InMemoryStore in this langgraph has no TTL
    # either.) Nothing is written when the ttl is refused.
    assert store.supports_ttl is False and store.ttl_config is None
    with pytest.raises(NotImplementedError, match="TTL is not supported"):
        store.put(("ana", "t"), "k", {"content": "expires"}, ttl=5)
    assert store.get(("ana", "t"), "k") is None
    store.put(("ana", "t"), "k", {"content": "kept"}, ttl=None)  # "no ttl" is fine
    got = store.get(("ana", "t"), "k", refresh_ttl=True)
    assert got is not None and got.value == {"content": "kept"}


# -- HippoStore's deliberate deviations -----------------------------------------------------------------------


def test_hippostore_unbound_needs_a_user_as_first_label(services: Services) -> None:
    # Deviation: an unbound HippoStore maps the first namespace label to a user (its default cube), so a search
    # over every namespace, `()`, has no user to scope it to and is refused; InMemoryStore searches everything.
    # A store bound to a user searches all of that user's namespaces with `()`.
    store = HippoStore(services)
    store.put(("ana", "x"), "k", {"content": "a"})
    with pytest.raises(InvalidInputError):
        store.search(())
    bound = HippoStore(services, user_id="ana")  # bound: every namespace in its cube (here Ana's default)
    assert keys(bound.search(())) == ["k"] and bound.list_namespaces() == [("ana", "x")]
    with pytest.raises(InvalidInputError):
        store.put(("not a user id!",), "k", {"content": "x"})  # the first label must be a valid user id
    reference = InMemoryStore()
    reference.put(("ana", "x"), "k", {"content": "a"})
    assert keys(reference.search(())) == ["k"]


def test_hippostore_reads_never_create_users(services: Services) -> None:
    # An unbound store's first label is a user: a read naming an unknown user finds nothing and creates nobody
    # (a typo must not become an account; an erased user's id is never reused). Only a write creates the user.
    store = HippoStore(services)
    assert store.get(("zed", "x"), "k") is None
    assert store.search(("zed",)) == [] and store.search(("zed",), query="anything") == []
    assert store.list_namespaces(prefix=("zed",)) == []
    store.delete(("zed", "x"), "k")  # a delete of nothing is a no-op, like the other stores
    assert [u.id for u in services.registry.list_users()] == []
    store.put(("zed", "x"), "k", {"content": "now zed exists"})
    assert [u.id for u in services.registry.list_users()] == ["zed"]


def test_hippostore_refuses_an_empty_key(services: Services) -> None:
    # Deviation: the key is part of the memory's stable id, so an empty key is a typed error (InMemoryStore
    # accepts "" as a key).
    with pytest.raises(InvalidInputError):
        HippoStore(services).put(("ana", "x"), "", {"content": "x"})
    reference = InMemoryStore()
    reference.put(("ana", "x"), "", {"content": "x"})
    assert reference.get(("ana", "x"), "") is not None


def test_hippostore_indexes_every_item_even_with_index_false(services: Services) -> None:
    # Deviation: every item is a memory the chat graph recalls, so `index=False` still embeds it and a query
    # search scores it; InMemoryStore returns such an item unscored (score None) after the scored ones.
    store = HippoStore(services)
    store.put(("ana", "docs"), "py", DOCS["py"], index=False)
    (hit,) = store.search(("ana", "docs"), query="python tutorial")
    assert hit.key == "py" and hit.score is not None and hit.score > 0
    reference = InMemoryStore(index={"dims": DIM, "embed": HashingEmbeddings(DIM), "fields": ["content"]})
    reference.put(("ana", "docs"), "py", DOCS["py"], index=False)
    assert [h.score for h in reference.search(("ana", "docs"), query="python tutorial")] == [None]


def test_hippostore_supports_in_and_nin_and_missing_fields_do_not_match(services: Services) -> None:
    # Extension: `$in`/`$nin` (InMemoryStore raises ValueError for them). A comparison on a field an item
    # lacks does not match (like PostgresStore's JSONB), where InMemoryStore raises converting None to float.
    store = HippoStore(services)
    put_pantry(store)
    store.put(("ana", "pantry"), "salt", {"content": "sea salt"})
    assert found(store, ("ana",), filter={"kind": {"$in": ["grain", "dairy"]}}) == {"oats", "rice", "milk"}
    assert found(store, ("ana",), filter={"kind": {"$nin": ["grain", "dairy"]}}) == {"eggs", "salt"}
    assert found(store, ("ana",), filter={"n": {"$gt": 3}}) == {"eggs"}
    reference = InMemoryStore()
    put_pantry(reference)
    with pytest.raises(ValueError):
        reference.search(("ana",), filter={"kind": {"$in": ["grain"]}})


def test_hippostore_search_without_query_is_most_recently_updated_first(services: Services) -> None:
    # Store-defined order (as in PostgresStore): the item updated last comes first.
    store = HippoStore(services)
    for key in ("k0", "k1", "k2"):
        store.put(("ana", "o"), key, {"content": key})
    store.put(("ana", "o"), "k0", {"content": "k0 again"})
    assert keys(store.search(("ana", "o")))[0] == "k0"


# -- tenancy --------------------------------------------------------------------------------------------------


def test_a_store_bound_to_one_user_cannot_read_or_change_another_users_items(services: Services) -> None:
    HippoStore(services).put(("bo", "secrets"), "pin", {"content": "Bo's PIN hint is blue dolphin"})
    ana = HippoStore(services, user_id="ana")
    # every namespace of a bound store lives in Ana's cube: naming Bo's namespace reads nothing of Bo's
    assert ana.get(("bo", "secrets"), "pin") is None
    assert ana.search(("bo",)) == [] and ana.search(()) == []
    assert ana.search(("bo",), query="PIN hint blue dolphin") == []
    assert ana.list_namespaces() == [] and ana.list_namespaces(prefix=("bo",)) == []
    # writes and deletes through Ana's store never touch Bo's item
    ana.put(("bo", "secrets"), "pin", {"content": "overwritten"})
    ana.delete(("bo", "secrets"), "pin")
    bo_item = HippoStore(services, user_id="bo").get(("bo", "secrets"), "pin")
    assert bo_item is not None and bo_item.value == {"content": "Bo's PIN hint is blue dolphin"}
    # and a store cannot be bound to a cube its user may not write
    with pytest.raises(AccessDeniedError):
        HippoStore(services, user_id="ana", cube_id="bo.default")
