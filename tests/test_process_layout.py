"""Process layouts on the embedded default: a Milvus Lite file belongs to one process.

`hippograph serve` (with its in-process worker) owns `preferences.db`; a separate `hippograph worker` or a store
opened by another process is refused up front with a `ProcessLayoutError` that names the owner and says what to
do (HIPPOGRAPH_MILVUS_URI), instead of failing each job on the Milvus Lite lock. A CLI search needs no
preference memory (it returns memories only), so it works beside the owner. The owner keeps serving; once it is
gone (even `kill -9`), the next process takes the file over.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from hippograph.api.processes import CRASH_LOOP_S, WORKER_NICENESS
from hippograph.settings import Settings
from hippograph.stores.errors import ProcessLayoutError
from hippograph.stores.outbox import JobStatus
from hippograph.stores.preferences.base import Preference, PreferenceKind
from hippograph.stores.preferences.milvus import MilvusPreferenceStore
from hippograph.stores.services import Services
from hippograph.worker import Worker
from tests.conftest import REPO
from tests.test_http import ADMIN, free_port, start_server, stop, wait_http

HIPPOGRAPH = str(Path(sys.executable).parent / "hippograph")


@dataclass
class Owner:
    data: Path
    url: str
    proc: subprocess.Popen[bytes]


def _env(data: Path) -> dict[str, str]:
    return {**os.environ, "HIPPOGRAPH_DATA_DIR": str(data), "HIPPOGRAPH_EMBEDDER": "hashing:64",
            "HIPPOGRAPH_CHAT_MODEL": "", "HIPPOGRAPH_WORKER_IN_PROCESS": "false"}


@pytest.fixture(scope="module")
def owner(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Owner]:
    """`hippograph serve` on the embedded default, its enrichment worker in-process (which claims the file)."""
    tmp = tmp_path_factory.mktemp("layout")
    port = free_port()
    proc = start_server(tmp / "data", port, tmp / "server.log", HIPPOGRAPH_WORKER_IN_PROCESS="true")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/healthz", proc)
        claim = tmp / "data" / "preferences.db.owner"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (claim.exists() and claim.read_text()):
            time.sleep(0.1)
        assert json.loads(claim.read_text())["pid"] == proc.pid
        yield Owner(tmp / "data", url, proc)
    finally:
        stop(proc)
        print((tmp / "server.log").read_text()[-3000:])


def test_a_separate_worker_refuses_to_start_and_says_why(owner: Owner) -> None:
    done = subprocess.run([sys.executable, "-m", "hippograph", "worker", "--once"], cwd=REPO, env=_env(owner.data),
                          capture_output=True, text=True, timeout=180)
    said = " ".join((done.stdout + done.stderr).split())  # the CLI's console wraps long lines
    assert done.returncode == 2, said[-2000:]
    assert f"owned by process {owner.proc.pid}" in said
    assert "HIPPOGRAPH_MILVUS_URI" in said and "Traceback" not in said


def test_another_process_cannot_open_the_file(owner: Owner, hashing) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProcessLayoutError, match=f"owned by process {owner.proc.pid}"):
        MilvusPreferenceStore(owner.data / "preferences.db", embeddings=hashing)


def test_a_worker_thread_without_the_file_claims_no_job(owner: Owner, hashing, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Its own outbox, but the owner's preference file: every job would fail, so none is claimed.
    settings = Settings(data_dir=tmp_path, milvus_uri=str(owner.data / "preferences.db"), worker_in_process=False,
                        embedder="hashing:64")
    services = Services.from_settings(settings, embeddings=hashing)
    try:
        job_id = services.outbox.enqueue("enrich_turn", {"user_id": "u", "cube_id": "u.default", "messages": []})
        worker = Worker(services)
        assert worker.run_once() is False
        job = services.outbox.get(job_id)
        assert job is not None and job.status == JobStatus.PENDING and job.attempts == 0
    finally:
        services.close()


def test_concurrent_cli_searches_work_while_the_owner_serves(owner: Owner) -> None:
    admin = {"X-API-Key": ADMIN}
    with httpx.Client(base_url=owner.url, timeout=60) as http:
        r = http.post("/v1/users", json={"user_id": "lena"}, headers=admin)
        assert r.status_code == 201, r.text
        auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
        assert http.post("/v1/memories", json={"text": "Lena keeps bees on the roof"}, headers=auth).status_code \
            in (200, 201)
        searches = [subprocess.Popen([HIPPOGRAPH, "search", "bees", "--user", "lena"], cwd=REPO,
                                     env=_env(owner.data), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True) for _ in range(3)]
        outputs = [p.communicate(timeout=180)[0] for p in searches]
        # The memories are in the shared SQLite tree; preference memory (the owner's Lite file) stays shut.
        assert [p.returncode for p in searches] == [0, 0, 0], outputs
        assert all("Lena keeps bees" in " ".join(out.split()) for out in outputs), outputs
        assert json.loads((owner.data / "preferences.db.owner").read_text())["pid"] == owner.proc.pid
        # The owner is unaffected.
        r = http.post("/v1/search", json={"query": "bees"}, headers=auth)
        assert r.status_code == 200, r.text
        assert any("bees" in hit["item"]["text"] for hit in r.json()), r.json()


def test_the_next_process_takes_over_after_the_owner_is_killed(owner: Owner, hashing) -> None:  # type: ignore[no-untyped-def]
    os.kill(owner.proc.pid, signal.SIGKILL)
    owner.proc.wait(30)
    store = MilvusPreferenceStore(owner.data / "preferences.db", embeddings=hashing)
    try:
        store.add([Preference(id="p1", user_id="lena", cube_id="lena.default", kind=PreferenceKind.EXPLICIT,
                              text="Lena prefers oat milk")])
        assert [p.text for p in store.list(user_id="lena")] == ["Lena prefers oat milk"]
    finally:
        store.close()
    # Released again on close: a worker process can own it now.
    done = subprocess.run([sys.executable, "-m", "hippograph", "worker", "--once"], cwd=REPO, env=_env(owner.data),
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]


# -- `hippograph serve --processes N`: the same data dir served by N API processes and a worker process ----------


def _children(pid: int) -> dict[int, str]:
    """Child pid -> command line (from /proc)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    found = {}
    for child in map(int, out):
        with contextlib.suppress(OSError):
            found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return found


def _gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{p}").exists() for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_serve_processes_shares_one_data_dir_and_stops_whole(tmp_path: Path, hashing) -> None:  # type: ignore[no-untyped-def]
    data, port = tmp_path / "data", free_port()
    env = {**_env(data), "HIPPOGRAPH_ADMIN_KEY": ADMIN}
    env.pop("HIPPOGRAPH_WORKER_IN_PROCESS")
    with (tmp_path / "serve.log").open("ab") as log:
        proc = subprocess.Popen([HIPPOGRAPH, "serve", "--processes", "2", "--port", str(port)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    url, started = f"http://127.0.0.1:{port}", time.monotonic()
    children: dict[int, str] = {}
    api: list[int] = []
    try:
        wait_http(url + "/healthz", proc)
        children = _children(proc.pid)
        kinds = sorted("milvus" if "milvus_lite server" in c else "worker" if "hippograph worker" in c
                       else "api" if "serve" in c and "--reuse-port" in c else "other" for c in children.values())
        assert kinds.count("api") == 2 and kinds.count("worker") == 1 and kinds.count("milvus") == 1, children
        (worker,) = [pid for pid, c in children.items() if "hippograph worker" in c]
        assert int(Path(f"/proc/{worker}/stat").read_text().rsplit(")", 1)[1].split()[16]) == WORKER_NICENESS
        # The supervisor owns the Lite file: a second layout on the same data dir is refused up front.
        refused = subprocess.run([sys.executable, "-m", "hippograph", "worker", "--once"], cwd=REPO, env=_env(data),
                                 capture_output=True, text=True, timeout=180)
        said = " ".join((refused.stdout + refused.stderr).split())
        assert refused.returncode == 2 and f"owned by process {proc.pid}" in said, said[-2000:]

        with httpx.Client(base_url=url, timeout=60) as http:
            r = http.post("/v1/users", json={"user_id": "mira"}, headers={"X-API-Key": ADMIN})
            assert r.status_code == 201, r.text
            auth = {"Authorization": f"Bearer {r.json()['api_key']}"}
            r = http.post("/v1/chat", json={"message": "I prefer aisle seats on long flights", "thread_id": "t"},
                          headers=auth)
            assert r.status_code == 200, r.text
            assert http.post("/v1/memories", json={"text": "Mira keeps bees on the roof"},
                             headers=auth).status_code == 201
            # The worker process enriches the turn; the preference it extracts lands in the shared Milvus Lite.
            deadline, prefs = time.monotonic() + 120, []
            while time.monotonic() < deadline and not prefs:
                prefs = http.get("/v1/preferences", headers=auth).json()
                time.sleep(0.3)
            assert [p["text"] for p in prefs] == ["I prefer aisle seats on long flights"]
        # Fresh connections land on either API process: every one of them reads what the other wrote.
        for _ in range(12):
            with httpx.Client(base_url=url, timeout=60) as http:
                hits = http.post("/v1/search", json={"query": "bees on the roof"}, headers=auth).json()
                assert "Mira keeps bees on the roof" in [h["item"]["text"] for h in hits]
                assert [p["text"] for p in http.get("/v1/preferences", headers=auth).json()] == \
                    ["I prefer aisle seats on long flights"]
        # An API process that dies is started again (past the crash-loop window), and the port keeps answering.
        time.sleep(max(0.0, started + CRASH_LOOP_S + 1 - time.monotonic()))
        api = [pid for pid, c in children.items() if "--reuse-port" in c]
        os.kill(api[0], signal.SIGKILL)
        deadline, now = time.monotonic() + 60, children
        while time.monotonic() < deadline and (sum("--reuse-port" in c for c in now.values()) < 2 or api[0] in now):
            time.sleep(0.3)
            now = _children(proc.pid)
        assert sum("--reuse-port" in c for c in now.values()) == 2 and api[0] not in now, now
        children = {**children, **now}
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.post("/v1/search", json={"query": "bees"}, headers=auth).status_code == 200
        # So is the Milvus Lite server, on the same port, and the API processes read preferences again.
        (milvus,) = [pid for pid, c in now.items() if "milvus_lite server" in c]
        os.kill(milvus, signal.SIGKILL)
        deadline, statuses = time.monotonic() + 90, []
        with httpx.Client(base_url=url, timeout=60) as http:
            while time.monotonic() < deadline:
                r = http.get("/v1/preferences", headers=auth)
                statuses.append(r.status_code)
                if r.status_code == 200 and milvus not in _children(proc.pid):
                    break
                time.sleep(0.5)
            assert [p["text"] for p in r.json()] == ["I prefer aisle seats on long flights"], statuses
            assert all(code in (200, 503) for code in statuses), statuses  # unavailable while it restarts
        children = {**children, **_children(proc.pid)}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        print((tmp_path / "serve.log").read_text()[-3000:])
    assert proc.returncode == 0
    assert _gone(list(children), 30), _children(proc.pid)
    # The same data dir opens again in one process (the Lite file, the claim released): nothing was elsewhere.
    store = MilvusPreferenceStore(data / "preferences.db", embeddings=hashing)
    try:
        assert [p.text for p in store.list(user_id="mira")] == ["I prefer aisle seats on long flights"]
    finally:
        store.close()
