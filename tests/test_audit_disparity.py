"""Disparity across area groups: hand-made cases with known answers, group assignment."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from placecast.audit import assign_groups, disparity_audit, plot_disparity
from placecast.audit._disparity import OUTSIDE
from placecast.events import SpatialReference
from placecast.exceptions import DataError, ParameterError
from placecast.units import square_grid


@pytest.fixture
def grid():
    """4 x 2 cells of 100 m over [0, 400] x [0, 200], on a local metre grid."""
    return square_grid(box(0, 0, 400, 200), 100.0, SpatialReference("local:m"))


def test_hand_made_shares_ratio_and_exposure():
    flags = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)
    observed = np.array([[1, 0, 1, 0], [0, 0, 2, 0]], dtype=float)
    result = disparity_audit(flags, observed, np.ones(4), np.array([0, 0, 1, 1]),
                             np.array(["west", "east"]),
                             unit_population=np.array([10, 10, 30, 50]), n_boot=200)
    t = result.table.set_index("group")
    assert t.loc["west", "event_share"] == pytest.approx(0.25)
    assert t.loc["east", "event_share"] == pytest.approx(0.75)
    assert t.loc["west", "flag_share"] == pytest.approx(1.0)
    assert t.loc["east", "flag_share"] == pytest.approx(0.0)
    assert t.loc["west", "ratio"] == pytest.approx(4.0)
    assert t.loc["west", "exposure_per_area"] == pytest.approx(3 / 4)   # 3 flagged of 2x2
    assert t.loc["west", "exposure_per_capita"] == pytest.approx(30 / 40)  # (20+10)/(2x20)
    assert t.loc["east", "exposure_per_capita"] == pytest.approx(0.0)
    assert t.loc["east", "population"] == pytest.approx(80)
    assert t.loc["west", "area_share"] == pytest.approx(0.5)
    assert t.loc["west", "ratio_low"] <= 4.0 <= t.loc["west", "ratio_high"]
    assert list(result.to_dict()["groups"][0]) [:2] == ["group", "n_units"]


def test_flag_share_is_weighted_by_unit_area():
    flags = np.array([[1, 0, 1]], dtype=bool)
    result = disparity_audit(flags, np.ones((1, 3)), np.array([3.0, 1.0, 1.0]),
                             np.array([0, 1, 1]), ["big", "small"], n_boot=0)
    t = result.table.set_index("group")
    assert t.loc["big", "flag_share"] == pytest.approx(0.75)
    assert t.loc["small", "exposure_per_area"] == pytest.approx(0.5)
    assert np.isnan(t.loc["big", "flag_share_low"])  # no bootstrap asked


def test_identical_periods_give_degenerate_intervals():
    flags = np.tile([True, False, True, False], (6, 1))
    observed = np.tile([2.0, 1.0, 0.0, 1.0], (6, 1))
    result = disparity_audit(flags, observed, np.ones(4), np.array([0, 0, 1, 1]), ["a", "b"],
                             n_boot=100, random_state=1)
    for column in ("flag_share", "event_share", "ratio", "exposure_per_area"):
        assert np.allclose(result.table[f"{column}_low"], result.table[column])
        assert np.allclose(result.table[f"{column}_high"], result.table[column])


def test_bootstrap_is_reproducible_and_brackets_the_estimate():
    rng = np.random.default_rng(3)
    flags = rng.random((40, 30)) < 0.2
    observed = rng.poisson(0.5, (40, 30)).astype(float)
    group = np.repeat([0, 1, 2], 10)
    a = disparity_audit(flags, observed, np.ones(30), group, ["a", "b", "c"], random_state=5)
    b = disparity_audit(flags, observed, np.ones(30), group, ["a", "b", "c"], random_state=5)
    assert a.table.equals(b.table)
    t = a.table
    assert ((t["flag_share_low"] <= t["flag_share"]) & (t["flag_share"] <= t["flag_share_high"])
            ).all()
    assert t["flag_share"].sum() == pytest.approx(1.0)
    assert t["event_share"].sum() == pytest.approx(1.0)


def test_units_outside_every_group_get_their_own_row():
    flags = np.array([[1, 0, 1]], dtype=bool)
    result = disparity_audit(flags, np.ones((1, 3)), np.ones(3), np.array([0, -1, -1]),
                             ["a"], n_boot=0)
    assert result.table["group"].tolist() == ["a", OUTSIDE]
    assert result.table.set_index("group").loc[OUTSIDE, "n_units"] == 2


def test_disparity_rejects_bad_input():
    flags = np.zeros((2, 3), dtype=bool)
    with pytest.raises(ParameterError, match="one value per unit"):
        disparity_audit(flags, np.zeros((2, 3)), np.ones(2), np.zeros(3, dtype=int), ["a"])
    with pytest.raises(ParameterError, match="index labels"):
        disparity_audit(flags, np.zeros((2, 3)), np.ones(3), np.array([0, 1, 2]), ["a"])
    with pytest.raises(ParameterError, match="level"):
        disparity_audit(flags, np.zeros((2, 3)), np.ones(3), np.zeros(3, dtype=int), ["a"],
                        level=1.5)


def test_assign_groups_by_centroid_and_population(grid):
    groups = gpd.GeoDataFrame({"side": ["W", "E"], "pop": [100.0, 300.0]},
                              geometry=[box(0, 0, 200, 200), box(200, 0, 400, 200)])
    assignment = assign_groups(grid, groups, "side", population="pop")
    labels = assignment.labels[assignment.unit_group]
    x = grid.centroids[:, 0]
    assert (labels[x < 200] == "W").all() and (labels[x > 200] == "E").all()
    # areal weighting: each of the 4 cells of a side gets a quarter of its population
    assert np.allclose(assignment.unit_population[x < 200], 25.0)
    assert np.allclose(assignment.unit_population[x > 200], 75.0)
    assert assignment.to_dict()["groups"] == {"E": 4, "W": 4}


def test_centroid_and_largest_overlap_can_disagree(grid):
    # W reaches into cell (200..300, 0..100) in two strips covering 60% of it, but not
    # at its centroid (250, 50).
    west = shapely.union_all([box(0, 0, 200, 200), box(200, 0, 300, 45), box(200, 55, 300, 70)])
    east = shapely.difference(box(200, 0, 400, 200), west)
    groups = gpd.GeoDataFrame({"side": ["W", "E"]}, geometry=[west, east])
    cell = int(np.flatnonzero((grid.centroids[:, 0] == 250) & (grid.centroids[:, 1] == 50))[0])
    by_centroid = assign_groups(grid, groups, "side", method="centroid")
    by_overlap = assign_groups(grid, groups, "side", method="overlap")
    assert by_centroid.labels[by_centroid.unit_group[cell]] == "E"
    assert by_overlap.labels[by_overlap.unit_group[cell]] == "W"


def test_quantile_groups_and_units_outside(grid):
    polygons = [box(0, 0, 100, 200), box(100, 0, 200, 200), box(200, 0, 300, 200)]
    groups = gpd.GeoDataFrame({"income": [10.0, 20.0, 30.0]}, geometry=polygons)
    assignment = assign_groups(grid, groups, "income", quantiles=3)
    assert len(assignment.labels) == 3 and assignment.labels[0].startswith("Q1")
    x = grid.centroids[:, 0]
    assert (assignment.unit_group[x > 300] == -1).all()  # the last column is in no polygon
    assert (assignment.unit_group[x < 100] == 0).all()
    assert (assignment.unit_group[(x > 200) & (x < 300)] == 2).all()


def test_assign_groups_errors_name_the_problem(grid, tmp_path):
    groups = gpd.GeoDataFrame({"name": ["a"]}, geometry=[box(0, 0, 400, 200)])
    with pytest.raises(DataError, match="no column 'district'"):
        assign_groups(grid, groups, "district")
    with pytest.raises(DataError, match="not numeric"):
        assign_groups(grid, groups, "name", quantiles=2)
    with pytest.raises(ParameterError, match="centroid or overlap"):
        assign_groups(grid, groups, "name", method="nearest")
    with pytest.raises(DataError, match="no such group polygon file"):
        assign_groups(grid, tmp_path / "missing.gpkg", "name")


def test_plot_disparity_writes_png_and_svg(tmp_path):
    flags = np.array([[1, 0, 1, 0], [1, 1, 0, 0]], dtype=bool)
    observed = np.array([[1, 1, 0, 1], [0, 2, 0, 1]], dtype=float)
    result = disparity_audit(flags, observed, np.ones(4), np.array([0, 1, 1, 2]),
                             ["a", "b", "c"], n_boot=50)
    png = plot_disparity(result, tmp_path / "d.png")
    svg = plot_disparity(result, tmp_path / "d.svg")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "<svg" in svg.read_text()
