"""Grid ETAS defers its default grid: same estimates and backtests, no wasted grid."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from placecast.exceptions import DataError, NotFittedError
from placecast.models import GridETAS
from placecast.models import etas as etas_module


class EagerGridETAS(GridETAS):
    """The behaviour before: ``fit`` builds the default grid and fits on it at once."""

    def fit(self, events, *, units=None):
        super().fit(events, units=units)
        _ = self.fit_  # force the default grid and its EM now
        return self


@pytest.fixture(scope="module")
def portland():
    """Portland burglaries, autumn 2016 to spring 2017, and a 1,000 ft grid."""
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    keep = ((events.time >= np.datetime64("2016-09-01"))
            & (events.time < np.datetime64("2017-04-01")))
    events = events.select(keep)
    units = build_units(events, UnitSpec(cell_size=parse_length("1000ft")))
    return events, units


def test_deferred_fit_gives_the_same_estimates(portland):
    events, _ = portland
    lazy = GridETAS(cell_size=400.0).fit(events)
    assert lazy._fitted is None and lazy._units is None  # nothing built yet
    grid = lazy._default_units()
    explicit = GridETAS(cell_size=400.0).fit(events, units=grid)
    assert lazy.theta_ == explicit.theta_ and lazy.omega_ == explicit.omega_
    np.testing.assert_array_equal(lazy.mu_, explicit.mu_)
    np.testing.assert_array_equal(lazy.units_.unit_id, grid.unit_id)
    assert lazy.fit_.loglik == explicit.fit_.loglik
    assert lazy.units_ is lazy.units_  # built once


def test_forecasts_identical_to_the_eager_fit(portland):
    from placecast.forecast import TimeWindow

    events, units = portland
    window = TimeWindow.starting(np.datetime64("2017-03-01"), "14d")
    training = events.before(window.start)
    for model in (GridETAS(), GridETAS(background_smoothing=300.0)):
        eager = EagerGridETAS(**model.get_params()).fit(training).predict(units, window)
        lazy = model.fit(training).predict(units, window)
        np.testing.assert_array_equal(lazy.intensity, eager.intensity)
        assert lazy.params == eager.params
        assert model._units is None  # the default grid was never needed
    # Predicting on the fitted grid itself still uses the fit made on it.
    lazy = GridETAS(cell_size=600.0).fit(training)
    on_own = lazy.predict(lazy.units_, window)
    eager = EagerGridETAS(cell_size=600.0).fit(training)
    np.testing.assert_array_equal(on_own.intensity,
                                  eager.predict(eager.units_, window).intensity)
    assert lazy._refit is None


def test_backtest_identical_and_never_builds_the_default_grid(portland, monkeypatch):
    from placecast.evaluate import run_backtest

    events, units = portland
    kwargs = {"start": "2017-02-01", "end": "2017-03-15", "step": "14d",
              "horizons": ("7d",), "area": "2%"}
    before = run_backtest(events, units, models={"etas": EagerGridETAS()}, **kwargs).records

    def no_grid(*args, **kw):
        raise AssertionError("the default grid was built")

    monkeypatch.setattr(etas_module, "square_grid", no_grid)
    after = run_backtest(events, units, models={"etas": GridETAS()}, **kwargs).records
    assert len(after) >= 3
    pd.testing.assert_frame_equal(after.drop(columns="seconds", errors="ignore"),
                                  before.drop(columns="seconds", errors="ignore"))


def test_refusals_stay_at_fit(portland):
    events, _ = portland
    one_moment = events.select(events.time == events.time[0])
    with pytest.raises(DataError, match="spread over time"):
        GridETAS().fit(one_moment)
    with pytest.raises(DataError, match="needs events"):
        GridETAS().fit(events.select(np.zeros(len(events), dtype=bool)))
    model = GridETAS()
    with pytest.raises(AttributeError):
        _ = model.fit_
    from placecast.forecast import TimeWindow

    with pytest.raises(NotFittedError):
        model.predict(portland[1], TimeWindow.starting(np.datetime64("2017-03-01"), "7d"))
