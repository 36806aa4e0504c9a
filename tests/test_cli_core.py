"""The command line: inspect, forecast, demo; exit status 2 and no output on bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
from typer.testing import CliRunner

from placecast.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def portland_args(shared_data: Path) -> list[str]:
    return [str(shared_data / "portland" / "burglary_2012-03_2017-05.csv"), "--crs", "EPSG:2913"]


@pytest.fixture(scope="module")
def region(shared_data: Path) -> str:
    return str(shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp")


def test_inspect_reports_columns_and_span(portland_args: list[str]) -> None:
    result = runner.invoke(app, ["inspect", *portland_args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["summary"]["n_events"] == 5364
    assert payload["read"]["columns"] == {"time": "occ_date", "x": "x_coordina",
                                          "y": "y_coordina"}
    table = runner.invoke(app, ["inspect", *portland_args])
    assert "5,364" in table.stdout and "EPSG:2913" in table.stdout


@pytest.mark.parametrize("suffix", [".csv", ".geojson", ".gpkg", ".parquet"])
def test_forecast_writes_each_format(tmp_path: Path, portland_args: list[str], region: str,
                                     suffix: str) -> None:
    out = tmp_path / f"forecast{suffix}"
    result = runner.invoke(app, ["forecast", *portland_args, "--model", "kde", "--cell",
                                 "600ft", "--at", "2017-03-01", "--horizon", "7d",
                                 "--region", region, "-o", str(out)])
    assert result.exit_code == 0, result.output
    if suffix == ".csv":
        frame = pd.read_csv(out)
        assert list(frame.columns) == ["unit_id", "geometry", "intensity", "rank"]
        assert frame["rank"].tolist() == list(range(1, len(frame) + 1))
        assert frame["geometry"].iloc[0].startswith("POLYGON ((76")  # feet, EPSG:2913
        assert len(frame) == 11985
    else:
        gdf = gpd.read_parquet(out) if suffix == ".parquet" else gpd.read_file(out)
        assert sorted(gdf.columns) == ["geometry", "intensity", "rank", "unit_id"]
        expected_crs = 4326 if suffix == ".geojson" else 2913
        assert gdf.crs.to_epsg() == expected_crs
        if suffix == ".geojson":
            lon, lat = gdf.geometry.iloc[0].centroid.coords[0]
            assert -123 < lon < -122 and 45 < lat < 46


def test_forecast_hex_and_polygon_units(tmp_path: Path, portland_args: list[str],
                                        region: str) -> None:
    out = tmp_path / "hex.csv"
    result = runner.invoke(app, ["forecast", *portland_args, "--units", "hex", "--cell", "0.5km",
                                 "--at", "2017-03-01", "--region", region, "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) > 500
    out = tmp_path / "districts.csv"
    result = runner.invoke(app, ["forecast", *portland_args, "--units", "polygons",
                                 "--units-file", region, "--units-id", "DISTRICT", "--model",
                                 "naive", "--at", "2017-03-01", "-o", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame["intensity"].sum() > 0 and len(frame) >= 20


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--model", "magic"], "unknown model 'magic'"),
        (["--cell", "600parsecs"], "unknown unit 'parsecs'"),
        (["--at", "2017-02-30"], "not a date"),
        (["--model", "kde", "--at", "1990-01-01"], "no events in the 365 days before"),
        (["--at", "1990-01-01"], "no events before the forecast start"),
        (["--param", "bandwidth"], "must look like name=value"),
        (["--region", "/no/such/region.shp"], "no such region file"),
    ],
)
def test_forecast_bad_options_exit_2_without_output(tmp_path: Path, portland_args: list[str],
                                                    extra: list[str], pattern: str) -> None:
    out = tmp_path / "forecast.csv"
    args = ["forecast", *portland_args, "--at", "2017-03-01", "--cell", "600ft", "-o", str(out)]
    # later options override earlier ones
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 2, result.output
    assert pattern in " ".join(result.stderr.split())
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_file_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "events.csv"
    bad.write_text("date,X,Y\n2016-01-01,350001,578002\n2016-01-02,abc,578002\n")
    result = runner.invoke(app, ["inspect", str(bad), "--crs", "EPSG:26971"])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert "events.csv row 3, column 'X': 'abc' is not a number" in message
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["inspect", str(bad), "--crs", "EPSG:26971",
                                 "--skip-bad-rows", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["read"]["dropped"] == {"is not a number": 1}


def test_demo_writes_outputs_and_scores(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--output-dir", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["n_events_in_window"] == 20
    assert summary["flagged_units"] == 19
    assert summary["pai"] > 5
    assert (tmp_path / "demo" / "forecast.csv").exists()
    assert (tmp_path / "demo" / "forecast.geojson").exists()
    html = (tmp_path / "demo" / "report.html").read_text()
    assert "leaflet" in html.lower()
    # nothing loaded from elsewhere (the browser test checks the requests themselves)
    assert not re.search(r"""<(script|link|img|iframe)[^>]+(src|href)\s*=\s*["']?(https?:)?//""",
                         html)


def test_forecast_saved_in_store(tmp_path: Path, portland_args: list[str], region: str) -> None:
    from placecast.store import open_store

    db = tmp_path / "pc.duckdb"
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["forecast", *portland_args, "--at", "2017-03-01", "--cell",
                                 "600ft", "--region", region, "-o", str(out), "--save",
                                 "weekly", "--db", str(db)])
    assert result.exit_code == 0, result.output
    store = open_store(db)
    try:
        saved = store.list_forecasts()
        assert len(saved) == 1
        assert saved[0].name == "weekly"
        forecast = store.load_forecast(saved[0].id)
    finally:
        store.close()
    frame = pd.read_csv(out)
    assert forecast.expected_total == pytest.approx(frame["intensity"].sum())
