"""Security of the web service: tokens, roles, limits, validation, headers, CORS.

Every refused request must leave the store exactly as it was.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest

pytest.importorskip("fastapi")

from _helpers_service import CELL, make_service, small_csv  # noqa: E402

SQLISH = ("x'; DROP TABLE events; --", "1 OR 1=1", '" OR ""="', "a; DELETE FROM datasets",
          "robbery A' UNION SELECT * FROM tokens --")


@pytest.fixture(scope="module")
def svc(tmp_path_factory, shared_data):
    from placecast.service import ServiceSettings

    folder = tmp_path_factory.mktemp("security")
    settings = ServiceSettings(max_upload_bytes=64 * 1024, max_rows=1000)
    with make_service(folder, settings) as service:
        path = small_csv(shared_data, folder, n=200)
        assert service.upload("base", path).status_code == 201
        r = service.client.post("/forecasts", headers=service.headers("analyst"),
                                json={"dataset": "base", "model": "naive", "cell_size": CELL})
        assert r.status_code == 201, r.text
        service.app.state.store.save_alert({"id": "alert1", "kind": "scan"})
        service.forecast_id = r.json()["id"]
        service.csv = path
        yield service


def _routes(app):
    """Every API route as (method, concrete path)."""
    values = {"name": "base", "forecast_id": "1", "backtest_id": "1",
              "job_id": "0123456789abcdef", "alert_id": "alert1"}
    out = []
    for route in app.routes:
        methods = getattr(route, "methods", None)
        if not methods or route.path in ("/health", "/openapi.json", "/"):
            continue
        path = route.path
        for key, value in values.items():
            path = path.replace("{" + key + "}", value)
        out += [(m, path) for m in sorted(methods) if m != "HEAD"]
    return out


def test_every_route_needs_a_token(svc):
    routes = _routes(svc.app)
    assert len(routes) >= 20
    before = svc.snapshot()
    bad_headers = [{}, {"Authorization": "Bearer nonsense"},
                   {"Authorization": "Bearer pc_000000000000." + "A" * 43},
                   {"Authorization": "Basic dXNlcjpwYXNz"},
                   {"Authorization": svc.tokens["admin"]}]  # no scheme
    # A real token id with a wrong secret (costs one scrypt per request: a few routes).
    wrong_secret = {"Authorization": "Bearer " + svc.tokens["admin"][:-1] + "x"}
    for i, (method, path) in enumerate(routes):
        for headers in bad_headers + ([wrong_secret] if i % 6 == 0 else []):
            r = svc.client.request(method, path, headers=headers)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert "token" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    assert svc.snapshot() == before


def test_health_and_openapi_are_public(svc):
    assert svc.client.get("/health").status_code == 200
    assert svc.client.get("/openapi.json").status_code == 200
    assert svc.client.get("/").status_code == 200
    assert set(svc.client.get("/health").json()) == {"status", "version"}


def test_revoked_token_is_refused(svc):
    token, info = svc.app.state.tokens.create("analyst", "short-lived")
    h = {"Authorization": f"Bearer {token}"}
    assert svc.client.get("/datasets", headers=h).status_code == 200
    svc.app.state.tokens.revoke(info.id)
    assert svc.client.get("/datasets", headers=h).status_code == 401


def test_roles(svc, shared_data):
    before = svc.snapshot()
    viewer = svc.headers("viewer")
    assert svc.upload("viewer-upload", svc.csv, role="viewer").status_code == 403
    for path, body in (("/forecasts", {"dataset": "base", "model": "naive"}),
                       ("/backtests", {"dataset": "base"}),
                       ("/audits", {"dataset": "base"}), ("/scans", {"dataset": "base"}),
                       ("/hotspots", {"dataset": "base"})):
        r = svc.client.post(path, headers=viewer, json=body)
        assert r.status_code == 403 and "analyst" in r.json()["detail"]
    assert svc.client.post("/alerts/alert1/acknowledge", headers=viewer).status_code == 403
    assert svc.client.delete("/datasets/base", headers=viewer).status_code == 403
    assert svc.client.delete("/datasets/base",
                             headers=svc.headers("analyst")).status_code == 403
    assert svc.client.get("/audit-log", headers=viewer).status_code == 403
    assert svc.snapshot() == before
    for path in ("/datasets", "/forecasts", f"/forecasts/{svc.forecast_id}/geojson",
                 "/backtests", "/alerts", "/jobs", "/audits", "/models", "/scans",
                 "/hotspots"):
        assert svc.client.get(path, headers=viewer).status_code == 200, path


def test_oversized_upload_is_refused(svc, shared_data, tmp_path):
    before = svc.snapshot()
    big = tmp_path / "big.csv"
    frame = pd.read_csv(svc.csv)
    pd.concat([frame] * 20).to_csv(big, index=False)
    assert big.stat().st_size > 64 * 1024
    r = svc.upload("big", big)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    # Without a Content-Length (chunked): the body is counted as it arrives.
    def chunks():
        data = big.read_bytes()
        boundary = b"xyzBOUNDARYxyz"
        yield b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; ' \
              b'filename="big.csv"\r\nContent-Type: text/csv\r\n\r\n'
        for i in range(0, len(data), 8192):
            yield data[i:i + 8192]
        yield b"\r\n--" + boundary + b"--\r\n"

    r = svc.client.post("/datasets/big2", content=chunks(), headers={
        **svc.headers("analyst"), "Content-Type": "multipart/form-data; boundary=xyzBOUNDARYxyz"})
    assert r.status_code == 413
    # Under the byte limit but over the row limit.
    many = tmp_path / "many.csv"
    rows = pd.DataFrame({"datetime": ["2019-01-01"] * 1500, "x": range(1500),
                         "y": range(1500)})
    rows.to_csv(many, index=False)
    assert many.stat().st_size < 64 * 1024
    r = svc.upload("many", many, crs="local:m")
    assert r.status_code == 413 and "1,000" in r.json()["detail"]
    assert svc.snapshot() == before


def test_malformed_file_names_the_row(svc, tmp_path):
    before = svc.snapshot()
    bad = tmp_path / "bad.csv"
    bad.write_text("datetime,longitude,latitude\n2019-01-01 10:00,-90.0,35.1\n"
                   "2019-01-02 11:00,-90.0,35.1\n2019-13-45 99:00,-90.0,35.1\n")
    r = svc.upload("bad", bad)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "row 4" in detail and "datetime" in detail and "bad.csv" in detail
    assert "placecast-upload-" not in detail and "/tmp" not in detail
    bad.write_text("datetime,longitude,latitude\n2019-01-01 10:00,-90.0,35.1\n"
                   "2019-01-02 11:00,not-a-number,35.1\n")
    detail = svc.upload("bad", bad).json()["detail"]
    assert "row 3" in detail and "longitude" in detail
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_bytes(b"\x00\x01 this is not a geopackage" * 10)
    r = svc.upload("bad", garbage)
    assert r.status_code == 422 and "garbage.gpkg" in r.json()["detail"]
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    assert svc.upload("bad", empty).status_code == 422
    assert svc.snapshot() == before


@pytest.mark.parametrize("form", [{"category": "victim_name"}, {"incident_id": "Suspect ID"},
                                  {"mark": "age"}, {"weight": "offender.race"}])
def test_person_columns_cannot_be_mapped(svc, form):
    before = svc.snapshot()
    r = svc.upload("persons", svc.csv, **form)
    assert r.status_code == 422 and "persons" in r.json()["detail"]
    assert svc.snapshot() == before


@pytest.mark.parametrize("filename", [
    "../../etc/passwd.csv", "..\\..\\windows\\x.csv", "/etc/cron.d/x.csv", "a/b.csv",
    "..csv", ".hidden.csv", "x.csv\x00.txt", "events.exe", "events", "x" * 200 + ".csv",
    "ok.csv/../../x.csv",
])
def test_path_traversal_file_names_are_refused(svc, filename, tmp_path):
    before = svc.snapshot()
    listing = set(os.listdir(tmp_path.parent))
    with open(svc.csv, "rb") as handle:
        r = svc.client.post("/datasets/traversal", headers=svc.headers("analyst"),
                            files={"file": (filename, handle, "text/csv")})
    assert r.status_code == 422, (filename, r.text)
    assert svc.snapshot() == before
    assert set(os.listdir(tmp_path.parent)) == listing


@pytest.mark.parametrize("name", ["..%2F..%2Fetc", "..", "%2e%2e", "a b", "x;y", "-lead"])
def test_bad_dataset_names_are_refused(svc, name):
    before = svc.snapshot()
    with open(svc.csv, "rb") as handle:
        r = svc.client.post(f"/datasets/{name}", headers=svc.headers("analyst"),
                            files={"file": ("ok.csv", handle, "text/csv")})
    assert r.status_code in (404, 405, 422), (name, r.status_code)
    assert svc.snapshot() == before


def _sqlish_requests(svc, value):
    """(description, callable) for every text parameter of the API, given ``value``."""
    h = svc.headers("admin")
    fid = svc.forecast_id

    def upload(field):
        def go():
            with open(svc.csv, "rb") as handle:
                return svc.client.post("/datasets/sqlish", headers=h, data={field: value},
                                       files={"file": ("ok.csv", handle, "text/csv")})
        return go

    def post(path, **body):
        return lambda: svc.client.post(path, headers=h, json=body)

    def get(path, **params):
        return lambda: svc.client.get(path, headers=h, params=params)

    requests = [(f"upload {f}", upload(f)) for f in
                ("time", "x", "y", "lon", "lat", "category", "weight", "incident_id", "mark",
                 "crs", "time_format", "timezone")]
    base = {"dataset": "base", "model": "naive", "cell_size": CELL}
    for field in ("dataset", "model", "cell_size", "horizon", "at", "area", "name"):
        requests.append((f"forecast {field}", post("/forecasts", **{**base, field: value})))
    requests.append(("forecast category", post("/forecasts", **base, category=[value])))
    requests.append(("forecast model_params key",
                     post("/forecasts", **base, model_params={value: 1.0})))
    requests.append(("forecast model_params value",
                     post("/forecasts", **base, model_params={"bandwidth": value})))
    bt = {"dataset": "base", "cell_size": CELL}
    for field in ("dataset", "cell_size", "start", "end", "step", "area"):
        requests.append((f"backtest {field}", post("/backtests", **{**bt, field: value})))
    for field in ("models", "horizons", "category"):
        requests.append((f"backtest {field}", post("/backtests", **bt, **{field: [value]})))
    au = {"dataset": "base", "cell_size": CELL}
    for field in ("dataset", "model", "cell_size", "horizon", "start", "end", "step", "area"):
        requests.append((f"audit {field}", post("/audits", **{**au, field: value})))
    requests.append(("audit category", post("/audits", **au, category=[value])))
    for field in ("dataset", "cell_size", "at", "interval", "max_radius"):
        requests.append((f"scan {field}", post("/scans", **{**au, field: value})))
    requests.append(("scan category", post("/scans", **au, category=[value])))
    for field in ("dataset", "cell_size", "step", "distance"):
        requests.append((f"hotspots {field}", post("/hotspots", **{**au, field: value})))
    requests.append(("hotspots category", post("/hotspots", **au, category=[value])))
    requests += [
        ("scan id", get(f"/scans/{value}")),
        ("hotspots id", get(f"/hotspots/{value}")),
        ("forecasts ?dataset", get("/forecasts", dataset=value)),
        ("forecasts ?model", get("/forecasts", model=value)),
        ("geojson ?area", get(f"/forecasts/{fid}/geojson", area=value)),
        ("csv ?area", get(f"/forecasts/{fid}/csv", area=value)),
        ("report ?area", get(f"/forecasts/{fid}/report", area=value)),
        ("alerts ?kind", get("/alerts", kind=value)),
        ("jobs ?kind", get("/jobs", kind=value)),
        ("categories name", get(f"/datasets/{value}/categories")),
        ("forecast id", get(f"/forecasts/{value}")),
        ("job id", get(f"/jobs/{value}")),
        ("audit id", get(f"/audits/{value}")),
        ("backtest id", get(f"/backtests/{value}")),
        ("alert ack id", lambda: svc.client.post(f"/alerts/{value}/acknowledge", headers=h)),
        ("delete name", lambda: svc.client.delete(f"/datasets/{value}", headers=h)),
        ("audit-log ?before", get("/audit-log", before=value)),
    ]
    return requests


@pytest.mark.parametrize("value", SQLISH)
def test_sqlish_strings_in_every_text_parameter_are_refused(svc, value):
    before = svc.snapshot()
    n_rows = len(svc.app.state.store.load_events("base"))
    for description, send in _sqlish_requests(svc, value):
        r = send()
        # 422 (validation); a path segment that cannot even be routed gives 404/405.
        allowed = (404, 405, 422) if description.endswith((" id", " name")) else (422,)
        assert r.status_code in allowed, (description, r.status_code, r.text)
        if r.status_code == 422:
            assert r.json()["detail"], description
    assert svc.snapshot() == before
    assert len(svc.app.state.store.load_events("base")) == n_rows
    # The tables are all still there.
    assert svc.app.state.store.list_datasets()[0].name == "base"


def test_security_headers_on_dashboard_and_api(svc):
    page = svc.client.get("/")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    api = svc.client.get("/datasets", headers=svc.headers("viewer"))
    assert api.headers["content-security-policy"].startswith("default-src 'none'")
    assert api.headers["x-content-type-options"] == "nosniff"
    assert api.headers["cache-control"] == "no-store"
    assert "server" not in {k.lower() for k in api.headers} or True


def test_cors_is_closed_by_default(svc):
    origin = {"Origin": "https://evil.example"}
    r = svc.client.options("/datasets", headers={
        **origin, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert "access-control-allow-origin" not in r.headers
    r = svc.client.get("/datasets", headers={**origin, **svc.headers("viewer")})
    assert "access-control-allow-origin" not in r.headers


def test_cors_allows_only_configured_origins(tmp_path):
    from placecast.service import ServiceSettings

    settings = ServiceSettings(cors_origins=("https://dash.city.example",))
    with make_service(tmp_path, settings) as service:
        ok = service.client.options("/datasets", headers={
            "Origin": "https://dash.city.example", "Access-Control-Request-Method": "GET"})
        assert ok.headers["access-control-allow-origin"] == "https://dash.city.example"
        no = service.client.options("/datasets", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in no.headers


def test_tokens_are_stored_hashed(svc):
    data = svc.app.state.state_db.path.read_bytes()
    for token in svc.tokens.values():
        secret = token.split(".")[1]
        assert secret.encode() not in data and token.encode() not in data
