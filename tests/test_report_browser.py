"""The Portland demo report in a real headless Chromium: offline, no errors, a drawn map."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest

from placecast.report import write_report

from _helpers_report import BUDGET, portland, portland_backtest  # isort: skip

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
#: Leaflet draws the cells with fillOpacity 0.85 over the map background.
BACKGROUND = np.array([0xEE, 0xF1, 0xF5])
RAMP = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c", "#b10026")


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = f"headless Chromium not found at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + "; CI installs it")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (pip install playwright)")
        pytest.skip("playwright is not installed")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def reports(shared_data, tmp_path_factory):
    events, _, forecast = portland(shared_data)
    folder = tmp_path_factory.mktemp("reports")
    private = write_report(folder / "report.html", forecast, events=events, area=BUDGET,
                           backtest=portland_backtest(shared_data))
    public = write_report(folder / "public.html", forecast, events=events, area=BUDGET,
                          public=True)
    return {"private": private, "public": public}


def _open(browser, path: Path):
    """Load ``path``, block and record every request that is not file: or data:."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []

    def route(r):
        url = r.request.url
        requests.append(url)
        if url.startswith(("file://", "data:")):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-map-ready]", timeout=20_000)
    return page, requests, errors


@pytest.mark.parametrize("kind", ["private", "public"])
def test_report_opens_offline_without_errors(browser, reports, kind):
    page, requests, errors = _open(browser, reports[kind])
    try:
        outside = [u for u in requests if not u.startswith(("file://", "data:"))]
        assert outside == []
        assert reports[kind].as_uri() in requests
        assert errors == []
        assert page.locator(".leaflet-overlay-pane canvas").count() >= 1
        assert page.locator("img.leaflet-tile").count() == 0  # no basemap tiles
        assert page.locator("#basemap-note").inner_text().startswith("No basemap tiles")
        if kind == "public":
            assert page.locator("#public-notice").is_visible()
        else:
            assert page.locator("#backtest table").count() == 2  # summary and paired tests
            widths = page.eval_on_selector_all(
                "figure img", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) == 2 and min(widths) > 100  # both SVG plots decoded
    finally:
        page.close()


def test_map_screenshot_is_not_blank(browser, reports):
    from PIL import Image

    page, _, _ = _open(browser, reports["private"])
    try:
        png = page.locator("#map").screenshot()
    finally:
        page.close()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    off_background = np.abs(pixels - BACKGROUND).sum(axis=1) > 12
    assert off_background.mean() > 0.25  # the region fills a good part of the map
    assert len(np.unique(pixels, axis=0)) > 50
    # the colour classes are really drawn: blended ramp colours found in the image
    found = 0
    for colour in RAMP:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        blended = 0.85 * rgb + 0.15 * BACKGROUND
        if (np.abs(pixels - blended).max(axis=1) <= 3).sum() >= 20:
            found += 1
    assert found >= 6
