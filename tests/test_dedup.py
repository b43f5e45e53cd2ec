"""Near-duplicate control, measured: same conversation twice adds 0 memories; a paraphrase set adds 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hippograph.settings import Settings
from hippograph.stores.dedup import NearDuplicateIndex, dedup_batch, minhash, shingles
from hippograph.stores.models import MemoryStatus
from hippograph.stores.preferences.milvus import MilvusPreferenceStore
from hippograph.stores.services import Services
from hippograph.worker import Worker
from tests.conftest import SHARED_DATA
from tests.enrich_helpers import fast_path_turn, memory_census

PARAPHRASE_SETS = [
    ["I'm vegan.", "I am a vegan.", "I follow a vegan diet.", "I don't eat any animal products because I'm vegan.",
     "Being vegan, I avoid all animal products."],
    ["My sister Anna lives in Berlin.", "Anna, my sister, lives in Berlin.", "My sister Anna is living in Berlin.",
     "Berlin is where my sister Anna lives."],
    ["I work as a nurse at the city hospital.", "I'm a nurse at the city hospital.",
     "I am employed as a nurse in the city hospital."],
    ["My daughter started kindergarten this fall.", "This fall my daughter began kindergarten.",
     "My daughter has just started kindergarten this autumn."],
]
UPDATES = [("I live in Paris.", "I live in Berlin now."), ("I have two cats.", "I have three cats."),
           ("I love spicy food.", "I hate spicy food."), ("My favorite color is blue.", "My favorite color is green."),
           ("I work as a nurse.", "I work as a teacher.")]
UNRELATED = ["I went hiking last weekend.", "I love reading novels.", "My car broke down on Monday.",
             "We adopted a puppy named Rex.", "I'm learning to play the violin."]


def test_shingles_and_minhash_are_normalised() -> None:
    assert shingles("I'm  VEGAN!") == shingles("i am vegan")
    assert minhash("Hello,   World").jaccard(minhash("hello world")) == 1.0


def test_paraphrase_sets_add_one_each(minilm) -> None:  # type: ignore[no-untyped-def]
    added, versions = [], []
    for group in PARAPHRASE_SETS:
        decisions = dedup_batch(group, minilm.embed_array(group))
        added.append(sum(d.action == "new" for d in decisions))
        versions.append(sum(d.action == "update" for d in decisions))
    print(f"\nparaphrase sets: {len(PARAPHRASE_SETS)}, active memories added per set: {added}, "
          f"extra superseded versions per set: {versions}")
    assert added == [1] * len(PARAPHRASE_SETS)
    # A verb swap ("started" -> "began") reads as a changed value: at most one extra (superseded) version.
    assert sum(versions) <= 1


def test_changed_values_are_updates_and_unrelated_are_new(minilm) -> None:  # type: ignore[no-untyped-def]
    for old, new in UPDATES:
        d = dedup_batch([old, new], minilm.embed_array([old, new]))
        assert [x.action for x in d] == ["new", "update"], (old, new, d[1])
    d = dedup_batch(UNRELATED, minilm.embed_array(UNRELATED))
    assert [x.action for x in d] == ["new"] * len(UNRELATED)


def test_exact_duplicate_by_hash_needs_no_vector() -> None:
    index = NearDuplicateIndex()
    from hippograph.stores.dedup import Candidate

    index.add(Candidate(id="m1", text="I live in Paris."))
    d = index.decide("  i LIVE in paris.  ", None)
    assert (d.action, d.target_id, d.reason) == ("duplicate", "m1", "content hash")


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory, minilm) -> MilvusPreferenceStore:  # type: ignore[no-untyped-def]
    s = MilvusPreferenceStore(tmp_path_factory.mktemp("milvus") / "prefs.db", embeddings=minilm)
    yield s
    s.close()


@pytest.fixture
def services(tmp_path: Path, minilm, prefs: MilvusPreferenceStore) -> Services:  # type: ignore[no-untyped-def]
    s = Services.from_settings(Settings(data_dir=tmp_path / "data", worker_in_process=False),
                               embeddings=minilm, preferences=prefs)
    yield s
    s.tree.close()


def _conversation() -> list[str]:
    path = SHARED_DATA / "locomo" / "locomo10_dev.json"
    if not path.is_file():
        pytest.skip(f"shared LoCoMo data not found: {path}")
    conv = json.loads(path.read_text())[0]["conversation"]
    speaker = conv["speaker_a"]
    return [t["text"] for t in conv["session_1"] if t["speaker"] == speaker]


def test_same_conversation_twice_adds_zero_memories(services: Services) -> None:
    turns = _conversation()
    worker = Worker(services)
    for i, text in enumerate(turns):
        fast_path_turn(services, user="dd-u1", cube="dd-c1", session="s1", index=i, user_text=text)
    worker.run(until_idle=True)
    first = memory_census(services, "dd-c1")
    prefs_first = len(services.preferences.list(user_id="dd-u1", include_inactive=True))
    # The same conversation again, as a new session with new message ids.
    for i, text in enumerate(turns):
        fast_path_turn(services, user="dd-u1", cube="dd-c1", session="s2", index=i, user_text=text)
    worker.run(until_idle=True)
    second = memory_census(services, "dd-c1")
    prefs_second = len(services.preferences.list(user_id="dd-u1", include_inactive=True))
    assert services.outbox.counts()["done"] == 2 * len(turns)
    facts = {k: v for k, v in first.items() if not k.startswith("WorkingMemory")}
    added = sum(second.get(k, 0) for k in facts) - sum(facts.values())
    print(f"\nconversation of {len(turns)} turns: first ingest {sum(facts.values())} memories "
          f"({facts}); second ingest added {added}; preferences {prefs_first} -> {prefs_second}")
    assert sum(facts.values()) > len(turns)  # raw turns plus derived facts
    assert added == 0 and prefs_second == prefs_first


def test_paraphrase_turns_add_one_fact(services: Services) -> None:
    worker = Worker(services)
    group = PARAPHRASE_SETS[1]
    for i, text in enumerate(group):
        fast_path_turn(services, user="dd-u2", cube="dd-c2", session="s1", index=i, user_text=text + " Just saying.")
    worker.run(until_idle=True)
    facts = [m for m in services.tree.list(cube_ids=["dd-c2"], statuses=list(MemoryStatus))
             if m.source == "enrichment" and m.memory_type.value == "LongTermMemory"]
    assert len(facts) == 1, [f.text for f in facts]
    assert len(facts[0].source_refs) >= len(group)  # every mention merged into the one fact
