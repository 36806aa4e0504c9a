"""Map context for reports and the dashboard: PMTiles basemaps, reference layers, legend
numbers, and the backtest plot's labels (no browser needed here; see *_browser.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from placecast.exceptions import DataError, ParameterError
from placecast.report._maplayers import inline_basemap, read_basemap, read_reference_layer

from _helpers_basemap import write_pmtiles, write_reference_layer  # isort: skip

BOUNDS = (-122.84, 45.43, -122.47, 45.65)  # Portland, lon/lat


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return write_pmtiles(tmp_path_factory.mktemp("basemap") / "city.pmtiles", BOUNDS)


def test_read_basemap_describes_the_archive(archive):
    from pmtiles.reader import MmapSource, Reader

    info = read_basemap(archive)
    assert (info.tile_type, info.min_zoom, info.max_zoom) == ("mvt", 0, 12)
    assert info.n_bytes == archive.stat().st_size
    # bounds: the padded box the helper wrote, as the pmtiles reference reader sees them
    with archive.open("rb") as handle:
        header = Reader(MmapSource(handle)).header()
    assert info.bounds == pytest.approx((header["min_lon_e7"] / 1e7, header["min_lat_e7"] / 1e7,
                                         header["max_lon_e7"] / 1e7, header["max_lat_e7"] / 1e7))
    assert info.bounds[0] < BOUNDS[0] and info.bounds[3] > BOUNDS[3]
    raster = read_basemap(write_pmtiles(archive.with_name("r.pmtiles"), BOUNDS, raster=True,
                                        max_zoom=3))
    assert (raster.tile_type, raster.max_zoom) == ("png", 3)


def test_read_basemap_refuses_what_it_cannot_draw(archive, tmp_path):
    with pytest.raises(DataError, match="not found|cannot read"):
        read_basemap(tmp_path / "missing.pmtiles")
    text = tmp_path / "city.geojson"
    text.write_text('{"type": "FeatureCollection", "features": []}' + " " * 200)
    with pytest.raises(DataError, match="not a PMTiles archive"):
        read_basemap(text)
    old = tmp_path / "old.pmtiles"
    old.write_bytes(b"PM\x02" + bytes(200))
    with pytest.raises(DataError, match="version 2.*pmtiles convert"):
        read_basemap(old)
    cut = tmp_path / "cut.pmtiles"
    cut.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_basemap(cut)
    mlt = tmp_path / "mlt.pmtiles"
    data = bytearray(archive.read_bytes())
    data[99] = 6  # tile type byte: MapLibre tiles
    mlt.write_bytes(bytes(data))
    with pytest.raises(DataError, match="MapLibre"):
        read_basemap(mlt)


def test_inline_basemap_round_trips_and_refuses_large_files(archive):
    import base64

    info = read_basemap(archive)
    assert base64.b64decode(inline_basemap(info)) == archive.read_bytes()
    with pytest.raises(ParameterError, match=r"0\.0 MB.*pmtiles extract"):
        inline_basemap(info, max_bytes=info.n_bytes - 1)


def test_reference_layer_is_reprojected_to_wgs84(tmp_path):
    path = write_reference_layer(tmp_path / "districts.gpkg", BOUNDS, crs="EPSG:2913")
    layer = read_reference_layer(path)
    assert (layer.name, layer.n_features, layer.n_without_geometry) == ("districts", 3, 0)
    west = np.array(layer.geojson["features"][0]["geometry"]["coordinates"][0])
    # the box written in lon/lat came back through Oregon North (ft) to lon/lat
    assert west[:, 0].min() == pytest.approx(BOUNDS[0], abs=1e-6)
    assert west[:, 1].max() == pytest.approx(BOUNDS[3], abs=1e-6)
    street = layer.geojson["features"][2]["geometry"]
    assert street["type"] == "LineString"
    assert street["coordinates"][1] == pytest.approx([BOUNDS[2], (BOUNDS[1] + BOUNDS[3]) / 2],
                                                     abs=1e-6)


def test_reference_layer_errors(tmp_path):
    import geopandas as gpd
    import shapely

    nocrs = tmp_path / "nocrs.shp"
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"a": [1]}, geometry=[shapely.Point(1, 2)]).to_file(nocrs)
    with pytest.raises(DataError, match="no CRS"):
        read_reference_layer(nocrs)
    bad = tmp_path / "bad.gpkg"
    bad.write_text("nonsense")
    with pytest.raises(DataError, match="cannot read it as a vector file"):
        read_reference_layer(bad)
    many = tmp_path / "many.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.Point(i, 0) for i in range(5)], crs=4326).to_file(many)
    with pytest.raises(DataError, match="at most 4"):
        read_reference_layer(many, max_features=4)


def test_backtest_plot_keeps_every_label_inside_the_figure(shared_data):
    """The "forecast origin" axis title was clipped below the figure (rotated dates)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from placecast.report._plots import _pai_figure

    from _helpers_report import portland_backtest  # isort: skip

    fig = _pai_figure(portland_backtest(shared_data))
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    assert ax.xaxis.label.get_text() == "forecast origin"
    label = ax.xaxis.label.get_window_extent(renderer)
    assert label.y0 >= 0 and label.x0 >= 0 and label.x1 <= fig.bbox.x1
    # everything drawn (tick labels, the date offset, the legend) fits in the figure
    drawn = fig.get_tightbbox(renderer)  # inches
    width, height = fig.get_size_inches()
    assert drawn.x0 >= 0 and drawn.y0 >= 0, drawn
    assert drawn.x1 <= width and drawn.y1 <= height, drawn


def test_report_legend_uses_rounded_numbers(shared_data, archive, tmp_path):
    from placecast.report import build_report

    from _helpers_report import BUDGET, portland  # isort: skip

    events, _, forecast = portland(shared_data)
    reference = write_reference_layer(tmp_path / "districts.gpkg", BOUNDS)
    html = build_report(forecast, events=events, area=BUDGET, basemap=archive,
                        reference_layers=[reference])
    legend = re.search(r'<ul class="legend">(.*?)</ul>', html, re.S).group(1)
    labels = re.findall(r"</span>\s*([^<]*?)\s*<span class=\"note\">\(([\d,]+) units", legend)
    numbers = [float(n.replace(",", "")) for text, _ in labels
               for n in re.findall(r"[\d,]*\.?\d+", text)]
    assert len(labels) >= 5 and "or more" in labels[0][0] and labels[-1][0].startswith("below")
    # two significant digits (more only to tell neighbours apart), all in expected events
    assert all(len(re.sub(r"^0\.0*|\.|,", "", f"{n:g}").rstrip("0")) <= 3 for n in numbers)
    # counts add up to every unit drawn
    assert sum(int(n.replace(",", "")) for _, n in labels) == len(forecast.units)
    assert "districts" in legend and 'id="placecast-basemap"' in html
    assert f"{archive.stat().st_size / 1e6:.1f} MB" in html
    with pytest.raises(ParameterError, match="max_basemap_bytes"):
        build_report(forecast, events=events, area=BUDGET, basemap=archive,
                     max_basemap_bytes=100)


def test_cli_report_with_basemap_and_reference(shared_data, archive, tmp_path):
    from typer.testing import CliRunner

    from placecast.cli import app

    folder = shared_data / "portland"
    csv = folder / "burglary_2012-03_2017-05.csv"
    reference = write_reference_layer(tmp_path / "districts.gpkg", BOUNDS)
    args = ["report", str(csv), "--crs", "EPSG:2913", "--at", "2017-03-01", "--cell",
            "1000ft", "--model", "naive", "--area", "1%", "--reference", str(reference)]
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, [*args, "--basemap", str(archive), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "basemap city.pmtiles inlined: 0.0 MB" in result.output
    html = out.read_text()
    assert 'id="placecast-basemap"' in html and "districts" in html
    # too large: refused before any forecast work, exit status 2, nothing written
    big = tmp_path / "big.html"
    result = CliRunner().invoke(app, [*args, "--basemap", str(archive), "--max-basemap-mb",
                                      "0.001", "-o", str(big)])
    assert result.exit_code == 2
    assert "--max-basemap-mb" in result.output and "pmtiles extract" in result.output
    assert not big.exists()
    bad = tmp_path / "notes.pmtiles"
    bad.write_text("hello")
    result = CliRunner().invoke(app, [*args, "--basemap", str(bad), "-o", str(big)])
    assert result.exit_code == 2 and "not a PMTiles archive" in result.output
