"""Bounded load test: valid ``GET /me`` while clients send wrong secrets for real token ids.

Starts placecast's app with uvicorn in a child process on 127.0.0.1 (a free port) over an
empty store with three tokens: a valid viewer token (the user), a second token hashed with
the current scheme (HMAC-SHA256) and one stored the legacy way (scrypt, as tokens made
before the fast scheme are). Then, for a fixed time each:

* ``baseline``      - one client sends valid ``GET /me`` back to back, nobody else;
* ``flood-health``  - the same, while N clients send ``GET /health`` (no token, no
  database): the cost of the load alone, the floor for the next two;
* ``wrong-fast``    - the same, while N clients send wrong secrets for the fast token's id;
* ``wrong-legacy``  - the same, while N clients send wrong secrets for the legacy token's
  id (each costs one scrypt; the service runs at most one at a time).

and prints, per scenario, the valid client's requests and p50/p99 latency, the
attackers' requests per second (all refused with 401, or 200 for /health) and the
server's CPU time per request (all requests of the scenario); then the cost of one
scrypt and one HMAC-SHA256 check measured in-process. Loopback only;
the loops stop by themselves (--seconds <= 60, --clients <= 100).

    PYTHONPATH=src python benchmarks/bench_auth.py --clients 20 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import secrets
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _prepare(folder: Path) -> tuple[str, str, str, str]:
    from placecast.service import StateDB, TokenStore, state_path_for

    db = str(folder / "bench.duckdb")
    path = state_path_for(db)
    state = StateDB(path)
    tokens = TokenStore(state)
    user, _ = tokens.create("viewer", "user")
    fast, _ = tokens.create("viewer", "other")
    state.close()
    token_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32,
                            maxmem=64 * 1024 * 1024)
    with sqlite3.connect(path) as con:
        con.execute("INSERT INTO tokens (id, name, role, salt, hash, created, scheme) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'scrypt')",
                    (token_id, "legacy", "viewer", salt, digest, "2026-01-01T00:00:00+00:00"))
    legacy = f"pc_{token_id}.{secret}"
    return db, user, fast, legacy


def _serve(db: str, port: int) -> None:
    import uvicorn

    from placecast.service import create_app

    uvicorn.run(create_app(db), host=HOST, port=port, log_level="error")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrong(token: str) -> str:
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


async def _scenario(url: str, user: str, attack: str | None, clients: int,
                    seconds: float) -> dict[str, float]:
    import httpx

    stop = time.monotonic() + seconds
    latencies: list[float] = []
    refused = [0]
    errors = [0]

    async def valid(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop:
            start = time.perf_counter()
            r = await client.get("/me", headers={"Authorization": f"Bearer {user}"})
            latencies.append(time.perf_counter() - start)
            if r.status_code != 200:
                errors[0] += 1

    async def attacker(client: httpx.AsyncClient) -> None:
        assert attack is not None
        while time.monotonic() < stop:
            if attack == "health":
                r = await client.get("/health")
            else:
                r = await client.get("/me",
                                     headers={"Authorization": f"Bearer {_wrong(attack)}"})
            if r.status_code in (200, 401):
                refused[0] += 1
            else:
                errors[0] += 1

    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        tasks = [valid(client)]
        if attack is not None:
            tasks += [attacker(client) for _ in range(clients)]
        await asyncio.gather(*tasks)
    ms = np.array(latencies) * 1000
    return {"valid": len(ms), "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)), "attack_rps": refused[0] / seconds,
            "errors": errors[0], "n": len(ms) + refused[0]}


def _hash_costs() -> tuple[float, float]:
    """Seconds per legacy scrypt check and per HMAC-SHA256 check, measured here."""
    import hmac
    import timeit

    secret, salt = secrets.token_urlsafe(32).encode(), os.urandom(16)
    slow = timeit.timeit(lambda: hashlib.scrypt(secret, salt=salt, n=2**14, r=8, p=1,
                                                dklen=32, maxmem=64 * 1024 * 1024),
                         number=10) / 10
    fast = timeit.timeit(lambda: hmac.new(salt, secret, hashlib.sha256).digest(),
                         number=10_000) / 10_000
    return slow, fast


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    clients = max(1, min(args.clients, 100))
    seconds = max(1.0, min(args.seconds, 60.0))
    import httpx

    with tempfile.TemporaryDirectory() as folder:
        db, user, fast, legacy = _prepare(Path(folder))
        port = _free_port()
        server = multiprocessing.get_context("spawn").Process(target=_serve, args=(db, port),
                                                              daemon=True)
        server.start()
        url = f"http://{HOST}:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            rows = []
            for name, attack in (("baseline", None), ("flood-health", "health"),
                                 ("wrong-fast", fast), ("wrong-legacy", legacy)):
                cpu = _cpu_seconds(server.pid)
                result = asyncio.run(_scenario(url, user, attack, clients, seconds))
                result["cpu_ms"] = (_cpu_seconds(server.pid) - cpu) * 1000 / result["n"]
                rows.append((name, result))
        finally:
            server.terminate()
            server.join(timeout=10)
    print(f"valid GET /me with {clients} attacking clients, {seconds:g} s per scenario "
          f"(cpus: {os.cpu_count()})")
    print(f"{'scenario':<14}{'valid req':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'attack req/s':>14}{'server CPU ms/req':>19}{'errors':>8}")
    for name, r in rows:
        print(f"{name:<14}{r['valid']:>10}{r['p50']:>9.1f}{r['p99']:>9.1f}"
              f"{r['attack_rps']:>14.0f}{r['cpu_ms']:>19.2f}{r['errors']:>8}")
    slow, fast = _hash_costs()
    print(f"one check in this process: scrypt {slow * 1000:.1f} ms, HMAC-SHA256 "
          f"{fast * 1e6:.1f} us")


if __name__ == "__main__":
    main()
