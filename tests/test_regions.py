"""Regions: partitioned GeoParquet events and one task per region (serial or Dask)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import shapely
from typer.testing import CliRunner

from placecast.cli import app
from placecast.evaluate import run_backtest
from placecast.exceptions import DataError
from placecast.io import read_events
from placecast.pipeline import UnitSpec, run_forecast
from placecast.regions import (
    partition_info,
    read_partition,
    regions_from_labels,
    regions_from_polygons,
    run_by_region,
    split_events,
    write_partitioned,
)
from placecast.units import default_region, square_grid

runner = CliRunner()
CELL = 1500 * 0.3048  # 1500 ft in metres
BACKTEST = dict(models=["naive", "kde"], start="2016-09-01", end="2016-09-29", step="14d",
                horizons=["7d"], area="2%")


@pytest.fixture(scope="module")
def portland(shared_data, tmp_path_factory):
    """Portland burglaries inside the police districts, with their precinct as a column.

    The precinct of each event is found here with shapely point-in-polygon tests, apart
    from the code under test; the precinct polygons are written to a GeoPackage.
    """
    import geopandas as gpd

    folder = tmp_path_factory.mktemp("portland_regions")
    districts = gpd.read_file(shared_data / "portland" / "police_districts"
                              / "Portland_Police_Districts.shp")
    precincts = districts.dissolve("PRECINCT").reset_index()[["PRECINCT", "geometry"]]
    precincts.to_file(folder / "precincts.gpkg")
    precincts.drop(columns="PRECINCT").assign(name="x").to_file(folder / "no_id.gpkg")
    precincts.iloc[:-1].to_file(folder / "missing_one.gpkg")  # its events lie in no region
    raw = pd.read_csv(shared_data / "portland" / "burglary_2012-03_2017-05.csv")
    raw = raw[raw.occ_date >= "2016-01-01"]
    points = shapely.points(raw.x_coordina.to_numpy(float), raw.y_coordina.to_numpy(float))
    inside = np.zeros((len(raw), len(precincts)), dtype=bool)
    for j, polygon in enumerate(precincts.geometry):
        inside[:, j] = shapely.contains(polygon, points)
    assert (inside.sum(axis=1) <= 1).all()
    keep = inside.any(axis=1)
    raw = raw[keep].assign(precinct=precincts.PRECINCT.to_numpy()[inside[keep].argmax(axis=1)])
    csv = folder / "burglary_precincts.csv"
    raw[["occ_date", "x_coordina", "y_coordina", "precinct"]].to_csv(csv, index=False)
    events = read_events(csv, crs="EPSG:2913")
    return {"csv": csv, "districts": shared_data / "portland" / "police_districts"
            / "Portland_Police_Districts.shp", "missing_one": folder / "missing_one.gpkg",
            "events": events,
            "labels": raw.precinct.to_numpy(dtype=object),
            "polygons": folder / "precincts.gpkg", "no_id": folder / "no_id.gpkg"}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True,
        local_directory=str(tmp_path_factory.mktemp("dask")))
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


def _alone(events, labels, region):
    """One region on its own: its events, units over its hull, nothing from this module."""
    mine = events.select(labels == region)
    units = square_grid(default_region(mine, CELL), CELL, mine.spatial_reference)
    return mine, units


def test_partitioned_write_read_round_trips(portland, tmp_path):
    events, labels = portland["events"], portland["labels"]
    info = write_partitioned(events, labels, tmp_path / "parts")
    assert info.counts == dict(zip(*np.unique(labels, return_counts=True), strict=True))
    for region in info.names:
        back, want = read_partition(tmp_path / "parts", region), events.select(labels == region)
        np.testing.assert_array_equal(back.time, want.time)
        np.testing.assert_array_equal(back.x, want.x)
        np.testing.assert_array_equal(back.y, want.y)
        assert back.spatial_reference == events.spatial_reference
    # each file is GeoParquet: WKB points in the CRS's own units (feet here)
    first = next((tmp_path / "parts").glob("region=*/part-*.parquet"))
    geo = json.loads(pq.read_schema(first).metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["crs"]["id"] \
        == {"authority": "EPSG", "code": 2913}
    table = pq.read_table(first)
    wkb = shapely.from_wkb(table.column("geometry").to_numpy(zero_copy_only=False))
    np.testing.assert_allclose(shapely.get_x(wkb) * 0.3048, table.column("x").to_numpy())
    # only the region's own files are read: break another region's file
    regions = list(info.names)
    broken = next((tmp_path / "parts").glob(f"region={regions[0]}/part-*.parquet"))
    broken.write_bytes(b"not parquet")
    assert len(read_partition(tmp_path / "parts", regions[1])) == info.counts[regions[1]]
    with pytest.raises(DataError, match="no region 'Nowhere'"):
        read_partition(tmp_path / "parts", "Nowhere")


def test_polygons_give_the_same_regions_as_point_in_polygon(portland):
    split = regions_from_polygons(portland["events"], portland["polygons"],
                                  id_column="PRECINCT")
    np.testing.assert_array_equal(split.labels, portland["labels"])
    # the 60 districts, several per precinct: each precinct is the union of its districts
    districts = regions_from_polygons(portland["events"], portland["districts"],
                                      id_column="PRECINCT")
    np.testing.assert_array_equal(districts.labels, portland["labels"])
    assert districts.counts == split.counts
    with pytest.raises(DataError, match="no column 'PRECINCT'"):
        regions_from_polygons(portland["events"], portland["no_id"], id_column="PRECINCT")
    with pytest.raises(DataError, match="have no value"):
        regions_from_labels(np.array(["a", "", None], dtype=object))


def test_dask_regions_equal_each_region_alone(portland, client, tmp_path):
    events, labels = portland["events"], portland["labels"]
    write_partitioned(events, labels, tmp_path / "parts")
    spec = UnitSpec(cell_size=CELL)
    backtests = run_by_region("backtest", tmp_path / "parts", params=BACKTEST, unit_spec=spec,
                              dask=client)
    forecasts = run_by_region("forecast", tmp_path / "parts", unit_spec=spec, dask=client,
                              params=dict(model="kde", at="2016-10-01", horizon="7d"))
    assert sorted(backtests.region.unique()) == sorted(set(labels)) == \
        sorted(forecasts.region.unique())
    for region in sorted(set(labels)):
        mine, units = _alone(events, labels, region)
        params = dict(BACKTEST)
        alone = run_backtest(mine, units, area=params.pop("area"), **params).to_frame()
        got = backtests[backtests.region == region].drop(columns="region")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone)
        forecast = run_forecast(mine, model="kde", at="2016-10-01", horizon="7d", units=units)
        got = forecasts[forecasts.region == region].drop(columns="region")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), forecast.to_frame())
    # the same regions in this process, from memory, give the same tables
    serial = run_by_region("backtest", split_events(events, regions_from_labels(labels)),
                           params=BACKTEST, unit_spec=spec)
    pd.testing.assert_frame_equal(serial, backtests)


def test_dask_scan_equals_each_region_alone(portland, client, tmp_path):
    from placecast.clusters import SpaceTimeScan, scan_data_from_events

    events, labels = portland["events"], portland["labels"]
    write_partitioned(events, labels, tmp_path / "parts")
    settings = dict(n_permutations=49, random_state=3, max_intervals=7, n_jobs=1)
    table = run_by_region("scan", tmp_path / "parts", dask=client,
                          params=dict(at="2016-12-01", n_intervals=60, round_to=100.0,
                                      scan=settings))
    for region in sorted(set(labels)):
        mine = events.select(labels == region)
        data = scan_data_from_events(mine, at="2016-12-01", n_intervals=60, round_to=100.0)
        alone = SpaceTimeScan(**settings).run(data).to_frame()
        got = table[table.region == region].drop(columns="region").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone)


def test_cli_backtest_and_forecast_by_region(portland, client, tmp_path):
    base = ["--crs", "EPSG:2913", "--cell", "1500ft"]
    out = tmp_path / "by_column.csv"
    result = runner.invoke(app, ["backtest", str(portland["csv"]), *base, "--models",
                                 "naive,kde", "--start", "2016-09-01", "--end", "2016-09-29",
                                 "--step", "14d", "--area", "2%", "--by", "precinct",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    by_column = pd.read_csv(out)
    # polygons instead of the column, on the Dask cluster: same regions, same events
    out_dask = tmp_path / "by_polygons.csv"
    result = runner.invoke(app, ["backtest", str(portland["csv"]), *base, "--models",
                                 "naive,kde", "--start", "2016-09-01", "--end", "2016-09-29",
                                 "--step", "14d", "--area", "2%", "--by",
                                 str(portland["polygons"]), "--by-id", "PRECINCT", "--dask",
                                 client.scheduler.address, "-o", str(out_dask)])
    assert result.exit_code == 0, result.output
    by_polygons = pd.read_csv(out_dask)
    assert not list(tmp_path.glob(".*regions"))  # the temporary partitions are removed
    assert sorted(by_column.region.unique()) == sorted(set(portland["labels"]))
    # same events per region; the units differ (hull vs precinct polygon), so compare counts
    pd.testing.assert_series_equal(by_column.n_events, by_polygons.n_events)
    # a partitioned folder as input, each region read from disk
    parts = tmp_path / "parts"
    result = runner.invoke(app, ["partition", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--by", "precinct", "-o", str(parts)])
    assert result.exit_code == 0, result.output
    assert partition_info(parts).column == "region"
    forecast_out = tmp_path / "forecasts.parquet"
    result = runner.invoke(app, ["forecast", str(parts), "--cell", "1500ft", "--at",
                                 "2016-10-01", "--model", "kde", "--by", "region", "-o",
                                 str(forecast_out)])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(forecast_out)
    events, labels = portland["events"], portland["labels"]
    for region in sorted(set(labels)):
        mine, units = _alone(events, labels, region)
        want = run_forecast(mine, model="kde", at="2016-10-01", horizon="7d", units=units)
        got = forecasts[forecasts.region == region]
        np.testing.assert_allclose(got.intensity.to_numpy(), want.to_frame().intensity)


@pytest.mark.parametrize("by, extra, message", [
    ("beat", [], "no column 'beat'"),
    ("POLYGONS", ["--by-id", "PRECINCT"], "no column 'PRECINCT'"),
    ("POLYGONS_OK", [], "needs --by-id"),
    ("precinct", ["--plot", "x.svg"], "--plot"),
    ("precinct", ["--region", "POLYGONS_OK"], "cannot be combined with regions"),
    ("precinct", ["--units", "polygons"], "not available per region"),
])
def test_cli_bad_regions_exit_2(portland, tmp_path, by, extra, message):
    files = {"POLYGONS": str(portland["no_id"]), "POLYGONS_OK": str(portland["polygons"])}
    by, extra = files.get(by, by), [files.get(e, e) for e in extra]
    result = runner.invoke(app, ["backtest", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--start", "2016-09-01", "--end", "2016-09-29", "--by", by,
                                 *extra, "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out.csv").exists()


def test_cli_events_in_no_region_exit_2(portland, tmp_path):
    result = runner.invoke(app, ["forecast", str(portland["csv"]), "--crs",
                                 "EPSG:2913", "--at", "2016-10-01", "--by",
                                 str(portland["missing_one"]), "--by-id", "PRECINCT",
                                 "-o", str(tmp_path / "out.csv")])
    assert result.exit_code == 2, result.output
    assert "lie in no polygon" in " ".join(result.output.split())
    assert not (tmp_path / "out.csv").exists()


def test_append_in_chunks_equals_one_write(portland, tmp_path):
    events, labels = portland["events"], portland["labels"]
    whole = write_partitioned(events, labels, tmp_path / "whole", rows_per_file=300)
    half = len(events) // 2
    first, second = np.arange(half), np.arange(half, len(events))
    write_partitioned(events.select(first), labels[first], tmp_path / "chunks",
                      rows_per_file=300)
    chunks = write_partitioned(events.select(second), labels[second], tmp_path / "chunks",
                               append=True, rows_per_file=300)
    assert chunks.counts == whole.counts
    for region in whole.names:
        a, b = read_partition(tmp_path / "whole", region), read_partition(tmp_path / "chunks",
                                                                          region)
        order_a, order_b = np.lexsort((a.x, a.time)), np.lexsort((b.x, b.time))
        np.testing.assert_array_equal(a.time[order_a], b.time[order_b])
        np.testing.assert_array_equal(a.y[order_a], b.y[order_b])
    # a description that does not match the files is reported, not read past
    meta = json.loads((tmp_path / "chunks" / "_placecast.json").read_text())
    meta["regions"][whole.names[0]] += 1
    (tmp_path / "chunks" / "_placecast.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="the folder was changed"):
        read_partition(tmp_path / "chunks", whole.names[0])
    from placecast.events import SpatialReference
    from placecast.exceptions import ParameterError

    other = dataclasses.replace(events, spatial_reference=SpatialReference("EPSG:32610"))
    with pytest.raises(ParameterError, match="differ in CRS"):
        write_partitioned(other, labels, tmp_path / "chunks", append=True)


def test_cli_scan_by_region(portland, tmp_path):
    out = tmp_path / "scan"
    result = runner.invoke(app, ["scan", str(portland["csv"]), "--crs", "EPSG:2913", "--by",
                                 "precinct", "--at", "2016-12-01", "--study-days", "60",
                                 "--round", "100m", "--permutations", "49", "--seed", "3",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "clusters.csv")
    assert sorted(table.region.unique()) == sorted(set(portland["labels"]))
    from placecast.clusters import SpaceTimeScan, scan_data_from_events

    events, labels = portland["events"], portland["labels"]
    mine = events.select(labels == "CE")
    alone = SpaceTimeScan(n_permutations=49, random_state=3, max_intervals=7).run(
        scan_data_from_events(mine, at="2016-12-01", n_intervals=60, round_to=100.0))
    np.testing.assert_allclose(table[table.region == "CE"].test_statistic,
                               alone.to_frame().test_statistic)
