"""Aggregation and KDE timings at 10k / 100k / 1M synthetic events on the Portland region.

Prints a table with placecast's time and a plain-NumPy baseline measured in the same run:

* aggregation: ``placecast.aggregate`` (grid arithmetic + one bincount) vs
  ``numpy.histogramdd`` over (x, y, time) followed by masking to the region's cells;
* KDE: ``KDEHotspot.predict`` (raster binning + separable Gaussian filter) vs the direct sum
  of Gaussian kernels at every cell centre (O(events x cells), chunked NumPy); the direct
  sum is timed on a subsample of cells and scaled, as the full product would take hours.

Run: ``python benchmarks/bench_core.py [--sizes 10000,100000,1000000]``.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import shapely

from placecast import Events, KDEHotspot, TimeWindow, aggregate
from placecast.datasets import portland_burglary_path, portland_region_path
from placecast.io import read_events
from placecast.units import read_region, square_grid


def synthetic_events(region, sref, n: int, rng: np.random.Generator) -> Events:
    xmin, ymin, xmax, ymax = shapely.bounds(region)
    xs, ys = [], []
    shapely.prepare(region)
    while sum(len(x) for x in xs) < n:
        x = rng.uniform(xmin, xmax, 2 * n)
        y = rng.uniform(ymin, ymax, 2 * n)
        inside = shapely.contains_xy(region, x, y)
        xs.append(x[inside])
        ys.append(y[inside])
    x = np.concatenate(xs)[:n]
    y = np.concatenate(ys)[:n]
    days = rng.uniform(0, 364, n)
    times = np.datetime64("2016-03-01") + (days * 86400e9).astype("timedelta64[ns]")
    return Events(time=times, x=x, y=y, spatial_reference=sref)


def best_of(function, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--cell", type=float, default=150.0, help="grid cell, metres")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    sref = read_events(portland_burglary_path(), crs="EPSG:2913").spatial_reference
    region = read_region(portland_region_path(), sref)
    units = square_grid(region, args.cell, sref)
    grid = units.grid
    assert grid is not None
    n_bins = 52
    edges = np.datetime64("2016-03-01") + np.arange(n_bins + 1) * np.timedelta64(7, "D")
    edges = edges.astype("datetime64[ns]")
    print(f"Portland region, {args.cell:g} m grid: {grid.n_cols} x {grid.n_rows} "
          f"({len(units):,} cells in the region), {n_bins} weekly bins; "
          f"{os.cpu_count()} cores")
    print()
    header = f"{'task':<14}{'events':>10}{'placecast s':>14}{'baseline s':>14}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    window = TimeWindow.starting("2017-03-01", "7d")
    for n in sizes:
        events = synthetic_events(region, sref, n, rng)
        units._cache.pop("lookup", None)
        t_ours = best_of(lambda events=events: aggregate(events, units, edges))

        def baseline(events: Events = events) -> np.ndarray:
            t = (events.time - edges[0]) / np.timedelta64(1, "D")
            hist, _ = np.histogramdd(
                np.column_stack([events.x, events.y, t]),
                bins=[grid.origin[0] + np.arange(grid.n_cols + 1) * grid.cell_size,
                      grid.origin[1] + np.arange(grid.n_rows + 1) * grid.cell_size,
                      np.arange(n_bins + 1) * 7.0])
            assert units.grid_cells is not None
            return hist[units.grid_cells[:, 0], units.grid_cells[:, 1], :]

        ours = aggregate(events, units, edges)
        np.testing.assert_allclose(ours, baseline())  # same answer
        t_base = best_of(baseline)
        print(f"{'aggregate':<14}{n:>10,}{t_ours:>14.4f}{t_base:>14.4f}{t_base / t_ours:>9.1f}x")

        model = KDEHotspot(bandwidth=200.0, lookback_days=400).fit(events)
        t_kde = best_of(lambda model=model: model.predict(units, window), repeat=2)
        # direct Gaussian sum at cell centres on a subsample of cells, scaled to all cells
        sample = rng.choice(len(units), size=min(200, len(units)), replace=False)
        centres = units.centroids[sample]

        def direct(events: Events = events, centres: np.ndarray = centres,
                   n: int = n) -> np.ndarray:
            out = np.zeros(len(centres))
            h2 = 2 * 200.0**2
            for start in range(0, n, 20_000):
                dx = centres[:, 0:1] - events.x[None, start:start + 20_000]
                dy = centres[:, 1:2] - events.y[None, start:start + 20_000]
                out += np.exp(-(dx * dx + dy * dy) / h2).sum(axis=1)
            return out

        t_direct = best_of(direct, repeat=1) * len(units) / len(centres)
        print(f"{'kde predict':<14}{n:>10,}{t_kde:>14.4f}{t_direct:>14.2f}"
              f"{t_direct / t_kde:>9.0f}x")


if __name__ == "__main__":
    main()
