"""Per-node wall-time accounting: each node reports its own milliseconds under `timings`."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

#: A graph node: `(state, runtime) -> partial state update`, as the `make_*` factories of `nodes/` return them.
Node = Callable[..., dict[str, Any]]
F = TypeVar("F", bound=Node)


def timed(name: str) -> Callable[[F], F]:
    """Add `{"timings": {name: ms}}` to what the node returns (signature kept so LangGraph injects runtime)."""

    def wrap(node: F) -> F:
        @functools.wraps(node)
        def run(*args: Any, **kwargs: Any) -> dict[str, Any]:
            start = time.perf_counter()
            update = node(*args, **kwargs)
            update = dict(update or {})
            update["timings"] = {**update.get("timings", {}), name: (time.perf_counter() - start) * 1000.0}
            return update

        return run  # type: ignore[return-value]

    return wrap
