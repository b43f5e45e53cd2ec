"""Preference memory: what a user likes, avoids and is, kept apart from facts so the answer can respect it."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from hippograph.stores.models import MemoryStatus, check_id, check_text, new_id, now


class PreferenceKind(StrEnum):
    EXPLICIT = "explicit"
    """Stated by the user ("I'm vegan")."""
    IMPLICIT = "implicit"
    """Inferred from choices across turns, with the evidence."""


class Evidence(BaseModel):
    message_id: str = ""
    quote: str = ""


class Preference(BaseModel):
    id: str = Field(default_factory=new_id)
    user_id: str
    cube_id: str
    kind: PreferenceKind = PreferenceKind.EXPLICIT
    topic: str = ""
    text: str
    evidence: list[Evidence] = Field(default_factory=list)
    status: MemoryStatus = MemoryStatus.ACTIVE
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    valid_to: float | None = None
    supersedes: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Extractor details: `polarity` (+1 likes, -1 avoids), `object` (what it is about), `source`."""

    def model_post_init(self, __context: object) -> None:
        check_id(self.user_id, "user id")
        check_id(self.cube_id, "cube id")
        check_text(self.text, "preference text")


class PreferenceHit(BaseModel):
    preference: Preference
    score: float
    scores: dict[str, float] = Field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.preference.id

    @property
    def text(self) -> str:
        return self.preference.text


@runtime_checkable
class PreferenceStore(Protocol):
    """Per-user preference memory. Every call is scoped to one user; filters never contain raw strings."""

    def add(self, prefs: Sequence[Preference]) -> list[str]:
        ...

    def search(
        self,
        query: str,
        *,
        user_id: str,
        cube_ids: Sequence[str] | None = None,
        k: int = 5,
        include_inactive: bool = False,
        vector: Sequence[float] | None = None,
    ) -> list[PreferenceHit]:
        """Hybrid (dense + BM25, fused) search over one user's current preferences. `vector` is the query's
        embedding when the caller already has it."""
        ...

    def get(self, ids: Sequence[str], *, user_id: str | None = None) -> list[Preference]:
        """Preferences by id (only the user's, when `user_id` is given)."""
        ...

    def list(self, *, user_id: str, include_inactive: bool = False, limit: int = 1000) -> list[Preference]:
        ...

    def delete(self, ids: Sequence[str], *, user_id: str) -> int:
        ...

    def erase(self, *, user_id: str | None = None, cube_ids: Sequence[str] = (), ids: Sequence[str] = ()) -> int:
        """Delete a user's preferences, all preferences of `cube_ids` and the preferences `ids`, for good (no bytes
        left in the backend's files). Returns how many."""
        ...

    def supersede(self, old_id: str, new: Preference) -> str:
        """Add `new`, mark `old_id` superseded with `valid_to` (kept for history)."""
        ...

    def close(self) -> None:
        ...
