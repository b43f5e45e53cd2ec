"""Typed errors raised by hippograph's stores and public API.

Every bad input ends in one of these (never a half-written memory), and the HTTP layer maps each to a 4xx.
"""

from __future__ import annotations


class HippographError(Exception):
    """Base class of every error hippograph raises on purpose."""

    status_code: int = 400


class InvalidInputError(HippographError, ValueError):
    """The input is malformed: empty, too large, wrong type, not valid UTF-8, bad id."""

    status_code = 422


class NotFoundError(HippographError, KeyError):
    """A user, cube, memory or job that does not exist (or is not visible to the caller)."""

    status_code = 404

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable.
        return str(self.args[0]) if self.args else "not found"


class AccessDeniedError(HippographError, PermissionError):
    """The caller may not read or write the cube it named."""

    status_code = 403


class BackendUnavailableError(HippographError, ConnectionError):
    """A storage backend (Neo4j, Milvus, Redis, Postgres) could not be reached."""

    status_code = 503


class ProcessLayoutError(HippographError, RuntimeError):
    """The process layout cannot work, e.g. a second process opening a Milvus Lite file another one owns."""

    status_code = 503
