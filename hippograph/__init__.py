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
    "build_chat_graph": "graphs.chat",
    "build_search_graph": "graphs.search",
    "ChatContext": "nodes.state",
    "ChatState": "nodes.state",
    "RecallConfig": "stores.recall_config",
    "Services": "stores.services",
    "MemoryItem": "stores.models",
    "SearchHit": "stores.models",
    "HippographError": "stores.errors",
    "InvalidInputError": "stores.errors",
    "NotFoundError": "stores.errors",
    "AccessDeniedError": "stores.errors",
    "BackendUnavailableError": "stores.errors",
}

if TYPE_CHECKING:
    from graphs.chat import build_chat_graph
    from graphs.search import build_search_graph
    from hippograph.memory import AsyncMemory, ChatResult, Memory
    from hippograph.settings import Settings
    from nodes.state import ChatContext, ChatState
    from stores.errors import (
        AccessDeniedError,
        BackendUnavailableError,
        HippographError,
        InvalidInputError,
        NotFoundError,
    )
    from stores.models import MemoryItem, SearchHit
    from stores.recall_config import RecallConfig
    from stores.services import Services


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
