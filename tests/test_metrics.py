"""Metrics against hand-computed cases, a brute-force implementation on real data, and
invariants (hypothesis)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from placecast.evaluate import (
    calibration,
    hit_rate,
    hit_rate_curve,
    hit_rate_curve_from_counts,
    hit_rate_from_counts,
    log_score,
    log_score_from_counts,
    pai,
    pai_from_counts,
    pei_star,
    pei_star_from_counts,
    score_forecast,
    top_units_by_area,
)
from placecast.events import Events, SpatialReference
from placecast.exceptions import ParameterError, UndefinedMetricWarning
from placecast.forecast import Forecast, TimeWindow
from placecast.units import square_grid

WINDOW = TimeWindow.starting("2017-03-01", "7d")


def four_cells():
    """A 2 x 2 grid of 10 m cells over a 20 m square: unit areas 100, region 400."""
    return square_grid(shapely.box(0, 0, 20, 20), 10.0, SpatialReference("local:m"))


def events_in(units, counts, day="2017-03-02"):
    """Events at the centroids of units, ``counts[u]`` of them in unit ``u``."""
    centres = units.centroids
    xs, ys = [], []
    for unit, n in enumerate(counts):
        xs += [centres[unit, 0]] * int(n)
        ys += [centres[unit, 1]] * int(n)
    return Events.from_arrays([day] * len(xs), xs, ys)


def forecast_of(units, intensity):
    return Forecast(units, WINDOW, np.asarray(intensity, dtype=float), "test")


# ---------------------------------------------------------------------- hand-computed cases
def test_hand_computed_case():
    units = four_cells()
    fc = forecast_of(units, [0.9, 0.1, 0.5, 0.8])
    events = events_in(units, [3, 1, 0, 4])
    # budget 200 m2 = two cells: units 0 and 3 flagged -> n = 7 of N = 8
    assert hit_rate(fc, events, area=200) == pytest.approx(7 / 8)
    assert pai(fc, events, area=200) == pytest.approx((7 / 8) / (200 / 400))
    assert pei_star(fc, events, area=200) == pytest.approx(7 / 7)
    # one cell (unit 0, 3 events) while the best single cell held 4
    assert pei_star(fc, events, area=150) == pytest.approx(3 / 4)
    assert pai(fc, events, area=150) == pytest.approx((3 / 8) / (100 / 400))
    # a budget given as a share of the region: 50% = 200 m2
    assert pai(fc, events, area="50%") == pytest.approx(1.75)


def test_events_outside_window_and_region_are_ignored():
    units = four_cells()
    fc = forecast_of(units, [0.9, 0.1, 0.5, 0.8])
    inside = events_in(units, [3, 1, 0, 4])
    later = events_in(units, [0, 5, 5, 0], day="2017-03-08")  # the window is [1st, 8th)
    outside = Events.from_arrays(["2017-03-02"] * 3, [50.0] * 3, [50.0] * 3)
    both = Events(time=np.concatenate([inside.time, later.time, outside.time]),
                  x=np.concatenate([inside.x, later.x, outside.x]),
                  y=np.concatenate([inside.y, later.y, outside.y]))
    assert hit_rate(fc, both, area=200) == pytest.approx(7 / 8)


def test_ties_first_and_mean():
    units = four_cells()
    fc = forecast_of(units, [1.0, 1.0, 1.0, 0.0])
    counts = np.array([0.0, 2.0, 4.0, 1.0])
    # first: ties broken by unit order -> units 0, 1 -> 2 events of 7
    assert hit_rate(fc, counts, area=200) == pytest.approx(2 / 7)
    # mean over random tie-breaks: 2 of the 3 tied units, holding 6 events -> 4 expected
    assert hit_rate(fc, counts, area=200, ties="mean") == pytest.approx(4 / 7)
    assert pai(fc, counts, area=200, ties="mean") == pytest.approx((4 / 7) / 0.5)
    assert pei_star(fc, counts, area=200, ties="mean") == pytest.approx(4 / 6)
    # a budget covering the whole tie group needs no averaging
    assert hit_rate(fc, counts, area=300, ties="mean") == pytest.approx(6 / 7)
    with pytest.raises(ParameterError, match="ties='random'"):
        hit_rate(fc, counts, area=200, ties="random")


def test_empty_window_is_nan_with_warning():
    units = four_cells()
    fc = forecast_of(units, [0.9, 0.1, 0.5, 0.8])
    none = np.zeros(4)
    for metric in (hit_rate, pai, pei_star):
        with pytest.warns(UndefinedMetricWarning, match="undefined"):
            assert math.isnan(metric(fc, none, area=200))
    with pytest.warns(UndefinedMetricWarning, match="N = 0"):
        assert math.isnan(log_score(fc, none))
    with pytest.warns(UndefinedMetricWarning):
        score = score_forecast(fc, none, area=200)
    assert math.isnan(score.pai) and score.n_events == 0 and score.n_flagged_units == 2
    with pytest.warns(UndefinedMetricWarning):
        curve = hit_rate_curve(fc, none)
    assert math.isnan(curve.auc)
    with pytest.warns(UndefinedMetricWarning):
        assert math.isnan(hit_rate_from_counts([0, 0], [0]))


def test_array_variants_match_forecast_metrics():
    units = four_cells()
    intensity = np.array([0.2, 0.7, 0.1, 0.4])
    counts = np.array([1.0, 2.0, 0.0, 3.0])
    fc = forecast_of(units, intensity)
    flagged = top_units_by_area(intensity, units.area, 200)
    np.testing.assert_array_equal(flagged, fc.top_units(200))
    assert hit_rate_from_counts(counts, flagged) == hit_rate(fc, counts, area=200)
    assert pai_from_counts(counts, flagged, units.area, units.region_area) == pytest.approx(
        pai(fc, counts, area=200))
    assert pei_star_from_counts(counts, flagged) == pytest.approx(pei_star(fc, counts,
                                                                           area=200))
    score = score_forecast(fc, counts, area=200)
    assert score.hits == 5 and score.flagged_area == pytest.approx(200)
    assert score.log_score == pytest.approx(log_score_from_counts(intensity, counts))


def test_log_score_hand_computed_and_floor():
    # lambda = (2, 0.5), y = (1, 0): [1*log 2 - 2 - log 1!] + [0 - 0.5] per 1 event
    assert log_score_from_counts([2.0, 0.5], [1, 0]) == pytest.approx(math.log(2) - 2.5)
    # y = 3 in one unit: (3 log 1.5 - 1.5 - log 6 - 0.5) / 3
    assert log_score_from_counts([1.5, 0.5], [3, 0]) == pytest.approx(
        (3 * math.log(1.5) - 2.0 - math.log(6)) / 3)
    # a zero forecast where an event happened costs log(floor), not -inf
    assert log_score_from_counts([0.0, 1.0], [1, 0], floor=1e-4) == pytest.approx(
        math.log(1e-4) - 1.0)
    with pytest.raises(ParameterError, match="floor must be positive"):
        log_score_from_counts([1.0], [1], floor=0.0)


def test_hit_rate_curve_and_auc():
    curve = hit_rate_curve_from_counts([3.0, 2.0, 1.0, 0.0], [2, 1, 1, 0], [1, 1, 1, 1], 4.0)
    np.testing.assert_allclose(curve.coverage, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.hit_rate, [0, 0.5, 0.75, 1.0, 1.0])
    # trapezoids: (0+.5)/2*.25 + (.5+.75)/2*.25 + (.75+1)/2*.25 + 1*.25
    assert curve.auc == pytest.approx(0.25 * (0.25 + 0.625 + 0.875 + 1.0))
    assert curve.at(0.5) == 0.75 and curve.at(0.6) == 0.75
    assert list(curve.to_frame().columns) == ["coverage", "hit_rate"]


def test_calibration_totals_and_deciles():
    units = four_cells()
    fc = forecast_of(units, [0.9, 0.1, 0.5, 0.8])
    cal = calibration(fc, np.array([3.0, 1.0, 0.0, 4.0]))
    assert cal.predicted_total == pytest.approx(2.3)
    assert cal.observed_total == 8
    assert cal.ratio == pytest.approx(8 / 2.3)
    assert cal.by_decile["observed"].sum() == 8
    assert cal.by_decile["predicted"].sum() == pytest.approx(2.3)


def test_area_budget_checks():
    units = four_cells()
    fc = forecast_of(units, [0.9, 0.1, 0.5, 0.8])
    counts = np.array([3.0, 1.0, 0.0, 4.0])
    with pytest.raises(ParameterError, match="smaller than one unit"):
        pai(fc, counts, area=50)
    with pytest.raises(ParameterError, match="larger than the region"):
        pai(fc, counts, area="1sqmi")
    with pytest.raises(ParameterError, match="one per unit"):
        pai(fc, np.ones(3), area=200)


# ---------------------------------------------------------------------- invariants
@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 10), st.integers(0, 5)), min_size=4, max_size=4),
       st.floats(0.01, 100.0))
def test_invariants(pairs, scale):
    units = four_cells()
    intensity = np.array([p[0] for p in pairs])
    counts = np.array([p[1] for p in pairs], dtype=float)
    if counts.sum() == 0:
        return
    fc = forecast_of(units, intensity)
    rates = [hit_rate(fc, counts, area=a) for a in (100, 200, 300, 400)]
    assert all(0 <= r <= 1 for r in rates)
    assert all(np.diff(rates) >= -1e-12)  # non-decreasing in coverage
    assert rates[-1] == pytest.approx(1.0)
    pei = pei_star(fc, counts, area=200, ties="mean") if counts.max() > 0 else 1.0
    assert 0 <= pei <= 1 + 1e-12
    scaled = forecast_of(units, intensity * scale)
    assert pai(scaled, counts, area=200) == pytest.approx(pai(fc, counts, area=200))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 2), min_size=4, max_size=4),
       st.lists(st.integers(0, 4), min_size=4, max_size=4), st.integers(1, 3))
def test_ties_mean_is_the_average_over_every_tie_break(levels, counts, k):
    import itertools

    units = four_cells()
    intensity = np.array(levels, dtype=float)
    observed = np.array(counts, dtype=float)
    if observed.sum() == 0:
        return
    fc = forecast_of(units, intensity)
    outcomes = []
    for tie_break in itertools.permutations(range(4)):  # every order within tie groups
        ranked = sorted(range(4), key=lambda u: (-intensity[u], tie_break[u]))
        outcomes.append(observed[ranked[:k]].sum() / observed.sum())
    assert hit_rate(fc, observed, area=100.0 * k, ties="mean") == pytest.approx(
        np.mean(outcomes))


# ---------------------------------------------------------------------- real data, brute force
def brute_force_scores(forecast, x, y, area_budget):
    """Slow, independent PAI and PEI*: sort with Python, count points with polygons."""
    units = forecast.units
    ranked = sorted(range(len(units)), key=lambda u: (-forecast.intensity[u], u))
    chosen, used = [], 0.0
    for u in ranked:
        if used + units.area[u] > area_budget * (1 + 1e-9):
            break
        chosen.append(u)
        used += units.area[u]
    # count each point in the unit polygon that covers it (first on shared edges)
    tree = shapely.STRtree(units.geometry)
    per_unit = {}
    for px, py in zip(x, y, strict=True):
        hits = sorted(tree.query(shapely.Point(px, py), predicate="covered_by"))
        if hits:
            per_unit[hits[0]] = per_unit.get(hits[0], 0) + 1
    total = sum(per_unit.values())
    n = sum(per_unit.get(u, 0) for u in chosen)
    best = sum(sorted(per_unit.values(), reverse=True)[:len(chosen)])
    pai_value = (n / total) / (used / units.region_area)
    return pai_value, n / best, n, total, len(chosen)


@pytest.mark.parametrize("model", ["kde", "naive"])
def test_pai_pei_star_against_brute_force_on_portland(shared_data, model):
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast

    folder = shared_data / "portland"
    events = read_events(folder / "burglary_2012-03_2017-05.csv", crs="EPSG:2913",
                         since="2016-01-01")
    units = build_units(events, UnitSpec(
        cell_size=182.88, region=folder / "police_districts" / "Portland_Police_Districts.shp"))
    forecast = run_forecast(events, model=model, at="2017-03-01", horizon="1M", units=units)
    window = events.between(forecast.window.start, forecast.window.end)
    budget = 0.25 * 1609.344**2
    expected_pai, expected_pei, n, total, k = brute_force_scores(forecast, window.x, window.y,
                                                                 budget)
    assert total > 50 and k == 19  # 600 ft cells: 19 fit in 0.25 sq mi
    score = score_forecast(forecast, events, area="0.25sqmi")
    assert score.n_events == total and score.hits == n and score.n_flagged_units == k
    assert score.pai == pytest.approx(expected_pai)
    assert score.pei_star == pytest.approx(expected_pei)
    assert pai(forecast, events, area="0.25sqmi") == pytest.approx(expected_pai)
