"""What placecast refuses (issue 14): inputs that disagree, lengths without units, dates.

Every case ends with exit status 2, a message naming the file, row, column or parameter
and the fix, and nothing written. See docs/refusals.md.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from placecast import DataError, Events, ParameterError, read_events
from placecast.cli import app
from placecast.exceptions import DataQualityWarning
from placecast.pipeline import UnitSpec, build_units
from placecast.quantities import parse_area, parse_duration, parse_length

runner = CliRunner()


def _message(result: object) -> str:
    """stderr with Rich's line wrapping undone."""
    return " ".join(result.stderr.split())  # type: ignore[attr-defined]


def _refused(result: object, *patterns: str) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    message = _message(result)
    assert "Traceback" not in result.output  # type: ignore[attr-defined]
    for pattern in patterns:
        assert re.search(pattern, message), (pattern, message)
    return message


@pytest.fixture(scope="module")
def portland_csv(shared_data: Path) -> str:
    return str(shared_data / "portland" / "burglary_2012-03_2017-05.csv")


@pytest.fixture(scope="module")
def portland_region(shared_data: Path) -> str:
    return str(shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp")


def _write(tmp_path: Path, text: str | bytes, name: str = "events.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- disagreeing inputs
def test_chicago_events_with_the_portland_region_are_refused(
        tmp_path: Path, shared_data: Path, portland_region: str) -> None:
    out = tmp_path / "forecast.csv"
    result = runner.invoke(app, [
        "forecast", str(shared_data / "chicago" / "burglary_2016.csv"), "--crs", "EPSG:26971",
        "--skip-bad-rows", "--region", portland_region, "--cell", "600ft",
        "--at", "2016-06-01", "--model", "naive", "-o", str(out)])
    _refused(result, r"11,700 of 11,700 events \(100%\) fall outside the region "
                     r".*Portland_Police_Districts.shp",
             r"The events span x 340,350 \.\. 367,222, y 553,149 \.\. 594,816",
             r"the region spans x -2,380,677 \.\. -2,351,450",
             r"do not overlap at all.*wrong CRS \(check --crs\)")
    assert not out.exists()


def test_portland_events_in_the_illinois_crs_are_refused(
        tmp_path: Path, portland_csv: str) -> None:
    out = tmp_path / "forecast.csv"
    result = runner.invoke(app, ["forecast", portland_csv, "--crs", "EPSG:26971", "--cell",
                                 "600ft", "--at", "2017-03-01", "-o", str(out)])
    _refused(result, r"burglary_2012-03_2017-05.csv: 5,364 of 5,364 events lie outside the "
                     r"area where EPSG:26971 \(NAD83 / Illinois East",
             r"events span x 7,606,492 \.\. 7,693,887", r"check --crs")
    assert not out.exists()
    # the right CRS reads the same file
    assert len(read_events(portland_csv, crs="EPSG:2913")) == 5364


def test_swapped_lon_lat_columns_are_refused(shared_data: Path) -> None:
    nyc = str(shared_data / "nyc" / "motor_vehicle_thefts_2014_2017.csv")
    result = runner.invoke(app, ["inspect", nyc, "--lon", "latitude", "--lat", "longitude"])
    _refused(result, r"--lon 'latitude' and --lat 'longitude' look swapped",
             r"Give --lon longitude --lat latitude")


def test_degrees_given_as_projected_coordinates_are_refused(shared_data: Path) -> None:
    nyc = str(shared_data / "nyc" / "motor_vehicle_thefts_2014_2017.csv")
    result = runner.invoke(app, ["inspect", nyc, "--x", "longitude", "--y", "latitude",
                                 "--crs", "EPSG:2263"])
    _refused(result, r"35,746 of 35,746 events lie outside the area where EPSG:2263",
             r"look like degrees: read them with --lon/--lat")


def test_swapped_projected_values_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "date,easting,northing\n"
                  + "".join(f"2016-01-0{i},{578000 + i},{350000 + i}\n" for i in range(1, 6)))
    with pytest.raises(DataError, match=r"with x and y swapped they would fit: give `x` "
                                        r"northing `y` easting"):
        read_events(path, crs="EPSG:26971")


def test_a_few_events_outside_the_crs_area_are_bad_rows(tmp_path: Path) -> None:
    rows = "".join(f"2016-01-{d:02d},{350000 + d},{578000 + d}\n" for d in range(1, 11))
    path = _write(tmp_path, "date,X,Y\n" + rows + "2016-01-11,0,0\n2016-01-12,1e308,578000\n")
    with pytest.raises(DataError, match=r"row 12, column 'X': '0' lies outside the area "
                                        r"where EPSG:26971 is used.*0 often stands"):
        read_events(path, crs="EPSG:26971")
    events = read_events(path, crs="EPSG:26971", skip_bad_rows=True)
    assert len(events) == 10
    assert events.report is not None
    assert events.report.dropped == {"lies outside the area where EPSG:26971 is used": 2}


def _local_events(n_inside: int, n_outside: int) -> Events:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(0, 1000, n_inside), rng.uniform(5000, 6000, n_outside)])
    y = np.concatenate([rng.uniform(0, 1000, n_inside), rng.uniform(5000, 6000, n_outside)])
    times = np.datetime64("2017-01-01") + np.arange(len(x)).astype("timedelta64[h]")
    return Events(time=times.astype("datetime64[ns]"), x=x, y=y)


@pytest.fixture
def square_region(tmp_path: Path) -> Path:
    path = tmp_path / "region.gpkg"
    with warnings.catch_warnings():  # a local grid has no CRS to write, on purpose
        warnings.simplefilter("ignore", UserWarning)
        gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1000, 1000)]).to_file(path)
    return path


def test_a_few_events_outside_the_region_warn_with_counts(square_region: Path) -> None:
    events = _local_events(100, 3)
    with pytest.warns(DataQualityWarning, match=r"3 of 103 events \(2.9%\) fall outside "
                                                r"the region .*region.gpkg"):
        units = build_units(events, UnitSpec(cell_size=100.0, region=square_region))
    assert len(units) == 100


def test_most_events_outside_the_region_are_refused(square_region: Path) -> None:
    events = _local_events(40, 60)
    with pytest.raises(DataError, match=r"60 of 100 events \(60%\) fall outside the region"
                                        r".*the region spans x 0 \.\. 1,000"
                                        r".*select those events first"):
        build_units(events, UnitSpec(cell_size=100.0, region=square_region))
    # half outside is still a warning, not an error
    with pytest.warns(DataQualityWarning, match=r"50 of 100 events"):
        build_units(_local_events(50, 50), UnitSpec(cell_size=100.0, region=square_region))


# --------------------------------------------------------------------------- units on lengths
@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["forecast", "--cell", "600", "--at", "2017-03-01"],
         r"--cell '600' has no unit.*600m, 600ft"),
        (["forecast", "--cell", "600ft", "--at", "2017-03-01", "--horizon", "7"],
         r"horizon '7' has no unit.*7d, 7w, 7h or 7M"),
        (["forecast", "--cell", "600ft", "--at", "2017-03-01", "-p", "bandwidth=200yd",
          "--horizon", "7x"], r"horizon '7x': unknown unit 'x'"),
        (["backtest", "--cell", "600ft", "--step", "7", "--start", "2017-01-01", "--end",
          "2017-02-01"], r"--step '7' has no unit"),
        (["backtest", "--cell", "600ft", "--horizon", "7d,14", "--start", "2017-01-01",
          "--end", "2017-02-01"], r"--horizon '14' has no unit"),
        (["scan", "--max-radius", "1"], r"--max-radius '1' has no unit.*1m, 1ft or 1km"),
        (["scan", "--cell", "250"], r"--cell '250' has no unit"),
        (["scan", "--round", "50"], r"--round '50' has no unit"),
        (["scan", "--interval", "1"], r"--interval '1' has no unit"),
        (["scan", "--interval", "1d", "--max-days", "7x"], r"--max-days '7x': unknown unit"),
        (["knox", "--distance", "200", "--days", "14"], r"--distance '200' has no unit"),
        (["nearrepeat", "--distance-bands", "0,100,200", "--time-bands", "0,7d"],
         r"--distance-bands '100' has no unit"),
        (["nearrepeat", "--distance-bands", "0,100m", "--time-bands", "0,7,14"],
         r"--time-bands '7' has no unit"),
        (["hotspots", "--distance", "1000"], r"--distance '1000' has no unit"),
        (["hotspots", "--step", "30"], r"step '30' has no unit"),
        (["tune", "--model", "kde", "--cells", "250ft,600", "--tuning", "2015-03-01..2016-02-23",
          "--evaluation", "2016-03-01..2017-02-28"], r"--cells '600' has no unit"),
    ],
)
def test_lengths_and_durations_without_a_unit_are_refused(
        tmp_path: Path, portland_csv: str, args: list[str], pattern: str) -> None:
    out = tmp_path / "out.csv"
    command, *rest = args
    output = [] if command == "knox" else ["-o", str(out)]  # knox prints only
    result = runner.invoke(app, [command, portland_csv, "--crs", "EPSG:2913", *rest, *output])
    _refused(result, pattern)
    assert not out.exists()


def test_days_options_take_units_and_bare_days(tmp_path: Path, shared_data: Path) -> None:
    burkitt = [str(shared_data / "burkitt" / "burkitt_events.csv"), "--crs", "local:km",
               "--time", "T", "--time-format", "days since 1960-01-01"]
    plain = runner.invoke(app, ["knox", *burkitt, "--distance", "5km", "--days", "14",
                                "--json"])
    weeks = runner.invoke(app, ["knox", *burkitt, "--distance", "5km", "--days", "2w",
                                "--json"])
    assert plain.exit_code == 0, plain.output
    assert weeks.exit_code == 0, weeks.output
    assert plain.stdout == weeks.stdout
    months = runner.invoke(app, ["knox", *burkitt, "--distance", "5km", "--days", "1M"])
    _refused(months, r"--days '1M': months differ in length")


def test_library_numbers_are_metres_and_days_by_contract() -> None:
    assert parse_length(182.88) == 182.88
    assert parse_length("600ft") == 182.88
    assert parse_duration(7).amount == 7.0
    assert parse_duration("2w").amount == 14.0
    assert parse_duration("90min").amount == pytest.approx(90 / 1440)
    assert parse_area(1e4).square_metres == 1e4
    with pytest.raises(ParameterError, match=r"length '200' has no unit"):
        parse_length("200")
    with pytest.raises(ParameterError, match=r"area '62500' has no unit"):
        parse_area("62500")
    with pytest.raises(ParameterError, match=r"'m' is ambiguous: write min for minutes or M"):
        parse_duration("5m")
    with pytest.raises(ParameterError, match=r"longer than 1,000 years"):
        parse_duration("1001y")
    with pytest.raises(ParameterError, match=r"falls outside the dates placecast can hold"):
        parse_duration("300y").add_to(np.datetime64("2017-01-01"))


# --------------------------------------------------------------------------- dates and times
def test_years_outside_the_nanosecond_range_are_row_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,x,y\n2017-01-01,1,2\n3000-01-01,1,2\n9999-12-31,1,2\n"
                            "1500-06-01,1,2\n")
    out = tmp_path / "f.csv"
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m"])
    _refused(result, r"events.csv row 3, column 'time': '3000-01-01' is outside the years "
                     r"1678-2261", r"\(3 rows in all have problems\.\)")
    events = read_events(path, crs="local:m", skip_bad_rows=True)
    assert [str(t)[:10] for t in events.time] == ["2017-01-01"]
    assert events.report is not None
    assert events.report.dropped == {"is outside the years 1678-2261": 3}
    days = _write(tmp_path, "t,x,y\n0,1,2\n1e9,1,2\n", "days.csv")
    with pytest.raises(DataError, match=r"row 3, column 't': '1e9' is outside the years"):
        read_events(days, crs="local:m", columns=None, time_format="days since 1960-01-01")
    result = runner.invoke(app, ["forecast", str(path), "--crs", "local:m", "--skip-bad-rows",
                                 "--at", "3000-01-01", "--cell", "1m", "-o", str(out)])
    _refused(result, r"'3000-01-01' is outside the years 1678-2261")
    assert not out.exists()


MIXED = "time,x,y\n2017-03-01 10:00,1,2\n2017-03-01T10:00:00-05:00,1,2\n2017-03-01T18:00Z,1,2\n"


def test_naive_and_offset_times_need_a_timezone(tmp_path: Path) -> None:
    path = _write(tmp_path, MIXED)
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m"])
    _refused(result, r"events.csv row 2, column 'time': '2017-03-01 10:00' has no UTC offset "
                     r"but row 3 '2017-03-01T10:00:00-05:00' has one",
             r"--timezone \(e.g. America/Los_Angeles\)")
    events = read_events(path, crs="local:m", timezone="America/Los_Angeles")
    # naive 10:00 is 10:00 in Los Angeles; 10:00-05:00 is 07:00 there; 18:00Z is 10:00
    assert [str(t)[11:16] for t in events.time] == ["10:00", "07:00", "10:00"]
    assert events.timezone == "America/Los_Angeles"


def test_slash_dates_need_one_reading_for_the_whole_column(tmp_path: Path) -> None:
    day_first = _write(tmp_path, "time,x,y\n01/02/2017,1,2\n13/02/2017,1,2\n", "a.csv")
    events = read_events(day_first, crs="local:m")
    assert [str(t)[:10] for t in events.time] == ["2017-02-01", "2017-02-13"]
    month_first = _write(tmp_path, "time,x,y\n01/02/2017 14:30,1,2\n02/13/2017,1,2\n", "b.csv")
    events = read_events(month_first, crs="local:m")
    assert [str(t)[:16] for t in events.time] == ["2017-01-02T14:30", "2017-02-13T00:00"]
    same = _write(tmp_path, "time,x,y\n01/01/2017,1,2\n02/02/2017,1,2\n", "c.csv")
    assert [str(t)[:10] for t in read_events(same, crs="local:m").time] == [
        "2017-01-01", "2017-02-02"]
    ambiguous = _write(tmp_path, "time,x,y\n01/02/2017,1,2\n03/04/2017,1,2\n", "d.csv")
    result = runner.invoke(app, ["inspect", str(ambiguous), "--crs", "local:m"])
    _refused(result, r"d.csv row 2, column 'time': '01/02/2017' and every other slash date",
             r"ambiguous", r"--time-format '%d/%m/%Y' \(day first\) or '%m/%d/%Y'")
    both = _write(tmp_path, "time,x,y\n13/02/2017,1,2\n02/13/2017,1,2\n", "e.csv")
    result = runner.invoke(app, ["inspect", str(both), "--crs", "local:m", "--skip-bad-rows"])
    _refused(result, r"'13/02/2017' can only be day-first but row 3 '02/13/2017' can only be "
                     r"month-first")
    fixed = read_events(ambiguous, crs="local:m", time_format="%d/%m/%Y")
    assert [str(t)[:10] for t in fixed.time] == ["2017-02-01", "2017-04-03"]
    # year first is unambiguous
    ymd = _write(tmp_path, "time,x,y\n2017/02/01,1,2\n2017.2.13 10:00,1,2\n", "f.csv")
    assert [str(t)[:16] for t in read_events(ymd, crs="local:m").time] == [
        "2017-02-01T00:00", "2017-02-13T10:00"]


def test_iso_times_need_a_full_date(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,x,y\n2017-03-01,1,2\n2017,1,2\n2017-03,1,2\n")
    with pytest.raises(DataError, match=r"row 3, column 'time': '2017' is not a date.*full "
                                        r"date.*\(2 rows in all"):
        read_events(path, crs="local:m")


# --------------------------------------------------------------------------- file format
def test_a_latin1_byte_in_a_later_row_names_the_line(tmp_path: Path) -> None:
    rows = "".join(f"2017-01-{d:02d},1,2,ok\n" for d in range(1, 20)).encode()
    path = _write(tmp_path, b"time,x,y,category\n" + rows + b"2017-01-20,1,2,caf\xe9\n")
    for extra in ([], ["--skip-bad-rows"]):
        result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m", *extra])
        _refused(result, r"events.csv line 21: byte 0xe9 in '2017-01-20,1,2,caf.*' is not "
                         r"valid utf-8 text", r"--encoding \(latin-1")
    events = read_events(path, crs="local:m", encoding="latin-1")
    assert events.category is not None and events.category[-1] == "café"
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m", "--encoding",
                                 "latin-1", "--json"])
    assert result.exit_code == 0, result.output
    with pytest.raises(ParameterError, match="encoding 'klingon' is not one Python knows"):
        read_events(path, crs="local:m", encoding="klingon")


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("time,x,y\n2017-01-01,1,2\n2017-01-02,\"1,2\n2017-01-03,1,2\n",
         r"events.csv line 3: a quote \(\"\) opens a field that is never closed"),
        ("time,x,y\n2017-01-01,1,2\n2017-01-02,\"1,2\n2017-01-03,1,2\n2017-01-04,\"1\",2\n",
         r"events.csv line 3, column 'x': the value .* runs over several lines.*unbalanced "
         r"quote"),
        ("time,x,y\n2017-01-01,1,2\n2017-01-02,1,2,3\n",
         r"events.csv line 3: 4 fields where the header has 3"),
    ],
)
def test_broken_quotes_and_rows_name_the_line(tmp_path: Path, body: str, pattern: str) -> None:
    path = _write(tmp_path, body)
    for extra in ([], ["--skip-bad-rows"]):
        result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m", *extra])
        _refused(result, pattern)


@pytest.mark.parametrize(("sep", "shown"), [(";", ";"), ("\t", "\\\\t")])
def test_a_wrong_delimiter_is_named(tmp_path: Path, sep: str, shown: str) -> None:
    path = _write(tmp_path, sep.join(["time", "x", "y"]) + "\n"
                  + sep.join(["2017-01-01", "1.5", "2"]) + "\n")
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m"])
    _refused(result, rf"the delimiter looks wrong. Read it with --sep '{shown}'")
    given = ";" if sep == ";" else "\\t"
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m", "--sep", given,
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert read_events(path, crs="local:m", sep=sep).x[0] == 1.5


@pytest.mark.parametrize(
    ("x", "crs", "pattern"),
    [
        ("1e308", "local:m", r"column 'x': '1e308' is not a plausible coordinate"),
        ("inf", "local:m", r"column 'x': 'inf' is infinite"),
        ("-Infinity", "local:m", r"column 'x': '-Infinity' is infinite"),
        ("nan", "local:m", r"column 'x': 'nan' is not a number"),
        ("1e308", "EPSG:26971", r"column 'x': '1e308' lies outside the area where EPSG:26971"),
    ],
)
def test_impossible_coordinates_are_row_errors(tmp_path: Path, x: str, crs: str,
                                               pattern: str) -> None:
    good = "".join(f"2016-01-0{d},{350000 + d},{578000 + d}\n" for d in range(1, 5))
    path = _write(tmp_path, "time,x,y\n" + good + f"2016-01-05,{x},578000\n")
    with pytest.raises(DataError, match=r"events.csv row 6, " + pattern):
        read_events(path, crs=crs)
    assert len(read_events(path, crs=crs, skip_bad_rows=True)) == 4


def test_duplicated_column_names_are_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "time,x,y,x\n2017-01-01,1,2,3\n")
    result = runner.invoke(app, ["inspect", str(path), "--crs", "local:m"])
    _refused(result, r"events.csv line 1: the header names column 'x' 2 times \(fields 2, 4\)")
    cased = _write(tmp_path, "time,X,y,x\n2017-01-01,1,2,3\n", "cased.csv")
    with pytest.raises(DataError, match=r"names column 'X' 2 times"):
        read_events(cased, crs="local:m")
    # a duplicated column that is not read is harmless
    unused = _write(tmp_path, "time,x,y,note,note\n2017-01-01,1,2,a,b\n", "unused.csv")
    assert len(read_events(unused, crs="local:m")) == 1


def test_scan_intervals_take_calendar_months(tmp_path: Path, portland_csv: str) -> None:
    from placecast.clusters import scan_data_from_events

    events = read_events(portland_csv, crs="EPSG:2913")
    data = scan_data_from_events(events, at="2017-03-01", interval="1M", n_intervals=24)
    assert data.interval_labels[0] == ("2015/03/01", "2015/03/31")
    assert data.interval_labels[11] == ("2016/02/01", "2016/02/29")
    assert data.interval_labels[-1] == ("2017/02/01", "2017/02/28")
    # each case sits in the calendar month of its date, counted from March 2015
    kept = events.between("2015-03-01", "2017-03-01")
    stamps = pd.DatetimeIndex(kept.time)
    expected = np.sort((stamps.year - 2015) * 12 + stamps.month - 3)
    assert np.array_equal(np.sort(data.case_interval), expected)
    out = tmp_path / "scan"
    result = runner.invoke(app, ["scan", portland_csv, "--crs", "EPSG:2913", "--cell", "1km",
                                 "--interval", "1M", "--study-days", "730", "--at",
                                 "2017-03-01", "--permutations", "9", "--seed", "1",
                                 "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "Study period.......................: 2015/03/01 to 2017/02/28" in (
        out / "report.txt").read_text()
