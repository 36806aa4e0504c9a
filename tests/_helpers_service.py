"""Fixtures and helpers for the service tests (API, security, dashboard)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

MEMPHIS = Path("memphis") / "personal_robberies_2019.csv"
CELL = "1000m"


def memphis_csv(shared_data: Path) -> Path:
    return shared_data / MEMPHIS


def small_csv(shared_data: Path, folder: Path, n: int = 400) -> Path:
    """Memphis robberies (first ``n``) with two categories and a person-level column.

    The ``victim_name`` column must never be read or stored by the service.
    """
    frame = pd.read_csv(memphis_csv(shared_data)).head(n).copy()
    frame["offense_type"] = ["robbery A" if i % 3 else "robbery B" for i in range(len(frame))]
    frame["victim_name"] = "Jane Sentinelname"
    path = folder / "small.csv"
    frame.to_csv(path, index=False)
    return path


@dataclass
class Service:
    app: Any
    client: Any
    tokens: dict[str, str]
    db: Path

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def upload(self, name: str, path: Path, role: str = "analyst", filename: str | None = None,
               **form: Any) -> Any:
        with open(path, "rb") as handle:
            return self.client.post(f"/datasets/{name}", headers=self.headers(role),
                                    files={"file": (filename or path.name, handle, "text/csv")},
                                    data=form)

    def snapshot(self) -> dict[str, Any]:
        """Everything a request could have stored."""
        store = self.app.state.store
        return {
            "datasets": [(d.name, d.n_events) for d in store.list_datasets()],
            "forecasts": [f.id for f in store.list_forecasts()],
            "backtests": [b.id for b in store.list_backtests()],
            "alerts": [(a["id"], a["acknowledged"]) for a in store.list_alerts()],
            "jobs": [j["id"] for j in self.app.state.jobs.list()],
            "tokens": [(t.id, t.revoked) for t in self.app.state.tokens.list()],
        }


@contextlib.contextmanager
def make_service(folder: Path, settings: Any = None) -> Iterator[Service]:
    from fastapi.testclient import TestClient

    from placecast.service import create_app

    db = folder / "placecast.duckdb"
    app = create_app(str(db), settings)
    tokens = {role: app.state.tokens.create(role, f"test {role}")[0]
              for role in ("viewer", "analyst", "admin")}
    try:
        with TestClient(app) as client:
            yield Service(app, client, tokens, db)
    finally:
        app.state.close()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port) in a thread; yield its URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
