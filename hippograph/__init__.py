"""hippograph: long-term memory for AI agents, built as LangGraph graphs.

    from hippograph import Memory, build_chat_graph
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported lazily, so `import hippograph` (and `hippograph --help`) stays fast.
_EXPORTS = {
    "Memory": "hippograph.memory",
    "AsyncMemory": "hippograph.memory",
    "ChatResult": "hippograph.memory",
    "Settings": "hippograph.settings",
    "build_chat_graph": "hippograph.graphs.chat",
    "build_search_graph": "hippograph.graphs.search",
    "ChatContext": "hippograph.nodes.state",
    "ChatState": "hippograph.nodes.state",
    "RecallConfig": "hippograph.stores.recall_config",
    "Services": "hippograph.stores.services",
    "MemoryItem": "hippograph.stores.models",
    "SearchHit": "hippograph.stores.models",
    "HippographError": "hippograph.stores.errors",
    "InvalidInputError": "hippograph.stores.errors",
    "NotFoundError": "hippograph.stores.errors",
    "AccessDeniedError": "hippograph.stores.errors",
    "BackendUnavailableError": "hippograph.stores.errors",
}

if TYPE_CHECKING:
    from hippograph.graphs.chat import build_chat_graph
    from hippograph.graphs.search import build_search_graph
    from hippograph.memory import AsyncMemory, ChatResult, Memory
    from hippograph.nodes.state import ChatContext, ChatState
    from hippograph.settings import Settings
    from hippograph.stores.errors import (
        AccessDeniedError,
        BackendUnavailableError,
        HippographError,
        InvalidInputError,
        NotFoundError,
    )
    from hippograph.stores.models import MemoryItem, SearchHit
    from hippograph.stores.recall_config import RecallConfig
    from hippograph.stores.services import Services


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hippograph' has no attribute {name!r}")


__all__ = [
    "AccessDeniedError",
    "AsyncMemory",
    "BackendUnavailableError",
    "ChatContext",
    "ChatResult",
    "ChatState",
    "HippographError",
    "InvalidInputError",
    "Memory",
    "MemoryItem",
    "NotFoundError",
    "RecallConfig",
    "SearchHit",
    "Services",
    "Settings",
    "build_chat_graph",
    "build_search_graph",
]
