"""The enrichment worker: claims jobs from the outbox, runs the enrich graph, marks them done or failed.

- `Worker.run_once()` claims one job (lease), runs the graph with `thread_id = job id` on a checkpointer, and
  completes it, or records the error (`fail`, retried until `max_attempts`). A job whose previous run crashed
  resumes from its last checkpoint; one whose graph already finished is just marked done.
- `start_in_process_worker(services)` runs a worker thread inside the process (the embedded default).
- `run_worker(...)` is the `hippograph worker` loop (stops on SIGINT/SIGTERM). A separate worker process
  refuses to start (`ProcessLayoutError`) when preference memory is a Milvus Lite file another process owns:
  that layout needs a Milvus server (`HIPPOGRAPH_MILVUS_URI`) or the in-process worker.
- A failed attempt is retried after an exponential back-off with jitter (`RetryPolicy`, from settings).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import traceback
import uuid
from collections.abc import Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver

from hippograph.graphs.enrich import ENRICH_KIND, build_enrich_graph, open_enrich_checkpointer
from hippograph.settings import Settings, get_settings
from hippograph.stores.errors import ProcessLayoutError
from hippograph.stores.outbox import Job, RetryPolicy
from hippograph.stores.preferences.lite_owner import LiteFileClaim, claim_lite_file
from hippograph.stores.services import Services

log = logging.getLogger("hippograph.worker")


class Worker:
    """One worker: claim -> run the enrich graph (checkpointed per job) -> complete / fail."""

    def __init__(
        self,
        services: Services,
        *,
        name: str | None = None,
        checkpointer: BaseCheckpointSaver | None = None,
        lease_seconds: float = 120.0,
        retry: RetryPolicy | None = None,
        kinds: tuple[str, ...] = (ENRICH_KIND,),
    ) -> None:
        self.services = services
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.checkpointer = checkpointer or open_enrich_checkpointer(services.settings)
        self.graph = build_enrich_graph(services, checkpointer=self.checkpointer)
        self.lease_seconds = lease_seconds
        self.retry = retry or retry_policy(services.settings)
        self.kinds = kinds
        self.processed = 0
        self.failed = 0
        self._layout_ok = False
        self._claim: LiteFileClaim | None = None
        self._layout_error = ""

    def layout_ok(self) -> bool:
        """Whether this process may use preference memory: a Milvus server, an already open store, or a Lite
        file this process owns. When another process owns the Lite file the worker claims no job (each
        would fail and burn its attempts) and says why, once."""
        if self._layout_ok or getattr(self.services, "_preferences", None) is not None:
            return True
        try:
            self._claim = claim_lite_file(self.services.settings.milvus_path)
        except ProcessLayoutError as exc:
            if str(exc) != self._layout_error:
                log.error("worker %s is idle: %s", self.name, exc)
                self._layout_error = str(exc)
            return False
        self._layout_ok = True
        return True

    def release(self) -> None:
        """Give up this worker's share of the preference file (at shutdown)."""
        if self._claim is not None:
            self._claim.release()
            self._claim, self._layout_ok = None, False

    def run_job(self, job: Job) -> dict[str, Any]:
        """Run (or resume) one job's graph. Raises on failure."""
        config: RunnableConfig = {"configurable": {"thread_id": job.id}}
        snapshot = self.graph.get_state(config)
        if snapshot.values and not snapshot.next:
            return dict(snapshot.values)  # finished before a crash prevented `complete`
        if snapshot.next:
            log.info("resuming job %s at %s", job.id, ",".join(snapshot.next))
            return dict(self.graph.invoke(None, config))
        payload = dict(job.payload)
        payload["job_id"] = job.id
        return dict(self.graph.invoke(payload, config))

    def _heartbeat(self, job: Job, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.services.outbox.extend(job.id, worker=self.name, lease_seconds=self.lease_seconds)
            except Exception:  # a missed heartbeat only risks a duplicate delivery (idempotent)
                log.debug("lease extension failed for %s", job.id, exc_info=True)

    def run_once(self) -> bool:
        """Process one job if there is one. Returns whether a job was claimed."""
        if not self.layout_ok():
            return False
        outbox = self.services.outbox
        job = outbox.claim(worker=self.name, lease_seconds=self.lease_seconds, kinds=list(self.kinds))
        if job is None:
            return False
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop), daemon=True)
        beat.start()
        try:
            self.run_job(job)
        except Exception as exc:
            self.failed += 1
            delay = self.retry.delay(job.attempts)
            log.warning("job %s failed (attempt %d of %d, next in %.1fs): %s", job.id, job.attempts,
                        self.retry.max_attempts, delay, exc)
            outbox.fail(job.id, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}",
                        retry=True, max_attempts=self.retry.max_attempts, retry_in=delay)
        else:
            self.processed += 1
            outbox.complete(job.id)
        finally:
            stop.set()
        return True

    def run(self, stop: threading.Event | None = None, *, poll_interval: float = 0.5, max_jobs: int | None = None,
            until_idle: bool = False) -> int:
        """Loop until `stop` is set (or `max_jobs` done, or the outbox is empty with `until_idle`)."""
        stop = stop or threading.Event()
        done = 0
        while not stop.is_set():
            try:
                got = self.run_once()
            except Exception:  # an outbox hiccup must not kill the worker thread
                log.exception("worker loop error")
                got = False
            if got:
                done += 1
                if max_jobs is not None and done >= max_jobs:
                    break
                continue
            if until_idle:
                break
            stop.wait(poll_interval)
        return done


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(base=settings.job_retry_base_seconds, cap=settings.job_retry_max_seconds,
                       max_attempts=settings.job_max_attempts)


class WorkerThread(threading.Thread):
    """An in-process worker (the embedded default): a daemon thread that `stop()` ends.

    Given a factory rather than a `Worker`, the thread builds its worker itself: compiling the enrich graph
    (seconds of imports: datasketch and the enrich nodes) then happens beside the process's start-up, not in it."""

    def __init__(self, worker: Worker | Callable[[], Worker], *, poll_interval: float = 0.5) -> None:
        super().__init__(name="hippograph-worker", daemon=True)
        self._worker: Worker | None = worker if isinstance(worker, Worker) else None
        self._build: Callable[[], Worker] | None = None if isinstance(worker, Worker) else worker
        self._built = threading.Event()
        if self._worker is not None:
            self._built.set()
        self.poll_interval = poll_interval
        self._stop_event = threading.Event()

    @property
    def worker(self) -> Worker:
        """The worker, once built (waits for the thread to build it)."""
        self._built.wait()
        if self._worker is None:
            raise RuntimeError("the in-process enrichment worker could not start (see the log)")
        return self._worker

    def run(self) -> None:
        if self._build is not None:
            try:
                self._worker = self._build()
            except Exception:
                log.exception("the in-process enrichment worker could not start")
                return
            finally:
                self._built.set()
        assert self._worker is not None
        try:
            self._worker.run(self._stop_event, poll_interval=self.poll_interval)
        finally:
            self._worker.release()

    def stop(self, timeout: float | None = 30.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)


def start_in_process_worker(services: Services, *, poll_interval: float = 0.5, **kwargs: Any) -> WorkerThread:
    """Start a worker thread on these services and return it (call `.stop()` at shutdown). The thread builds
    its `Worker` (and compiles the enrich graph) itself, so this returns at once."""
    thread = WorkerThread(lambda: Worker(services, **kwargs), poll_interval=poll_interval)
    thread.start()
    return thread


def run_worker(
    settings: Settings | None = None,
    *,
    once: bool = False,
    max_jobs: int | None = None,
    lease_seconds: float = 120.0,
    poll_interval: float = 0.5,
    services: Services | None = None,
) -> int:
    """The `hippograph worker` loop. Returns how many jobs it processed.

    Raises `ProcessLayoutError` before claiming anything when the preference file is another process's.
    """
    settings = services.settings if services is not None else (settings or get_settings())
    # Refuse up front, before any job burns its attempts (a given, already open store needs no claim).
    opened = services is not None and getattr(services, "_preferences", None) is not None
    claim = None if opened else claim_lite_file(settings.milvus_path)
    try:
        services = services or Services.from_settings(settings)
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    worker = Worker(services, lease_seconds=lease_seconds)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping after the current job", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    try:
        return worker.run(stop, poll_interval=poll_interval, max_jobs=max_jobs, until_idle=once)
    finally:
        worker.release()
        services.close()
        if claim is not None:
            claim.release()
