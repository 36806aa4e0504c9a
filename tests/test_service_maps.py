"""The service's map context: GET /map/layers and the PMTiles basemap in byte ranges."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")

from _helpers_basemap import write_pmtiles, write_reference_layer  # noqa: E402
from _helpers_service import make_service  # noqa: E402
from placecast.exceptions import DataError  # noqa: E402

BOUNDS = (-90.15, 35.0, -89.7, 35.3)  # Memphis, lon/lat


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maps")
    return {"basemap": write_pmtiles(folder / "memphis.pmtiles", BOUNDS, max_zoom=8),
            "reference": write_reference_layer(folder / "wards.gpkg", BOUNDS,
                                               crs="EPSG:32616")}


def test_basemap_is_served_in_byte_ranges_to_signed_in_users(tmp_path, files):
    from placecast.service import ServiceSettings

    settings = ServiceSettings(basemap=files["basemap"],
                               reference_layers=(files["reference"],))
    data = files["basemap"].read_bytes()
    with make_service(tmp_path, settings) as svc:
        layers = svc.client.get("/map/layers", headers=svc.headers("viewer"))
        assert layers.status_code == 200
        body = layers.json()
        assert body["basemap"] == {"name": "memphis.pmtiles", "n_bytes": len(data),
                                   "tile_type": "mvt", "min_zoom": 0, "max_zoom": 8,
                                   "bounds": body["basemap"]["bounds"],
                                   "url": "/map/basemap.pmtiles"}
        assert [r["name"] for r in body["references"]] == ["wards"]
        assert body["references"][0]["n_features"] == 3
        # PMTiles readers ask for the 127-byte header first, then directories and tiles
        r = svc.client.get("/map/basemap.pmtiles", headers={
            **svc.headers("viewer"), "Range": "bytes=0-126"})
        assert r.status_code == 206 and r.content == data[:127]
        assert r.headers["content-range"] == f"bytes 0-126/{len(data)}"
        r = svc.client.get("/map/basemap.pmtiles", headers={
            **svc.headers("viewer"), "Range": f"bytes=200-{len(data) - 1}"})
        assert r.status_code == 206 and r.content == data[200:]
        # the same rules as every data route: no token, no map
        assert svc.client.get("/map/basemap.pmtiles").status_code == 401
        assert svc.client.get("/map/layers").status_code == 401
        # tile fetches are not written to the audit log (a view asks for dozens)
        log = svc.client.get("/audit-log", headers=svc.headers("admin")).json()
        paths = [e.get("path") for e in log["entries"]]
        assert "/map/layers" in paths and "/map/basemap.pmtiles" not in paths
        # raster tiles are drawn as blob: images, which the dashboard's CSP allows
        assert "img-src 'self' data: blob:" in svc.client.get("/").headers[
            "content-security-policy"]
        page = svc.client.get("/").text
        for script in ("/static/vendor/pmtiles.js", "/static/vendor/protomaps-leaflet.js",
                       "/static/basemap.js"):
            assert script in page
            assert svc.client.get(script).status_code == 200
        licence = svc.client.get("/static/vendor/LICENSE.protomaps-leaflet.txt")
        assert "Protomaps LLC" in licence.text


def test_no_basemap_is_a_clear_404(tmp_path):
    with make_service(tmp_path) as svc:
        assert svc.client.get("/map/layers", headers=svc.headers("viewer")).json() == {
            "basemap": None, "references": []}
        r = svc.client.get("/map/basemap.pmtiles", headers=svc.headers("viewer"))
        assert r.status_code == 404 and "no basemap" in r.json()["detail"]


def test_bad_basemap_stops_the_service_at_start(tmp_path):
    from placecast.service import ServiceSettings, create_app

    bad = tmp_path / "city.pmtiles"
    bad.write_text("not tiles")
    with pytest.raises(DataError, match="not a PMTiles archive"):
        create_app(str(tmp_path / "x.duckdb"), ServiceSettings(basemap=bad))


def test_serve_refuses_a_bad_basemap_or_layer_with_exit_2(tmp_path, files):
    from typer.testing import CliRunner

    from placecast.cli import app

    bad = tmp_path / "city.pmtiles"
    bad.write_bytes(b"PM\x02" + bytes(300))
    db = str(tmp_path / "s.duckdb")
    result = CliRunner().invoke(app, ["serve", "--db", db, "--basemap", str(bad)])
    assert result.exit_code == 2, result.output
    assert "version 2" in result.output and "pmtiles convert" in result.output
    result = CliRunner().invoke(app, ["serve", "--db", db, "--basemap", str(files["basemap"]),
                                      "--reference", str(tmp_path / "none.gpkg")])
    assert result.exit_code == 2 and "reference layer not found" in result.output
