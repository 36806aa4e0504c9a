"""Prospective hotspotting (Bowers, Johnson & Pease 2004)."""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.spatial import cKDTree

from placecast.events import Events
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive, recent_rate
from placecast.units import Units

__all__ = ["ProspectiveHotspot"]


class ProspectiveHotspot(Forecaster):
    r"""Risk from recent nearby events, decaying with distance and age.

    The risk of unit ``u`` with centroid ``c_u`` at the window start ``t0`` is

    .. math:: r_u = \sum_{i:\ |s_i - c_u| \le b,\ t_0 - T \le t_i < t_0}
              \frac{1}{1 + d_i} \cdot \frac{1}{1 + a_i}

    where ``d_i = |s_i - c_u| / distance_unit`` (in cell widths by default) and
    ``a_i = (t_0 - t_i) / time_unit_days`` (weeks by default). Risks are scaled so that
    units sum to the expected count in the window (recent daily rate x window length).

    Parameters
    ----------
    bandwidth : float
        Spatial bandwidth ``b``, metres (400 m in the paper).
    time_bandwidth_days : float
        Temporal bandwidth ``T``, days (two months in the paper).
    distance_unit : float, optional
        Metres per distance step; default the units' typical size (the paper's cells).
    time_unit_days : float
        Days per time step (7: weeks, as in the paper).
    lookback_days : float
        History used for the expected total, days.

    References
    ----------
    Bowers, K. J., Johnson, S. D. & Pease, K. (2004). Prospective hot-spotting: the future
    of crime mapping? British Journal of Criminology 44(5), 641-658.
    """

    name = "prospective"

    def __init__(self, *, bandwidth: float = 400.0, time_bandwidth_days: float = 60.0,
                 distance_unit: float | None = None, time_unit_days: float = 7.0,
                 lookback_days: float = 365.0) -> None:
        self.bandwidth = bandwidth
        self.time_bandwidth_days = time_bandwidth_days
        self.distance_unit = distance_unit
        self.time_unit_days = time_unit_days
        self.lookback_days = lookback_days

    def fit(self, events: Events) -> Self:
        """Validate parameters and keep the events; returns ``self``."""
        self.bandwidth_ = check_positive(self.bandwidth, "bandwidth")
        self.time_bandwidth_days_ = check_positive(self.time_bandwidth_days,
                                                   "time_bandwidth_days")
        self.distance_unit_ = check_positive(self.distance_unit, "distance_unit",
                                             allow_none=True)
        self.time_unit_days_ = check_positive(self.time_unit_days, "time_unit_days")
        self.lookback_days_ = check_positive(self.lookback_days, "lookback_days")
        self.events_ = events
        return self

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Prospective risk per unit, scaled to expected counts.

        O(k log u) for k (event, unit) pairs within the bandwidth, via a KD-tree.
        """
        check_is_fitted(self)
        history = self._training_events(window)
        rate = recent_rate(history, window, float(self.lookback_days_ or 0))
        horizon = np.timedelta64(int(round(float(self.time_bandwidth_days_ or 0) * 86400e9)),
                                 "ns")
        recent = history.between(window.start - horizon, None)
        distance_unit = self.distance_unit_ or units.typical_size
        risk = np.zeros(len(units))
        if len(recent):
            age = -recent.days_since(window.start) / float(self.time_unit_days_ or 1)
            time_weight = recent.weights / (1.0 + age)
            pairs = cKDTree(recent.xy).sparse_distance_matrix(
                cKDTree(units.centroids), float(self.bandwidth_ or 0), output_type="ndarray")
            i, j, d = pairs["i"], pairs["j"], pairs["v"]
            risk = np.bincount(j, weights=time_weight[i] / (1.0 + d / distance_unit),
                               minlength=len(units)).astype(float)
        total = risk.sum()
        if total <= 0:
            intensity = np.full(len(units), rate * window.days / len(units))
        else:
            intensity = risk / total * rate * window.days
        return self._make_forecast(units, window, intensity, distance_unit_m=distance_unit)
