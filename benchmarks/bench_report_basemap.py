"""What an inlined PMTiles basemap costs a report: build time, file size, time to draw.

Forecasts the Portland burglaries (kde, 600 ft cells, as the demo) once, then writes the
report without a basemap (the baseline) and with raster basemaps of about 1, 10 and 28 MB
(random-noise PNG tiles over Portland, so they do not compress), and prints for each: the
build time, the HTML size, and - when headless Chromium and playwright are installed - the
time from opening the file to the page's map being ready and the first basemap tile drawn.

    PYTHONPATH=src:tests python benchmarks/bench_report_basemap.py
"""

from __future__ import annotations

import io
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CHROMIUM = Path("/usr/bin/chromium")
TILE_BYTES = 256 * 256 * 3  # a noise PNG is about this large


def _noise_archive(path: Path, bounds: tuple[float, ...], n_bytes: int) -> Path:
    """A raster PMTiles archive over ``bounds`` with about ``n_bytes`` of noise tiles."""
    from PIL import Image
    from pmtiles.tile import Compression, TileType, zxy_to_tileid
    from pmtiles.writer import write

    from _helpers_basemap import _tile_range

    rng = np.random.default_rng(0)
    n_noise = max(1, n_bytes // TILE_BYTES)
    plain = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 200, 200)).save(plain, format="PNG")
    tiles = []
    for z in range(15):
        xs, ys = _tile_range(bounds, z)
        tiles += [(zxy_to_tileid(z, x, y)) for x in xs for y in ys]
    with write(path) as writer:
        # the deepest tiles get the noise: those are what a city view shows
        for i, tile_id in enumerate(sorted(tiles)):
            if len(tiles) - i <= n_noise:
                buffer = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(
                    buffer, format="PNG")
                writer.write_tile(tile_id, buffer.getvalue())
            else:
                writer.write_tile(tile_id, plain.getvalue())
        e7 = [round(v * 1e7) for v in bounds]
        writer.finalize({"tile_type": TileType.PNG, "tile_compression": Compression.NONE,
                         "min_lon_e7": e7[0], "min_lat_e7": e7[1], "max_lon_e7": e7[2],
                         "max_lat_e7": e7[3], "center_zoom": 12}, {"name": "noise"})
    return path


def _open_seconds(browser, path: Path, has_basemap: bool) -> tuple[float, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    start = time.perf_counter()
    page.goto(path.as_uri())
    page.wait_for_selector("html[data-map-ready]", timeout=120_000)
    ready = time.perf_counter() - start
    tile = float("nan")
    if has_basemap:
        page.wait_for_selector(".leaflet-tile-pane img.leaflet-tile-loaded", timeout=120_000)
        tile = time.perf_counter() - start
    page.close()
    return ready, tile


def main() -> None:
    from _helpers_basemap import lonlat_bounds
    from _helpers_report import BUDGET, portland
    from placecast.report import write_report

    data = ROOT.parent / "shared" / "data"
    events, _, forecast = portland(data)
    bounds = lonlat_bounds(data, "portland/police_districts/Portland_Police_Districts.shp")
    pad = 0.2
    dx, dy = (bounds[2] - bounds[0]) * pad, (bounds[3] - bounds[1]) * pad
    box = (bounds[0] - dx, bounds[1] - dy, bounds[2] + dx, bounds[3] + dy)
    browser = playwright = None
    if CHROMIUM.exists():
        try:
            from playwright.sync_api import sync_playwright

            playwright = sync_playwright().start()
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True,
                args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"])
        except ImportError:
            pass
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        # warm-up (imports, template, inlined assets), not timed
        write_report(folder / "warm.html", forecast, events=events, area=BUDGET)
        for target_mb in (0, 1, 10, 28):
            basemap = None
            if target_mb:
                basemap = _noise_archive(folder / f"noise{target_mb}.pmtiles", box,
                                         target_mb * 1_000_000)
            start = time.perf_counter()
            out = write_report(folder / f"r{target_mb}.html", forecast, events=events,
                               area=BUDGET, basemap=basemap)
            build = time.perf_counter() - start
            ready = tile = math.nan
            if browser is not None:
                ready, tile = _open_seconds(browser, out, basemap is not None)
            rows.append((basemap.stat().st_size / 1e6 if basemap else 0.0,
                         out.stat().st_size / 1e6, build, ready, tile))
    if browser is not None:
        browser.close()
        playwright.stop()
    print(f"{'basemap MB':>10} {'HTML MB':>8} {'build s':>8} {'map ready s':>12} "
          f"{'first tile s':>13}")
    for basemap_mb, html_mb, build, ready, tile in rows:
        print(f"{basemap_mb:10.1f} {html_mb:8.1f} {build:8.2f} {ready:12.2f} {tile:13.2f}")
    print("first row: no basemap (baseline); times from one run, on this machine")


if __name__ == "__main__":
    main()
