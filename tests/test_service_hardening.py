"""The service under hostile or careless requests (issue 14).

* The token is checked before a request body is read, and every body is capped: an
  anonymous 300 MB body costs neither memory nor time (checked on the ASGI app in-process
  and on a uvicorn server process over loopback).
* Every number in every request is range-checked (422 naming the field); an internal
  error is a JSON 500 with the security headers.
* Tokens: a fast keyed hash (no scrypt for a wrong secret), legacy scrypt tokens keep
  working and are re-hashed, expiry.
* Valid users are served while bad requests arrive.
* A seeded fuzz of every JSON route and query string: no 500, no traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
import tracemalloc

import pytest

pytest.importorskip("fastapi")

from _helpers_service import CELL, free_port, make_service, serve_in_thread, small_csv  # noqa: E402

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options",
                    "referrer-policy", "cache-control")
MB = 1024 * 1024
FLAG = re.compile(r"(?<![\w-])--[a-z]")


@pytest.fixture(scope="module")
def svc(tmp_path_factory, shared_data):
    from fastapi.testclient import TestClient

    from placecast.service import ServiceSettings

    folder = tmp_path_factory.mktemp("hardening")
    settings = ServiceSettings(max_upload_bytes=256 * 1024, max_rows=1000)
    with make_service(folder, settings) as service:
        path = small_csv(shared_data, folder, n=150)
        assert service.upload("base", path).status_code == 201
        service.csv = path
        # A client that shows a 500 instead of raising it in the test.
        service.raw = TestClient(service.app, raise_server_exceptions=False)
        yield service


# ---------------------------------------------------------------------- body limits
def _asgi_post(app, path, *, headers, total, chunk=MB, declared=True,
               content_type="application/json"):
    """POST ``total`` bytes to the ASGI app in ``chunk`` pieces made on demand.

    Returns (status, response body, bytes the app pulled, peak traced memory).
    """
    pulled = [0]
    sent = [0]
    messages = []

    async def receive():
        if sent[0] >= total:
            return {"type": "http.disconnect"}
        size = min(chunk, total - sent[0])
        sent[0] += size
        pulled[0] += size
        return {"type": "http.request", "body": b"{" + b" " * (size - 1),
                "more_body": sent[0] < total}

    async def send(message):
        messages.append(message)

    raw_headers = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    raw_headers.append((b"content-type", content_type.encode()))
    if declared:
        raw_headers.append((b"content-length", str(total).encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": raw_headers,
             "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80)}
    tracemalloc.start()
    try:
        asyncio.run(app(scope, receive, send))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled[0], peak, dict(start["headers"])


@pytest.mark.parametrize("path", ["/forecasts", "/backtests", "/audits", "/scans",
                                  "/hotspots", "/datasets/big", "/alerts/x/acknowledge"])
def test_anonymous_body_is_refused_before_it_is_read(svc, path):
    before = svc.snapshot()
    for headers in ({}, {"Authorization": "Bearer pc_000000000000." + "A" * 43},
                    {"Authorization": "Bearer " + svc.tokens["admin"][:-1] + "x"}):
        for declared in (True, False):
            status, body, pulled, peak, sent_headers = _asgi_post(
                svc.app, path, headers=headers, total=300 * MB, declared=declared)
            assert status == 401 and "token" in body["detail"]
            assert pulled == 0, (path, pulled)
            assert peak < 5 * MB, peak
            assert sent_headers[b"www-authenticate"] == b"Bearer"
            assert b"content-security-policy" in sent_headers
    assert svc.snapshot() == before


@pytest.mark.parametrize("declared", [True, False])
def test_oversized_json_body_with_a_token_is_refused_early(svc, declared):
    before = svc.snapshot()
    headers = svc.headers("admin")
    limit = svc.app.state.settings.max_json_bytes
    for path in ("/forecasts", "/backtests", "/audits", "/scans", "/hotspots"):
        status, body, pulled, peak, _ = _asgi_post(
            svc.app, path, headers=headers, total=300 * MB, chunk=64 * 1024,
            declared=declared)
        assert status == 413, (path, status, body)
        assert f"{limit:,} bytes" in body["detail"] and "JSON" in body["detail"]
        # Declared: nothing read. Chunked: read up to the first chunk over the limit.
        assert pulled == (0 if declared else 64 * 1024), pulled
        assert peak < 5 * MB, peak
    # The upload limit (256 KiB here) applies to uploads, not the JSON limit.
    status, body, pulled, _, _ = _asgi_post(svc.app, "/datasets/big", headers=headers,
                                            total=300 * MB, chunk=64 * 1024,
                                            declared=declared,
                                            content_type="multipart/form-data; boundary=b")
    # Declared: 413 at once. Chunked: this body is not even multipart, refused (400) at
    # its first bytes (a real multipart body over the limit: test_service_security).
    assert (status, "upload" in body["detail"]) == ((413, True) if declared
                                                    else (400, False)), body
    assert pulled <= (0 if declared else 256 * 1024 + 64 * 1024)
    assert svc.snapshot() == before


def test_small_json_bodies_still_work(svc):
    r = svc.client.post("/forecasts", headers=svc.headers("analyst"),
                        json={"dataset": "base", "model": "naive", "cell_size": CELL,
                              "category": ["robbery A"] * 20})
    assert r.status_code == 201, r.text
    assert len(r.request.content) < svc.app.state.settings.max_json_bytes


_SERVER = """
import sys, uvicorn
from placecast.service import create_app
app = create_app(sys.argv[1])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_big(port: int, path: str, headers: dict[str, str], total: int) -> tuple[int, int]:
    """Stream a ``total``-byte JSON body over loopback, stopping when the server answers.

    Returns (status, bytes sent before the answer arrived).
    """
    import select
    import socket

    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {total}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    chunk = b" " * (256 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        sock.settimeout(0.5)
        try:
            while sent < total and not select.select([sock], [], [], 0)[0]:
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server answered and closed: it will not read the rest
            pass
        sock.settimeout(10)
        reply = b""
        try:
            while b"\r\n" not in reply:
                data = sock.recv(4096)
                if not data:
                    break
                reply += data
        except OSError:
            pass
    status = int(reply.split(b" ")[1]) if reply.startswith(b"HTTP/") else 0
    return status, sent


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_server_memory_stays_bounded_under_huge_anonymous_bodies(tmp_path):
    pytest.importorskip("uvicorn")
    from placecast.service import StateDB, TokenStore

    db = tmp_path / "placecast.duckdb"
    token, _ = TokenStore(StateDB(tmp_path / "placecast.service.sqlite")).create("analyst")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _SERVER, str(db), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "no server"
            time.sleep(0.2)
        for _ in range(3):  # warm up: imports and the first request's allocations
            httpx.get(f"http://127.0.0.1:{port}/me", timeout=10,
                      headers={"Authorization": f"Bearer {token}"})
        before = _rss_kb(server.pid)
        started = time.monotonic()
        results = [_send_big(port, path, {}, 300 * MB)
                   for path in ("/forecasts", "/scans", "/hotspots")]
        results.append(_send_big(port, "/forecasts", {"Authorization": f"Bearer {token}"},
                                 300 * MB))
        elapsed = time.monotonic() - started
        after = _rss_kb(server.pid)
        print(f"server RSS {before / 1024:.1f} MB -> {after / 1024:.1f} MB; bytes sent "
              f"before each answer: {[sent for _, sent in results]}; {elapsed:.2f} s")
        assert [status for status, _ in results] == [401, 401, 401, 413]
        # The 1.2 GB offered were refused at the headers: the answer came before 100 MB
        # were sent, and the server grew by a few MB at most.
        assert sum(sent for _, sent in results) < 100 * MB, results
        assert after - before < 30 * 1024, (before, after)
        assert elapsed < 60
        r = httpx.get(f"http://127.0.0.1:{port}/me", timeout=10,
                      headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


# ---------------------------------------------------------------------- numbers
BASE = {"/forecasts": {"dataset": "base", "model": "naive", "cell_size": CELL},
        "/backtests": {"dataset": "base", "cell_size": CELL},
        "/audits": {"dataset": "base", "cell_size": CELL},
        "/scans": {"dataset": "base", "cell_size": CELL},
        "/hotspots": {"dataset": "base", "cell_size": CELL}}

OUT_OF_RANGE = [
    ("/forecasts", {"horizon": "1000y"}, "horizon"),
    ("/forecasts", {"horizon": "365000d"}, "horizon"),
    ("/forecasts", {"horizon": "0.001h"}, "horizon"),
    ("/forecasts", {"model": "kde", "model_params": {"bandwidth": 1e308}}, "bandwidth"),
    ("/forecasts", {"model": "kde", "model_params": {"bandwidth": -5.0}}, "bandwidth"),
    ("/forecasts", {"model": "kde", "model_params": {"lookback_days": 1e9}}, "lookback_days"),
    ("/forecasts", {"model": "etas", "model_params": {"max_iter": 10**9}}, "max_iter"),
    ("/forecasts", {"model": "etas", "model_params": {"max_iter": True}}, "max_iter"),
    ("/forecasts", {"at": "9999-12-31"}, "at"),
    ("/forecasts", {"at": "2019-02-30"}, "at"),
    ("/forecasts", {"at": "2019-01-01T25:00"}, "at"),
    ("/forecasts", {"cell_size": "99999999999m"}, "cell_size"),
    ("/forecasts", {"cell_size": "0.001m"}, "cell_size"),
    ("/forecasts", {"area": "0%"}, "area"),
    ("/forecasts", {"area": "200%"}, "area"),
    ("/forecasts", {"area": "99999999999sqmi"}, "area"),
    ("/backtests", {"step": "100000d"}, "step"),
    ("/backtests", {"step": "10y", "n_origins": 104}, "n_origins"),
    ("/backtests", {"horizons": ["7d", "1000y"]}, "horizons"),
    ("/backtests", {"start": "2019-06-01", "end": "2019-01-01"}, "start"),
    ("/audits", {"step": "5y", "n_origins": 30}, "n_origins"),
    ("/audits", {"factor": 1e308}, "factor"),
    ("/scans", {"interval": "1y", "n_intervals": 700}, "n_intervals"),
    ("/scans", {"max_radius": "1e9m"}, "max_radius"),
    ("/scans", {"n_permutations": 10**12}, "n_permutations"),
    ("/hotspots", {"step": "5y", "n_steps": 30}, "n_steps"),
    ("/hotspots", {"distance": "999999km"}, "distance"),
]


@pytest.mark.parametrize(("path", "change", "field"), OUT_OF_RANGE)
def test_numbers_out_of_range_are_refused_with_the_field(svc, path, change, field):
    before = svc.snapshot()
    r = svc.raw.post(path, headers=svc.headers("analyst"), json={**BASE[path], **change})
    assert r.status_code == 422, (change, r.status_code, r.text)
    assert field in r.json()["detail"], r.json()["detail"]
    assert "Traceback" not in r.text
    assert svc.snapshot() == before


@pytest.mark.parametrize(("path", "text", "field"), [
    ("/forecasts", '"model": "kde", "model_params": {"bandwidth": 1e400}', "bandwidth"),
    ("/forecasts", '"model": "kde", "model_params": {"bandwidth": NaN}', "bandwidth"),
    ("/forecasts", '"model": "kde", "model_params": {"lookback_days": -Infinity}',
     "lookback_days"),
    ("/scans", '"alpha": NaN', "alpha"), ("/scans", '"max_share": Infinity', "max_share"),
    ("/audits", '"factor": 1e400', "factor"), ("/hotspots", '"alpha": -1e400', "alpha"),
    ("/backtests", '"n_origins": 1e400', "n_origins"),
])
def test_non_finite_json_numbers_are_refused(svc, path, text, field):
    """Python's JSON parser accepts NaN, Infinity and 1e400 (inf): each is refused."""
    before = svc.snapshot()
    body = '{"dataset": "base", "cell_size": "1000m", ' + text + "}"
    r = svc.raw.post(path, headers={**svc.headers("analyst"),
                                    "content-type": "application/json"}, content=body)
    assert r.status_code == 422, (text, r.status_code, r.text)
    assert field in r.json()["detail"]
    assert svc.snapshot() == before


@pytest.mark.parametrize("before", ["99999999999999999999999", "-1", "0", "1e5", "x"])
def test_audit_log_before_is_range_checked(svc, before):
    r = svc.raw.get("/audit-log", headers=svc.headers("admin"), params={"before": before})
    assert r.status_code == 422 and "before" in r.json()["detail"]


def test_a_job_that_overflows_late_fails_with_a_message(svc, monkeypatch):
    """A date overflow inside a job's work is a clear failure, not 'internal error'."""
    import pandas as pd

    from placecast.service import _work

    def overflow(*args, **kwargs):
        raise pd.errors.OutOfBoundsDatetime("Out of bounds nanosecond timestamp")

    monkeypatch.setattr(_work, "_origins", overflow)
    r = svc.client.post("/backtests", headers=svc.headers("analyst"),
                        json={**BASE["/backtests"], "models": ["naive"], "n_origins": 2})
    assert r.status_code == 202
    job = _wait(svc, r.json()["id"])
    assert job["status"] == "failed"
    assert "out of range" in job["error"] and "internal" not in job["error"]


def _wait(svc, job_id, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = svc.client.get(f"/jobs/{job_id}", headers=svc.headers("viewer")).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_internal_error_is_json_with_security_headers(svc, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("simulated bug with a secret path /srv/x")

    monkeypatch.setattr(svc.app.state.store.inner, "list_datasets", boom)
    with caplog.at_level("ERROR", logger="placecast.service"):
        r = svc.raw.get("/datasets", headers=svc.headers("viewer"))
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert "internal error" in r.json()["detail"]
    assert "/srv/x" not in r.text and "Traceback" not in r.text
    for header in SECURITY_HEADERS:
        assert header in r.headers, header
    assert "simulated bug" in caplog.text  # the details go to the service log
    log = svc.client.get("/audit-log", headers=svc.headers("admin")).json()["entries"]
    assert any(e["path"] == "/datasets" and e["status"] == 500 for e in log)


# ---------------------------------------------------------------------- tokens
def test_wrong_secret_costs_no_scrypt(svc, monkeypatch):
    import hashlib

    def no_scrypt(*args, **kwargs):
        raise AssertionError("scrypt called")

    monkeypatch.setattr(hashlib, "scrypt", no_scrypt)
    wrong = {"Authorization": "Bearer " + svc.tokens["viewer"][:-2] + "xx"}
    assert svc.client.get("/me", headers=wrong).status_code == 401
    assert svc.client.get("/me", headers=svc.headers("viewer")).status_code == 200


def _legacy_token(state_path, role="analyst"):
    """Insert a token hashed the old way (scrypt), as earlier versions stored it."""
    import hashlib
    import secrets

    token_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), os.urandom(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32,
                            maxmem=64 * MB)
    with sqlite3.connect(state_path) as con:
        con.execute("INSERT INTO tokens (id, name, role, salt, hash, created) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (token_id, "old laptop", role, salt, digest, "2026-01-01T00:00:00+00:00"))
    return token_id, f"pc_{token_id}.{secret}"


def test_legacy_state_file_is_migrated_and_old_tokens_keep_working(tmp_path):
    from placecast.service import StateDB, TokenStore

    path = tmp_path / "old.service.sqlite"
    with sqlite3.connect(path) as con:  # the schema before scheme/expires existed
        con.execute("CREATE TABLE tokens (id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT "
                    "NOT NULL, salt BLOB NOT NULL, hash BLOB NOT NULL, created TEXT NOT "
                    "NULL, revoked TEXT)")
    token_id, token = _legacy_token(path)
    store = TokenStore(StateDB(path))
    info = {t.id: t for t in store.list()}[token_id]
    assert info.scheme == "scrypt" and info.expires is None
    assert store.verify(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert store.verify(token).name == "old laptop"
    assert {t.id: t for t in store.list()}[token_id].scheme == "hmac-sha256"
    assert store.verify(token).role == "analyst"  # works after the re-hash too
    secret = token.split(".")[1].encode()
    assert secret not in path.read_bytes()


def test_legacy_checks_run_one_at_a_time(tmp_path):
    from placecast.service import StateDB, TokenRefused, TokenStore

    path = tmp_path / "p.service.sqlite"
    store = TokenStore(StateDB(path))
    _, token = _legacy_token(path)
    store._legacy.acquire()  # another scrypt check is running
    try:
        started = time.monotonic()
        with pytest.raises(TokenRefused, match="busy"):
            store.authenticate(token)
        assert time.monotonic() - started < 5
    finally:
        store._legacy.release()
    assert store.authenticate(token).role == "analyst"


def test_expired_token_gets_401_saying_so(svc):
    from placecast.service import StateDB

    token, info = svc.app.state.tokens.create("viewer", "temp", expires="1d")
    h = {"Authorization": f"Bearer {token}"}
    assert svc.client.get("/me", headers=h).status_code == 200
    assert info.expires > info.created
    state: StateDB = svc.app.state.state_db
    state.execute("UPDATE tokens SET expires = ? WHERE id = ?",
                  ("2020-01-01T00:00:00+00:00", info.id))
    for r in (svc.client.get("/me", headers=h),
              svc.client.post("/forecasts", headers=h, json=BASE["/forecasts"])):
        assert r.status_code == 401
        assert "expired" in r.json()["detail"] and "2020-01-01" in r.json()["detail"]


@pytest.mark.parametrize(("expires", "word"), [("0d", "positive"), ("soon", "soon"),
                                                ("100y", "3660 days"), ("-1d", "-1d")])
def test_bad_expiry_is_refused(svc, expires, word):
    from placecast.exceptions import ParameterError

    before = len(svc.app.state.tokens.list())
    with pytest.raises(ParameterError, match="expiry") as info:
        svc.app.state.tokens.create("viewer", "x", expires=expires)
    assert word in str(info.value)
    assert len(svc.app.state.tokens.list()) == before


def test_token_create_expires_cli(tmp_path):
    from typer.testing import CliRunner

    from placecast.cli import app

    db = str(tmp_path / "p.duckdb")
    runner = CliRunner()
    r = runner.invoke(app, ["token", "create", "--role", "viewer", "--db", db,
                            "--expires", "90d"])
    assert r.exit_code == 0, r.output
    assert "expires 20" in r.output
    listing = runner.invoke(app, ["token", "list", "--db", db], env={"COLUMNS": "250"})
    assert "hmac-sha256" in listing.output
    bad = runner.invoke(app, ["token", "create", "--role", "viewer", "--db", db,
                              "--expires", "forever"])
    assert bad.exit_code == 2 and "token expiry" in bad.output
    assert len(runner.invoke(app, ["token", "list", "--db", db]).output.splitlines()) == len(
        listing.output.splitlines())


# ---------------------------------------------------------------------- service under abuse
def test_valid_users_are_served_while_bad_requests_arrive(svc):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    with serve_in_thread(svc.app) as url:
        port = int(url.rsplit(":", 1)[1])
        stop = threading.Event()
        bad_results: list[int] = []

        def attacker(n: int) -> None:
            rng = random.Random(n)
            with httpx.Client(base_url=url, timeout=10) as client:
                while not stop.is_set():
                    kind = rng.randrange(4)
                    if kind == 0:
                        status, _ = _send_big(port, "/forecasts", {}, 20 * MB)
                    elif kind == 1:
                        status = client.post("/forecasts", headers=svc.headers("analyst"),
                                             json={**BASE["/forecasts"],
                                                   "horizon": "1000y"}).status_code
                    elif kind == 2:
                        status = client.get("/me", headers={
                            "Authorization": "Bearer " + svc.tokens["admin"][:-1] + "x"}
                        ).status_code
                    else:
                        status = client.post("/scans", headers=svc.headers("analyst"),
                                             content=b'{"dataset": ' + b"[" * 5000
                                             ).status_code
                    bad_results.append(status)

        threads = [threading.Thread(target=attacker, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        good = []
        try:
            with httpx.Client(base_url=url, timeout=30) as client:
                deadline = time.monotonic() + 4
                while time.monotonic() < deadline:
                    for path in ("/me", "/datasets", "/forecasts", "/"):
                        good.append(client.get(path, headers=svc.headers("viewer")).status_code)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
    assert len(good) >= 20 and set(good) == {200}, good
    assert bad_results and set(bad_results) <= {400, 401, 413, 422}, set(bad_results)


# ---------------------------------------------------------------------- fuzz
def _values(rng: random.Random):
    """A random JSON value of a kind a careless or hostile client might send."""
    number = rng.choice([0, 1, -1, 2, 7, 99, 2**31, 2**63, 10**30, -(10**30), 0.0, 0.5,
                         -0.5, 1e-308, 1e308, -1e308, 3.7, 1e6])
    text = rng.choice([
        "", " ", "7d", "1M", "2w", "12h", "0d", "-7d", "1000y", "365000d", "1e400d",
        f"{rng.uniform(0, 1e6):.3f}{rng.choice(['d', 'h', 'w', 'M', 'y', 'min', 'x'])}",
        "150m", "600ft", "0m", "1e9km", f"{rng.uniform(0, 1e7):.1f}{rng.choice(['m', 'km'])}",
        "1%", "100%", "0.25sqmi", "2019-06-01", "2019-02-30", "9999-12-31", "0001-01-01",
        "1677-09-21", "2262-04-12", "2019-06-01T23:59:59", "nan", "inf", "NaN", "½", "１２",
        "naive", "kde", "etas", "base", "robbery A", "x" * 300, "\u0000", "../../etc",
        "numpy", "satscan", "gumbel"])
    return rng.choice([number, text, None, True, False, [text], [number], {"a": text},
                       [text] * rng.randrange(0, 30), {text[:20] or "k": number}])


#: Values that pass or nearly pass validation, so that the work behind it runs too.
PLAUSIBLE = {
    "model": ["naive", "kde", "prospective", "sepp", "etas", "nope"],
    "models": [["naive"], ["naive", "kde"], ["kde", "prospective"], []],
    "category": [["robbery A"], ["robbery B", "robbery A"], ["none such"], None],
    "cell_size": ["1500m", "2km", "5000ft", "1mi", "800m", "60km"],
    "horizon": ["1d", "7d", "2w", "1M", "12h", "1y"],
    "horizons": [["7d"], ["1d", "14d"], ["1M", "2w", "3d"]],
    "step": ["1d", "7d", "14d", "1M", "2w"],
    "interval": ["1d", "7d", "12h", "1w"],
    "at": ["2019-03-01", "2019-01-02", "2018-06-01", "2019-03-01T12:00", "2030-01-01"],
    "start": ["2019-01-15", "2018-01-01", "2019-02-01"],
    "end": ["2019-02-20", "2019-03-01", "2017-01-01"],
    "area": ["1%", "5%", "0.5sqmi", "100%", "1sqkm", "0.01%"],
    "n_origins": [1, 2, 3], "n_steps": [2, 4, 8], "n_intervals": [2, 10, 30],
    "n_permutations": [9, 19, 49], "time_steps": [0, 1, 3], "max_share": [0.1, 0.5],
    "alpha": [0.05, 0.5, 0.99], "factor": [1.5, 3.0], "distance": ["1km", "3000m"],
    "max_radius": ["1km", None, "20km"], "random_state": [0, 7],
    "randomization": ["numpy", "satscan"], "p_values": ["monte_carlo", "gumbel",
                                                         "satscan_default"],
    "fdr": [True, False], "name": ["fuzz-run", None],
    "model_params": [{"bandwidth": 300.0}, {"lookback_days": 30}, {"time_decay": 0.1},
                     {"bandwidth": 1.0, "lookback_days": 1.0}, {"max_iter": 5}],
}


def _fuzz_body(rng: random.Random, base: dict, fields: list[str]) -> dict:
    body = dict(base)
    plausible = rng.random() < 0.5
    for _ in range(rng.randrange(1, 4)):
        field = rng.choice(fields + ["unknown_field"])
        if plausible and field in PLAUSIBLE:
            body[field] = rng.choice(PLAUSIBLE[field])
        elif field == "model_params" and rng.random() < 0.7:
            body[field] = {rng.choice(["bandwidth", "lookback_days", "time_decay",
                                       "max_iter", "tol", "random_state", "nope"]):
                           _values(rng)}
        else:
            body[field] = _values(rng)
        if rng.random() < 0.1:
            body.pop(rng.choice(list(body)), None)
    return body


@pytest.mark.slow
def test_fuzz_json_api_no_500(svc, caplog):
    """Seeded random bodies and query strings on every route: only 2xx/4xx, never 500.

    Half the bodies change fields to plausible values, so that many requests pass
    validation and run: accepted forecasts and jobs run for real, and neither they nor
    anything else may log an internal error.
    """
    caplog.set_level("ERROR", logger="placecast.service")
    from placecast.service._schemas import (
        AuditRequest,
        BacktestRequest,
        ForecastRequest,
        HotSpotRequest,
        ScanRequest,
    )

    rng = random.Random(20261204)
    schemas = {"/forecasts": ForecastRequest, "/backtests": BacktestRequest,
               "/audits": AuditRequest, "/scans": ScanRequest, "/hotspots": HotSpotRequest}
    # Keep accepted jobs small: at most 3 origins, 99 permutations, 12 steps.
    base = {path: {**body, "cell_size": "2000m"} for path, body in BASE.items()}
    h = svc.headers("admin")
    statuses: dict[int, int] = {}
    job_ids = []
    for i in range(400):
        path = rng.choice(list(schemas))
        fields = list(schemas[path].model_fields)
        if i % 10 == 9:  # not JSON at all, or JSON of the wrong shape
            content = rng.choice([b"{", b"[]", b"null", b'"x"', b"\xff\xfe", b"[" * 3000,
                                  b'{"dataset": "base"' + b", " * 100, b"1e999"])
            r = svc.raw.post(path, headers={**h, "content-type": "application/json"},
                             content=content)
        else:
            body = _fuzz_body(rng, base[path], fields)
            for key, top in (("n_origins", 3), ("n_steps", 12), ("n_intervals", 30),
                             ("n_permutations", 99)):
                if isinstance(body.get(key), int) and not isinstance(body[key], bool) \
                        and body[key] > top:
                    body[key] = top if rng.random() < 0.5 else body[key]
            r = svc.raw.post(path, headers=h, json=body)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (path, r.status_code, r.text)
        assert not FLAG.search(r.text), r.text  # API messages name fields, not CLI flags
        assert "Traceback" not in r.text and r.json()["detail" if r.status_code >= 400
                                                       else "id"]
        if r.status_code == 202:
            job_ids.append(r.json()["id"])
    fid = svc.client.post("/forecasts", headers=h, json=base["/forecasts"]).json()["id"]
    queries = {"/forecasts": ["dataset", "model", "limit"], "/alerts": ["acknowledged", "kind"],
               "/jobs": ["kind"], "/audit-log": ["limit", "before"],
               f"/forecasts/{fid}/geojson": ["area", "flagged_only"],
               f"/forecasts/{fid}/csv": ["area"], "/datasets/base/categories": [],
               f"/forecasts/{fid}": [], "/backtests": [], "/me": [], "/models": []}
    for _ in range(150):
        path = rng.choice(list(queries))
        params = {name: str(_values(rng)) for name in queries[path] if rng.random() < 0.7}
        r = svc.raw.get(path, headers=h, params=params)
        assert r.status_code < 500, (path, params, r.status_code, r.text)
        assert "Traceback" not in r.text
    for _ in range(40):  # random path segments
        segment = str(_values(rng)).replace("/", "%2F")[:80]
        for template in ("/forecasts/{}", "/jobs/{}", "/datasets/{}/categories",
                         "/backtests/{}", "/scans/{}"):
            r = svc.raw.get(template.format(segment), headers=h)
            assert r.status_code < 500, (template, segment, r.status_code, r.text)
        r = svc.raw.post(f"/alerts/{segment}/acknowledge", headers=h)
        assert r.status_code < 500, (segment, r.status_code, r.text)
    forms = ["time", "x", "y", "lon", "lat", "category", "weight", "incident_id", "mark",
             "crs", "time_format", "timezone", "skip_bad_rows"]
    plausible_forms = {"crs": ["EPSG:4326", "EPSG:32616", "local:m", "EPSG:999999"],
                       "time": ["datetime", "nope"], "timezone": ["UTC", "Mars/Olympus"],
                       "time_format": ["%Y-%m-%d %H:%M", "%d/%m/%Y"],
                       "lon": ["longitude", "latitude"], "lat": ["latitude"],
                       "skip_bad_rows": ["true", "false", "maybe"]}
    for i in range(30):  # uploads: random form fields with a real small CSV
        form = {}
        for field in rng.sample(forms, rng.randrange(1, 4)):
            pool = plausible_forms.get(field)
            form[field] = rng.choice(pool) if pool and rng.random() < 0.6 \
                else str(_values(rng))[:200]
        with open(svc.csv, "rb") as handle:
            r = svc.raw.post(f"/datasets/fuzz{i}", headers=h, data=form,
                             files={"file": ("small.csv", handle, "text/csv")})
        assert r.status_code < 500, (form, r.status_code, r.text)
        assert "Traceback" not in r.text and not FLAG.search(r.text), r.text
    print("fuzz statuses:", sorted(statuses.items()), "jobs:", len(job_ids))
    assert sum(statuses.values()) == 400 and statuses.get(422, 0) > 100, statuses
    assert statuses.get(201, 0) >= 10 and len(job_ids) >= 20, statuses
    outcomes: dict[str, int] = {}
    errors: set[str] = set()
    for job_id in job_ids:
        job = _wait(svc, job_id, timeout=120)
        assert not (job["error"] or "").startswith("internal error"), job
        outcomes[job["status"]] = outcomes.get(job["status"], 0) + 1
        if job["error"]:
            errors.add(job["error"][:150])
            assert not FLAG.search(job["error"]), job["error"]
    print("fuzz jobs:", outcomes, *sorted(errors), sep="\n")
    assert outcomes.get("succeeded", 0) >= 5, outcomes
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text[-2000:]
