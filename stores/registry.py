"""Users, cubes, sharing and API keys: who may read and write which cube.

A cube is a named memory space owned by one user. Its owner reads and writes it; a share grants another user
`read` or `write`. SQLite by default, any SQLAlchemy URL (Postgres for servers).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Sequence
from enum import StrEnum

import sqlalchemy as sa
from pydantic import BaseModel

from stores.errors import AccessDeniedError, InvalidInputError, NotFoundError
from stores.models import check_id


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
    return f"{user_id}.default"


class Registry:
    """The access-control registry. Every cube lookup for a user goes through `readable`/`writable`."""

    def __init__(self, url: str, *, auto_create_users: bool = True) -> None:
        self.auto_create_users = auto_create_users
        # Plain Postgres URLs (as the checkpointer takes them) use psycopg 3, the driver we install.
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                url = "postgresql+psycopg://" + url.removeprefix(prefix)
        if url.startswith("sqlite:///"):
            from pathlib import Path

            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, future=True)
        if url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
                dbapi_conn.execute("PRAGMA busy_timeout=30000")
        _meta.create_all(self.engine)
        self._lock = threading.Lock()

    # -- users ---------------------------------------------------------------------------------------------

    def create_user(self, user_id: str, *, name: str = "", is_admin: bool = False, exist_ok: bool = True) -> User:
        check_id(user_id, "user id")
        with self._lock, self.engine.begin() as conn:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
            if row is not None:
                if not exist_ok:
                    raise InvalidInputError(f"user {user_id!r} already exists")
                return User(**row._mapping)
            ts = time.time()
            conn.execute(users.insert().values(id=user_id, name=name or user_id, is_admin=is_admin, created_at=ts))
            conn.execute(cubes.insert().values(id=default_cube_id(user_id), owner_id=user_id, name="default",
                                               created_at=ts))
        return User(id=user_id, name=name or user_id, is_admin=is_admin, created_at=ts)

    def get_user(self, user_id: str) -> User:
        check_id(user_id, "user id")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(users).where(users.c.id == user_id)).first()
        if row is None:
            raise NotFoundError(f"unknown user {user_id!r}")
        return User(**row._mapping)

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

    def delete_user(self, user_id: str) -> None:
        self.get_user(user_id)
        with self._lock, self.engine.begin() as conn:
            owned = [r[0] for r in conn.execute(sa.select(cubes.c.id).where(cubes.c.owner_id == user_id))]
            conn.execute(shares.delete().where(shares.c.user_id == user_id))
            if owned:
                conn.execute(shares.delete().where(shares.c.cube_id.in_(owned)))
                conn.execute(cubes.delete().where(cubes.c.id.in_(owned)))
            conn.execute(api_keys.delete().where(api_keys.c.user_id == user_id))
            conn.execute(users.delete().where(users.c.id == user_id))

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
            ts = time.time()
            conn.execute(cubes.insert().values(id=cube_id, owner_id=owner_id, name=name or cube_id, created_at=ts))
        return Cube(id=cube_id, owner_id=owner_id, name=name or cube_id, created_at=ts)

    def get_cube(self, cube_id: str) -> Cube:
        check_id(cube_id, "cube id")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(cubes).where(cubes.c.id == cube_id)).first()
        if row is None:
            raise NotFoundError(f"unknown cube {cube_id!r}")
        return Cube(**row._mapping)

    def delete_cube(self, owner_id: str, cube_id: str) -> None:
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may delete cube {cube_id!r}")
        with self._lock, self.engine.begin() as conn:
            conn.execute(shares.delete().where(shares.c.cube_id == cube_id))
            conn.execute(cubes.delete().where(cubes.c.id == cube_id))

    def cubes_for(self, user_id: str) -> list[CubeAccess]:
        """Every cube the user may read: owned ones (write) and shared ones (read or write)."""
        self.get_user(user_id)
        with self.engine.connect() as conn:
            owned = conn.execute(sa.select(cubes).where(cubes.c.owner_id == user_id).order_by(cubes.c.id))
            result = [CubeAccess(cube=Cube(**r._mapping), access=Access.WRITE) for r in owned]
            shared = conn.execute(
                sa.select(cubes, shares.c.access).join(shares, shares.c.cube_id == cubes.c.id)
                .where(shares.c.user_id == user_id).order_by(cubes.c.id)
            )
            for r in shared:
                data = dict(r._mapping)
                access = Access(data.pop("access"))
                result.append(CubeAccess(cube=Cube(**data), access=access))
        return result

    def readable(self, user_id: str, cube_ids: Sequence[str] | None = None) -> list[str]:
        """The cube ids the user may read: all of them, or the requested ones (any other -> AccessDenied)."""
        allowed = [c.cube.id for c in self.cubes_for(user_id)]
        if cube_ids is None:
            return allowed
        return self._check(user_id, cube_ids, set(allowed), "read")

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
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may share cube {cube_id!r}")
        self.get_user(user_id)
        if user_id == owner_id:
            raise InvalidInputError("a cube cannot be shared with its owner")
        with self._lock, self.engine.begin() as conn:
            conn.execute(shares.delete().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id)))
            conn.execute(shares.insert().values(cube_id=cube_id, user_id=user_id, access=Access(access).value))

    def unshare(self, owner_id: str, cube_id: str, user_id: str) -> None:
        cube = self.get_cube(cube_id)
        if cube.owner_id != owner_id:
            raise AccessDeniedError(f"only the owner may unshare cube {cube_id!r}")
        with self._lock, self.engine.begin() as conn:
            conn.execute(shares.delete().where((shares.c.cube_id == cube_id) & (shares.c.user_id == user_id)))

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
