"""Erasure in SQLite files: `secure_delete` alone can leave a deleted row's text in a live page; `scrub` cannot.

The workload mimics the chat checkpointer: two users' rows interleaved in one table, rows replaced in place and
some deleted, then one user's rows deleted. B-tree balances move cells between pages as it runs, and a rebuilt
page keeps old images of moved cells in its unallocated space, which `secure_delete` never zeroes.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

from hippograph.stores.scrub import scrub

ERASED, KEPT = b"ERASEDUSERTEXT", b"KEPTUSERTEXT"


def fill_and_delete(path: Path, seed: int) -> sqlite3.Connection:
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA secure_delete=ON")
    conn.execute("CREATE TABLE t (owner TEXT, id TEXT, body BLOB, PRIMARY KEY (owner, id))")
    ids: dict[bytes, list[str]] = {ERASED: [], KEPT: []}
    for _ in range(400):
        owner = rng.choice([ERASED, KEPT])
        if ids[owner] and rng.random() < 0.3:
            row_id = rng.choice(ids[owner])  # replaced in place, as a thread's latest checkpoint is
        else:
            row_id = f"{rng.getrandbits(64):016x}"
            ids[owner].append(row_id)
        conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?, ?)", (owner.decode(), row_id,
                                                                   owner * rng.randint(5, 300)))
        if rng.random() < 0.05 and ids[KEPT]:
            conn.execute("DELETE FROM t WHERE owner = ? AND id = ?", (KEPT.decode(), ids[KEPT].pop()))
    conn.execute("DELETE FROM t WHERE owner = ?", (ERASED.decode(),))
    return conn


def test_scrub_leaves_no_byte_of_deleted_rows_where_secure_delete_did(tmp_path: Path) -> None:
    leaked_before_scrub = 0
    for seed in range(40):
        path = tmp_path / f"{seed}.sqlite"
        conn = fill_and_delete(path, seed)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        leaked_before_scrub += ERASED in path.read_bytes()

        assert scrub(conn) is True

        data = path.read_bytes()
        assert ERASED not in data, f"seed {seed}: erased text survived the scrub"
        assert KEPT in data
        kept = conn.execute("SELECT count(*) FROM t WHERE owner = ?", (KEPT.decode(),)).fetchone()[0]
        assert kept > 0 and conn.execute("SELECT count(*) FROM t WHERE owner != ?", (KEPT.decode(),)).fetchone()[0] == 0
        conn.close()
    # Not asserted (it depends on SQLite's page layout, which other builds may change): how often secure_delete
    # alone left erased text behind. With Debian's SQLite 3.40 it does for a few of these seeds.
    print(f"secure_delete alone left erased text in {leaked_before_scrub} of 40 files")


def test_scrub_commits_an_open_transaction_first_and_keeps_its_writes(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "t.sqlite")  # Python's default: DML opens a transaction implicitly
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("INSERT INTO t VALUES ('kept')")
    assert conn.in_transaction

    scrub(conn)

    other = sqlite3.connect(tmp_path / "t.sqlite")
    assert other.execute("SELECT x FROM t").fetchall() == [("kept",)]
