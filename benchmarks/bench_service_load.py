"""Bounded load test of the forecast endpoints on loopback.

Builds a store with the bundled Portland burglaries and one kde forecast, starts
``placecast``'s app with uvicorn in a child process on 127.0.0.1 (a free port), then runs
N concurrent clients (a minimal asyncio HTTP/1.1 keep-alive client, gzip accepted
as browsers do) for a fixed time
against each of:

* ``GET /health``                        - the baseline (no token, tiny body)
* ``GET /forecasts/{id}``                - the forecast's description
* ``GET /forecasts/{id}/map``            - the compact map the dashboard draws
* ``GET /forecasts/{id}/map`` + ``If-None-Match`` - a revalidation (304, no body)
* ``GET /forecasts/{id}/geojson``        - every cell as GeoJSON (for scripts)

and prints requests, throughput, MB/s, p50/p99 latency, errors, p99 and throughput as
ratios of the baseline, and the server's resident memory (RSS) at the start and end of
each run and its peak, sampled every 0.5 s. The goals of issue 18 (p99 < 100 ms on the
map, < 50 ms on the description, zero errors, flat memory) are checked at the end. The
machine's load average is printed with the numbers (client and server share the cores).
Loopback only; the loops stop by themselves (--seconds <= 120, --clients <= 200).

    PYTHONPATH=src python benchmarks/bench_service_load.py --clients 50 --seconds 60
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
from typing import Any

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


def _rss_mb(pid: int) -> float:
    """Resident memory of process ``pid``, MB (Linux /proc; NaN elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


class _Connection:
    """A minimal HTTP/1.1 keep-alive client on one socket (GET only).

    The load generator must cost far less CPU than the server it measures (httpx spends
    about 5 ms of CPU per request, which on a shared 2-core machine caps the whole test
    near 150 req/s); this one parses just the status line, ``Content-Length`` and
    ``Connection``.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> tuple[int, int]:
        """Send ``request``; return the status and the body length (body read fully)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            key, _, value = line.partition(b":")
            key = key.strip().lower()
            if key == b"content-length":
                length = int(value)
            elif key == b"connection" and value.strip().lower() == b"close":
                close = True
        if length:
            await self.reader.readexactly(length)
        if close:
            self.close()
        return status, length

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(url: str, headers: dict[str, str], clients: int, seconds: float,
                server_pid: int, ok_status: int = 200) -> dict[str, Any]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.hostname}:{parts.port}",
             "Accept-Encoding: gzip", *(f"{k}: {v}" for k, v in headers.items())]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    latencies: list[float] = []
    errors = 0
    kinds: dict[str, int] = {}
    n_bytes = 0
    rss: list[float] = [_rss_mb(server_pid)]
    cpu_server, cpu_client = _cpu_s(server_pid), time.process_time()
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, n_bytes
        connection = _Connection(parts.hostname or HOST, int(parts.port or 80))
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    status, length = await asyncio.wait_for(connection.get(request), 60.0)
                    ok = status == ok_status
                    n_bytes += length
                    kind = f"HTTP {status}"
                except (OSError, ValueError, IndexError, asyncio.IncompleteReadError,
                        asyncio.LimitOverrunError, TimeoutError) as exc:
                    connection.close()
                    ok = False
                    kind = type(exc).__name__
                latencies.append(time.perf_counter() - start)
                if not ok:
                    errors += 1
                    kinds[kind] = kinds.get(kind, 0) + 1
        finally:
            connection.close()

    async def sampler() -> None:
        while time.perf_counter() < deadline:
            await asyncio.sleep(0.5)
            rss.append(_rss_mb(server_pid))

    began = time.perf_counter()
    await asyncio.gather(sampler(), *(worker() for _ in range(clients)))
    elapsed = time.perf_counter() - began
    rss.append(_rss_mb(server_pid))
    cpu_server = _cpu_s(server_pid) - cpu_server
    cpu_client = time.process_time() - cpu_client
    lat = np.asarray(latencies) * 1000
    return {"requests": len(lat), "throughput": len(lat) / elapsed,
            "mb_s": n_bytes / elapsed / 1e6, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors,
            "body_kb": n_bytes / max(len(lat), 1) / 1e3, "kinds": kinds,
            "rss_start": rss[0], "rss_end": rss[-1], "rss_peak": max(rss),
            "server_ms": cpu_server / max(len(lat), 1) * 1000,
            "client_ms": cpu_client / max(len(lat), 1) * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--cell", default="600ft", help="grid cell size (default 600ft)")
    parser.add_argument("--only", help="besides the baseline, run only endpoints whose "
                                       "label contains this text")
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
            # Warm the forecast caches once; the map's tag is what a dashboard revalidates.
            for path in ("", "/map", "/geojson"):
                httpx.get(f"{base}/forecasts/{forecast_id}{path}", headers=headers,
                          timeout=60).raise_for_status()
            etag = httpx.get(f"{base}/forecasts/{forecast_id}/map", headers=headers,
                             timeout=60).headers["etag"]
            one = f"{base}/forecasts/{forecast_id}"
            cases = [("GET /health (baseline)", base + "/health", {}, 200),
                     ("GET /forecasts/{id}", one, {}, 200),
                     (f"GET map ({n_units} cells)", one + "/map", {}, 200),
                     ("GET map, If-None-Match (304)", one + "/map",
                      {"If-None-Match": etag}, 304),
                     (f"GET geojson ({n_units} cells)", one + "/geojson", {}, 200)]
            if args.only:
                cases = [cases[0]] + [c for c in cases[1:] if args.only in c[0]]
            load_before = os.getloadavg()
            print(f"placecast service load test: {clients} clients x {seconds:.0f} s per "
                  f"endpoint on {HOST} (Portland burglary, kde, {args.cell} cells, "
                  f"{os.cpu_count()} cores shared by client and server; load average "
                  f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} before)")
            header = (f"{'endpoint':32} {'requests':>8} {'req/s':>7} {'MB/s':>6} "
                      f"{'body kB':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
                      f"{'p99/base':>8} {'req/s/base':>10} {'CPU ms/req srv/cli':>18} "
                      f"{'RSS MB start/end/peak':>22}")
            print(header)
            print("-" * len(header))
            baseline: dict[str, Any] | None = None
            results = {}
            for label, url, extra, ok_status in cases:
                stats = asyncio.run(_load(url, {**headers, **extra}, clients, seconds,
                                          server.pid, ok_status))
                baseline = baseline or stats
                results[label] = stats
                rss = (f"{stats['rss_start']:.0f}/{stats['rss_end']:.0f}/"
                       f"{stats['rss_peak']:.0f}")
                print(f"{label:32} {stats['requests']:8d} {stats['throughput']:7.1f} "
                      f"{stats['mb_s']:6.1f} {stats['body_kb']:8.1f} {stats['p50']:7.1f} "
                      f"{stats['p99']:7.1f} {stats['errors']:6d} "
                      f"{stats['p99'] / baseline['p99']:8.2f} "
                      f"{stats['throughput'] / baseline['throughput']:10.3f} "
                      f"{stats['server_ms']:8.2f}/{stats['client_ms']:<9.2f} {rss:>22}")
                if stats["kinds"]:
                    print(f"{'':32} errors: {stats['kinds']}")
            load_after = os.getloadavg()
            print(f"load average after: {load_after[0]:.2f} {load_after[1]:.2f} "
                  f"{load_after[2]:.2f}")
            goals = [(f"GET map ({n_units} cells)", 100.0), ("GET /forecasts/{id}", 50.0)]
            for label, limit in goals:
                if label in results:
                    stats = results[label]
                    met = stats["p99"] < limit and stats["errors"] == 0
                    print(f"goal {label}: p99 {stats['p99']:.1f} ms < {limit:.0f} ms, "
                          f"{stats['errors']} errors -> {'met' if met else 'NOT met'}")
            all_rss = [v for s in results.values() for v in (s["rss_start"], s["rss_end"])]
            print(f"server RSS over the whole run: {min(all_rss):.0f} .. {max(all_rss):.0f} "
                  "MB (start/end of each endpoint's run)")
        finally:
            server.terminate()
            server.join(10)


if __name__ == "__main__":
    main()
