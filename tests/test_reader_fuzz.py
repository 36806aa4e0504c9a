"""Property test of the events reader: random CSVs give events or placecast's own errors.

Random headers (duplicates, odd names), rows (dates in several forms and out of range,
offsets, numbers including inf, nan and 1e308, quotes, delimiters, line breaks), encodings
and stray bytes are fed to ``read_events`` with random options. Whatever comes in, only a
``PlacecastError`` may come out (never a traceback from pandas, pyproj or the codecs),
and every time that is accepted lies in the file: its date is written there.
"""

from __future__ import annotations

import re
import tempfile
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from placecast import ColumnMap, read_events
from placecast.exceptions import PlacecastError

DATES = st.dates(min_value=date(1500, 1, 1), max_value=date(9999, 12, 31))


@st.composite
def time_text(draw: st.DrawFn) -> str:
    day = draw(st.one_of(DATES, st.dates(min_value=date(2000, 1, 1),
                                         max_value=date(2030, 12, 31))))
    form = draw(st.sampled_from(["iso", "iso_time", "iso_offset", "iso_z", "dmy", "mdy",
                                 "year", "compact", "junk"]))
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    if form == "iso":
        return day.isoformat()
    if form == "iso_time":
        return f"{day.isoformat()} {hour:02d}:{minute:02d}"
    if form == "iso_offset":
        sign, off = draw(st.sampled_from("+-")), draw(st.integers(0, 14))
        return f"{day.isoformat()}T{hour:02d}:{minute:02d}:00{sign}{off:02d}:00"
    if form == "iso_z":
        return f"{day.isoformat()}T{hour:02d}:{minute:02d}Z"
    if form == "dmy":
        return day.strftime("%d/%m/%Y") if day.year >= 1000 else day.isoformat()
    if form == "mdy":
        return day.strftime("%m/%d/%Y") if day.year >= 1000 else day.isoformat()
    if form == "year":
        return str(day.year)
    if form == "compact":
        return f"{day.year:04d}{day.month:02d}{day.day:02d}"
    return draw(st.text(alphabet="0123456789-/:T Z+.", max_size=20))


NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**7, 10**7).map(str),
    st.floats(min_value=340_000, max_value=370_000).map(lambda v: f"{v:.3f}"),
    st.sampled_from(["1e308", "-1e308", "inf", "nan", "NA", "", "abc", "1,5", "0", "1e-400"]),
)
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)),
               max_size=12)
FIELD = st.one_of(time_text(), NUMBERS, TEXT,
                  st.sampled_from(['"', '""', '"a,b"', "a\nb", '"x\ny"', ";", "\t", "caf\xe9"]))
HEADERS = st.one_of(
    st.sampled_from([["time", "x", "y"], ["date", "X", "Y", "category"],
                     ["occ_date", "x_coordina", "y_coordina"], ["time", "x", "y", "x"],
                     ["time", "longitude", "latitude"], ["date", "time", "lon", "lat"],
                     ["t", "x", "y", "weight"], ["time;x;y"]]),
    st.lists(st.sampled_from(["time", "x", "y", "lat", "lon", "date", "a", "X", "weight",
                              "category", ""]), min_size=1, max_size=5),
)


CLEAN = {  # header -> (CRS, x values, y values)
    ("time", "x", "y"): ("local:m", st.floats(-5e3, 5e3), st.floats(-5e3, 5e3)),
    ("date", "X", "Y", "category"): ("EPSG:26971", st.floats(340_000, 370_000),
                                     st.floats(550_000, 600_000)),
    ("occ_date", "longitude", "latitude"): (None, st.floats(-74.3, -73.7),
                                            st.floats(40.5, 40.9)),
}


@st.composite
def clean_csv(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """Mostly well-formed files, so that the accepted times can be checked."""
    header = draw(st.sampled_from(sorted(CLEAN)))
    crs, xs, ys = CLEAN[header]
    rows = []
    for _ in range(draw(st.integers(1, 8))):
        cells = [draw(time_text()), f"{draw(xs):.3f}", f"{draw(ys):.6f}"]
        if len(header) == 4:
            cells.append(draw(st.sampled_from(["BURGLARY", "caf\xe9", '"a,b"', ""])))
        if draw(st.integers(0, 9)) == 0:  # now and then a bad field
            cells[draw(st.integers(0, len(cells) - 1))] = draw(FIELD)
        rows.append(",".join(cells))
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    text = ",".join(header) + "\n" + "\n".join(rows) + "\n"
    options: dict[str, object] = {
        "crs": crs,
        "timezone": draw(st.sampled_from([None, "UTC", "America/Los_Angeles"])),
        "time_format": draw(st.sampled_from([None, None, None, "%d/%m/%Y"])),
        "skip_bad_rows": draw(st.booleans()),
        "encoding": None if encoding == "utf-8" else encoding,
    }
    return text.encode(encoding, errors="replace"), options


@st.composite
def noisy_csv(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    """Anything: odd headers, ragged rows, quotes, stray bytes, mismatched encodings."""
    header = draw(HEADERS)
    n_rows = draw(st.integers(0, 8))
    width = len(header)
    rows = []
    for _ in range(n_rows):
        cells = [draw(FIELD) for _ in range(draw(st.sampled_from([width, width, width,
                                                                  width + 1, max(width - 1,
                                                                                 1)])))]
        if draw(st.booleans()):  # quote the way spreadsheet programs do
            cells = ['"' + c.replace('"', '""') + '"' for c in cells]
        rows.append(",".join(cells))
    text = ",".join(header) + "\n" + "\n".join(rows) + draw(st.sampled_from(["", "\n"]))
    encoding = draw(st.sampled_from(["utf-8", "latin-1", "utf-16", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.booleans()):  # a stray byte somewhere
        position = draw(st.integers(0, len(data)))
        data = data[:position] + draw(st.binary(min_size=1, max_size=2)) + data[position:]
    options: dict[str, object] = {
        "crs": draw(st.sampled_from([None, "local:m", "local:km", "EPSG:26971", "EPSG:2913",
                                     "EPSG:4326"])),
        "timezone": draw(st.sampled_from([None, "UTC", "America/Los_Angeles"])),
        "time_format": draw(st.sampled_from([None, None, "%d/%m/%Y", "%Y-%m-%d %H:%M",
                                             "days since 1960-01-01"])),
        "skip_bad_rows": draw(st.booleans()),
        "encoding": draw(st.sampled_from([None, None, "latin-1", "utf-16"])),
    }
    if draw(st.booleans()):
        options["columns"] = ColumnMap(time=draw(st.sampled_from([None, "time", "date"])))
    return data, options


def _dates_written(text: str) -> set[date]:
    """Every calendar date the text spells out, in any order a reader might take."""
    found: set[date] = set()

    def add(year: str, month: str, day: str) -> None:
        try:
            found.add(date(int(year), int(month), int(day)))
        except ValueError:
            pass

    for y, m, d in re.findall(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", text):
        add(y, m, d)
    for y, m, d in re.findall(r"(\d{4})(\d{2})(\d{2})", text):
        add(y, m, d)
    for a, b, y in re.findall(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})", text):
        add(y, a, b)
        add(y, b, a)
    return found


def _time_in_file(moment: np.datetime64, text: str, options: dict[str, object]) -> bool:
    fmt = options.get("time_format")
    if isinstance(fmt, str) and fmt.startswith("days since "):
        days = (moment - np.datetime64("1960-01-01")) / np.timedelta64(1, "D")
        numbers = []
        for token in re.split(r"[,\n\";\t]", text):
            try:
                numbers.append(float(token))
            except ValueError:
                continue
        return any(abs(days - v) <= 1e-6 * max(1.0, abs(v)) for v in numbers)
    day = pd.Timestamp(moment).date()
    # an offset time converted to another zone may move to the day before or after
    written = _dates_written(text)
    return any(day + timedelta(days=k) in written for k in (-1, 0, 1))


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.one_of(clean_csv(), noisy_csv()))
def test_random_csvs_give_events_or_placecast_errors(case: tuple[bytes, dict[str, object]]
                                                     ) -> None:
    data, options = case
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "events.csv"
        path.write_bytes(data)
        try:
            events = read_events(path, **options)  # type: ignore[arg-type]
        except PlacecastError:
            return
    text = data.decode(str(options.get("encoding") or "utf-8"), errors="replace")
    assert len(events) >= 1
    assert np.isfinite(events.x).all() and np.isfinite(events.y).all()
    for moment in events.time:
        assert _time_in_file(moment, text, options), (moment, text)
