"""The embedded default store: one DuckDB file, no server, no extension.

Geometry is kept without DuckDB's spatial extension (which would have to be downloaded):
event coordinates are ``DOUBLE`` columns and polygons WKB ``BLOB`` s, readable by any GIS
after ``ST_GeomFromWKB``. DuckDB writes a transaction to its log only at commit, so an
import that fails or is killed leaves nothing behind.

A DuckDB file can be open for writing in one process at a time; a second process gets a
``DataError`` saying the file is busy. Any number of processes can open it read-only
(``read_only=True``) while no process writes to it: the workers of a region run do that.

A dataset's events split by region keep each import's rows of one region together (they
are inserted region by region), so DuckDB's per-row-group min/max statistics let a read of
one region skip the row groups of the others.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from placecast.exceptions import DataError
from placecast.store._sql import SQLStore

__all__ = ["DuckDBStore"]


class DuckDBStore(SQLStore):
    """A store in a DuckDB file (created when missing).

    Parameters
    ----------
    path : str
        The database file, e.g. ``placecast.duckdb`` (``":memory:"`` for a throwaway one).
    read_only : bool
        Open an existing store for reading only; several processes may do so at once.
    """

    types = {"text": "VARCHAR", "double": "DOUBLE", "blob": "BLOB"}

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        import duckdb

        self.url = str(path)
        if read_only and (path == ":memory:" or not Path(path).is_file()):
            raise DataError(f"{path}: no such store to read; create one by importing events "
                            "into it.")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            raise DataError(
                f"{path}: cannot open the DuckDB store ({exc}). If another placecast "
                "process is using it, wait for it to finish; if the file is not a DuckDB "
                "database, give another store path."
            ) from None
        except duckdb.Error as exc:
            raise DataError(f"{path}: cannot open the DuckDB store ({exc}). If this process "
                            "already has it open for writing, close that store first."
                            ) from None
        self._depth = 0
        self.read_only = read_only
        if read_only:
            self._check_schema()
        else:
            self._create_schema()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        # DuckDB wants every result consumed before the next statement: fetch it now.
        return _Result(self._con.execute(sql, list(params)).fetchall())

    def _rowcount(self, result: Any) -> int:
        row = result.fetchone()
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._check_writable()
        if self._depth:  # nested: part of the outer transaction
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._con.begin()
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self._con.rollback()
            raise
        self._depth = 0
        self._con.commit()

    def _stage_events(self, frame: pd.DataFrame) -> None:
        self._con.register("_staging_frame", frame)
        self._con.execute(
            "CREATE OR REPLACE TEMP TABLE _staging AS SELECT seq, "
            "CAST(time AS TIMESTAMP) AS time, x, y, "
            "CAST(category AS VARCHAR) AS category, weight, "
            "CAST(incident_id AS VARCHAR) AS incident_id, mark, occurrence, "
            "CAST(region AS VARCHAR) AS region FROM _staging_frame").fetchall()
        self._con.unregister("_staging_frame")

    def _drop_staging(self) -> None:
        self._con.execute("DROP TABLE IF EXISTS _staging").fetchall()

    def _insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        self._con.register("_insert_frame", frame)
        try:
            columns = ", ".join(frame.columns)
            self._con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} "
                              "FROM _insert_frame").fetchall()
        finally:
            self._con.unregister("_insert_frame")

    def _fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self._con.execute(sql, list(params)).df()

    def close(self) -> None:  # noqa: D102
        self._con.close()


class _Result:
    """Rows already fetched, with the cursor methods the shared code uses."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows
