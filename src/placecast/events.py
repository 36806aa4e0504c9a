"""The one data model: point events with a time, a location, and optional category and weight.

Coordinates inside placecast are projected **metres**. An ``Events`` remembers the CRS its
coordinates belong to (``crs``, projected) and the CRS the user gave the data in
(``input_crs``), so outputs can go back to the user's CRS. For a CRS whose unit is not the
metre (e.g. EPSG:2913, international feet) ``x`` and ``y`` are that CRS's coordinates times
``metres_per_unit``.

Times are ``numpy.datetime64[ns]`` wall-clock times in ``timezone`` (naive, no offset).

Nothing about persons is held: only time, location, category, weight, a magnitude-like
``mark`` and the incident's own record number.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from placecast.exceptions import DataError, ParameterError, cite

__all__ = ["Events", "LoadReport", "SpatialReference", "to_datetime64"]

#: Columns an ``Events`` can carry; everything else is dropped on read.
EVENT_FIELDS = ("time", "x", "y", "category", "weight", "incident_id", "mark")


@functools.lru_cache(maxsize=64)
def _transformer(source: str, target: str) -> Any:
    """A cached pyproj Transformer (building one costs milliseconds)."""
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)


@dataclass(frozen=True, slots=True)
class SpatialReference:
    """How placecast's internal metres relate to real coordinate reference systems.

    Attributes
    ----------
    crs : str
        The projected CRS of the coordinates (``"EPSG:2913"``, ``"EPSG:32618"``, or
        ``"local:m"`` for an unreferenced planar grid).
    metres_per_unit : float
        Metres per unit of ``crs`` (0.3048 for international feet).
    input_crs : str
        The CRS the user's data came in (``"EPSG:4326"`` for lon/lat input).
    """

    crs: str
    metres_per_unit: float = 1.0
    input_crs: str | None = None

    @property
    def is_local(self) -> bool:
        """True for an unreferenced planar grid (``local:m``, ``local:km``, ...)."""
        return self.crs.startswith("local:")

    @property
    def source_crs(self) -> str:
        """The CRS the user gave, falling back to ``crs``."""
        return self.input_crs or self.crs

    def to_crs_coordinates(
        self, x: npt.ArrayLike, y: npt.ArrayLike, target: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Convert internal metres to coordinates of ``target`` (default: ``crs`` units).

        Parameters
        ----------
        x, y : array_like
            Internal coordinates in metres.
        target : str, optional
            ``None`` or ``crs`` for the projected CRS's own units, or any CRS pyproj knows
            (``"EPSG:4326"`` gives lon, lat).
        """
        xs = np.asarray(x, dtype=float) / self.metres_per_unit
        ys = np.asarray(y, dtype=float) / self.metres_per_unit
        if target is None or target == self.crs:
            return xs, ys
        if self.is_local:
            raise DataError(
                f"cannot convert coordinates of the local grid {self.crs!r} to {target}: "
                "the data were given without a real CRS (give `crs` EPSG:xxxx on input).",
                param="crs",
            )
        tx, ty = _transformer(self.crs, target).transform(xs, ys)
        return np.asarray(tx), np.asarray(ty)

    def from_crs_coordinates(
        self, x: npt.ArrayLike, y: npt.ArrayLike, source: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Convert coordinates of ``source`` (default: ``crs``) to internal metres."""
        xs = np.asarray(x, dtype=float)
        ys = np.asarray(y, dtype=float)
        if source is not None and source != self.crs:
            if self.is_local:
                raise DataError(
                    f"cannot place {source} coordinates on the local grid {self.crs!r}."
                )
            xs, ys = (np.asarray(v) for v in _transformer(source, self.crs).transform(xs, ys))
        return xs * self.metres_per_unit, ys * self.metres_per_unit


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What a reader did: which columns it used, what it dropped and why.

    Attributes
    ----------
    source : str
        The file (or table) read.
    n_rows : int
        Data rows in the source.
    n_kept : int
        Events kept after dropping bad rows and filtering.
    columns : dict
        Event field -> source column(s) used.
    detected : tuple of str
        Event fields whose column was found by auto-detection rather than given.
    dropped : dict
        Reason -> number of rows dropped as bad (only with ``skip_bad_rows``).
    filtered : dict
        Filter -> number of rows left out by ``categories``, ``since`` or ``until``.
    ignored_columns : tuple of str
        Source columns that were not read (never stored).
    crs_note : str
        How the CRS was chosen.
    """

    source: str
    n_rows: int
    n_kept: int
    columns: dict[str, str]
    detected: tuple[str, ...] = ()
    dropped: dict[str, int] = field(default_factory=dict)
    filtered: dict[str, int] = field(default_factory=dict)
    ignored_columns: tuple[str, ...] = ()
    crs_note: str = ""

    @property
    def n_dropped(self) -> int:
        """Rows dropped as bad."""
        return int(sum(self.dropped.values()))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {
            "source": self.source,
            "n_rows": self.n_rows,
            "n_kept": self.n_kept,
            "columns": dict(self.columns),
            "detected": list(self.detected),
            "dropped": dict(self.dropped),
            "filtered": dict(self.filtered),
            "ignored_columns": list(self.ignored_columns),
            "crs_note": self.crs_note,
        }


def to_datetime64(value: Any, *, name: str | None = None) -> np.datetime64:
    """Turn a date-like value (``"2017-03-01"``, Timestamp, datetime64) into datetime64[ns].

    ``name`` is the parameter the value is given for, by Python name (``"start"``): messages
    name it in backticks and the error's ``param`` is it. Default: the word "time".

    Raises
    ------
    ParameterError
        If the value is not a date, or is outside the years 1678-2261 that
        datetime64[ns] holds (a plain cast would silently wrap it to another date).

    Examples
    --------
    >>> to_datetime64("2017-03-01")
    np.datetime64('2017-03-01T00:00:00.000000000')
    """
    name, params = cite(name, "time")
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        raise ParameterError(
            f"{name} {value!r} is not a date (expected ISO 8601, e.g. 2017-03-01).",
            param=params,
        ) from None
    if ts is pd.NaT:
        raise ParameterError(f"{name} is missing (expected ISO 8601, e.g. 2017-03-01).",
                             param=params)
    if ts.tzinfo is not None:
        ts = ts.tz_localize(None)
    moment = ts.to_datetime64()
    if not np.datetime64("1677-09-22") <= moment < np.datetime64("2262-04-11"):
        raise ParameterError(
            f"{name} {value!r} is outside the years 1678-2261 placecast can hold.",
            param=params,
        )
    return moment.astype("datetime64[ns]")


def _times_ns(values: Any) -> np.ndarray:
    """Times as datetime64[ns], refusing values outside 1678-2261 instead of wrapping."""
    array = np.asarray(values)
    if array.dtype.kind != "M":
        array = np.asarray(pd.to_datetime(array))
        if array.dtype.kind != "M":  # tz-aware values come back as objects
            array = np.asarray(pd.to_datetime(array, utc=True).tz_localize(None))
    if array.dtype != np.dtype("datetime64[ns]"):
        valid = array[~np.isnat(array)]
        if len(valid) and (valid.min() < np.datetime64("1677-09-22")
                           or valid.max() >= np.datetime64("2262-04-11")):
            raise DataError("event times outside the years 1678-2261 cannot be held "
                            "(datetime64[ns]); fix or drop them.")
        array = array.astype("datetime64[ns]")
    return array


def _as_float(values: npt.ArrayLike, name: str) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"event {name} must be one-dimensional, got shape {array.shape}.")
    return array


@dataclass(frozen=True, eq=False)
class Events:
    """Point events: what, where, when.

    Parameters
    ----------
    time : array of datetime64[ns]
        Wall-clock time of each event (in ``timezone`` when known).
    x, y : array of float
        Projected coordinates in metres (see ``spatial_reference``).
    spatial_reference : SpatialReference
        The CRS the coordinates belong to.
    category : array of str, optional
        Event type, e.g. ``"BURGLARY"``.
    weight : array of float, optional
        Non-negative weight of each event (default 1).
    incident_id : array of str, optional
        The incident's own record number, used for de-duplication only.
    mark : array of float, optional
        A numeric mark such as an earthquake magnitude.
    timezone : str, optional
        The IANA time zone of ``time`` when the data said or the user gave one.
    report : LoadReport, optional
        What the reader did.

    Raises
    ------
    DataError
        If the arrays differ in length, coordinates are not finite, times are missing or
        weights are negative.

    Examples
    --------
    >>> ev = Events.from_arrays(["2017-03-01", "2017-03-02"], [0.0, 10.0], [0.0, 5.0])
    >>> len(ev), ev.span_days
    (2, 1.0)
    """

    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    spatial_reference: SpatialReference = field(default_factory=lambda: SpatialReference("local:m"))
    category: np.ndarray | None = None
    weight: np.ndarray | None = None
    incident_id: np.ndarray | None = None
    mark: np.ndarray | None = None
    timezone: str | None = None
    report: LoadReport | None = None

    def __post_init__(self) -> None:
        time = np.asarray(self.time)
        if time.dtype != np.dtype("datetime64[ns]"):
            try:
                time = _times_ns(time)
            except (ValueError, TypeError, OverflowError) as exc:
                raise DataError(f"event times are not dates: {exc}") from None
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "x", _as_float(self.x, "x"))
        object.__setattr__(self, "y", _as_float(self.y, "y"))
        n = time.shape[0]
        for name in ("x", "y", "category", "weight", "incident_id", "mark"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise DataError(
                    f"event field {name!r} has {len(value)} values but there are {n} times."
                )
        if np.isnat(time).any():
            raise DataError(f"{int(np.isnat(time).sum())} event times are missing (NaT).")
        if not (np.isfinite(self.x).all() and np.isfinite(self.y).all()):
            raise DataError("event coordinates must be finite numbers.")
        if self.weight is not None:
            weight = _as_float(self.weight, "weight")
            if (weight < 0).any() or not np.isfinite(weight).all():
                raise DataError("event weights must be finite and non-negative.")
            object.__setattr__(self, "weight", weight)
        if self.mark is not None:
            object.__setattr__(self, "mark", _as_float(self.mark, "mark"))
        if self.category is not None:
            object.__setattr__(self, "category", np.asarray(self.category, dtype=object))
        if self.incident_id is not None:
            object.__setattr__(self, "incident_id", np.asarray(self.incident_id, dtype=object))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        time: Sequence[Any] | np.ndarray,
        x: npt.ArrayLike,
        y: npt.ArrayLike,
        *,
        crs: str = "local:m",
        metres_per_unit: float = 1.0,
        **fields: Any,
    ) -> Events:
        """Build events from plain arrays (coordinates already in metres)."""
        return cls(
            time=_times_ns(time),
            x=np.asarray(x, dtype=float),
            y=np.asarray(y, dtype=float),
            spatial_reference=SpatialReference(crs, metres_per_unit),
            **fields,
        )

    # ------------------------------------------------------------------ basics
    def __len__(self) -> int:
        return int(self.time.shape[0])

    @property
    def n_events(self) -> int:
        """Number of events."""
        return len(self)

    @property
    def crs(self) -> str:
        """The projected CRS of the coordinates."""
        return self.spatial_reference.crs

    @property
    def weights(self) -> np.ndarray:
        """Event weights (ones when none were given)."""
        return self.weight if self.weight is not None else np.ones(len(self))

    @property
    def xy(self) -> np.ndarray:
        """Coordinates as an ``(n, 2)`` array in metres."""
        return np.column_stack([self.x, self.y])

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` in metres."""
        if len(self) == 0:
            raise DataError("there are no events, so there is no bounding box.")
        return (float(self.x.min()), float(self.y.min()), float(self.x.max()), float(self.y.max()))

    @property
    def start(self) -> np.datetime64:
        """Time of the first event."""
        if len(self) == 0:
            raise DataError("there are no events, so there is no start time.")
        return self.time.min()

    @property
    def end(self) -> np.datetime64:
        """Time of the last event."""
        if len(self) == 0:
            raise DataError("there are no events, so there is no end time.")
        return self.time.max()

    @property
    def span_days(self) -> float:
        """Days from the first to the last event."""
        return float((self.end - self.start) / np.timedelta64(1, "D"))

    def days_since(self, origin: Any) -> np.ndarray:
        """Event times as float days since ``origin`` (negative before it)."""
        return (self.time - to_datetime64(origin)) / np.timedelta64(1, "D")

    def categories(self) -> dict[str, int]:
        """Category -> number of events, most frequent first."""
        if self.category is None:
            return {}
        names, counts = np.unique(self.category.astype(str), return_counts=True)
        order = np.argsort(-counts, kind="stable")
        return {str(names[i]): int(counts[i]) for i in order}

    # ------------------------------------------------------------------ selection
    def select(self, mask_or_index: npt.ArrayLike) -> Events:
        """Return the events at a boolean mask or integer index."""
        index = np.asarray(mask_or_index)

        def pick(value: np.ndarray | None) -> np.ndarray | None:
            return None if value is None else value[index]

        return replace(
            self,
            time=self.time[index],
            x=self.x[index],
            y=self.y[index],
            category=pick(self.category),
            weight=pick(self.weight),
            incident_id=pick(self.incident_id),
            mark=pick(self.mark),
        )

    def between(self, since: Any = None, until: Any = None) -> Events:
        """Events with ``since <= time < until`` (either bound optional)."""
        mask = np.ones(len(self), dtype=bool)
        if since is not None:
            mask &= self.time >= to_datetime64(since, name="since")
        if until is not None:
            mask &= self.time < to_datetime64(until, name="until")
        return self.select(mask)

    def before(self, moment: Any) -> Events:
        """Events strictly before ``moment`` (what a model may learn from at that origin)."""
        return self.between(None, moment)

    def of_categories(self, categories: Iterable[str]) -> Events:
        """Events whose category is one of ``categories`` (case-insensitive)."""
        wanted = {str(c).strip().upper() for c in categories}
        if self.category is None:
            raise ParameterError(
                "these events have no category column, so they cannot be filtered by "
                "category; map one with `category` COLUMN.", param="category"
            )
        upper = np.char.upper(self.category.astype(str))
        return self.select(np.isin(upper, sorted(wanted)))

    def sorted_by_time(self) -> Events:
        """The same events in time order (stable)."""
        return self.select(np.argsort(self.time, kind="stable"))

    # ------------------------------------------------------------------ export
    def to_frame(self) -> pd.DataFrame:
        """Return a DataFrame with columns ``time, x, y`` and the optional fields present."""
        data: dict[str, Any] = {"time": self.time, "x": self.x, "y": self.y}
        for name in ("category", "weight", "incident_id", "mark"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return pd.DataFrame(data)

    def summary(self) -> dict[str, Any]:
        """Counts, span, bounding box and CRS, JSON-ready."""
        out: dict[str, Any] = {"n_events": len(self), "crs": self.crs}
        if self.spatial_reference.input_crs:
            out["input_crs"] = self.spatial_reference.input_crs
        if len(self):
            out["start"] = str(pd.Timestamp(self.start))
            out["end"] = str(pd.Timestamp(self.end))
            out["bbox_m"] = [round(v, 3) for v in self.bbox]
        if self.timezone:
            out["timezone"] = self.timezone
        if self.category is not None:
            out["categories"] = self.categories()
        return out
