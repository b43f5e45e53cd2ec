"""The built-in demo: a short conversation this project wrote, and three questions about it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from hippograph.memory import Memory
    from hippograph.stores.models import SearchHit

DEMO_USER = "demo"
DEMO_SESSION = "demo-session-1"

#: A made-up conversation (written for hippograph; no dataset involved).
CONVERSATION: list[dict[str, str]] = [
    {"role": "user", "content": "Hi! I'm Maya, I work as a marine biologist in Lisbon."},
    {"role": "assistant", "content": "Nice to meet you, Maya. What are you working on these days?"},
    {"role": "user", "content": "I'm studying how octopuses use tools along the Portuguese coast."},
    {"role": "user", "content": "I'm vegetarian, so please never suggest fish or meat recipes."},
    {"role": "user", "content": "My sister Inês is getting married in Porto on June 14th."},
    {"role": "user", "content": "I started learning the cello in January and practise every evening."},
    {"role": "assistant", "content": "That's lovely. How is the cello going?"},
    {"role": "user", "content": "Slowly! My teacher Rui says my bow hold is finally improving."},
    {"role": "user", "content": "My dog Farol is a three-year-old border collie who loves the beach."},
]

QUESTIONS: list[str] = [
    "What does Maya do for work?",
    "When and where is the wedding?",
    "What instrument am I learning, and who teaches me?",
]


def run_demo(memory: Memory, *, user: str, cube: str | None, console: Console,
             table: Callable[[list[SearchHit], str], Table]) -> None:
    """Store the conversation (idempotent: a re-run adds nothing), then one chat turn per question.

    The questions and answers are remembered, as every chat turn is, but in a cube of their own
    (`<user>.demo-chat`) that the questions do not read: a second demo finds the conversation, not the
    questions it asked the first time."""
    from hippograph.stores.registry import default_cube_id

    started = time.perf_counter()
    try:
        chat_cube = f"{user}.demo-chat"
        existing = {c.cube.id for c in memory.cubes(user_id=user)}  # cubes() creates the user
        for needed in {cube, chat_cube} - existing - {None}:
            memory.create_cube(str(needed), user_id=user)
        read_cube = cube or default_cube_id(user)
        # message ids make the replay idempotent: a second demo finds the same turns and adds nothing
        messages = [{**message, "id": f"demo-{n}"} for n, message in enumerate(CONVERSATION, 1)]
        ids = memory.add(messages, user_id=user, cube_id=cube, session_id=DEMO_SESSION)
        console.print(f"[bold]Stored[/bold] {len(set(ids))} memories for user [cyan]{user}[/cyan] "
                      f"(cube {read_cube}).")
        for question in QUESTIONS:
            console.rule(f"[bold]Q:[/bold] {question}")
            result = memory.chat(question, user_id=user, thread_id="demo", top_k=5, cube_ids=[read_cube],
                                 cube_id=chat_cube)
            console.print(table(result.memories, "retrieved memories"))
            console.print(f"[bold green]A:[/bold green] {result.answer}")
            timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings.items())
            console.print(f"[dim]{timings}[/dim]")
    finally:
        memory.close()
    console.print(f"[dim]demo finished in {time.perf_counter() - started:.1f} s[/dim]")
