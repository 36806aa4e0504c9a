"""The service's own small SQLite database: tokens, jobs, the audit log, forecast notes.

Forecast notes record how the service made each forecast (request fields and caller) and
the per-unit explanation columns of explained forecasts, which the store does not keep.

Kept beside the store (``placecast.duckdb`` -> ``placecast.service.sqlite``) so that the
store stays a plain data store and the service's bookkeeping survives a restart. Every
statement is parameterised; one lock serialises writers inside the process and SQLite's
own locking (WAL journal) covers other processes such as ``placecast token create``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["StateDB", "state_path_for", "utc_now"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    created TEXT NOT NULL,
    revoked TEXT,
    scheme TEXT NOT NULL DEFAULT 'scrypt',
    expires TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    params TEXT NOT NULL,
    n_done INTEGER NOT NULL DEFAULT 0,
    n_total INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    boot TEXT NOT NULL,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
CREATE TABLE IF NOT EXISTS audit_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    token_id TEXT,
    token_name TEXT,
    role TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    status INTEGER NOT NULL,
    client TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS forecast_notes (
    forecast_id INTEGER PRIMARY KEY,
    dataset TEXT,
    category TEXT,
    cell_size REAL,
    horizon TEXT,
    area TEXT,
    created_by TEXT
);
CREATE TABLE IF NOT EXISTS forecast_details (
    forecast_id INTEGER PRIMARY KEY,
    columns TEXT NOT NULL
);
"""


def utc_now() -> str:
    """The current UTC time as ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_path_for(store_url: str) -> Path:
    """Where the service keeps its state for a store at ``store_url``.

    A DuckDB file ``X.duckdb`` gets ``X.service.sqlite`` beside it; an in-memory or
    PostgreSQL store gets ``placecast.service.sqlite`` in the working directory.
    """
    text = os.fspath(store_url)
    if text == ":memory:" or "://" in text or text.lower().startswith("postgres"):
        return Path("placecast.service.sqlite")
    path = Path(text)
    return path.with_name(path.stem + ".service.sqlite")


class StateDB:
    """A thread-safe handle on the service's SQLite database."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._con = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                                    timeout=30.0)
        with self._lock:
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._con.executescript(_SCHEMA)
            self._migrate()

    def _migrate(self) -> None:
        """Add columns that newer versions use to a state file made by an older one.

        ``tokens.scheme`` (how the secret is hashed; rows made before it are scrypt) and
        ``tokens.expires`` (UTC expiry, empty = never).
        """
        have = {row[1] for row in self._con.execute("PRAGMA table_info(tokens)")}
        if "scheme" not in have:
            self._con.execute("ALTER TABLE tokens ADD COLUMN scheme TEXT NOT NULL "
                              "DEFAULT 'scrypt'")
        if "expires" not in have:
            self._con.execute("ALTER TABLE tokens ADD COLUMN expires TEXT")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one parameterised statement and return its rows."""
        with self._lock:
            return self._con.execute(sql, tuple(params)).fetchall()

    def execute_count(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one parameterised statement and return how many rows it changed."""
        with self._lock:
            return self._con.execute(sql, tuple(params)).rowcount

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and one ``BEGIN IMMEDIATE`` transaction."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    # ------------------------------------------------------------------ forecast notes
    def save_forecast_note(self, forecast_id: int, *, dataset: str | None,
                           category: list[str] | None, cell_size: float,
                           horizon: str | None, area: str | None,
                           created_by: str | None) -> None:
        """Record how the service made forecast ``forecast_id`` (request and caller)."""
        self.execute(
            "INSERT OR REPLACE INTO forecast_notes (forecast_id, dataset, category, "
            "cell_size, horizon, area, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (forecast_id, dataset, json.dumps(category) if category else None,
             float(cell_size), horizon, area, created_by))

    def forecast_note(self, forecast_id: int) -> dict[str, Any] | None:
        """What :meth:`save_forecast_note` recorded, or ``None`` (made elsewhere)."""
        rows = self.execute("SELECT category, cell_size, horizon, area, created_by FROM "
                            "forecast_notes WHERE forecast_id = ?", (forecast_id,))
        if not rows:
            return None
        category, cell_size, horizon, area, created_by = rows[0]
        return {"category": json.loads(category) if category else None,
                "cell_size": cell_size, "horizon": horizon, "area": area,
                "created_by": created_by}

    def save_forecast_details(self, forecast_id: int, details: pd.DataFrame) -> None:
        """Keep a forecast's per-unit explanation columns (the store keeps intensities).

        Parameters
        ----------
        forecast_id : int
            The saved forecast.
        details : DataFrame
            ``Forecast.details`` in unit order (strings and numbers only).
        """
        columns = {str(name): details[name].tolist() for name in details.columns}
        self.execute("INSERT OR REPLACE INTO forecast_details (forecast_id, columns) "
                     "VALUES (?, ?)", (forecast_id, json.dumps(columns)))

    def forecast_details(self, forecast_id: int) -> pd.DataFrame | None:
        """The columns :meth:`save_forecast_details` kept, or ``None``."""
        rows = self.execute("SELECT columns FROM forecast_details WHERE forecast_id = ?",
                            (forecast_id,))
        if not rows:
            return None
        import pandas as pd

        return pd.DataFrame(json.loads(rows[0][0]))

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._con.close()
