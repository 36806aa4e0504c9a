"""Covariate-layer feature timings: ~100k grid units over Portland x synthetic layers.

Prints one row per feature family with placecast's time and a baseline measured in the
same run:

* points within r (3 scales): ``covariate_features`` (k-d tree pairs by blocks, exact
  distances only near the edge of r) vs one ``STRtree.query(predicate="dwithin")`` per
  scale followed by ``bincount`` (the plain vectorised shapely way);
* line length within r (3 scales): ``covariate_features`` (lines cut into r/16 pieces,
  counted like points) vs intersecting each unit's r-buffer with every line near it
  (GEOS per pair); the baseline is timed on a sample of units and scaled;
* distance, kernel density, length inside units and polygon share are timed alone (the
  naive loops they replace take minutes).

Run: ``python benchmarks/bench_covariates.py [--units 100000 --points 100000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from placecast.covariates import CovariateLayer, covariate_features, read_covariate
from placecast.datasets import portland_region_path
from placecast.events import SpatialReference
from placecast.units import read_region, square_grid


def inside(region, n: int, rng: np.random.Generator) -> np.ndarray:
    xmin, ymin, xmax, ymax = shapely.bounds(region)
    shapely.prepare(region)
    out = np.empty((0, 2))
    while len(out) < n:
        xy = np.column_stack([rng.uniform(xmin, xmax, 2 * n), rng.uniform(ymin, ymax, 2 * n)])
        out = np.vstack([out, xy[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]])
    return out[:n]


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    sref = SpatialReference("EPSG:2913", 0.3048)
    region = read_region(portland_region_path(), sref)
    cell = float(np.sqrt(shapely.area(region) / args.units))
    units = square_grid(region, cell, sref)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="bench_covariates_"))
    xy = inside(region, args.points, rng)
    gpd.GeoDataFrame(geometry=shapely.points(xy / 0.3048), crs="EPSG:2913").to_file(
        folder / "points.gpkg")
    starts = inside(region, args.lines, rng)
    angle = rng.uniform(0, np.pi, args.lines)
    ends = starts + 150.0 * np.column_stack([np.cos(angle), np.sin(angle)])
    lines = shapely.linestrings(np.stack([starts, ends], axis=1) / 0.3048)
    gpd.GeoDataFrame(geometry=lines, crs="EPSG:2913").to_file(folder / "lines.gpkg")
    discs = shapely.buffer(shapely.points(inside(region, 3000, rng) / 0.3048), 200 / 0.3048)
    gpd.GeoDataFrame({"level": rng.uniform(0, 1, 3000)}, geometry=discs,
                     crs="EPSG:2913").to_file(folder / "discs.gpkg")
    scales = tuple(float(round(f * units.typical_size)) for f in (1, 2, 4))
    print(f"{len(units):,} grid cells of {cell:.0f} m over Portland; {args.points:,} points, "
          f"{args.lines:,} lines of 150 m, 3,000 overlapping discs; scales {scales} m")

    rows = []
    points = read_covariate(CovariateLayer(folder / "points.gpkg", "count"), sref)
    t_ours, _ = timed(lambda: covariate_features(units, [points]))

    def dwithin_baseline():
        tree = shapely.STRtree(points.geometry)
        for r in scales:
            unit_idx, _ = tree.query(units.geometry, predicate="dwithin", distance=r)
            np.bincount(unit_idx, minlength=len(units))

    t_base, _ = timed(dwithin_baseline)
    rows.append(("points within r (3 scales)", t_ours, t_base, "STRtree dwithin per scale"))

    lines_data = read_covariate(CovariateLayer(folder / "lines.gpkg", "length"), sref)
    t_ours, _ = timed(lambda: covariate_features(units, [lines_data]))
    sample = rng.choice(len(units), size=2000, replace=False)

    def buffer_baseline():
        tree = shapely.STRtree(lines_data.geometry)
        for r in scales:
            zones = shapely.buffer(units.geometry[sample], r)
            unit_idx, line_idx = tree.query(zones, predicate="intersects")
            shapely.length(shapely.intersection(zones[unit_idx], lines_data.geometry[line_idx]))

    t_base, _ = timed(buffer_baseline)
    rows.append(("line length inside + within r", t_ours, t_base * len(units) / len(sample),
                 "GEOS buffer x line per pair (scaled from 2,000 units)"))

    for label, layer in [
        ("distance to nearest point", CovariateLayer(folder / "points.gpkg", "distance")),
        ("point density (3 scales)", CovariateLayer(folder / "points.gpkg", "density")),
        ("distance to nearest line", CovariateLayer(folder / "lines.gpkg", "distance")),
        ("polygon share (overlapping)", CovariateLayer(folder / "discs.gpkg", "share")),
        ("polygon attr mean + share", CovariateLayer(folder / "discs.gpkg",
                                                     attribute="level")),
    ]:
        data = read_covariate(layer, sref)
        t_ours, _ = timed(lambda data=data: covariate_features(units, [data]))
        rows.append((label, t_ours, float("nan"), ""))

    print(f"{'feature':32s} {'placecast s':>12s} {'baseline s':>11s} {'ratio':>6s}  baseline")
    for label, ours, base, what in rows:
        ratio = base / ours if np.isfinite(base) else float("nan")
        print(f"{label:32s} {ours:12.2f} {base:11.2f} {ratio:6.1f}  {what}")


if __name__ == "__main__":
    main()
