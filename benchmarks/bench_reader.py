"""Reading events: ``read_events`` with all its checks vs a plain pandas baseline.

Writes synthetic CSVs of N rows (default 1,000,000) shaped like the real files,
then times

* ``read_events`` (column detection, exact date parsing with range checks, slash-date
  and offset handling, field counts, line-break and encoding checks, CRS area of use,
  coordinate checks), and
* the baseline: ``pandas.read_csv`` of the same columns plus ``pandas.to_datetime``
  (ISO 8601) and ``pandas.to_numeric``, no checks,

best of three each, and prints both with their ratio. Two files: Portland-like projected
feet with dates (EPSG:2913), and NYC-like lon/lat with times and UTC offsets (projected to
UTM by ``read_events``; the baseline only parses).

Run: ``python benchmarks/bench_reader.py [--rows 1000000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from placecast.io import read_events


def best_of(function: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def write_files(folder: Path, n: int, rng: np.random.Generator) -> list[tuple[str, Path,
                                                                               dict, list]]:
    days = rng.integers(0, 5 * 365, n)
    dates = (np.datetime64("2012-03-01") + days.astype("timedelta64[D]")).astype(str)
    projected = folder / "projected.csv"
    pd.DataFrame({
        "occ_date": dates,
        "x_coordina": np.round(rng.uniform(7_606_000, 7_694_000, n), 1),
        "y_coordina": np.round(rng.uniform(652_000, 724_000, n), 1),
        "CATEGORY": rng.choice(["BURGLARY", "STREET CRIMES", "OTHER"], n),
        "notes": "not read",
    }).to_csv(projected, index=False)
    minutes = rng.integers(0, 24 * 60, n)
    stamps = (np.datetime64("2016-01-01T00:00") + days.astype("timedelta64[D]")
              + minutes.astype("timedelta64[m]")).astype(str)
    lonlat = folder / "lonlat.csv"
    pd.DataFrame({
        "date_single": pd.Series(stamps) + np.where(rng.random(n) < 0.5, "-05:00", "-04:00"),
        "longitude": np.round(rng.uniform(-74.25, -73.70, n), 6),
        "latitude": np.round(rng.uniform(40.50, 40.91, n), 6),
    }).to_csv(lonlat, index=False)
    return [
        ("projected feet, dates", projected, {"crs": "EPSG:2913"},
         ["occ_date", "x_coordina", "y_coordina", "CATEGORY"]),
        ("lon/lat, offset times", lonlat, {"timezone": "America/New_York"},
         ["date_single", "longitude", "latitude"]),
    ]


def baseline(path: Path, columns: list[str]) -> object:
    frame = pd.read_csv(path, usecols=columns, dtype=str)
    pd.to_datetime(frame[columns[0]], format="ISO8601", utc=True)
    return (pd.to_numeric(frame[columns[1]]).to_numpy(),
            pd.to_numeric(frame[columns[2]]).to_numpy())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'file':<24}{'rows':>11}{'read_events s':>15}{'pandas only s':>15}{'ratio':>8}")
    with tempfile.TemporaryDirectory() as folder:
        for name, path, options, columns in write_files(Path(folder), args.rows, rng):
            events = read_events(path, **options)
            assert len(events) == args.rows
            ours = best_of(lambda p=path, o=options: read_events(p, **o))
            base = best_of(lambda p=path, c=columns: baseline(p, c))
            print(f"{name:<24}{args.rows:>11,}{ours:>15.2f}{base:>15.2f}{ours / base:>8.2f}")


if __name__ == "__main__":
    main()
