"""Bounded load test of the forecast GeoJSON endpoint on loopback.

Builds a store with the bundled Portland burglaries and one kde forecast, starts
``placecast``'s app with uvicorn in a child process on 127.0.0.1 (a free port), then runs
N concurrent clients (httpx, asyncio) for a fixed time against:

* ``GET /health``                        - the baseline (no token, tiny body)
* ``GET /forecasts/{id}/geojson?flagged_only=true`` - the flagged cells only
* ``GET /forecasts/{id}/geojson``        - every cell (the dashboard's request)

and prints requests, throughput, MB/s, p50/p99 latency, errors, and throughput as a ratio
of the baseline. Loopback only; the loops stop by themselves (--seconds <= 120,
--clients <= 200).

    PYTHONPATH=src python benchmarks/bench_service_load.py --clients 50 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _prepare(folder: Path, cell: str) -> tuple[str, str, int, int]:
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast
    from placecast.quantities import parse_length
    from placecast.service import StateDB, TokenStore, state_path_for
    from placecast.store import open_store

    db = str(folder / "bench.duckdb")
    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(cell_size=parse_length(cell)))
    forecast = run_forecast(events, model="kde", at="2017-03-01", horizon="7d", units=units)
    with open_store(db) as store:
        store.add_events("burglary", events, source="burglary.csv")
        forecast_id = store.save_forecast(forecast, "bench", dataset="burglary")
    state = StateDB(state_path_for(db))
    token, _ = TokenStore(state).create("viewer", "bench")
    state.close()
    return db, token, forecast_id, len(units)


def _serve(db: str, port: int) -> None:
    import uvicorn

    from placecast.service import create_app

    app = create_app(db)
    uvicorn.run(app, host=HOST, port=port, log_level="warning", access_log=False,
                timeout_keep_alive=60)


async def _load(url: str, headers: dict[str, str], clients: int, seconds: float
                ) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    n_bytes = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60.0) as client:
        async def worker() -> None:
            nonlocal errors, n_bytes
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                    ok = response.status_code == 200
                    n_bytes += len(response.content)
                    kind = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    ok = False
                    kind = type(exc).__name__
                latencies.append(time.perf_counter() - start)
                if not ok:
                    errors += 1
                    kinds[kind] = kinds.get(kind, 0) + 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "throughput": len(lat) / elapsed,
            "mb_s": n_bytes / elapsed / 1e6, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors,
            "body_kb": n_bytes / max(len(lat), 1) / 1e3, "kinds": kinds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cell", default="600ft", help="grid cell size (default 600ft)")
    args = parser.parse_args()
    clients = max(1, min(args.clients, 200))
    seconds = max(1.0, min(args.seconds, 120.0))

    with tempfile.TemporaryDirectory() as tmp:
        db, token, forecast_id, n_units = _prepare(Path(tmp), args.cell)
        port = _free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(db, port),
                                                              daemon=True)
        server.start()
        try:
            import httpx

            base = f"http://{HOST}:{port}"
            for _ in range(300):
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            headers = {"Authorization": f"Bearer {token}"}
            # Warm the forecast caches once.
            for query in ("", "?flagged_only=true"):
                httpx.get(f"{base}/forecasts/{forecast_id}/geojson{query}", headers=headers,
                          timeout=60).raise_for_status()
            cases = [("GET /health (baseline)", base + "/health"),
                     ("GET geojson ?flagged_only", f"{base}/forecasts/{forecast_id}/geojson"
                                                   "?flagged_only=true"),
                     (f"GET geojson all {n_units} cells",
                      f"{base}/forecasts/{forecast_id}/geojson")]
            print(f"placecast service load test: {clients} clients x {seconds:.0f} s per "
                  f"endpoint on {HOST} (Portland burglary, kde, {args.cell} cells, "
                  f"{os.cpu_count()} cores shared)")
            header = (f"{'endpoint':34} {'requests':>8} {'req/s':>8} {'MB/s':>7} "
                      f"{'body kB':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} "
                      f"{'vs base':>8}")
            print(header)
            print("-" * len(header))
            baseline = None
            for label, url in cases:
                stats = asyncio.run(_load(url, headers, clients, seconds))
                baseline = baseline or stats["throughput"]
                print(f"{label:34} {stats['requests']:8d} {stats['throughput']:8.1f} "
                      f"{stats['mb_s']:7.1f} {stats['body_kb']:8.1f} {stats['p50']:8.1f} "
                      f"{stats['p99']:8.1f} {stats['errors']:6d} "
                      f"{stats['throughput'] / baseline:8.3f}")
                if stats["kinds"]:
                    print(f"{'':34} errors: {stats['kinds']}")
        finally:
            server.terminate()
            server.join(10)


if __name__ == "__main__":
    main()
