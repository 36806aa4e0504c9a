"""The Portland demo report in a real headless Chromium: offline, no errors, a drawn map."""

from __future__ import annotations

import dataclasses
import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely

from placecast.events import Events
from placecast.pipeline import UnitSpec, build_units, run_forecast
from placecast.report import write_report

from _helpers_report import BUDGET, portland, portland_backtest  # isort: skip

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        # no host name resolves: whatever the page asked for could not leave the machine
        "--host-resolver-rules=MAP * ~NOTFOUND"]
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
    """Load ``path``, recording every request the page makes and every console error.

    (Routing every request through Playwright would block them too, but costs seconds on
    a 1 MB page; the browser is launched with no working name resolution instead.)
    """
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    errors: list[str] = []
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
            # negative control: a request to the network is seen by the recorder
            page.evaluate("fetch('http://tiles.example.org/1/2/3.png').catch(() => 0)")
            page.wait_for_timeout(200)
            assert "http://tiles.example.org/1/2/3.png" in requests
        else:
            assert page.locator("#backtest table").count() == 2  # summary and paired tests
            widths = page.eval_on_selector_all(
                "figure img", "imgs => imgs.map(i => i.naturalWidth)")
            assert len(widths) == 2 and min(widths) > 100  # both SVG plots decoded
            _check_map_is_drawn(page.locator("#map").screenshot())
    finally:
        page.close()


def _check_map_is_drawn(png: bytes) -> None:
    """The map screenshot is not blank: the region is filled with the colour classes."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3).astype(int)
    off_background = np.abs(pixels - BACKGROUND).sum(axis=1) > 12
    assert off_background.mean() > 0.25  # the region fills a good part of the map
    assert len(np.unique(pixels @ np.array([65536, 256, 1]))) > 50  # distinct colours
    # the colour classes are really drawn: blended ramp colours found in the image
    found = 0
    for colour in RAMP:
        rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])
        blended = 0.85 * rgb + 0.15 * BACKGROUND
        if (np.abs(pixels - blended).max(axis=1) <= 3).sum() >= 20:
            found += 1
    assert found >= 6


def test_polygon_units_on_a_local_grid_with_layers(browser, tmp_path):
    """The other code paths of the page: plain polygons, local metres, clusters, hot spots."""
    rng = np.random.default_rng(5)
    xy = np.vstack([rng.normal(300, 50, size=(150, 2)), rng.uniform(0, 1000, size=(150, 2))])
    times = np.datetime64("2020-01-01") + rng.integers(0, 90 * 86400, 300).astype(
        "timedelta64[s]")
    events = Events.from_arrays(times, np.clip(xy[:, 0], 1, 999), np.clip(xy[:, 1], 1, 999),
                                crs="local:m")
    units = build_units(events, UnitSpec(cell_size=100.0))
    units = dataclasses.replace(units, grid=None, grid_cells=None)  # as if polygons
    forecast = run_forecast(events, model="naive", at="2020-03-01", horizon="14d", units=units)
    clusters = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"id": 1, "observed": 30, "expected": 9.5,
                                          "p_value": 0.002},
        "geometry": shapely.geometry.mapping(shapely.Point(300, 300).buffer(120))}]}
    hotspots = pd.DataFrame({"unit_id": units.unit_id[:40], "category": "new"})
    path = write_report(tmp_path / "local.html", forecast, events=events, area="5%",
                        clusters=clusters, hotspots=hotspots)
    page, requests, errors = _open(browser, path)
    try:
        page.get_by_label("Emerging hot spots").check()
        box = page.locator("#map").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        popup = page.locator(".leaflet-popup-content")
        popup.wait_for(timeout=5_000)
        text = popup.inner_text()
        assert errors == []
        assert [u for u in requests if not u.startswith(("file://", "data:"))] == []
        assert "expected" in text
        assert page.locator("#clusters td").first.inner_text() == "1"
    finally:
        page.close()


# ---------------------------------------------------------------------- map context
@pytest.fixture(scope="module")
def context_files(shared_data, tmp_path_factory):
    from _helpers_basemap import lonlat_bounds, write_pmtiles, write_reference_layer

    folder = tmp_path_factory.mktemp("context")
    bounds = lonlat_bounds(shared_data, "portland/police_districts/"
                                        "Portland_Police_Districts.shp")
    return {"vector": write_pmtiles(folder / "city.pmtiles", bounds),
            "raster": write_pmtiles(folder / "raster.pmtiles", bounds, raster=True),
            "reference": write_reference_layer(folder / "districts.gpkg", bounds)}


def _share_of(pixels: np.ndarray, rgb, tolerance: int = 3) -> float:
    return float((np.abs(pixels - np.array(rgb)).max(axis=1) <= tolerance).mean())


@pytest.mark.parametrize("kind", ["vector", "raster"])
def test_report_with_basemap_and_reference(browser, shared_data, context_files, tmp_path,
                                           kind):
    """The inlined PMTiles basemap is drawn (its colour fills the map outside the region),
    the flagged units are drawn on top in blue, the legend reads in numbers, nothing leaves."""
    from PIL import Image

    from _helpers_basemap import RASTER_RGB, WATER_RGB

    events, _, forecast = portland(shared_data)
    path = write_report(tmp_path / "report.html", forecast, events=events, area=BUDGET,
                        basemap=context_files[kind],
                        reference_layers=[context_files["reference"]])
    size = context_files[kind].stat().st_size
    page, requests, errors = _open(browser, path)
    try:
        assert page.get_attribute("html", "data-basemap") == ("mvt" if kind == "vector"
                                                              else "png")
        # protomaps-leaflet draws canvas tiles; the raster layer draws <img> tiles
        tile = ("canvas" if kind == "vector" else "img") + ".leaflet-tile"
        page.wait_for_selector(f".leaflet-tile-pane {tile}", timeout=10_000)
        page.wait_for_timeout(800)  # protomaps-leaflet paints its tiles after a short delay
        note = page.locator("#basemap-note").inner_text()
        assert f"{size / 1e6:.1f} MB" in note and "inlined" in note
        credit = page.locator(".leaflet-control-attribution")
        assert credit.inner_text() == "\u00a9 placecast test tiles"  # as text, no HTML
        assert credit.locator("a, img").count() == 0
        legend = page.locator(".legend").inner_text()
        assert "or more" in legend and "below" in legend and "districts" in legend
        png = page.locator("#map").screenshot()
        if os.environ.get("PLACECAST_KEEP_SCREENSHOT"):
            Path(f"{os.environ['PLACECAST_KEEP_SCREENSHOT']}.{kind}.png").write_bytes(png)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
        pixels = pixels.astype(int)
        basemap_share = _share_of(pixels, WATER_RGB if kind == "vector" else RASTER_RGB)
        assert basemap_share > 0.05, f"basemap colour covers only {basemap_share:.1%}"
        assert _share_of(pixels, BACKGROUND) < 0.01  # no blank background left
        flagged_blue = _share_of(pixels, (0x0B, 0x3F, 0xD0), tolerance=12) * len(pixels)
        assert flagged_blue > 200  # the flagged outlines, drawn on top of everything
        assert errors == []
        outside = [u for u in requests if not u.startswith(("file://", "data:", "blob:"))]
        assert outside == []
    finally:
        page.close()
