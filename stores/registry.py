"""Users, cubes, sharing and API keys: who may read and write which cube.

A cube is a named memory space owned by one user. Its owner reads and writes it; a share is an invitation that
grants another user `read` or `write` once that user accepts it (nobody's recall is fed by a cube they did not
agree to). Deleted user and cube ids are tombstoned: they are never handed out again, so a new owner can never
inherit an old owner's data, threads or jobs. SQLite by default, any SQLAlchemy URL (Postgres for servers).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

from hippograph.stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from hippograph.stores.files import private_file
from hippograph.stores.models import MAX_USER_ID_CHARS, check_id

#: Suffix of every user's default cube id; no user may create a cube id ending in it.
DEFAULT_CUBE_SUFFIX = ".default"


class Access(StrEnum):
    READ = "read"
    WRITE = "write"


class User(BaseModel):
    id: str
    name: str = ""
    is_admin: bool = False
    created_at: float = 0.0


class Cube(BaseModel):
    id: str
    owner_id: str
    name: str = ""
    created_at: float = 0.0


class CubeAccess(BaseModel):
    cube: Cube
    access: Access
    """`write` for owned cubes and cubes shared read-write."""
    owned: bool = True
    """False for a cube another user shared with this one: its memories are untrusted content."""


class Scope(BaseModel):
    """What one chat or search turn may touch (`Registry.scope`)."""

    read: list[str]
    """Cube ids the turn reads."""
    write: str
    """The cube id its writes land in."""
    shared_owners: dict[str, str]
    """Owner of each read cube that another user shared (their memories are untrusted content)."""


class ShareStatus(StrEnum):
    PENDING = "pending"
    """Invited; the cube is not readable until the recipient accepts."""
    ACCEPTED = "accepted"


class Share(BaseModel):
    """A share of a cube with a user, as its owner or its recipient sees it."""

    cube_id: str
    owner_id: str
    user_id: str
    access: Access
    status: ShareStatus


_meta = sa.MetaData()
users = sa.Table(
    "users", _meta,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(256), nullable=False, default=""),
    sa.Column("is_admin", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)
cubes = sa.Table(
    "cubes", _meta,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("owner_id", sa.String(128), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("name", sa.String(256), nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)
shares = sa.Table(
    "shares", _meta,
    sa.Column("cube_id", sa.String(128), sa.ForeignKey("cubes.id"), primary_key=True),
    sa.Column("user_id", sa.String(128), sa.ForeignKey("users.id"), primary_key=True),
    sa.Column("access", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, default=ShareStatus.PENDING.value),
)
tombstones = sa.Table(
    "tombstones", _meta,
    sa.Column("kind", sa.String(8), primary_key=True),  # "user" or "cube"
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("deleted_at", sa.Float, nullable=False),
)
thread_cubes = sa.Table(
    # Which checkpoint threads touched which cubes: erasing a cube deletes every thread whose checkpoints may
    # hold its text (what was recalled from it, or written into it).
    "thread_cubes", _meta,
    sa.Column("thread_key", sa.String(512), primary_key=True),
    sa.Column("cube_id", sa.String(128), primary_key=True, index=True),
    sa.Column("user_id", sa.String(128), nullable=False, index=True),
)
api_keys = sa.Table(
    "api_keys", _meta,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("key_prefix", sa.String(16), nullable=False),
    sa.Column("user_id", sa.String(128), sa.ForeignKey("users.id"), nullable=False, index=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked", sa.Boolean, nullable=False, default=False),
)


def hash_key(key: str) -> str:
    # API keys are 256-bit random tokens, so one SHA-256 is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def default_cube_id(user_id: str) -> str:
    return f"{user_id}{DEFAULT_CUBE_SUFFIX}"


def check_user_id(user_id: str) -> str:
    """A valid user id whose default cube id is valid too."""
    check_id(user_id, "user id")
    if len(user_id) > MAX_USER_ID_CHARS:
        raise InvalidInputError(f"invalid user id: at most {MAX_USER_ID_CHARS} characters")
    return user_id


class Registry:
    """The access-control registry. Every cube lookup for a user goes through `readable`/`writable`."""

    def __init__(self, url: str, *, auto_create_users: bool = True) -> None:
        self.auto_create_users = auto_create_users
        # Plain Postgres URLs (as the checkpointer takes them) use psycopg 3, the driver we install.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        if url.startswith("sqlite:///"):

            private_file(url.removeprefix("sqlite:///"))
        self.engine = sa.create_engine(url, future=True)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                dbapi_conn.execute("PRAGMA busy_timeout=30000")
                dbapi_conn.execute("PRAGMA secure_delete=ON")  # erased rows leave no bytes in free pages
        _meta.create_all(self.engine)
        self._migrate()
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Registries made before share consent: their shares were granted without asking, keep them accepted."""
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("shares")}
        if "status" not in columns:
            with self.engine.begin() as conn:
                conn.execute(sa.text("ALTER TABLE shares ADD COLUMN status VARCHAR(16) NOT NULL DEFAULT 'accepted'"))

    def _tombstoned(self, conn: sa.Connection, kind: str, id_: str) -> bool:
        row = conn.execute(sa.select(tombstones.c.id).where((tombstones.c.kind == kind) & (tombstones.c.id == id_)))
        return row.first() is not None

    # -- users ---------------------------------------------------------------------------------------------

    def create_user(self, user_id: str, *, name: str = "", is_admin: bool = False, exist_ok: bool = True) -> User:
        """A new user with their default cube. Safe under races: concurrent creators all get the same user."""
        check_user_id(user_id)
        try:
            with self._lock, self.engine.begin() as conn:
                row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
                if row is not None:
                    if not exist_ok:
                        raise InvalidInputError(f"user {user_id!r} already exists")
                    return User(**row._mapping)
                if self._tombstoned(conn, "user", user_id):
                    raise InvalidInputError(f"user id {user_id!r} belonged to a deleted user and is never reused")
                ts = time.time()
                conn.execute(users.insert().values(id=user_id, name=name or user_id, is_admin=is_admin,
                                                   created_at=ts))
                conn.execute(cubes.insert().values(id=default_cube_id(user_id), owner_id=user_id, name="default",
                                                   created_at=ts))
        except sa.exc.IntegrityError:
            # Another process created the same user between our read and our insert: theirs is the user.
            if not exist_ok:
                raise InvalidInputError(f"user {user_id!r} already exists") from None
            return self.get_user(user_id)
        return User(id=user_id, name=name or user_id, is_admin=is_admin, created_at=ts)

    def _row(self, table: sa.Table, id_: str, what: str) -> dict[str, Any]:
        check_id(id_, f"{what} id")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(table).where(table.c.id == id_)).first()
        if row is None:
            raise NotFoundError(f"unknown {what} {id_!r}")
        return dict(row._mapping)

    def get_user(self, user_id: str) -> User:
        return User(**self._row(users, user_id, "user"))

    def ensure_user(self, user_id: str) -> User:
        """The user; created with a default cube on first use when `auto_create_users` is on."""
        try:
            return self.get_user(user_id)
        except NotFoundError:
            if not self.auto_create_users:
                raise
            return self.create_user(user_id)

    def list_users(self) -> list[User]:
        with self.engine.connect() as conn:
            return [User(**r._mapping) for r in conn.execute(sa.select(users).order_by(users.c.id))]

    def owned_cubes(self, user_id: str) -> list[str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(cubes.c.id).where(cubes.c.owner_id == user_id).order_by(cubes.c.id))
            return [r[0] for r in rows]

    def delete_user(self, user_id: str) -> None:
        """Remove the user, their cubes, shares, keys and thread records; tombstone every id for good.

        This forgets only the registry's rows: `Memory.erase` removes the data in every store first.
        """
        self.get_user(user_id)
        ts = time.time()
        with self._lock, self.engine.begin() as conn:
            owned = [r[0] for r in conn.execute(sa.select(cubes.c.id).where(cubes.c.owner_id == user_id))]
            conn.execute(shares.delete().where(shares.c.user_id == user_id))
            conn.execute(thread_cubes.delete().where(thread_cubes.c.user_id == user_id))
            if owned:
                conn.execute(shares.delete().where(shares.c.cube_id.in_(owned)))
                conn.execute(thread_cubes.delete().where(thread_cubes.c.cube_id.in_(owned)))
                conn.execute(cubes.delete().where(cubes.c.id.in_(owned)))
            conn.execute(api_keys.delete().where(api_keys.c.user_id == user_id))
            conn.execute(users.delete().where(users.c.id == user_id))
            for kind, id_ in [("user", user_id), *(("cube", c) for c in owned)]:
                if not self._tombstoned(conn, kind, id_):
                    conn.execute(tombstones.insert().values(kind=kind, id=id_, deleted_at=ts))

    # -- cubes ---------------------------------------------------------------------------------------------

    def create_cube(self, owner_id: str, cube_id: str, *, name: str = "") -> Cube:
        check_id(cube_id, "cube id")
        self.get_user(owner_id)
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(sa.select(cubes).where(cubes.c.id == cube_id)).first()
            if row is not None:
                if row.owner_id != owner_id:
                    raise AccessDeniedError(f"cube {cube_id!r} belongs to another user")
                return Cube(**row._mapping)
            if cube_id.endswith(DEFAULT_CUBE_SUFFIX):
                raise InvalidInputError(
                    f"cube ids ending in {DEFAULT_CUBE_SUFFIX!r} are reserved for users' default cubes")
            if self._tombstoned(conn, "cube", cube_id):
                raise InvalidInputError(f"cube id {cube_id!r} belonged to a deleted cube and is never reused")
            ts = time.time()
            conn.execute(cubes.insert().values(id=cube_id, owner_id=owner_id, name=name or cube_id, created_at=ts))
        return Cube(id=cube_id, owner_id=owner_id, name=name or cube_id, created_at=ts)

    def get_cube(self, cube_id: str) -> Cube:
        return Cube(**self._row(cubes, cube_id, "cube"))

    def check_deletable(self, owner_id: str, cube_id: str) -> Cube:
        """The cube, if `owner_id` may delete it: the owner, and not their default cube (every add lands there)."""
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may delete cube {cube_id!r}")
        if cube_id == default_cube_id(owner_id):
            raise InvalidInputError("a user's default cube cannot be deleted: erase its contents or delete the user")
        return cube

    def delete_cube(self, owner_id: str, cube_id: str) -> None:
        """Forget the cube, its shares and thread records, and tombstone its id (`Memory.erase` clears the data)."""
        self.check_deletable(owner_id, cube_id)
        with self._lock, self.engine.begin() as conn:
            conn.execute(shares.delete().where(shares.c.cube_id == cube_id))
            conn.execute(thread_cubes.delete().where(thread_cubes.c.cube_id == cube_id))
            conn.execute(cubes.delete().where(cubes.c.id == cube_id))
            if not self._tombstoned(conn, "cube", cube_id):
                conn.execute(tombstones.insert().values(kind="cube", id=cube_id, deleted_at=time.time()))

    def cubes_for(self, user_id: str) -> list[CubeAccess]:
        """Every cube the user may read: owned ones (write) and shared ones (read or write)."""
        self.get_user(user_id)
        return self._cubes_of(user_id)

    def _cubes_of(self, user_id: str) -> list[CubeAccess]:
        with self.engine.connect() as conn:
            owned = conn.execute(sa.select(cubes).where(cubes.c.owner_id == user_id).order_by(cubes.c.id))
            result = [CubeAccess(cube=Cube(**r._mapping), access=Access.WRITE) for r in owned]
            shared = conn.execute(
                sa.select(cubes, shares.c.access).join(shares, shares.c.cube_id == cubes.c.id)
                .where((shares.c.user_id == user_id) & (shares.c.status == ShareStatus.ACCEPTED.value))
                .order_by(cubes.c.id)
            )
            for r in shared:
                data = dict(r._mapping)
                access = Access(data.pop("access"))
                result.append(CubeAccess(cube=Cube(**data), access=access, owned=False))
        return result

    def readable(self, user_id: str, cube_ids: Sequence[str] | None = None) -> list[str]:
        """The cube ids the user may read: all of them, or the requested ones (any other -> AccessDenied)."""
        allowed = [c.cube.id for c in self.cubes_for(user_id)]
        if cube_ids is None:
            return allowed
        return self._check(user_id, cube_ids, set(allowed), "read")

    def scope(self, user_id: str, *, read: Sequence[str] | None = None, write: str | None = None) -> Scope:
        """What one turn may touch, from one read of the user's cubes: the cubes it reads (`read`, else all the
        user may read), the cube it writes (`write`, else their default) and the owners of the shared cubes it
        reads. AccessDenied for any cube the user may not read or write; the user is created on first use when
        `auto_create_users` is on."""
        self.ensure_user(check_id(user_id, "user id"))
        access = self._cubes_of(user_id)
        readable = [a.cube.id for a in access]
        read_ids = readable if read is None else self._check(user_id, read, set(readable), "read")
        writable = {a.cube.id for a in access if a.access == Access.WRITE}
        write_id = self._check(user_id, [write or default_cube_id(user_id)], writable, "write")[0]
        shared = {a.cube.id: a.cube.owner_id for a in access if not a.owned and a.cube.id in read_ids}
        return Scope(read=read_ids, write=write_id, shared_owners=shared)

    def write_cube(self, user_id: str, cube_id: str | None = None) -> str:
        """The cube a write lands in: `cube_id` if the user may write it, else (None) their default cube. The user
        is created on first use when `auto_create_users` is on."""
        self.ensure_user(check_id(user_id, "user id"))
        return self.writable(user_id, [cube_id or default_cube_id(user_id)])[0]

    def writable(self, user_id: str, cube_ids: Sequence[str] | None = None) -> list[str]:
        allowed = [c.cube.id for c in self.cubes_for(user_id) if c.access == Access.WRITE]
        if cube_ids is None:
            return allowed
        return self._check(user_id, cube_ids, set(allowed), "write")

    @staticmethod
    def _check(user_id: str, cube_ids: Sequence[str], allowed: set[str], verb: str) -> list[str]:
        for cube_id in cube_ids:
            check_id(cube_id, "cube id")
            if cube_id not in allowed:
                # Same message whether the cube exists or not: no probing other users' cube names.
                raise AccessDeniedError(f"user {user_id!r} may not {verb} cube {cube_id!r}")
        return list(dict.fromkeys(cube_ids))

    def share(self, owner_id: str, cube_id: str, user_id: str, access: Access = Access.READ) -> None:
        """Invite `user_id` to the cube (pending until they accept); re-sharing changes the access.

        Unknown or deleted recipients are ignored silently: the owner sees the same outcome either way, so sharing
        cannot be used to find out which user ids exist.
        """
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may share cube {cube_id!r}")
        check_id(user_id, "user id")
        access = Access(access)
        if user_id == owner_id:
            raise InvalidInputError("a cube cannot be shared with its owner")
        with self._lock, self.engine.begin() as conn:
            if conn.execute(sa.select(users.c.id).where(users.c.id == user_id)).first() is None:
                return
            row = conn.execute(sa.select(shares.c.status).where(
                (shares.c.cube_id == cube_id) & (shares.c.user_id == user_id))).first()
            if row is None:
                conn.execute(shares.insert().values(cube_id=cube_id, user_id=user_id, access=access.value,
                                                    status=ShareStatus.PENDING.value))
            else:
                conn.execute(shares.update().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id))
                             .values(access=access.value))

    def unshare(self, owner_id: str, cube_id: str, user_id: str) -> None:
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may unshare cube {cube_id!r}")
        check_id(user_id, "user id")
        with self._lock, self.engine.begin() as conn:
            conn.execute(shares.delete().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id)))

    def shares(self, *, owner_id: str | None = None, user_id: str | None = None,
               status: ShareStatus | None = None) -> list[Share]:
        """Shares of the cubes `owner_id` owns, or shares offered to `user_id` (optionally of one status)."""
        query = sa.select(shares, cubes.c.owner_id).join(cubes, cubes.c.id == shares.c.cube_id)
        if owner_id is not None:
            query = query.where(cubes.c.owner_id == owner_id)
        if user_id is not None:
            query = query.where(shares.c.user_id == user_id)
        if status is not None:
            query = query.where(shares.c.status == ShareStatus(status).value)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(shares.c.cube_id, shares.c.user_id))
            return [Share(**r._mapping) for r in rows]

    def accept_share(self, user_id: str, cube_id: str) -> Share:
        """The recipient accepts a pending invitation: from now on the cube feeds their recall."""
        check_id(cube_id, "cube id")
        with self._lock, self.engine.begin() as conn:
            done = conn.execute(shares.update().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id))
                                .values(status=ShareStatus.ACCEPTED.value))
            if not done.rowcount:
                raise NotFoundError(f"no invitation to cube {cube_id!r}")
        return next(share for share in self.shares(user_id=user_id) if share.cube_id == cube_id)

    def leave_share(self, user_id: str, cube_id: str) -> None:
        """The recipient declines an invitation or leaves a shared cube."""
        check_id(cube_id, "cube id")
        with self._lock, self.engine.begin() as conn:
            done = conn.execute(shares.delete().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id)))
            if not done.rowcount:
                raise NotFoundError(f"cube {cube_id!r} is not shared with you")

    # -- checkpoint threads --------------------------------------------------------------------------------

    def record_thread(self, thread_key: str, user_id: str, cube_ids: Sequence[str]) -> None:
        """Remember that a checkpoint thread read or wrote these cubes (so erasing a cube finds its threads)."""
        # A concurrent turn of the same thread may record the same rows first: that is the same outcome.
        with contextlib.suppress(sa.exc.IntegrityError), self._lock, self.engine.begin() as conn:
            known = {r[0] for r in conn.execute(sa.select(thread_cubes.c.cube_id).where(
                thread_cubes.c.thread_key == thread_key))}
            rows = [{"thread_key": thread_key, "cube_id": c, "user_id": user_id}
                    for c in dict.fromkeys(cube_ids) if c not in known]
            if rows:
                conn.execute(thread_cubes.insert(), rows)

    def threads(self, *, user_id: str | None = None, cube_id: str | None = None) -> list[str]:
        """Thread keys of a user, or of every thread (any user's) that touched a cube."""
        query = sa.select(thread_cubes.c.thread_key).distinct()
        if user_id is not None:
            query = query.where(thread_cubes.c.user_id == user_id)
        if cube_id is not None:
            query = query.where(thread_cubes.c.cube_id == cube_id)
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(query))

    def forget_threads(self, thread_keys: Sequence[str]) -> None:
        with self._lock, self.engine.begin() as conn:
            if thread_keys:
                conn.execute(thread_cubes.delete().where(thread_cubes.c.thread_key.in_(list(thread_keys))))

    # -- API keys ------------------------------------------------------------------------------------------

    def create_api_key(self, user_id: str) -> str:
        """A new key for the user; only its hash is stored, so this is the one time it is shown."""
        self.get_user(user_id)
        key = "hg_" + secrets.token_urlsafe(32)
        with self._lock, self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(key_hash=hash_key(key), key_prefix=key[:10], user_id=user_id,
                                                  created_at=time.time(), revoked=False))
        return key

    def user_for_key(self, key: str) -> User:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(api_keys.c.user_id).where((api_keys.c.key_hash == hash_key(key)) & ~api_keys.c.revoked)
            ).first()
        if row is None:
            raise AccessDeniedError("invalid or revoked API key")
        return self.get_user(row[0])

    def revoke_api_key(self, key: str) -> None:
        with self._lock, self.engine.begin() as conn:
            conn.execute(api_keys.update().where(api_keys.c.key_hash == hash_key(key)).values(revoked=True))
