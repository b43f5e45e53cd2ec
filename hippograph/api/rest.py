"""REST under `/v1`: users, keys, cubes and sharing, memories, search and chat, documents, jobs.

Every route is a thin call into `Memory`, which holds the rules (access, limits, result shapes)."""

from __future__ import annotations

import os
import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse

from hippograph.api.auth import Admin, Caller, authenticate, presents_admin_key
from hippograph.api.schemas import (
    MAX_PAGE,
    ChatTurn,
    DocumentOut,
    DocumentsIn,
    IngestOut,
    JobOut,
    KeyOut,
    Me,
    MemoryIds,
    MemoryPage,
    MemoryPatch,
    NewCube,
    NewMemory,
    NewShare,
    NewUser,
    RevokeKey,
    SearchQuery,
    UserWithKey,
)
from hippograph.memory import ChatResult, Memory
from hippograph.stores.erasure import ErasureReport
from hippograph.stores.errors import InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, SearchHit
from hippograph.stores.outbox import Job, JobStatus
from hippograph.stores.preferences.base import Preference
from hippograph.stores.registry import Cube, CubeAccess, Share, User


def _job_out(job: Job) -> JobOut:
    payload = job.payload or {}
    return JobOut(id=job.id, kind=job.kind, status=job.status, attempts=job.attempts, last_error=job.last_error,
                  created_at=job.created_at, updated_at=job.updated_at, cube_id=payload.get("cube_id"),
                  memory_ids=list(payload.get("memory_ids") or []))


def build_rest(memory: Memory) -> APIRouter:
    api = APIRouter(prefix="/v1")

    # users and keys (admin)

    @api.post("/users", status_code=201, response_model=UserWithKey, tags=["users"])
    def create_user(body: NewUser, _: Admin) -> UserWithKey:
        user = memory.create_user(body.user_id, name=body.name, is_admin=body.is_admin)
        return UserWithKey(user=user, api_key=memory.create_api_key(user.id))

    @api.get("/users", response_model=list[User], tags=["users"])
    def list_users(_: Admin) -> list[User]:
        return memory.users()

    @api.delete("/users/{user_id}", response_model=ErasureReport, tags=["users"])
    def delete_user(user_id: str, _: Admin) -> ErasureReport:
        """Erase the user and everything they own from every store; the id is never reused."""
        return memory.erase_user(user_id)

    @api.post("/users/{user_id}/keys", status_code=201, response_model=KeyOut, tags=["users"])
    def new_key(user_id: str, _: Admin) -> KeyOut:
        return KeyOut(api_key=memory.create_api_key(user_id))

    @api.post("/keys/revoke", status_code=204, tags=["users"])
    def revoke_key(body: RevokeKey, request: Request) -> None:
        """Revoke a key: any key with the admin key (or as an admin user), else only one of your own."""
        caller = None if presents_admin_key(request) else authenticate(request)
        memory.revoke_api_key(body.api_key, user_id=None if caller is None or caller.is_admin else caller.id)

    @api.get("/me", response_model=Me, tags=["users"])
    def me(caller: Caller) -> Me:
        return Me(user=caller, cubes=memory.cubes(user_id=caller.id))

    @api.delete("/me", response_model=ErasureReport, tags=["users"])
    def erase_me(caller: Caller) -> ErasureReport:
        """Erase yourself: every cube you own, your preferences, threads and jobs, then your user and keys."""
        return memory.erase_user(caller.id)

    @api.get("/me/export", tags=["users"], response_class=FileResponse,
             responses={200: {"content": {"application/x-ndjson": {}}}})
    def export_me(caller: Caller, background: BackgroundTasks) -> FileResponse:
        """Everything you own as JSON Lines (cubes, memories with history, edges, preferences, documents)."""
        handle, name = tempfile.mkstemp(prefix="hippograph-export-", suffix=".jsonl")
        os.close(handle)
        memory.export(name, user_id=caller.id)
        background.add_task(os.unlink, name)
        return FileResponse(name, media_type="application/x-ndjson", filename=f"{caller.id}.jsonl")

    @api.post("/me/import", tags=["users"])
    async def import_me(request: Request, caller: Caller) -> dict[str, int]:
        """Restore an export (the JSON Lines body) into your account."""
        body = await request.body()
        handle, name = tempfile.mkstemp(prefix="hippograph-import-", suffix=".jsonl")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(body)
            return await run_in_threadpool(memory.import_, name, user_id=caller.id)
        finally:
            os.unlink(name)

    @api.delete("/threads/{thread_id}", status_code=204, tags=["users"])
    def delete_thread(thread_id: str, caller: Caller) -> None:
        """Forget one of your chat threads (its checkpoints) for good."""
        memory.delete_thread(thread_id, user_id=caller.id)

    @api.get("/preferences", response_model=list[Preference], tags=["users"])
    def list_preferences(caller: Caller, include_inactive: bool = False) -> list[Preference]:
        return memory.preferences(user_id=caller.id, include_inactive=include_inactive)

    @api.delete("/preferences/{preference_id}", status_code=204, tags=["users"])
    def delete_preference(preference_id: str, caller: Caller) -> None:
        memory.delete_preference(preference_id, user_id=caller.id)

    # cubes and sharing (a share is an invitation the recipient accepts)

    @api.get("/cubes", response_model=list[CubeAccess], tags=["cubes"])
    def list_cubes(caller: Caller) -> list[CubeAccess]:
        return memory.cubes(user_id=caller.id)

    @api.post("/cubes", status_code=201, response_model=Cube, tags=["cubes"])
    def create_cube(body: NewCube, caller: Caller) -> Cube:
        return memory.create_cube(body.cube_id, user_id=caller.id, name=body.name)

    @api.delete("/cubes/{cube_id}", response_model=ErasureReport, tags=["cubes"])
    def delete_cube(cube_id: str, caller: Caller) -> ErasureReport:
        """Erase the cube's data from every store and forget the cube; its id is never reused."""
        return memory.delete_cube(cube_id, user_id=caller.id)

    @api.delete("/cubes/{cube_id}/memories", response_model=ErasureReport, tags=["cubes"])
    def clear_cube(cube_id: str, caller: Caller) -> ErasureReport:
        """Erase everything in the cube but keep the cube (works on your default cube too)."""
        return memory.clear_cube(cube_id, user_id=caller.id)

    @api.get("/cubes/{cube_id}/shares", response_model=list[Share], tags=["cubes"])
    def list_shares(cube_id: str, caller: Caller) -> list[Share]:
        return [s for s in memory.shares(user_id=caller.id) if s.cube_id == cube_id]

    @api.post("/cubes/{cube_id}/shares", status_code=202, tags=["cubes"])
    def share_cube(cube_id: str, body: NewShare, caller: Caller) -> dict[str, str]:
        """Invite a user. The answer is the same whether or not that user exists."""
        memory.share(cube_id, user_id=caller.id, with_user=body.user_id, access=body.access.value)
        return {"status": "invited", "cube_id": cube_id, "user_id": body.user_id}

    @api.delete("/cubes/{cube_id}/shares/{user_id}", status_code=204, tags=["cubes"])
    def unshare_cube(cube_id: str, user_id: str, caller: Caller) -> None:
        memory.unshare(cube_id, user_id=caller.id, with_user=user_id)

    @api.get("/invitations", response_model=list[Share], tags=["cubes"])
    def list_invitations(caller: Caller) -> list[Share]:
        return memory.invitations(user_id=caller.id)

    @api.post("/invitations/{cube_id}/accept", response_model=Share, tags=["cubes"])
    def accept_invitation(cube_id: str, caller: Caller) -> Share:
        return memory.accept_share(cube_id, user_id=caller.id)

    @api.delete("/invitations/{cube_id}", status_code=204, tags=["cubes"])
    def leave_cube(cube_id: str, caller: Caller) -> None:
        """Decline an invitation, or leave a cube shared with you."""
        memory.leave_cube(cube_id, user_id=caller.id)

    # memories

    @api.post("/memories", status_code=201, response_model=MemoryIds, tags=["memories"])
    def add_memory(body: NewMemory, caller: Caller) -> MemoryIds:
        if (body.text is None) == (body.messages is None):
            raise InvalidInputError("give exactly one of `text` or `messages`")
        content: Any = body.text if body.text is not None else [
            {**m.model_dump(exclude_none=True), "role": {"human": "user", "ai": "assistant"}.get(m.role, m.role)}
            for m in body.messages or []
        ]
        ids = memory.add(content, user_id=caller.id, cube_id=body.cube_id, session_id=body.session_id,
                         metadata=body.metadata)
        return MemoryIds(ids=ids)

    @api.get("/memories", response_model=MemoryPage, tags=["memories"])
    def list_memories(
        caller: Caller,
        cube_id: Annotated[list[str] | None, Query()] = None,
        session_id: str | None = None,
        memory_type: str | None = None,
        include_inactive: bool = False,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> MemoryPage:
        items = memory.list(user_id=caller.id, cube_ids=cube_id, limit=limit + 1, offset=offset,
                            include_inactive=include_inactive, session_id=session_id, memory_type=memory_type)
        more = len(items) > limit
        return MemoryPage(items=items[:limit], limit=limit, offset=offset,
                          next_offset=offset + limit if more else None)

    @api.get("/memories/{memory_id}", response_model=MemoryItem, tags=["memories"])
    def get_memory(memory_id: str, caller: Caller) -> MemoryItem:
        return memory.get(_mid(memory_id), user_id=caller.id)

    @api.patch("/memories/{memory_id}", response_model=MemoryItem, tags=["memories"])
    def update_memory(memory_id: str, body: MemoryPatch, caller: Caller) -> MemoryItem:
        if body.text is None and body.tags is None and body.metadata is None:
            raise InvalidInputError("nothing to update: give text, tags or metadata")
        return memory.update(_mid(memory_id), body.text, user_id=caller.id, tags=body.tags, metadata=body.metadata)

    @api.delete("/memories/{memory_id}", status_code=204, tags=["memories"])
    def delete_memory(memory_id: str, caller: Caller, hard: bool = False) -> None:
        memory.delete(_mid(memory_id), user_id=caller.id, hard=hard)

    @api.get("/memories/{memory_id}/history", response_model=list[MemoryItem], tags=["memories"])
    def memory_history(memory_id: str, caller: Caller) -> list[MemoryItem]:
        return memory.history(_mid(memory_id), user_id=caller.id)

    @api.get("/memories/{memory_id}/edges", tags=["memories"])
    def memory_edges(memory_id: str, caller: Caller) -> list[dict[str, Any]]:
        """Edges touching the memory whose other end the caller may read too (`src -rel-> dst`)."""
        return [e.model_dump(mode="json") for e in memory.edges(_mid(memory_id), user_id=caller.id)]

    @api.post("/search", response_model=list[SearchHit], tags=["memories"])
    def search(body: SearchQuery, caller: Caller) -> list[SearchHit]:
        return memory.search(body.query, user_id=caller.id, cube_ids=body.cube_ids, top_k=body.top_k,
                             threshold=body.threshold)

    @api.post("/chat", response_model=ChatResult, tags=["memories"])
    def chat(body: ChatTurn, caller: Caller) -> ChatResult:
        return memory.chat(body.turn(), user_id=caller.id, thread_id=body.thread_id, cube_ids=body.cube_ids,
                           top_k=body.top_k)

    # documents and jobs

    @api.post("/documents", response_model=IngestOut, tags=["documents"])
    def ingest_documents(body: DocumentsIn, caller: Caller) -> IngestOut:
        if not body.texts and not body.conversations:
            raise InvalidInputError("nothing to ingest: give texts or conversations")
        return IngestOut(**memory.ingest(user_id=caller.id, texts=[t.model_dump(exclude_none=True) for t in body.texts],
                                         conversations=body.conversations, cube_id=body.cube_id, mode=body.mode))

    @api.get("/documents", response_model=list[DocumentOut], tags=["documents"])
    def list_documents(caller: Caller, cube_id: str | None = None) -> list[DocumentOut]:
        return [DocumentOut(**d) for d in memory.documents(user_id=caller.id, cube_id=cube_id)]

    @api.delete("/documents", tags=["documents"])
    def delete_document(
        caller: Caller, doc_key: Annotated[str, Query(min_length=1, max_length=4096)], cube_id: str | None = None
    ) -> dict[str, Any]:
        return {"doc_key": doc_key,
                "archived": memory.delete_document(doc_key, user_id=caller.id, cube_id=cube_id)}

    @api.get("/jobs", response_model=list[JobOut], tags=["jobs"])
    def list_jobs(
        caller: Caller, status: JobStatus | None = None, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50
    ) -> list[JobOut]:
        return [_job_out(j) for j in memory.jobs(user_id=caller.id, status=status.value if status else None,
                                                 limit=limit)]

    @api.get("/jobs/{job_id}", response_model=JobOut, tags=["jobs"])
    def get_job(job_id: str, caller: Caller) -> JobOut:
        return _job_out(memory.job(job_id, user_id=caller.id))

    @api.post("/jobs/{job_id}/retry", response_model=JobOut, tags=["jobs"])
    def retry_job(job_id: str, caller: Caller) -> JobOut:
        """Requeue a failed job (fresh attempts); needs write access to its cube."""
        return _job_out(memory.retry_job(job_id, user_id=caller.id))

    return api


def _mid(memory_id: str) -> str:
    if not memory_id or len(memory_id) > 128:
        raise NotFoundError("memory not found")
    return memory_id
