"""Who is calling: the API key of a request (`Authorization: Bearer` or `X-API-Key`), the admin key."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from hippograph.memory import Memory
from stores.errors import AccessDeniedError, NotFoundError
from stores.registry import User
from stores.services import Services


def presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    key = request.headers.get("x-api-key", "").strip()
    return key or None


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def _services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _memory(request: Request) -> Memory:
    return request.app.state.memory  # type: ignore[no-any-return]


def authenticate(request: Request) -> User:
    """The user behind the request's API key (401 when missing, invalid or revoked)."""
    key = presented_key(request)
    if key is None:
        raise _unauthorized("missing API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`")
    if len(key) > 512:
        raise _unauthorized("invalid or revoked API key")
    try:
        return _services(request).registry.user_for_key(key)
    except (AccessDeniedError, NotFoundError):
        raise _unauthorized("invalid or revoked API key") from None


def require_admin(request: Request) -> str:
    """The admin key from settings, or the key of a user flagged `is_admin`. Returns the principal's name."""
    key = presented_key(request)
    if key is None:
        raise _unauthorized("missing API key")
    admin_key = _services(request).settings.admin_key
    if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
        return "admin"
    user = authenticate(request)
    if not user.is_admin:
        raise HTTPException(403, "this route needs the admin key")
    return user.id


Caller = Annotated[User, Depends(authenticate)]
Admin = Annotated[str, Depends(require_admin)]
