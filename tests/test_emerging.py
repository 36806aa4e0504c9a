"""Emerging hot spots: planted patterns recovered, Gi* and Mann-Kendall against brute force."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from placecast.cli import app
from placecast.clusters import PATTERNS, SpaceTimeCube, emerging_hot_spots, mann_kendall
from placecast.clusters._emerging import _benjamini_hochberg, _classify
from placecast.exceptions import DataError, ParameterError

N, T = 20, 20


def _cube(rate: np.ndarray, seed: int = 0) -> SpaceTimeCube:
    rng = np.random.default_rng(seed)
    cx, cy = np.meshgrid(np.arange(N) * 100.0, np.arange(N) * 100.0, indexing="ij")
    return SpaceTimeCube(counts=rng.poisson(rate).reshape(N * N, -1),
                         centroids=np.column_stack([cx.ravel(), cy.ravel()]),
                         step_edges=np.arange(rate.shape[-1] + 1).astype("datetime64[D]"),
                         unit_ids=np.array([f"u{k}" for k in range(N * N)]))


def test_planted_new_intensifying_persistent_hot_spots() -> None:
    rate = np.full((N, N, T), 2.0)
    rate[2:5, 2:5, -1] += 12                        # new: only the last step
    rate[10:13, 2:5, :] += np.linspace(1, 12, T)    # intensifying
    rate[2:5, 12:15, :] += 8                        # persistent
    result = emerging_hot_spots(_cube(rate), distance=150, time_steps=1)
    pattern = result.pattern.reshape(N, N)
    assert pattern[3, 3] == "new hot spot"
    assert pattern[11, 3] == "intensifying hot spot"
    assert pattern[3, 13] == "persistent hot spot"
    # far from the plants, nothing
    assert (pattern[15:, 15:] == "no pattern detected").mean() > 0.9


def test_planted_persistent_cold_spot() -> None:
    rate = np.full((N, N, T), 6.0)
    rate[12:17, 12:17, :] = 0.5
    pattern = emerging_hot_spots(_cube(rate, 1), distance=150).pattern.reshape(N, N)
    assert pattern[14, 14] == "persistent cold spot"


def _series(text: str) -> np.ndarray:
    return np.array([{"H": 1, "C": -1, ".": 0}[c] for c in text])


@pytest.mark.parametrize("series,trend,expected", [
    ("..........H", 0.0, "new hot spot"),
    ("........HHH", 0.0, "consecutive hot spot"),
    ("HHHHHHHHHHH", 3.0, "intensifying hot spot"),
    ("HHHHHHHHHHH", 0.0, "persistent hot spot"),
    ("HHHHHHHHHHH", -3.0, "diminishing hot spot"),
    ("..H..H...HH", 0.0, "sporadic hot spot"),
    ("CC......H.H", 0.0, "oscillating hot spot"),
    ("HHHHHHHHHH.", 0.0, "historical hot spot"),
    ("..........C", 0.0, "new cold spot"),
    ("CCCCCCCCCCC", -3.0, "intensifying cold spot"),
    ("HH..C...C.C", 0.0, "oscillating cold spot"),
    ("...H.......", 0.0, "no pattern detected"),
])
def test_pattern_rules(series: str, trend: float, expected: str) -> None:
    sig = _series(series)[None, :]
    p = 2 * (1 - 0.999) if trend else 0.8
    assert _classify(sig, np.array([trend]), np.array([p]), 0.1, 0.9)[0] == expected
    assert expected in PATTERNS


def test_gi_star_matches_formula() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(3, size=(9, 6)).astype(float)
    xy = np.array(list(itertools.product(range(3), range(3))), dtype=float) * 100
    cube = SpaceTimeCube(counts=counts, centroids=xy,
                         step_edges=np.arange(7).astype("datetime64[D]"),
                         unit_ids=np.arange(9).astype(str))
    result = emerging_hot_spots(cube, distance=100, time_steps=2, fdr=False)
    n = counts.size
    mean, sd = counts.mean(), counts.std()
    for u, k in [(4, 5), (0, 0), (8, 3)]:
        nbrs = [v for v in range(9) if np.hypot(*(xy[v] - xy[u])) <= 100]
        steps = range(max(0, k - 2), k + 1)
        values = [counts[v, s] for v in nbrs for s in steps]
        w = len(values)
        z = (sum(values) - mean * w) / (sd * np.sqrt((n * w - w * w) / (n - 1)))
        assert result.z_scores[u, k] == pytest.approx(z)


def test_mann_kendall_against_loops() -> None:
    rng = np.random.default_rng(5)
    x = rng.integers(0, 5, size=(4, 12)).astype(float)
    s, z, p = mann_kendall(x)
    for r in range(4):
        want = sum(np.sign(x[r, j] - x[r, i]) for i in range(12) for j in range(i + 1, 12))
        assert s[r] == want
    _, z_up, p_up = mann_kendall(np.arange(10.0))
    assert z_up[0] > 0 and p_up[0] < 0.001
    assert np.all((p >= 0) & (p <= 1))


def test_benjamini_hochberg() -> None:
    p = np.array([0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205])
    # BH at 0.05: thresholds 0.05 k / 8 -> the first two pass
    assert _benjamini_hochberg(p, 0.05).tolist() == [True, True] + [False] * 6


def test_portland_cube() -> None:
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path, portland_region_path
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=548.64, region=portland_region_path()))
    cube = SpaceTimeCube.from_events(events, units, step="91d")
    assert cube.counts.sum() == len(events)
    result = emerging_hot_spots(cube, distance=600)
    counts = result.counts()
    assert set(counts) <= set(PATTERNS)
    assert sum(n for k, n in counts.items() if "hot spot" in k) > 0
    gdf = result.to_geodataframe("EPSG:4326")
    assert len(gdf) == cube.n_units and "pattern" in gdf.columns


def test_hotspots_cli(tmp_path: Path) -> None:
    from placecast.datasets import portland_burglary_path

    out = tmp_path / "patterns.geojson"
    res = CliRunner().invoke(app, ["hotspots", str(portland_burglary_path()), "--crs",
                                   "EPSG:2913", "--cell", "1200m", "--step", "182d",
                                   "--distance", "1500m", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "pattern" in out.read_text()


def test_bad_cube_input() -> None:
    cube = SpaceTimeCube(counts=np.ones((4, 3)), centroids=np.zeros((4, 2)),
                         step_edges=np.arange(4).astype("datetime64[D]"),
                         unit_ids=np.arange(4).astype(str))
    with pytest.raises(DataError, match="Gi\\* is undefined"):
        emerging_hot_spots(cube, distance=1)
    with pytest.raises(ParameterError, match="distance must be positive"):
        emerging_hot_spots(cube, distance=0)
    with pytest.raises(DataError, match="n_steps \\+ 1 step edges"):
        SpaceTimeCube(counts=np.ones((4, 3)), centroids=np.zeros((4, 2)),
                      step_edges=np.arange(3), unit_ids=np.arange(4))


# ------------------------------------------------------------------ sfdep-style analysis
from placecast.clusters._emerging import (  # noqa: E402
    SFDEP_CLASSES,
    _classify_sfdep,
    _kendall_upper_tail,
    _permutation_counts,
    _permutation_p_values,
    _queen_neighbours,
    _slice_gi_star,
    kendall_trend,
)


def _grid_units(n_cols: int, n_rows: int, keep: np.ndarray | None = None):
    import shapely

    from placecast.events import SpatialReference
    from placecast.units import square_grid

    region = shapely.box(0, 0, n_cols * 100.0, n_rows * 100.0)
    units = square_grid(region, 100.0, SpatialReference(crs="local:m"))
    if keep is not None:
        from placecast.clusters._emerging import _subset_units

        units = _subset_units(units, keep)
    return units


def _sfdep_neighbour_lists(units, n_steps: int, k: int) -> list[list[tuple[int, float]]]:
    """Space-time neighbour (bin, weight) lists as sfdep's spt_nb / spt_wt build them.

    Queen contiguity by brute force over polygons (touching or overlapping), the unit
    itself included, row-standardised weights 1/card repeated on each lagged slice.
    """
    geoms = units.geometry
    n = len(geoms)
    nb = [[v for v in range(n) if geoms[u].intersects(geoms[v])] for u in range(n)]
    out = []
    for t in range(n_steps):
        for u in range(n):
            items = []
            for lag in range(k + 1):
                if t - lag >= 0:
                    items += [((t - lag) * n + v, 1 / len(nb[u])) for v in nb[u]]
            out.append(items)
    return out


def test_slice_gi_star_matches_sfdep_formula_by_brute_force() -> None:
    keep = np.flatnonzero(np.random.default_rng(1).random(64) < 0.7)  # irregular cells
    units = _grid_units(8, 8, keep)
    rng = np.random.default_rng(2)
    counts = rng.poisson(2.0, size=(len(units), 7)).astype(float)
    indptr, indices = _queen_neighbours(units)
    z, _ = _slice_gi_star(counts, indptr, indices, 1)
    n, n_steps = counts.shape
    x = counts.T.ravel()                                          # sfdep order: time-major
    lists = _sfdep_neighbour_lists(units, n_steps, 1)
    for t in range(n_steps):
        xs = x[t * n:(t + 1) * n]
        xbar = xs.mean()
        si2 = ((xs - xbar) ** 2).sum() / n
        for u in range(n):
            items = lists[t * n + u]
            lx = sum(x[b] * w for b, w in items)
            wi = sum(w for _, w in items)
            s1 = sum(w * w for _, w in items)
            expect = (lx - wi * xbar) / np.sqrt(si2 * (n * s1 - wi ** 2) / (n - 1))
            assert z[u, t] == pytest.approx(expect, rel=1e-12, abs=1e-12)


def test_queen_neighbours_grid_arithmetic_equals_polygon_touching() -> None:
    import dataclasses

    units = _grid_units(5, 4, np.array([0, 1, 2, 4, 6, 7, 12, 13, 18, 19]))
    fast = _queen_neighbours(units)
    slow = _queen_neighbours(dataclasses.replace(units, grid_cells=None, _cache={}))
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    card = np.diff(fast[0])
    assert card.min() >= 1 and card.max() <= 9


def _splitmix(state: int) -> tuple[int, int]:
    mask = (1 << 64) - 1
    state = (state + 0x9E3779B97F4A7C15) & mask
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return state, z ^ (z >> 31)


def test_permutation_kernel_equals_a_plain_python_loop() -> None:
    rng = np.random.default_rng(0)
    values = rng.poisson(1.5, size=40).astype(float)
    observed = rng.poisson(6.0, size=40).astype(float)
    n_draws = rng.integers(1, 9, size=40)
    seed, n_perm = 123456789, 11
    low, high = _permutation_counts(values, observed, n_draws, n_perm, np.uint64(seed))
    mask, n_bins = (1 << 64) - 1, 40
    span = n_bins - 1
    reject = ((1 << 32) - span) % span
    for b in range(n_bins):
        state, _ = _splitmix(seed ^ (((b + 1) * 0xD1B54A32D192ED03) & mask))
        lo = hi = 0
        for _ in range(n_perm):
            picks: list[int] = []
            while len(picks) < n_draws[b]:
                state, raw = _splitmix(state)
                product = (raw >> 32) * span
                while (product & 0xFFFFFFFF) < reject:
                    state, raw = _splitmix(state)
                    product = (raw >> 32) * span
                pick = product >> 32
                pick += pick >= b                     # every bin but b itself
                if pick not in picks:                 # without replacement
                    picks.append(pick)
            total = values[picks].sum()
            lo += total <= observed[b]
            hi += total >= observed[b]
        assert (low[b], high[b]) == (lo, hi)


def test_permutation_p_values_are_calibrated_under_no_clustering() -> None:
    """Continuous iid values: l = (1 + #{obs >= sim}) / (R + 1) is uniform on its grid."""
    units = _grid_units(8, 8)
    rng = np.random.default_rng(11)
    x = rng.normal(10, 2, size=(64, 12))
    indptr, indices = _queen_neighbours(units)
    z, sums = _slice_gi_star(x, indptr, indices, 1)
    steps = np.arange(12)
    m = steps - np.maximum(steps - 1, 0) + 1
    p = _permutation_p_values(x, sums, np.diff(indptr), m, 99, 5)
    # folded p = min(l, g): P(p <= a) = 2a under the null
    for a in (0.05, 0.1, 0.2):
        share = (p <= a).mean()
        assert abs(share - 2 * a) < 3.5 * np.sqrt(2 * a * (1 - 2 * a) / p.size) + 0.01
    # and the sign agrees with the statistic where the test is confident
    strong = p <= 0.02
    assert strong.sum() > 5
    low_tail = np.abs(z[strong]) > 1.5
    assert low_tail.mean() > 0.8
    # a planted hot bin is found
    x[10, 6] += 40
    z, sums = _slice_gi_star(x, indptr, indices, 1)
    p = _permutation_p_values(x, sums, np.diff(indptr), m, 99, 5)
    assert p[10, 6] == 0.01 and z[10, 6] > 1.5


def _exact_upper_tail(score: int, n: int) -> float:
    import itertools

    scores = [sum(np.sign(perm[j] - perm[i]) for i in range(n) for j in range(i + 1, n))
              for perm in itertools.permutations(range(n))]
    return float(np.mean(np.asarray(scores) >= score))


@pytest.mark.parametrize("n", [4, 6, 7])
def test_kendall_upper_tail_exact_for_small_n(n: int) -> None:
    n_pairs = n * (n - 1) // 2
    for score in range(-n_pairs, n_pairs + 1, 2):
        assert _kendall_upper_tail(score, n) == pytest.approx(_exact_upper_tail(score, n))


def test_kendall_edgeworth_close_to_exact_and_sl_as_the_kendall_package() -> None:
    from scipy import stats as st

    # AS 71's Edgeworth series (n > 8) against the exact distribution at n = 9
    counts = np.zeros(37)
    counts[0] = 1
    for m in range(2, 10):
        new = np.zeros_like(counts)
        for extra in range(m):
            new[extra:] += counts[:len(counts) - extra]
        counts = new
    for score in (4, 10, 16, 22, -8):
        exact = counts[:(36 - score) // 2 + 1].sum() / counts.sum()
        assert abs(_kendall_upper_tail(score, 9) - exact) < 0.003
    # sl for a rising series: 2 P(S >= s), scipy's exact two-sided p-value
    series = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 7.0, 8.0, 6.0])
    tau, sl = kendall_trend(series)
    want = st.kendalltau(np.arange(8), series, method="exact")
    assert tau[0] == pytest.approx(want.statistic)
    assert sl[0] == pytest.approx(want.pvalue)
    # a falling series: the package reports 2 P(S < s) (strict), smaller than scipy's
    tau_down, sl_down = kendall_trend(series[::-1])
    s = -round(want.statistic * 28)
    assert tau_down[0] < 0
    assert sl_down[0] == pytest.approx(2 * (1 - _kendall_upper_tail(s, 8)))
    assert sl_down[0] < want.pvalue


def _sig(text: str) -> tuple[np.ndarray, np.ndarray]:
    """'H' significant hot, 'C' significant cold, 'h'/'c' not significant, '.' z = 0."""
    gs = np.array([{"H": 2.0, "h": 0.5, "C": -2.0, "c": -0.5, ".": 0.0}[c] for c in text])
    return gs, np.array([c in "HC" for c in text])


@pytest.mark.parametrize("series,tau,tau_p,expected", [
    ("hhhhhhhhhH", 0.0, 0.5, "new hotspot"),
    ("hhhhhhhhcC", 0.0, 0.5, "new coldspot"),
    ("hhhhhhhHHH", 0.0, 0.5, "consecutive hotspot"),
    # sfdep's consecutive run counts significant bins of either sign
    ("hhhhhhhCHH", 0.0, 0.5, "consecutive hotspot"),
    ("ccccccCCCC", 0.0, 0.5, "consecutive coldspot"),
    ("HHHHHHHHHH", 0.5, 0.001, "intensifying hotspot"),
    # intensifying hot counts every significant bin, cold ones too (sfdep as written)
    ("CCCCCCCCCC", 0.5, 0.001, "intensifying hotspot"),
    ("CCCCCCCCCC", -0.5, 0.001, "intensifying coldspot"),
    ("HHHHHHHHHH", 0.1, 0.5, "persistent hotspot"),
    # persistent needs no significant last step
    ("HHHHHHHHHh", 0.1, 0.5, "persistent hotspot"),
    ("CCCCCCCCCC", 0.1, 0.5, "persistent coldspot"),
    ("HHHHHHHHHH", -0.5, 0.001, "diminishing hotspot"),
    # an all-cold series with a significant rising trend is an "intensifying hotspot"
    # (checked first, on all significant bins); diminishing cold is left only for
    # tau_p equal to the threshold (intensifying hot needs tau_p < threshold)
    ("CCCCCCCCCC", 0.5, 0.005, "intensifying hotspot"),
    ("CCCCCCCCCC", 0.5, 0.01, "diminishing coldspot"),
    ("hHhChhhhhH", 0.0, 0.5, "oscilating hotspot"),
    ("cCcHcccccC", 0.0, 0.5, "oscilating coldspot"),
    # historical hot spot needs a negative last z-score
    ("HHHHHHHHHc", -0.5, 0.001, "historical hotspot"),
    ("HHHHHHHHHh", -0.5, 0.001, "no pattern detected"),
    ("CCCCCCCCCh", 0.5, 0.001, "historical coldspot"),
    ("hHhhHhhhhh", 0.0, 0.5, "sporadic hotspot"),
    ("cCccCccccc", 0.0, 0.5, "sporadic coldspot"),
    ("hHhhChhhhh", 0.0, 0.5, "no pattern detected"),
    ("hhhhhhhhhh", 0.0, 0.5, "no pattern detected"),
])
def test_sfdep_classification_rules(series: str, tau: float, tau_p: float,
                                    expected: str) -> None:
    gs, sigs = _sig(series)
    got = _classify_sfdep(gs[None], sigs[None], np.array([tau]), np.array([tau_p]), 0.01)
    assert got[0] == SFDEP_CLASSES[expected]


def test_calendar_month_cube_with_origin_and_empty_cells_dropped() -> None:
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path, portland_region_path
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=1200, region=portland_region_path()))
    cube = SpaceTimeCube.from_events(events, units, step="1M", start="2012-03-01",
                                     n_steps=60, drop_empty=True)
    edges = cube.step_edges.astype("datetime64[D]").astype(str)
    assert cube.n_steps == 60 and edges[0] == "2012-03-01" and edges[-1] == "2017-03-01"
    assert all(e.endswith("-01") for e in edges)                    # calendar months
    in_window = (events.time >= np.datetime64("2012-03-01")) & \
        (events.time < np.datetime64("2017-03-01"))
    assert cube.counts.sum() == in_window.sum()
    assert (cube.counts.sum(axis=1) > 0).all() and cube.n_units < len(units)
    full = SpaceTimeCube.from_events(events, units, step="1M")
    assert full.n_units == len(units)
    assert str(full.step_edges[0])[:10] == "2012-03-01" and full.counts.sum() == len(events)
    assert str(full.step_edges[-1])[:10] == "2017-06-01"
    with pytest.raises(ParameterError, match="whole steps"):
        SpaceTimeCube.from_events(events, units, step="1M", start="2012-03-01",
                                  end="2017-03-15")
    result = emerging_hot_spots(cube, rules="sfdep", n_permutations=49, random_state=3)
    again = emerging_hot_spots(cube, rules="sfdep", n_permutations=49, random_state=3)
    np.testing.assert_array_equal(result.pattern, again.pattern)
    assert result.parameters["gi"] == "slice" and result.parameters["alpha"] == 0.01
    assert not result.parameters["fdr"] and result.parameters["neighbours"] == "queen"
    assert set(result.counts()) <= set(PATTERNS)
    # arcgis defaults are unchanged by the new options
    old = emerging_hot_spots(cube, distance=1500)
    assert old.parameters["gi"] == "cube" and old.parameters["fdr"]


def test_hotspots_cli_sfdep(tmp_path: Path) -> None:
    from placecast.datasets import portland_burglary_path

    out = tmp_path / "sfdep.csv"
    res = CliRunner().invoke(app, ["hotspots", str(portland_burglary_path()), "--crs",
                                   "EPSG:2913", "--cell", "1500m", "--step", "1M",
                                   "--cube-start", "2012-03-01", "--n-steps", "60",
                                   "--rules", "sfdep", "--permutations", "49", "--seed", "1",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "FDR off" in res.output and "60 steps" in res.output
    frame = __import__("pandas").read_csv(out)
    assert {"pattern", "trend_tau", "trend_p"} <= set(frame.columns)
    res = CliRunner().invoke(app, ["hotspots", str(portland_burglary_path()), "--crs",
                                   "EPSG:2913", "--rules", "esri", "-o", str(out)])
    assert res.exit_code == 2 and "--rules must be arcgis or sfdep" in res.output


def test_sfdep_bad_input() -> None:
    cube = SpaceTimeCube(counts=np.ones((4, 3)), centroids=np.zeros((4, 2)),
                         step_edges=np.arange(4).astype("datetime64[D]"),
                         unit_ids=np.arange(4).astype(str))
    with pytest.raises(ParameterError, match="queen neighbours need the cube's units"):
        emerging_hot_spots(cube, rules="sfdep")
    with pytest.raises(ParameterError, match="rules must be"):
        emerging_hot_spots(cube, distance=1, rules="esri")
    with pytest.raises(DataError, match="same count in every unit"):
        emerging_hot_spots(cube, distance=1, rules="sfdep", neighbours="distance")


def test_most_frequent_pattern_of_several_runs() -> None:
    rng = np.random.default_rng(4)
    units = _grid_units(10, 10)
    counts = rng.poisson(1.0, size=(100, 14)).astype(float)
    counts[22:25, 9:] += 4
    cube = SpaceTimeCube(counts=counts, centroids=units.centroids,
                         step_edges=np.arange(15).astype("datetime64[D]"),
                         unit_ids=np.asarray(units.unit_id), units=units)
    shared = np.random.default_rng(9)             # the draws n_runs=3 makes, one by one
    singles = [emerging_hot_spots(cube, rules="sfdep", n_permutations=99,
                                  random_state=shared).pattern for _ in range(3)]
    both = emerging_hot_spots(cube, rules="sfdep", n_permutations=99, random_state=9,
                              n_runs=3)
    for u in range(100):
        names, counts_u = np.unique([s[u] for s in singles], return_counts=True)
        if counts_u.max() >= 2:
            assert both.pattern[u] == names[np.argmax(counts_u)]
        else:
            assert both.pattern[u] == singles[0][u]
    assert (both.pattern[[22, 23, 24]] != "no pattern detected").all()
    with pytest.raises(ParameterError, match="n_runs must be 1"):
        emerging_hot_spots(cube, distance=150, n_runs=3)


# ---------------------------------------------------------------------- hotspots -> report
@pytest.fixture(scope="module")
def portland_hotspots(tmp_path_factory):  # noqa: ANN201
    """``placecast hotspots`` on the bundled Portland sample, written in every format."""
    from placecast.clusters import HOTSPOT_FORMATS
    from placecast.datasets import portland_burglary_path

    folder = tmp_path_factory.mktemp("hotspots")
    events = str(portland_burglary_path())
    files = {}
    for suffix in HOTSPOT_FORMATS:
        out = folder / f"patterns{suffix}"
        res = CliRunner().invoke(app, ["hotspots", events, "--crs", "EPSG:2913", "--cell",
                                       "1200m", "--step", "182d", "--distance", "1500m",
                                       "-o", str(out)])
        assert res.exit_code == 0, res.output
        files[suffix] = out
    return events, files


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".csv"])
def test_hotspots_output_is_report_input(portland_hotspots, tmp_path, suffix) -> None:
    import re

    from placecast.clusters import read_hotspots

    events, files = portland_hotspots
    table = read_hotspots(files[suffix])
    # every format reads back to the same table: one row per cell, the pattern as category
    csv = pd.read_csv(files[".csv"], dtype={"unit_id": str})
    assert list(table["unit_id"]) == list(csv["unit_id"])
    assert list(table["category"]) == list(csv["pattern"])
    np.testing.assert_allclose(table["trend_z"], csv["trend_z"])
    out = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", events, "--crs", "EPSG:2913", "--at",
                                   "2017-03-01", "--cell", "1200m", "--model", "naive",
                                   "--hotspots", str(files[suffix]), "-o", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    section = html[html.index('<section id="hotspots">'):]
    section = section[:section.index("</section>")]
    shown = dict(re.findall(r"<tr><td>([^<]+)</td><td>(\d+)</td></tr>", section))
    assert {k: int(v) for k, v in shown.items()} == csv["pattern"].value_counts().to_dict()


def test_read_hotspots_refuses_what_it_cannot_map(tmp_path) -> None:
    from placecast.clusters import read_hotspots

    with pytest.raises(DataError, match="no such hot spot file"):
        read_hotspots(tmp_path / "missing.csv")
    with pytest.raises(ParameterError, match="ends in .geojson, .gpkg, .csv, .parquet") as info:
        read_hotspots(tmp_path / "patterns.txt")
    assert info.value.param == "path"
    bad = tmp_path / "bad.csv"
    bad.write_text("unit_id,trend_z\nc1_r1,0.5\n")
    with pytest.raises(DataError, match="needs columns unit_id and pattern.*missing category"):
        read_hotspots(bad)
    bad.write_text("unit_id,pattern,category\nc1_r1,new hot spot,x\n")
    with pytest.raises(DataError, match="both a pattern and a category column"):
        read_hotspots(bad)
    bad.write_text("unit_id,pattern\nc1_r1,new hot spot\nc1_r1,new hot spot\n")
    with pytest.raises(DataError, match="'c1_r1' appears more than once"):
        read_hotspots(bad)
    # a hand-made table with unit_id and category is taken as it is
    bad.write_text("unit_id,category\n7,hot\n")
    assert read_hotspots(bad).to_dict("list") == {"unit_id": ["7"], "category": ["hot"]}
