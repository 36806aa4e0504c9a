"""Background jobs (backtests, audits) that outlive the request that started them.

A job is a row in the service's state database (``queued`` -> ``running`` ->
``succeeded`` | ``failed``) with its parameters, progress ``(n_done, n_total)``, result
(JSON) or error message. Work runs on in-process worker threads by default; the work
function may itself hand the heavy part to Dask (``run_backtest(dask=...)``) when the
service is configured with a scheduler. A client that disconnects does not stop a job.

Robustness: each service start has a ``boot`` id. At start, every job left ``queued`` or
``running`` by an earlier boot is marked ``failed`` ("interrupted"), and a worker of an
earlier boot can no longer change its row: so a crash mid-job leaves the job failed and
nothing half-written (results are written to the store in one transaction at the end).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from placecast.exceptions import PlacecastError
from placecast.service._state import StateDB, utc_now

__all__ = ["JOB_KINDS", "DaskBackend", "JobManager", "ProgressCallback"]

JOB_KINDS = ("backtest", "audit", "scan", "hotspots")
ProgressCallback = Callable[[int, int], None]
JobFunction = Callable[[ProgressCallback], dict[str, Any]]

_COLUMNS = ("id", "kind", "status", "owner", "params", "n_done", "n_total", "result",
            "error", "created", "started", "finished")
_log = logging.getLogger("placecast.service")


class JobManager:
    """Queue and run jobs on ``workers`` threads; keep their state in ``state``."""

    def __init__(self, state: StateDB, *, workers: int = 1) -> None:
        self._state = state
        self.boot = secrets.token_hex(8)
        self._pool = ThreadPoolExecutor(max_workers=max(1, int(workers)),
                                        thread_name_prefix="placecast-job")
        self._idle = threading.Condition()
        self._running = 0
        self._state.execute(
            "UPDATE jobs SET status = 'failed', finished = ?, error = ? "
            "WHERE status IN ('queued', 'running')",
            (utc_now(), "interrupted: the service stopped while this job was queued or "
                        "running; start it again."))

    def submit(self, kind: str, params: dict[str, Any], function: JobFunction, *,
               owner: str | None = None) -> str:
        """Queue ``function(progress)`` as a job of ``kind``; return the job id."""
        job_id = secrets.token_hex(8)
        self._state.execute(
            "INSERT INTO jobs (id, kind, status, owner, params, boot, created) "
            "VALUES (?, ?, 'queued', ?, ?, ?, ?)",
            (job_id, kind, owner, json.dumps(params, sort_keys=True), self.boot, utc_now()))
        with self._idle:
            self._running += 1
        self._pool.submit(self._run, job_id, function)
        return job_id

    def _update(self, job_id: str, sql: str, params: tuple[Any, ...]) -> None:
        # Only this boot's workers may touch their own rows.
        self._state.execute(f"UPDATE jobs SET {sql} WHERE id = ? AND boot = ? "
                            "AND status IN ('queued', 'running')",
                            (*params, job_id, self.boot))

    def _run(self, job_id: str, function: JobFunction) -> None:
        try:
            self._update(job_id, "status = 'running', started = ?", (utc_now(),))

            def progress(n_done: int, n_total: int) -> None:
                self._update(job_id, "n_done = ?, n_total = ?", (int(n_done), int(n_total)))

            try:
                result = function(progress)
            except PlacecastError as exc:
                from placecast.exceptions import render_message
                from placecast.service._work import api_message, field_for

                self._update(job_id, "status = 'failed', finished = ?, error = ?",
                             (utc_now(), api_message(render_message(exc, field_for))))
                return
            except Exception:
                _log.exception("job %s failed", job_id)
                self._update(job_id, "status = 'failed', finished = ?, error = ?",
                             (utc_now(), "internal error: see the service log."))
                return
            self._update(job_id, "status = 'succeeded', finished = ?, result = ?",
                         (utc_now(), json.dumps(result, default=str)))
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def get(self, job_id: str) -> dict[str, Any] | None:
        """One job as a dict, or ``None``."""
        rows = self._state.execute(f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?",
                                   (job_id,))
        return _as_dict(rows[0]) if rows else None

    def list(self, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Jobs, newest first (optionally of one kind)."""
        if kind is None:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs ORDER BY created DESC, id LIMIT ?",
                (int(limit),))
        else:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE kind = ? "
                "ORDER BY created DESC, id LIMIT ?", (kind, int(limit)))
        return [_as_dict(row) for row in rows]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job of this boot is queued or running; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout=timeout)

    def shutdown(self, wait: bool = False) -> None:
        """Stop taking jobs (running ones finish when ``wait``)."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


class DaskBackend:
    """Where jobs send their heavy part when the service is configured with Dask.

    ``"local"`` starts one ``LocalCluster`` (worker processes, no dashboard) on first use
    and keeps it for the life of the service; any other value is a scheduler address
    (``tcp://host:8786``) handed to the work as is.
    """

    def __init__(self, setting: str | None, *, n_workers: int = 2) -> None:
        self.setting = setting
        self.n_workers = n_workers
        self._cluster: Any = None
        self._lock = threading.Lock()

    def address(self) -> str | None:
        """The scheduler address for the work, or ``None`` to run in-process."""
        if self.setting is None:
            return None
        if self.setting != "local":
            return self.setting
        with self._lock:
            if self._cluster is None:
                import tempfile

                from dask.distributed import LocalCluster

                self._cluster = LocalCluster(
                    n_workers=self.n_workers, threads_per_worker=1, processes=True,
                    dashboard_address=None, local_directory=tempfile.mkdtemp(
                        prefix="placecast-dask-"))
            return str(self._cluster.scheduler_address)

    def close(self) -> None:
        """Stop the local cluster, if one was started."""
        with self._lock:
            if self._cluster is not None:
                self._cluster.close()
                self._cluster = None


def _as_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    job = dict(zip(_COLUMNS, row, strict=True))
    job["params"] = json.loads(job["params"])
    job["result"] = json.loads(job["result"]) if job["result"] else None
    total = job["n_total"]
    job["progress"] = (job["n_done"] / total) if total else (
        1.0 if job["status"] == "succeeded" else 0.0)
    return job
