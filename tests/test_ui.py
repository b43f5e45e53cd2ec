"""The /ui memory inspector end to end: a real server on 127.0.0.1, Debian's chromium driven by Playwright.

Runs on the embedded default and on a real Neo4j (the server fixture is parametrised on the tree backend).
Screenshots of the main pages go to a temp dir, or to `HIPPOGRAPH_UI_SCREENSHOTS=<dir>` (docs/ uses them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx
import pytest

from tests.test_http import ADMIN, free_port, start_server, stop, wait_http

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
expect = playwright_api.expect
#: Generous waits: CI runs the suite on two busy cores (a search or a page can take seconds there).
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
#: Chromium flags for a closed network and a root user (see the machine notes): no sandbox, no background calls.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@dataclass
class UIServer:
    url: str
    proc: Popen[bytes]
    keys: dict[str, str]
    data_dir: Path
    backend: str
    neo4j: Any = None

    def tree_store(self) -> Any:
        """The server's tree store, opened from the test (to write what the off-line worker would)."""
        if self.backend == "neo4j":
            from hippograph.stores.tree.neo4j import Neo4jTreeStore

            return Neo4jTreeStore(self.neo4j.uri, auth=self.neo4j.auth, dimension=64)
        from hippograph.stores.tree.embedded import EmbeddedTreeStore

        return EmbeddedTreeStore(self.data_dir / "tree.sqlite", dimension=64)

    def api(self, user: str) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.keys[user]}"}, timeout=60)


@pytest.fixture(scope="module", params=["embedded", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def ui_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UIServer]:
    tmp = tmp_path_factory.mktemp(f"ui-{request.param}")
    env: dict[str, str] = {}
    neo4j = None
    if request.param == "neo4j":
        from tests.neo4j_fixture import wipe_database

        neo4j = request.getfixturevalue("neo4j_server")
        wipe_database(neo4j.uri, neo4j.auth)
        env = {"HIPPOGRAPH_TREE_BACKEND": "neo4j", "HIPPOGRAPH_NEO4J_URI": neo4j.uri,
               "HIPPOGRAPH_NEO4J_USER": neo4j.auth[0], "HIPPOGRAPH_NEO4J_PASSWORD": neo4j.auth[1]}
    port = free_port()
    proc = start_server(tmp / "data", port, tmp / "server.log", **env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        keys: dict[str, str] = {}
        with httpx.Client(base_url=url, headers={"X-API-Key": ADMIN}, timeout=30) as admin:
            for user in ("alice", "bob"):
                r = admin.post("/v1/users", json={"user_id": user})
                assert r.status_code == 201, r.text
                keys[user] = r.json()["api_key"]
        yield UIServer(url, proc, keys, tmp / "data", request.param, neo4j)
    finally:
        stop(proc)
        print((tmp / "server.log").read_text()[-3000:])


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/deps.sh installs it)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = os.environ.get("HIPPOGRAPH_UI_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("ui-shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def login(browser: Any, server: UIServer, user: str, start: str = "/ui/memories") -> Any:
    """A fresh browser context logged in through the form; returns its page (on `start`)."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1360, "height": 860})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto(start)
    expect(page).to_have_url(f"{server.url}/ui/login?next={start.replace('?', '%3F').replace('=', '%3D')}")
    page.fill("#api_key", server.keys[user])
    page.click("#login")
    expect(page.locator("#whoami")).to_have_text(user)
    return page


def screenshot(page: Any, shots: Path, server: UIServer, name: str) -> None:
    if server.backend != "embedded":
        return
    out = shots / f"ui-{name}.png"
    page.screenshot(path=str(out), full_page=False)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def row_texts(page: Any, selector: str) -> list[str]:
    return [t.strip() for t in page.locator(selector).all_inner_texts()]


# -- auth ------------------------------------------------------------------------------------------------------


def test_nothing_readable_without_a_key(ui_server: UIServer, browser: Any, shots: Path) -> None:
    with httpx.Client(base_url=ui_server.url, timeout=30) as anon:
        r = anon.get("/ui/memories?cube=x")
        assert r.status_code == 303 and r.headers["location"] == "/ui/login?next=/ui/memories%3Fcube%3Dx"
        for path in ("/ui/api/graph/abc", "/ui/api/memories/abc", "/ui/api/search?q=x", "/ui/api/jobs"):
            r = anon.get(path)
            assert r.status_code == 401 and r.json()["reason"] == "missing or invalid API key", path
        assert anon.get("/ui/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 303
        assert anon.post("/ui/memories/abc/delete").status_code == 303
        assert anon.get("/ui/static/vendor/cytoscape.min.js").status_code == 200  # a library, no data
        # The REST header works too (scripts, curl), and forms refuse cross-origin posts.
        auth = {"Authorization": f"Bearer {ui_server.keys['alice']}"}
        assert anon.get("/ui/memories", headers=auth).status_code == 200
        r = anon.post("/ui/memories/abc/delete", headers={**auth, "Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-origin" in r.text

    context = browser.new_context(base_url=ui_server.url)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.goto("/ui/search")
    screenshot(page, shots, ui_server, "login")
    page.fill("#api_key", "not-a-key")
    page.click("#login")
    expect(page.locator("#login-error")).to_be_visible()
    page.fill("#api_key", ui_server.keys["alice"])
    page.click("#login")
    expect(page).to_have_url(f"{ui_server.url}/ui/search")  # back where the login started
    cookie = next(c for c in context.cookies() if c["name"] == "hippograph_key")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert "hippograph_key" not in page.evaluate("document.cookie")  # scripts cannot read the key
    page.click("text=Log out")
    expect(page).to_have_url(f"{ui_server.url}/ui/login")
    assert not [c for c in context.cookies() if c["name"] == "hippograph_key"]
    page.goto("/ui/memories")
    expect(page.locator("#api_key")).to_be_visible()
    context.close()


# -- memories, history, graph, search, edit, delete ------------------------------------------------------------


def _seed(server: UIServer) -> dict[str, Any]:
    """Alice's memories through the REST API: a two-turn session (NEXT), a document ingested twice (SUPERSEDES,
    PARENT topic tree), and a few plain notes for the search to rank and drop."""
    with server.api("alice") as api:
        turns = api.post("/v1/memories", json={"session_id": "trip", "messages": [
            {"role": "user", "content": "We are planning a trip to Kyoto in April"},
            {"role": "ai", "content": "Kyoto in April means cherry blossoms"}]})
        assert turns.status_code == 201, turns.text
        for text in ("My sister Ines plays the cello", "The boiler was serviced in March",
                     "Dentist appointment on Friday", "Favourite tea: genmaicha"):
            assert api.post("/v1/memories", json={"text": text}).status_code == 201
        doc = "# Home\n\nI live in Porto with my cat Miso.\n\n# Work\n\nI work as a nurse at the city hospital."
        first = api.post("/v1/documents", json={"texts": [{"name": "about-me", "text": doc}]}).json()["results"][0]
        second = api.post("/v1/documents", json={"texts": [{"name": "about-me", "text": doc.replace(
            "Porto", "Lisbon")}]}).json()["results"][0]
        assert second["superseded"] == 1, second
        new_id = next(i for i in second["memory_ids"] if i not in first["memory_ids"])
        old_id = next(i for i in first["memory_ids"] if i not in second["memory_ids"])
    # Entities come from deferred enrichment, whose worker is off in this server: link them as it would.
    store = server.tree_store()
    try:
        store.add_mentions({new_id: ["lisbon", "miso"], old_id: ["miso", "porto"]})
    finally:
        store.close()
    return {"turns": turns.json()["ids"], "new": new_id, "old": old_id}


def test_memories_history_graph_search_edit_delete(ui_server: UIServer, browser: Any, shots: Path) -> None:
    ids = _seed(ui_server)
    page = login(browser, ui_server, "alice")

    # Memory text is shown as text, never run as markup.
    with ui_server.api("alice") as api:
        markup = api.post("/v1/memories", json={"text": '<img src=x onerror="window.pwned=1"> tea'}).json()["ids"][0]
    page.goto(f"/ui/memories/{markup}")
    expect(page.locator("#memory-text")).to_have_text('<img src=x onerror="window.pwned=1"> tea')
    page.goto("/ui/memories")
    assert page.evaluate("window.pwned") is None and page.locator("main img").count() == 0
    with ui_server.api("alice") as api:
        assert api.delete(f"/v1/memories/{markup}", params={"hard": "true"}).status_code == 204
    page.reload()

    # The list shows what was added, newest first; filters narrow it (htmx swaps the list in place).
    rows = row_texts(page, "tr.memory-row")
    assert any("My sister Ines plays the cello" in r for r in rows)
    assert any("Kyoto in April means cherry blossoms" in r for r in rows)
    assert not any("Porto" in r for r in rows)  # superseded: not in the active list
    screenshot(page, shots, ui_server, "memories")
    page.select_option("#f-source", "document")
    expect(page).to_have_url(f"{ui_server.url}/ui/memories?cube=&type=&status=active&source=document&since=&until=")
    expect(page.locator("tr.memory-row").first).to_contain_text("document")
    sources = [r.split("\t")[4] for r in row_texts(page, "tr.memory-row")]
    assert sources and set(sources) == {"document"}
    page.select_option("#f-type", "TopicMemory")
    expect(page.locator("tr.memory-row td:nth-child(3)").first).to_have_text("TopicMemory")
    assert {r.split("\t")[2] for r in row_texts(page, "tr.memory-row")} == {"TopicMemory"}
    page.goto("/ui/memories?status=superseded")
    assert [r for r in row_texts(page, "tr.memory-row") if "Porto" in r]

    # A memory's page: text, source reference, its SUPERSEDES history and edges; follow the history back.
    page.goto(f"/ui/memories/{ids['new']}")
    expect(page.locator("#memory-text")).to_have_text("I live in Lisbon with my cat Miso.")
    expect(page.locator("#source-refs")).to_contain_text("document")
    expect(page.locator("#memory-entities")).to_have_text("lisbon, miso")
    versions = page.locator("#history li.version")
    expect(versions).to_have_count(2)
    expect(versions.nth(1)).to_contain_text("superseded")
    expect(versions.nth(1)).to_contain_text("I live in Porto with my cat Miso.")
    assert set(page.locator("tr.edge").evaluate_all("rows => rows.map(r => r.dataset.rel)")) >= {
        "SUPERSEDES", "PARENT", "NEXT"}
    screenshot(page, shots, ui_server, "memory")
    versions.nth(1).locator("a").click()
    expect(page).to_have_url(f"{ui_server.url}/ui/memories/{ids['old']}")
    expect(page.locator("#memory-status")).to_have_text("superseded")
    page.click("#superseded-by a")
    expect(page).to_have_url(f"{ui_server.url}/ui/memories/{ids['new']}")

    # The graph around it: drawn by cytoscape from the JSON call, with the topic tree and the old version.
    page.click("#to-graph")
    page.wait_for_function("window.hippographGraph && window.hippographGraph.nodes().length > 0")
    graph = page.evaluate("""() => ({
        nodes: hippographGraph.nodes().map(n => n.id()),
        rels: hippographGraph.edges().map(e => e.data('rel'))})""")
    assert ids["new"] in graph["nodes"] and ids["old"] in graph["nodes"]
    assert {"SUPERSEDES", "PARENT", "MENTIONS"} <= set(graph["rels"])
    entities = {n for n in graph["nodes"] if n.startswith("entity:")}
    assert entities == {"entity:alice.default:lisbon", "entity:alice.default:miso", "entity:alice.default:porto"}
    expect(page.locator("#details")).to_contain_text("I live in Lisbon")
    screenshot(page, shots, ui_server, "graph")
    page.goto(f"/ui/graph/{ids['turns'][0]}")
    page.wait_for_function("window.hippographGraph && window.hippographGraph.edges().length > 0")
    assert page.evaluate("hippographGraph.edges().map(e => e.data('rel'))") == ["NEXT"]

    # Search playground: every candidate with its signals; a high threshold drops some, with the reason.
    page.goto("/ui/search")
    page.fill("#q", "where do I live with my cat Miso")
    page.fill("#threshold", "0.9")
    page.fill("#min_keep", "1")
    page.click("#run")
    expect(page.locator("#summary")).to_contain_text("dropped by the threshold")
    kept = page.locator("tr.cand.kept").evaluate_all("rows => rows.map(r => r.dataset.id)")
    dropped = page.locator("tr.cand.dropped").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert kept and dropped and kept[0] == ids["new"]
    expect(page.locator("tr.cand.dropped .reason").first).to_contain_text("< floor 0.900")
    headers = row_texts(page, "#candidates thead th")
    assert any(h.startswith("vector") for h in headers) and any(h.startswith("bm25") for h in headers)
    expect(page.locator("#timings")).to_contain_text("threshold")
    assert "q=where" in page.url  # the run is a link (htmx pushed the URL)
    screenshot(page, shots, ui_server, "search")
    audit = page.request.get("/ui/api/search", params={"q": "where do I live with my cat Miso",
                                                       "threshold": "0.9", "min_keep": "1"}).json()
    assert [h["item"]["id"] for h in audit["memories"]] == kept
    assert {d["id"] for d in audit["dropped"]} == set(dropped)
    assert all(d["reason"].startswith(("relative score", "beyond top_k")) for d in audit["dropped"])

    # Edit in place (the old text is kept), then soft delete, then hard delete.
    cello = _find_id(ui_server, "My sister Ines plays the cello")
    page.goto(f"/ui/memories/{cello}")
    page.fill("#edit-text", "My sister Ines plays the viola")
    page.click("#save")
    expect(page.locator("#flash")).to_have_text("saved")
    expect(page.locator("#memory-text")).to_have_text("My sister Ines plays the viola")
    expect(page.locator("main")).to_contain_text("My sister Ines plays the cello")  # edited-in-place history
    page.click("#delete")
    expect(page.locator("#memory-status")).to_have_text("deleted")
    page.goto("/ui/memories")
    assert not [r for r in row_texts(page, "tr.memory-row") if "Ines" in r]
    page.goto("/ui/memories?status=deleted")
    assert [r for r in row_texts(page, "tr.memory-row") if "Ines plays the viola" in r]
    boiler = _find_id(ui_server, "The boiler was serviced in March")
    page.goto(f"/ui/memories/{boiler}")
    page.check("#hard")
    page.click("#delete")
    expect(page.locator("#flash")).to_contain_text(f"deleted for good: {boiler}")
    with ui_server.api("alice") as api:
        edges = api.get(f"/v1/memories/{ids['new']}/edges").json()
        assert (ids["new"], "SUPERSEDES", ids["old"]) in {(e["src"], e["rel"], e["dst"]) for e in edges}
        assert api.get(f"/v1/memories/{boiler}").status_code == 404
        assert api.get(f"/v1/memories/{cello}").json()["status"] == "deleted"
    response = page.goto(f"/ui/memories/{boiler}")
    assert response is not None and response.status == 404
    page.context.close()


def _find_id(server: UIServer, text: str) -> str:
    with server.api("alice") as api:
        items = api.get("/v1/memories", params={"limit": 500}).json()["items"]
    return next(m["id"] for m in items if m["text"] == text)


# -- documents and jobs ----------------------------------------------------------------------------------------


def test_documents_and_jobs_with_retry(ui_server: UIServer, browser: Any, shots: Path) -> None:
    from hippograph.stores.outbox import SqliteOutbox

    with ui_server.api("alice") as api:
        r = api.post("/v1/documents", json={"texts": [{"name": "garden", "text": "# Garden\n\nTomatoes by the wall."}]})
        assert r.status_code == 200, r.text
        garden = r.json()["results"][0]["memory_ids"][0]
    # A job that failed for good (as a worker records it) for alice's cube, and one for bob's, in the server's own
    # outbox file: the in-process worker is off in this server, and a real failure would hang on enrichment
    # internals. (Claiming first would lease whichever job is oldest, not necessarily this one.)
    outbox = SqliteOutbox(ui_server.data_dir / "outbox.sqlite")
    try:
        failed = {}
        for user in ("alice", "bob"):
            job_id = outbox.enqueue("enrich_turn", {"user_id": user, "cube_id": f"{user}.default",
                                                    "memory_ids": [garden] if user == "alice" else []})
            outbox.fail(job_id, f"RuntimeError: model timed out for {user}", retry=False)
            failed[user] = job_id
    finally:
        outbox.close()

    page = login(browser, ui_server, "alice", start="/ui/documents")
    expect(page.locator("#documents")).to_contain_text("garden")
    screenshot(page, shots, ui_server, "documents")
    page.locator("tr.doc", has_text="garden").locator("a.doc-memories").click()  # the document's memories
    expect(page.locator("#doc-filter")).to_be_visible()
    texts = row_texts(page, "tr.memory-row")
    assert any("Tomatoes by the wall." in t for t in texts)
    assert all("garden" in t or "Garden" in t or "Tomatoes" in t for t in texts), texts

    page.goto("/ui/jobs?status=failed")
    row = page.locator(f"tr.job[data-id='{failed['alice']}']")
    expect(row.locator(".job-status")).to_have_text("failed")
    expect(row.locator(".job-error")).to_have_text("RuntimeError: model timed out for alice")
    expect(row.locator(f".job-memories a[href='/ui/memories/{garden}']")).to_have_count(1)
    expect(page.locator(f"tr.job[data-id='{failed['bob']}']")).to_have_count(0)  # bob's job is not alice's
    screenshot(page, shots, ui_server, "jobs")
    row.locator("button.retry").click()
    expect(page.locator("#flash")).to_contain_text(f"job {failed['alice']} is pending again")
    jobs = {j["id"]: j for j in page.request.get("/ui/api/jobs").json()}
    assert jobs[failed["alice"]]["status"] == "pending" and jobs[failed["alice"]]["attempts"] == 0
    assert failed["bob"] not in jobs
    r = page.request.post(f"/ui/jobs/{failed['bob']}/retry")  # someone else's job: not found, not retried
    assert r.status == 404
    with ui_server.api("alice") as api:  # the same rules over REST
        assert api.post(f"/v1/jobs/{failed['bob']}/retry").status_code == 404
        r = api.post(f"/v1/jobs/{failed['alice']}/retry")
        assert r.status_code == 422 and "only failed jobs" in r.json()["reason"]
    page.context.close()


# -- isolation and sharing -------------------------------------------------------------------------------------


def test_second_user_cannot_see_the_first_users_cube(ui_server: UIServer, browser: Any) -> None:
    with ui_server.api("alice") as api:
        secret = api.post("/v1/memories", json={"text": "Alice's locker code is 4411"}).json()["ids"][0]
    page = login(browser, ui_server, "bob")
    assert not [r for r in row_texts(page, "tr.memory-row") if "4411" in r]
    for path in (f"/ui/memories/{secret}", f"/ui/graph/{secret}", "/ui/memories?cube=alice.default",
                 "/ui/documents?cube=alice.default"):
        response = page.goto(path)
        assert response is not None and response.status in (403, 404), path
        expect(page.locator("#error-reason")).to_be_visible()
        assert "4411" not in page.content()
    for path in (f"/ui/api/graph/{secret}", f"/ui/api/memories/{secret}"):
        assert page.request.get(path).status == 404, path
    with ui_server.api("bob") as api:
        assert api.get(f"/v1/memories/{secret}/edges").status_code == 404
    audit = page.request.get("/ui/api/search", params={"q": "locker code 4411", "threshold": "0"}).json()
    assert secret not in {h["item"]["id"] for h in audit["candidates"]}
    assert page.request.get("/ui/api/search", params={"q": "locker", "cube": "alice.default"}).status == 403
    assert page.request.post(f"/ui/memories/{secret}/delete", form={"hard": "true"}).status == 404
    assert page.request.post(f"/ui/memories/{secret}/edit", form={"text": "mine now"}).status == 404
    with ui_server.api("alice") as api:
        assert api.get(f"/v1/memories/{secret}").json()["text"] == "Alice's locker code is 4411"

    # Alice invites bob from the cubes page; bob reads the cube only once he accepts (read-only there).
    alice = login(browser, ui_server, "alice", start="/ui/cubes")
    alice.locator("tr.cube[data-id='alice.default'] input.share-user").fill("bob")
    alice.locator("tr.cube[data-id='alice.default'] button.share").click()
    expect(alice.locator("#flash")).to_contain_text("invited bob to alice.default (read)")
    expect(alice.locator("tr.share-row[data-user='bob'] .share-status")).to_have_text("pending")
    assert page.request.get(f"/ui/api/memories/{secret}").status == 404  # not before he accepts
    page.goto("/ui/cubes")
    page.locator("tr.invitation[data-cube='alice.default'] button.accept").click()
    expect(page.locator("#flash")).to_contain_text("accepted alice.default")
    page.goto(f"/ui/memories/{secret}")
    expect(page.locator("#memory-text")).to_have_text("Alice's locker code is 4411")
    expect(page.locator("#edit-text")).to_have_count(0)  # read access: no edit or delete forms
    assert page.request.post(f"/ui/memories/{secret}/delete").status == 403
    alice.context.close()
    page.context.close()
