"""A server that outgrows SQLite: Postgres checkpointer + Postgres registry, two server processes sharing them.

PostgreSQL is Debian's `postgresql` package (`.ci/deps.sh` installs it); the test runs `initdb` into a temp dir
and starts `postgres` on a free loopback port as the `postgres` user (PostgreSQL refuses to run as root), then
stops it by PID.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_http import ADMIN, free_port, start_server, stop, wait_http


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    initdb, server = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not server:
        pytest.skip("PostgreSQL is not installed (apt-get install -y postgresql)")
    run_as: dict[str, int] = {}
    base = Path(tempfile.mkdtemp(prefix="hippograph-pg-"))
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid}
    data = base / "data"
    subprocess.run([initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, timeout=120, **run_as)  # type: ignore[call-overload]
    port = free_port()
    log = (base / "postgres.log").open("wb")
    proc = subprocess.Popen(
        [server, "-D", str(data), "-p", str(port), "-k", str(base), "-c", "listen_addresses=127.0.0.1",
         "-c", "fsync=off", "-c", "max_connections=50"],
        stdout=log, stderr=subprocess.STDOUT, **run_as,  # type: ignore[call-overload]
    )
    import psycopg

    url = f"postgresql://postgres@127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with psycopg.connect(url + "/postgres", autocommit=True, connect_timeout=2) as conn:
                    conn.execute("CREATE DATABASE hippograph")
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        yield url + "/hippograph"
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def test_two_servers_share_postgres_checkpoints_and_registry(postgres: str, tmp_path: Path) -> None:
    env = {"HIPPOGRAPH_CHECKPOINTER_URL": postgres,
           # SQLAlchemy names the driver in the URL; psycopg 3 is the one installed
           "HIPPOGRAPH_REGISTRY_URL": postgres.replace("postgresql://", "postgresql+psycopg://")}
    data = tmp_path / "data"
    procs = []
    urls = []
    try:
        for n in range(2):  # one after the other: the first creates the Postgres tables
            port = free_port()
            # each process its own Milvus Lite file (Milvus Lite is single-process; use a Milvus server to share)
            procs.append(start_server(data, port, tmp_path / f"server{n}.log",
                                      HIPPOGRAPH_MILVUS_URI=str(tmp_path / f"prefs{n}.db"), **env))
            urls.append(f"http://127.0.0.1:{port}")
            wait_http(urls[-1] + "/healthz", procs[-1])

        one, two = (httpx.Client(base_url=u, timeout=60) for u in urls)
        r = one.post("/v1/users", json={"user_id": "alice"}, headers={"X-API-Key": ADMIN})
        assert r.status_code == 201, r.text
        key = r.json()["api_key"]
        auth = {"Authorization": f"Bearer {key}"}
        assert two.get("/v1/me", headers=auth).json()["user"]["id"] == "alice"  # registry shared

        one.post("/v1/memories", json={"text": "Alice's bike is a green Brompton"}, headers=auth)
        turn = {"input": {"messages": [{"type": "human", "content": "What bike do I have?"}]},
                "config": {"configurable": {"thread_id": "bikes"}}}
        r = one.post("/chat/invoke", json=turn, headers=auth)
        assert r.status_code == 200, r.text
        assert "Brompton" in r.json()["output"]["answer"]
        turn["input"]["messages"][0]["content"] = "What colour is it?"
        r = two.post("/chat/invoke", json=turn, headers=auth)  # same thread, the other process
        assert r.status_code == 200, r.text

        # both turns are in one Postgres checkpoint thread, namespaced by user
        from langgraph.checkpoint.postgres import PostgresSaver

        with PostgresSaver.from_conn_string(postgres) as saver:
            state = saver.get_tuple({"configurable": {"thread_id": "alice/bikes", "checkpoint_ns": ""}})
            assert state is not None
            messages = state.checkpoint["channel_values"]["messages"]
            assert [m.type for m in messages] == ["human", "ai", "human", "ai"]
            assert saver.get_tuple({"configurable": {"thread_id": "bikes", "checkpoint_ns": ""}}) is None

        import psycopg

        with psycopg.connect(postgres) as conn:
            assert conn.execute("SELECT count(*) FROM users WHERE id = 'alice'").fetchone() == (1,)
            assert conn.execute("SELECT count(*) FROM api_keys").fetchone()[0] >= 1  # type: ignore[index]
            rows = conn.execute("SELECT key_hash, key_prefix FROM api_keys").fetchall()
            assert all(key not in (h, p) for h, p in rows)  # hashed at rest

        # a key revoked through one process is refused by the other
        assert two.post("/v1/keys/revoke", json={"api_key": key}, headers=auth).status_code == 204
        assert one.get("/v1/me", headers=auth).status_code == 401
        one.close()
        two.close()
    finally:
        for proc in procs:
            stop(proc)
