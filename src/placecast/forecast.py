"""Forecasts: expected event counts per area unit over a time window (immutable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from placecast.events import to_datetime64
from placecast.exceptions import ParameterError
from placecast.quantities import Duration, parse_duration
from placecast.units import Units

__all__ = ["Forecast", "TimeWindow"]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    """A half-open time window ``[start, end)``.

    Examples
    --------
    >>> w = TimeWindow.starting("2017-03-01", "7d")
    >>> w.days
    7.0
    >>> str(w)
    '2017-03-01 .. 2017-03-08'
    """

    start: np.datetime64
    end: np.datetime64

    def __post_init__(self) -> None:
        start = to_datetime64(self.start, name="window start")
        end = to_datetime64(self.end, name="window end")
        if end <= start:
            raise ParameterError(f"the window must end after it starts ({start} .. {end}).")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)

    @classmethod
    def starting(cls, start: Any, horizon: str | float | Duration) -> TimeWindow:
        """The window from ``start`` lasting ``horizon`` (``"7d"``, ``"1M"``, ...)."""
        duration = horizon if isinstance(horizon, Duration) else parse_duration(
            horizon, name="horizon")
        begin = pd.Timestamp(to_datetime64(start, name="start"))
        return cls(begin.to_datetime64().astype("datetime64[ns]"),
                   duration.add_to(begin).to_datetime64().astype("datetime64[ns]"))

    @property
    def days(self) -> float:
        """Length of the window in days."""
        return float((self.end - self.start) / np.timedelta64(1, "D"))

    def __str__(self) -> str:
        def fmt(t: np.datetime64) -> str:
            ts = pd.Timestamp(t)
            return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()

        return f"{fmt(self.start)} .. {fmt(self.end)}"

    def to_dict(self) -> dict[str, str]:
        """``{"start": ISO, "end": ISO}``."""
        return {"start": pd.Timestamp(self.start).isoformat(),
                "end": pd.Timestamp(self.end).isoformat()}


@dataclass(frozen=True, eq=False)
class Forecast:
    """Expected number of events in each unit over a window.

    Attributes
    ----------
    units : Units
        The area units forecast.
    window : TimeWindow
        The forecast window.
    intensity : ndarray of float, shape (n_units,)
        Expected event count per unit in the window (non-negative).
    model : str
        Name of the model that made it.
    params : dict
        The model's parameters (and fitted values worth reporting).
    details : DataFrame, optional
        Extra per-unit columns in unit order, e.g. the features that raised each unit's
        forecast most (``BoostedPoisson.explain``); ``to_frame`` appends them.
    """

    units: Units
    window: TimeWindow
    intensity: np.ndarray
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    details: pd.DataFrame | None = None

    def __post_init__(self) -> None:
        values = np.asarray(self.intensity, dtype=float)
        if values.shape != (len(self.units),):
            raise ParameterError(
                f"forecast intensity has shape {values.shape}, expected ({len(self.units)},)."
            )
        if not np.isfinite(values).all() or (values < 0).any():
            raise ParameterError("forecast intensities must be finite and non-negative.")
        values.setflags(write=False)
        object.__setattr__(self, "intensity", values)
        if self.details is not None and len(self.details) != len(self.units):
            raise ParameterError(
                f"forecast details have {len(self.details)} rows, expected {len(self.units)}."
            )

    @property
    def expected_total(self) -> float:
        """Expected number of events in the region over the window."""
        return float(self.intensity.sum())

    @property
    def order(self) -> np.ndarray:
        """Unit indices from highest to lowest intensity (ties: lower index first)."""
        return np.argsort(-self.intensity, kind="stable")

    @property
    def rank(self) -> np.ndarray:
        """Rank of each unit, 1 = highest intensity (ties broken by unit order)."""
        ranks = np.empty(len(self.intensity), dtype=np.int64)
        ranks[self.order] = np.arange(1, len(self.intensity) + 1)
        return ranks

    def top_units(self, area: float) -> np.ndarray:
        """Indices of the highest-ranked units whose total area stays within ``area`` m²."""
        order = self.order
        cumulative = np.cumsum(self.units.area[order])
        return order[cumulative <= area * (1 + 1e-9)]

    def to_frame(self, *, geometry: bool = False, crs: str | None = None) -> pd.DataFrame:
        """Table of ``unit_id, intensity, rank`` (and WKT ``geometry`` in ``crs``).

        Parameters
        ----------
        geometry : bool
            Add a WKT ``geometry`` column.
        crs : str, optional
            CRS of the geometry; default the CRS the events came in.
        """
        frame = pd.DataFrame({
            "unit_id": self.units.unit_id,
            "intensity": self.intensity,
            "rank": self.rank,
        })
        if geometry:
            import shapely

            frame.insert(1, "geometry", shapely.to_wkt(self.units.geometry_in(crs),
                                                       rounding_precision=3))
        if self.details is not None:
            for column in self.details.columns:
                frame[column] = self.details[column].to_numpy()
        return frame.sort_values("rank", kind="stable").reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """What produced the forecast and its totals, JSON-ready (no per-unit values)."""
        return {
            "model": self.model,
            "params": self.params,
            "window": self.window.to_dict(),
            "n_units": len(self.units),
            "units": self.units.description,
            "crs": self.units.spatial_reference.source_crs,
            "expected_total": self.expected_total,
        }
