"""The web service in-process: datasets, forecasts, backtests, audits, alerts, jobs."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")

from _helpers_service import CELL, make_service, memphis_csv, small_csv  # noqa: E402


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A shared service: each test uses its own dataset names and alert ids."""
    with make_service(tmp_path_factory.mktemp("service")) as svc:
        yield svc


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, shared_data):
    """One service with the Memphis robberies, a naive and a kde forecast."""
    folder = tmp_path_factory.mktemp("loaded")
    with make_service(folder) as svc:
        r = svc.upload("memphis", memphis_csv(shared_data))
        assert r.status_code == 201, r.text
        ids = {}
        for model in ("naive", "kde"):
            r = svc.client.post("/forecasts", headers=svc.headers("analyst"), json={
                "dataset": "memphis", "model": model, "cell_size": CELL,
                "at": "2019-12-01", "horizon": "14d", "area": "2%"})
            assert r.status_code == 201, r.text
            ids[model] = r.json()["id"]
        yield svc, ids


def test_health_and_openapi_need_no_token(service):
    assert service.client.get("/health").json()["status"] == "ok"
    spec = service.client.get("/openapi.json").json()
    for path in ("/datasets/{name}", "/forecasts", "/forecasts/{forecast_id}/geojson",
                 "/forecasts/{forecast_id}/csv", "/backtests", "/jobs/{job_id}", "/audits",
                 "/alerts", "/alerts/{alert_id}/acknowledge", "/audit-log"):
        assert path in spec["paths"], path
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # No CDN-backed docs pages.
    assert service.client.get("/docs").status_code == 404


def test_me(service):
    me = service.client.get("/me", headers=service.headers("analyst")).json()
    assert me["role"] == "analyst" and me["name"] == "test analyst"


def test_upload_keeps_only_event_fields(service, shared_data, tmp_path):
    path = small_csv(shared_data, tmp_path)
    frame = pd.read_csv(path)
    r = service.upload("small", path)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["n_read"] == len(frame)
    assert body["n_new"] + body["n_duplicates"] == len(frame)
    assert body["source"] == "small.csv"
    info = {d["name"]: d for d in service.client.get(
        "/datasets", headers=service.headers("viewer")).json()["datasets"]}
    assert info["small"]["n_events"] == body["n_new"]
    # Categories as in the file (case as stored by the reader), counts add up.
    cats = service.client.get("/datasets/small/categories",
                              headers=service.headers("viewer")).json()["categories"]
    assert sum(cats.values()) == body["n_new"]
    assert len(cats) == 2
    # The person-level column is nowhere in the store: not a column, not a value.
    store = service.app.state.store.inner
    for (table,) in store._con.execute("SELECT table_name FROM information_schema.tables"
                                       ).fetchall():
        columns = [c[0] for c in store._con.execute(f'DESCRIBE "{table}"').fetchall()]
        assert not any("victim" in c.lower() for c in columns), (table, columns)
        for c in columns:
            hits = store._con.execute(
                f'SELECT count(*) FROM "{table}" WHERE CAST("{c}" AS VARCHAR) LIKE ?',
                ["%Sentinelname%"]).fetchone()[0]
            assert hits == 0, (table, c)
    # Uploading again adds nothing.
    again = service.upload("small", path).json()
    assert again["n_new"] == 0 and again["n_duplicates"] == len(frame)


def test_geojson_upload_and_delete(service, shared_data, tmp_path):
    import geopandas as gpd

    frame = pd.read_csv(memphis_csv(shared_data)).head(50)
    gdf = gpd.GeoDataFrame(frame[["uid", "datetime"]],
                           geometry=gpd.points_from_xy(frame.longitude, frame.latitude),
                           crs="EPSG:4326")
    path = tmp_path / "points.geojson"
    gdf.to_file(path, driver="GeoJSON")
    r = service.upload("points", path)
    assert r.status_code == 201, r.text
    assert r.json()["n_new"] == 50
    assert service.client.delete("/datasets/points",
                                 headers=service.headers("analyst")).status_code == 403
    r = service.client.delete("/datasets/points", headers=service.headers("admin"))
    assert r.status_code == 200 and r.json()["n_deleted"] == 50
    names = [d["name"] for d in service.client.get(
        "/datasets", headers=service.headers("viewer")).json()["datasets"]]
    assert "points" not in names
    assert service.client.delete("/datasets/points",
                                 headers=service.headers("admin")).status_code == 404


def test_forecast_matches_the_library(loaded, shared_data):
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast

    svc, ids = loaded
    events = read_events(memphis_csv(shared_data))
    units = build_units(events, UnitSpec(cell_size=1000.0))
    direct = run_forecast(events, model="kde", at="2019-12-01", horizon="14d", units=units)
    r = svc.client.get(f"/forecasts/{ids['kde']}/geojson?area=2%25",
                       headers=svc.headers("viewer"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/geo+json")
    collection = r.json()
    features = collection["features"]
    assert len(features) == len(units)
    got = {f["properties"]["unit_id"]: f["properties"]["intensity"] for f in features}
    want = dict(zip(map(str, direct.units.unit_id), direct.intensity, strict=True))
    assert got.keys() == want.keys()
    np.testing.assert_allclose([got[k] for k in want], list(want.values()), rtol=1e-5,
                               atol=1e-6)
    meta = collection["forecast"]
    assert meta["model"] == "kde" and meta["window"]["start"].startswith("2019-12-01")
    # Flagged cells: the top-ranked ones, within the 2% budget.
    flagged = [f for f in features if f["properties"]["flagged"]]
    assert len(flagged) == meta["n_flagged"] > 0
    area_each = float(np.median(units.area))
    assert len(flagged) * area_each <= 0.02 * units.region_area * 1.01
    worst_flagged = max(f["properties"]["rank"] for f in flagged)
    assert worst_flagged == len(flagged)
    # Coordinates are lon/lat over Memphis.
    xs = [pt[0] for f in flagged for pt in f["geometry"]["coordinates"][0]]
    ys = [pt[1] for f in flagged for pt in f["geometry"]["coordinates"][0]]
    assert -90.5 < min(xs) and max(xs) < -89.5 and 34.8 < min(ys) and max(ys) < 35.5
    # Served gzip-compressed to clients that accept it: the same document, smaller.
    raw = svc.client.get(f"/forecasts/{ids['kde']}/geojson?area=2%25",
                         headers={**svc.headers("viewer"), "Accept-Encoding": "identity"})
    assert "content-encoding" not in raw.headers
    assert r.headers["content-encoding"] == "gzip"  # httpx asks for gzip by default
    assert int(r.headers["content-length"]) < len(raw.content) / 3
    assert r.content == raw.content  # httpx decompressed it
    # Only flagged cells on request.
    only = svc.client.get(f"/forecasts/{ids['kde']}/geojson?area=2%25&flagged_only=true",
                          headers=svc.headers("viewer")).json()
    assert len(only["features"]) == len(flagged)


def test_forecast_csv_list_and_get(loaded):
    svc, ids = loaded
    h = svc.headers("viewer")
    r = svc.client.get(f"/forecasts/{ids['naive']}/csv?area=2%25", headers=h)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(r.text))
    assert list(table.columns) == ["unit_id", "intensity", "rank", "flagged"]
    geo = svc.client.get(f"/forecasts/{ids['naive']}/geojson?area=2%25", headers=h).json()
    assert len(table) == len(geo["features"])
    assert int(table["flagged"].sum()) == geo["forecast"]["n_flagged"]
    assert np.all(np.diff(table["rank"]) > 0)
    listed = svc.client.get("/forecasts?dataset=memphis", headers=h).json()["forecasts"]
    assert [f["id"] for f in listed[:2]] == [ids["kde"], ids["naive"]]  # newest first
    assert svc.client.get("/forecasts?model=naive", headers=h).json()["forecasts"][0][
        "id"] == ids["naive"]
    one = svc.client.get(f"/forecasts/{ids['naive']}", headers=h).json()
    assert one["model"] == "naive" and one["horizon"] == "14d" and one["area"] == "2%"
    assert one["created_by"] == "test analyst"
    assert svc.client.get("/forecasts/999999", headers=h).status_code == 404


def test_forecast_report_download(loaded):
    svc, ids = loaded
    r = svc.client.get(f"/forecasts/{ids['kde']}/report?area=2%25",
                       headers=svc.headers("viewer"))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-disposition"] == (
        f'attachment; filename="forecast-{ids["kde"]}.html"')
    assert "<html" in r.text.lower() and "kde" in r.text
    import re

    # Nothing loaded from outside (links a reader may click are fine).
    assert not re.search(r"""src\s*=\s*["']https?://""", r.text)
    assert not re.search(r"""<link[^>]+href\s*=\s*["']https?://""", r.text)
    public = svc.client.get(f"/forecasts/{ids['kde']}/report?public=true",
                            headers=svc.headers("viewer"))
    assert public.status_code == 200 and public.text != r.text


def test_backtest_job_matches_run_backtest(loaded, shared_data):
    from placecast.evaluate import run_backtest
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    svc, _ = loaded
    body = {"dataset": "memphis", "models": ["naive", "kde"], "cell_size": CELL,
            "horizons": ["7d"], "start": "2019-11-01", "end": "2019-11-22", "step": "7d",
            "area": "2%"}
    r = svc.client.post("/backtests", headers=svc.headers("analyst"), json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert svc.app.state.jobs.wait_idle(60)
    job = svc.client.get(f"/jobs/{job_id}", headers=svc.headers("viewer")).json()
    assert job["status"] == "succeeded", job
    assert job["n_done"] == job["n_total"] == 4 and job["progress"] == 1.0
    backtest_id = job["result"]["backtest_id"]
    got = svc.client.get(f"/backtests/{backtest_id}", headers=svc.headers("viewer")).json()
    assert got["meta"]["dataset"] == "memphis"
    rows = pd.DataFrame(got["rows"])
    events = read_events(memphis_csv(shared_data))
    units = build_units(events, UnitSpec(cell_size=1000.0))
    direct = run_backtest(events, units, models=["naive", "kde"], start="2019-11-01",
                          end="2019-11-22", step="7d", horizons=["7d"], area="2%").to_frame()
    assert len(rows) == len(direct) == 8
    np.testing.assert_allclose(rows["pai"].to_numpy(), direct["pai"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(rows["hits"].to_numpy(), direct["hits"].to_numpy())
    listed = svc.client.get("/backtests", headers=svc.headers("viewer")).json()["backtests"]
    assert listed[0]["id"] == backtest_id


def test_audit_job(loaded):
    svc, _ = loaded
    r = svc.client.post("/audits", headers=svc.headers("analyst"), json={
        "dataset": "memphis", "model": "naive", "cell_size": CELL, "horizon": "7d",
        "n_origins": 3, "area": "2%"})
    assert r.status_code == 202, r.text
    assert svc.app.state.jobs.wait_idle(60)
    audit = svc.client.get(f"/audits/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert audit["status"] == "succeeded", audit
    summary = audit["result"]["summary"]
    assert summary["n_periods"] == 3
    assert 0 <= summary["gini_flags"] <= 1
    assert summary["n_flags"] >= summary["n_units_ever_flagged"] > 0
    assert [a["id"] for a in svc.client.get(
        "/audits", headers=svc.headers("viewer")).json()["audits"]][0] == r.json()["id"]


def _scan_job_and_library(svc, shared_data, **settings):  # noqa: ANN001, ANN202
    """Run a memphis scan job and the same scan through the library."""
    from placecast.clusters import SpaceTimeScan, scan_data_from_events
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    body = {"dataset": "memphis", "cell_size": CELL, "n_intervals": 30,
            "n_permutations": 19, "random_state": 3, **settings}
    r = svc.client.post("/scans", headers=svc.headers("analyst"), json=body)
    assert r.status_code == 202, r.text
    assert svc.app.state.jobs.wait_idle(120)
    job = svc.client.get(f"/scans/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert job["status"] == "succeeded", job
    events = read_events(memphis_csv(shared_data))
    units = build_units(events, UnitSpec(cell_size=1000.0))
    options = {k: v for k, v in settings.items() if k in ("randomization", "p_values")}
    direct = SpaceTimeScan(n_permutations=19, random_state=3, max_clusters=20,
                           **options).run(scan_data_from_events(events, n_intervals=30,
                                                                units=units))
    return body, job, direct


def test_scan_job_matches_the_library_and_raises_alerts_once(loaded, shared_data):
    svc, _ = loaded
    body, job, direct = _scan_job_and_library(svc, shared_data, alpha=0.99)
    result = job["result"]
    assert result["n_clusters"] == len(direct.clusters) > 0
    top = result["clusters"]["features"][0]["properties"]
    assert top["observed"] == direct.most_likely.observed
    assert top["test_statistic"] == pytest.approx(direct.most_likely.test_statistic)
    assert top["p_value"] == pytest.approx(direct.most_likely.p_value)
    # Clusters with p <= 0.99 became alerts, with their circle as geometry.
    significant = direct.significant(0.99)
    assert result["n_significant"] == len(significant) == len(result["new_alerts"]) > 0
    alerts = {a["id"]: a for a in svc.client.get(
        "/alerts?kind=space-time%20cluster", headers=svc.headers("viewer")).json()["alerts"]}
    assert set(result["new_alerts"]) <= set(alerts)
    first = alerts[result["new_alerts"][0]]
    assert first["geometry"]["type"] == "Polygon" and first["dataset"] == "memphis"
    svc.client.post(f"/alerts/{first['id']}/acknowledge", headers=svc.headers("analyst"))
    # The same scan again: no new alert, and the acknowledgement stays.
    r = svc.client.post("/scans", headers=svc.headers("analyst"), json=body)
    assert svc.app.state.jobs.wait_idle(120)
    again = svc.client.get(f"/scans/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert again["result"]["new_alerts"] == []
    acked = {a["id"]: a["acknowledged"] for a in svc.client.get(
        "/alerts", headers=svc.headers("viewer")).json()["alerts"]}
    assert acked[first["id"]] is True


def test_hotspot_job_matches_the_library(loaded, shared_data):
    from placecast.clusters import SpaceTimeCube, emerging_hot_spots
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    svc, _ = loaded
    r = svc.client.post("/hotspots", headers=svc.headers("analyst"), json={
        "dataset": "memphis", "cell_size": CELL, "step": "7d", "n_steps": 10,
        "distance": "2000m"})
    assert r.status_code == 202, r.text
    assert svc.app.state.jobs.wait_idle(120)
    job = svc.client.get(f"/hotspots/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert job["status"] == "succeeded", job
    events = read_events(memphis_csv(shared_data))
    units = build_units(events, UnitSpec(cell_size=1000.0))
    direct = emerging_hot_spots(SpaceTimeCube.from_events(events, units, step="7d",
                                                          n_steps=10), distance=2000.0)
    assert job["result"]["counts"] == direct.counts()
    features = job["result"]["units"]["features"]
    assert len(features) == len(units) - direct.counts().get("no pattern detected", 0)
    alerting = sum(direct.counts().get(p, 0) for p in
                   ("new hot spot", "consecutive hot spot", "intensifying hot spot"))
    assert len(job["result"]["new_alerts"]) == alerting


def test_backtest_runs_on_dask_when_configured(tmp_path, shared_data):
    distributed = pytest.importorskip("dask.distributed")
    from placecast.service import ServiceSettings

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    try:
        settings = ServiceSettings(dask=cluster.scheduler_address)
        with make_service(tmp_path, settings) as svc:
            svc.upload("memphis", memphis_csv(shared_data))
            r = svc.client.post("/backtests", headers=svc.headers("analyst"), json={
                "dataset": "memphis", "models": ["naive"], "cell_size": CELL,
                "n_origins": 2})
            assert svc.app.state.jobs.wait_idle(120)
            job = svc.client.get(f"/jobs/{r.json()['id']}",
                                 headers=svc.headers("viewer")).json()
            assert job["status"] == "succeeded", job
            assert job["n_done"] == 2
        # The origins ran as tasks on the Dask scheduler.
        assert any("run_origin" in prefix for prefix in cluster.scheduler.task_prefixes)
    finally:
        cluster.close()


def test_job_failure_is_reported(loaded):
    svc, _ = loaded
    # A window past the end of the data: the job fails with the library's message.
    r = svc.client.post("/backtests", headers=svc.headers("analyst"), json={
        "dataset": "memphis", "models": ["naive"], "cell_size": CELL,
        "start": "2019-12-25", "end": "2019-12-30", "horizons": ["1M"]})
    assert r.status_code == 202
    assert svc.app.state.jobs.wait_idle(60)
    job = svc.client.get(f"/jobs/{r.json()['id']}", headers=svc.headers("viewer")).json()
    assert job["status"] == "failed" and job["result"] is None
    assert "end" in job["error"] or "data" in job["error"]
    # Unknown model and unknown dataset are refused before a job is made.
    n_jobs = len(svc.app.state.jobs.list())
    r = svc.client.post("/backtests", headers=svc.headers("analyst"),
                        json={"dataset": "memphis", "models": ["nosuchmodel"]})
    assert r.status_code == 422 and "nosuchmodel" in r.json()["detail"]
    r = svc.client.post("/backtests", headers=svc.headers("analyst"),
                        json={"dataset": "nosuch", "models": ["naive"]})
    assert r.status_code == 404
    assert len(svc.app.state.jobs.list()) == n_jobs


def test_alerts_list_and_acknowledge(service):
    store = service.app.state.store
    store.save_alert({"id": "a1", "kind": "scan", "created": "2019-06-01",
                      "geometry": {"type": "Point", "coordinates": [-90.0, 35.1]},
                      "observed": 9, "expected": 2.5, "p_value": 0.01})
    store.save_alert({"id": "a2", "kind": "emerging", "created": "2019-06-02"})
    h = service.headers("viewer")
    alerts = service.client.get("/alerts", headers=h).json()["alerts"]
    assert [a["id"] for a in alerts if a["id"] in ("a1", "a2")] == ["a2", "a1"]
    assert service.client.post("/alerts/a1/acknowledge", headers=h).status_code == 403
    r = service.client.post("/alerts/a1/acknowledge", headers=service.headers("analyst"))
    assert r.status_code == 200
    open_ = service.client.get("/alerts?acknowledged=false", headers=h).json()["alerts"]
    assert "a2" in [a["id"] for a in open_] and "a1" not in [a["id"] for a in open_]
    assert service.client.get("/alerts?kind=scan", headers=h).json()["alerts"][0][
        "acknowledged"] is True
    assert service.client.post("/alerts/zz/acknowledge",
                               headers=service.headers("analyst")).status_code == 404


def test_audit_log_records_who_and_is_append_only(service, shared_data, tmp_path):
    service.upload("logged", small_csv(shared_data, tmp_path, n=60))
    service.client.get("/datasets", headers=service.headers("viewer"))
    service.client.get("/datasets")  # no token
    entries = service.client.get("/audit-log?limit=10",
                                 headers=service.headers("admin")).json()["entries"]
    actions = [(e["token_name"], e["action"], e["status"]) for e in entries]
    assert ("test analyst", "POST /datasets/{name}", 201) in actions
    assert ("test viewer", "GET /datasets", 200) in actions
    assert (None, "GET /datasets", 401) in actions
    upload = next(e for e in entries if e["action"] == "POST /datasets/{name}")
    assert upload["target"] == {"name": "logged"} and upload["role"] == "analyst"
    assert service.client.get("/audit-log",
                              headers=service.headers("analyst")).status_code == 403
    state = sqlite3.connect(service.app.state.state_db.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        state.execute("DELETE FROM audit_log")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        state.execute("UPDATE audit_log SET status = 200")
    state.close()


def test_concurrent_uploads_and_forecasts_are_consistent(service, shared_data, tmp_path):
    path = small_csv(shared_data, tmp_path, n=300)
    n_unique = len(pd.read_csv(path).drop_duplicates(["uid"]))
    results: list = []
    errors: list = []

    def upload() -> None:
        try:
            results.append(service.upload("same", path))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert all(r.status_code == 201 for r in results), [r.text for r in results]
    assert sum(r.json()["n_new"] for r in results) == n_unique
    datasets = service.client.get("/datasets", headers=service.headers("viewer")).json()
    assert {d["name"]: d["n_events"] for d in datasets["datasets"]}["same"] == n_unique

    forecasts: list = []

    def forecast() -> None:
        forecasts.append(service.client.post("/forecasts", headers=service.headers("analyst"),
                                             json={"dataset": "same", "model": "naive",
                                                   "cell_size": CELL}))

    threads = [threading.Thread(target=forecast) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 201 for r in forecasts)
    ids = {r.json()["id"] for r in forecasts}
    assert len(ids) == 3
    totals = {round(r.json()["expected_total"], 9) for r in forecasts}
    assert len(totals) == 1  # same data, same model: same forecast


@pytest.mark.postgis
def test_service_over_postgis(tmp_path, shared_data):
    url = os.environ.get("PLACECAST_TEST_POSTGIS_URL")
    if url is None:  # as the store's own PostGIS tests: .ci/run starts a server
        pytest.skip("no PostgreSQL + PostGIS server: set PLACECAST_TEST_POSTGIS_URL")
    import uuid

    import psycopg
    from fastapi.testclient import TestClient

    from placecast.service import ServiceSettings, create_app
    from placecast.store import open_store

    schema = f"svc_{uuid.uuid4().hex[:12]}"
    settings = ServiceSettings(state_path=tmp_path / "state.sqlite")
    path = small_csv(shared_data, tmp_path, n=200)
    try:
        for run in range(2):  # the second run is a restart over the same database
            store = open_store(url, schema=schema)
            app = create_app(store, settings)
            try:
                with TestClient(app) as client:
                    if run == 0:
                        token, _ = app.state.tokens.create("analyst", "pg")
                    h = {"Authorization": f"Bearer {token}"}
                    if run == 0:
                        with open(path, "rb") as handle:
                            r = client.post("/datasets/small", headers=h,
                                            files={"file": ("small.csv", handle, "text/csv")})
                        assert r.status_code == 201, r.text
                        r = client.post("/forecasts", headers=h, json={
                            "dataset": "small", "model": "naive", "cell_size": CELL})
                        assert r.status_code == 201, r.text
                        fid = r.json()["id"]
                        n_units = r.json()["n_units"]
                    datasets = client.get("/datasets", headers=h).json()["datasets"]
                    assert [d["name"] for d in datasets] == ["small"]
                    geo = client.get(f"/forecasts/{fid}/geojson", headers=h).json()
                    assert len(geo["features"]) == n_units
            finally:
                app.state.close()
                store.close()
    finally:
        with psycopg.connect(url, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_restart_keeps_everything(tmp_path, shared_data):
    path = small_csv(shared_data, tmp_path, n=120)
    with make_service(tmp_path) as first:
        first.upload("small", path)
        fid = first.client.post("/forecasts", headers=first.headers("analyst"), json={
            "dataset": "small", "model": "naive", "cell_size": CELL}).json()["id"]
        geo_before = first.client.get(f"/forecasts/{fid}/geojson",
                                      headers=first.headers("viewer")).content
        tokens = first.tokens
        before = first.snapshot()
    from fastapi.testclient import TestClient

    from placecast.service import create_app

    app = create_app(str(tmp_path / "placecast.duckdb"))
    try:
        with TestClient(app) as client:
            h = {"Authorization": f"Bearer {tokens['viewer']}"}
            assert client.get("/datasets", headers=h).json()["datasets"][0]["name"] == "small"
            assert client.get(f"/forecasts/{fid}/geojson", headers=h).content == geo_before
            log = client.get("/audit-log?limit=1000",
                             headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
            assert any(e["action"] == "POST /forecasts" for e in log["entries"])
        from _helpers_service import Service

        assert Service(app, None, tokens, tmp_path).snapshot() == before
    finally:
        app.state.close()


def test_crash_mid_job_marks_it_failed(tmp_path):
    from placecast.service._jobs import JobManager
    from placecast.service._state import StateDB

    state = StateDB(tmp_path / "state.sqlite")
    release = threading.Event()
    started = threading.Event()

    def slow(progress):
        progress(1, 4)
        started.set()
        release.wait(10)
        return {"finished": True}

    first = JobManager(state)
    job_id = first.submit("backtest", {"x": 1}, slow)
    assert started.wait(10)
    assert first.get(job_id)["status"] == "running"
    assert first.get(job_id)["progress"] == 0.25
    # A new boot over the same state (the old process "crashed"): the job is failed...
    second = JobManager(state)
    job = second.get(job_id)
    assert job["status"] == "failed" and "interrupted" in job["error"]
    # ... and the old worker finishing later cannot write a result over it.
    release.set()
    assert first.wait_idle(10)
    job = second.get(job_id)
    assert job["status"] == "failed" and job["result"] is None
    first.shutdown()
    second.shutdown()
    state.close()


def test_token_cli_create_list_revoke(tmp_path):
    from typer.testing import CliRunner

    from placecast.cli import app as cli
    from placecast.service import create_app

    db = str(tmp_path / "team.duckdb")
    runner = CliRunner()
    made = runner.invoke(cli, ["token", "create", "--role", "viewer", "--name", "wall",
                               "--db", db])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip().splitlines()[-1]
    assert token.startswith("pc_")
    listed = runner.invoke(cli, ["token", "list", "--db", db])
    token_id = token[3:15]
    assert token_id in listed.stdout and "viewer" in listed.stdout
    assert token.split(".")[1] not in listed.stdout
    # Only a hash is kept: the secret is nowhere in the state file.
    state_file = tmp_path / "team.service.sqlite"
    assert token.split(".")[1].encode() not in state_file.read_bytes()
    bad = runner.invoke(cli, ["token", "create", "--role", "root", "--db", db])
    assert bad.exit_code == 2 and "viewer, analyst, admin" in bad.output

    from fastapi.testclient import TestClient

    app = create_app(db)
    try:
        with TestClient(app) as client:
            h = {"Authorization": f"Bearer {token}"}
            assert client.get("/datasets", headers=h).status_code == 200
            revoked = runner.invoke(cli, ["token", "revoke", token_id, "--db", db])
            assert revoked.exit_code == 0, revoked.output
            assert client.get("/datasets", headers=h).status_code == 401
    finally:
        app.state.close()
    again = runner.invoke(cli, ["token", "revoke", token_id, "--db", db])
    assert again.exit_code == 2 and "no active token" in again.output


def _start_server(db: str, port: int):
    import subprocess
    import sys
    import time

    import httpx

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    server = subprocess.Popen(
        [sys.executable, "-c", "from placecast.cli import main; main()", "serve", "--db", db,
         "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return server
        except httpx.HTTPError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise AssertionError(server.stderr.read().decode()) from None
            time.sleep(0.2)


def test_placecast_serve_killed_mid_job_leaves_the_job_failed(tmp_path, shared_data):
    """`placecast serve` in a real process, SIGKILLed during a backtest, then reopened."""
    import time

    import httpx

    from _helpers_service import free_port
    from placecast.service import StateDB, TokenStore

    db = str(tmp_path / "crash.duckdb")
    state = StateDB(tmp_path / "crash.service.sqlite")
    token, _ = TokenStore(state).create("analyst", "crash test")
    state.close()
    h = {"Authorization": f"Bearer {token}"}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = _start_server(db, port)
    try:
        health = httpx.get(f"{base}/health", timeout=10)
        assert health.json()["status"] == "ok" and "server" not in health.headers
        assert httpx.get(f"{base}/datasets", timeout=10).status_code == 401
        with open(memphis_csv(shared_data), "rb") as handle:
            r = httpx.post(f"{base}/datasets/memphis", headers=h, timeout=60,
                           files={"file": ("memphis.csv", handle, "text/csv")})
        assert r.status_code == 201, r.text
        r = httpx.post(f"{base}/backtests", headers=h, timeout=60, json={
            "dataset": "memphis", "models": ["kde"], "cell_size": CELL,
            "n_origins": 100, "step": "3d"})
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while True:  # wait until the job is part-way through
            job = httpx.get(f"{base}/jobs/{job_id}", headers=h, timeout=10).json()
            if job["status"] == "running" and job["n_done"] >= 1:
                break
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
    finally:
        server.kill()  # SIGKILL: no clean shutdown
        server.wait(20)
    # Restart (in-process here, over the same files).
    from fastapi.testclient import TestClient

    from placecast.service import create_app

    app = create_app(db)
    try:
        with TestClient(app) as client:
            job = client.get(f"/jobs/{job_id}", headers=h).json()
            assert job["status"] == "failed" and "interrupted" in job["error"]
            assert job["result"] is None
            assert client.get("/backtests", headers=h).json() == {"backtests": []}
            datasets = client.get("/datasets", headers=h).json()["datasets"]
            assert datasets[0]["n_events"] == 2245
    finally:
        app.state.close()


def test_serve_refuses_wildcard_cors(tmp_path):
    from typer.testing import CliRunner

    from placecast.cli import app as cli

    result = CliRunner().invoke(cli, ["serve", "--db", str(tmp_path / "x.duckdb"),
                                      "--cors-origin", "*"])
    assert result.exit_code == 2 and "not allowed" in result.output


def test_forecast_request_errors(loaded):
    svc, _ = loaded
    h = svc.headers("analyst")
    r = svc.client.post("/forecasts", headers=h, json={"dataset": "memphis",
                                                        "model": "nosuch"})
    assert r.status_code == 422 and "unknown model 'nosuch'" in r.json()["detail"]
    r = svc.client.post("/forecasts", headers=h, json={"dataset": "memphis", "cell_size": "1m"})
    assert r.status_code == 413 and "cells" in r.json()["detail"]
    r = svc.client.post("/forecasts", headers=h, json={"dataset": "memphis", "horizon": "7x"})
    assert r.status_code == 422 and "horizon" in r.json()["detail"]
    r = svc.client.post("/forecasts", headers=h, json={"dataset": "memphis", "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["detail"]
    r = svc.client.post("/forecasts", headers=h, json={"dataset": "memphis",
                                                        "category": ["no such"]})
    assert r.status_code == 422 and "no events" in r.json()["detail"]
    assert json.loads(svc.client.get("/forecasts/1/geojson?area=150%25",
                                     headers=h).text)["detail"]


def test_dashboard_shell_is_static_and_served_locally(service):
    r = service.client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    html = r.text
    assert "/static/leaflet/leaflet.js" in html and "/static/app.js" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org', "")
    assert "https://" not in html
    for asset in ("/static/leaflet/leaflet.js", "/static/leaflet/leaflet.css", "/static/app.js",
                  "/static/app.css"):
        assert service.client.get(asset).status_code == 200, asset
    js = service.client.get("/static/app.js").text
    assert "innerHTML" not in js
    assert service.client.get("/static/../_app.py").status_code == 404


def test_scan_job_with_satscan_replications_and_p_values(loaded, shared_data):
    svc, _ = loaded
    body, job, direct = _scan_job_and_library(svc, shared_data, alpha=0.5,
                                              randomization="satscan",
                                              p_values="satscan_default")
    top = job["result"]["clusters"]["features"][0]["properties"]
    assert top["p_value"] == pytest.approx(direct.most_likely.p_value)
    assert top["p_value_method"] == direct.most_likely.p_value_method
    r = svc.client.post("/scans", headers=svc.headers("analyst"),
                        json={**body, "randomization": "R"})
    assert r.status_code == 422
