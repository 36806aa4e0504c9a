"""The server store: PostgreSQL with PostGIS, through psycopg 3.

Besides the exact coordinates (``x``, ``y`` metres) and WKB polygons that every store keeps,
``events.geom``, ``unit_cells.geom`` and ``alerts.geom`` are real PostGIS geometries in the
CRS's own units with its SRID (0 for local grids or CRSs PostGIS does not know), indexed
with GiST, so QGIS and ArcGIS can draw and query the tables directly. Events split by region
are read one region at a time through a ``(dataset, region, seq)`` b-tree index, so a
region's read touches only its own rows, already in import order.

Bulk loads use ``COPY``; every ingest is one transaction, so a failed or killed import
(a lost connection included) leaves the database as it was.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pandas as pd

from placecast.exceptions import DataError, ParameterError
from placecast.store._sql import STAGING_COLUMNS, SQLStore

__all__ = ["PostGISStore"]

_COPY_CHUNK = 100_000
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _placeholders(sql: str) -> str:
    return sql.replace("?", "%s")


class PostGISStore(SQLStore):
    """A store in a PostgreSQL database with the PostGIS extension.

    Parameters
    ----------
    url : str
        ``postgresql://user[:password]@host[:port]/database``; a ``schema=NAME`` query
        parameter selects the schema (created when missing).
    schema : str, optional
        The schema, overriding the URL's (default ``public``).
    read_only : bool
        Only read: no schema is created or upgraded, and every transaction of the
        connection is read-only (one per region task of a region run).

    Raises
    ------
    DataError
        If psycopg is missing, the server cannot be reached or PostGIS is not installed.
    """

    types = {"text": "TEXT", "double": "DOUBLE PRECISION", "blob": "BYTEA"}
    geometry_columns = {"event_geometry": ", geom geometry(Point)",
                        "cell_geometry": ", geom geometry",
                        "alert_geometry": ", geom geometry"}
    lock_clause = " FOR UPDATE"

    def __init__(self, url: str, *, schema: str | None = None, read_only: bool = False
                 ) -> None:
        try:
            import psycopg
        except ImportError:
            raise DataError(
                "the PostGIS store needs psycopg 3: pip install 'placecast[postgis]'."
            ) from None
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        schema = schema or query.pop("schema", None) or "public"
        if not _IDENTIFIER.match(schema):
            raise ParameterError(
                f"`schema` {schema!r} is not a plain lower-case SQL name (letters, digits, _).",
                param="schema"
            )
        self.schema = schema
        conninfo = urlunsplit(parts._replace(query=urlencode(query)))
        netloc = parts.netloc
        if parts.password is not None:  # never echo a password in messages
            netloc = netloc.replace(f":{parts.password}@", "@", 1)
        self.url = urlunsplit(parts._replace(netloc=netloc))
        try:
            self._con = psycopg.connect(conninfo, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise DataError(
                f"{self.url}: cannot connect to PostgreSQL ({str(exc).strip()}). Check the "
                "host, port, user and database in the URL and that the server is running."
            ) from None
        self._depth = 0
        self._srids: dict[int, bool] = {}
        self.read_only = read_only
        if read_only:
            self._set_search_path()
            self._con.execute("SET default_transaction_read_only = on")
            self._check_schema()
        else:
            self._setup_schema()
            self._create_schema()

    def _setup_schema(self) -> None:
        has_postgis = self._con.execute(
            "SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone()
        if has_postgis is None:
            try:
                self._con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            except Exception as exc:  # noqa: BLE001  (any server error says the same)
                raise DataError(
                    f"{self.url}: the PostGIS extension is not installed in this database "
                    f"and could not be created ({str(exc).strip()}); ask the database "
                    "owner to run CREATE EXTENSION postgis."
                ) from None
        self._con.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self._set_search_path()

    def _set_search_path(self) -> None:
        ext_schema = self._con.execute(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'postgis'").fetchone()
        path = [self.schema] + ([ext_schema[0]] if ext_schema and ext_schema[0] != self.schema
                                else [])
        self._con.execute("SET search_path TO " + ", ".join(f'"{p}"' for p in path))

    # ------------------------------------------------------------------ backend hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        import psycopg

        try:
            return self._con.execute(_placeholders(sql), list(params))
        except (psycopg.errors.UniqueViolation, psycopg.OperationalError) as exc:
            raise self._translate(exc) from None

    def _translate(self, exc: Exception) -> DataError:
        """A ``DataError`` for a concurrent write or a lost connection."""
        import psycopg

        if isinstance(exc, psycopg.errors.UniqueViolation):
            return DataError(
                f"{self.url}: another process wrote the same record at the same time "
                f"({str(exc).strip()}); nothing of this write was kept - run it again."
            )
        return DataError(
            f"{self.url}: the database connection failed ({str(exc).strip()}); any "
            "unfinished import was rolled back by the server - run it again."
        )

    def _rowcount(self, result: Any) -> int:
        return int(result.rowcount)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._check_writable()
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        import psycopg

        self._depth = 1
        try:
            with self._con.transaction():
                yield
        except (psycopg.errors.UniqueViolation, psycopg.OperationalError) as exc:
            raise self._translate(exc) from None
        finally:
            self._depth = 0

    def _create_indexes(self) -> None:
        for statement in (
            "CREATE INDEX IF NOT EXISTS events_dataset_id ON events (dataset, incident_id)",
            "CREATE INDEX IF NOT EXISTS events_dataset_time ON events (dataset, time)",
            "CREATE INDEX IF NOT EXISTS events_dataset_region ON events (dataset, region, seq)",
            "CREATE INDEX IF NOT EXISTS events_geom ON events USING GIST (geom)",
            "CREATE INDEX IF NOT EXISTS unit_cells_units ON unit_cells (units_id, idx)",
            "CREATE INDEX IF NOT EXISTS unit_cells_geom ON unit_cells USING GIST (geom)",
            "CREATE INDEX IF NOT EXISTS forecast_values_id ON forecast_values "
            "(forecast_id, idx)",
            "CREATE UNIQUE INDEX IF NOT EXISTS units_fingerprint ON units (fingerprint)",
        ):
            self._con.execute(statement)

    def _srid_known(self, srid: int) -> bool:
        if srid <= 0:
            return False
        if srid not in self._srids:
            row = self._con.execute("SELECT 1 FROM spatial_ref_sys WHERE srid = %s",
                                    (srid,)).fetchone()
            self._srids[srid] = row is not None
        return self._srids[srid]

    def _stage_events(self, frame: pd.DataFrame) -> None:
        self._con.execute(
            "CREATE TEMP TABLE _staging (seq BIGINT, time TIMESTAMP, x DOUBLE PRECISION, "
            "y DOUBLE PRECISION, category TEXT, weight DOUBLE PRECISION, incident_id TEXT, "
            "mark DOUBLE PRECISION, occurrence BIGINT, region TEXT) ON COMMIT DROP")
        # Binary COPY: doubles travel as IEEE bytes, so coordinates come back bit for bit.
        # Rows go in chunks to bound the memory of the Python row tuples.
        with self._con.cursor() as cursor, cursor.copy(
                "COPY _staging FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "timestamp", "float8", "float8", "text", "float8",
                            "text", "float8", "int8", "text"])
            for start in range(0, len(frame), _COPY_CHUNK):
                chunk = frame.iloc[start:start + _COPY_CHUNK]
                for row in zip(*(_column_values(chunk[name]) for name in STAGING_COLUMNS),
                               strict=True):
                    copy.write_row(row)

    def _drop_staging(self) -> None:
        self._con.execute("DROP TABLE IF EXISTS _staging")

    def _insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        columns = ", ".join(frame.columns)
        records = frame.astype(object).where(frame.notna(), None).itertuples(index=False,
                                                                              name=None)
        with self._con.cursor() as cursor, cursor.copy(
                f"COPY {table} ({columns}) FROM STDIN") as copy:
            for record in records:
                copy.write_row(tuple(_plain(v) for v in record))

    def _fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self._con.cursor() as cursor:
            cursor.execute(_placeholders(sql), list(params))
            names = [d.name for d in cursor.description or ()]
            return pd.DataFrame.from_records(cursor.fetchall(), columns=names)

    def _event_geometry_sql(self, metres_per_unit: float, srid: int) -> tuple[str, str]:
        scale = repr(1.0 / metres_per_unit) if metres_per_unit != 1.0 else "1.0"
        return ", geom", (f", ST_SetSRID(ST_MakePoint(s.x * {scale}, s.y * {scale}), "
                          f"{int(srid)})")

    def _after_units_insert(self, units_id: int, metres_per_unit: float, srid: int) -> None:
        scale = repr(1.0 / metres_per_unit)
        self._con.execute(
            f"UPDATE unit_cells SET geom = ST_SetSRID(ST_Scale(ST_GeomFromWKB(geometry), "
            f"{scale}, {scale}), {int(srid)}) WHERE units_id = %s", (units_id,))

    def _alert_geometry_sql(self) -> tuple[str, str]:
        # RFC 7946: GeoJSON coordinates are WGS 84 lon/lat.
        return ", geom", ", ST_SetSRID(ST_GeomFromGeoJSON(?), 4326)"

    def close(self) -> None:  # noqa: D102
        self._con.close()


def _column_values(series: pd.Series) -> list[Any]:
    """Python values of a column for ``COPY ... write_row`` (NaN and NaT as None)."""
    if series.dtype.kind == "M":
        return list(series.dt.to_pydatetime())
    if series.dtype == object:
        return series.tolist()
    values = series.to_numpy()
    out = values.tolist()
    if values.dtype.kind == "f" and np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value
