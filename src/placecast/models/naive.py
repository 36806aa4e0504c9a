"""Naive forecast: each unit's recent count, scaled to the window."""

from __future__ import annotations

from typing import Self

import numpy as np

from placecast.events import Events
from placecast.forecast import Forecast, TimeWindow
from placecast.models._base import Forecaster, check_is_fitted, check_positive
from placecast.units import Units, aggregate

__all__ = ["NaiveCounts"]


class NaiveCounts(Forecaster):
    r"""Recent counts per unit, scaled to the window length.

    The expected count in unit ``u`` over a window of ``W`` days starting at ``t0`` is

    .. math:: \hat N_u = \frac{W}{L} \, \#\{i : x_i \in u,\ t_0 - L \le t_i < t0\}

    with lookback ``L`` days (prorated when the data start later than ``t0 - L``).

    Parameters
    ----------
    lookback_days : float
        Length of the history counted, days.

    Examples
    --------
    >>> from placecast.events import Events
    >>> ev = Events.from_arrays(["2017-01-01", "2017-02-01"], [5.0, 5.0], [5.0, 5.0])
    >>> NaiveCounts(lookback_days=365).fit(ev).lookback_days_
    365.0
    """

    name = "naive"

    def __init__(self, *, lookback_days: float = 365.0) -> None:
        self.lookback_days = lookback_days

    def fit(self, events: Events) -> Self:
        """Validate the parameters and keep the events; returns ``self``."""
        self.lookback_days_ = check_positive(self.lookback_days, "lookback_days")
        self.events_ = events
        return self

    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Scaled recent counts per unit."""
        check_is_fitted(self)
        lookback = self.lookback_days_
        assert lookback is not None
        history = self._training_events(window)
        start = window.start - np.timedelta64(int(round(lookback * 86400e9)), "ns")
        recent = history.between(start, None)
        counts = aggregate(recent, units)
        first = max(start, history.start) if len(history) else start
        span = max(float((window.start - first) / np.timedelta64(1, "D")), 1.0)
        return self._make_forecast(units, window, counts * (window.days / span))
