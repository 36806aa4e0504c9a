"""Backtest throughput (origins x models per second): serial vs processes vs Dask.

On the Portland burglary file (600 ft cells over the police districts) and the NYC motor
vehicle thefts (lon/lat, 200 m cells over the events' hull), runs the same weekly backtest
of naive, kde and prospective

* serially (``jobs=1``: the plain baseline),
* in two processes (``jobs=2``, pool start-up included),
* on a Dask ``LocalCluster`` of two single-threaded workers (cluster start-up excluded,
  scattering the data and task overhead included),

checks that the three give identical tables, and prints a table with ratios against the
serial run measured in the same process.

Run: ``python benchmarks/bench_backtest.py [--origins 12] [--shared ../shared/data]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from placecast.evaluate import run_backtest
from placecast.io import read_events
from placecast.pipeline import UnitSpec, build_units

MODELS = ["naive", "kde", "prospective"]


def data_sets(shared: Path):
    portland = shared / "portland"
    events = read_events(portland / "burglary_2012-03_2017-05.csv", crs="EPSG:2913")
    units = build_units(events, UnitSpec(
        cell_size=182.88, region=portland / "police_districts" / "Portland_Police_Districts.shp"))
    yield "Portland burglary, 600 ft", events, units, "2016-03-01", "0.25sqmi"
    nyc = read_events(shared / "nyc" / "motor_vehicle_thefts_2014_2017.csv")
    units = build_units(nyc, UnitSpec(cell_size=200.0))
    yield "NYC vehicle theft, 200 m", nyc, units, "2016-03-01", "1%"


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def bench_one(name, events, units, first, area, n_origins, client):
    origins = np.datetime64(first) + np.arange(n_origins) * np.timedelta64(7, "D")
    options = dict(models=MODELS, origins=origins, horizons="7d", area=area)
    # warm-up: numba / rasters cached in this process (workers pay it themselves)
    run_backtest(events, units, **{**options, "origins": origins[:1]})
    work = len(origins) * len(MODELS)
    serial_s, serial = timed(lambda: run_backtest(events, units, **options))
    jobs_s, parallel = timed(lambda: run_backtest(events, units, jobs=2, **options))
    dask_s, on_dask = timed(lambda: run_backtest(events, units, dask=client, **options))
    pd.testing.assert_frame_equal(parallel.to_frame(), serial.to_frame())
    pd.testing.assert_frame_equal(on_dask.to_frame(), serial.to_frame())
    return [(name, f"{len(events):,} ev / {len(units):,} units", mode, seconds,
             work / seconds, serial_s / seconds)
            for mode, seconds in (("serial (baseline)", serial_s), ("--jobs 2", jobs_s),
                                  ("Dask LocalCluster 2x1", dask_s))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--origins", type=int, default=12)
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster

    rows = []
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      processes=True) as cluster, Client(cluster) as client:
        for name, events, units, first, area in data_sets(args.shared):
            rows += bench_one(name, events, units, first, area, args.origins, client)
    print(f"\nBacktest throughput, {args.origins} weekly origins x {len(MODELS)} models "
          "(identical results checked)\n")
    header = f"{'data':28} {'size':26} {'mode':24} {'seconds':>8} {'o*m/s':>8} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for name, size, mode, seconds, rate, ratio in rows:
        print(f"{name:28} {size:26} {mode:24} {seconds:8.2f} {rate:8.2f} {ratio:8.2f}x")


if __name__ == "__main__":
    main()
