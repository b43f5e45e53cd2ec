"""Who is calling: the API key of a request (`Authorization: Bearer` or `X-API-Key`), the admin key."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from hippograph.memory import Memory
from hippograph.stores.errors import AccessDeniedError
from hippograph.stores.registry import User


def api_key_from_headers(headers: Mapping[str, str]) -> str | None:
    """The API key a request presents: `Authorization: Bearer <key>` or `X-API-Key: <key>` (REST, MCP, /ui)."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = headers.get("x-api-key", "").strip()
    return key or None


def presented_key(request: Request) -> str | None:
    return api_key_from_headers(request.headers)


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def _memory(request: Request) -> Memory:
    return request.app.state.memory  # type: ignore[no-any-return]


def authenticate(request: Request) -> User:
    """The user behind the request's API key (401 when missing, invalid or revoked)."""
    key = presented_key(request)
    if key is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    try:
        return _memory(request).user_for_key(key)
    except AccessDeniedError:
        raise _unauthorized("invalid or revoked API key") from None


def presents_admin_key(request: Request) -> bool:
    """Whether the request carries the server's admin key (settings), compared in constant time."""
    key = presented_key(request)
    admin_key = _memory(request).settings.admin_key
    return bool(key and admin_key and hmac.compare_digest(key.encode(), admin_key.encode()))


def require_admin(request: Request) -> str:
    """The admin key from settings, or the key of a user flagged `is_admin`. Returns the principal's name."""
    if presents_admin_key(request):
        return "admin"
    user = authenticate(request)
    if not user.is_admin:
        raise HTTPException(403, "this route needs the admin key")
    return user.id


Caller = Annotated[User, Depends(authenticate)]
Admin = Annotated[str, Depends(require_admin)]
