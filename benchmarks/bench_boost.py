"""The learned model's cost against kde, measured in the same run.

Three rows, each with ``kde`` as the baseline:

* one Portland forecast (fit + predict), vehicle theft, 600 ft cells over the police
  districts, origin 2017-03-01, 7 days (boost trains on 104 past weekly origins);
* the 53-origin weekly backtest 2016-03-01 .. 2017-02-28 (``jobs`` processes);
* a synthetic city: ``--events`` events (default 1,000,000) over ``--units`` square cells
  (default 100,000), clustered around 2,000 hot spots over 3 years; one fit + predict in a
  fresh process each, with its peak resident memory (``ru_maxrss``).

Run: ``python benchmarks/bench_boost.py [--shared ../shared/data] [--jobs 2]
[--events 1000000] [--units 100000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

_SYNTHETIC = r"""
import json, resource, sys, time
import numpy as np
from placecast.events import Events
from placecast.forecast import TimeWindow
from placecast.models import make_model
from placecast.units import square_grid
from placecast.events import SpatialReference
import shapely

model, n_events, n_units = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
side_cells = int(np.sqrt(n_units))
cell = 100.0
side = side_cells * cell
centres = rng.uniform(0, side, size=(2000, 2))
weights = rng.pareto(1.5, 2000) + 0.1
pick = rng.choice(2000, size=n_events, p=weights / weights.sum())
xy = centres[pick] + rng.normal(0, 150, size=(n_events, 2))
xy = np.clip(xy, 0, side - 1e-6)
days = np.sort(rng.uniform(0, 3 * 365, n_events))
time0 = np.datetime64("2014-01-01", "ns")
times = time0 + (days * 86400e9).astype("timedelta64[ns]")
events = Events(time=times, x=xy[:, 0], y=xy[:, 1])
units = square_grid(shapely.box(0, 0, side, side), cell, SpatialReference("local:m"))
window = TimeWindow.starting(time0 + np.timedelta64(3 * 365, "D"), "7d")
start = time.perf_counter()
forecast = make_model(model).fit(events.before(window.start)).predict(units, window)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_mb": peak, "n_units": len(units),
                  "expected": forecast.expected_total}))
"""


def _timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def portland(shared: Path, jobs: int) -> list[tuple[str, str, float, float]]:
    from placecast.evaluate import run_backtest
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast

    folder = shared / "portland"
    events = read_events(folder / "vehicle_theft_2012-03_2017-05.csv", crs="EPSG:2913")
    units = build_units(events, UnitSpec(
        cell_size=182.88, region=folder / "police_districts" / "Portland_Police_Districts.shp"))
    rows = []
    run_forecast(events, model="kde", at="2017-03-01", horizon="7d", units=units)  # warm-up
    seconds = {}
    for model in ("kde", "boost"):
        seconds[model], _ = _timed(lambda m=model: run_forecast(
            events, model=m, at="2017-03-01", horizon="7d", units=units))
    rows.append(("one Portland forecast (fit + predict)", f"{len(units):,} units",
                 seconds["boost"], seconds["kde"]))
    for model in ("kde", "boost"):
        seconds[model], _ = _timed(lambda m=model: run_backtest(
            events, units, models=[m], start="2016-03-01", end="2017-02-28", step="7d",
            horizons="7d", area="0.25sqmi", jobs=jobs))
    rows.append((f"53-origin weekly backtest (jobs={jobs})", f"{len(units):,} units",
                 seconds["boost"], seconds["kde"]))
    return rows


def synthetic(n_events: int, n_units: int) -> tuple[tuple[str, str, float, float], dict]:
    out = {}
    for model in ("kde", "boost"):
        done = subprocess.run([sys.executable, "-c", _SYNTHETIC, model, str(n_events),
                               str(n_units)], capture_output=True, text=True, check=True)
        out[model] = json.loads(done.stdout.strip().splitlines()[-1])
    row = (f"synthetic city fit + predict, {n_events:,} events",
           f"{out['boost']['n_units']:,} units", out["boost"]["seconds"], out["kde"]["seconds"])
    return row, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--units", type=int, default=100_000)
    args = parser.parse_args()
    rows = portland(args.shared, args.jobs)
    row, memory = synthetic(args.events, args.units)
    rows.append(row)
    print(f"{'what':<46} {'size':>14} {'boost s':>9} {'kde s':>8} {'boost/kde':>10}")
    for what, size, boost, kde in rows:
        print(f"{what:<46} {size:>14} {boost:>9.2f} {kde:>8.2f} {boost / kde:>10.1f}")
    print(f"peak memory of the synthetic fit: boost {memory['boost']['peak_mb']:.0f} MB, "
          f"kde {memory['kde']['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
