"""Grid ETAS backtest time: the default grid built and fitted at every ``fit`` vs deferred.

Run: ``PYTHONPATH=src python benchmarks/bench_etas_grid.py [--origins 26] [--cell 600ft]``

A rolling-origin backtest of ``etas`` on the bundled Portland burglaries (weekly origins
over the last months of the data, 7-day horizon, 1% area, ``--cell`` units). ``before``
is the behaviour before the change, reproduced in the same run by a subclass whose
``fit`` asks for ``fit_`` at once: every origin builds the default 150 m grid with
shapely polygons and text ids and runs EM on it, then ``predict`` on the backtest units
fits again. ``after`` is ``GridETAS`` as it is: ``fit`` defers the default grid, so each
origin fits once, on the backtest units. Also timed: building the default grid alone
(``square_grid``) once. The two backtests' records must be identical (checked).
Numba kernels are compiled before timing.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from placecast.datasets import PORTLAND_CRS, portland_burglary_path
from placecast.evaluate import run_backtest
from placecast.io import read_events
from placecast.models import GridETAS
from placecast.pipeline import UnitSpec, build_units
from placecast.quantities import parse_length


class EagerGridETAS(GridETAS):
    """``fit`` as before: the default grid and its EM fit are made at once."""

    def fit(self, events, *, units=None):
        super().fit(events, units=units)
        _ = self.fit_
        return self


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--origins", type=int, default=26, help="weekly origins (26)")
    parser.add_argument("--cell", default="600ft", help="backtest unit size (600ft)")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (2)")
    args = parser.parse_args()

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=parse_length(args.cell)))
    last = events.time.max().astype("datetime64[D]")
    start = last - np.timedelta64(7 * (args.origins + 1), "D")
    end = last - np.timedelta64(7, "D")
    kwargs = {"start": str(start), "end": str(end), "step": "7d", "horizons": ("7d",),
              "area": "1%"}

    # Compile the numba kernels (and the grid path) once before timing.
    GridETAS().fit(events.before(np.datetime64(str(start)))).fit_  # noqa: B018

    def best(model) -> tuple[float, pd.DataFrame]:
        times, records = [], None
        for _ in range(max(1, args.repeat)):
            began = time.perf_counter()
            records = run_backtest(events, units, models={"etas": model}, **kwargs).records
            times.append(time.perf_counter() - began)
        return min(times), records

    t_before, before = best(EagerGridETAS())
    t_after, after = best(GridETAS())
    pd.testing.assert_frame_equal(after, before)
    n_origins = int(after["origin"].nunique())

    model = GridETAS().fit(events.before(np.datetime64(str(end))))
    began = time.perf_counter()
    grid = model._default_units()
    t_grid = time.perf_counter() - began

    load = os.getloadavg()
    print(f"grid ETAS backtest on Portland burglary ({len(events):,} events, {len(units):,} "
          f"units of {args.cell}, {n_origins} weekly origins, best of {args.repeat}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} "
          "cores)")
    rows = [
        ("before: default grid + EM at every fit", t_before, t_before / n_origins, 1.0),
        ("after: fit deferred, one EM per origin", t_after, t_after / n_origins,
         t_before / t_after),
        (f"default 150 m grid alone ({len(grid):,} cells), once", t_grid, t_grid, None),
    ]
    header = f"{'what':52} {'total s':>8} {'s/origin':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for label, total, per, ratio in rows:
        print(f"{label:52} {total:8.2f} {per:9.3f} "
              f"{'' if ratio is None else f'{ratio:8.2f}x':>9}")
    print("records identical: yes")


if __name__ == "__main__":
    main()
