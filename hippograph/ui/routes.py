"""Routes of the `/ui` inspector. Pages are HTML; `/ui/api/*` are the JSON calls the pages make.

Auth is REST's: the API key from `Authorization`/`X-API-Key`, or from the HttpOnly, SameSite=Strict cookie the
login form sets. Without a valid key a page redirects to the login form and a JSON call answers 401; nothing else
is readable. Every read and write goes through `Memory` as the authenticated user.
"""

# No `from __future__ import annotations`: FastAPI must see the closures' `Caller` type at run time.
import functools
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, ParamSpec
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from hippograph.api.auth import presented_key
from hippograph.memory import Memory, SearchAudit
from hippograph.stores.errors import AccessDeniedError, HippographError, InvalidInputError, NotFoundError
from hippograph.stores.models import MemoryItem, MemoryStatus, MemoryType, SearchHit
from hippograph.stores.outbox import JobStatus
from hippograph.stores.registry import User
from hippograph.stores.tree.base import Edge

#: The cookie holding the API key after a login through the form.
COOKIE = "hippograph_key"
HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
PAGE = 50
SOURCES = ("conversation", "document", "enrichment", "import", "api")

P = ParamSpec("P")


class LoginRequired(Exception):
    """No valid API key on a `/ui` request: pages redirect to the login form, JSON calls get 401."""


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _snippet(text: str, n: int = 140) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


TEMPLATES.env.filters["when"] = _when
TEMPLATES.env.filters["snippet"] = _snippet


def _day(value: str | None, what: str) -> float | None:
    """`YYYY-MM-DD` (or an ISO date-time) as epoch seconds, UTC."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInputError(f"{what} must be a date like 2026-01-31, not {value[:40]!r}") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _safe_next(target: str | None) -> str:
    """Only local `/ui/...` paths after login (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/memories"


def install_ui(app: FastAPI, memory: Memory) -> None:
    """Mount the inspector on `app`: pages under `/ui`, vendored static files under `/ui/static`."""
    app.include_router(build_ui_router(memory))
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    async def login_required(request: Request, _: Exception) -> Response:
        if request.url.path.startswith("/ui/api/"):
            return JSONResponse({"error": "HTTPError", "reason": "missing or invalid API key", "status": 401},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/ui/login?next={quote(target)}", status_code=303)

    app.add_exception_handler(LoginRequired, login_required)


def build_ui_router(memory: Memory) -> APIRouter:
    ui = APIRouter(prefix="/ui", include_in_schema=False)

    def caller(request: Request) -> User:
        key = presented_key(request) or request.cookies.get(COOKIE)
        try:
            return memory.user_for_key(key or "")
        except AccessDeniedError:
            raise LoginRequired from None

    def same_origin(request: Request) -> None:
        """Forms post only from our own pages (the SameSite=Strict cookie already stops cross-site posts)."""
        origin = request.headers.get("origin")
        if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
            raise AccessDeniedError("cross-origin form post refused")

    Caller = Annotated[User, Depends(caller)]
    Posted = Depends(same_origin)

    def page(name: str, request: Request, user: User | None, status_code: int = 200, **context: Any) -> HTMLResponse:
        cubes = memory.cubes(user_id=user.id) if user else []
        return TEMPLATES.TemplateResponse(request, name, {"user": user, "cubes": cubes, **context},
                                          status_code=status_code)

    def html_errors(handler: Callable[P, Response]) -> Callable[P, Response]:
        """Render a typed error (404 for what the caller cannot see, 403, 422) as a page, with its status."""

        @functools.wraps(handler)
        def run(*args: P.args, **kwargs: P.kwargs) -> Response:
            try:
                return handler(*args, **kwargs)
            except HippographError as exc:
                request, user = kwargs.get("request"), kwargs.get("user")
                assert isinstance(request, Request)
                return page("error.html", request, user if isinstance(user, User) else None,
                            status_code=exc.status_code, error=type(exc).__name__, reason=str(exc))

        return run

    # -- login ---------------------------------------------------------------------------------------------

    @ui.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str | None = None, failed: bool = False) -> Response:
        return page("login.html", request, None, status_code=401 if failed else 200, next=_safe_next(next),
                    failed=failed)

    @ui.post("/login", dependencies=[Posted])
    def login(request: Request, api_key: Annotated[str, Form(max_length=512)],
              next: Annotated[str, Form()] = "/ui/memories") -> Response:
        try:
            memory.user_for_key(api_key.strip())
        except AccessDeniedError:
            return RedirectResponse(f"/ui/login?failed=true&next={quote(_safe_next(next))}", status_code=303)
        response = RedirectResponse(_safe_next(next), status_code=303)
        response.set_cookie(COOKIE, api_key.strip(), httponly=True, samesite="strict", path="/ui",
                            secure=request.url.scheme == "https")
        return response

    @ui.post("/logout", dependencies=[Posted])
    def logout() -> Response:
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return response

    @ui.get("", include_in_schema=False)
    @ui.get("/", include_in_schema=False)
    def home(user: Caller) -> Response:
        return RedirectResponse("/ui/memories", status_code=303)

    # -- memories ------------------------------------------------------------------------------------------

    @ui.get("/memories", response_class=HTMLResponse)
    @html_errors
    def memories(
        request: Request, user: Caller, cube: str = "", type: str = "", status: str = "active", source: str = "",
        since: str = "", until: str = "", doc: Annotated[str, Query(max_length=128)] = "",
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0, msg: str = "",
    ) -> Response:
        statuses = [s.value for s in MemoryStatus] if status == "all" else [status or "active"]
        items = memory.browse(user_id=user.id, cube_ids=[cube] if cube else None, memory_type=type or None,
                              statuses=statuses, source=source or None, since=_day(since, "since"),
                              until=_day(until, "until"), doc_id=doc or None, limit=PAGE + 1, offset=offset)
        filters = {"cube": cube, "type": type, "status": status, "source": source, "since": since, "until": until,
                   "doc": doc}
        query = "&".join(f"{k}={quote(v)}" for k, v in filters.items() if v)
        return page("memories.html", request, user, items=items[:PAGE], filters=filters, query=query,
                    offset=offset, more=len(items) > PAGE, page_size=PAGE, msg=msg[:200],
                    types=[t.value for t in MemoryType], statuses=[s.value for s in MemoryStatus], sources=SOURCES)

    @ui.get("/memories/{memory_id}", response_class=HTMLResponse)
    @html_errors
    def memory_page(request: Request, user: Caller, memory_id: str, msg: str = "") -> Response:
        item = memory.get(_mid(memory_id), user_id=user.id)
        history = memory.history(item.id, user_id=user.id)
        edges = memory.edges(item.id, user_id=user.id)
        others = _others(memory, item.id, edges, user.id)
        entities = memory.mentions([item.id], user_id=user.id).get(item.id, [])
        writable = any(c.cube.id == item.cube_id and c.access == "write" for c in memory.cubes(user_id=user.id))
        return page("memory.html", request, user, item=item, history=history, edges=edges, others=others,
                    writable=writable, entities=entities, msg=msg[:200])

    @ui.post("/memories/{memory_id}/edit", dependencies=[Posted])
    @html_errors
    def edit_memory(request: Request, user: Caller, memory_id: str, text: Annotated[str, Form(max_length=32_000)],
                    tags: Annotated[str, Form(max_length=2_000)] = "") -> Response:
        tag_list = [t.strip() for t in tags.split(",") if t.strip()]
        item = memory.update(_mid(memory_id), text, user_id=user.id, tags=tag_list)
        return RedirectResponse(f"/ui/memories/{quote(item.id)}?msg=saved", status_code=303)

    @ui.post("/memories/{memory_id}/delete", dependencies=[Posted])
    @html_errors
    def delete_memory(request: Request, user: Caller, memory_id: str,
                      hard: Annotated[bool, Form()] = False) -> Response:
        memory.delete(_mid(memory_id), user_id=user.id, hard=hard)
        if hard:
            return RedirectResponse(f"/ui/memories?msg={quote('deleted for good: ' + memory_id)}", status_code=303)
        return RedirectResponse(f"/ui/memories/{quote(memory_id)}?msg=deleted", status_code=303)

    # -- graph ---------------------------------------------------------------------------------------------

    @ui.get("/graph", response_class=HTMLResponse)
    @html_errors
    def graph_start(request: Request, user: Caller) -> Response:
        newest = memory.browse(user_id=user.id, limit=1)
        if newest:
            return RedirectResponse(f"/ui/graph/{quote(newest[0].id)}", status_code=303)
        return page("error.html", request, user, status_code=200, error="Nothing yet",
                    reason="no memories to draw: add some first")

    @ui.get("/graph/{memory_id}", response_class=HTMLResponse)
    @html_errors
    def graph_page(request: Request, user: Caller, memory_id: str,
                   depth: Annotated[int, Query(ge=0, le=4)] = 2) -> Response:
        item = memory.get(_mid(memory_id), user_id=user.id)
        return page("graph.html", request, user, item=item, depth=depth)

    @ui.get("/api/graph/{memory_id}")
    def graph_json(user: Caller, memory_id: str, depth: Annotated[int, Query(ge=0, le=4)] = 2) -> dict[str, Any]:
        nodes, edges = memory.neighbourhood(_mid(memory_id), user_id=user.id, depth=depth)
        out_nodes = [_node(m) for m in nodes]
        out_edges = [{"source": e.src, "target": e.dst, "rel": e.rel.value} for e in edges]
        # The entity graph: each memory -MENTIONS-> an entity node (one per cube and name).
        cube_of = {m.id: m.cube_id for m in nodes}
        seen: set[str] = set()
        for mid, names in memory.mentions(list(cube_of), user_id=user.id).items():
            for name in names:
                entity = f"entity:{cube_of[mid]}:{name}"
                if entity not in seen:
                    seen.add(entity)
                    out_nodes.append({"id": entity, "label": name, "text": f"entity “{name}”", "key": name,
                                      "type": "Entity", "status": "active", "cube": cube_of[mid],
                                      "source": "entity graph", "created": ""})
                out_edges.append({"source": mid, "target": entity, "rel": "MENTIONS"})
        return {"center": memory_id, "nodes": out_nodes, "edges": out_edges}

    @ui.get("/api/memories/{memory_id}")
    def memory_json(user: Caller, memory_id: str) -> dict[str, Any]:
        return memory.get(_mid(memory_id), user_id=user.id).model_dump(mode="json")

    # -- search playground ---------------------------------------------------------------------------------

    @ui.get("/search", response_class=HTMLResponse)
    @html_errors
    def search_page(
        request: Request, user: Caller, q: Annotated[str, Query(max_length=32_000)] = "", cube: str = "",
        top_k: Annotated[int | None, Query(ge=1, le=200)] = None,
        threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
        min_keep: Annotated[int | None, Query(ge=0, le=200)] = None,
    ) -> Response:
        # Defaults are the server's own recall settings, so a first run shows what an agent gets.
        settings = memory.settings
        top_k = settings.top_k if top_k is None else top_k
        threshold = settings.threshold if threshold is None else threshold
        min_keep = settings.min_keep if min_keep is None else min_keep
        form = {"q": q, "cube": cube, "top_k": top_k, "threshold": threshold, "min_keep": min_keep}
        audit = None
        if q.strip():
            audit = memory.explain_search(q, user_id=user.id, cube_ids=[cube] if cube else None, top_k=top_k,
                                          threshold=threshold, min_keep=min_keep)
        return page("search.html", request, user, form=form, audit=audit, **(_audit_rows(audit) if audit else {}))

    @ui.get("/api/search")
    def search_json(
        user: Caller, q: Annotated[str, Query(min_length=1, max_length=32_000)], cube: str = "",
        top_k: Annotated[int | None, Query(ge=1, le=200)] = None,
        threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
        min_keep: Annotated[int | None, Query(ge=0, le=200)] = None,
    ) -> SearchAudit:
        settings = memory.settings
        return memory.explain_search(q, user_id=user.id, cube_ids=[cube] if cube else None,
                                     top_k=settings.top_k if top_k is None else top_k,
                                     threshold=settings.threshold if threshold is None else threshold,
                                     min_keep=min_keep)

    # -- documents and jobs --------------------------------------------------------------------------------

    @ui.get("/documents", response_class=HTMLResponse)
    @html_errors
    def documents(request: Request, user: Caller, cube: str = "", msg: str = "") -> Response:
        cube_id = cube or None
        docs = memory.documents(user_id=user.id, cube_id=cube_id)
        return page("documents.html", request, user, docs=docs, cube=cube, msg=msg[:200])

    @ui.post("/documents/archive", dependencies=[Posted])
    @html_errors
    def archive_document(request: Request, user: Caller, doc_key: Annotated[str, Form(max_length=4096)],
                         cube: Annotated[str, Form()] = "") -> Response:
        n = memory.delete_document(doc_key, user_id=user.id, cube_id=cube or None)
        return RedirectResponse(f"/ui/documents?cube={quote(cube)}&msg={quote(f'archived {n} memories')}",
                                status_code=303)

    @ui.get("/jobs", response_class=HTMLResponse)
    @html_errors
    def jobs(request: Request, user: Caller, status: str = "", msg: str = "") -> Response:
        listed = memory.jobs(user_id=user.id, status=status or None, limit=200)
        counts = {s.value: 0 for s in JobStatus}
        for job in memory.jobs(user_id=user.id, limit=5_000):
            counts[job.status.value] += 1
        return page("jobs.html", request, user, jobs=listed, counts=counts, status=status, msg=msg[:200])

    @ui.post("/jobs/{job_id}/retry", dependencies=[Posted])
    @html_errors
    def retry_job(request: Request, user: Caller, job_id: str) -> Response:
        job = memory.retry_job(job_id, user_id=user.id)
        return RedirectResponse(f"/ui/jobs?msg={quote(f'job {job.id} is {job.status.value} again')}",
                                status_code=303)

    @ui.get("/api/jobs")
    def jobs_json(user: Caller, status: str = "") -> list[dict[str, Any]]:
        return [j.model_dump(mode="json", exclude={"payload"}) for j in
                memory.jobs(user_id=user.id, status=status or None, limit=200)]

    # -- cubes and sharing ---------------------------------------------------------------------------------

    @ui.get("/cubes", response_class=HTMLResponse)
    @html_errors
    def cubes(request: Request, user: Caller, msg: str = "") -> Response:
        return page("cubes.html", request, user, shares=memory.shares(user_id=user.id),
                    invitations=memory.invitations(user_id=user.id), msg=msg[:200])

    @ui.post("/cubes/{cube_id}/share", dependencies=[Posted])
    @html_errors
    def share(request: Request, user: Caller, cube_id: str, with_user: Annotated[str, Form(max_length=128)],
              access: Annotated[str, Form(max_length=16)] = "read") -> Response:
        memory.share(cube_id, user_id=user.id, with_user=with_user.strip(), access=access)
        return _back("/ui/cubes", f"invited {with_user.strip()} to {cube_id} ({access})")

    @ui.post("/cubes/{cube_id}/unshare", dependencies=[Posted])
    @html_errors
    def unshare(request: Request, user: Caller, cube_id: str,
                with_user: Annotated[str, Form(max_length=128)]) -> Response:
        memory.unshare(cube_id, user_id=user.id, with_user=with_user)
        return _back("/ui/cubes", f"stopped sharing {cube_id} with {with_user}")

    @ui.post("/cubes/{cube_id}/accept", dependencies=[Posted])
    @html_errors
    def accept(request: Request, user: Caller, cube_id: str) -> Response:
        memory.accept_share(cube_id, user_id=user.id)
        return _back("/ui/cubes", f"accepted {cube_id}")

    @ui.post("/cubes/{cube_id}/leave", dependencies=[Posted])
    @html_errors
    def leave(request: Request, user: Caller, cube_id: str) -> Response:
        memory.leave_cube(cube_id, user_id=user.id)
        return _back("/ui/cubes", f"left {cube_id}")

    return ui


# -- helpers -------------------------------------------------------------------------------------------------


def _mid(memory_id: str) -> str:
    if not memory_id or len(memory_id) > 128:
        raise NotFoundError("memory not found")
    return memory_id


def _back(path: str, message: str) -> Response:
    """Redirect after a form post (303, so a reload does not post again), with a message to show."""
    return RedirectResponse(f"{path}?msg={quote(message)}", status_code=303)


def _others(memory: Memory, memory_id: str, edges: list[Edge], user_id: str) -> dict[str, MemoryItem]:
    """The memory at the other end of each edge (all readable: `Memory.edges` only returns those)."""
    out: dict[str, MemoryItem] = {}
    for edge in edges[:200]:
        other = edge.dst if edge.src == memory_id else edge.src
        if other not in out:
            try:
                out[other] = memory.get(other, user_id=user_id)
            except NotFoundError:
                continue
    return out


def _node(item: MemoryItem) -> dict[str, Any]:
    return {"id": item.id, "label": _snippet(item.text.replace("\n", " "), 40), "text": _snippet(item.text, 400),
            "key": item.key, "type": item.memory_type.value, "status": item.status.value, "cube": item.cube_id,
            "source": item.source, "created": _when(item.created_at)}


def _audit_rows(audit: SearchAudit) -> dict[str, Any]:
    """One row per candidate: its per-signal scores and ranks, fused score, and kept (final rank) or dropped."""
    fused: dict[str, SearchHit] = {h.id: h for h in audit.memories}
    dropped = {d["id"]: d for d in audit.dropped}
    final_rank = {h.id: i + 1 for i, h in enumerate(audit.memories)}
    signals = sorted({s for h in audit.candidates for s in (*h.scores, *h.ranks)} - {"rrf", "relative"})
    rows = []
    for hit in audit.candidates:
        kept = fused.get(hit.id)
        drop = dropped.get(hit.id)
        rows.append({
            "hit": hit, "kept": kept is not None, "rank": final_rank.get(hit.id),
            "fused": kept.score if kept else (drop or {}).get("score"),
            "relative": kept.scores.get("relative") if kept else None,
            "reason": (drop or {}).get("reason", ""),
        })
    rows.sort(key=lambda r: (not r["kept"], r["rank"] or 0, -(r["fused"] or 0.0)))
    return {"rows": rows, "signals": signals, "kept_count": len(fused), "dropped_count": len(dropped)}
