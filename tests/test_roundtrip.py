"""Every events format placecast writes reads back to the same events (issue 14).

``export_events`` / ``placecast export --dataset`` write GeoPackage, shapefile (plain and
zipped), GeoParquet, GeoJSON and CSV; ``read_events`` / ``placecast ingest`` read each back
to the same times, coordinates, CRS, categories, weights, incident ids and marks. Checked
on Memphis robberies (longitude/latitude) and Portland burglaries (Oregon North feet,
EPSG:2913) with weights, marks, incident ids and millisecond times added.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from placecast.cli import app
from placecast.io import export_events, read_events
from placecast.store import open_store

FORMATS = ["e.gpkg", "e.shp", "e.zip", "e.parquet", "e.geojson", "e.csv"]


@pytest.fixture(scope="module")
def memphis(shared_data):
    return read_events(shared_data / "memphis" / "personal_robberies_2019.csv")


@pytest.fixture(scope="module")
def portland(shared_data):
    events = read_events(shared_data / "portland" / "burglary_2012-03_2017-05.csv",
                         crs="EPSG:2913")
    n = len(events)
    rng = np.random.default_rng(14)
    millis = rng.integers(0, 86_400_000, n).astype("timedelta64[ms]")
    return replace(events,
                   time=(events.time + millis).astype("datetime64[ns]"),
                   category=np.array([f"burglary {i % 3}" for i in range(n)], dtype=object),
                   weight=rng.uniform(0.5, 2.0, n).round(6),
                   mark=rng.uniform(2.0, 6.0, n).round(3),
                   incident_id=np.array([f"PPB-{i:06d}" for i in range(n)], dtype=object),
                   report=None)


def assert_same_events(got, want):
    assert len(got) == len(want)
    assert got.spatial_reference.crs == want.spatial_reference.crs
    np.testing.assert_array_equal(got.time, want.time)
    np.testing.assert_allclose(got.x, want.x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.y, want.y, rtol=0, atol=1e-6)
    for name in ("category", "incident_id"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if b is not None:
            assert [str(v) for v in a] == [str(v) for v in b], name
    for name in ("weight", "mark"):
        a, b = getattr(got, name), getattr(want, name)
        assert (a is None) == (b is None), name
        if b is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", FORMATS)
def test_lonlat_events_round_trip(memphis, tmp_path, name):
    path = export_events(memphis, tmp_path / name)
    back = read_events(path)
    assert back.spatial_reference.source_crs == "EPSG:4326"
    assert_same_events(back, memphis)


@pytest.mark.parametrize("name", FORMATS)
def test_projected_events_with_every_field_round_trip(portland, tmp_path, name):
    path = export_events(portland, tmp_path / name)
    # A CSV cannot name its CRS: the reader is told (the export's docstring says so).
    back = read_events(path, crs="EPSG:2913" if name.endswith(".csv") else None)
    assert back.spatial_reference.source_crs == "EPSG:2913"
    assert_same_events(back, portland)


@pytest.mark.parametrize("name", ["e.gpkg", "e.shp", "e.parquet", "e.csv"])
def test_unreferenced_events_round_trip_with_their_crs(tmp_path, name):
    """local:m events are written without a CRS and read back with crs='local:m'."""
    from placecast.events import Events
    from placecast.exceptions import DataError

    events = Events.from_arrays(
        ["2020-01-01T10:00:00", "2020-01-02T11:30:15", "2020-01-03T00:00:00"],
        [0.0, 10.5, 20.25], [5.0, 6.0, 7.125], crs="local:m",
        weight=np.array([1.0, 2.0, 0.5]))
    path = export_events(events, tmp_path / name)
    assert_same_events(read_events(path, crs="local:m"), events)
    with pytest.raises(DataError, match="CRS"):
        read_events(path)


def test_unreferenced_events_are_not_written_as_geojson(tmp_path):
    from placecast.events import Events
    from placecast.exceptions import ParameterError

    events = Events.from_arrays(["2020-01-01T10:00:00"], [0.0], [5.0], crs="local:m")
    with pytest.raises(ParameterError, match="GeoJSON cannot hold unreferenced"):
        export_events(events, tmp_path / "e.geojson")
    assert list(tmp_path.iterdir()) == []


def test_projected_csv_without_crs_is_refused(portland, tmp_path):
    from placecast.exceptions import DataError

    path = export_events(portland, tmp_path / "e.csv")
    with pytest.raises(DataError, match="no CRS was given"):
        read_events(path)


def test_plain_parquet_without_geometry_still_needs_columns(tmp_path):
    """Only GeoParquet metadata makes a geometry column: a plain Parquet file is a table."""
    import pandas as pd

    from placecast.exceptions import DataError

    path = tmp_path / "plain.parquet"
    pd.DataFrame({"time": ["2019-01-01"], "geometry": [b"\x01"]}).to_parquet(path)
    with pytest.raises(DataError, match="no coordinate columns"):
        read_events(path)


@pytest.mark.parametrize("name", FORMATS)
def test_cli_export_then_ingest_gives_the_same_dataset(portland, tmp_path, name):
    db = str(tmp_path / "p.duckdb")
    with open_store(db) as store:
        store.add_events("burglary", portland)
    runner = CliRunner()
    out = tmp_path / name
    r = runner.invoke(app, ["export", "--db", db, "--dataset", "burglary", "-o", str(out)])
    assert r.exit_code == 0, r.output
    extra = ["--crs", "EPSG:2913"] if name.endswith(".csv") else []
    r = runner.invoke(app, ["ingest", str(out), "--dataset", "again", "--db", db, *extra])
    assert r.exit_code == 0, r.output
    with open_store(db, create=False) as store:
        assert_same_events(store.load_events("again"), store.load_events("burglary"))


# ---------------------------------------------------------------------- --db/--dataset
@pytest.fixture(scope="module")
def memphis_store(memphis, tmp_path_factory):
    db = tmp_path_factory.mktemp("dbdataset") / "m.duckdb"
    with open_store(str(db)) as store:
        store.add_events("robbery", memphis)
    return str(db)


def test_db_dataset_options_equal_the_db_hash_dataset_argument(memphis_store, tmp_path):
    runner = CliRunner()
    common = ["--at", "2019-10-01", "--cell", "1000m", "--model", "naive"]
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    r1 = runner.invoke(app, ["forecast", f"{memphis_store}#robbery", "-o", str(a), *common])
    r2 = runner.invoke(app, ["forecast", "--db", memphis_store, "--dataset", "robbery",
                             "-o", str(b), *common])
    assert r1.exit_code == 0 and r2.exit_code == 0, (r1.output, r2.output)
    assert a.read_bytes() == b.read_bytes()
    r = runner.invoke(app, ["inspect", "--db", memphis_store, "--dataset", "robbery",
                            "--json"])
    assert r.exit_code == 0 and "2245" in r.output.replace(",", "")


def test_dataset_from_the_environment_store(memphis_store, monkeypatch):
    monkeypatch.setenv("PLACECAST_DB", memphis_store)
    r = CliRunner().invoke(app, ["inspect", "--dataset", "robbery", "--json"])
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(("args", "words"), [
    # forecast's own --db is also the store of --save: alone it names no events.
    (["--db", "{db}"], ["no events given", "--dataset NAME"]),
    # ... and its default store (placecast.duckdb) is where --dataset alone is looked up.
    (["--dataset", "robbery"], ["placecast.duckdb: no such store"]),
    ([], ["no events given", "--db FILE --dataset NAME"]),
    (["{csv}", "--db", "{db}", "--dataset", "robbery"], ["not both"]),
    (["{csv}", "--dataset", "robbery"], ["not both"]),
    (["--db", "{db}", "--dataset", "nope"], ["no dataset 'nope'"]),
    (["--db", "{tmp}/missing.duckdb", "--dataset", "robbery"], ["no such store"]),
])
def test_db_dataset_refusals(memphis_store, shared_data, tmp_path, monkeypatch, args,
                             words):
    monkeypatch.delenv("PLACECAST_DB", raising=False)
    csv = str(shared_data / "memphis" / "personal_robberies_2019.csv")
    args = [a.format(db=memphis_store, csv=csv, tmp=tmp_path) for a in args]
    out = tmp_path / "f.csv"
    r = CliRunner().invoke(app, ["forecast", *args, "--at", "2019-10-01", "--cell", "1000m",
                                 "-o", str(out)], env={"COLUMNS": "300"})
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    for word in words:
        assert word in text, (word, text)
    assert "Traceback" not in r.output
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_half_a_db_dataset_pair_is_refused(memphis_store, monkeypatch):
    monkeypatch.delenv("PLACECAST_DB", raising=False)
    r = CliRunner().invoke(app, ["inspect", "--db", memphis_store], env={"COLUMNS": "300"})
    assert r.exit_code == 2 and "needs --dataset NAME" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["inspect", "--dataset", "robbery"], env={"COLUMNS": "300"})
    assert r.exit_code == 2
    assert "--dataset robbery needs --db FILE" in " ".join(r.output.split())


def test_ingest_keeps_db_and_dataset_as_the_target(memphis_store, shared_data, tmp_path):
    """``ingest`` reads a file; its --db/--dataset say where the events go."""
    db = str(tmp_path / "t.duckdb")
    csv = str(shared_data / "memphis" / "personal_robberies_2019.csv")
    r = CliRunner().invoke(app, ["ingest", csv, "--db", db, "--dataset", "rob"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(app, ["ingest", "--db", db, "--dataset", "rob"])
    assert r.exit_code == 2  # the events file is still required


def test_geoparquet_with_another_geometry_column_name(memphis, tmp_path):
    """GeoParquet from other tools: the primary geometry column need not be 'geometry'."""
    import geopandas as gpd
    import pandas as pd

    sref = memphis.spatial_reference
    lon, lat = sref.to_crs_coordinates(memphis.x, memphis.y, "EPSG:4326")
    frame = gpd.GeoDataFrame({"occurred": pd.to_datetime(memphis.time)},
                             geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")
    frame = frame.rename_geometry("geom")
    frame.to_parquet(tmp_path / "other.parquet")
    back = read_events(tmp_path / "other.parquet")
    np.testing.assert_array_equal(back.time, memphis.time)
    np.testing.assert_allclose(back.x, memphis.x, atol=1e-6)
    np.testing.assert_allclose(back.y, memphis.y, atol=1e-6)


def test_damaged_geoparquet_metadata_is_a_clear_error(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from placecast.exceptions import DataError

    table = pa.table({"time": ["2019-01-01"], "geometry": [b"\x01"]})
    table = table.replace_schema_metadata({b"geo": b"{not json"})
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="GeoParquet metadata"):
        read_events(tmp_path / "bad.parquet")
