"""Read one region from the store vs the whole dataset (DuckDB, and PostGIS when running).

Generates a synthetic nation (``bench_nation.synthetic_nation``: clustered, self-exciting
events in ``--regions`` square regions of log-normally varying size), imports it into a
store split by region (``Store.add_events(dataset, events, by=split)``), then times, best of
``--repeat``:

* ``whole dataset`` - ``load_events(dataset)``: the baseline, every event;
* ``largest / median / smallest region`` - ``load_events(dataset, region=...)``;
* ``worker read`` - ``regions.read_store_region("DB#DATASET", region)`` for the median
  region: what a region task does (opens the store read-only, reads, closes);
* ``GeoParquet partition`` - ``regions.read_partition`` of the same median region from a
  partitioned folder written from the same events, for comparison.

The ratio column is the whole-dataset time divided by the row's time, within one backend
and one run. PostGIS is timed when ``PLACECAST_BENCH_POSTGIS_URL`` (or
``PLACECAST_TEST_POSTGIS_URL``) names a server; a fresh schema is made and dropped.

    PYTHONPATH=src python benchmarks/bench_store_regions.py                # 2M events
    PYTHONPATH=src python benchmarks/bench_store_regions.py --events 200000
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_nation import synthetic_nation  # noqa: E402

from placecast.regions import read_partition, read_store_region, write_partitioned  # noqa: E402
from placecast.store import open_store  # noqa: E402


def best(function: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - t0)
    return min(times), result


def time_backend(name: str, url: str, events, split, repeat: int, folder: Path
                 ) -> list[tuple[str, str, int, float]]:
    counts = split.counts
    ordered = sorted(counts, key=lambda r: counts[r])
    picks = {"largest region": ordered[-1], "median region": ordered[len(ordered) // 2],
             "smallest region": ordered[0]}
    t0 = time.perf_counter()
    with open_store(url) as store:
        store.add_events("nation", events, by=split, source="synthetic")
    ingest = time.perf_counter() - t0
    print(f"{name}: imported {len(events):,} events in {len(counts)} regions in {ingest:.1f} s "
          f"({len(events) / ingest:,.0f} events/s)")
    rows = []
    with open_store(url, read_only=True) as store:
        seconds, whole = best(lambda: store.load_events("nation"), repeat)
        rows.append((name, "whole dataset", len(whole), seconds))  # type: ignore[arg-type]
        for label, region in picks.items():
            seconds, got = best(lambda r=region: store.load_events("nation", region=r), repeat)
            assert len(got) == counts[region]  # type: ignore[arg-type]
            rows.append((name, f"{label} ({region})", counts[region], seconds))
    median = picks["median region"]
    seconds, got = best(lambda: read_store_region(f"{url}#nation", median), repeat)
    rows.append((name, f"worker read, median ({median})", len(got), seconds))  # type: ignore
    seconds, got = best(lambda: read_partition(folder, median), repeat)
    rows.append(("GeoParquet", f"partition, median ({median})", len(got), seconds))  # type: ignore
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--regions", type=int, default=200)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="bench_store_regions_"))
    postgis = (os.environ.get("PLACECAST_BENCH_POSTGIS_URL")
               or os.environ.get("PLACECAST_TEST_POSTGIS_URL"))
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    try:
        events, split = synthetic_nation(args.events, args.regions, args.years)
        events = events.select(np.arange(len(events)))  # own arrays
        # the store keeps microseconds
        events = type(events)(time=events.time.astype("datetime64[us]").astype("datetime64[ns]"),
                              x=events.x, y=events.y,
                              spatial_reference=events.spatial_reference)
        print(f"{len(events):,} events in {args.regions} regions; largest region "
              f"{max(split.counts.values()):,}, median "
              f"{sorted(split.counts.values())[args.regions // 2]:,}, smallest "
              f"{min(split.counts.values()):,}")
        folder = scratch / "parts"
        write_partitioned(events, split, folder)
        rows = time_backend("DuckDB", str(scratch / "nation.duckdb"), events, split,
                            args.repeat, folder)
        if postgis:
            url = f"{postgis}{'&' if '?' in postgis else '?'}schema={schema}"
            rows += time_backend("PostGIS", url, events, split, args.repeat, folder)
        base = {r[0]: r[3] for r in rows if r[1] == "whole dataset"}
        print(f"\n{'store':<11}{'read':<34}{'events':>11}{'seconds':>10}{'vs whole':>10}")
        for store, what, n, seconds in rows:
            ratio = (f"{base[store] / seconds:>9.1f}x" if store in base else
                     f"{base['DuckDB'] / seconds:>9.1f}x")
            print(f"{store:<11}{what:<34}{n:>11,}{seconds:>10.3f}{ratio}")
        print(f"\nbest of {args.repeat}; 'vs whole' = the same store's whole-dataset read / "
              "this read (GeoParquet: against DuckDB's). machine: "
              f"{os.cpu_count()} cores, 1-minute load {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if postgis:
            import psycopg

            with psycopg.connect(postgis, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    main()
