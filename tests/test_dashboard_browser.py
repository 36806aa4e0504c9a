"""The dashboard in a real headless Chromium against the app served on 127.0.0.1.

Loads the page, signs in, checks the latest forecast is drawn, picks another model and
sees the map change, runs a forecast for a third model, and checks that there were no
console errors and no request to any host but the local server. A screenshot of the map
must show coloured cells.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi")

from _helpers_service import make_service, memphis_csv, serve_in_thread  # noqa: E402

CHROMIUM = os.environ.get("PLACECAST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        "--disable-default-apps", "--disable-extensions"]
CELL = "1500m"


def _browser_or_skip():
    """Playwright's sync API and a Chromium binary; fail under CI when missing."""
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
        sync_playwright = None
    if missing is None and not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        missing = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"the dashboard test needs a browser under CI: {missing}")
        pytest.skip(missing)
    return sync_playwright


@pytest.mark.browser
def test_dashboard_in_headless_chromium(tmp_path, shared_data):
    sync_playwright = _browser_or_skip()
    with make_service(tmp_path) as svc:
        assert svc.upload("memphis", memphis_csv(shared_data)).status_code == 201
        ids = {}
        for model in ("naive", "kde"):
            r = svc.client.post("/forecasts", headers=svc.headers("analyst"), json={
                "dataset": "memphis", "model": model, "cell_size": CELL, "area": "3%"})
            assert r.status_code == 201, r.text
            ids[model] = r.json()["id"]
        r = svc.client.post("/backtests", headers=svc.headers("analyst"), json={
            "dataset": "memphis", "models": ["naive", "kde"], "cell_size": CELL,
            "n_origins": 3, "area": "3%"})
        assert r.status_code == 202
        r = svc.client.post("/scans", headers=svc.headers("analyst"), json={
            "dataset": "memphis", "cell_size": CELL, "n_intervals": 30,
            "n_permutations": 9})
        assert r.status_code == 202
        assert svc.app.state.jobs.wait_idle(120)
        svc.app.state.store.save_alert({
            "id": "scan1", "kind": "space-time scan", "observed": 12, "expected": 3.1,
            "geometry": {"type": "Point", "coordinates": [-90.0, 35.1]}})

        with serve_in_thread(svc.app) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                requests: list[str] = []
                errors: list[str] = []

                def guard(route):
                    requests.append(route.request.url)
                    if route.request.url.startswith(base + "/") or route.request.url == base:
                        route.continue_()
                    else:
                        route.abort()

                page.route("**/*", guard)
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))

                page.goto(base + "/")
                page.wait_for_selector("#login:not([hidden])")
                page.fill("#token", svc.tokens["analyst"])
                page.click("#login-form button[type=submit]")
                # The latest kde forecast (the default model) is drawn.
                page.wait_for_selector(f"#map[data-forecast-id='{ids['kde']}']", timeout=20000)
                assert "kde" in page.inner_text("#status")
                assert page.inner_text("#who") == "test analyst (analyst)"
                # Pick a model: the map switches to the latest naive forecast.
                page.select_option("#model", "naive")
                page.wait_for_selector(f"#map[data-forecast-id='{ids['naive']}']",
                                       timeout=20000)
                assert "naive" in page.inner_text("#status")
                # A model without a forecast: run one from the dashboard.
                page.select_option("#model", "prospective")
                page.wait_for_selector("#map[data-forecast-id=''][data-model='prospective']")
                page.fill("#cell", CELL)
                page.click("#run")
                page.wait_for_function(
                    "() => { const m = document.getElementById('map');"
                    " return m.dataset.model === 'prospective' && m.dataset.forecastId; }",
                    timeout=30000)
                new_id = int(page.get_attribute("#map", "data-forecast-id"))
                assert new_id not in ids.values()
                saved = {f.id: f.model for f in svc.app.state.store.list_forecasts()}
                assert saved[new_id] == "prospective"
                # Backtest chart: one line per model; the alert is listed.
                page.wait_for_selector("#chart svg polyline")
                assert page.locator("#chart svg polyline").count() == 2
                assert "space-time scan" in page.inner_text("#alerts")
                # Background jobs are listed with their progress (done/total).
                page.wait_for_selector("#jobs li.job-succeeded")
                jobs_text = page.inner_text("#jobs")
                assert "backtest succeeded: 3/3 (100%)" in jobs_text, jobs_text
                # Scan clusters are drawn.
                page.wait_for_selector("#map:not([data-n-clusters='0'])[data-n-clusters]")
                page.wait_for_timeout(300)

                shot = tmp_path / "dashboard.png"
                page.screenshot(path=str(shot))
                box = page.locator("#map").bounding_box()
                if os.environ.get("PLACECAST_KEEP_SCREENSHOT"):
                    shutil.copy(shot, os.environ["PLACECAST_KEEP_SCREENSHOT"])
                _check_map_pixels(shot, box)

                # Responsive: on a phone-sized viewport the map spans the width.
                page.set_viewport_size({"width": 390, "height": 844})
                page.wait_for_timeout(200)
                narrow = page.locator("#map").bounding_box()
                assert narrow["width"] > 330
            finally:
                browser.close()

    assert not errors, errors
    outside = [u for u in requests if not u.startswith(base + "/")]
    assert not outside, outside
    assert any("/static/leaflet/leaflet.js" in u for u in requests)


def _check_map_pixels(path: Path, box: dict) -> None:
    """The map area must be largely covered by the forecast's colour ramp."""
    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    x0, y0 = int(box["x"]), int(box["y"])
    crop = image[y0:y0 + int(box["height"]), x0:x0 + int(box["width"])]
    assert crop.size > 0
    background = np.array([0xF8, 0xF9, 0xFA])
    coloured = np.abs(crop - background).sum(axis=2) > 30
    share = coloured.mean()
    # Cells use an orange ramp (red > blue); flagged cells are outlined in blue.
    orange = (crop[..., 0] - crop[..., 2] > 40) & coloured
    blue = (crop[..., 2] - crop[..., 0] > 60)
    assert share > 0.10, f"only {share:.1%} of the map is drawn"
    assert orange.mean() > 0.02, "no forecast colours on the map"
    assert blue.sum() > 20, "no flagged-cell outlines on the map"


@pytest.mark.browser
def test_dashboard_map_context_in_headless_chromium(tmp_path, shared_data):
    """Outline, scale, legend numbers, reference layer and the PMTiles basemap are drawn.

    The basemap is a small vector archive built here; the page must fetch it in byte
    ranges (206) with the token, and its water colour must fill the map around the cells.
    """
    import re

    import numpy as np
    import pandas as pd
    from PIL import Image

    from _helpers_basemap import WATER_RGB, write_pmtiles, write_reference_layer
    from placecast.service import ServiceSettings

    sync_playwright = _browser_or_skip()
    frame = pd.read_csv(memphis_csv(shared_data))
    bounds = (frame.longitude.min(), frame.latitude.min(), frame.longitude.max(),
              frame.latitude.max())
    basemap = write_pmtiles(tmp_path / "memphis.pmtiles", bounds)
    wards = write_reference_layer(tmp_path / "wards.gpkg", bounds, crs="EPSG:32616")
    settings = ServiceSettings(basemap=basemap, reference_layers=(wards,))
    with make_service(tmp_path, settings) as svc:
        assert svc.upload("memphis", memphis_csv(shared_data)).status_code == 201
        r = svc.client.post("/forecasts", headers=svc.headers("analyst"), json={
            "dataset": "memphis", "model": "kde", "cell_size": CELL, "area": "3%"})
        assert r.status_code == 201, r.text
        forecast_id = r.json()["id"]
        cells = svc.client.get(f"/forecasts/{forecast_id}/geojson?area=3%25",
                               headers=svc.headers("viewer")).json()["features"]

        with serve_in_thread(svc.app) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                outside: list[str] = []
                ranges: list[tuple[str | None, int]] = []
                errors: list[str] = []

                def guard(route):
                    if route.request.url.startswith(base + "/"):
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                def record(response):
                    if response.url.endswith("/map/basemap.pmtiles"):
                        ranges.append((response.request.headers.get("range"), response.status))

                page.route("**/*", guard)
                page.on("response", record)
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto(base + "/")
                page.wait_for_selector("#login:not([hidden])")
                page.fill("#token", svc.tokens["viewer"])
                page.click("#login-form button[type=submit]")
                page.wait_for_selector(f"#map[data-forecast-id='{forecast_id}']", timeout=20000)
                page.wait_for_selector("#map[data-basemap='mvt'][data-references='wards']")
                page.wait_for_selector(".leaflet-tile-pane canvas.leaflet-tile", timeout=10000)
                page.wait_for_timeout(1000)  # protomaps-leaflet paints after a short delay

                # legend: readable numbers, the same breaks as the cells' expected events
                legend = page.inner_text("#legend")
                assert "Expected events per cell" in legend
                intensity = np.sort([f["properties"]["intensity"] for f in cells])[::-1]
                expected = []
                for share in (0.50, 0.20, 0.05, 0.01):
                    v = intensity[min(max(int(np.ceil(share * len(intensity))) - 1, 0),
                                      len(intensity) - 1)]
                    if v > 0 and (not expected or v > expected[-1]):
                        expected.append(v)
                shown = [float(b) for b in page.get_attribute(
                    "#map", "data-legend-breaks").split(",")]
                np.testing.assert_allclose(shown, expected, rtol=1e-6)
                numbers = re.findall(r"\d[\d,]*\.?\d*", legend)
                assert len(numbers) >= len(expected)
                for value in expected:  # each break appears rounded to 2-3 digits
                    assert any(abs(float(n.replace(",", "")) - value) <= 0.05 * value
                               for n in numbers), (value, legend)
                assert "region" in legend and "flagged" in legend
                # the scale bar shows metric and imperial lengths
                scale = page.locator(".leaflet-control-scale-line").all_inner_texts()
                assert len(scale) == 2 and re.match(r"\d+ k?m$", scale[0]), scale
                assert re.match(r"\d+ (mi|ft)$", scale[1]), scale

                # the archive's credit, as text only (its HTML link and image are dropped)
                credit = page.locator(".leaflet-control-attribution")
                assert credit.inner_text() == "\u00a9 placecast test tiles"
                assert credit.locator("a, img").count() == 0

                shot = tmp_path / "dashboard-context.png"
                page.screenshot(path=str(shot))
                if os.environ.get("PLACECAST_KEEP_SCREENSHOT"):
                    shutil.copy(shot, os.environ["PLACECAST_KEEP_SCREENSHOT"] + ".context.png")
                box = page.locator("#map").bounding_box()
            finally:
                browser.close()

    assert not errors, errors
    assert not outside, outside
    # the basemap came in byte ranges, with the token (a 401 would show as status 401)
    assert ranges and all(status == 206 for _, status in ranges), ranges
    assert all(r is not None and r.startswith("bytes=") for r, _ in ranges), ranges
    assert len(ranges) >= 2  # header + root directory, then tiles
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    crop = image[int(box["y"]):int(box["y"] + box["height"]),
                 int(box["x"]):int(box["x"] + box["width"])].reshape(-1, 3)

    def share(rgb, tolerance=3):
        return float((np.abs(crop - np.array(rgb)).max(axis=1) <= tolerance).mean())

    assert share(WATER_RGB) > 0.03, f"basemap water covers {share(WATER_RGB):.1%}"
    assert share((0xF8, 0xF9, 0xFA)) < 0.01  # the blank background is covered
    assert share((0x1D, 0x2B, 0x3A), tolerance=10) * len(crop) > 300  # region outline
    assert share((0x0B, 0x3F, 0xD0), tolerance=12) * len(crop) > 100  # flagged cells
