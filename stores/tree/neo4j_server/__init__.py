"""A local Neo4j Community 5.26 server from Maven Central jars, for tests and for users who have Java.

- `ensure_jars()` fetches the jars once (Maven, `pom.xml` next to this file) into a cache folder:
  `~/.cache/hippograph/neo4j-5.26` by default, `HIPPOGRAPH_NEO4J_HOME` to override.
- `LocalNeo4j` is a context manager: starts `Launcher.java` (the embedded DBMS with a Bolt connector) on a free
  127.0.0.1 port, waits until the driver's `verify_connectivity()` passes, and stops it by its PID.
- `start_detached` / `stop` / `status` keep a server running in the background for `hippograph neo4j ...`;
  its PID and port live in `DATA_DIR/hippograph-neo4j.json`.

Authentication is disabled on this loopback-only server; any credentials (or none) are accepted.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from hippograph.stores.errors import BackendUnavailableError

NEO4J_SERIES = "5.26"
HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LAUNCHER = HERE / "Launcher.java"
STATE_FILE = "hippograph-neo4j.json"
LOG_FILE = "hippograph-neo4j.log"
DEFAULT_HEAP = "1g"
DEFAULT_PAGECACHE_MB = 256
#: Credentials to hand to the driver: the local server has auth disabled and accepts anything.
LOCAL_AUTH = ("neo4j", "neo4j")


def default_home() -> Path:
    env = os.environ.get("HIPPOGRAPH_NEO4J_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hippograph" / f"neo4j-{NEO4J_SERIES}"


def _jars_complete(lib: Path) -> bool:
    return (lib / ".complete").exists() and any(lib.glob("neo4j-kernel-*.jar"))


def ensure_jars(cache_dir: Path | str | None = None, *, quiet: bool = True) -> Path:
    """The folder holding the Neo4j jars (`CACHE/lib`), fetched with Maven on first use. Idempotent and
    safe to call from several processes at once (a file lock serialises the download)."""
    home = Path(cache_dir).expanduser() if cache_dir else default_home()
    lib = home / "lib"
    if _jars_complete(lib):
        return lib
    home.mkdir(parents=True, exist_ok=True)
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BackendUnavailableError(
            f"the Neo4j jars are not in {lib} and Maven (`mvn`) is not installed to fetch them; "
            "install Maven and Java 17+, or point HIPPOGRAPH_NEO4J_URI at your own Neo4j"
        )
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _jars_complete(lib):
            return lib
        cmd = [mvn, "-B", "-f", str(POM), "dependency:copy-dependencies", f"-DoutputDirectory={lib}"]
        if quiet:
            cmd.insert(1, "-q")
        proc = subprocess.run(cmd, capture_output=quiet, text=True, check=False)
        if proc.returncode != 0:
            out = ((proc.stdout or "") + (proc.stderr or ""))[-3000:]
            raise BackendUnavailableError(f"Maven could not fetch the Neo4j jars into {lib}:\n{out}")
        (lib / ".complete").write_text(f"neo4j {NEO4J_SERIES}\n")
    return lib


def _compiled_launcher(lib: Path) -> tuple[list[str], list[str]]:
    """(classpath entries, main args): a precompiled Launcher class when javac is present (starts ~2 s
    faster), else Java's single-file source mode."""
    classes = lib.parent / "classes"
    javac = shutil.which("javac")
    cls = classes / "Launcher.class"
    if javac:
        try:
            if not cls.exists() or cls.stat().st_mtime < LAUNCHER.stat().st_mtime:
                classes.mkdir(parents=True, exist_ok=True)
                subprocess.run(
                    [javac, "-nowarn", "-cp", f"{lib}/*", "-d", str(classes), str(LAUNCHER)],
                    check=True,
                    capture_output=True,
                )
            return [str(classes), f"{lib}/*"], ["Launcher"]
        except (subprocess.CalledProcessError, OSError):
            pass
    return [f"{lib}/*"], [str(LAUNCHER)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise BackendUnavailableError("Java (17 or 21) is needed to run the local Neo4j; `java` is not on PATH")
    return java


def _command(data_dir: Path, port: int, *, heap: str, pagecache_mb: int, watch_stdin: bool, lib: Path) -> list[str]:
    cp, main = _compiled_launcher(lib)
    return [
        _java(),
        f"-Xms{min(256, _mb(heap))}m",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        f"-Dhippograph.watchStdin={'true' if watch_stdin else 'false'}",
        "-cp",
        os.pathsep.join(cp),
        *main,
        str(data_dir),
        str(port),
        str(pagecache_mb),
    ]


def _mb(size: str) -> int:
    s = size.strip().lower()
    mult = {"k": 1 / 1024, "m": 1, "g": 1024}.get(s[-1:])
    return int(float(s[:-1]) * mult) if mult else int(s) // (1024 * 1024)


def wait_for_bolt(
    uri: str, *, timeout: float = 60.0, proc: subprocess.Popen[Any] | None = None, log: Path | None = None
) -> None:
    """Block until the driver can talk to `uri` (or raise `BackendUnavailableError`)."""
    import neo4j

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise BackendUnavailableError(f"the local Neo4j for {uri} exited with {proc.returncode}:\n{tail}")
        try:
            with neo4j.GraphDatabase.driver(uri, auth=LOCAL_AUTH, connection_timeout=2) as drv:
                drv.verify_connectivity()
                drv.execute_query("RETURN 1")
            return
        except Exception as exc:
            last = exc
            time.sleep(0.3)
    raise BackendUnavailableError(f"the local Neo4j at {uri} did not answer within {timeout:.0f}s: {last}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours still "exists"; reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _terminate(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM (clean shutdown of the DBMS), then SIGKILL after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class LocalNeo4j:
    """A Neo4j 5.26 server in a child JVM on 127.0.0.1, for the `with` block's lifetime.

    `data_dir=None` uses a temporary folder removed on exit; `port=None` picks a free port.
    """

    def __init__(
        self,
        data_dir: Path | str | None = None,
        port: int | None = None,
        *,
        heap: str = DEFAULT_HEAP,
        pagecache_mb: int = DEFAULT_PAGECACHE_MB,
        cache_dir: Path | str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self._tmp: str | None = None
        if data_dir is None:
            self._tmp = tempfile.mkdtemp(prefix="hippograph-neo4j-")
            data_dir = self._tmp
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.heap = heap
        self.pagecache_mb = pagecache_mb
        self.cache_dir = cache_dir
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.port}"

    @property
    def auth(self) -> tuple[str, str]:
        return LOCAL_AUTH

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_FILE

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> LocalNeo4j:
        if self.running():
            return self
        lib = ensure_jars(self.cache_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = _command(
            self.data_dir, self.port, heap=self.heap, pagecache_mb=self.pagecache_mb, watch_stdin=True, lib=lib
        )
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (open while the child runs)
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.data_dir
        )
        try:
            wait_for_bolt(self.uri, timeout=self.startup_timeout, proc=self.proc, log=self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM and wait (clean), or SIGKILL at once with `kill=True` (crash tests)."""
        if self.proc is not None:
            if kill:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
            else:
                _terminate(self.proc.pid)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=30)
            if self.proc.stdin:
                with contextlib.suppress(Exception):
                    self.proc.stdin.close()
            self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, *, kill: bool = False) -> None:
        """Stop and start again on the same port and data dir."""
        self.stop(kill=kill)
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> LocalNeo4j:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LocalNeo4j(uri={self.uri!r}, pid={self.pid}, data_dir={str(self.data_dir)!r})"


# --- a background server for the CLI --------------------------------------------------------------------


def _read_state(data_dir: Path) -> dict[str, Any] | None:
    f = data_dir / STATE_FILE
    if not f.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(f.read_text())
        return state
    except (OSError, ValueError):
        return None


def status(data_dir: Path | str) -> dict[str, Any]:
    """What is known about the background server of `data_dir`: running, pid, port, uri, reachable."""
    d = Path(data_dir).resolve()
    state = _read_state(d)
    if not state:
        return {"running": False, "data_dir": str(d)}
    pid = int(state.get("pid", 0))
    alive = pid > 0 and _pid_alive(pid)
    reachable = False
    if alive:
        try:
            wait_for_bolt(state["uri"], timeout=3)
            reachable = True
        except BackendUnavailableError:
            reachable = False
    return {**state, "running": alive, "reachable": reachable, "data_dir": str(d)}


def start_detached(
    data_dir: Path | str,
    port: int = 7687,
    *,
    heap: str = DEFAULT_HEAP,
    pagecache_mb: int = DEFAULT_PAGECACHE_MB,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """Start a server that outlives this process (own session, no stdin); returns its state."""
    d = Path(data_dir).resolve()
    current = status(d)
    if current.get("running"):
        return {**current, "already_running": True}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise BackendUnavailableError(f"port {port} on 127.0.0.1 is already in use; pick another with --port")
    lib = ensure_jars()
    d.mkdir(parents=True, exist_ok=True)
    cmd = _command(d, port, heap=heap, pagecache_mb=pagecache_mb, watch_stdin=False, lib=lib)
    log = d / LOG_FILE
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=d, start_new_session=True
        )
    uri = f"bolt://127.0.0.1:{port}"
    state = {"pid": proc.pid, "port": port, "uri": uri, "started_at": time.time(), "log": str(log)}
    (d / STATE_FILE).write_text(json.dumps(state))
    try:
        wait_for_bolt(uri, timeout=timeout, proc=proc, log=log)
    except BaseException:
        _terminate(proc.pid)
        (d / STATE_FILE).unlink(missing_ok=True)
        raise
    return {**state, "running": True, "reachable": True, "data_dir": str(d)}


def stop(data_dir: Path | str) -> bool:
    """Stop the background server of `data_dir` by its recorded PID. Returns whether one was running."""
    d = Path(data_dir).resolve()
    state = _read_state(d)
    if not state:
        return False
    pid = int(state.get("pid", 0))
    was = pid > 0 and _pid_alive(pid)
    if was:
        _terminate(pid)
    (d / STATE_FILE).unlink(missing_ok=True)
    return was


__all__ = [
    "LOCAL_AUTH",
    "LocalNeo4j",
    "default_home",
    "ensure_jars",
    "free_port",
    "start_detached",
    "status",
    "stop",
    "wait_for_bolt",
]
