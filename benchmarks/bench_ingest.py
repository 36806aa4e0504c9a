"""Ingest throughput of the stores, against writing the same frame to Parquet.

For N synthetic events with every field (time, x, y, category, weight, incident_id, mark)
it times, per store:

* ``add_events`` into a new dataset (insert + de-duplication check + commit);
* ``add_events`` of the same events again (all duplicates: the anti-join alone);
* ``load_events`` of the whole dataset;

and as the baseline, in the same run, ``DataFrame.to_parquet`` of the same columns (no
de-duplication, no transaction, no index). Run::

    PYTHONPATH=src python benchmarks/bench_ingest.py                # 1M events, DuckDB
    PYTHONPATH=src python benchmarks/bench_ingest.py --postgis postgresql://postgres@127.0.0.1:55432/placecast

(``--postgis`` defaults to $PLACECAST_TEST_POSTGIS_URL; the benchmark uses and drops its
own schema.)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from placecast.events import Events, SpatialReference
from placecast.store import open_store


def synthetic_events(n: int, seed: int = 0) -> Events:
    """Events with every field: microsecond times over 90 days, Oregon feet, ids."""
    rng = np.random.default_rng(seed)
    micros = rng.integers(0, 90 * 86_400 * 10**6, n).astype("timedelta64[us]")
    return Events(
        time=(np.datetime64("2017-01-01", "us") + micros).astype("datetime64[ns]"),
        x=rng.uniform(2.3e6, 2.35e6, n),
        y=rng.uniform(2.0e5, 2.1e5, n),
        spatial_reference=SpatialReference("EPSG:2913", 0.3048, "EPSG:2913"),
        category=rng.choice(np.array(["BURGLARY", "THEFT", "ROBBERY"], dtype=object), n),
        weight=rng.uniform(0.5, 2.0, n),
        incident_id=np.char.add("INC", np.arange(n).astype(str)).astype(object),
        mark=rng.normal(3.0, 1.0, n),
    )


def timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def bench_store(url: str, events, label: str) -> list[tuple[str, float]]:
    rows = []
    with open_store(url) as store:
        seconds, report = timed(lambda: store.add_events("bench", events, source="bench"))
        assert report.n_new == len(events), report
        rows.append((f"{label}: add_events (new dataset)", seconds))
        seconds, report = timed(lambda: store.add_events("bench", events, source="bench"))
        assert report.n_duplicates == len(events), report
        rows.append((f"{label}: add_events again (all duplicates)", seconds))
        seconds, loaded = timed(lambda: store.load_events("bench"))
        assert len(loaded) == len(events) and np.array_equal(loaded.x, events.x)
        rows.append((f"{label}: load_events", seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="events (default 1M)")
    parser.add_argument("--postgis", default=os.environ.get("PLACECAST_TEST_POSTGIS_URL"),
                        help="PostgreSQL URL (default $PLACECAST_TEST_POSTGIS_URL)")
    args = parser.parse_args()

    events = synthetic_events(args.n, seed=0)
    frame = events.to_frame()
    with tempfile.TemporaryDirectory() as folder:
        baseline, _ = timed(lambda: frame.to_parquet(Path(folder) / "events.parquet"))
        rows = bench_store(str(Path(folder) / "bench.duckdb"), events, "DuckDB")
        size = (Path(folder) / "bench.duckdb").stat().st_size
    if args.postgis:
        import psycopg

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in args.postgis else "?"
        try:
            rows += bench_store(f"{args.postgis}{sep}schema={schema}", events, "PostGIS")
        finally:
            with psycopg.connect(args.postgis, autocommit=True) as con:
                con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    else:
        print("(no --postgis URL: PostGIS skipped)")

    print(f"\n{args.n:,} events, all fields; machine: {os.cpu_count()} cores "
          f"(load average {os.getloadavg()[0]:.1f}); DuckDB file {size / 2**20:.0f} MiB\n")
    print(f"{'operation':<44} {'seconds':>8} {'events/s':>12} {'x baseline':>11}")
    print(f"{'baseline: pandas to_parquet':<44} {baseline:8.2f} {args.n / baseline:12,.0f} "
          f"{1.0:11.2f}")
    for name, seconds in rows:
        print(f"{name:<44} {seconds:8.2f} {args.n / seconds:12,.0f} "
              f"{baseline / seconds:11.3f}")
    print("\nx baseline = baseline seconds / operation seconds (1 = as fast as to_parquet).")


if __name__ == "__main__":
    main()
