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
