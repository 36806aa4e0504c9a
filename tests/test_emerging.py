"""Emerging hot spots: planted patterns recovered, Gi* and Mann-Kendall against brute force."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
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
