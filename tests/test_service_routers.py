"""The service's routers: every route of the one-closure app is still there, same roles."""

from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("fastapi")

from _helpers_service import make_service  # noqa: E402

#: (method, path, least role) of every route before the split into routers (issue 15),
#: read from the running app of commit 8193da6 by the same probing as below; "-" needs
#: no token.
BEFORE = {
    ("DELETE", "/datasets/{name}", "admin"),
    ("GET", "/", "-"),
    ("GET", "/alerts", "viewer"),
    ("GET", "/audit-log", "admin"),
    ("GET", "/audits", "viewer"),
    ("GET", "/audits/{job_id}", "viewer"),
    ("GET", "/backtests", "viewer"),
    ("GET", "/backtests/{backtest_id}", "viewer"),
    ("GET", "/datasets", "viewer"),
    ("GET", "/datasets/{name}/categories", "viewer"),
    ("GET", "/forecasts", "viewer"),
    ("GET", "/forecasts/{forecast_id}", "viewer"),
    ("GET", "/forecasts/{forecast_id}/csv", "viewer"),
    ("GET", "/forecasts/{forecast_id}/geojson", "viewer"),
    ("GET", "/forecasts/{forecast_id}/map", "viewer"),
    ("GET", "/forecasts/{forecast_id}/report", "viewer"),
    ("GET", "/health", "-"),
    ("GET", "/hotspots", "viewer"),
    ("GET", "/hotspots/{job_id}", "viewer"),
    ("GET", "/jobs", "viewer"),
    ("GET", "/jobs/{job_id}", "viewer"),
    ("GET", "/map/basemap.pmtiles", "viewer"),
    ("GET", "/map/layers", "viewer"),
    ("GET", "/me", "viewer"),
    ("GET", "/models", "viewer"),
    ("GET", "/openapi.json", "-"),
    ("GET", "/scans", "viewer"),
    ("GET", "/scans/{job_id}", "viewer"),
    ("POST", "/alerts/{alert_id}/acknowledge", "analyst"),
    ("POST", "/audits", "analyst"),
    ("POST", "/backtests", "analyst"),
    ("POST", "/datasets/{name}", "analyst"),
    ("POST", "/forecasts", "analyst"),
    ("POST", "/hotspots", "analyst"),
    ("POST", "/scans", "analyst"),
}
MOUNTS = {"/static", "/static/leaflet"}

_SAMPLE = {"forecast_id": "1", "backtest_id": "1", "name": "x",
           "job_id": "0123456789abcdef", "alert_id": "abc"}


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: _SAMPLE[m.group(1)], path)


@pytest.fixture(scope="module")
def svc(tmp_path_factory):
    with make_service(tmp_path_factory.mktemp("routers")) as service:
        yield service


def _routes(app):
    from placecast.service.routers import iter_routes

    return list(iter_routes(app.routes))


def test_every_route_is_kept_with_its_least_role(svc):
    """Each route answers; a token one role short gets 403, no token 401 (as before)."""
    found = set()
    mounts = set()
    for route in _routes(svc.app):
        methods = getattr(route, "methods", None)
        if methods is None:
            mounts.add(route.path)
            continue
        for method in sorted(methods - {"HEAD"}):
            least = None
            for role in (None, "viewer", "analyst", "admin"):
                headers = svc.headers(role) if role else {}
                status = svc.client.request(method, _url(route.path),
                                            headers=headers).status_code
                if status not in (401, 403):
                    least = role or "-"
                    break
                # Below the route's role: 401 without a token, 403 with a weaker one.
                assert status == (401 if role is None else 403), (method, route.path, role)
            found.add((method, route.path, least))
    assert found == BEFORE
    assert mounts == MOUNTS


def test_routes_live_in_their_resource_router(svc):
    """``create_app`` defines no route itself: each endpoint comes from a router module."""
    modules = {}
    for route in _routes(svc.app):
        endpoint = getattr(route, "endpoint", None)
        if endpoint is None or route.path == "/openapi.json":
            continue
        modules[route.path] = endpoint.__module__
    assert all(m.startswith("placecast.service.routers.") for m in modules.values()), modules
    assert modules["/forecasts/{forecast_id}/map"] == "placecast.service.routers.forecasts"
    assert modules["/datasets/{name}"] == "placecast.service.routers.datasets"
    assert modules["/alerts"] == "placecast.service.routers.alerts"


def test_token_is_checked_before_the_body_for_router_routes(svc):
    """The middleware knows the routers' paths: a big upload without a token gets 401."""
    r = svc.client.post("/datasets/x", content=b"x" * 100_000,
                        headers={"content-type": "text/csv"})
    assert r.status_code == 401
    # An unknown path is left to the app: 404, not 401.
    assert svc.client.get("/no-such-route").status_code == 404


def test_audit_log_is_batched_but_read_complete(tmp_path):
    """Entries queued by the writer thread are all in the log when it is read."""
    from placecast.service import StateDB
    from placecast.service._audit_log import AuditLog

    state = StateDB(tmp_path / "state.sqlite")
    log = AuditLog(state, flush_interval=60.0)  # the thread would not write in time
    for i in range(25):
        log.record(principal=None, method="GET", path=f"/x/{i}", action="GET /x/{i}",
                   target={"i": str(i)}, status=200, client=None)
    # Nothing written yet; reading writes what is queued first, in order.
    assert state.execute("SELECT COUNT(*) FROM audit_log")[0][0] == 0
    entries = log.entries(limit=100)
    assert [e["path"] for e in entries] == [f"/x/{i}" for i in reversed(range(25))]
    log.record(principal=None, method="GET", path="/last", action="GET /last",
               target=None, status=404, client=None)
    log.close()
    assert state.execute("SELECT path, status FROM audit_log ORDER BY seq DESC LIMIT 1"
                         ) == [("/last", 404)]
    state.close()


def test_audit_log_thread_writes_without_a_reader(tmp_path):
    from placecast.service import StateDB
    from placecast.service._audit_log import AuditLog

    state = StateDB(tmp_path / "state.sqlite")
    log = AuditLog(state, flush_interval=0.05)
    log.record(principal=None, method="GET", path="/a", action="GET /a", target=None,
               status=200, client="127.0.0.1")
    deadline = time.monotonic() + 5
    while state.execute("SELECT COUNT(*) FROM audit_log")[0][0] == 0:
        assert time.monotonic() < deadline, "the writer thread never wrote"
        time.sleep(0.02)
    log.close()
    state.close()


@pytest.fixture(scope="module")
def with_forecast(tmp_path_factory, shared_data):
    from _helpers_service import CELL, memphis_csv

    with make_service(tmp_path_factory.mktemp("fast")) as service:
        assert service.upload("memphis", memphis_csv(shared_data)).status_code == 201
        r = service.client.post("/forecasts", headers=service.headers("analyst"), json={
            "dataset": "memphis", "model": "naive", "cell_size": CELL,
            "at": "2019-12-01", "horizon": "14d"})
        assert r.status_code == 201, r.text
        yield service, r.json()["id"]


def _same_answer(first, second):
    assert second.status_code == first.status_code
    assert second.content == first.content
    assert dict(second.headers) == dict(first.headers)


@pytest.mark.parametrize("suffix", ["", "/map", "/map?area=2%25"])
def test_cached_answers_equal_the_routed_ones(with_forecast, suffix):
    """The first request renders through the route; the next comes from the cache
    without routing (``cached_answer``): same status, headers and bytes, same 304s."""
    from placecast.service.routers.forecasts import cached_answer

    svc, forecast_id = with_forecast
    url = f"/forecasts/{forecast_id}{suffix}"
    path, _, query = url.partition("?")
    ctx = svc.app.state.context
    for encoding in ("gzip", "identity"):
        h = {**svc.headers("viewer"), "Accept-Encoding": encoding}
        first = svc.client.get(url, headers=h)
        assert first.status_code == 200
        # Now cached: the middleware can answer it.
        assert cached_answer(ctx, path, query.encode(), lambda name: None) is not None
        _same_answer(first, svc.client.get(url, headers=h))
        tag = first.headers["etag"]
        revalidated = svc.client.get(url, headers={**h, "If-None-Match": tag})
        assert revalidated.status_code == 304 and revalidated.content == b""
        assert revalidated.headers["etag"] == tag
        assert "content-security-policy" in revalidated.headers


def test_cached_answers_keep_auth_and_the_audit_log(with_forecast):
    svc, forecast_id = with_forecast
    url = f"/forecasts/{forecast_id}/map"
    assert svc.client.get(url, headers=svc.headers("viewer")).status_code == 200
    assert svc.client.get(url).status_code == 401
    assert svc.client.get(url, headers={"Authorization": "Bearer pc_x.y"}).status_code == 401
    token, info = svc.app.state.tokens.create("viewer", "short-lived")
    h = {"Authorization": f"Bearer {token}"}
    assert svc.client.get(url, headers=h).status_code == 200
    svc.app.state.tokens.revoke(info.id)
    assert svc.client.get(url, headers=h).status_code == 401
    log = svc.client.get("/audit-log?limit=10", headers=svc.headers("admin")).json()
    newest = [(e["token_name"], e["action"], e["status"], e["target"])
              for e in log["entries"] if e["action"] != "GET /audit-log"][:2]
    # The revoked token is not anybody's any more: its 401 (refused before routing, as
    # before the split) names no token and the raw path.
    assert newest == [
        (None, f"GET /forecasts/{forecast_id}/map", 401, None),
        ("short-lived", "GET /forecasts/{forecast_id}/map", 200,
         {"forecast_id": str(forecast_id)}),
    ]


def test_unusual_requests_take_the_route(with_forecast):
    """Not cached, unknown or odd query strings: the routed answer (404, 422)."""
    from placecast.service.routers.forecasts import cached_answer

    svc, forecast_id = with_forecast
    ctx = svc.app.state.context
    h = svc.headers("viewer")
    assert cached_answer(ctx, "/forecasts/999", b"", lambda name: None) is None
    assert svc.client.get("/forecasts/999", headers=h).status_code == 404
    assert cached_answer(ctx, f"/forecasts/{forecast_id}/map", b"area=1%25&x=1",
                         lambda name: None) is None
    assert svc.client.get(f"/forecasts/{forecast_id}/map?area=lots",
                          headers=h).status_code == 422
    assert svc.client.get(f"/forecasts/{forecast_id}?x=1", headers=h).status_code == 200
