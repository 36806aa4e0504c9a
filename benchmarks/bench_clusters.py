"""Speed of near repeat and emerging hot spots against plain NumPy baselines, in one run.

Near repeat (Chicago residential burglary, 2015-12-31 to 2016-01-31, 970 events,
Manhattan distance, 999 permutations):

- "calculator table": the Near Repeat Calculator's layout with open last bands,
  ``0,0,100m,200m,300m+`` x ``0,7,14,21+`` days: every one of the 469,965 pairs is in
  the table;
- "near bands only": ``0,100m,200m,300m`` x ``0,7,14,21`` (pairs beyond are left out).

placecast re-bins only the pairs nearer than the last finite distance edge (numba, in
parallel over permutations) and gets the open band from the permutation-invariant time
band totals. The baseline is the plain loop placecast used before: each permutation
re-bins every pair in range with NumPy (all pairs for the open table). Both draw the same
permutations and must give identical tables; the script checks it.

Emerging hot spots (Portland burglary, 2,000 ft = 609.6 m cells over the events' default
region, calendar months 2012-03 to 2017-02, cells without events left out; queen
neighbours including the cell, time lag 1): sfdep-style per-slice Gi* with 199
permutations (numba, seeded per bin). The baseline draws each bin's random neighbourhood
with ``Generator.choice(..., replace=False)`` in a Python loop, as sfdep does per bin; it
is timed on a few permutations and scaled to 199. The ArcGIS whole-cube Gi* is listed for
reference.

Run: ``PYTHONPATH=src python benchmarks/bench_clusters.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from placecast.clusters import SpaceTimeCube, emerging_hot_spots, near_repeat
from placecast.clusters._emerging import _queen_neighbours, _slice_gi_star
from placecast.datasets import PORTLAND_CRS, portland_burglary_path
from placecast.io import read_events
from placecast.pipeline import UnitSpec, build_units

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_of(repeats: int, run) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def near_repeat_baseline(x: np.ndarray, y: np.ndarray, t: np.ndarray, d_edges: list[float],
                         t_edges: list[float], n_permutations: int, seed: int,
                         same_location: bool) -> tuple[np.ndarray, np.ndarray]:
    """The plain loop: every permutation re-bins every pair in range (NumPy)."""
    xy = np.column_stack([x, y])
    radius = d_edges[-1]
    if np.isinf(radius):
        i, j = np.triu_indices(len(x), 1)
    else:
        pairs = cKDTree(xy).query_pairs(radius, p=1.0, output_type="ndarray")
        i, j = pairs[:, 0], pairs[:, 1]
    d = np.abs(xy[i] - xy[j]).sum(axis=1)
    d_bin = np.searchsorted(d_edges, d, side="right") - 1
    if same_location:
        d_bin[d == 0] = 0
    keep = (d_bin >= 0) & (d < d_edges[-1])
    i, j, d_bin = i[keep], j[keep], d_bin[keep]
    n_d, n_t = len(d_edges) - 1, len(t_edges) - 1

    def table(times: np.ndarray) -> np.ndarray:
        gap = np.abs(times[i] - times[j])
        t_bin = np.searchsorted(t_edges, gap, side="right") - 1
        ok = (t_bin >= 0) & (gap < t_edges[-1])
        return np.bincount(d_bin[ok] * n_t + t_bin[ok], minlength=n_d * n_t).reshape(n_d, n_t)

    observed = table(t)
    rng = np.random.default_rng(seed)
    total = np.zeros((n_d, n_t))
    for _ in range(n_permutations):
        total += table(rng.permutation(t))
    return observed, total / n_permutations


def bench_near_repeat(repeats: int) -> list[dict]:
    frame = pd.read_csv(DATA / "chicago" / "burglary_2016.csv").dropna()
    frame = frame[pd.to_datetime(frame["date"]) < "2016-02-01"]
    x, y = frame["X"].to_numpy(float), frame["Y"].to_numpy(float)
    t = (pd.to_datetime(frame["date"]) - pd.Timestamp("2016-01-01")).dt.days.to_numpy(float)
    cases = [
        ("calculator table (open bands)", [0, 0, 100, 200, 300, np.inf],
         [0, 7, 14, 21, np.inf], "calculator", True),
        ("near bands only", [0, 100, 200, 300], [0, 7, 14, 21], "half-open", False),
    ]
    rows = []
    for name, d_edges, t_edges, convention, same in cases:
        near_repeat(x, y, t, distance_bands=d_edges, time_bands=t_edges, metric="manhattan",
                    convention=convention, n_permutations=3, random_state=0)  # compile
        fast, result = best_of(repeats, lambda d=d_edges, te=t_edges, c=convention:
                               near_repeat(x, y, t, distance_bands=d, time_bands=te,
                                           metric="manhattan", convention=c,
                                           n_permutations=999, random_state=1))
        start = time.perf_counter()
        observed, expected = near_repeat_baseline(x, y, t, d_edges, t_edges, 999, 1, same)
        slow = time.perf_counter() - start
        same_table = (np.array_equal(observed, result.observed)
                      and np.allclose(expected, result.expected))
        rows.append({"case": f"near repeat: {name}", "size": "970 events, 999 permutations",
                     "placecast_s": fast, "baseline_s": slow, "baseline": "plain loop",
                     "identical": same_table})
    return rows


def sfdep_baseline_permutations(x: np.ndarray, card: np.ndarray, m: np.ndarray,
                                n_permutations: int, seed: int) -> np.ndarray:
    """Random neighbourhood sums as sfdep draws them: one ``choice`` per bin."""
    values = x.T.ravel()
    n_bins = len(values)
    draws = (card[:, None] * m[None, :]).T.ravel()
    rng = np.random.default_rng(seed)
    sums = np.empty((n_permutations, n_bins))
    everyone = np.arange(n_bins)
    for r in range(n_permutations):
        for b in range(n_bins):
            pick = rng.choice(n_bins - 1, size=draws[b], replace=False)
            pick += pick >= b
            sums[r, b] = values[everyone[pick]].sum()
    return sums


def bench_emerging(repeats: int, baseline_permutations: int) -> list[dict]:
    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=609.6))
    cube = SpaceTimeCube.from_events(events, units, step="1M", start="2012-03-01",
                                     n_steps=60, drop_empty=True)
    size = f"{cube.n_units} cells x {cube.n_steps} months"
    emerging_hot_spots(cube, rules="sfdep", n_permutations=3, random_state=0)  # compile
    fast, _ = best_of(repeats, lambda: emerging_hot_spots(cube, rules="sfdep",
                                                          n_permutations=199, random_state=1))
    indptr, indices = _queen_neighbours(cube.units)
    _slice_gi_star(cube.counts, indptr, indices, 1)
    steps = np.arange(cube.n_steps)
    m = steps - np.maximum(steps - 1, 0) + 1
    start = time.perf_counter()
    sfdep_baseline_permutations(cube.counts, np.diff(indptr), m, baseline_permutations, 1)
    slow = (time.perf_counter() - start) * 199 / baseline_permutations
    cube_s, _ = best_of(repeats, lambda: emerging_hot_spots(cube, distance=1000.0))
    return [
        {"case": "emerging hot spots: sfdep per-slice Gi*, 199 permutations", "size": size,
         "placecast_s": fast, "baseline_s": slow,
         "baseline": f"per-bin choice ({baseline_permutations} perms, scaled)",
         "identical": None},
        {"case": "emerging hot spots: ArcGIS whole-cube Gi* (reference)", "size": size,
         "placecast_s": cube_s, "baseline_s": float("nan"), "baseline": "-",
         "identical": None},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--baseline-permutations", type=int, default=2,
                        help="permutations the emerging hot spot baseline runs")
    args = parser.parse_args()
    rows = bench_near_repeat(args.repeats) + bench_emerging(args.repeats,
                                                            args.baseline_permutations)
    print("| case | size | placecast | baseline | ratio | baseline is | same table |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ratio = r["baseline_s"] / r["placecast_s"]
        same = "-" if r["identical"] is None else ("yes" if r["identical"] else "NO")
        print(f"| {r['case']} | {r['size']} | {r['placecast_s']:.2f} s | "
              f"{r['baseline_s']:.2f} s | {ratio:.0f}x | {r['baseline']} | {same} |"
              .replace("nan s", "-").replace("| nanx |", "| - |"))


if __name__ == "__main__":
    main()
