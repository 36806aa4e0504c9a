"""Exports: GeoPackage, shapefile, GeoParquet and the NIJ submission format."""

from __future__ import annotations

import zipfile

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from placecast.cli import app
from placecast.exceptions import ParameterError
from placecast.io import export_events, export_forecast, read_events
from placecast.io._export import hotspot_flags, nij_check
from placecast.pipeline import UnitSpec, build_units, run_forecast
from placecast.quantities import SQUARE_METRES_PER_UNIT
from placecast.store import open_store

SQFT = SQUARE_METRES_PER_UNIT["sqft"]
SQMI = SQUARE_METRES_PER_UNIT["sqmi"]


@pytest.fixture(scope="module")
def portland(shared_data):
    """Portland burglary, the NIJ grid (600 ft cells over the police districts), a forecast."""
    events = read_events(shared_data / "portland" / "burglary_2012-03_2017-05.csv",
                         crs="EPSG:2913")
    region = shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp"
    units = build_units(events, UnitSpec(kind="grid", cell_size=600 * 0.3048,
                                         region=str(region)))
    forecast = run_forecast(events, model="naive", at="2017-03-01", horizon="7d",
                            units=units)
    return events, forecast


def _by_unit(gdf):
    return gdf.set_index("unit_id").sort_index()


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp", "out.zip", "out.parquet"])
def test_forecast_exports_read_back(portland, tmp_path, name):
    _, forecast = portland
    path = export_forecast(forecast, tmp_path / name, hotspot_area="0.5sqmi")
    read = gpd.read_file(f"zip://{path}" if name.endswith(".zip") else path) \
        if not name.endswith(".parquet") else gpd.read_parquet(path)
    assert read.crs.to_epsg() == 2913
    assert len(read) == len(forecast.units)
    got = _by_unit(read)
    want = _by_unit(forecast.to_frame())
    np.testing.assert_allclose(got["intensity"].to_numpy(), want["intensity"].to_numpy())
    np.testing.assert_array_equal(got["rank"].to_numpy(), want["rank"].to_numpy())
    # geometry in the CRS's own units (feet): a 600 ft cell has an area of 360,000 sq ft
    assert shapely.area(read.geometry.to_numpy()) == pytest.approx(360_000.0)
    expected = forecast.units.to_geodataframe().set_index("unit_id").sort_index()
    # (shapefiles store rings clockwise: compare normalised polygons)
    assert shapely.equals_exact(shapely.normalize(got.geometry.to_numpy()),
                                shapely.normalize(expected.geometry.to_numpy()), 1e-6).all()
    assert int(got["hotspot"].sum()) == len(forecast.top_units(0.5 * SQMI))
    # only the finished file(s) are left behind
    leftovers = {p.name for p in tmp_path.iterdir()}
    if name == "out.shp":
        assert {"out.shp", "out.shx", "out.dbf", "out.prj"} <= leftovers
        assert not any(n.startswith(".") for n in leftovers)
    else:
        assert leftovers == {name}


def test_hotspots_are_the_top_cells_within_the_area(portland):
    _, forecast = portland
    flags = hotspot_flags(forecast, "0.4sqmi")
    # brute force: walk the cells by intensity (ties by index) while the area fits
    order = sorted(range(len(forecast.intensity)), key=lambda i: (-forecast.intensity[i], i))
    total, want = 0.0, np.zeros(len(order), dtype=int)
    for i in order:
        total += forecast.units.area[i]
        if total > 0.4 * SQMI * (1 + 1e-9):
            break
        want[i] = 1
    np.testing.assert_array_equal(flags, want)
    assert forecast.units.area[flags == 1].sum() <= 0.4 * SQMI
    assert flags.sum() == 30  # 0.4 sq mi = 11,151,360 sq ft = 30.98 cells of 360,000 sq ft


def test_nij_submission(portland, tmp_path):
    _, forecast = portland
    path = export_forecast(forecast, tmp_path / "PDX_BURG_1WK.zip", format="nij",
                           hotspot_area="0.26sqmi")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
    assert {"PDX_BURG_1WK.shp", "PDX_BURG_1WK.shx", "PDX_BURG_1WK.dbf",
            "PDX_BURG_1WK.prj"} <= names
    read = gpd.read_file(f"zip://{path}")
    assert read.crs.to_epsg() == 2913
    assert len(read) == len(forecast.units)  # every cell, flagged or not
    assert set(read["hotspot"].unique()) == {0, 1}
    assert pd.api.types.is_integer_dtype(read["hotspot"])
    flagged_sqft = shapely.area(read.geometry[read["hotspot"] == 1].to_numpy()).sum()
    assert flagged_sqft == pytest.approx(20 * 360_000)  # 0.26 sq mi holds 20.13 cells
    assert 0.25 * SQMI / SQFT <= flagged_sqft <= 0.26 * SQMI / SQFT
    # NIJ wants at least 0.25 sq mi: 19 whole 600 ft cells fall just short
    assert nij_check(forecast, hotspot_flags(forecast, "0.25sqmi"))


def test_nij_rules_are_enforced(portland, tmp_path):
    _, forecast = portland
    with pytest.raises(ParameterError, match="needs the hot-spot area"):
        export_forecast(forecast, tmp_path / "a.shp", format="nij")
    with pytest.raises(ParameterError, match="outside NIJ's 0.25-0.75 sq mi"):
        export_forecast(forecast, tmp_path / "a.shp", format="nij", hotspot_area="0.1sqmi")
    with pytest.raises(ParameterError, match="shapefile"):
        export_forecast(forecast, tmp_path / "a.gpkg", format="nij", hotspot_area="0.3sqmi")
    export_forecast(forecast, tmp_path / "ok.shp", format="nij", hotspot_area="0.3sqmi")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".shp") == ["ok.shp"]


def test_nij_rejects_cells_outside_the_allowed_sizes(portland):
    events, _ = portland
    units = build_units(events, UnitSpec(kind="grid", cell_size=1000 * 0.3048))
    forecast = run_forecast(events, model="naive", at="2017-03-01", horizon="7d",
                            units=units)
    problems = nij_check(forecast, hotspot_flags(forecast, "0.5sqmi"))
    assert any("62,500-360,000 sq ft" in p for p in problems)


def test_unknown_formats_are_parameter_errors(portland, tmp_path):
    _, forecast = portland
    with pytest.raises(ParameterError, match="cannot tell the export format"):
        export_forecast(forecast, tmp_path / "out.xlsx")
    with pytest.raises(ParameterError, match="unknown export format"):
        export_forecast(forecast, tmp_path / "out.gpkg", format="kml")
    assert list(tmp_path.iterdir()) == []


def test_events_export_round_trips_coordinates(portland, shared_data, tmp_path):
    events, _ = portland
    raw = pd.read_csv(shared_data / "portland" / "burglary_2012-03_2017-05.csv")
    for name in ("events.gpkg", "events.shp"):
        export_events(events, tmp_path / name)
        read = gpd.read_file(tmp_path / name)
        assert read.crs.to_epsg() == 2913 and len(read) == len(raw)
        np.testing.assert_allclose(read.geometry.x, raw["x_coordina"], atol=1e-6)
        np.testing.assert_allclose(read.geometry.y, raw["y_coordina"], atol=1e-6)
        assert str(pd.Timestamp(read["time"].iloc[0]).date()) == raw["occ_date"].iloc[0]
    with pytest.raises(ParameterError, match="forecasts"):
        export_events(events, tmp_path / "e.shp", format="nij")


def test_cli_export_from_the_store(portland, tmp_path):
    events, forecast = portland
    db = str(tmp_path / "p.duckdb")
    with open_store(db) as store:
        store.add_events("burglary", events)
        forecast_id = store.save_forecast(forecast, "week-1")
    runner = CliRunner()
    out = tmp_path / "sub.zip"
    result = runner.invoke(app, ["export", "--db", db, "--forecast", str(forecast_id),
                                 "--format", "nij", "--area", "0.3sqmi", "-o", str(out)])
    assert result.exit_code == 0, result.output
    read = gpd.read_file(f"zip://{out}")
    want = hotspot_flags(forecast, "0.3sqmi")
    got = _by_unit(read)["hotspot"]
    np.testing.assert_array_equal(
        got.loc[forecast.units.unit_id].to_numpy(), want)
    result = runner.invoke(app, ["export", "--db", db, "--forecast", "latest", "-o",
                                 str(tmp_path / "f.parquet")])
    assert result.exit_code == 0, result.output
    assert len(gpd.read_parquet(tmp_path / "f.parquet")) == len(forecast.units)
    result = runner.invoke(app, ["export", "--db", db, "--dataset", "burglary", "-o",
                                 str(tmp_path / "points.gpkg")])
    assert result.exit_code == 0 and len(gpd.read_file(tmp_path / "points.gpkg")) == 5364
    bad = runner.invoke(app, ["export", "--db", db, "--forecast", "x", "-o",
                              str(tmp_path / "n.gpkg")])
    assert bad.exit_code == 2 and "not a forecast id" in bad.output
    bad = runner.invoke(app, ["export", "--db", db, "--forecast", str(forecast_id),
                              "--format", "nij", "--area", "2sqmi", "-o",
                              str(tmp_path / "n.shp")])
    assert bad.exit_code == 2 and "0.25-0.75 sq mi" in " ".join(bad.output.split())
    assert not (tmp_path / "n.shp").exists()
