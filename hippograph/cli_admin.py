"""`hippograph users | keys | cubes | share | export | import | erase`: accounts, sharing and your data, on the
local stores (the CLI acts on the data dir directly, as its owner; servers use API keys).

Every command goes through `Memory`, so it follows the same rules as REST and MCP: a share is an invitation the
other user accepts, only an owner shares or erases a cube, erasure reaches every store.
Exit codes: 0 done, 1 refused at the prompt, 2 bad input / not found / no access (with the reason).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hippograph.memory import Memory

console = Console()
UserOpt = Annotated[str | None, typer.Option("--user", "-u", help="Acting user (default: HIPPOGRAPH_DEFAULT_USER).")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]

users_app = typer.Typer(help="Create, list and erase users.", no_args_is_help=True)
keys_app = typer.Typer(help="Create and revoke API keys (for `hippograph serve` and the MCP server).",
                       no_args_is_help=True)
cubes_app = typer.Typer(help="Your cubes (memory spaces): list, create, delete.", no_args_is_help=True)
share_app = typer.Typer(help="Share cubes: invite a user, accept or leave an invitation, list, revoke.",
                        no_args_is_help=True)


@contextmanager
def memory_for(user: str | None) -> Iterator[tuple[Memory, str]]:
    """An open `Memory` (no worker thread) and the acting user; hippograph errors exit 2 with the reason."""
    from hippograph.cli import default_user, open_memory
    from hippograph.stores.errors import HippographError

    memory = open_memory()
    try:
        yield memory, default_user(user)
    except HippographError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    finally:
        memory.close()


def confirm(yes: bool, question: str) -> None:
    if not yes and not typer.confirm(question, default=False):
        console.print("nothing changed")
        raise typer.Exit(1)


def report_table(title: str, report: Any) -> Table:
    """An `ErasureReport` as a table: what was removed from each store."""
    table = Table(title=title)
    table.add_column("removed")
    table.add_column("count", justify="right")
    for name in ("memories", "preferences", "documents", "jobs", "threads"):
        table.add_row(name, str(getattr(report, name, 0)))
    table.add_row("cubes", ", ".join(report.cube_ids) or "-")
    return table


def when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "-"


# -- users ----------------------------------------------------------------------------------------------------


@users_app.command("list")
def users_list() -> None:
    """Every user with their cubes' count."""
    with memory_for(None) as (memory, _):
        users = memory.users()
        table = Table(title=f"{len(users)} user(s)")
        for name in ("user", "name", "admin", "created"):
            table.add_column(name, overflow="fold")
        for user in users:
            table.add_row(user.id, user.name, "yes" if user.is_admin else "", when(user.created_at))
    console.print(table)


@users_app.command("create")
def users_create(
    user_id: Annotated[str, typer.Argument(help="New user id (letters, digits, `._-@`).")],
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="May manage users over HTTP.")] = False,
    key: Annotated[bool, typer.Option("--key", help="Also create an API key (printed once).")] = False,
) -> None:
    """Create a user with a default cube `<user>.default`."""
    with memory_for(None) as (memory, _):
        user = memory.create_user(user_id, name=name, is_admin=admin)
        console.print(f"created user {user.id} (cube {user.id}.default)")
        if key:
            console.print(f"API key (shown once): {memory.create_api_key(user.id)}")


@users_app.command("delete")
def users_delete(user_id: Annotated[str, typer.Argument(help="The user to erase.")], yes: YesOpt = False) -> None:
    """Erase a user and everything they own from every store (their id is never reused)."""
    confirm(yes, f"Erase user {user_id} and all their memories, preferences, documents and threads?")
    with memory_for(None) as (memory, _):
        report = memory.erase_user(user_id)
    console.print(report_table(f"erased user {user_id}", report))


# -- API keys -------------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(user_id: Annotated[str, typer.Argument(help="Whose key.")]) -> None:
    """A new API key for a user (shown once; only its hash is stored)."""
    with memory_for(None) as (memory, _):
        key = memory.create_api_key(user_id)
    console.print(f"API key for {user_id} (shown once):")
    print(key)  # plain stdout, no wrapping: scripts capture it


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The API key to revoke.")]) -> None:
    """Revoke an API key: requests with it get 401 from then on."""
    with memory_for(None) as (memory, _):
        memory.revoke_api_key(key)
    console.print("revoked")


# -- cubes ----------------------------------------------------------------------------------------------------


@cubes_app.command("list")
def cubes_list(user: UserOpt = None) -> None:
    """The cubes you may read: your own and shared ones you accepted, with memory counts."""
    with memory_for(user) as (memory, user_id):
        cubes = memory.cubes(user_id=user_id)
        counts = memory.stats(user_id=user_id)["cubes"]
        table = Table(title=f"cubes of {user_id}")
        for name in ("cube", "owner", "access", "memories", "name"):
            table.add_column(name, justify="right" if name == "memories" else "left", overflow="fold")
        for access in cubes:
            table.add_row(access.cube.id, access.cube.owner_id, access.access.value,
                          str(counts.get(access.cube.id, 0)), access.cube.name)
    console.print(table)


@cubes_app.command("create")
def cubes_create(
    cube_id: Annotated[str, typer.Argument(help="New cube id, e.g. `ana.work`.")],
    user: UserOpt = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a cube you own."""
    with memory_for(user) as (memory, user_id):
        cube = memory.create_cube(cube_id, user_id=user_id, name=name)
    console.print(f"created cube {cube.id} (owner {cube.owner_id})")


@cubes_app.command("delete")
def cubes_delete(cube_id: Annotated[str, typer.Argument(help="A cube you own.")], user: UserOpt = None,
                 yes: YesOpt = False) -> None:
    """Erase a cube you own from every store, then forget it (your default cube: use `erase --cube`)."""
    confirm(yes, f"Erase cube {cube_id} and everything in it?")
    with memory_for(user) as (memory, user_id):
        report = memory.delete_cube(cube_id, user_id=user_id)
    console.print(report_table(f"deleted cube {cube_id}", report))


# -- sharing --------------------------------------------------------------------------------------------------


@share_app.command("invite")
def share_invite(
    cube_id: Annotated[str, typer.Argument(help="A cube you own.")],
    with_user: Annotated[str, typer.Option("--with", help="The user to invite.")],
    access: Annotated[str, typer.Option(help="`read` or `write`.")] = "read",
    user: UserOpt = None,
) -> None:
    """Invite a user to a cube you own; it feeds their recall once they `share accept` it."""
    with memory_for(user) as (memory, user_id):
        memory.share(cube_id, user_id=user_id, with_user=with_user, access=access)
    console.print(f"invited {with_user} to {cube_id} ({access}); they accept with "
                  f"`hippograph share accept {cube_id} --user {with_user}`")


@share_app.command("accept")
def share_accept(cube_id: Annotated[str, typer.Argument(help="The cube you were invited to.")],
                 user: UserOpt = None) -> None:
    """Accept an invitation: the cube's memories join your search and chat (marked as shared)."""
    with memory_for(user) as (memory, user_id):
        share = memory.accept_share(cube_id, user_id=user_id)
    console.print(f"accepted {share.cube_id} from {share.owner_id} ({share.access.value})")


@share_app.command("leave")
def share_leave(cube_id: Annotated[str, typer.Argument(help="A cube shared with you.")],
                user: UserOpt = None) -> None:
    """Decline an invitation or leave a cube shared with you."""
    with memory_for(user) as (memory, user_id):
        memory.leave_cube(cube_id, user_id=user_id)
    console.print(f"left {cube_id}")


@share_app.command("revoke")
def share_revoke(
    cube_id: Annotated[str, typer.Argument(help="A cube you own.")],
    with_user: Annotated[str, typer.Option("--with", help="The user to remove.")],
    user: UserOpt = None,
) -> None:
    """Withdraw a share or an invitation of a cube you own."""
    with memory_for(user) as (memory, user_id):
        memory.unshare(cube_id, user_id=user_id, with_user=with_user)
    console.print(f"{with_user} no longer has access to {cube_id}")


@share_app.command("list")
def share_list(user: UserOpt = None) -> None:
    """Your cubes' shares (pending and accepted) and the invitations waiting for you."""
    with memory_for(user) as (memory, user_id):
        given = memory.shares(user_id=user_id)
        invited = memory.invitations(user_id=user_id)
    table = Table(title=f"shares of {user_id}")
    for name in ("cube", "owner", "with", "access", "status"):
        table.add_column(name, overflow="fold")
    for share in [*given, *invited]:
        status = share.status.value if share.owner_id == user_id else f"{share.status.value} (invitation to you)"
        table.add_row(share.cube_id, share.owner_id, share.user_id, share.access.value, status)
    console.print(table)


# -- your data ------------------------------------------------------------------------------------------------


def export(
    path: Annotated[Path, typer.Argument(help="JSON Lines file to write.")],
    user: UserOpt = None,
) -> None:
    """Write everything you own to a JSON Lines file.

    Cubes, memories with all versions, edges, preferences and document records; `hippograph import` restores
    it."""
    with memory_for(user) as (memory, user_id):
        counts = memory.export(path, user_id=user_id)
    console.print(f"exported to {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def import_(
    path: Annotated[Path, typer.Argument(help="A file `hippograph export` wrote.")],
    user: UserOpt = None,
) -> None:
    """Restore an export as this user.

    Cubes are re-homed to you; ids that belong to someone else are refused before anything is written."""
    if not path.is_file():
        console.print(f"[red]error:[/red] no such file: {path}")
        raise typer.Exit(2)
    with memory_for(user) as (memory, user_id):
        counts = memory.import_(path, user_id=user_id)
    console.print(f"imported from {path}: " + ", ".join(f"{n} {k}" for k, n in counts.items()))


def erase(
    user: Annotated[str, typer.Option("--user", "-u", help="The user whose data to erase.")],
    cube: Annotated[str | None, typer.Option("--cube", "-c", help="Only this cube of theirs (the default cube "
                                             "is emptied and kept; others are deleted).")] = None,
    yes: YesOpt = False,
) -> None:
    """Erase a user, or one cube of theirs, from every store.

    Memories, edges, documents, preferences, jobs and checkpoints; nothing of it stays in the embedded stores'
    files, and the ids are never reused."""
    from hippograph.stores.registry import default_cube_id

    what = f"cube {cube} of {user}" if cube else f"user {user} and everything they own"
    confirm(yes, f"Erase {what}?")
    with memory_for(user) as (memory, user_id):
        if cube is None:
            report = memory.erase_user(user_id)
        elif cube == default_cube_id(user_id):
            report = memory.clear_cube(cube, user_id=user_id)
        else:
            report = memory.delete_cube(cube, user_id=user_id)
    console.print(report_table(f"erased {what}", report))


def mount(app: typer.Typer) -> None:
    commands: dict[str, Callable[..., None]] = {"export": export, "import": import_, "erase": erase}
    for name, command in commands.items():
        app.command(name)(command)
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
    app.add_typer(cubes_app, name="cubes")
    app.add_typer(share_app, name="share")
