"""The work behind the endpoints: reading uploads, running forecasts, backtests, audits.

Everything here takes plain, already-validated values; the routes in ``_app.py`` only
check permissions and turn results into responses.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast.events import Events, to_datetime64
from placecast.exceptions import DataError, ParameterError, PlacecastError
from placecast.forecast import Forecast
from placecast.store import Store

__all__ = [
    "api_message",
    "field_for",
    "LockedStore",
    "NotFound",
    "TooLarge",
    "backtest_job",
    "audit_job",
    "Encoded",
    "forecast_csv",
    "forecast_map",
    "forecast_geojson",
    "hotspot_job",
    "scan_job",
    "read_upload",
    "run_forecast_request",
]

UPLOAD_SUFFIXES = (".csv", ".gpkg", ".geojson", ".json")

#: Words that mark a column as being about persons; such a column is never mapped.
PERSON_WORDS = frozenset({
    "name", "names", "firstname", "lastname", "surname", "victim", "suspect", "offender",
    "arrestee", "person", "persons", "people", "dob", "birth", "birthdate", "age", "race",
    "ethnicity", "ethnic", "gender", "sex", "phone", "ssn", "email", "licence", "license",
    "plate", "passport"})


def check_not_person_column(field: str, column: str | None) -> None:
    """Refuse a column mapping whose column name says it is about persons.

    Raises
    ------
    ParameterError
        When a word of the column name (split at non-letters) is in ``PERSON_WORDS``.
    """
    import re

    if column is None:
        return
    words = set(re.split(r"[^a-z]+", column.lower()))
    hit = sorted(words & PERSON_WORDS)
    if hit:
        raise ParameterError(
            f"column {column!r} for the event `{field}` looks like a field about persons "
            f"({', '.join(hit)}); placecast never reads such fields. Map a place-based "
            "column (time, location, offence category) instead.", param=field)


#: Command-line flags the library's messages may name -> the API field meant.
_FLAG_FIELDS = {
    "cell": "cell_size", "area": "area", "start": "start", "end": "end",
    "horizon": "horizon", "horizons": "horizons", "step": "step", "at": "at",
    "interval": "interval", "max-radius": "max_radius", "distance": "distance",
    "model": "model", "models": "models", "param": "model_params",
    "categories": "category", "category": "category", "n-origins": "n_origins",
    "max-share": "max_share", "time-steps": "time_steps", "alpha": "alpha",
    # upload form fields
    "time": "time", "x": "x", "y": "y", "lon": "lon", "lat": "lat", "crs": "crs",
    "time-format": "time_format", "timezone": "timezone", "weight": "weight",
    "skip-bad-rows": "skip_bad_rows", "id": "incident_id", "incident-id": "incident_id",
    "mark": "mark",
}


#: Library parameter names whose JSON field differs from the name.
_PARAM_FIELDS = {"cell": "cell_size", "categories": "category"}


def field_for(param: str) -> str:
    """The JSON field of a request body that sets library parameter ``param``."""
    return _PARAM_FIELDS.get(param, param)


def api_message(text: str) -> str:
    """A library message with the command-line flags it names turned into API fields.

    Examples
    --------
    >>> api_message("origin 2018-01-01 is too early. Use a later --start.")
    'origin 2018-01-01 is too early. Use a later start.'
    """
    import re

    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)",
                  lambda m: _FLAG_FIELDS.get(m.group(1), m.group(0)), text)


class NotFound(PlacecastError):
    """A dataset, forecast, backtest, job or alert that does not exist (HTTP 404)."""


class TooLarge(PlacecastError):
    """An upload or a request that exceeds the service's limits (HTTP 413)."""


class LockedStore:
    """A store whose every call holds one lock.

    The store's connection is not meant for concurrent use; serialising the calls (each
    of which is its own transaction) makes concurrent requests on the same dataset see
    and leave consistent states. Work on loaded data (fitting, scoring) runs outside it.
    """

    def __init__(self, store: Store) -> None:
        self.inner = store
        self.lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attribute(*args, **kwargs)

        return locked

    def dataset_names(self) -> set[str]:
        """Names of the datasets held."""
        return {info.name for info in self.list_datasets()}

    def require_dataset(self, name: str) -> None:
        """Raise ``NotFound`` unless the dataset exists."""
        if name not in self.dataset_names():
            raise NotFound(f"no dataset {name!r}; see GET /datasets.")


# ---------------------------------------------------------------------- uploads
def read_upload(path: Path, label: str, *, columns: dict[str, str | None], crs: str | None,
                time_format: str | None, timezone: str | None, max_rows: int,
                skip_bad_rows: bool = False) -> Events:
    """Read an uploaded file with ``placecast.io.read_events`` (mapped columns only).

    ``path`` is a server-made temporary file; ``label`` (the checked client file name)
    replaces it in every message.

    Raises
    ------
    DataError, ParameterError
        For a malformed file (the message names the row and column).
    TooLarge
        If the file holds more than ``max_rows`` events.
    """
    from placecast.io import ColumnMap, read_events

    for field, column in columns.items():
        check_not_person_column(field, column)
    try:
        events = read_events(path, columns=ColumnMap(**columns), crs=crs,
                             time_format=time_format, timezone=timezone,
                             skip_bad_rows=skip_bad_rows)
    except PlacecastError as exc:
        message = str(exc).replace(str(path), label).replace(path.name, label)
        raise type(exc)(message, param=exc.params) from None
    except Exception as exc:  # a reader library failing on garbage
        raise DataError(f"{label}: could not read the file ({type(exc).__name__}). "
                        "Upload a CSV with a header line, a GeoPackage or a GeoJSON "
                        "file of points.") from None
    if len(events) > max_rows:
        raise TooLarge(f"{label}: {len(events):,} events is more than this service's limit "
                       f"of {max_rows:,} per upload; split the file.")
    if len(events) == 0:
        raise DataError(f"{label}: the file holds no events.")
    return events


# ---------------------------------------------------------------------- shared steps
_OUT_OF_RANGE = (OverflowError, pd.errors.OutOfBoundsDatetime, pd.errors.OutOfBoundsTimedelta)


def _dates_in_range(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a date or number overflow deep in the work into a ParameterError (422)."""
    import functools

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except _OUT_OF_RANGE as exc:
            raise ParameterError(
                f"the request reaches dates or numbers out of range ({exc}); use a shorter "
                "step, horizon or look-back, or fewer origins.") from None

    return wrapper


def _check_model(name: str) -> None:
    from placecast.models import MODELS

    if name not in MODELS:
        raise ParameterError(f"unknown model {name!r}; use one of {', '.join(sorted(MODELS))}.")


def _check_explains(name: str) -> None:
    """Refuse ``explain`` for a model that cannot say why it flags a unit."""
    from placecast.models import MODELS

    if getattr(MODELS[name], "explained_forecast", None) is None:
        able = sorted(n for n, cls in MODELS.items()
                      if getattr(cls, "explained_forecast", None) is not None)
        raise ParameterError(
            f"the {name} model cannot explain its forecast; `explain` needs a model that "
            f"can ({', '.join(able)}): set `model` to one of them or leave `explain` "
            "false.", param=("explain", "model"))


def _load(store: LockedStore, dataset: str, category: list[str] | None) -> Events:
    store.require_dataset(dataset)
    events = store.load_events(dataset, categories=category)
    if len(events) == 0:
        raise DataError(f"dataset {dataset!r} has no events"
                        + (f" of categories {', '.join(category)}." if category else "."))
    return events


def _grid(events: Events, cell_size: str, max_cells: int) -> Any:
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    cell = parse_length(cell_size, name="cell_size")
    xmin, ymin, xmax, ymax = events.bbox
    estimate = math.ceil((xmax - xmin) / cell + 3) * math.ceil((ymax - ymin) / cell + 3)
    if estimate > max_cells:
        raise TooLarge(f"cell_size {cell_size!r} would make about {estimate:,} cells, more "
                       f"than this service's limit of {max_cells:,}; use larger cells.")
    return build_units(events, UnitSpec(kind="grid", cell_size=cell))


def _origins(events: Events, start: str | None, end: str | None, step: str,
             n_origins: int, horizons: list[str]) -> np.ndarray:
    """The backtest origins of a request: ``rolling_origins`` from ``start`` to ``end``.

    Without ``end``, the last origin whose longest window ends with the data; without
    ``start``, ``n_origins - 1`` steps before ``end`` (at midnight).
    """
    from placecast.evaluate import data_end, rolling_origins
    from placecast.quantities import parse_duration

    if end is None:
        longest = max((parse_duration(h, name="horizon") for h in horizons),
                      key=lambda d: d.add_to(pd.Timestamp("2000-01-01")))
        end_ts = longest.subtract_from(data_end(events))
    else:
        end_ts = pd.Timestamp(to_datetime64(end, name="end"))
    if start is None:
        step_duration = parse_duration(step, name="step")
        start_ts = end_ts
        for _ in range(n_origins - 1):
            start_ts = step_duration.subtract_from(start_ts)
    else:
        start_ts = pd.Timestamp(to_datetime64(start, name="start"))
    return rolling_origins(start_ts.floor("D"), end_ts, step)


# ---------------------------------------------------------------------- forecasts
@_dates_in_range
def run_forecast_request(store: LockedStore, request: Any, *, max_cells: int
                         ) -> tuple[Forecast, dict[str, Any]]:
    """Fit ``request.model`` on the dataset and forecast the next window."""
    from placecast.evaluate import data_end, resolve_area
    from placecast.pipeline import run_forecast

    _check_model(request.model)
    explain = bool(getattr(request, "explain", False))
    if explain:
        _check_explains(request.model)
    events = _load(store, request.dataset, request.category)
    units = _grid(events, request.cell_size, max_cells)
    # Default start: the end of the data, rounded up to a whole minute.
    at = (request.at if request.at is not None
          else pd.Timestamp(data_end(events)).ceil("min"))
    forecast = run_forecast(events, model=request.model, at=at, horizon=request.horizon,
                            units=units, model_params=dict(request.model_params or {}),
                            explain=explain)
    area_m2 = resolve_area(request.area, units)
    return forecast, {"area_m2": area_m2}


@dataclasses.dataclass(frozen=True, slots=True)
class Encoded:
    """One response body, encoded once: plain and gzip bytes and their entity tags.

    Attributes
    ----------
    body : bytes
        The plain body.
    gzip : bytes
        ``body`` gzip-compressed (level 6, no timestamp: the same bytes every time).
    etag : str
        Strong entity tag of ``body`` (quoted, as sent in the ``ETag`` header).
    etag_gzip : str
        Entity tag of the gzip representation (a different representation, so a
        different tag).
    """

    body: bytes
    gzip: bytes
    etag: str
    etag_gzip: str

    @classmethod
    def of(cls, body: bytes) -> Encoded:
        """Compress ``body`` and tag both representations."""
        import gzip
        import hashlib

        digest = hashlib.sha256(body).hexdigest()[:32]
        return cls(body, gzip.compress(body, 6, mtime=0), f'"{digest}"', f'"{digest}-gz"')

    @property
    def n_bytes(self) -> int:
        """Memory held by both representations."""
        return len(self.body) + len(self.gzip)


class ForecastCache:
    """Forecasts and their encoded bodies (descriptions, maps, ...), kept in memory.

    Saved forecasts never change, so each is read from the store once; each rendered body
    (GeoJSON, compact map, CSV per forecast and area budget) is encoded and gzip-compressed
    once and served from memory afterwards. Least recently used entries are dropped past
    ``size`` forecasts and past ``max_bytes`` of encoded bodies.
    """

    def __init__(self, store: LockedStore, size: int = 16,
                 max_bytes: int = 256 * 1024 * 1024) -> None:
        self._store = store
        self._size = size
        self._max_bytes = max_bytes
        self._forecasts: collections.OrderedDict[int, Forecast] = collections.OrderedDict()
        self._rendered: collections.OrderedDict[tuple[Any, ...], Encoded] = (
            collections.OrderedDict())
        self._n_bytes = 0
        self._lock = threading.Lock()
        # One lock per key being rendered: 50 clients asking for the same new map wait
        # for one rendering instead of making 50.
        self._making: dict[tuple[Any, ...], threading.Lock] = {}

    def forecast(self, forecast_id: int) -> Forecast:
        """The saved forecast ``forecast_id`` (``NotFound`` if there is none)."""
        with self._lock:
            if forecast_id in self._forecasts:
                self._forecasts.move_to_end(forecast_id)
                return self._forecasts[forecast_id]
        if forecast_id not in {info.id for info in self._store.list_forecasts()}:
            raise NotFound(f"no forecast {forecast_id}; see GET /forecasts.")
        forecast = self._store.load_forecast(forecast_id)
        with self._lock:
            self._forecasts[forecast_id] = forecast
            while len(self._forecasts) > self._size:
                self._forecasts.popitem(last=False)
        return forecast

    def encoded(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> Encoded:
        """The encoded body for ``key``, rendered and compressed once by ``make()``."""
        with self._lock:
            if key in self._rendered:
                self._rendered.move_to_end(key)
                return self._rendered[key]
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                if key in self._rendered:
                    return self._rendered[key]
            try:
                entry = Encoded.of(make())
            except BaseException:
                with self._lock:
                    self._making.pop(key, None)
                raise
            with self._lock:
                self._rendered[key] = entry
                self._making.pop(key, None)
                self._n_bytes += entry.n_bytes
                while len(self._rendered) > 1 and (
                        len(self._rendered) > 4 * self._size
                        or self._n_bytes > self._max_bytes):
                    _, dropped = self._rendered.popitem(last=False)
                    self._n_bytes -= dropped.n_bytes
        return entry

    def peek(self, key: tuple[Any, ...]) -> Encoded | None:
        """The encoded body for ``key`` if it is cached (never blocks on rendering)."""
        with self._lock:
            entry = self._rendered.get(key)
            if entry is not None:
                self._rendered.move_to_end(key)
            return entry


def flags_for(forecast: Forecast, area: str) -> tuple[np.ndarray, float]:
    """Boolean flags of the top units within the area budget, and the budget in m²."""
    from placecast.evaluate import resolve_area

    area_m2 = resolve_area(area, forecast.units)
    flagged = np.zeros(len(forecast.units), dtype=bool)
    flagged[forecast.top_units(area_m2)] = True
    return flagged, area_m2


def forecast_geojson(forecast_id: int, forecast: Forecast, area: str,
                     flagged_only: bool = False) -> bytes:
    """The forecast as a GeoJSON FeatureCollection in WGS 84 (lon/lat, 6 decimals).

    Each feature has ``unit_id``, ``intensity``, ``rank`` and ``flagged`` (inside the
    ``area`` budget), and, when the forecast was made with explanations, its
    ``reason_1..n`` (feature names, ``""`` when no feature raised it) and ``effect_1..n``
    (factors) from ``forecast.details``. Data in a local planar CRS stay in their own
    coordinates and the collection says so in ``crs``. O(n_units).
    """
    import shapely

    flagged, area_m2 = flags_for(forecast, area)
    units = forecast.units
    crs = "EPSG:4326"
    if units.spatial_reference.source_crs.startswith("local:"):
        geometry = units.geometry_in(None)
        crs = units.spatial_reference.source_crs
    else:
        geometry = units.geometry_in("EPSG:4326")
        geometry = shapely.transform(geometry, lambda xy: np.round(xy, 6))
    keep = np.flatnonzero(flagged) if flagged_only else np.arange(len(units))
    texts = shapely.to_geojson(geometry[keep])
    rank = forecast.rank
    explanations = _explanation_columns(forecast)
    parts = []
    for index, text in zip(keep.tolist(), texts.tolist(), strict=True):
        props = json.dumps({"unit_id": str(units.unit_id[index]),
                            "intensity": round(float(forecast.intensity[index]), 6),
                            "rank": int(rank[index]), "flagged": bool(flagged[index]),
                            **{name: values[index] for name, values in explanations}})
        parts.append(f'{{"type":"Feature","geometry":{text},"properties":{props}}}')
    meta = {"id": forecast_id, **forecast.to_dict(), "area": area, "area_m2": area_m2,
            "n_flagged": int(flagged.sum()), "crs": crs}
    head = json.dumps({"type": "FeatureCollection", "forecast": meta}, default=str)[:-1]
    return (head + ',"features":[' + ",".join(parts) + "]}").encode()


def _explanation_columns(forecast: Forecast) -> list[tuple[str, list[Any]]]:
    """The ``reason_k`` / ``effect_k`` columns of ``forecast.details`` as JSON values."""
    import re

    details = forecast.details
    if details is None:
        return []
    out: list[tuple[str, list[Any]]] = []
    for name in details.columns:
        if re.fullmatch(r"(reason|effect)_[0-9]+", str(name)):
            values = details[name]
            if str(name).startswith("reason"):
                out.append((str(name), [str(v) for v in values]))
            else:
                out.append((str(name), [round(float(v), 6) for v in values]))
    return out


def _display_transform(units: Any) -> tuple[Callable[[np.ndarray, np.ndarray], np.ndarray],
                                             str]:
    """How the GeoJSON maps internal metres to its coordinates, and the CRS it names.

    The one transform both ``forecast_geojson`` and ``forecast_map`` use, so that the
    compact map rebuilds exactly the GeoJSON's coordinates.
    """
    sref = units.spatial_reference
    if sref.source_crs.startswith("local:"):
        target = sref.source_crs

        def local(x: np.ndarray, y: np.ndarray) -> np.ndarray:
            tx, ty = sref.to_crs_coordinates(x, y, None if target == sref.crs else target)
            return np.column_stack([tx, ty])

        return local, target

    def wgs84(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        tx, ty = sref.to_crs_coordinates(x, y, "EPSG:4326")
        return np.round(np.column_stack([tx, ty]), 6)

    return wgs84, "EPSG:4326"


#: Version tag of the compact map payload (``GET /forecasts/{id}/map``).
MAP_FORMAT = "placecast-forecast-map/1"


def forecast_map(forecast_id: int, forecast: Forecast, area: str) -> bytes:
    """The forecast as a compact map: the grid definition and one array per column.

    A square grid is sent as its definition (``origin``, ``cell_size``, ``rotation``,
    ``n_cols``, ``n_rows`` and ``crs``, in the internal metres), the ``(col, row)`` of each
    unit and, for drawing without a projection library, the corners of the cells in
    display coordinates (``display.nodes``: a lattice of ``(nc + 1) x (nr + 1)`` points,
    x then y, row-major from ``(c0, r0)``; a cell ``(c, r)`` is the ring of nodes
    ``(c, r), (c+1, r), (c+1, r+1), (c, r+1)``). Other units are sent as their GeoJSON
    geometries. The columns ``intensity`` (rounded to 6 decimals like the GeoJSON),
    ``rank`` and ``flagged`` (indices of the flagged units) follow unit order. Rebuilt,
    it gives the same cells, coordinates and values as ``forecast_geojson``; a 12,000-cell
    grid takes a small fraction of the bytes. O(n_units).
    """
    import shapely

    flagged, area_m2 = flags_for(forecast, area)
    units = forecast.units
    transform, crs = _display_transform(units)
    meta = {"id": forecast_id, **forecast.to_dict(), "area": area, "area_m2": area_m2,
            "n_flagged": int(flagged.sum()), "crs": crs}
    payload: dict[str, Any] = {"format": MAP_FORMAT, "forecast": meta,
                               "n_units": len(units)}
    grid = units.grid
    if units.kind == "grid" and grid is not None and units.grid_cells is not None:
        cells = np.asarray(units.grid_cells, dtype=np.int64)
        cols, rows = cells[:, 0], cells[:, 1]
        c0, r0 = int(cols.min()), int(rows.min())
        n_cols, n_rows = int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1
        node_rows, node_cols = np.meshgrid(np.arange(r0, r0 + n_rows + 1),
                                           np.arange(c0, c0 + n_cols + 1), indexing="ij")
        # The same arithmetic, in the same order, as the cell polygons (units.py), so the
        # corners are the very same floats.
        x = node_cols.ravel() * grid.cell_size
        y = node_rows.ravel() * grid.cell_size
        if grid.rotation:
            theta = np.deg2rad(grid.rotation)
            c, s = np.cos(theta), np.sin(theta)
            x, y = c * x - s * y, s * x + c * y
        nodes = transform(x + grid.origin[0], y + grid.origin[1])
        payload["grid"] = {"origin": list(grid.origin), "cell_size": grid.cell_size,
                           "rotation": grid.rotation, "n_cols": grid.n_cols,
                           "n_rows": grid.n_rows, "crs": units.spatial_reference.crs}
        payload["display"] = {"crs": crs, "c0": c0, "r0": r0, "nc": n_cols, "nr": n_rows,
                              "nodes": nodes.ravel().tolist()}
        payload["col"] = cols.tolist()
        payload["row"] = rows.tolist()
        derived = [f"c{a}_r{b}" for a, b in zip(payload["col"], payload["row"], strict=True)]
        ids = [str(u) for u in units.unit_id]
        if ids != derived:
            payload["unit_id"] = ids
    else:
        geometry = shapely.transform(units.geometry,
                                     lambda xy: transform(xy[:, 0], xy[:, 1]))
        payload["geometries"] = [json.loads(text) for text in shapely.to_geojson(geometry)]
        payload["unit_id"] = [str(u) for u in units.unit_id]
    payload["intensity"] = [round(float(v), 6) for v in forecast.intensity]
    payload["rank"] = np.asarray(forecast.rank).astype(int).tolist()
    payload["flagged"] = np.flatnonzero(flagged).tolist()
    return json.dumps(payload, default=str, separators=(",", ":")).encode()


def forecast_csv(forecast: Forecast, area: str) -> bytes:
    """The forecast as CSV: ``unit_id, intensity, rank, flagged`` (best first)."""
    flagged, _ = flags_for(forecast, area)
    frame = pd.DataFrame({"unit_id": forecast.units.unit_id, "intensity": forecast.intensity,
                          "rank": forecast.rank, "flagged": flagged})
    frame = frame.sort_values("rank", kind="stable")
    return frame.to_csv(index=False).encode()


# ---------------------------------------------------------------------- jobs
def backtest_job(store: LockedStore, request: Any, *, max_cells: int,
                 dask: Callable[[], str | None]
                 ) -> Callable[[Callable[[int, int], None]], dict[str, Any]]:
    """Check a backtest request now; return the job function that runs and saves it."""
    for name in request.models:
        _check_model(name)
    store.require_dataset(request.dataset)

    @_dates_in_range
    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        from placecast.evaluate import run_backtest

        events = _load(store, request.dataset, request.category)
        units = _grid(events, request.cell_size, max_cells)
        origins = _origins(events, request.start, request.end, request.step,
                           request.n_origins, request.horizons)
        result = run_backtest(events, units, models=list(request.models), origins=origins,
                              horizons=list(request.horizons), area=request.area,
                              dask=dask(), progress=progress)
        meta = {"dataset": request.dataset, "models": list(request.models),
                "category": request.category, "cell_size": request.cell_size,
                "horizons": list(request.horizons), "step": request.step,
                "area": request.area, "area_m2": result.area}
        backtest_id = store.save_backtest(result, meta)
        return {"backtest_id": backtest_id, "n_origins": len(result.origins),
                "summary": _records(result.summary())}

    return work


def backtest_payload(backtest_id: int, result: Any) -> dict[str, Any]:
    """The JSON of ``GET /backtests/{id}``: rows, settings and the result's statistics.

    ``rows`` are the per-origin table (as before); ``summary`` is
    ``BacktestResult.summary()`` and ``comparisons`` ``BacktestResult.compare("pai")`` per
    horizon: the numbers ``placecast backtest`` prints, unrounded.
    """
    import json

    rows = json.loads(result.records.to_json(orient="records", date_format="iso"))
    return {"id": backtest_id, "meta": _jsonable(result.meta), "rows": rows,
            "summary": _records(result.summary()),
            "comparisons": _records(result.comparisons("pai"))}


def audit_job(store: LockedStore, request: Any, *, max_cells: int,
              dask: Callable[[], str | None]
              ) -> Callable[[Callable[[int, int], None]], dict[str, Any]]:
    """Check an audit request now; return the job function that runs it."""
    _check_model(request.model)
    store.require_dataset(request.dataset)

    @_dates_in_range
    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        from placecast.audit import run_audit
        from placecast.quantities import parse_duration

        events = _load(store, request.dataset, request.category)
        units = _grid(events, request.cell_size, max_cells)
        origins = _origins(events, request.start, request.end, request.step,
                           request.n_origins, [request.horizon])
        start, last_origin = origins[0], origins[-1]
        # the request's `end` is the last origin; the audit's is the end of its last window
        end = parse_duration(request.horizon, name="horizon").add_to(last_origin)
        result = run_audit(events, units, model=request.model, start=start, end=end,
                           horizon=request.horizon, step=request.step, area=request.area,
                           factor=request.factor, source=f"dataset {request.dataset}",
                           dask=dask(), progress=progress)
        out = result.exposure.to_dict()
        return {"kind": "exposure", "model": request.model, "horizon": request.horizon,
                "n_origins": result.n_periods, "summary": _jsonable(out["summary"]),
                "over_under": _jsonable(out["over_under"][:500]),
                "performance": _records(result.performance)}

    return work


def _raise_alerts(store: LockedStore, alerts: list[Any], dataset: str,
                  extra: Callable[[Any], dict[str, Any]]) -> list[str]:
    """Save alerts not yet in the store (an acknowledged alert stays acknowledged)."""
    from placecast.alerting import save_new_alerts

    with store.lock:
        return save_new_alerts(store.inner, alerts,
                               extra=lambda alert: {"dataset": dataset, **extra(alert)})


def scan_job(store: LockedStore, request: Any, *, max_cells: int
             ) -> Callable[[Callable[[int, int], None]], dict[str, Any]]:
    """Check a scan request now; return the job function that runs it and raises alerts."""
    from placecast.quantities import parse_length

    store.require_dataset(request.dataset)
    max_radius = (parse_length(request.max_radius, name="max_radius")
                  if request.max_radius is not None else None)

    @_dates_in_range
    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        from placecast.clusters import SpaceTimeScan, scan_alerts, scan_data_from_events

        progress(0, 2)
        events = _load(store, request.dataset, request.category)
        units = _grid(events, request.cell_size, max_cells)
        data = scan_data_from_events(events, at=request.at, interval=request.interval,
                                     n_intervals=request.n_intervals, units=units)
        scan = SpaceTimeScan(max_share=request.max_share, max_radius=max_radius,
                             n_permutations=request.n_permutations,
                             random_state=request.random_state, max_clusters=20,
                             randomization=request.randomization,
                             p_values=request.p_values)
        result = scan.run(data)
        progress(1, 2)
        alerts = scan_alerts(result, check="scan", p_value=request.alpha)
        new = _raise_alerts(store, alerts, request.dataset,
                            lambda alert: {"n_locations": len(alert.location_ids)})
        progress(2, 2)
        summary = result.to_dict()
        return {"kind": "scan", "dataset": request.dataset,
                "n_clusters": len(result.clusters),
                "n_significant": len(alerts), "new_alerts": new,
                "summary": _jsonable({k: v for k, v in summary.items() if k != "clusters"}),
                "clusters": _jsonable(result.to_geojson())}

    return work


def hotspot_job(store: LockedStore, request: Any, *, max_cells: int
                ) -> Callable[[Callable[[int, int], None]], dict[str, Any]]:
    """Check an emerging-hot-spot request now; return the job function."""
    from placecast.quantities import parse_length

    store.require_dataset(request.dataset)
    distance = parse_length(request.distance, name="distance")

    @_dates_in_range
    def work(progress: Callable[[int, int], None]) -> dict[str, Any]:
        import shapely

        from placecast.clusters import (
            ALERT_PATTERNS,
            SpaceTimeCube,
            emerging_hot_spots,
            hotspot_alerts,
        )

        progress(0, 2)
        events = _load(store, request.dataset, request.category)
        units = _grid(events, request.cell_size, max_cells)
        cube = SpaceTimeCube.from_events(events, units, step=request.step,
                                         n_steps=request.n_steps)
        result = emerging_hot_spots(cube, distance=distance, time_steps=request.time_steps,
                                    alpha=request.alpha, fdr=request.fdr)
        progress(1, 2)
        local = units.spatial_reference.source_crs.startswith("local:")
        geometry = units.geometry if local else units.geometry_in("EPSG:4326")
        features = []
        for u in np.flatnonzero(result.pattern != "no pattern detected"):
            shape = json.loads(shapely.to_geojson(geometry[u]))
            features.append({"type": "Feature", "geometry": shape, "properties": {
                "unit_id": str(cube.unit_ids[u]), "pattern": str(result.pattern[u]),
                "trend_z": float(result.trend_z[u]), "last_count": float(cube.counts[u, -1])}})
        alerts = hotspot_alerts(cube, result, check="hotspots", patterns=ALERT_PATTERNS)
        new = _raise_alerts(store, alerts, request.dataset,
                            lambda alert: {"unit_id": alert.location_ids[0]})
        progress(2, 2)
        return {"kind": "hotspots", "dataset": request.dataset, "counts": result.counts(),
                "new_alerts": new, "parameters": _jsonable(dict(result.parameters)),
                "units": {"type": "FeatureCollection", "features": _jsonable(features)}}

    return work


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return _jsonable(frame.reset_index(drop=isinstance(frame.index, pd.RangeIndex))
                    .to_dict(orient="records"))


def _jsonable(value: Any) -> Any:
    """Plain JSON values: NaN/inf become None, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | np.datetime64):
        return str(value)
    return value
