"""A synthetic nation on Dask: partitioned ingest, forecasts and a backtest for every region.

Generates ``--events`` events in ``--regions`` square regions (20 km a side, laid on a
lattice) over ``--years`` years: a clustered background (Gaussian hot spots of different
weights over a uniform floor) and self-excitation (each event has Poisson(0.3) offspring
after an exponential delay of mean 3 days within 80 m, generation after generation).
Then, timed:

* ``ingest``    - ``write_partitioned``: GeoParquet with one hive partition per region
  (events per second);
* ``forecast``  - one 7-day forecast per region (``run_by_region("forecast", folder)``);
* ``backtest``  - a ``--origins``-origin weekly backtest per region;

serially in this process (no Dask), then on a Dask ``LocalCluster`` of 1 and of 2
single-threaded worker processes (the 1-worker run is the baseline of the speed-up), every
task reading only its own region's files. Workers get ``placecast.regions.WORKER_ENV``
(``--dask-default-env``: Dask's own malloc settings, 2-4x slower here). Peak memory per
worker is the largest resident set size sampled every 0.2 s with psutil over the worker
processes; the Dask results are checked to equal the serial results.

    PYTHONPATH=src python benchmarks/bench_nation.py                  # the issue's size
    PYTHONPATH=src python benchmarks/bench_nation.py --events 2000000 # a quick check
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from placecast.events import Events, SpatialReference
from placecast.pipeline import UnitSpec
from placecast.regions import (
    WORKER_ENV,
    RegionSplit,
    local_cluster,
    run_by_region,
    write_partitioned,
)

SIDE = 20_000.0  # region side, metres
GAP = 5_000.0


def synthetic_nation(n_events: int, n_regions: int, years: float, seed: int = 0
                     ) -> tuple[Events, RegionSplit]:
    """Clustered, self-exciting events in ``n_regions`` square regions, about ``n_events``."""
    rng = np.random.default_rng(seed)
    days = 365.25 * years
    branching = 0.3
    n_background = int(n_events * (1 - branching))
    per_row = int(np.ceil(np.sqrt(n_regions)))
    origin_x = (np.arange(n_regions) % per_row) * (SIDE + GAP)
    origin_y = (np.arange(n_regions) // per_row) * (SIDE + GAP)
    weight = rng.lognormal(0.0, 0.6, n_regions)  # regions of different sizes
    region = rng.choice(n_regions, n_background, p=weight / weight.sum())
    # 20 hot spots per region, plus a 30% uniform floor
    n_spots = 20
    spot_x = rng.uniform(2_000, SIDE - 2_000, (n_regions, n_spots))
    spot_y = rng.uniform(2_000, SIDE - 2_000, (n_regions, n_spots))
    spot_w = rng.dirichlet(np.ones(n_spots), n_regions)
    spot = (rng.random(n_background)[:, None] > np.cumsum(spot_w[region], axis=1)).sum(axis=1)
    spot = np.minimum(spot, n_spots - 1)
    hot = rng.random(n_background) < 0.7
    x = np.where(hot, spot_x[region, spot] + rng.normal(0, 400, n_background),
                 rng.uniform(0, SIDE, n_background))
    y = np.where(hot, spot_y[region, spot] + rng.normal(0, 400, n_background),
                 rng.uniform(0, SIDE, n_background))
    t = rng.uniform(0, days, n_background)
    xs, ys, ts, rs = [x], [y], [t], [region]
    parent_x, parent_y, parent_t, parent_r = x, y, t, region
    while len(parent_t):
        n_child = rng.poisson(branching, len(parent_t))
        idx = np.repeat(np.arange(len(parent_t)), n_child)
        cx = parent_x[idx] + rng.normal(0, 80, len(idx))
        cy = parent_y[idx] + rng.normal(0, 80, len(idx))
        ct = parent_t[idx] + rng.exponential(3.0, len(idx))
        keep = ct < days
        parent_x, parent_y, parent_t, parent_r = cx[keep], cy[keep], ct[keep], \
            parent_r[idx][keep]
        xs.append(parent_x)
        ys.append(parent_y)
        ts.append(parent_t)
        rs.append(parent_r)
    x, y, t, r = (np.concatenate(v) for v in (xs, ys, ts, rs))
    x = np.clip(x, 0, SIDE) + origin_x[r]  # keep every event inside its region
    y = np.clip(y, 0, SIDE) + origin_y[r]
    start = np.datetime64("2020-01-01T00:00:00", "ns")
    time_ = start + (t * 86400e9).astype("timedelta64[ns]")
    events = Events(time=time_, x=x, y=y, spatial_reference=SpatialReference("local:m"))
    names = np.array([f"r{i:03d}" for i in range(n_regions)], dtype=object)
    counts = np.bincount(r, minlength=n_regions)
    split = RegionSplit(names[r], tuple(names), {str(n): int(c) for n, c in
                                                 zip(names, counts, strict=True)},
                        source="synthetic")
    return events, split


class PeakRSS:
    """Sample the resident set size of some processes every ``interval`` seconds."""

    def __init__(self, pids: list[int], interval: float = 0.2) -> None:
        self.procs = [psutil.Process(p) for p in pids]
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in self.procs:
                try:
                    self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def timed_on_cluster(n_workers: int, folder: Path, jobs: list[tuple[str, dict]],
                     spec: UnitSpec, scratch: Path, placecast_env: bool) -> list[dict]:
    from dask.distributed import Client, LocalCluster

    rows = []
    options = dict(local_directory=str(scratch), memory_limit="4GiB")
    cluster = (local_cluster(n_workers, **options) if placecast_env else
               LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None,
                            processes=True, **options))
    with cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        for job, params in jobs:
            load = os.getloadavg()[0]
            with PeakRSS(pids) as rss:
                t0 = time.perf_counter()
                table = run_by_region(job, folder, params=params, unit_spec=spec, dask=client)
                seconds = time.perf_counter() - t0
            rows.append({"job": job, "workers": n_workers, "seconds": seconds, "load": load,
                         "rows": len(table), "peak_rss_gb": max(rss.peak.values()) / 2**30,
                         "table": table})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--regions", type=int, default=200)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--origins", type=int, default=52)
    parser.add_argument("--models", default="naive", help="comma-separated")
    parser.add_argument("--cell", type=float, default=500.0, help="metres")
    parser.add_argument("--dask-default-env", action="store_true",
                        help="start workers with Dask's default malloc settings instead of "
                        "placecast.regions.WORKER_ENV")
    parser.add_argument("--folder", type=Path, default=None,
                        help="where to write the partitions (default a temporary folder)")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_nation_"))
    folder = args.folder or scratch / "events"
    try:
        t0 = time.perf_counter()
        events, split = synthetic_nation(args.events, args.regions, args.years)
        generate = time.perf_counter() - t0
        n = len(events)
        t0 = time.perf_counter()
        write_partitioned(events, split, folder, overwrite=True)
        ingest = time.perf_counter() - t0
        end = events.time.max()
        size = sum(f.stat().st_size for f in folder.rglob("*.parquet"))
        print(f"{n:,} events in {args.regions} regions over {args.years:g} years "
              f"(generated in {generate:.1f} s); largest region "
              f"{max(split.counts.values()):,} events, smallest "
              f"{min(split.counts.values()):,}")
        print(f"ingest: partitioned GeoParquet write {ingest:.1f} s = "
              f"{n / ingest:,.0f} events/s, {size / 2**20:,.0f} MiB on disk")
        # peak of this process so far (Linux reports KiB): generation and the write
        driver_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        del events, split
        # a month before the end, so every region (even the smallest) has data past it
        last = pd.Timestamp(end).normalize() - pd.Timedelta(days=30)
        first = last - pd.Timedelta(weeks=args.origins - 1)
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        jobs = [("forecast", dict(model=models[0], at=str(last.date()), horizon="7d")),
                ("backtest", dict(models=models, start=str(first.date()),
                                  end=str(last.date()), step="7d", horizons=["7d"],
                                  area="1%"))]
        spec = UnitSpec(cell_size=args.cell)
        placecast_env = not args.dask_default_env
        rows = []
        for job, params in jobs:  # the same work in this process, no Dask
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            table = run_by_region(job, folder, params=params, unit_spec=spec)
            rows.append({"job": job, "workers": 0, "seconds": time.perf_counter() - t0,
                         "load": load,
                         "rows": len(table), "peak_rss_gb": float("nan"), "table": table})
        rows += timed_on_cluster(1, folder, jobs, spec, scratch, placecast_env)
        rows += timed_on_cluster(2, folder, jobs, spec, scratch, placecast_env)
        for job in ("forecast", "backtest"):
            serial, one, two = (r for r in rows if r["job"] == job)
            pd.testing.assert_frame_equal(one["table"], serial["table"])
            pd.testing.assert_frame_equal(two["table"], serial["table"])
        base = {r["job"]: r["seconds"] for r in rows if r["workers"] == 1}
        print(f"Dask worker environment: "
              f"{WORKER_ENV if placecast_env else 'Dask defaults'}; speed-up against 1 worker")
        print(f"\n{'job':<10}{'workers':>8}{'seconds':>10}{'speed-up':>10}"
              f"{'result rows':>13}{'peak RSS/worker':>17}{'load':>6}")
        for r in rows:
            label = (f"{args.origins} origins x {len(models)} model(s)"
                     if r["job"] == "backtest" else "one 7-day forecast per region")
            workers = "serial" if r["workers"] == 0 else str(r["workers"])
            memory = "-" if r["workers"] == 0 else f"{r['peak_rss_gb']:.2f} GB"
            print(f"{r['job']:<10}{workers:>8}{r['seconds']:>10.1f}"
                  f"{base[r['job']] / r['seconds']:>9.2f}x{r['rows']:>13,}"
                  f"{memory:>17}{r['load']:>6.1f}   {label}")
        print(f"\ndriver peak RSS before the cluster runs: {driver_rss:.2f} GB (generation "
              "and partitioned write); Dask tables equal the serial tables.")
        print("load: the machine's 1-minute load average as the step began (other users "
              "count too)")
        print(f"machine: {os.cpu_count()} cores, "
              f"{psutil.virtual_memory().total / 2**30:.0f} GB")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
