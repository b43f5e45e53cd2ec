"""Preference memory in Milvus: a Milvus Lite file by default (`MilvusClient("prefs.db")`), any server URI else.

One collection holds every user's preferences. Each row carries the preference text twice over: as a dense
vector (the configured embedder) and as a BM25 sparse vector that a Milvus `Function(type=BM25)` computes from
the analysed text at insert time. `search` runs both through `hybrid_search` and fuses them with RRF.

Every filter is built from values that are validated (`check_id`) or escaped (`quote`): Milvus Lite rejects
filter templating, and a raw `user_id == "{x}"` with `x = 'u1" or user_id != "x'` would leak other users' rows.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from hippograph.stores.embedders import embed_array, embed_query_vector, embedding_dimension
from hippograph.stores.errors import BackendUnavailableError, InvalidInputError, NotFoundError
from hippograph.stores.models import ID_PATTERN, MemoryStatus, check_id, content_hash, now
from hippograph.stores.preferences.base import Evidence, Preference, PreferenceHit, PreferenceKind
from hippograph.stores.preferences.lite_owner import claim_lite_file

DEFAULT_COLLECTION = "preferences"
RRF_K = 60
_MAX_TEXT = 4000
_COLLECTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_FIELDS = [
    "id", "user_id", "cube_id", "kind", "topic", "text", "evidence", "status", "created_at", "updated_at",
    "valid_to", "supersedes", "content_hash", "meta",
]


def quote(value: str) -> str:
    """A Milvus filter string literal: backslashes and double quotes escaped, control characters refused."""
    if not isinstance(value, str):
        raise InvalidInputError(f"filter value must be a string, not {type(value).__name__}")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidInputError("filter value contains control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: gRPC channel options for a Milvus Lite file. pymilvus pings every 10 s even when idle; Lite's server allows
#: a ping per 5 minutes and answers with GOAWAY `too_many_pings` (logged by gRPC on stderr). A loopback
#: channel needs no keepalive: ping only during calls, less often than the server's limit.
LITE_GRPC_OPTIONS = {"grpc.keepalive_time_ms": 6 * 60 * 1000, "grpc.keepalive_permit_without_calls": False}


class _LiteNoise(logging.Filter):
    """Milvus Lite's in-process gRPC server logs an ERROR with a traceback for every RPC it does not implement
    (`AllocTimestamp`, which pymilvus calls and then does without): not an error of ours, so not in our logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Method not implemented" not in record.getMessage()


def quiet_milvus_lite_logs() -> None:
    """Drop Milvus Lite's harmless log noise: unimplemented-RPC tracebacks and faiss' CPU-feature probing
    (`ModuleNotFoundError: faiss.swigfaiss_avx512` at INFO before it loads the build that exists)."""
    server = logging.getLogger("grpc._server")
    if not any(isinstance(f, _LiteNoise) for f in server.filters):
        server.addFilter(_LiteNoise())
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def _check_pref_id(value: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.fullmatch(value):
        raise InvalidInputError(f"invalid preference id {value!r}")
    return value


_READS = frozenset({"query", "search", "hybrid_search", "get"})


def _released(exc: Exception) -> bool:
    """Milvus' answer to a read of a collection that is not in memory (code 101)."""
    return getattr(exc, "code", None) == 101 or "released" in str(exc) or "not loaded" in str(exc)


def _unreachable(exc: Exception) -> bool:
    """pymilvus' answer when the server is down or restarting (code 2, or gRPC's UNAVAILABLE)."""
    text = str(exc).lower()
    return getattr(exc, "code", None) == 2 or "unavailable" in text or "fail connecting" in text


class _Reloading:
    """The client, loading the collection again when the server lost it: a restarted Milvus server, or Milvus
    Lite server of `hippograph serve --processes N`, comes back with every collection 'released', and each read
    would fail until someone loads it. While the server is unreachable, calls raise `BackendUnavailableError`
    (HTTP 503) instead of pymilvus' own exceptions."""

    def __init__(self, client: Any, collection: str, uri: str) -> None:
        self._client = client
        self._collection = collection
        self._uri = uri

    def _unavailable(self, exc: Exception) -> BackendUnavailableError:
        return BackendUnavailableError(f"preference memory (Milvus at {self._uri}) is unavailable: {exc}")

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in ("close", "load_collection"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except Exception as exc:
                if _unreachable(exc):
                    raise self._unavailable(exc) from exc
                if name not in _READS or not _released(exc):
                    raise
            try:
                self._client.load_collection(self._collection)
                return attr(*args, **kwargs)
            except Exception as exc:
                if _unreachable(exc) or _released(exc):
                    raise self._unavailable(exc) from exc
                raise

        return call


class MilvusPreferenceStore:
    """`PreferenceStore` on Milvus / Milvus Lite with hybrid (dense + BM25) search per user."""

    def __init__(
        self,
        uri: str | Path,
        *,
        embeddings: Embeddings,
        token: str = "",
        collection: str = DEFAULT_COLLECTION,
        dimension: int | None = None,
    ) -> None:
        from pymilvus import MilvusClient

        if not _COLLECTION_NAME.match(collection):
            raise InvalidInputError(f"invalid collection name {collection!r}")
        self.uri = str(uri)
        self.embeddings = embeddings
        self.dimension = dimension or embedding_dimension(embeddings)
        self.collection = collection
        if "://" not in self.uri:
            Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
        # A Lite file is one process's: refuse a second process up front (ProcessLayoutError) instead of
        # pymilvus' bare "Open local milvus failed" on every call.
        self._claim = claim_lite_file(self.uri)
        lite = "://" not in self.uri
        if lite:
            quiet_milvus_lite_logs()
        options: dict[str, Any] = {"grpc_options": LITE_GRPC_OPTIONS} if lite else {}
        try:
            self._client = (MilvusClient(self.uri, token=token, **options) if token
                            else MilvusClient(self.uri, **options))
        except Exception as exc:  # pymilvus raises its own exception types; surface one of ours
            if self._claim is not None:
                self._claim.release()
            raise BackendUnavailableError(f"cannot open Milvus at {self.uri}: {exc}") from exc
        self._client = _Reloading(self._client, collection, self.uri)
        self._lock = threading.RLock()
        self._ensure_collection()

    # -- schema -------------------------------------------------------------------------------------------

    def _ensure_collection(self) -> None:
        client = self._client
        if not client.has_collection(self.collection):
            self._create_collection(self.collection)
        else:
            dense = next(
                (f for f in client.describe_collection(self.collection)["fields"] if f["name"] == "dense"), None
            )
            dim = int((dense or {}).get("params", {}).get("dim", self.dimension))
            if dim != self.dimension:
                raise InvalidInputError(
                    f"collection {self.collection!r} holds {dim}-dim vectors; the embedder makes {self.dimension}"
                )
        self._ensure_loaded()

    def _create_collection(self, name: str) -> None:
        from pymilvus import DataType, Function, FunctionType

        client = self._client
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("user_id", DataType.VARCHAR, max_length=128)
        schema.add_field("cube_id", DataType.VARCHAR, max_length=128)
        schema.add_field("kind", DataType.VARCHAR, max_length=16)
        schema.add_field("topic", DataType.VARCHAR, max_length=256)
        schema.add_field("text", DataType.VARCHAR, max_length=_MAX_TEXT * 4, enable_analyzer=True)
        schema.add_field("evidence", DataType.JSON)
        schema.add_field("status", DataType.VARCHAR, max_length=16)
        schema.add_field("created_at", DataType.DOUBLE)
        schema.add_field("updated_at", DataType.DOUBLE)
        schema.add_field("valid_to", DataType.DOUBLE)
        schema.add_field("supersedes", DataType.VARCHAR, max_length=128)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("meta", DataType.JSON)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(
            Function(
                name="text_bm25",
                function_type=FunctionType.BM25,
                input_field_names=["text"],
                output_field_names=["sparse"],
            )
        )
        index = client.prepare_index_params()
        index.add_index(field_name="dense", index_type="AUTOINDEX", metric_type="COSINE")
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        client.create_collection(name, schema=schema, index_params=index)

    def _ensure_loaded(self) -> None:
        """Re-opened Milvus Lite files come back 'released': load before any search or query."""
        state = self._client.get_load_state(self.collection).get("state")
        if "Loaded" not in str(state) or "NotLoad" in str(state):
            self._client.load_collection(self.collection)

    # -- rows ---------------------------------------------------------------------------------------------

    def _row(self, pref: Preference, vector: list[float]) -> dict[str, Any]:
        text = pref.text[:_MAX_TEXT]
        return {
            "id": _check_pref_id(pref.id),
            "user_id": check_id(pref.user_id, "user id"),
            "cube_id": check_id(pref.cube_id, "cube id"),
            "kind": PreferenceKind(pref.kind).value,
            "topic": pref.topic[:250],
            "text": text,
            "evidence": [e.model_dump() for e in pref.evidence],
            "status": MemoryStatus(pref.status).value,
            "created_at": float(pref.created_at),
            "updated_at": float(pref.updated_at),
            "valid_to": float(pref.valid_to or 0.0),
            "supersedes": pref.supersedes or "",
            "content_hash": content_hash(text),
            "meta": dict(pref.metadata),
            "dense": vector,
        }

    @staticmethod
    def _pref(entity: dict[str, Any]) -> Preference:
        evidence = entity.get("evidence") or []
        if isinstance(evidence, str):
            evidence = json.loads(evidence)
        meta = entity.get("meta") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        return Preference(
            id=entity["id"],
            user_id=entity["user_id"],
            cube_id=entity["cube_id"],
            kind=PreferenceKind(entity["kind"]),
            topic=entity.get("topic", ""),
            text=entity["text"],
            evidence=[Evidence(**e) for e in evidence],
            status=MemoryStatus(entity["status"]),
            created_at=entity["created_at"],
            updated_at=entity["updated_at"],
            valid_to=entity["valid_to"] or None,
            supersedes=entity.get("supersedes") or None,
            metadata=meta,
        )

    def _filter(
        self, user_id: str, cube_ids: Sequence[str] | None = None, include_inactive: bool = False
    ) -> str:
        parts = [f"user_id == {quote(check_id(user_id, 'user id'))}"]
        if cube_ids is not None:
            cubes = [quote(check_id(c, "cube id")) for c in cube_ids]
            if not cubes:
                return ""
            parts.append(f"cube_id in [{', '.join(cubes)}]")
        if not include_inactive:
            parts.append(f"status == {quote(MemoryStatus.ACTIVE.value)}")
        return " and ".join(parts)

    # -- writes -------------------------------------------------------------------------------------------

    def add(self, prefs: Sequence[Preference], *, vectors: Sequence[Sequence[float]] | None = None) -> list[str]:
        """Insert or replace (by id) preferences. Idempotent: the same preference twice is one row."""
        if not prefs:
            return []
        if vectors is None:
            vectors = embed_array(self.embeddings, [p.text for p in prefs]).tolist()
        rows = [self._row(p, list(map(float, v))) for p, v in zip(prefs, vectors, strict=True)]
        with self._lock:
            self._client.upsert(self.collection, rows)
        return [p.id for p in prefs]

    def get(self, ids: Sequence[str], *, user_id: str | None = None) -> list[Preference]:
        if not ids:
            return []
        expr = f"id in [{', '.join(quote(_check_pref_id(i)) for i in ids)}]"
        if user_id is not None:
            expr += f" and user_id == {quote(check_id(user_id, 'user id'))}"
        with self._lock:
            rows = self._client.query(self.collection, filter=expr, output_fields=_FIELDS)
        found = {r["id"]: self._pref(r) for r in rows}
        return [found[i] for i in ids if i in found]

    def _vectors(self, ids: Sequence[str]) -> dict[str, list[float]]:
        if not ids:
            return {}
        expr = f"id in [{', '.join(quote(_check_pref_id(i)) for i in ids)}]"
        with self._lock:
            rows = self._client.query(self.collection, filter=expr, output_fields=["id", "dense"])
        return {r["id"]: [float(x) for x in r["dense"]] for r in rows}

    def update(self, pref: Preference) -> None:
        vectors = self._vectors([pref.id])
        if pref.id not in vectors:
            raise NotFoundError(f"preference {pref.id} not found")
        pref.updated_at = now()
        self.add([pref], vectors=[vectors[pref.id]])

    def delete(self, ids: Sequence[str], *, user_id: str) -> int:
        found = self.get(ids, user_id=user_id)
        if not found:
            return 0
        expr = f"id in [{', '.join(quote(p.id) for p in found)}]"
        with self._lock:
            self._client.delete(self.collection, filter=expr)
        return len(found)

    def supersede(self, old_id: str, new: Preference) -> str:
        old = self.get([old_id], user_id=new.user_id)
        if not old:
            raise NotFoundError(f"preference {old_id} not found for user {new.user_id}")
        previous = old[0]
        new.supersedes = old_id
        self.add([new])
        if previous.status == MemoryStatus.ACTIVE:
            previous.status = MemoryStatus.SUPERSEDED
            previous.valid_to = new.created_at
            previous.metadata = {**previous.metadata, "superseded_by": new.id}
            self.update(previous)
        return new.id

    # -- reads --------------------------------------------------------------------------------------------

    def list(self, *, user_id: str, include_inactive: bool = False, limit: int = 1000) -> list[Preference]:
        expr = self._filter(user_id, None, include_inactive)
        with self._lock:
            rows = self._client.query(
                self.collection, filter=expr, output_fields=_FIELDS, limit=max(1, min(int(limit), 16384))
            )
        prefs = [self._pref(r) for r in rows]
        prefs.sort(key=lambda p: p.created_at, reverse=True)
        return prefs

    def find_by_hash(self, user_id: str, hashes: Sequence[str]) -> dict[str, str]:
        """content hash -> id of the user's active preference with that normalised text."""
        if not hashes:
            return {}
        for h in hashes:
            if not re.fullmatch(r"[0-9a-f]{64}", h):
                raise InvalidInputError(f"invalid content hash {h!r}")
        expr = self._filter(user_id) + f" and content_hash in [{', '.join(quote(h) for h in hashes)}]"
        with self._lock:
            rows = self._client.query(self.collection, filter=expr, output_fields=["id", "content_hash"])
        return {r["content_hash"]: r["id"] for r in rows}

    def similar(
        self, vector: Sequence[float], *, user_id: str, k: int = 5, include_inactive: bool = False
    ) -> builtins.list[PreferenceHit]:
        """Dense-only neighbours with their cosine: what near-duplicate and conflict checks need."""
        expr = self._filter(user_id, None, include_inactive)
        with self._lock:
            res = self._client.search(
                self.collection, data=[list(map(float, vector))], anns_field="dense", limit=max(1, k),
                filter=expr, output_fields=_FIELDS, search_params={"metric_type": "COSINE"},
            )
        return [
            PreferenceHit(preference=self._pref(h["entity"] | {"id": h["id"]}), score=float(h["distance"]),
                          scores={"vector": float(h["distance"])})
            for h in res[0]
        ]

    def search(
        self,
        query: str,
        *,
        user_id: str,
        cube_ids: Sequence[str] | None = None,
        k: int = 5,
        include_inactive: bool = False,
        vector: Sequence[float] | None = None,
    ) -> builtins.list[PreferenceHit]:
        """Hybrid search: dense (cosine) and BM25 (Milvus BM25 function) lists fused by RRF (k=60)."""
        from pymilvus import AnnSearchRequest, RRFRanker

        if not isinstance(query, str) or not query.strip():
            return []
        expr = self._filter(user_id, cube_ids, include_inactive)
        if not expr:
            return []
        k = max(1, int(k))
        depth = max(4 * k, 20)
        qvec = list(map(float, vector)) if vector is not None else embed_query_vector(self.embeddings, query)
        dense = AnnSearchRequest(data=[qvec], anns_field="dense", param={"metric_type": "COSINE"}, limit=depth,
                                 expr=expr)
        sparse = AnnSearchRequest(data=[query[:_MAX_TEXT]], anns_field="sparse", param={"metric_type": "BM25"},
                                  limit=depth, expr=expr)
        with self._lock:
            res = self._client.hybrid_search(
                self.collection, [dense, sparse], ranker=RRFRanker(RRF_K), limit=k, output_fields=_FIELDS
            )
        hits = [
            PreferenceHit(preference=self._pref(h["entity"] | {"id": h["id"]}), score=float(h["distance"]),
                          scores={"rrf": float(h["distance"])})
            for h in res[0]
        ]
        # Per-signal evidence for the rerank/threshold nodes: cosine of each hit to the query.
        if hits:
            vectors = self._vectors([h.id for h in hits])
            for hit in hits:
                v = vectors.get(hit.id)
                if v is not None:
                    hit.scores["vector"] = float(sum(a * b for a, b in zip(v, qvec, strict=False)))
        return hits

    def count(self, *, user_id: str | None = None, include_inactive: bool = True) -> int:
        expr = self._filter(user_id, None, include_inactive) if user_id else (
            "" if include_inactive else f"status == {quote(MemoryStatus.ACTIVE.value)}")
        with self._lock:
            rows = self._client.query(self.collection, filter=expr or 'id != ""', output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def erase(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), ids: Sequence[str] = ()) -> int:
        """Delete a user's preferences and every preference in `cube_ids`, leaving none of their bytes behind.

        Milvus keeps deleted rows in its segment files until compaction; a Milvus Lite file is therefore rewritten
        (survivors copied into a fresh collection, the old one dropped with its files). A server compacts.
        """
        clauses = [f"user_id == {quote(check_id(user_id, 'user id'))}"] if user_id else []
        if cube_ids:
            clauses.append(f"cube_id in [{', '.join(quote(check_id(c, 'cube id')) for c in cube_ids)}]")
        if ids:
            clauses.append(f"id in [{', '.join(quote(_check_pref_id(i)) for i in ids)}]")
        if not clauses:
            return 0
        expr = " or ".join(clauses)
        with self._lock:
            rows = self._client.query(self.collection, filter=expr, output_fields=["count(*)"])
            doomed = int(rows[0]["count(*)"])
            self._client.delete(self.collection, filter=expr)
            if "://" in self.uri:
                self._client.compact(self.collection)
            else:
                self._rewrite_collection()
        return doomed

    def _rewrite_collection(self) -> None:
        """Copy the live rows into a new collection, drop the old one (its files go), rename the new one."""
        fresh = f"{self.collection}_rewrite"
        client = self._client
        if client.has_collection(fresh):  # left over by a crash mid-rewrite: the original is still complete
            client.drop_collection(fresh)
        self._create_collection(fresh)
        fields = [f["name"] for f in client.describe_collection(self.collection)["fields"] if f["name"] != "sparse"]
        iterator = client.query_iterator(self.collection, batch_size=1000, filter='id != ""', output_fields=fields)
        try:
            while batch := iterator.next():
                client.insert(fresh, [dict(r) for r in batch])
        finally:
            iterator.close()
        client.drop_collection(self.collection)
        client.rename_collection(fresh, self.collection)
        client.load_collection(self.collection)

    def drop(self) -> None:
        """Remove the whole collection (tests and evals)."""
        with self._lock:
            if self._client.has_collection(self.collection):
                self._client.drop_collection(self.collection)

    def close(self) -> None:
        # Closing twice, or after the server went away, is harmless.
        with self._lock, contextlib.suppress(Exception):
            self._client.close()
        if self._claim is not None:
            self._claim.release()
