"""Append-only log of who read or changed what, and when.

One row per API request: UTC time, the token (id, name, role; empty when the request
had none or a bad one), method, path, the action (the route template, e.g.
``GET /forecasts/{forecast_id}/geojson``), the target (the route's path parameters) and
the response status. SQLite triggers refuse every ``UPDATE`` and ``DELETE`` of the table,
so the service itself cannot rewrite history.

Entries are queued in memory and written in batches (one transaction every
``flush_interval`` seconds, or sooner when ``max_pending`` are waiting) by a background
thread, so a request does not wait for a SQLite insert; reading the log
(:meth:`AuditLog.entries`) and closing it write what is pending first.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from placecast.service._auth import Principal
from placecast.service._state import StateDB, utc_now

__all__ = ["AuditLog"]

_COLUMNS = ("seq", "time", "token_id", "token_name", "role", "method", "path", "action",
            "target", "status", "client")


_INSERT = ("INSERT INTO audit_log (time, token_id, token_name, role, method, path, action, "
           "target, status, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


class AuditLog:
    """Write and read the audit log.

    Parameters
    ----------
    state : StateDB
        The service's database.
    flush_interval : float
        Seconds between batched writes of queued entries (0: write each entry at once).
    max_pending : int
        Queued entries that trigger a write before the interval ends.
    """

    def __init__(self, state: StateDB, *, flush_interval: float = 0.25,
                 max_pending: int = 500) -> None:
        self._state = state
        self._flush_interval = flush_interval
        self._max_pending = max_pending
        self._pending: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()  # guards _pending
        self._write_lock = threading.Lock()  # one batch written at a time, in order
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        if flush_interval > 0:
            self._thread = threading.Thread(target=self._run, name="placecast-audit-log",
                                            daemon=True)
            self._thread.start()

    def record(self, *, principal: Principal | None, method: str, path: str, action: str,
               target: dict[str, Any] | None, status: int, client: str | None) -> None:
        """Append one entry (queued; written within ``flush_interval`` seconds)."""
        row = (utc_now(), principal.token_id if principal else None,
               principal.name if principal else None, principal.role if principal else None,
               method, path[:500], action[:200],
               json.dumps(target, sort_keys=True)[:500] if target else None, int(status),
               client)
        if self._thread is None or self._closed:
            self._state.execute(_INSERT, row)
            return
        with self._lock:
            self._pending.append(row)
            full = len(self._pending) >= self._max_pending
        if full:
            self._wake.set()

    def flush(self) -> None:
        """Write every queued entry now (one transaction)."""
        with self._write_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if rows:
                with self._state.transaction() as connection:
                    connection.executemany(_INSERT, rows)

    def close(self) -> None:
        """Stop the writer thread and write what is still queued."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep logging; the rows of a failed batch are reported
                logging.getLogger("placecast.service").exception("audit log write failed")

    def entries(self, *, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (older than sequence number ``before``)."""
        self.flush()
        if before is None:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_log ORDER BY seq DESC LIMIT ?",
                (int(limit),))
        else:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE seq < ? "
                "ORDER BY seq DESC LIMIT ?", (int(before), int(limit)))
        out = []
        for row in rows:
            entry = dict(zip(_COLUMNS, row, strict=True))
            entry["target"] = json.loads(entry["target"]) if entry["target"] else None
            out.append(entry)
        return out
