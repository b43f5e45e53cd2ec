"""`Memory`: hippograph for plain Python. Every call is scoped to a user, keyword-only.

    from hippograph import Memory
    memory = Memory()
    memory.add("I moved to Lisbon in May", user_id="ana")
    memory.search("where does Ana live?", user_id="ana")
    memory.chat("Where do I live now?", user_id="ana").answer
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import itertools
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar

from langchain_core.messages import AnyMessage, BaseMessage, HumanMessage, convert_to_messages
from pydantic import BaseModel, Field

from hippograph.settings import Settings, get_settings
from hippograph.stores import limits
from hippograph.stores.embedders import embed_array
from hippograph.stores.erasure import ErasureReport, erase_cubes, erase_memories
from hippograph.stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from hippograph.stores.models import (
    MemoryItem,
    MemoryStatus,
    SearchHit,
    check_id,
    check_text,
    content_hash,
    new_id,
    now,
)
from hippograph.stores.outbox import Job, JobStatus
from hippograph.stores.portability import Portable, export_user, import_user
from hippograph.stores.preferences.base import Preference
from hippograph.stores.registry import (
    Access,
    Cube,
    CubeAccess,
    Share,
    ShareStatus,
    User,
    check_user_id,
    default_cube_id,
)
from hippograph.stores.services import Services
from hippograph.stores.tree import ops as tree_ops
from hippograph.stores.tree.base import Edge, Rel
from hippograph.stores.write import write_memories

if TYPE_CHECKING:  # LangGraph loads with the first graph a call compiles, not with this module
    from langgraph.checkpoint.base import BaseCheckpointSaver

P = ParamSpec("P")
R = TypeVar("R")


class ChatResult(BaseModel):
    """One chat turn's outcome."""

    answer: str
    references: list[dict[str, Any]] = Field(default_factory=list)
    memories: list[SearchHit] = Field(default_factory=list)
    written_ids: list[str] = Field(default_factory=list)
    timings: dict[str, float] = Field(default_factory=dict)
    thread_id: str = ""

    @classmethod
    def from_state(cls, state: dict[str, Any], *, thread_id: str = "") -> ChatResult:
        """A chat graph run's final state as the result every interface returns."""
        return cls(answer=state.get("answer", ""), references=state.get("references", []),
                   memories=state.get("memories", []), written_ids=state.get("written_ids", []),
                   timings=state.get("timings", {}), thread_id=thread_id)


def thread_key(user_id: str, thread_id: str | None) -> str:
    """Checkpoint thread ids are namespaced by user, so nobody resumes another user's thread."""
    return f"{user_id}/{thread_id or 'main'}"


class Memory:
    """Synchronous client over the chat and search graphs and the stores."""

    def __init__(self, settings: Settings | None = None, *, services: Services | None = None) -> None:
        self.services = services or Services.from_settings(settings or get_settings())
        self.settings = self.services.settings
        self._ingest: Any = None
        self._ingest_lock = threading.Lock()
        self._worker = None
        self._enrich_saver: BaseCheckpointSaver | None = None
        if self.settings.worker_in_process:
            self._worker = _start_worker(self.services)  # returns at once: the thread compiles its own graph

    @functools.cached_property
    def _chat(self) -> Any:
        """The chat graph, compiled on first use (with its checkpointer): `stats` or `add` never need it, nor
        LangGraph itself (the graph modules are imported here, not at the top: they are most of start-up)."""
        from hippograph.graphs.chat import build_chat_graph

        return build_chat_graph(self.services)

    @functools.cached_property
    def _search(self) -> Any:
        """The search graph as `search` runs it: memories only. Its retrieve_prefs branch is left out (rerank
        ranks memories alone and `search` returns no preferences), so a search never starts preference memory:
        seconds of start-up for the CLI, and a CLI search works beside a server that owns the Milvus Lite file."""
        from hippograph.graphs.search import build_search_graph

        return build_search_graph(self.services, preferences=False)

    @functools.cached_property
    def _search_audit(self) -> Any:
        """The whole search graph, preferences included, for `explain_search` (the inspector shows every node)."""
        from hippograph.graphs.search import build_search_graph

        return build_search_graph(self.services)

    # -- writing -------------------------------------------------------------------------------------------

    def add(
        self,
        text_or_messages: str | Sequence[AnyMessage | dict[str, Any]],
        *,
        user_id: str,
        cube_id: str | None = None,
        session_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Store a text or a list of messages (one memory per message, through the turn model `nodes/turns.py`).
        Returns the ids, in order.

        Messages: LangChain messages, OpenAI-style dicts (`role`, `content`, `name`, `id`, `timestamp`) or rows
        (`speaker`, `text`, `dia_id`, `timestamp`). Each memory's key carries the speaker (`name`/`speaker`, else
        the user id for the user's own messages, else the role) and the time (`timestamp`, else now). With a
        `session_id` the messages are consecutive turns of that session, continuing the turns stored before:
        each is keyed with the turn it replies to, and NEXT edges chain them. Give message ids (or `dia_id`s)
        to make a replay idempotent."""
        from hippograph.nodes.turns import to_turn, turn_memories

        cube = self._cube(user_id, cube_id)
        if isinstance(text_or_messages, str | bytes):
            raw: list[Any] = [check_text(text_or_messages)]
        elif isinstance(text_or_messages, Sequence):
            raw = list(text_or_messages)
            if not raw:
                raise InvalidInputError("no messages to add")
        else:
            kind = type(text_or_messages).__name__
            raise InvalidInputError(f"add() takes a string or a list of messages, not {kind}")
        try:
            turns = [to_turn(m if isinstance(m, BaseMessage | dict | str) else convert_to_messages([m])[0],
                             user_name=user_id) for m in raw]
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise InvalidInputError(f"not a list of messages: {exc}") from None
        for turn in turns:
            check_text(turn.text)
        if metadata is not None:
            limits.check_metadata(metadata)
        if session_id is not None:
            check_id(session_id, "session id")
        start, previous, last_id = 0, None, None
        if session_id is not None:  # continue the session: the turn stored last is the one these reply to
            recent = self.services.tree.list(cube_ids=[cube], session_id=session_id, limit=20)
            turns_so_far = [m for m in recent if m.turn_index is not None and m.source_refs
                            and "speaker" in m.source_refs[0].extra]
            if turns_so_far:
                last = max(turns_so_far, key=lambda m: m.turn_index or 0)
                start, last_id = (last.turn_index or 0) + 1, last.id
                previous = (str(last.source_refs[0].extra["speaker"]), last.text)
        items = turn_memories(turns, user_id=user_id, cube_id=cube, session_id=session_id, start_index=start,
                              previous=previous, source="api", metadata=metadata,
                              context=self.settings.turn_key, facts_in_metadata=False)
        ids, _ = write_memories(self.services.tree, self.services.embeddings, items)
        chain = [last_id, *ids] if last_id is not None and ids and last_id not in ids else ids
        if len(chain) > 1:
            pairs = itertools.pairwise(chain)
            self.services.tree.add_edges([Edge(src=a, rel=Rel.NEXT, dst=b) for a, b in pairs if a != b])
        return ids

    def update(
        self,
        memory_id: str,
        text: str | None = None,
        *,
        user_id: str,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> MemoryItem:
        """Edit a memory in place: the id stays, and a new text keeps the old one as a superseded version in the
        memory's SUPERSEDES chain (`history`), the same way enrichment records a newer fact."""
        text = check_text(text) if text is not None else None
        tags = limits.check_tags(tags) if tags is not None else None
        metadata = limits.check_metadata(metadata) if metadata is not None else None
        item = self._get_for(memory_id, user_id, write=True)
        tree = self.services.tree
        if text is not None and text != item.text:
            # The old version first, linked, then the edit: a crash in between leaves two equal versions, not a
            # lost one.
            edited_at = now()
            old = item.model_copy(update={"id": new_id(), "status": MemoryStatus.SUPERSEDED, "valid_to": edited_at})
            old.embedding = tree.embeddings([item.id])[item.id].tolist()
            tree.add([old])
            tree.add_edges([Edge(src=item.id, rel=Rel.SUPERSEDES, dst=old.id, props={"reason": "edited"})])
            item.text, item.content_hash, item.valid_from = text, content_hash(text), edited_at
        if tags is not None:
            item.tags = [str(t) for t in tags]
        if metadata is not None:
            item.metadata.update(metadata)
        if text is not None or tags is not None:  # the index text (key, text, tags) changed: embed it again
            item.embedding = embed_array(self.services.embeddings, [item.index_text])[0].tolist()
        tree.update(item)
        return item

    def delete(self, memory_id: str, *, user_id: str, hard: bool = False) -> None:
        """Soft delete (kept, status `deleted`, history intact) or hard delete: the memory, everything derived
        from it (facts, topics, working memory), preferences evidenced by its message and the enrichment jobs
        about it are erased from every store. The chat thread that holds the turn keeps it until the thread is
        deleted (`delete_thread`) or the user erased."""
        item = self._get_for(memory_id, user_id, write=True)
        if not hard:
            self.services.tree.delete([memory_id])
            return
        erase_memories([item], tree=self.services.tree, preferences=self.services.preferences,
                       outbox=self.services.outbox, erase_job_threads=self._erase_job_threads)

    # -- documents -----------------------------------------------------------------------------------------

    def ingest(
        self, paths: Sequence[str | Path] = (), *, user_id: str, texts: Sequence[str | dict[str, Any]] = (),
        conversations: Sequence[dict[str, Any]] = (), cube_id: str | None = None, recursive: bool = False,
        mode: Literal["fast", "fine"] = "fast",
    ) -> dict[str, Any]:
        """Ingest files/directories, raw texts and conversations (idempotent; see `graphs/ingest.py`).

        Returns `{"results": [one row per document], "summary": {totals}}`; a bad file is a row with status
        `error`, never an exception that stops the batch.
        """
        from hippograph.nodes.ingest_state import IngestContext

        cube = self._cube(user_id, cube_id)
        out = self._ingest_graph().invoke(
            {"paths": [str(p) for p in paths], "texts": list(texts), "conversations": list(conversations)},
            context=IngestContext(user_id=user_id, cube_id=cube, recursive=recursive, mode=mode),
        )
        return {"results": out.get("results", []), "summary": out.get("summary", {})}

    def documents(self, *, user_id: str, cube_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """The active documents of a cube the user can read (key, title, kind, chunk count, last change)."""
        cube = self._cube(user_id, cube_id, write=False)
        return [
            {"doc_key": r.doc_key, "doc_id": r.doc_id, "title": r.title, "kind": r.kind, "path": r.path,
             "chunks": len(r.chunks), "updated_at": r.updated_at}
            for r in self._ingest_graph().documents.list(cube)
        ]

    def delete_document(self, doc_key: str | Path, *, user_id: str, cube_id: str | None = None) -> int:
        """Archive every memory of a document (soft delete: kept with status `deleted`, history intact).

        `doc_key` is the key `documents()` lists: a file's absolute path (a relative path is resolved), a text's
        name, or `conversation:<id>:<session>`. Returns how many memories were archived.
        """
        from hippograph.stores.documents import archive_document

        cube = self._cube(user_id, cube_id)
        registry = self._ingest_graph().documents
        key = str(doc_key)
        if registry.get(cube, key) is None and not key.startswith(("text:", "conversation:")):
            key = str(Path(key).expanduser().resolve())  # also for a file already gone from disk
        record = registry.get(cube, key)
        if record is None or record.status != "active":
            raise NotFoundError(f"document {str(doc_key)[:200]!r} not found in cube {cube!r}")
        return archive_document(self.services.tree, registry, cube, key)

    def _ingest_graph(self) -> Any:
        with self._ingest_lock:
            if self._ingest is None:
                from hippograph.graphs.ingest import build_ingest_graph

                self._ingest = build_ingest_graph(self.services)
            return self._ingest

    # -- reading -------------------------------------------------------------------------------------------

    def get(self, memory_id: str, *, user_id: str) -> MemoryItem:
        return self._get_for(memory_id, user_id, write=False)

    def search(
        self, query: str, *, user_id: str, cube_ids: Sequence[str] | None = None, top_k: int = 10,
        threshold: float = 0.0, as_of: float | datetime | str | None = None,
    ) -> list[SearchHit]:
        """Memories for a query, best first, each with its fused score and per-signal scores.

        `as_of` (epoch seconds, a datetime, or a date string such as "2023/05/30 (Tue) 23:40"): when the question
        is asked. Recall then answers what was true at that moment (memories that had happened by then, a
        superseded version if it was still valid), and the query's "last year" counts from it."""
        from hippograph.nodes.state import ChatContext
        from hippograph.nodes.time_grounding import as_datetime

        limits.check_top_k(top_k)
        limits.check_threshold(threshold)
        when = as_datetime(as_of)
        context = ChatContext(user_id=check_id(user_id, "user id"), cube_ids=_cubes(cube_ids), top_k=top_k,
                              threshold=threshold, ingest=False, as_of=when.timestamp() if when else None)
        state = self._search.invoke({"query": check_text(query, "query")}, context=context)
        return list(state.get("memories", []))

    def chat(
        self, message: str | Sequence[AnyMessage | dict[str, Any]], *, user_id: str, thread_id: str | None = None,
        cube_ids: Sequence[str] | None = None, top_k: int | None = None, cube_id: str | None = None,
    ) -> ChatResult:
        """One chat turn: recall from `cube_ids` (default: every readable cube), answer (cited), then remember
        the turn in `cube_id` (default: the user's default cube). `message` is a text, or this turn's messages
        (the LangServe `messages` shape, at least one of them from the human)."""
        from hippograph.graphs.chat import TURN_DURABILITY
        from hippograph.nodes.state import ChatContext

        messages = turn_messages(message)
        if top_k is not None:
            limits.check_top_k(top_k)
        limits.check_thread_id(thread_id)
        context = ChatContext(user_id=check_id(user_id, "user id"), cube_ids=_cubes(cube_ids), write_cube_id=cube_id,
                              top_k=top_k or self.settings.top_k, threshold=self.settings.threshold,
                              min_keep=self.settings.min_keep, mode=self.settings.mode)
        thread = thread_key(user_id, thread_id)
        state = self._chat.invoke(
            {"messages": messages},
            {"configurable": {"thread_id": thread}},
            context=context,
            durability=TURN_DURABILITY,
        )
        return ChatResult.from_state(state, thread_id=thread)

    def history(self, memory_id: str, *, user_id: str) -> builtins.list[MemoryItem]:
        """Every version of a memory (its whole SUPERSEDES chain, in the cubes the user may read), newest first."""
        self._get_for(memory_id, user_id, write=False)
        readable = self.services.registry.readable(user_id)
        return builtins.list(reversed(tree_ops.history(self.services.tree, memory_id, cube_ids=readable)))

    def list(self, *, user_id: str, cube_ids: Sequence[str] | None = None, limit: int = 100, offset: int = 0,
             include_inactive: bool = False, session_id: str | None = None,
             memory_type: str | None = None) -> builtins.list[MemoryItem]:
        """Memories of the readable cubes (or `cube_ids`), newest first, optionally of one session or type."""
        from hippograph.stores.models import MemoryType

        if memory_type is not None and memory_type not in {t.value for t in MemoryType}:
            raise InvalidInputError(f"unknown memory_type {memory_type!r}")
        if session_id is not None:
            check_id(session_id, "session id")
        statuses = tuple(MemoryStatus) if include_inactive else (MemoryStatus.ACTIVE,)
        cubes = self.services.registry.readable(check_id(user_id, "user id"), _cubes(cube_ids))
        if not cubes:
            return []
        return self.services.tree.list(cube_ids=cubes, limit=limit, offset=offset, statuses=statuses,
                                       session_id=session_id, memory_type=memory_type)

    # -- users, cubes and sharing ----------------------------------------------------------------------------

    def create_user(self, user_id: str, *, name: str = "", is_admin: bool = False) -> User:
        """A new user with a default cube `<user_id>.default`. Ids of erased users are never reused."""
        return self.services.registry.create_user(check_user_id(user_id), name=name, is_admin=is_admin,
                                                  exist_ok=False)

    def ensure_user(self, user_id: str) -> User:
        """The user; created (with a default cube) on first use when `auto_create_users` is on, else NotFound."""
        return self.services.registry.ensure_user(check_user_id(user_id))

    def users(self) -> builtins.list[User]:
        return self.services.registry.list_users()

    def create_api_key(self, user_id: str) -> str:
        """A new API key for the user (shown once; only its hash is stored)."""
        return self.services.registry.create_api_key(check_id(user_id, "user id"))

    def user_for_key(self, api_key: str) -> User:
        """The user an API key belongs to (`AccessDeniedError` for a missing, unknown or revoked key)."""
        if not isinstance(api_key, str) or not 0 < len(api_key) <= 512:
            raise AccessDeniedError("invalid or revoked API key")
        try:
            return self.services.registry.user_for_key(api_key)
        except NotFoundError:
            raise AccessDeniedError("invalid or revoked API key") from None

    def revoke_api_key(self, api_key: str, *, user_id: str | None = None) -> None:
        """Revoke a key. With `user_id`, only one of that user's own keys: any other key is "not found", so
        keys cannot be probed."""
        if user_id is not None:
            try:
                owner = self.user_for_key(api_key)
            except AccessDeniedError:
                raise NotFoundError("no such active key") from None
            if owner.id != user_id:
                raise NotFoundError("no such active key")
        self.services.registry.revoke_api_key(api_key)

    def erase_user(self, user_id: str) -> ErasureReport:
        """Erase a user: every cube they own (memories, edges, entities, documents), their preferences, their
        enrichment jobs and checkpoints, every chat thread of theirs or that read their cubes; then the user,
        cubes, shares and keys. No byte of it stays in the embedded stores' files. Ids are never reused."""
        registry = self.services.registry
        registry.get_user(check_id(user_id, "user id"))
        report = self._erase(registry.owned_cubes(user_id), user_id=user_id)
        registry.delete_user(user_id)
        return report

    def cubes(self, *, user_id: str) -> builtins.list[CubeAccess]:
        """The cubes the user may read: their own and shared ones they accepted (`owned` False)."""
        self.services.registry.ensure_user(check_id(user_id, "user id"))
        return self.services.registry.cubes_for(user_id)

    def create_cube(self, cube_id: str, *, user_id: str, name: str = "") -> Cube:
        self.services.registry.ensure_user(check_id(user_id, "user id"))
        return self.services.registry.create_cube(user_id, check_id(cube_id, "cube id"), name=name)

    def delete_cube(self, cube_id: str, *, user_id: str) -> ErasureReport:
        """Erase a cube the user owns from every store (see `erase_user`), then forget it; its id is never reused.
        A user's default cube cannot be deleted (`clear_cube` empties it)."""
        self._own_cube(cube_id, user_id)
        self.services.registry.check_deletable(user_id, cube_id)
        report = self._erase([cube_id])
        self.services.registry.delete_cube(user_id, cube_id)
        return report

    def clear_cube(self, cube_id: str, *, user_id: str) -> ErasureReport:
        """Erase everything in a cube the user owns (as `delete_cube`) but keep the cube and its shares."""
        self._own_cube(cube_id, user_id)
        return self._erase([cube_id])

    def share(self, cube_id: str, *, user_id: str, with_user: str, access: str = "read") -> None:
        """Invite `with_user` to a cube you own; it feeds their recall only after they accept. Sharing with an
        unknown user looks exactly the same (user ids cannot be probed)."""
        if access not in {a.value for a in Access}:
            raise InvalidInputError(f"access must be one of {sorted(a.value for a in Access)}, not {access!r:.40}")
        self._own_cube(cube_id, user_id)
        self.services.registry.share(user_id, cube_id, check_id(with_user, "user id"), Access(access))

    def unshare(self, cube_id: str, *, user_id: str, with_user: str) -> None:
        self._own_cube(cube_id, user_id)
        self.services.registry.unshare(user_id, cube_id, check_id(with_user, "user id"))

    def shares(self, *, user_id: str) -> builtins.list[Share]:
        """Shares of the cubes the user owns (pending and accepted)."""
        self.services.registry.get_user(check_id(user_id, "user id"))
        return self.services.registry.shares(owner_id=user_id)

    def invitations(self, *, user_id: str) -> builtins.list[Share]:
        """Cubes other users invited this user to, not yet accepted."""
        self.services.registry.ensure_user(check_id(user_id, "user id"))
        return self.services.registry.shares(user_id=user_id, status=ShareStatus.PENDING)

    def accept_share(self, cube_id: str, *, user_id: str) -> Share:
        self.services.registry.get_user(check_id(user_id, "user id"))
        return self.services.registry.accept_share(user_id, check_id(cube_id, "cube id"))

    def leave_cube(self, cube_id: str, *, user_id: str) -> None:
        """Decline an invitation or leave a cube shared with you."""
        self.services.registry.get_user(check_id(user_id, "user id"))
        self.services.registry.leave_share(user_id, check_id(cube_id, "cube id"))

    def preferences(self, *, user_id: str, include_inactive: bool = False) -> builtins.list[Preference]:
        """The user's preferences (explicit and implicit)."""
        self.services.registry.get_user(check_id(user_id, "user id"))
        return self.services.preferences.list(user_id=user_id, include_inactive=include_inactive)

    def delete_preference(self, preference_id: str, *, user_id: str) -> None:
        """Erase one of the user's preferences for good."""
        self.services.registry.get_user(check_id(user_id, "user id"))
        found = self.services.preferences.get([check_id(preference_id, "preference id")], user_id=user_id)
        if not found:
            raise NotFoundError(f"preference {preference_id} not found")
        self.services.preferences.erase(ids=[preference_id])

    def delete_thread(self, thread_id: str, *, user_id: str) -> None:
        """Forget a chat thread for good: its checkpoints (messages, recalled memories, answers) and the
        enrichment jobs it scheduled. Memories the thread wrote stay (delete them with `delete`)."""
        from langgraph.checkpoint.base import BaseCheckpointSaver

        key = thread_key(check_id(user_id, "user id"), limits.check_thread_id(thread_id))
        checkpointer = self._chat.checkpointer
        if isinstance(checkpointer, BaseCheckpointSaver):
            erase_threads(checkpointer, [key])
        self._erase_job_threads(self.services.outbox.purge(thread_ids=[key]))
        self.services.registry.forget_threads([key])

    # -- export and import ---------------------------------------------------------------------------------

    def export(self, path: str | Path, *, user_id: str) -> dict[str, int]:
        """Write everything the user owns as JSON Lines: cubes, memories (all versions, with vectors), edges,
        preferences and document records. `import_` restores it. Shared cubes of others are not included."""
        return export_user(self._portable(), path, user_id=check_id(user_id, "user id"))

    def import_(self, path: str | Path, *, user_id: str) -> dict[str, int]:
        """Restore an `export` file as `user_id` (created if needed; cubes re-homed to them, the exported
        default cube into theirs). Refuses, before writing anything, ids that belong to someone else."""
        registry = self.services.registry
        if registry.auto_create_users:
            registry.ensure_user(check_user_id(user_id))
        else:
            registry.get_user(check_id(user_id, "user id"))
        return import_user(self._portable(), path, user_id=user_id)

    def stats(self, *, user_id: str, cube_ids: Sequence[str] | None = None) -> dict[str, Any]:
        cubes = self.services.registry.readable(check_id(user_id, "user id"), _cubes(cube_ids))
        return {
            "user_id": user_id,
            "cubes": {c: self.services.tree.count(cube_ids=[c]) for c in cubes},
            "jobs": self.services.outbox.counts(),
        }

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
        if self._ingest is not None:
            self._ingest.documents.close()
        self.services.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers -------------------------------------------------------------------------------------------

    def _own_cube(self, cube_id: str, user_id: str) -> None:
        """404 for cubes the user cannot see at all (no probing), 403 for ones they see but do not own."""
        registry = self.services.registry
        registry.get_user(check_id(user_id, "user id"))
        if check_id(cube_id, "cube id") not in registry.readable(user_id):
            raise NotFoundError(f"cube {cube_id!r} not found")
        if registry.get_cube(cube_id).owner_id != user_id:
            raise AccessDeniedError(f"only the owner may change cube {cube_id!r}")

    def _erase_job_threads(self, job_ids: Iterable[str]) -> int:
        return erase_threads(self._enrich_checkpointer(), job_ids)

    def _enrich_checkpointer(self) -> BaseCheckpointSaver:
        if self._worker is not None:
            return self._worker.worker.checkpointer  # type: ignore[no-any-return]
        with self._ingest_lock:
            if self._enrich_saver is None:
                from hippograph.graphs.enrich import open_enrich_checkpointer

                self._enrich_saver = open_enrich_checkpointer(self.settings)
            return self._enrich_saver

    def _erase(self, cube_ids: Sequence[str], *, user_id: str | None = None) -> ErasureReport:
        from langgraph.checkpoint.base import BaseCheckpointSaver

        checkpointer = self._chat.checkpointer

        def erase_chat_threads(keys: Iterable[str]) -> int:
            return erase_threads(checkpointer, keys) if isinstance(checkpointer, BaseCheckpointSaver) else 0

        return erase_cubes(
            cube_ids, user_id=user_id, tree=self.services.tree, preferences=self.services.preferences,
            outbox=self.services.outbox, registry=self.services.registry, documents=self._ingest_graph().documents,
            erase_chat_threads=erase_chat_threads, erase_job_threads=self._erase_job_threads,
        )

    def _portable(self) -> Portable:
        return Portable(tree=self.services.tree, preferences=self.services.preferences,
                        registry=self.services.registry, documents=self._ingest_graph().documents,
                        embeddings=self.services.embeddings)

    def _cube(self, user_id: str, cube_id: str | None, *, write: bool = True) -> str:
        """The cube a call works on (the user's default cube when none is named), checked for access."""
        registry = self.services.registry
        if write:
            return registry.write_cube(user_id, cube_id)
        registry.ensure_user(check_id(user_id, "user id"))
        return registry.readable(user_id, [cube_id or default_cube_id(user_id)])[0]

    def _get_for(self, memory_id: str, user_id: str, *, write: bool) -> MemoryItem:
        if not isinstance(memory_id, str) or not memory_id:
            raise InvalidInputError("memory id must be a non-empty string")
        if not limits.is_plausible_key(memory_id):
            raise NotFoundError(f"memory {memory_id[:128]!r} not found")
        registry = self.services.registry
        registry.get_user(check_id(user_id, "user id"))
        cubes = registry.writable(user_id) if write else registry.readable(user_id)
        found = self.services.tree.get([memory_id], cube_ids=cubes)
        if not found:
            if write and self.services.tree.get([memory_id], cube_ids=registry.readable(user_id)):
                raise AccessDeniedError(f"user {user_id!r} may read but not change memory {memory_id}")
            raise NotFoundError(f"memory {memory_id} not found")
        return found[0]

    # -- inspection (the /ui web inspector; same access rules as every other call) -------------------------

    def browse(
        self, *, user_id: str, cube_ids: Sequence[str] | None = None, memory_type: str | None = None,
        statuses: Sequence[str] | None = None, source: str | None = None, since: float | None = None,
        until: float | None = None, doc_id: str | None = None, limit: int = 50, offset: int = 0,
    ) -> builtins.list[MemoryItem]:
        """Memories of readable cubes, newest first, filtered by type, status, source, creation time and the
        document they came from (`doc_id`, as `documents()` lists it).

        `statuses` defaults to active only. Source, time and document are filtered while paging through the
        store, which lists newest first, so paging stops at `since`.
        """
        from hippograph.stores.models import MemoryType

        if memory_type is not None and memory_type not in {t.value for t in MemoryType}:
            raise InvalidInputError(f"unknown memory type {memory_type!r}")
        try:
            wanted = tuple(MemoryStatus(s) for s in statuses) if statuses else (MemoryStatus.ACTIVE,)
        except ValueError:
            raise InvalidInputError(f"unknown status in {builtins.list(statuses or [])!r}") from None
        if not 1 <= limit <= 500 or offset < 0:
            raise InvalidInputError("limit must be 1-500 and offset >= 0")
        cubes = self.services.registry.readable(check_id(user_id, "user id"), _cubes(cube_ids))
        if not cubes:
            return []
        if source is None and since is None and until is None and doc_id is None:
            return self.services.tree.list(cube_ids=cubes, limit=limit, offset=offset, statuses=wanted,
                                           memory_type=memory_type)
        matched: builtins.list[MemoryItem] = []
        page, start = 500, 0
        while len(matched) < offset + limit:
            batch = self.services.tree.list(cube_ids=cubes, limit=page, offset=start, statuses=wanted,
                                            memory_type=memory_type)
            for item in batch:
                if (source is None or item.source == source) and (since is None or item.created_at >= since) \
                        and (until is None or item.created_at < until) and (doc_id is None or _from_doc(item, doc_id)):
                    matched.append(item)
            if len(batch) < page or (since is not None and batch[-1].created_at < since):
                break
            start += page
        return matched[offset:offset + limit]

    def edges(self, memory_id: str, *, user_id: str) -> builtins.list[Edge]:
        """Every edge touching a memory the user may read, whose other end the user may read too."""
        self._get_for(memory_id, user_id, write=False)
        return self._readable_edges([memory_id], user_id)

    def neighbourhood(
        self, memory_id: str, *, user_id: str, depth: int = 2, max_nodes: int = 150
    ) -> tuple[builtins.list[MemoryItem], builtins.list[Edge]]:
        """The memories within `depth` edges of one memory (any edge type, both directions) and the edges
        between them: topic tree (PARENT), NEXT, SUPERSEDES, merges. Readable cubes only; at most `max_nodes`."""
        if not 0 <= depth <= 4 or not 1 <= max_nodes <= 1000:
            raise InvalidInputError("depth must be 0-4 and max_nodes 1-1000")
        start = self._get_for(memory_id, user_id, write=False)
        readable = self.services.registry.readable(user_id)
        nodes: dict[str, MemoryItem] = {start.id: start}
        frontier = [start.id]
        for _ in range(depth):
            around = self.services.tree.edges(frontier, direction="both")
            new_ids = builtins.list(dict.fromkeys(i for e in around for i in (e.src, e.dst) if i not in nodes))
            room = max_nodes - len(nodes)
            found = self.services.tree.get(new_ids, cube_ids=readable)[:room] if room > 0 else []
            nodes.update((m.id, m) for m in found)
            frontier = [m.id for m in found]
            if not frontier:
                break
        edges = {(e.src, e.rel, e.dst): e for e in self.services.tree.edges(builtins.list(nodes), direction="out")
                 if e.dst in nodes}
        return builtins.list(nodes.values()), builtins.list(edges.values())

    def explain_search(
        self, query: str, *, user_id: str, cube_ids: Sequence[str] | None = None, top_k: int = 10,
        threshold: float = 0.0, min_keep: int | None = None,
    ) -> SearchAudit:
        """Run the search graph and return its whole audit: every candidate with per-signal scores and ranks,
        the fused and thresholded memories, what the threshold dropped and why, and node timings."""
        from hippograph.nodes.state import ChatContext

        limits.check_top_k(top_k)
        limits.check_threshold(threshold)
        keep = self.settings.min_keep if min_keep is None else min_keep
        if not isinstance(keep, int) or keep < 0:
            raise InvalidInputError("min_keep must be a non-negative integer")
        context = ChatContext(user_id=check_id(user_id, "user id"), cube_ids=_cubes(cube_ids), top_k=top_k,
                              threshold=threshold, min_keep=keep, ingest=False)
        state = self._search_audit.invoke({"query": check_text(query, "query")}, context=context)
        return SearchAudit(query=query, candidates=state.get("candidates", []), memories=state.get("memories", []),
                           dropped=state.get("dropped", []), timings=state.get("timings", {}))

    def jobs(self, *, user_id: str, status: str | None = None, limit: int = 50) -> builtins.list[Job]:
        """Enrichment jobs about the user's own writes or cubes they may read, newest first."""
        if status is not None and status not in {s.value for s in JobStatus}:
            raise InvalidInputError(f"unknown job status {status!r}")
        wanted = JobStatus(status) if status else None
        readable = self.services.registry.readable(check_id(user_id, "user id"))
        jobs = self.services.outbox.list(status=wanted, limit=5_000)
        return [j for j in jobs if _job_visible(j, user_id, readable)][:limit]

    def job(self, job_id: str, *, user_id: str) -> Job:
        """One job the user may see (`NotFoundError` otherwise, so ids cannot be probed)."""
        job = self.services.outbox.get(job_id) if limits.is_plausible_key(job_id) else None
        if job is None or not _job_visible(job, user_id, self.services.registry.readable(check_id(user_id))):
            raise NotFoundError(f"job {str(job_id)[:128]} not found")
        return job

    def retry_job(self, job_id: str, *, user_id: str) -> Job:
        """Put a failed job back in the queue (attempts reset). The user must be able to write its cube."""
        job = self.job(job_id, user_id=user_id)
        cube = (job.payload or {}).get("cube_id")
        if cube is not None and cube not in self.services.registry.writable(user_id):
            raise AccessDeniedError(f"user {user_id!r} may not retry jobs of cube {cube!r}")
        if job.status != JobStatus.FAILED:
            raise InvalidInputError(f"only failed jobs can be retried; job {job.id} is {job.status.value}")
        if not self.services.outbox.retry(job.id):
            raise InvalidInputError(f"job {job.id} can no longer be retried (it changed meanwhile)")
        return self.job(job.id, user_id=user_id)

    def mentions(self, memory_ids: Sequence[str], *, user_id: str) -> dict[str, builtins.list[str]]:
        """memory id -> the entity names it mentions (the entity graph), for the memories the user may read."""
        readable = self.services.registry.readable(check_id(user_id, "user id"))
        visible = [m.id for m in self.services.tree.get(builtins.list(memory_ids)[:1000], cube_ids=readable)]
        return self.services.tree.mentions(visible) if visible else {}

    def _readable_edges(self, ids: builtins.list[str], user_id: str) -> builtins.list[Edge]:
        around = self.services.tree.edges(ids, direction="both")
        others = {e.dst if e.src in ids else e.src for e in around}
        visible = {m.id for m in self.services.tree.get(builtins.list(others),
                                                        cube_ids=self.services.registry.readable(user_id))}
        return [e for e in around if (e.dst if e.src in ids else e.src) in visible]


def turn_messages(message: Any) -> list[BaseMessage]:
    """A chat turn's new messages, checked: one text, or a list of messages with at least one from the human."""
    from hippograph.nodes.scope import message_text

    if isinstance(message, str | bytes):
        return [HumanMessage(content=check_text(message, "message"))]
    if not isinstance(message, Sequence) or not message:
        raise InvalidInputError("a chat turn is a text or a non-empty list of messages")
    if len(message) > limits.MAX_MESSAGES:
        raise InvalidInputError(f"at most {limits.MAX_MESSAGES} messages in one turn")
    try:
        messages = convert_to_messages(builtins.list(message))
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise InvalidInputError(f"not a list of messages: {str(exc)[:200]}") from None
    for m in messages:
        check_text(message_text(m.content), "message")
    if not any(isinstance(m, HumanMessage) for m in messages):
        raise InvalidInputError("a chat turn needs at least one human message")
    return messages


def _cubes(cube_ids: Sequence[str] | None) -> list[str] | None:
    if cube_ids is None:
        return None
    if isinstance(cube_ids, str) or not isinstance(cube_ids, Sequence) \
            or not all(isinstance(c, str) for c in cube_ids):
        raise InvalidInputError("cube_ids must be a list of cube id strings")
    if len(cube_ids) > limits.MAX_CUBE_IDS:
        raise InvalidInputError(f"at most {limits.MAX_CUBE_IDS} cube ids")
    return [check_id(c, "cube id") for c in cube_ids]


def _start_worker(services: Services) -> Any:
    """The in-process enrichment worker (the embedded default), imported only when it runs."""
    from hippograph.worker import start_in_process_worker

    return start_in_process_worker(services)


def erase_threads(checkpointer: BaseCheckpointSaver, thread_ids: Iterable[str]) -> int:
    """`graphs.checkpoint.erase_threads`, imported when something is erased (the graph layer loads LangGraph)."""
    from hippograph.graphs.checkpoint import erase_threads as erase

    return erase(checkpointer, thread_ids)


def _to_thread(method: Callable[P, R]) -> Callable[P, Any]:
    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(method, *args, **kwargs)

    return run


class AsyncMemory:
    """`Memory` for asyncio code: the same methods as coroutines (each runs in a worker thread)."""

    def __init__(self, settings: Settings | None = None, *, services: Services | None = None) -> None:
        self.sync = Memory(settings, services=services)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.sync, name)
        return _to_thread(attr) if callable(attr) else attr


class SearchAudit(BaseModel):
    """Everything one search run decided (`Memory.explain_search`): the web inspector's search playground."""

    query: str
    candidates: list[SearchHit] = Field(default_factory=list)
    """Everything recall found, with per-signal scores and ranks, before fusion."""
    memories: list[SearchHit] = Field(default_factory=list)
    """Fused (`score`), ranked and kept by the threshold."""
    dropped: list[dict[str, Any]] = Field(default_factory=list)
    """`{"id", "score", "reason"}` for each candidate the threshold dropped."""
    timings: dict[str, float] = Field(default_factory=dict)
    """Per-node wall time in milliseconds."""


def _from_doc(item: MemoryItem, doc_id: str) -> bool:
    """The memory is a chunk, section or fact of this document (or the document's own node)."""
    return item.id == doc_id or any(r.kind == "document" and r.ref == doc_id for r in item.source_refs)


def _job_visible(job: Job, user_id: str, readable: list[str]) -> bool:
    """A job is visible to the user who caused it and to readers of its cube (the REST rule)."""
    payload = job.payload or {}
    return payload.get("user_id") == user_id or payload.get("cube_id") in readable
