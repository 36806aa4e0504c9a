"""What the DuckDB and PostGIS stores share: the schema, ingest, de-duplication, loading.

Subclasses supply the connection, the SQL types, bulk loading and the geometry columns.
SQL here uses ``?`` placeholders; the PostGIS store translates them to ``%s``.

Tables (one set per database or schema)::

    datasets        name, crs, metres_per_unit, input_crs, timezone, fields, srid,
                    n_events, next_seq, created, updated
    imports         id, dataset, source, imported, n_read, n_new, n_duplicates
    events          dataset, seq, import_id, time, x, y, category, weight, incident_id,
                    mark, occurrence, region (+ geom on PostGIS)
    units           id, name, fingerprint, kind, crs, ..., description, grid, region (WKB)
    unit_cells      units_id, idx, unit_id, grid_col, grid_row, geometry (WKB) (+ geom)
    forecasts       id, name, created, model, params, window_start, window_end, units_id,
                    n_units, expected_total, dataset
    forecast_values forecast_id, idx, intensity
    backtests       id, created, meta, n_rows, frame (the BacktestResult as Parquet
                    bytes: BacktestResult.to_parquet_bytes, exact round trip)
    backtest_rows   backtest_id, row_number, origin, horizon, model, n_events, ... (for SQL)
    alerts          id, created, kind, geometry (GeoJSON text), observed, expected,
                    p_value, acknowledged, extra (+ geom on PostGIS)

Times are naive wall-clock ``TIMESTAMP`` (microseconds); ``created``/``imported`` are UTC.
Internal coordinates (metres) are stored exactly as ``DOUBLE``/WKB so that a round trip
returns identical arrays; PostGIS ``geom`` columns hold the same geometry in the CRS's own
units with its SRID.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import shapely

from placecast.evaluate import BacktestResult
from placecast.events import EVENT_FIELDS, Events, LoadReport, SpatialReference, to_datetime64
from placecast.exceptions import DataError, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.store import (
    ALERT_KEYS,
    BACKTEST_COLUMNS,
    BacktestInfo,
    DatasetInfo,
    ForecastInfo,
    IngestReport,
    Store,
    check_dataset_name,
)
from placecast.units import GridSpec, Units

__all__ = ["SQLStore"]

SCHEMA_VERSION = "1"
OPTIONAL_FIELDS = tuple(f for f in EVENT_FIELDS if f not in ("time", "x", "y"))
STAGING_COLUMNS = ("seq", "time", "x", "y", "category", "weight", "incident_id", "mark",
                   "occurrence", "region")

_TABLES = """
CREATE SEQUENCE IF NOT EXISTS placecast_ids START 1;
CREATE TABLE IF NOT EXISTS placecast_meta (key {text} PRIMARY KEY, value {text});
CREATE TABLE IF NOT EXISTS datasets (
    name {text} PRIMARY KEY, crs {text} NOT NULL, metres_per_unit {double} NOT NULL,
    input_crs {text}, timezone {text}, fields {text} NOT NULL, srid INTEGER NOT NULL,
    n_events BIGINT NOT NULL, next_seq BIGINT NOT NULL,
    created TIMESTAMP NOT NULL, updated TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS imports (
    id BIGINT PRIMARY KEY, dataset {text} NOT NULL, source {text} NOT NULL,
    imported TIMESTAMP NOT NULL, n_read BIGINT NOT NULL, n_new BIGINT NOT NULL,
    n_duplicates BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    dataset {text} NOT NULL, seq BIGINT NOT NULL, import_id BIGINT NOT NULL,
    time TIMESTAMP NOT NULL, x {double} NOT NULL, y {double} NOT NULL, category {text},
    weight {double}, incident_id {text}, mark {double}, occurrence BIGINT NOT NULL,
    region {text}{event_geometry});
CREATE TABLE IF NOT EXISTS units (
    id BIGINT PRIMARY KEY, name {text}, fingerprint {text} NOT NULL, kind {text} NOT NULL,
    crs {text} NOT NULL, metres_per_unit {double} NOT NULL, input_crs {text},
    n_units BIGINT NOT NULL, description {text}, grid {text}, region {blob},
    created TIMESTAMP NOT NULL);
CREATE TABLE IF NOT EXISTS unit_cells (
    units_id BIGINT NOT NULL, idx BIGINT NOT NULL, unit_id {text} NOT NULL,
    grid_col BIGINT, grid_row BIGINT, geometry {blob} NOT NULL{cell_geometry});
CREATE TABLE IF NOT EXISTS forecasts (
    id BIGINT PRIMARY KEY, name {text} NOT NULL, created TIMESTAMP NOT NULL,
    model {text} NOT NULL, params {text}, window_start TIMESTAMP NOT NULL,
    window_end TIMESTAMP NOT NULL, units_id BIGINT NOT NULL, n_units BIGINT NOT NULL,
    expected_total {double} NOT NULL, dataset {text});
CREATE TABLE IF NOT EXISTS forecast_values (
    forecast_id BIGINT NOT NULL, idx BIGINT NOT NULL, intensity {double} NOT NULL);
CREATE TABLE IF NOT EXISTS backtests (
    id BIGINT PRIMARY KEY, created TIMESTAMP NOT NULL, meta {text}, n_rows BIGINT NOT NULL,
    frame {blob} NOT NULL);
CREATE TABLE IF NOT EXISTS backtest_rows (
    backtest_id BIGINT NOT NULL, row_number BIGINT NOT NULL, origin TIMESTAMP,
    horizon {text}, model {text}, n_events {double}, n_flagged_units {double},
    flagged_area {double}, region_area {double}, hits {double}, hit_rate {double},
    pai {double}, pei_star {double}, log_score {double});
CREATE TABLE IF NOT EXISTS alerts (
    id {text} PRIMARY KEY, created TIMESTAMP NOT NULL, kind {text}, geometry {text},
    observed {double}, expected {double}, p_value {double},
    acknowledged BOOLEAN NOT NULL, extra {text}{alert_geometry});
"""


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _iso(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return pd.Timestamp(value).isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def dumps(value: Any) -> str:
    """JSON text for metadata (numpy scalars, arrays and times converted)."""
    return json.dumps(value, default=_json_default, sort_keys=True)


def srid_of(crs: str) -> int:
    """Return the EPSG code of ``crs`` (``"EPSG:2913"`` -> 2913), else 0."""
    head, _, code = crs.partition(":")
    if head.upper() == "EPSG" and code.isdigit():
        return int(code)
    return 0


def region_labels(events: Events, region: str | None, by: Any) -> np.ndarray | None:
    """The region of each event from ``region`` (one for all) or ``by`` (one per event).

    ``by`` is a :class:`placecast.regions.RegionSplit` or a sequence of region names aligned
    with the events. ``None`` when neither is given (events without a region).
    """
    if region is not None and by is not None:
        raise ParameterError("give `region` (one region for all the events) or `by` (a "
                             "region per event), not both.", param=("region", "by"))
    if region is not None:
        if not isinstance(region, str) or not region.strip():
            raise ParameterError(f"`region` must be a non-empty region name, got {region!r}.",
                                 param="region")
        return np.full(len(events), region, dtype=object)
    if by is None:
        return None
    from placecast.regions import RegionSplit, regions_from_labels

    split = by if isinstance(by, RegionSplit) else regions_from_labels(
        by, source="region names given as `by`")
    if len(split.labels) != len(events):
        raise ParameterError(f"`by` gives {len(split.labels):,} region names for "
                             f"{len(events):,} events; give one per event.", param="by")
    return np.asarray(split.labels, dtype=object)


class SQLStore(Store):
    """The shared implementation; see ``DuckDBStore`` and ``PostGISStore``."""

    #: SQL type names for ``_TABLES``.
    types: dict[str, str] = {"text": "TEXT", "double": "DOUBLE", "blob": "BLOB"}
    #: Extra column DDL (PostGIS geometry columns).
    geometry_columns: dict[str, str] = {"event_geometry": "", "cell_geometry": "",
                                        "alert_geometry": ""}
    #: Row lock for read-modify-write of a dataset row.
    lock_clause = ""
    #: Opened with ``read_only=True``: every write is refused.
    read_only = False

    # ------------------------------------------------------------------ backend hooks
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one statement; return an object with ``fetchone``/``fetchall``."""
        raise NotImplementedError

    def _rowcount(self, result: Any) -> int:
        """Rows affected by an INSERT/DELETE run with ``_execute``."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        raise NotImplementedError
        yield  # pragma: no cover

    def _stage_events(self, frame: pd.DataFrame) -> None:
        """Put ``frame`` (``STAGING_COLUMNS``) into the temporary table ``_staging``."""
        raise NotImplementedError

    def _drop_staging(self) -> None:
        """Remove ``_staging``."""
        raise NotImplementedError

    def _insert_frame(self, table: str, frame: pd.DataFrame) -> None:
        """Append ``frame`` (columns named as in ``table``) to ``table``."""
        raise NotImplementedError

    def _fetch_frame(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        """Run a query and return its rows as a DataFrame."""
        raise NotImplementedError

    def _event_geometry_sql(self, metres_per_unit: float, srid: int) -> tuple[str, str]:
        """``(", geom", ", <expression over s.x, s.y>")`` for the events insert, or blanks."""
        return "", ""

    def _after_units_insert(self, units_id: int, metres_per_unit: float, srid: int) -> None:
        """Fill backend geometry columns of ``unit_cells`` (PostGIS)."""

    def _alert_geometry_sql(self) -> tuple[str, str]:
        """``(", geom", ", <expression of the GeoJSON parameter>")`` for alerts, or blanks."""
        return "", ""

    def _srid_known(self, srid: int) -> bool:
        return srid > 0

    def _check_writable(self) -> None:
        if self.read_only:
            raise DataError(f"{self.url}: this store was opened read-only; open it again "
                            "without `read_only` to change it.", param="read_only")

    def _before_commit(self, dataset: str) -> None:
        """Run inside an ingest transaction after the rows are written (a test seam)."""

    # ------------------------------------------------------------------ schema
    def _create_schema(self) -> None:
        ddl = _TABLES.format(**self.types, **self.geometry_columns)
        with self._transaction():
            for statement in ddl.split(";"):
                if statement.strip():
                    self._execute(statement)
            self._migrate()
            self._create_indexes()
            row = self._execute("SELECT value FROM placecast_meta WHERE key = 'schema'"
                                ).fetchone()
            if row is None:
                self._execute("INSERT INTO placecast_meta VALUES ('schema', ?)",
                              (SCHEMA_VERSION,))
            else:
                self._check_version(row[0])

    def _check_version(self, version: str) -> None:
        if version != SCHEMA_VERSION:
            raise DataError(
                f"{self.url}: store schema version {version} is not the version this "
                f"placecast understands ({SCHEMA_VERSION}); upgrade placecast."
            )

    def _event_columns(self) -> set[str]:
        return {str(c).lower() for c in
                self._fetch_frame("SELECT * FROM events WHERE 1 = 0").columns}

    def _migrate(self) -> None:
        """Bring a store written by an earlier placecast up to date (additive only).

        Stores from before regions get a ``region`` column, NULL for every stored event:
        their datasets keep working as datasets without regions.
        """
        if "region" not in self._event_columns():
            self._execute(f"ALTER TABLE events ADD COLUMN region {self.types['text']}")

    def _check_schema(self) -> None:
        """For a read-only connection: the store exists, has this version and regions."""
        try:
            row = self._execute("SELECT value FROM placecast_meta WHERE key = 'schema'"
                                ).fetchone()
            columns = self._event_columns()
        except Exception as exc:  # noqa: BLE001  (a missing table, in either backend)
            raise DataError(
                f"{self.url}: not a placecast store ({str(exc).strip().splitlines()[0]}); "
                "create one by importing events into it."
            ) from None
        if row is None:
            raise DataError(f"{self.url}: not a placecast store (no schema version); "
                            "create one by importing events into it.")
        self._check_version(row[0])
        if "region" not in columns:
            raise DataError(
                f"{self.url}: the store was written by an earlier placecast and has no "
                "region column yet; open it once for writing (for example list its "
                "datasets) to upgrade it, then read it again."
            )

    def _create_indexes(self) -> None:
        """Create indexes (none by default: DuckDB's zone maps are enough)."""

    def _next_id(self) -> int:
        return int(self._execute("SELECT nextval('placecast_ids')").fetchone()[0])

    # ------------------------------------------------------------------ datasets
    def _dataset_row(self, dataset: str, *, lock: bool = False) -> dict[str, Any] | None:
        row = self._execute(
            "SELECT name, crs, metres_per_unit, input_crs, timezone, fields, srid, n_events, "
            "next_seq, created, updated FROM datasets WHERE name = ?"
            + (self.lock_clause if lock else ""), (dataset,)).fetchone()
        if row is None:
            return None
        keys = ("name", "crs", "metres_per_unit", "input_crs", "timezone", "fields", "srid",
                "n_events", "next_seq", "created", "updated")
        out = dict(zip(keys, row, strict=True))
        out["fields"] = tuple(f for f in str(out["fields"]).split(",") if f)
        return out

    def _require_dataset(self, dataset: str) -> dict[str, Any]:
        row = self._dataset_row(dataset)
        if row is None:
            names = [r[0] for r in self._execute("SELECT name FROM datasets ORDER BY name"
                                                 ).fetchall()]
            known = ", ".join(names) if names else "none yet"
            raise DataError(
                f"{self.url}: no dataset {dataset!r} (datasets: {known}); pass one of them "
                "as `dataset`, or import events into this one first.", param="dataset"
            )
        return row

    def add_events(self, dataset: str, events: Events, *, source: str | None = None,
                   region: str | None = None, by: Any = None
                   ) -> IngestReport:  # noqa: D102 (documented on Store)
        check_dataset_name(dataset)
        if not isinstance(events, Events):
            raise ParameterError(f"`events` must be an Events object, got {type(events)!r}.",
                                 param="events")
        labels = region_labels(events, region, by)
        if source is None:
            source = events.report.source if events.report is not None else "<api>"
        nanos = events.time.astype("int64")
        if len(events) and (nanos % 1000 != 0).any():
            raise DataError(
                f"{source}: {int((nanos % 1000 != 0).sum())} event times have "
                "sub-microsecond parts, which the store cannot keep; round the `events` "
                "times to microseconds first (events.time.astype('datetime64[us]')).",
                param="events"
            )
        fields = tuple(f for f in OPTIONAL_FIELDS if getattr(events, f) is not None)
        sref = events.spatial_reference
        with self._transaction():
            info = self._dataset_row(dataset, lock=True)
            now = _now()
            if info is None:
                srid = srid_of(sref.crs)
                srid = srid if self._srid_known(srid) else 0
                self._execute(
                    "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, 0, 0, ?, ?)",
                    (dataset, sref.crs, float(sref.metres_per_unit), sref.input_crs,
                     events.timezone, ",".join(fields), srid, now, now))
                info = self._dataset_row(dataset)
                assert info is not None
            x, y = self._check_compatible(dataset, info, events, fields, source)
            self._check_regions_match(dataset, labels is not None, source)
            import_id = self._next_id()
            frame = self._staging_frame(events, x, y, int(info["next_seq"]), labels)
            keep = ~self._mark_batch(frame)
            n_new = self._insert_new_events(dataset, info, import_id,
                                            frame[keep].reset_index(drop=True))
            n_duplicates = len(events) - n_new
            self._execute("INSERT INTO imports VALUES (?, ?, ?, ?, ?, ?, ?)",
                          (import_id, dataset, str(source), now, len(events), n_new,
                           n_duplicates))
            self._execute(
                "UPDATE datasets SET n_events = n_events + ?, next_seq = next_seq + ?, "
                "updated = ? WHERE name = ?", (n_new, len(events), now, dataset))
            self._before_commit(dataset)
        return IngestReport(dataset, str(source), len(events), n_new, n_duplicates, import_id)

    def _check_compatible(self, dataset: str, info: dict[str, Any], events: Events,
                          fields: tuple[str, ...], source: str) -> tuple[np.ndarray, np.ndarray]:
        sref = events.spatial_reference
        if tuple(info["fields"]) != fields:
            have = ", ".join(info["fields"]) or "none"
            got = ", ".join(fields) or "none"
            differ = [f for f in OPTIONAL_FIELDS if (f in info["fields"]) != (f in fields)]
            raise DataError(
                f"{source}: dataset {dataset!r} holds the optional fields [{have}] but these "
                f"events have [{got}]; read them with the same columns as before ("
                f"{', '.join(f'`{f}`' for f in differ)}) or import them into a new dataset.",
                param=tuple(differ)
            )
        if (info["timezone"] or None) != (events.timezone or None):
            raise DataError(
                f"{source}: dataset {dataset!r} has times in time zone {info['timezone']!r} "
                f"but these events are in {events.timezone!r}; read them with `timezone` "
                f"{info['timezone'] or '(none)'} or use a new dataset.", param="timezone"
            )
        target = SpatialReference(info["crs"], float(info["metres_per_unit"]),
                                  info["input_crs"])
        if sref.crs == target.crs and float(sref.metres_per_unit) == target.metres_per_unit:
            return events.x, events.y
        if sref.is_local or target.is_local:
            raise DataError(
                f"{source}: dataset {dataset!r} is in {target.crs} but these events are in "
                f"{sref.crs}; read them with `crs` {target.crs} or use a new dataset.",
                param="crs"
            )
        cx, cy = sref.to_crs_coordinates(events.x, events.y, target.crs)
        return target.from_crs_coordinates(cx, cy)

    def _check_regions_match(self, dataset: str, with_regions: bool, source: str) -> None:
        """Refuse to mix events with and without a region in one dataset."""
        other = self._execute(
            "SELECT 1 FROM events WHERE dataset = ? AND region IS "
            + ("NULL" if with_regions else "NOT NULL") + " LIMIT 1", (dataset,)).fetchone()
        if other is None:
            return
        if with_regions:
            raise DataError(
                f"{source}: dataset {dataset!r} holds events without a region, so these "
                "cannot be added by region; import them without `by`, or into a new "
                "dataset (a dataset is split by region from its first import).", param="by")
        raise DataError(
            f"{source}: dataset {dataset!r} is split by region, so these events need one "
            "too; give each its region with `by`, or import them into a new dataset.",
            param="by")

    @staticmethod
    def _staging_frame(events: Events, x: np.ndarray, y: np.ndarray, first_seq: int,
                       labels: np.ndarray | None = None) -> pd.DataFrame:
        n = len(events)

        def text(values: np.ndarray | None) -> pd.Series:
            out = np.full(n, None, dtype=object)
            if values is not None:
                present = pd.notna(values)
                out[present] = [v if isinstance(v, str) else str(v) for v in values[present]]
            return pd.Series(out, dtype=object)  # object, not str: missing stays None

        def number(values: np.ndarray | None) -> np.ndarray:
            return np.full(n, np.nan) if values is None else np.asarray(values, dtype=float)

        return pd.DataFrame({
            "seq": np.arange(first_seq, first_seq + n, dtype=np.int64),
            "time": events.time.astype("datetime64[us]"),
            "x": np.asarray(x, dtype=float),
            "y": np.asarray(y, dtype=float),
            "category": text(events.category),
            "weight": number(events.weight),
            "incident_id": text(events.incident_id),
            "mark": number(events.mark),
            "occurrence": np.zeros(n, dtype=np.int64),
            "region": text(labels),
        })

    @staticmethod
    def _mark_batch(frame: pd.DataFrame) -> np.ndarray:
        """Set ``occurrence`` of identical rows; return the rows that repeat an incident id.

        Rows with an incident id repeating an earlier row's id are duplicates. Rows without
        one get ``occurrence`` = how many identical ``(time, x, y, category)`` rows came
        before them in the batch: with date-only times, two burglaries at one address on
        one day are two events, so the k-th copy is matched only with a stored k-th copy
        (a multiset difference: re-importing a file adds nothing, a longer export adds only
        what is new). O(n) hashing.
        """
        has_id = frame["incident_id"].notna().to_numpy()
        duplicated = np.zeros(len(frame), dtype=bool)
        if has_id.any():
            duplicated[has_id] = frame.loc[has_id, "incident_id"].duplicated().to_numpy()
        if (~has_id).any():
            rest = frame.loc[~has_id, ["time", "x", "y", "category"]].copy()
            rest["category"] = rest["category"].fillna("")
            occurrence = rest.groupby(["time", "x", "y", "category"], sort=False).cumcount()
            frame.loc[~has_id, "occurrence"] = occurrence.to_numpy(dtype=np.int64)
        return duplicated

    def _insert_new_events(self, dataset: str, info: dict[str, Any], import_id: int,
                           frame: pd.DataFrame) -> int:
        if len(frame) == 0:
            return 0
        self._stage_events(frame)
        try:
            geom_col, geom_expr = self._event_geometry_sql(float(info["metres_per_unit"]),
                                                           int(info["srid"]))
            insert = (
                "INSERT INTO events (dataset, seq, import_id, time, x, y, category, weight, "
                f"incident_id, mark, occurrence, region{geom_col}) SELECT ?, s.seq, ?, "
                "s.time, s.x, s.y, s.category, s.weight, s.incident_id, s.mark, s.occurrence, "
                f"s.region{geom_expr} FROM _staging s "
            )
            # rows go in region by region, so each region's rows of an import are stored
            # together (DuckDB's per-row-group min/max then skips other regions' rows)
            order = " ORDER BY s.region, s.seq"
            n_new = 0
            if frame["incident_id"].notna().any():
                n_new += self._rowcount(self._execute(
                    insert + "WHERE s.incident_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                    "events e WHERE e.dataset = ? AND e.incident_id = s.incident_id)" + order,
                    (dataset, import_id, dataset)))
            if frame["incident_id"].isna().any():
                n_new += self._rowcount(self._execute(
                    insert + "WHERE s.incident_id IS NULL AND NOT EXISTS (SELECT 1 FROM "
                    "events e WHERE e.dataset = ? AND e.time = s.time AND e.x = s.x AND "
                    "e.y = s.y AND COALESCE(e.category, '') = COALESCE(s.category, '') AND "
                    "e.occurrence = s.occurrence)" + order,
                    (dataset, import_id, dataset)))
        finally:
            self._drop_staging()
        return n_new

    def load_events(self, dataset: str, since: Any = None, until: Any = None,
                    categories: list[str] | None = None, *, region: str | None = None
                    ) -> Events:  # noqa: D102
        info = self._require_dataset(dataset)
        fields = info["fields"]
        where = ["dataset = ?"]
        params: list[Any] = [dataset]
        filtered: dict[str, int] = {}
        n_rows = int(info["n_events"])
        if region is not None:
            n_rows = self._region_size(dataset, region)
            where.append("region = ?")
            params.append(region)
        if since is not None:
            where.append("time >= ?")
            params.append(pd.Timestamp(to_datetime64(since, name="since")).to_pydatetime())
        if until is not None:
            where.append("time < ?")
            params.append(pd.Timestamp(to_datetime64(until, name="until")).to_pydatetime())
        if categories:
            if "category" not in fields:
                raise ParameterError(
                    f"dataset {dataset!r} has no category field, so it cannot be filtered "
                    "by category; drop `categories`, or import the events again with a "
                    "`category` column.", param=("categories", "category")
                )
            wanted = sorted({str(c).strip().upper() for c in categories})
            where.append(f"UPPER(category) IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        columns = ["time", "x", "y", *fields]
        frame = self._fetch_frame(
            f"SELECT {', '.join(columns)} FROM events WHERE {' AND '.join(where)} "
            "ORDER BY seq", params)
        if len(where) > (1 if region is None else 2):
            filtered["since/until/categories"] = n_rows - len(frame)

        def text(name: str) -> np.ndarray | None:
            if name not in fields:
                return None
            series = frame[name].astype(object)
            return series.where(series.notna(), None).to_numpy(dtype=object)

        def number(name: str) -> np.ndarray | None:
            return frame[name].to_numpy(dtype=float) if name in fields else None

        sref = SpatialReference(info["crs"], float(info["metres_per_unit"]), info["input_crs"])
        report = LoadReport(
            source=f"{self.url}#{dataset}" + (f" region {region!r}" if region is not None
                                              else ""), n_rows=n_rows, n_kept=len(frame),
            columns={c: c for c in columns}, filtered=filtered,
            crs_note=f"{sref.crs} (stored with dataset {dataset!r})",
        )
        return Events(
            time=np.asarray(pd.to_datetime(frame["time"]), dtype="datetime64[ns]"),
            x=frame["x"].to_numpy(dtype=float),
            y=frame["y"].to_numpy(dtype=float),
            spatial_reference=sref,
            category=text("category"),
            weight=number("weight"),
            incident_id=text("incident_id"),
            mark=number("mark"),
            timezone=info["timezone"],
            report=report,
        )

    def _region_size(self, dataset: str, region: str) -> int:
        """Events of one region (a range scan), or a ``DataError`` naming the regions."""
        if not isinstance(region, str):
            raise ParameterError(f"`region` must be a region name, got {region!r}.",
                                 param="region")
        n = int(self._execute("SELECT COUNT(*) FROM events WHERE dataset = ? AND region = ?",
                              (dataset, region)).fetchone()[0])
        if n:
            return n
        names = list(self.list_regions(dataset))
        if not names:
            raise DataError(
                f"{self.url}: dataset {dataset!r} is not split by region; read it without "
                "`region`, or import it again with `by` to split it.", param="region")
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        raise DataError(f"{self.url}: dataset {dataset!r} has no region {region!r} "
                        f"(regions: {shown}); pass one of them as `region`.", param="region")

    def list_regions(self, dataset: str) -> dict[str, int]:  # noqa: D102
        self._require_dataset(dataset)
        rows = self._execute(
            "SELECT region, COUNT(*) FROM events WHERE dataset = ? AND region IS NOT NULL "
            "GROUP BY region ORDER BY region", (dataset,)).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def list_datasets(self) -> list[DatasetInfo]:  # noqa: D102
        rows = self._execute(
            "SELECT d.name, d.n_events, d.crs, d.input_crs, d.metres_per_unit, d.timezone, "
            "d.fields, d.created, d.updated, "
            "(SELECT COUNT(*) FROM imports i WHERE i.dataset = d.name), "
            "(SELECT MIN(time) FROM events e WHERE e.dataset = d.name), "
            "(SELECT MAX(time) FROM events e WHERE e.dataset = d.name) "
            "FROM datasets d ORDER BY d.name").fetchall()
        return [DatasetInfo(
            name=r[0], n_events=int(r[1]), n_imports=int(r[9]), start=_iso(r[10]),
            end=_iso(r[11]), crs=r[2], input_crs=r[3], metres_per_unit=float(r[4]),
            timezone=r[5], fields=tuple(f for f in str(r[6]).split(",") if f),
            created=_iso(r[7]) or "", updated=_iso(r[8]) or "",
        ) for r in rows]

    def delete_dataset(self, dataset: str) -> int:  # noqa: D102
        with self._transaction():
            info = self._require_dataset(dataset)
            self._execute("DELETE FROM events WHERE dataset = ?", (dataset,))
            self._execute("DELETE FROM imports WHERE dataset = ?", (dataset,))
            self._execute("DELETE FROM datasets WHERE name = ?", (dataset,))
        return int(info["n_events"])

    def imports(self, dataset: str) -> pd.DataFrame:
        """Return the import log: id, source, imported (UTC), n_read, n_new, n_duplicates."""
        self._require_dataset(dataset)
        return self._fetch_frame(
            "SELECT id, source, imported, n_read, n_new, n_duplicates FROM imports "
            "WHERE dataset = ? ORDER BY id", (dataset,))

    # ------------------------------------------------------------------ units
    @staticmethod
    def _units_fingerprint(units: Units, wkb: np.ndarray) -> str:
        digest = hashlib.sha256()
        sref = units.spatial_reference
        digest.update(dumps([units.kind, sref.crs, sref.metres_per_unit, sref.input_crs,
                             units.description]).encode())
        digest.update("\x00".join(map(str, units.unit_id)).encode())
        for blob in wkb:
            digest.update(blob)
        digest.update(shapely.to_wkb(units.region))
        return digest.hexdigest()

    def save_units(self, units: Units, name: str | None = None) -> int:  # noqa: D102
        with self._transaction():
            return self._save_units(units, name)

    def _save_units(self, units: Units, name: str | None) -> int:
        wkb = np.asarray(shapely.to_wkb(units.geometry), dtype=object)
        fingerprint = self._units_fingerprint(units, wkb)
        row = self._execute("SELECT id FROM units WHERE fingerprint = ?", (fingerprint,)
                            ).fetchone()
        if row is not None:
            return int(row[0])
        sref = units.spatial_reference
        units_id = self._next_id()
        grid = None
        if units.grid is not None:
            g = units.grid
            grid = dumps({"origin": list(g.origin), "cell_size": g.cell_size,
                          "n_cols": g.n_cols, "n_rows": g.n_rows, "rotation": g.rotation})
        self._execute(
            "INSERT INTO units VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (units_id, name, fingerprint, units.kind, sref.crs, float(sref.metres_per_unit),
             sref.input_crs, len(units), dumps(units.description), grid,
             shapely.to_wkb(units.region), _now()))
        cells = units.grid_cells
        frame = pd.DataFrame({
            "units_id": np.full(len(units), units_id, dtype=np.int64),
            "idx": np.arange(len(units), dtype=np.int64),
            "unit_id": pd.Series([str(u) for u in units.unit_id], dtype=object),
            "grid_col": pd.Series(cells[:, 0] if cells is not None else [None] * len(units),
                                  dtype=object),
            "grid_row": pd.Series(cells[:, 1] if cells is not None else [None] * len(units),
                                  dtype=object),
            "geometry": pd.Series([bytes(b) for b in wkb], dtype=object),
        })
        self._insert_frame("unit_cells", frame)
        self._after_units_insert(units_id, float(sref.metres_per_unit), srid_of(sref.crs)
                                 if self._srid_known(srid_of(sref.crs)) else 0)
        return units_id

    def load_units(self, units_id: int) -> Units:  # noqa: D102
        row = self._execute(
            "SELECT kind, crs, metres_per_unit, input_crs, description, grid, region "
            "FROM units WHERE id = ?", (int(units_id),)).fetchone()
        if row is None:
            raise DataError(f"{self.url}: no saved area units with id {units_id}.")
        kind, crs, mpu, input_crs, description, grid_json, region = row
        cells = self._fetch_frame(
            "SELECT unit_id, grid_col, grid_row, geometry FROM unit_cells WHERE units_id = ? "
            "ORDER BY idx", (int(units_id),))
        grid = grid_cells = None
        if grid_json:
            g = json.loads(grid_json)
            grid = GridSpec((float(g["origin"][0]), float(g["origin"][1])),
                            float(g["cell_size"]), int(g["n_cols"]), int(g["n_rows"]),
                            float(g["rotation"]))
            grid_cells = np.column_stack([cells["grid_col"].to_numpy(dtype=np.int64),
                                          cells["grid_row"].to_numpy(dtype=np.int64)])
        geometry = shapely.from_wkb([bytes(b) for b in cells["geometry"]])
        return Units(
            kind=kind,
            unit_id=cells["unit_id"].to_numpy(dtype=object),
            geometry=np.asarray(geometry, dtype=object),
            region=shapely.from_wkb(bytes(region)),
            spatial_reference=SpatialReference(crs, float(mpu), input_crs),
            grid=grid,
            grid_cells=grid_cells,
            description=json.loads(description) if description else {},
        )

    # ------------------------------------------------------------------ forecasts
    def save_forecast(self, forecast: Forecast, name: str, *, dataset: str | None = None
                      ) -> int:  # noqa: D102
        if not name:
            raise ParameterError("a saved forecast needs a `name` (e.g. 'weekly-kde').",
                                 param="name")
        with self._transaction():
            units_id = self._save_units(forecast.units, None)
            forecast_id = self._next_id()
            self._execute(
                "INSERT INTO forecasts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (forecast_id, name, _now(), forecast.model, dumps(forecast.params),
                 pd.Timestamp(forecast.window.start).to_pydatetime(),
                 pd.Timestamp(forecast.window.end).to_pydatetime(), units_id,
                 len(forecast.units), forecast.expected_total, dataset))
            self._insert_frame("forecast_values", pd.DataFrame({
                "forecast_id": np.full(len(forecast.intensity), forecast_id, dtype=np.int64),
                "idx": np.arange(len(forecast.intensity), dtype=np.int64),
                "intensity": np.asarray(forecast.intensity, dtype=float),
            }))
        return forecast_id

    def load_forecast(self, forecast_id: int) -> Forecast:  # noqa: D102
        row = self._execute(
            "SELECT model, params, window_start, window_end, units_id FROM forecasts "
            "WHERE id = ?", (int(forecast_id),)).fetchone()
        if row is None:
            known = [str(r[0]) for r in self._execute(
                "SELECT id FROM forecasts ORDER BY id DESC LIMIT 10").fetchall()]
            raise DataError(
                f"{self.url}: no saved forecast with id {forecast_id} (latest ids: "
                f"{', '.join(known) or 'none'})."
            )
        model, params, start, end, units_id = row
        values = self._fetch_frame(
            "SELECT intensity FROM forecast_values WHERE forecast_id = ? ORDER BY idx",
            (int(forecast_id),))
        return Forecast(
            units=self.load_units(int(units_id)),
            window=TimeWindow(to_datetime64(start), to_datetime64(end)),
            intensity=values["intensity"].to_numpy(dtype=float),
            model=model,
            params=json.loads(params) if params else {},
        )

    def list_forecasts(self) -> list[ForecastInfo]:  # noqa: D102
        rows = self._execute(
            "SELECT id, name, created, model, window_start, window_end, n_units, "
            "expected_total, dataset FROM forecasts ORDER BY id DESC").fetchall()
        return [ForecastInfo(int(r[0]), r[1], _iso(r[2]) or "", r[3], _iso(r[4]) or "",
                             _iso(r[5]) or "", int(r[6]), float(r[7]), r[8]) for r in rows]

    # ------------------------------------------------------------------ backtests
    def save_backtest(self, result: BacktestResult | pd.DataFrame,
                      meta: dict[str, Any] | None = None, *, name: str | None = None
                      ) -> int:  # noqa: D102
        if isinstance(result, BacktestResult):
            frame = result.records
            meta = {**result.meta, **(meta or {})}
            payload = result.to_parquet_bytes()
        elif isinstance(result, pd.DataFrame):
            frame = result
            payload = b""
        else:
            raise ParameterError(f"save_backtest needs a BacktestResult (or its table), got "
                                 f"{type(result)!r}.", param="result")
        missing = [c for c in BACKTEST_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(
                f"the backtest table lacks the columns {', '.join(missing)} (it has "
                f"{', '.join(map(str, frame.columns))}); pass the frame a backtest returns."
            )
        if name is not None:
            if not isinstance(name, str) or not name.strip():
                raise ParameterError(f"a backtest `name` must be a non-empty text, got "
                                     f"{name!r}.", param="name")
            meta = {**(meta or {}), "name": name.strip()}
        if not payload:
            buffer = io.BytesIO()
            frame.reset_index(drop=True).to_parquet(buffer, index=False)
            payload = buffer.getvalue()
        rows = pd.DataFrame({"row_number": np.arange(len(frame), dtype=np.int64)})
        rows["origin"] = pd.to_datetime(frame["origin"].to_numpy()).astype("datetime64[us]")
        rows["horizon"] = pd.Series([str(v) for v in frame["horizon"]], dtype=object)
        rows["model"] = pd.Series([str(v) for v in frame["model"]], dtype=object)
        for column in BACKTEST_COLUMNS[3:]:
            rows[column] = pd.to_numeric(frame[column].to_numpy(), errors="coerce").astype(
                float)
        with self._transaction():
            backtest_id = self._next_id()
            self._execute("INSERT INTO backtests VALUES (?, ?, ?, ?, ?)",
                          (backtest_id, _now(), dumps(meta or {}), len(frame), payload))
            rows.insert(0, "backtest_id", np.full(len(rows), backtest_id, dtype=np.int64))
            self._insert_frame("backtest_rows", rows)
        return backtest_id

    def load_backtest(self, backtest_id: int) -> BacktestResult:  # noqa: D102
        from dataclasses import replace

        row = self._execute("SELECT frame, meta FROM backtests WHERE id = ?",
                            (int(backtest_id),)).fetchone()
        if row is None:
            raise DataError(f"{self.url}: no saved backtest with id {backtest_id}.")
        result = BacktestResult.from_parquet_bytes(
            bytes(row[0]), source=f"{self.url}: backtest {backtest_id}")
        return replace(result, meta=json.loads(row[1]) if row[1] else {})

    def list_backtests(self) -> list[BacktestInfo]:  # noqa: D102
        rows = self._execute("SELECT id, created, n_rows, meta FROM backtests ORDER BY id DESC"
                             ).fetchall()
        return [BacktestInfo(int(r[0]), _iso(r[1]) or "", int(r[2]),
                             json.loads(r[3]) if r[3] else {}) for r in rows]

    # ------------------------------------------------------------------ alerts
    def save_alert(self, alert: dict[str, Any]) -> str:  # noqa: D102
        if not isinstance(alert, dict):
            raise ParameterError(f"an `alert` is a dict, got {type(alert)!r}.", param="alert")
        # ``alert_id``/``detected_at`` are what placecast.clusters.Alert.to_dict() calls them
        alert_id = str(alert.get("id") or alert.get("alert_id") or uuid.uuid4().hex)
        created = alert.get("created") or alert.get("detected_at")
        created_at = (pd.Timestamp(to_datetime64(created, name="alert created")).to_pydatetime()
                      if created is not None else _now())
        geometry = alert.get("geometry")
        if geometry is not None and not isinstance(geometry, str):
            geometry = json.dumps(geometry, default=_json_default)
        extra = {k: v for k, v in alert.items() if k not in ALERT_KEYS}

        def number(key: str) -> float | None:
            value = alert.get(key)
            return None if value is None else float(value)

        geom_col, geom_expr = self._alert_geometry_sql() if geometry else ("", "")
        with self._transaction():
            self._execute("DELETE FROM alerts WHERE id = ?", (alert_id,))
            self._execute(
                "INSERT INTO alerts (id, created, kind, geometry, observed, expected, "
                f"p_value, acknowledged, extra{geom_col}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?"
                f"{geom_expr})",
                (alert_id, created_at, alert.get("kind"), geometry, number("observed"),
                 number("expected"), number("p_value"), bool(alert.get("acknowledged", False)),
                 dumps(extra), *((geometry,) if geom_col else ())))
        return alert_id

    def list_alerts(self, *, kind: str | None = None, acknowledged: bool | None = None
                    ) -> list[dict[str, Any]]:  # noqa: D102
        where: list[str] = []
        params: list[Any] = []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if acknowledged is not None:
            where.append("acknowledged = ?")
            params.append(bool(acknowledged))
        rows = self._execute(
            "SELECT id, created, kind, geometry, observed, expected, p_value, acknowledged, "
            "extra FROM alerts" + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY created DESC, id", params).fetchall()
        out = []
        for r in rows:
            alert: dict[str, Any] = {
                "id": r[0], "created": _iso(r[1]), "kind": r[2],
                "geometry": json.loads(r[3]) if r[3] else None,
                "observed": r[4], "expected": r[5], "p_value": r[6],
                "acknowledged": bool(r[7]),
            }
            alert.update(json.loads(r[8]) if r[8] else {})
            out.append(alert)
        return out

    def acknowledge_alert(self, alert_id: str) -> None:  # noqa: D102
        with self._transaction():
            if self._execute("SELECT 1 FROM alerts WHERE id = ?", (str(alert_id),)
                             ).fetchone() is None:
                raise DataError(f"{self.url}: no alert with id {alert_id!r}.")
            self._execute("UPDATE alerts SET acknowledged = TRUE WHERE id = ?", (str(alert_id),))
