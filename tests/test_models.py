"""The model contract (every registered model) and correctness of naive, kde, prospective."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from scipy.special import erf

from placecast import (
    Events,
    NotFittedError,
    ParameterError,
    TimeWindow,
    aggregate,
    make_model,
    read_events,
)
from placecast.events import SpatialReference
from placecast.models import MODELS, KDEHotspot, NaiveCounts, ProspectiveHotspot
from placecast.pipeline import UnitSpec, build_units
from placecast.units import square_grid

LOCAL = SpatialReference("local:m")


def _synthetic(seed: int = 0, n: int = 400) -> Events:
    rng = np.random.default_rng(seed)
    centre = rng.uniform(200, 800, size=(3, 2))
    which = rng.integers(0, 3, n)
    xy = centre[which] + rng.normal(0, 60, size=(n, 2))
    xy = np.clip(xy, 1, 999)
    days = np.sort(rng.uniform(0, 200, n))
    times = np.datetime64("2020-01-01") + (days * 86400e9).astype("timedelta64[ns]")
    return Events.from_arrays(times, xy[:, 0], xy[:, 1])


@pytest.fixture(scope="module")
def grid():
    return square_grid(shapely.box(0, 0, 1000, 1000), 100.0, LOCAL)


WINDOW = TimeWindow.starting("2020-07-01", "7d")


@pytest.mark.filterwarnings("ignore::placecast.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_contract(name: str, grid) -> None:
    cls = MODELS[name]
    model = cls()
    params = model.get_params()
    assert params, "models take keyword parameters"
    # parameters are stored unchanged
    assert cls(**params).get_params() == params
    with pytest.raises(NotFittedError, match="not fitted"):
        model.predict(grid, WINDOW)
    events = _synthetic()
    assert model.fit(events) is model
    first = model.predict(grid, WINDOW)
    second = cls(**params).fit(events).predict(grid, WINDOW)
    assert first.intensity.shape == (len(grid),)
    assert (first.intensity >= 0).all()
    np.testing.assert_allclose(first.intensity, second.intensity)
    assert first.model == name and first.window == WINDOW
    with pytest.raises(ParameterError, match="has no parameter"):
        cls().set_params(no_such_parameter=1)


@pytest.mark.filterwarnings("ignore::placecast.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("name", sorted(MODELS))
def test_no_look_ahead(name: str, grid) -> None:
    """Events at or after the window start must not change the forecast."""
    events = _synthetic(1)
    before = events.before(WINDOW.start)
    rng = np.random.default_rng(5)
    future = Events.from_arrays(
        WINDOW.start + (rng.uniform(0, 30, 50) * 86400e9).astype("timedelta64[ns]"),
        rng.uniform(0, 1000, 50), rng.uniform(0, 1000, 50))
    both = Events.from_arrays(np.concatenate([events.time, future.time]),
                              np.concatenate([events.x, future.x]),
                              np.concatenate([events.y, future.y]))
    a = make_model(name).fit(before).predict(grid, WINDOW)
    b = make_model(name).fit(both).predict(grid, WINDOW)
    np.testing.assert_allclose(a.intensity, b.intensity)


def test_naive_is_scaled_recent_counts(grid) -> None:
    events = Events.from_arrays(
        ["2020-06-01", "2020-06-02", "2020-06-20", "2019-01-01"],
        [50.0, 50.0, 950.0, 50.0], [50.0, 60.0, 950.0, 50.0])
    forecast = NaiveCounts(lookback_days=60).fit(events).predict(grid, WINDOW)
    # the 2019 event is outside the lookback; history starts 2019-01-01 so the span is 60 d
    expected = np.zeros(len(grid))
    expected[grid.assign([50.0], [50.0])[0]] = 2 * 7 / 60
    expected[grid.assign([950.0], [950.0])[0]] = 1 * 7 / 60
    np.testing.assert_allclose(forecast.intensity, expected)


def test_kde_matches_exact_gaussian_cell_integrals(grid) -> None:
    """Raster KDE vs the closed-form mass of each Gaussian over each square cell.

    A sixth of the events lie just outside the grid: their kernels reach into it.
    """
    inside = _synthetic(2, n=60)
    rng = np.random.default_rng(12)
    outside = Events.from_arrays(inside.time[:12], 1000.0 + rng.uniform(10, 120, 12),
                                 rng.uniform(0, 1000, 12))
    events = Events.from_arrays(np.concatenate([inside.time, outside.time]),
                                np.concatenate([inside.x, outside.x]),
                                np.concatenate([inside.y, outside.y]))
    bandwidth = 80.0
    forecast = KDEHotspot(bandwidth=bandwidth).fit(events).predict(grid, WINDOW)
    history = events.before(WINDOW.start)
    bounds = shapely.bounds(grid.geometry)
    mass = np.zeros(len(grid))
    s = bandwidth * np.sqrt(2.0)
    for x, y in zip(history.x, history.y, strict=True):
        fx = 0.5 * (erf((bounds[:, 2] - x) / s) - erf((bounds[:, 0] - x) / s))
        fy = 0.5 * (erf((bounds[:, 3] - y) / s) - erf((bounds[:, 1] - y) / s))
        mass += fx * fy
    exact = mass / mass.sum() * forecast.expected_total
    # pixel binning (pixel = 25 m) shifts mass by at most half a pixel
    assert np.abs(forecast.intensity - exact).sum() / exact.sum() < 0.03
    assert np.corrcoef(forecast.intensity, exact)[0, 1] > 0.999


def test_kde_bandwidth_rules_and_validation() -> None:
    events = _synthetic(3)
    model = KDEHotspot(bandwidth="scott").fit(events)
    sigma = np.sqrt((events.x.var() + events.y.var()) / 2)
    assert model.bandwidth_ == pytest.approx(sigma * len(events) ** (-1 / 6))
    with pytest.raises(ParameterError, match="unknown bandwidth rule"):
        KDEHotspot(bandwidth="wide").fit(events)
    with pytest.raises(ParameterError, match="bandwidth must be a positive number"):
        KDEHotspot(bandwidth=-5.0).fit(events)


def test_prospective_matches_brute_force(grid) -> None:
    events = _synthetic(4, n=150)
    model = ProspectiveHotspot(bandwidth=250.0, time_bandwidth_days=40.0).fit(events)
    forecast = model.predict(grid, WINDOW)
    history = events.before(WINDOW.start)
    risk = np.zeros(len(grid))
    for j, (cx, cy) in enumerate(grid.centroids):
        for t, x, y in zip(history.time, history.x, history.y, strict=True):
            age_days = (WINDOW.start - t) / np.timedelta64(1, "D")
            d = np.hypot(x - cx, y - cy)
            if d <= 250.0 and age_days <= 40.0:
                risk[j] += 1 / (1 + d / 100.0) * 1 / (1 + age_days / 7.0)
    expected = risk / risk.sum() * forecast.expected_total
    np.testing.assert_allclose(forecast.intensity, expected, rtol=1e-9, atol=1e-12)


def test_expected_total_is_recent_rate_times_window(grid) -> None:
    events = _synthetic(5)
    forecast = KDEHotspot(lookback_days=100).fit(events).predict(grid, WINDOW)
    recent = events.between(WINDOW.start - np.timedelta64(100, "D"), WINDOW.start)
    assert forecast.expected_total == pytest.approx(len(recent) / 100 * 7)


def test_portland_kde_week_beats_chance(shared_data: Path) -> None:
    """The issue's acceptance case: kde, 600 ft cells, 7 days from 2017-03-01, 0.25 sq mi."""
    events = read_events(shared_data / "portland" / "burglary_2012-03_2017-05.csv",
                         crs="EPSG:2913")
    region = shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp"
    units = build_units(events, UnitSpec(cell_size=182.88, region=region))
    window = TimeWindow.starting("2017-03-01", "7d")
    forecast = make_model("kde").fit(events.before(window.start)).predict(units, window)
    observed = aggregate(events.between(window.start, window.end), units)
    flagged = forecast.top_units(0.25 * 1609.344**2)
    hit_rate = observed[flagged].sum() / observed.sum()
    pai = hit_rate / (units.area[flagged].sum() / units.region_area)
    assert observed.sum() == 20 and len(flagged) == 19
    # chance would give PAI 1; anything below 5 would mean the model is broken
    assert hit_rate >= 0.05 and pai > 5
