"""Preference memory on Milvus Lite (real), the extractors, and PrefEval-based checks (real MiniLM)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hippograph.stores.errors import InvalidInputError
from hippograph.stores.models import MemoryStatus
from hippograph.stores.preferences.base import Evidence, Preference, PreferenceKind, PreferenceStore
from hippograph.stores.preferences.extract import LLMExtractor, RuleExtractor, match_preference
from hippograph.stores.preferences.milvus import MilvusPreferenceStore, quote
from tests.conftest import SHARED_DATA
from tests.fakes import ScriptedChatModel

PREFEVAL = SHARED_DATA / "prefeval"
needs_prefeval = pytest.mark.skipif(not PREFEVAL.is_dir(), reason="shared PrefEval data not found")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, minilm) -> MilvusPreferenceStore:  # type: ignore[no-untyped-def]
    """One Milvus Lite file per module (it takes seconds to start); tests use distinct users."""
    path = tmp_path_factory.mktemp("milvus") / "prefs.db"
    s = MilvusPreferenceStore(path, embeddings=minilm)
    yield s
    s.close()


def _pref(user: str, text: str, **kw) -> Preference:  # type: ignore[no-untyped-def]
    return Preference(user_id=user, cube_id=f"{user}-cube", text=text, **kw)


def test_protocol_roundtrip_and_hybrid_search(store: MilvusPreferenceStore) -> None:
    assert isinstance(store, PreferenceStore)
    ids = store.add([
        _pref("alice", "I am vegan and avoid all animal products.",
              evidence=[Evidence(message_id="m1", quote="I am vegan")]),
        _pref("alice", "I love jazz music, especially live concerts."),
        _pref("alice", "I prefer window seats on flights."),
    ])
    got = store.get(ids)
    assert next(p.text for p in got).startswith("I am vegan") and got[0].evidence[0].message_id == "m1"
    hits = store.search("Which concerts should I go to this weekend?", user_id="alice", k=3)
    assert hits[0].text.startswith("I love jazz")
    assert "rrf" in hits[0].scores and "vector" in hits[0].scores
    # BM25 alone carries an exact rare word even when the dense signal is weak.
    assert store.search("window seats", user_id="alice", k=1)[0].text.startswith("I prefer window")
    assert store.search("anything", user_id="alice", cube_ids=["other-cube"], k=5) == []


def test_filter_injection_returns_nothing_from_other_users(store: MilvusPreferenceStore) -> None:
    store.add([_pref("victim1", "I secretly love true crime podcasts."),
               _pref("victim2", "I hate flying and always take the train.")])
    attack = 'u1" or user_id != "x'
    with pytest.raises(InvalidInputError):
        store.search("podcasts", user_id=attack, k=10)
    with pytest.raises(InvalidInputError):
        store.list(user_id=attack)
    # The escaping itself: the attack string as a quoted literal matches no row at all.
    rows = store._client.query(store.collection, filter=f"user_id == {quote(attack)}", output_fields=["id"])
    assert list(rows) == []
    assert quote('a\\" or 1') == '"a\\\\\\" or 1"'
    # The same filter built by plain interpolation would have leaked every user's rows.
    leaked = store._client.query(store.collection, filter=f'user_id == "{attack}"', output_fields=["user_id"])
    assert {r["user_id"] for r in leaked} >= {"victim1", "victim2"}


def test_supersede_keeps_history_and_search_sees_only_current(store: MilvusPreferenceStore) -> None:
    old_id = store.add([_pref("carol", "I love coffee and drink it every morning.")])[0]
    new = _pref("carol", "I no longer drink coffee; I switched to green tea.")
    store.supersede(old_id, new)
    history = {p.id: p for p in store.list(user_id="carol", include_inactive=True)}
    assert history[old_id].status == MemoryStatus.SUPERSEDED and history[old_id].valid_to is not None
    assert history[new.id].supersedes == old_id and history[new.id].status == MemoryStatus.ACTIVE
    current = store.search("What should I drink in the morning?", user_id="carol", k=5)
    assert [h.id for h in current] == [new.id]
    assert old_id in {h.id for h in store.search("coffee", user_id="carol", k=5, include_inactive=True)}


def test_reopen_after_release_loads_the_collection(store: MilvusPreferenceStore, minilm) -> None:  # type: ignore[no-untyped-def]
    store.add([_pref("dave", "I avoid spicy food.")])
    store._client.release_collection(store.collection)  # what a re-opened Milvus Lite file looks like
    again = MilvusPreferenceStore(store.uri, embeddings=minilm)
    assert again.search("spicy dishes", user_id="dave", k=1)[0].text == "I avoid spicy food."


def test_reads_load_the_collection_again_after_the_server_released_it(store: MilvusPreferenceStore) -> None:
    # What a restarted Milvus (or `serve --processes`' Milvus Lite server) looks like from a live client.
    store.add([_pref("rel", "I prefer window seats on long flights")])
    store._client.release_collection(store.collection)
    assert [p.text for p in store.list(user_id="rel")] == ["I prefer window seats on long flights"]
    store._client.release_collection(store.collection)
    hits = store.search("which seats on flights", user_id="rel", k=3)
    assert [h.text for h in hits] == ["I prefer window seats on long flights"]


def test_rule_extractor_polarity_object_and_non_preferences() -> None:
    found = match_preference("I can't stand horror movies because they scare me.")
    assert found is not None and found.polarity == -1 and found.object.startswith("horror movies")
    assert match_preference("I'm a big fan of jazz.").polarity == 1  # type: ignore[union-attr]
    assert match_preference("I don't enjoy games with jump scares.").polarity == -1  # type: ignore[union-attr]
    for not_pref in ["Can you recommend some novels for my vacation?", "I would like you to fix this code.",
                     "What desserts should I try in Italy?", "The meeting is at 5 pm."]:
        assert match_preference(not_pref) is None, not_pref
    prefs = RuleExtractor().extract(
        [{"id": "a1", "role": "assistant", "content": "1. Hike in the mountains\n2. Visit a museum"},
         {"id": "u1", "role": "user", "content": "I'll go with option 2. I'm allergic to pollen."}],
        user_id="erin", cube_id="erin-cube")
    kinds = {p.kind: p for p in prefs}
    assert kinds[PreferenceKind.IMPLICIT].text.endswith("Visit a museum")
    assert {e.message_id for e in kinds[PreferenceKind.IMPLICIT].evidence} == {"a1", "u1"}
    assert kinds[PreferenceKind.EXPLICIT].text == "I am allergic to pollen."


def test_llm_extractor_structured_output_with_scripted_model() -> None:
    reply = {"facts": [{"text": "The user is training for a marathon", "message_ids": ["m2"]}],
             "preferences": [
                 {"kind": "implicit", "text": "I prefer outdoor workouts", "topic": "fitness", "polarity": 1,
                  "evidence_message_ids": ["m1", "m2"], "quote": "the trail run again"},
                 {"kind": "explicit", "text": "I hate treadmills", "topic": "fitness", "polarity": -1,
                  "evidence_message_ids": ["nope"], "quote": "I hate treadmills"}]}

    def check(messages) -> None:  # type: ignore[no-untyped-def]
        system, human = messages[0].content, messages[-1].content
        assert "implicit" in system and "JSON" in system and "evidence_message_ids" in system
        assert "[m1] user: I picked the trail run again" in human
        assert "[m2] user: I hate treadmills, training for my marathon outside" in human

    model = ScriptedChatModel(replies=["Here you go:\n```json\n" + json.dumps(reply) + "\n```"], check=check)
    msgs = [{"id": "m1", "role": "user", "content": "I picked the trail run again"},
            {"id": "m2", "role": "user", "content": "I hate treadmills, training for my marathon outside"}]
    prefs = LLMExtractor(model).extract(msgs, user_id="fred", cube_id="fred-cube")
    assert len(model.prompts) == 1
    implicit = next(p for p in prefs if p.kind == PreferenceKind.IMPLICIT)
    assert [e.message_id for e in implicit.evidence] == ["m1", "m2"] and implicit.metadata["polarity"] == 1
    explicit = next(p for p in prefs if p.kind == PreferenceKind.EXPLICIT)
    assert [e.message_id for e in explicit.evidence] == ["m2"]  # unknown id replaced by the last user message
    assert explicit.metadata["polarity"] == -1


@needs_prefeval
def test_rule_extraction_floor_on_prefeval_explicit() -> None:
    from hippograph.evals.prefeval import measure_extraction

    scores = measure_extraction(PREFEVAL)
    print(f"\nPrefEval explicit rule extraction: precision {scores['precision']:.3f} recall {scores['recall']:.3f}")
    assert scores["recall"] >= 0.95
    assert scores["precision"] >= 0.95


@needs_prefeval
def test_hybrid_search_returns_the_stated_preference_for_its_question(store: MilvusPreferenceStore) -> None:
    """Each PrefEval item is one user holding its own preference plus 12 others from other topics."""
    items = []
    for f in sorted((PREFEVAL / "explicit_preference").glob("*.json")):
        items += [(f.stem, x) for x in json.loads(Path(f).read_text())[:4]]
    extractor = RuleExtractor()
    hits = 0
    for n, (_topic, item) in enumerate(items):
        user = f"pe{n}"
        others = [o["preference"] for _, o in items[n + 1 :: 3]][:12]
        msgs = [{"id": f"x{j}", "role": "user", "content": t} for j, t in enumerate([item["preference"], *others])]
        store.add(extractor.extract(msgs, user_id=user, cube_id=user))
        top = store.search(item["question"], user_id=user, k=3)
        hits += any(any(e.message_id == "x0" for e in h.preference.evidence) for h in top)
    rate = hits / len(items)
    print(f"\nPrefEval explicit, stated preference in top-3 among 13: {rate:.3f} over {len(items)} items")
    assert rate >= 0.8  # measured 0.850 (deterministic); PrefEval proper has one preference per user


@needs_prefeval
def test_cli_eval_prefeval_writes_the_fixed_shape(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hippograph.cli import app

    out = tmp_path / "pe"
    result = CliRunner().invoke(app, ["eval", "prefeval", "--data", str(PREFEVAL), "--out", str(out),
                                      "--k", "10,300", "--limit", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "prefeval.json").read_text())
    assert set(report) == {"explicit", "implicit_choice", "implicit_persona"}
    for kind in report.values():
        assert set(kind) == {"10", "300"}
        for per_k in kind.values():
            assert set(per_k["overall"]) == {"top1", "top3", "top5"}
            assert len(per_k["by_topic"]) == 10  # one item from each dev topic
            assert per_k["overall"]["top1"] <= per_k["overall"]["top3"] <= per_k["overall"]["top5"]
    assert report["explicit"]["300"]["overall"]["top3"] >= 0.9  # the stated preference survives 300 distractors
    assert "| explicit | 300 | 10 |" in (out / "prefeval.md").read_text()
    assert (out / "prefeval.png").stat().st_size > 1000
    assert not list(out.glob("prefeval_milvus.db*")) and not (out / "prefeval.partial.json").exists()


def test_compiling_graphs_opens_no_preference_memory_until_a_call(tmp_path: Path) -> None:
    # LangGraph's compile reads `services.preferences.search` (looking for subgraphs): that must not start
    # Milvus Lite. The first real call does; the memories-only search graph never does.
    from hippograph.graphs.chat import build_chat_graph
    from hippograph.graphs.search import build_search_graph
    from hippograph.nodes.state import ChatContext
    from hippograph.settings import Settings
    from hippograph.stores.services import Services

    services = Services.from_settings(Settings(data_dir=tmp_path / "data", embedder="hashing:64",
                                               worker_in_process=False, chat_model=""))
    try:
        build_chat_graph(services, checkpointer=None)
        build_search_graph(services)
        lean = build_search_graph(services, preferences=False)
        services.registry.ensure_user("ana")
        out = lean.invoke({"query": "anything"}, context=ChatContext(user_id="ana", ingest=False))
        assert "preferences" not in out and out["memories"] == []
        assert not services.preferences_opened and not list((tmp_path / "data").glob("preferences*"))
        assert services.preferences.list(user_id="ana") == []
        assert services.preferences_opened and (tmp_path / "data" / "preferences.db").exists()
    finally:
        services.close()
