"""First-call cost of placecast's numba kernels: cold compile vs the on-disk cache.

Run: ``PYTHONPATH=src python benchmarks/bench_numba_cache.py [--workloads scan,knox,...]``

Every kernel is ``@numba.njit(cache=True)``: the first call in a fresh install compiles
it and writes the machine code to numba's cache (``__pycache__`` beside the module, or
``NUMBA_CACHE_DIR``); later processes load it instead of compiling. For each small
workload this script runs three fresh Python processes, each with the same new, empty
``NUMBA_CACHE_DIR``:

* ``cold``: empty cache, so the first call compiles (what a fresh install pays once);
* ``cached``: a new process, the first call loads the kernels from the cache;
* ``warm``: the second call inside the ``cached`` process (nothing left to load).

and prints the first-call times, the speed-up of ``cached`` over ``cold``, and numba's
own count of kernel cache hits and misses in the ``cached`` process (misses there mean a
kernel could not be cached). Workloads are small so that compilation dominates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORKLOADS = ("scan", "knox", "emerging", "etas", "sepp", "marked_etas")
DATA = Path(os.environ.get("PLACECAST_DATA", "/work/shared/data"))


def _portland(months: int = 6):
    import numpy as np

    from placecast.datasets import PORTLAND_CRS, portland_burglary_path
    from placecast.io import read_events

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    end = events.time.max()
    return events.select(events.time > end - np.timedelta64(30 * months, "D"))


def _units(events, cell: float = 600.0):
    from placecast.pipeline import UnitSpec, build_units

    return build_units(events, UnitSpec(cell_size=cell))


def _workload(name: str):
    """Set up ``name`` (not timed) and return the call to time."""
    import numpy as np

    if name == "scan":
        from placecast.clusters import SpaceTimeScan, scan_data_from_events

        events = _portland()
        data = scan_data_from_events(events, interval="7d", units=_units(events, 1000.0))
        return lambda: SpaceTimeScan(n_permutations=99, random_state=1).run(data)
    if name == "knox":
        from placecast.clusters import near_repeat

        events = _portland(3)
        days = events.days_since(events.start)
        return lambda: near_repeat(events.x, events.y, days,
                                   distance_bands=[0, 200, 400, 800, np.inf],
                                   time_bands=[0, 7, 14, 21, np.inf], n_permutations=99,
                                   random_state=1)
    if name == "emerging":
        from placecast.clusters import SpaceTimeCube, emerging_hot_spots

        events = _portland(24)
        cube = SpaceTimeCube.from_events(events, _units(events, 1500.0), step="30d")
        return lambda: emerging_hot_spots(cube, rules="sfdep", n_permutations=99,
                                          random_state=1)
    if name == "etas":
        from placecast.models import GridETAS

        events = _portland()
        units = _units(events)
        return lambda: GridETAS().fit(events, units=units).fit_
    if name == "sepp":
        from placecast.models import SEPP

        events = _portland(3)
        return lambda: SEPP().fit(events).fit_
    if name == "marked_etas":
        from placecast.seismic import MarkedETASLikelihood

        sys.path.insert(0, str(Path(__file__).parent))
        from bench_etas_marked import SETUPS, _catalog

        catalog = _catalog("iran")
        theta = np.asarray(SETUPS["iran"]["initial"], dtype=float)

        def run():
            lik = MarkedETASLikelihood(catalog)
            background, integral = lik.background(np.ones(catalog.n_events))
            return lik.loglik(theta, background, integral)

        return run
    raise SystemExit(f"unknown workload {name!r}; choose from {', '.join(WORKLOADS)}")


def _cache_stats() -> tuple[int, int]:
    """Kernel cache hits and misses over every numba dispatcher placecast loaded."""
    from numba.core.registry import CPUDispatcher

    hits = misses = 0
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("placecast"):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher):
                hits += sum(value.stats.cache_hits.values())
                misses += sum(value.stats.cache_misses.values())
    return hits, misses


def _child(name: str) -> None:
    import warnings

    warnings.simplefilter("ignore")
    began = time.perf_counter()
    call = _workload(name)
    setup = time.perf_counter() - began
    began = time.perf_counter()
    call()
    first = time.perf_counter() - began
    began = time.perf_counter()
    call()
    second = time.perf_counter() - began
    hits, misses = _cache_stats()
    print(json.dumps({"setup": setup, "first": first, "second": second, "hits": hits,
                      "misses": misses}))


def _run_child(name: str, cache_dir: str) -> dict[str, float]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, __file__, "--child", name], env=env,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child)
        return
    import numba

    rows = []
    for name in args.workloads.split(","):
        with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
            cold = _run_child(name, cache_dir)
            cached = _run_child(name, cache_dir)
        rows.append((name, cold, cached))
    load = os.getloadavg()
    print(f"numba {numba.__version__} first-call times, fresh processes "
          f"(load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} "
          "cores)")
    header = (f"{'workload':12} {'cold s':>8} {'cached s':>9} {'warm s':>8} "
              f"{'cold/cached':>12} {'cache hits':>11} {'misses':>7}")
    print(header)
    print("-" * len(header))
    for name, cold, cached in rows:
        print(f"{name:12} {cold['first']:8.2f} {cached['first']:9.2f} "
              f"{cached['second']:8.2f} {cold['first'] / cached['first']:11.1f}x "
              f"{cached['hits']:11d} {cached['misses']:7d}")


if __name__ == "__main__":
    main()
