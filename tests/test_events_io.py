"""Reading events: real files in three CRSs, formats, column detection, bad input."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from placecast import ColumnMap, DataError, Events, ParameterError, read_events
from placecast.datasets import portland_burglary_path
from placecast.io import choose_local_crs


def test_portland_feet_are_converted_to_metres(shared_data: Path) -> None:
    path = shared_data / "portland" / "burglary_2012-03_2017-05.csv"
    events = read_events(path, crs="EPSG:2913")
    raw = pd.read_csv(path)
    assert len(events) == len(raw) == 5364
    np.testing.assert_allclose(events.x, raw["x_coordina"].to_numpy() * 0.3048)
    assert events.spatial_reference.metres_per_unit == pytest.approx(0.3048)
    assert events.report is not None
    assert events.report.columns == {"time": "occ_date", "x": "x_coordina", "y": "y_coordina"}
    assert set(events.report.detected) == {"time", "x", "y"}
    # columns that were not mapped are never read
    assert "case_desc_type" in events.report.ignored_columns
    assert list(events.to_frame().columns) == ["time", "x", "y"]
    assert str(events.start)[:10] == "2012-03-01" and str(events.end)[:10] == "2017-05-31"


def test_chicago_metres_with_one_bad_date(shared_data: Path) -> None:
    path = shared_data / "chicago" / "burglary_2016.csv"
    with pytest.raises(DataError, match=r"row 2364, column 'date': 'NA' is not a date"):
        read_events(path, crs="EPSG:26971")
    events = read_events(path, crs="EPSG:26971", skip_bad_rows=True)
    assert len(events) == 11701 - 1
    assert events.report is not None and events.report.dropped == {"is not a date": 1}
    assert events.spatial_reference.metres_per_unit == 1.0


def test_nyc_lonlat_projected_to_utm(shared_data: Path) -> None:
    path = shared_data / "nyc" / "motor_vehicle_thefts_2014_2017.csv"
    events = read_events(path)
    assert len(events) == 35746
    assert events.crs == "EPSG:32618"
    assert events.spatial_reference.input_crs == "EPSG:4326"
    assert events.report is not None
    assert events.report.columns["time"] == "date_single"
    assert events.report.columns["incident_id"] == "uid"
    assert "census_block" in events.report.ignored_columns
    # minutes are kept
    assert str(events.time[0]) .startswith("2014-01-01T01:15")
    # round trip to lon/lat
    lon, lat = events.spatial_reference.to_crs_coordinates(events.x[:5], events.y[:5],
                                                           "EPSG:4326")
    raw = pd.read_csv(path, nrows=5)
    np.testing.assert_allclose(lon, raw["longitude"], atol=1e-7)
    np.testing.assert_allclose(lat, raw["latitude"], atol=1e-7)


def test_choose_local_crs_southern_hemisphere() -> None:
    assert choose_local_crs(np.array([151.2]), np.array([-33.9])) == "EPSG:32756"


def test_portland_cfs_trailing_blank_row_and_categories(shared_data: Path) -> None:
    path = shared_data / "portland" / "cfs_2016-08.csv"
    with pytest.raises(DataError, match=r"row 19377, column 'occ_date': missing"):
        read_events(path, crs="EPSG:2913")
    events = read_events(path, crs="EPSG:2913", skip_bad_rows=True,
                         categories=["burglary"])
    assert events.report is not None
    assert events.report.columns["category"] == "CATEGORY"
    assert set(events.categories()) == {"BURGLARY"}
    raw = pd.read_csv(path)
    assert len(events) == int((raw["CATEGORY"] == "BURGLARY").sum())
    assert events.report.filtered["categories"] == len(raw) - 1 - len(events)


def test_date_and_time_columns_are_joined(shared_data: Path) -> None:
    events = read_events(shared_data / "quakes" / "iran_quakes.csv", project=False)
    assert events.report is not None and events.report.columns["time"] == "date,time"
    assert str(events.time[0]).startswith("1973-01-06T15:39:31")
    assert events.mark is not None and events.mark[0] == pytest.approx(4.2)
    assert events.crs == "EPSG:4326"


def _write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("date,X,Y\n2016-01-01,350001,578002\n2016-13-01,350003,578004\n",
         r"events.csv row 3, column 'date': '2016-13-01' is not a date.*`time_format`"),
        ("date,X,Y\n2016-01-01,350001,578002\n2016-01-02,,578004\n",
         r"row 3, column 'X': missing is not a number"),
        ("date,X,Y\n2016-01-01,350001,578002\n2016-01-02,350003,north\n",
         r"row 3, column 'Y': 'north' is not a number"),
        ("date,X,Y\n", r"header but no rows"),
        ("", r"the file is empty"),
    ],
)
def test_bad_rows_name_file_row_and_column(tmp_path: Path, body: str, pattern: str) -> None:
    path = _write(tmp_path, body)
    with pytest.raises(DataError, match=pattern):
        read_events(path, crs="EPSG:26971")


def test_lonlat_out_of_range(tmp_path: Path) -> None:
    path = _write(tmp_path, "date,longitude,latitude\n2016-01-01,-73.9,40.7\n"
                            "2016-01-02,40.7,-173.9\n")
    with pytest.raises(DataError, match=r"row 3, column 'latitude': '-173.9' is outside "
                                        r"latitude range.*swapped"):
        read_events(path)


def test_missing_file_and_missing_column(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_events(tmp_path / "nope.csv")
    path = _write(tmp_path, "date,X,Y\n2016-01-01,1,2\n")
    with pytest.raises(DataError, match=r"no column 'when' for the event time.*`time`"):
        read_events(path, columns=ColumnMap(time="when"), crs="EPSG:26971")
    with pytest.raises(DataError, match=r"Did you mean 'X'"):
        read_events(path, columns=ColumnMap(x="x", y="Y"), crs="EPSG:26971")


def test_projected_columns_need_a_crs(tmp_path: Path) -> None:
    path = _write(tmp_path, "date,X,Y\n2016-01-01,1,2\n")
    with pytest.raises(DataError, match=r"no CRS was given. Pass `crs`"):
        read_events(path)
    # x/y in a geographic CRS are lon/lat: projected like --lon/--lat
    assert read_events(path, crs="EPSG:4326").crs == "EPSG:32631"
    with pytest.raises(ParameterError, match="not a coordinate reference system"):
        read_events(path, crs="EPSG:99999999")


def test_skip_bad_rows_counts_every_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, "date,X,Y\n2016-01-01,1,2\nbad,3,4\n2016-01-03,,4\n"
                            "2016-01-04,5,6\n")
    with pytest.raises(DataError, match=r"\(2 rows in all have problems\.\)"):
        read_events(path, crs="local:m")
    events = read_events(path, crs="local:m", skip_bad_rows=True)
    assert len(events) == 2
    assert events.report is not None
    assert events.report.dropped == {"is not a date": 1, "is not a number": 1}


def test_time_format_and_timezones(tmp_path: Path) -> None:
    path = _write(tmp_path, "when,X,Y\n03/01/2017 14:30,1,2\n")
    events = read_events(path, columns=ColumnMap(time="when"), crs="local:m",
                         time_format="%m/%d/%Y %H:%M")
    assert str(events.time[0]) == "2017-03-01T14:30:00.000000000"
    offset = _write(tmp_path, "time,X,Y\n2017-03-01T14:30:00-08:00\n2017-03-01T23:00:00Z\n"
                    .replace("\n2017", ",1,2\n2017").replace("Z\n", "Z,3,4\n"), "tz.csv")
    events = read_events(offset, crs="local:m", timezone="America/Los_Angeles")
    assert [str(t)[:16] for t in events.time] == ["2017-03-01T14:30", "2017-03-01T15:00"]
    assert events.timezone == "America/Los_Angeles"
    utc = read_events(offset, crs="local:m")
    assert str(utc.time[0])[:16] == "2017-03-01T22:30" and utc.timezone == "UTC"
    with pytest.raises(ParameterError, match="not a known time zone"):
        read_events(path, columns=ColumnMap(time="when"), crs="local:m",
                    time_format="%m/%d/%Y %H:%M", timezone="Mars/Olympus")


def test_numeric_days_since_origin(shared_data: Path) -> None:
    events = read_events(shared_data / "burkitt" / "burkitt_events.csv",
                         columns=ColumnMap(time="T"), crs="local:km",
                         time_format="days since 1960-01-01")
    assert len(events) == 188
    assert str(events.time[0])[:10] == str(np.datetime64("1960-01-01") + 413)
    assert events.x[0] == pytest.approx(300_000.0)


@pytest.mark.parametrize("suffix", [".geojson", ".gpkg", ".shp", ".parquet", ".fgb"])
def test_formats_round_trip(tmp_path: Path, suffix: str) -> None:
    frame = pd.read_csv(portland_burglary_path(), nrows=50)
    reference = read_events(portland_burglary_path(), crs="EPSG:2913").select(np.arange(50))
    path = tmp_path / f"points{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
        events = read_events(path, crs="EPSG:2913")
    else:
        gdf = gpd.GeoDataFrame(
            {"occ_date": frame["occ_date"], "kind": "burglary"},
            geometry=gpd.points_from_xy(frame["x_coordina"], frame["y_coordina"]),
            crs="EPSG:2913",
        )
        gdf.to_file(path)
        events = read_events(path)
    # FlatGeobuf stores features in spatial-index order: compare as sorted records
    got = events.to_frame().sort_values(["x", "y", "time"]).reset_index(drop=True)
    want = reference.to_frame().sort_values(["x", "y", "time"]).reset_index(drop=True)
    np.testing.assert_allclose(got["x"], want["x"], rtol=1e-9)
    np.testing.assert_allclose(got["y"], want["y"], rtol=1e-9)
    np.testing.assert_array_equal(got["time"], want["time"])


def test_vector_file_of_polygons_is_rejected(shared_data: Path) -> None:
    with pytest.raises(DataError, match="events must be points, found"):
        read_events(shared_data / "portland" / "police_districts" /
                    "Portland_Police_Districts.shp", columns=ColumnMap(time="DISTRICT"))


def test_since_until_and_selection() -> None:
    events = Events.from_arrays(["2017-01-01", "2017-02-01", "2017-03-01"], [0, 1, 2],
                                [0, 1, 2])
    assert len(events.between("2017-01-15", "2017-03-01")) == 1
    assert len(events.before("2017-03-01")) == 2
    assert events.days_since("2017-01-01").tolist() == [0.0, 31.0, 59.0]
    with pytest.raises(DataError, match="has 2 values but there are 3 times"):
        Events.from_arrays(["2017-01-01"] * 3, [0, 1], [0, 1, 2])
