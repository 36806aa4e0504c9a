"""A store that keeps events, area units, forecasts, backtests and alerts in one database.

Two implementations share one interface, :class:`Store`:

* :class:`DuckDBStore` (``placecast.duckdb``): an embedded single-file database, the
  default. Plain ``duckdb``, no extension: coordinates are ``DOUBLE`` columns and polygons
  WKB blobs.
* :class:`PostGISStore` (``postgresql://user@host:port/db``): PostgreSQL with PostGIS,
  for a team that already runs one. Events and units also get real ``geometry`` columns
  with the SRID of the dataset's EPSG code, so QGIS/ArcGIS can draw the tables directly.

Open either with :func:`open_store`. Every ingest is one transaction: a failed or killed
import leaves the store as it was. Events are de-duplicated on ``incident_id`` when a row
has one, else on ``(time, x, y, category)``.

Only event fields are ever stored (time, x, y, category, weight, incident_id, mark), with
the file each event came from and when it was imported: nothing about persons.

A dataset may be split by **region** at import (``add_events(..., by=labels)`` or
``region="NAME"``): :meth:`Store.list_regions` lists them and
``load_events(dataset, region=NAME)`` reads only that region's rows, which is what each
task of :func:`placecast.regions.run_by_region` does when given ``"DB#DATASET"``.

Examples
--------
>>> import tempfile, os
>>> from placecast.events import Events
>>> path = os.path.join(tempfile.mkdtemp(), "example.duckdb")
>>> events = Events.from_arrays(["2017-03-01", "2017-03-02"], [0.0, 10.0], [0.0, 5.0])
>>> with open_store(path) as store:
...     store.add_events("demo", events, source="demo.csv").n_new
...     store.add_events("demo", events, source="demo.csv").n_duplicates
...     len(store.load_events("demo"))
...     store.add_events("zones", events, by=["north", "south"]).n_new
...     store.list_regions("zones")
...     store.load_events("zones", region="south").x
2
2
2
2
{'north': 1, 'south': 1}
array([10.])
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from placecast.evaluate import BacktestResult
from placecast.events import Events
from placecast.exceptions import DataError, ParameterError
from placecast.forecast import Forecast
from placecast.units import Units

__all__ = [
    "BACKTEST_COLUMNS",
    "BacktestInfo",
    "DatasetInfo",
    "DuckDBStore",
    "ForecastInfo",
    "IngestReport",
    "PostGISStore",
    "Store",
    "is_store_reference",
    "open_store",
    "split_store_reference",
]

#: Columns every saved backtest frame must have (others are kept too).
BACKTEST_COLUMNS = ("origin", "horizon", "model", "n_events", "n_flagged_units",
                    "flagged_area", "region_area", "hits", "hit_rate", "pai", "pei_star",
                    "log_score")

#: Keys of an alert dict (others are kept in ``extra``).
ALERT_KEYS = ("id", "created", "kind", "geometry", "observed", "expected", "p_value",
              "acknowledged")

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
_POSTGRES_URL = re.compile(r"^postgres(?:ql)?:/+", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one ``add_events`` call did.

    Attributes
    ----------
    dataset : str
        The dataset written to.
    source : str
        The file (or description) the events came from.
    n_read : int
        Events offered.
    n_new : int
        Events added.
    n_duplicates : int
        Events skipped because the dataset (or an earlier row of the same batch) already
        held them.
    import_id : int
        Id of the import in the store.
    """

    dataset: str
    source: str
    n_read: int
    n_new: int
    n_duplicates: int
    import_id: int

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    """One dataset in a store.

    Attributes
    ----------
    name : str
        Dataset name.
    n_events : int
        Events held.
    n_imports : int
        Successful imports.
    start, end : str or None
        ISO times of the first and last event.
    crs, input_crs : str
        The CRS of the coordinates and the CRS the data came in.
    metres_per_unit : float
        Metres per unit of ``crs``.
    timezone : str or None
        IANA time zone of the wall-clock times.
    fields : tuple of str
        Optional event fields present (category, weight, incident_id, mark).
    created, updated : str
        ISO times of the first and the last import.
    """

    name: str
    n_events: int
    n_imports: int
    start: str | None
    end: str | None
    crs: str
    input_crs: str | None
    metres_per_unit: float
    timezone: str | None
    fields: tuple[str, ...]
    created: str
    updated: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        out = asdict(self)
        out["fields"] = list(self.fields)
        return out


@dataclass(frozen=True, slots=True)
class ForecastInfo:
    """One saved forecast (without its per-unit values)."""

    id: int
    name: str
    created: str
    model: str
    window_start: str
    window_end: str
    n_units: int
    expected_total: float
    dataset: str | None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BacktestInfo:
    """One saved backtest (without its rows)."""

    id: int
    created: str
    n_rows: int
    meta: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


class Store(ABC):
    """Where placecast keeps datasets, area units, forecasts, backtests and alerts.

    Use as a context manager (or call :meth:`close`). All writes are transactional: a
    write that fails part-way leaves the store as it was.
    """

    #: The URL or path the store was opened from.
    url: str

    # ------------------------------------------------------------------ events
    @abstractmethod
    def add_events(self, dataset: str, events: Events, *, source: str | None = None,
                   region: str | None = None, by: Any = None) -> IngestReport:
        """Add events to ``dataset`` (created on first use), skipping duplicates.

        With ``region`` (every event in that region) or ``by`` (a
        :class:`placecast.regions.RegionSplit`, or one region name per event, e.g. a
        region column or ``regions_from_polygons(events, ...)``) the dataset is split by
        region, and ``load_events(dataset, region=...)`` reads one region alone. A dataset
        is split by region from its first import or never: mixing is refused. A duplicate
        keeps the region it was first stored with.

        A row is a duplicate when the dataset already holds its ``incident_id`` (rows with
        an id; repeats inside the batch count too) or, for rows without one, as many rows
        with the same ``(time, x, y, category)`` as the batch has up to and including it:
        identical rows are kept as separate events (two burglaries at one address on one
        day), and re-importing a file adds nothing. The whole batch is one transaction.
        Cost: O(n) with hash anti-joins against the dataset.

        Raises
        ------
        DataError
            If the events do not fit the dataset (another CRS, time zone or set of
            fields; regions where the dataset has none, or none where it has them) or
            have sub-microsecond times, or if ``by`` leaves an event without a region.
        ParameterError
            If both ``region`` and ``by`` are given, or ``by`` has the wrong length.
        """

    @abstractmethod
    def load_events(self, dataset: str, since: Any = None, until: Any = None,
                    categories: list[str] | None = None, *, region: str | None = None
                    ) -> Events:
        """Return the dataset's events, in import order, as they were stored.

        Keeps ``since <= time < until``; categories match case-insensitively. The CRS and
        time zone are the dataset's. With ``region``, only that region's events are read
        (an index or row-group range scan, not a scan of the dataset).

        Raises
        ------
        DataError
            If there is no such dataset, or no such region in it.
        """

    @abstractmethod
    def list_regions(self, dataset: str) -> dict[str, int]:
        """``{region: number of events}`` in region order (empty when not split)."""

    @abstractmethod
    def list_datasets(self) -> list[DatasetInfo]:
        """Every dataset, by name."""

    @abstractmethod
    def delete_dataset(self, dataset: str) -> int:
        """Delete a dataset and its import log; return the number of events removed."""

    # ------------------------------------------------------------------ units, forecasts
    @abstractmethod
    def save_units(self, units: Units, name: str | None = None) -> int:
        """Save area units (identical units are stored once); return their id."""

    @abstractmethod
    def load_units(self, units_id: int) -> Units:
        """Area units saved under ``units_id``."""

    @abstractmethod
    def save_forecast(self, forecast: Forecast, name: str, *, dataset: str | None = None
                      ) -> int:
        """Save a forecast (and its units); return its id."""

    @abstractmethod
    def load_forecast(self, forecast_id: int) -> Forecast:
        """Return the forecast saved under ``forecast_id``."""

    @abstractmethod
    def list_forecasts(self) -> list[ForecastInfo]:
        """Every saved forecast, newest first."""

    # ------------------------------------------------------------------ backtests
    @abstractmethod
    def save_backtest(self, result: BacktestResult | pd.DataFrame,
                      meta: dict[str, Any] | None = None, *, name: str | None = None) -> int:
        """Save a backtest; return its id.

        ``result`` is a :class:`placecast.evaluate.BacktestResult` (kept whole: table,
        flagged units, observed counts, calibration, settings) or a bare table with
        ``BACKTEST_COLUMNS`` (and any others). ``meta`` (e.g. ``{"dataset": ...}``, which
        the dashboard matches on) and ``name`` are kept beside it, in ``BacktestInfo.meta``.
        """

    @abstractmethod
    def load_backtest(self, backtest_id: int) -> BacktestResult:
        """Return the saved backtest as a ``BacktestResult`` (``meta`` = what was saved).

        Its statistics are those of the result that was saved, to the last digit.
        """

    @abstractmethod
    def list_backtests(self) -> list[BacktestInfo]:
        """Every saved backtest, newest first."""

    # ------------------------------------------------------------------ alerts
    @abstractmethod
    def save_alert(self, alert: dict[str, Any]) -> str:
        """Save (or replace) an alert dict; return its id (made up when it has none).

        Keys ``id`` (or ``alert_id``), ``created`` (or ``detected_at``), ``kind``,
        ``geometry`` (GeoJSON, WGS 84), ``observed``, ``expected``, ``p_value`` and
        ``acknowledged`` are columns; any other keys are kept and returned as given.
        """

    @abstractmethod
    def list_alerts(self, *, kind: str | None = None, acknowledged: bool | None = None
                    ) -> list[dict[str, Any]]:
        """Alerts, newest first, optionally of one kind or acknowledgement state."""

    @abstractmethod
    def acknowledge_alert(self, alert_id: str) -> None:
        """Mark an alert as acknowledged."""

    # ------------------------------------------------------------------ lifecycle
    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def check_dataset_name(name: str) -> str:
    """Return ``name`` if it is a valid dataset name, else raise ``ParameterError``."""
    if not isinstance(name, str) or not _DATASET_NAME.match(name):
        raise ParameterError(
            f"dataset name {name!r} is not valid: pass as `dataset` 1-128 letters, digits, "
            "'_', '-' or '.', starting with a letter or digit (e.g. burglary_2017).",
            param="dataset"
        )
    return name


def _repair_url(text: str) -> str:
    # pathlib collapses "postgresql://host" into "postgresql:/host"; undo that.
    return _POSTGRES_URL.sub(lambda m: m.group(0).rstrip("/") + "//", text, count=1)


def open_store(url_or_path: str | os.PathLike[str], *, schema: str | None = None,
               create: bool = True, read_only: bool = False) -> Store:
    """Open (creating if needed) the store at a path or PostgreSQL URL.

    Parameters
    ----------
    url_or_path : str or path-like
        ``placecast.duckdb`` (any path: DuckDB) or ``postgresql://user@host:port/db``
        (PostGIS; ``?schema=NAME`` selects a schema).
    schema : str, optional
        PostgreSQL schema for the tables (default ``public``, or the URL's ``schema``).
    create : bool
        Create a missing DuckDB file (``False``: a missing file is an error, for commands
        that only read).
    read_only : bool
        Open an existing store for reading only: nothing is created or upgraded, and a
        DuckDB file may be read by several processes at once (region tasks on Dask).

    Raises
    ------
    DataError
        If the database cannot be opened (the message says why and how to fix it).
    """
    text = _repair_url(os.fspath(url_or_path))
    if _POSTGRES_URL.match(text):
        from placecast.store._postgis import PostGISStore

        return PostGISStore(text, schema=schema, read_only=read_only)
    if (read_only or not create) and text != ":memory:" and not Path(text).exists():
        raise DataError(
            f"{text}: no such store; create one by importing events into it."
        )
    from placecast.store._duckdb import DuckDBStore

    return DuckDBStore(text, read_only=read_only)


def split_store_reference(text: str | os.PathLike[str]) -> tuple[str, str] | None:
    """Split ``DB#DATASET`` into ``(db, dataset)``; ``None`` when ``text`` is not one.

    ``DB`` is a PostgreSQL URL or a DuckDB file (``.duckdb``/``.db``, or any existing file
    that is not itself the events file). A path that exists as a file is never a reference.

    Examples
    --------
    >>> split_store_reference("placecast.duckdb#burglary")
    ('placecast.duckdb', 'burglary')
    >>> split_store_reference("postgresql:/u@localhost:5432/db#burglary")
    ('postgresql://u@localhost:5432/db', 'burglary')
    >>> split_store_reference("events.csv") is None
    True
    """
    raw = os.fspath(text)
    if "#" not in raw or Path(raw).is_file():
        return None
    db, _, dataset = raw.rpartition("#")
    db = _repair_url(db)
    if not db or not dataset:
        return None
    if _POSTGRES_URL.match(db) or Path(db).suffix.lower() in (".duckdb", ".db", ".ddb"):
        return db, dataset
    if Path(db).is_file():
        return db, dataset
    return None


def is_store_reference(text: str | os.PathLike[str]) -> bool:
    """Return True when ``text`` names a dataset in a store (``DB#DATASET``)."""
    return split_store_reference(text) is not None


def __getattr__(name: str) -> Any:
    # Lazy access to the implementations (psycopg is optional).
    if name == "DuckDBStore":
        from placecast.store._duckdb import DuckDBStore

        return DuckDBStore
    if name == "PostGISStore":
        from placecast.store._postgis import PostGISStore

        return PostGISStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
