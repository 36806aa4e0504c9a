"""The compact forecast map (``GET /forecasts/{id}/map``), entity tags and 304s."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

from _helpers_service import CELL, make_service, memphis_csv  # noqa: E402


def rebuild(payload: dict) -> dict[str, dict]:
    """Unit id -> GeoJSON-like feature rebuilt from the compact map (as app.js does)."""
    out = {}
    n = payload["n_units"]
    for key in ("intensity", "rank"):
        assert len(payload[key]) == n
    flagged = set(payload["flagged"])
    if "grid" in payload:
        d = payload["display"]
        nodes = np.asarray(d["nodes"]).reshape(-1, 2)
        assert len(nodes) == (d["nc"] + 1) * (d["nr"] + 1)
        stride = d["nc"] + 1
        for i, (c, r) in enumerate(zip(payload["col"], payload["row"], strict=True)):
            a = (r - d["r0"]) * stride + (c - d["c0"])
            ring = [a, a + 1, a + 1 + stride, a + stride, a]
            unit = payload["unit_id"][i] if "unit_id" in payload else f"c{c}_r{r}"
            out[unit] = {"coordinates": [nodes[k].tolist() for k in ring],
                         "intensity": payload["intensity"][i],
                         "rank": payload["rank"][i], "flagged": i in flagged}
    else:
        for i, geometry in enumerate(payload["geometries"]):
            out[payload["unit_id"][i]] = {
                "coordinates": geometry["coordinates"][0],
                "intensity": payload["intensity"][i], "rank": payload["rank"][i],
                "flagged": i in flagged}
    return out


def from_geojson(collection: dict) -> dict[str, dict]:
    return {f["properties"]["unit_id"]: {
        "coordinates": f["geometry"]["coordinates"][0],
        "intensity": f["properties"]["intensity"], "rank": f["properties"]["rank"],
        "flagged": f["properties"]["flagged"]} for f in collection["features"]}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory, shared_data):
    with make_service(tmp_path_factory.mktemp("fastmap")) as svc:
        assert svc.upload("memphis", memphis_csv(shared_data)).status_code == 201
        r = svc.client.post("/forecasts", headers=svc.headers("analyst"), json={
            "dataset": "memphis", "model": "kde", "cell_size": CELL, "at": "2019-12-01",
            "horizon": "14d", "area": "2%"})
        assert r.status_code == 201, r.text
        yield svc, r.json()["id"]


def test_compact_map_rebuilds_the_geojson_exactly(loaded):
    svc, fid = loaded
    h = svc.headers("viewer")
    compact = svc.client.get(f"/forecasts/{fid}/map?area=2%25", headers=h)
    geo = svc.client.get(f"/forecasts/{fid}/geojson?area=2%25", headers=h)
    assert compact.status_code == geo.status_code == 200
    assert compact.headers["content-type"].startswith("application/json")
    payload = compact.json()
    assert payload["format"] == "placecast-forecast-map/1"
    collection = geo.json()
    assert payload["forecast"] == collection["forecast"]
    grid = payload["grid"]
    assert set(grid) == {"origin", "cell_size", "rotation", "n_cols", "n_rows", "crs"}
    assert grid["cell_size"] == pytest.approx(1000.0)
    want, got = from_geojson(collection), rebuild(payload)
    assert got.keys() == want.keys() and len(got) > 100
    for unit, feature in want.items():
        assert got[unit] == feature, unit  # same corners, intensity, rank and flag
    assert sum(f["flagged"] for f in got.values()) == payload["forecast"]["n_flagged"] > 0
    # Compact: far smaller than the GeoJSON, before and after gzip.
    raw = {name: svc.client.get(f"/forecasts/{fid}/{name}?area=2%25",
                                headers={**h, "Accept-Encoding": "identity"}).content
           for name in ("map", "geojson")}
    assert len(raw["map"]) < len(raw["geojson"]) / 3
    assert compact.headers["content-encoding"] == "gzip"
    assert int(compact.headers["content-length"]) < int(geo.headers["content-length"])


@pytest.mark.parametrize("kind", ["rotated", "local", "hex"])
def test_compact_map_matches_geojson_for_other_units(kind, shared_data):
    """Rotated grids, a local (no CRS) grid and hexagons rebuild the same features."""
    from placecast.datasets import PORTLAND_CRS, portland_burglary_path
    from placecast.events import SpatialReference
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units, run_forecast
    from placecast.service._work import forecast_geojson, forecast_map

    events = read_events(portland_burglary_path(), crs=PORTLAND_CRS)
    events = events.select(np.arange(0, len(events), 8))
    if kind == "local":
        from dataclasses import replace

        events = replace(events, spatial_reference=SpatialReference("local:m"))
    spec = (UnitSpec(kind="hex", cell_size=800.0) if kind == "hex"
            else UnitSpec(cell_size=600.0, rotation=17.0 if kind == "rotated" else 0.0))
    units = build_units(events, spec)
    forecast = run_forecast(events, model="kde", at="2017-03-01", horizon="7d", units=units)
    payload = json.loads(forecast_map(7, forecast, "3%"))
    collection = json.loads(forecast_geojson(7, forecast, "3%"))
    assert ("grid" in payload) == (kind != "hex")
    assert payload["forecast"] == collection["forecast"]
    want, got = from_geojson(collection), rebuild(payload)
    assert got.keys() == want.keys()
    for unit, feature in want.items():
        assert got[unit] == feature, unit


def test_etag_and_304(loaded):
    svc, fid = loaded
    h = svc.headers("viewer")
    for name in ("map", "geojson", "csv"):
        url = f"/forecasts/{fid}/{name}?area=2%25"
        first = svc.client.get(url, headers=h)
        tag = first.headers["etag"]
        assert tag.startswith('"') and tag.endswith('-gz"')  # the gzip representation
        assert first.headers["cache-control"] == "private, no-cache"
        again = svc.client.get(url, headers={**h, "If-None-Match": tag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tag
        assert again.headers["x-content-type-options"] == "nosniff"
        assert again.headers["content-security-policy"].startswith("default-src 'none'")
        plain = svc.client.get(url, headers={**h, "Accept-Encoding": "identity"})
        assert plain.headers["etag"] != tag and "content-encoding" not in plain.headers
        # The plain tag does not validate the gzip body (another representation) ...
        other = svc.client.get(url, headers={**h, "If-None-Match": plain.headers["etag"]})
        assert other.status_code == 200 and other.content == plain.content
        # ... a list with the right one does, and so does W/.
        listed = svc.client.get(url, headers={**h, "If-None-Match": f'"x", W/{tag}'})
        assert listed.status_code == 304
        # Another area budget is another body with another tag.
        wider = svc.client.get(f"/forecasts/{fid}/{name}?area=5%25", headers=h)
        assert wider.status_code == 200 and wider.headers["etag"] != tag


def test_map_needs_a_token_even_with_a_matching_etag(loaded):
    svc, fid = loaded
    url = f"/forecasts/{fid}/map"
    tag = svc.client.get(url, headers=svc.headers("viewer")).headers["etag"]
    for headers in ({}, {"Authorization": "Bearer nope"}):
        r = svc.client.get(url, headers={**headers, "If-None-Match": tag})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert "etag" not in r.headers
        assert r.headers["cache-control"] == "no-store"


def test_map_errors_and_description_cache(loaded):
    svc, fid = loaded
    h = svc.headers("viewer")
    assert svc.client.get("/forecasts/9999/map", headers=h).status_code == 404
    bad = svc.client.get(f"/forecasts/{fid}/map?area=150%25", headers=h)
    assert bad.status_code in (400, 422) and "area" in bad.text
    one = svc.client.get(f"/forecasts/{fid}", headers=h)
    two = svc.client.get(f"/forecasts/{fid}", headers=h)
    assert one.status_code == two.status_code == 200 and one.json() == two.json()
    assert one.json()["id"] == fid and one.json()["model"] == "kde"
    assert svc.client.get("/forecasts/9999", headers=h).status_code == 404
    spec = svc.client.get("/openapi.json").json()
    assert "/forecasts/{forecast_id}/map" in spec["paths"]


def test_encoded_cache_renders_once_and_stays_bounded():
    import threading

    from placecast.service._work import Encoded, ForecastCache

    cache = ForecastCache(store=None, size=2, max_bytes=10_000)  # type: ignore[arg-type]
    calls = []

    def make() -> bytes:
        calls.append(1)
        return b"x" * 3000

    threads = [threading.Thread(target=cache.encoded, args=(("k",), make)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    for i in range(10):
        cache.encoded(("k", i), lambda i=i: bytes([i]) * 3000)
    assert cache._n_bytes <= 10_000
    entry = Encoded.of(b"abc")
    import gzip

    assert gzip.decompress(entry.gzip) == b"abc" and entry.etag != entry.etag_gzip
