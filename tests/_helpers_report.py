"""Shared set-up for the report tests: the Portland demo forecast and a small real backtest."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from scipy import stats

from placecast.events import Events
from placecast.forecast import Forecast, TimeWindow
from placecast.pipeline import UnitSpec, build_units, run_forecast
from placecast.quantities import parse_area, parse_length
from placecast.units import Units

PORTLAND_CRS = "EPSG:2913"
AT, HORIZON, CELL, BUDGET = "2017-03-01", "7d", "600ft", "0.25sqmi"


@functools.cache
def portland(shared_data: Path) -> tuple[Events, Units, Forecast]:
    """The ``placecast demo`` set-up on the real data: kde, 600 ft cells, police districts."""
    from placecast.io import read_events

    folder = shared_data / "portland"
    events = read_events(folder / "burglary_2012-03_2017-05.csv", crs=PORTLAND_CRS)
    units = build_units(events, UnitSpec(
        cell_size=parse_length(CELL),
        region=folder / "police_districts" / "Portland_Police_Districts.shp"))
    forecast = run_forecast(events, model="kde", at=AT, horizon=HORIZON, units=units)
    return events, units, forecast


def count_in_polygons(events: Events, polygons: np.ndarray) -> np.ndarray:
    """Brute force: events inside (or on the lower/left edge of) each polygon, by shapely."""
    points = shapely.points(events.x, events.y)
    tree = shapely.STRtree(points)
    pairs = tree.query(polygons, predicate="intersects")
    counts = np.zeros(len(polygons), dtype=int)
    np.add.at(counts, pairs[0], 1)
    return counts


@functools.cache
def portland_backtest(shared_data: Path) -> pd.DataFrame:
    """A real two-model backtest over five weekly origins (3 sq mi), scored here."""
    events, units, _ = portland(shared_data)
    budget = parse_area("3sqmi").resolve(units.region_area)
    rows = []
    for origin in pd.date_range("2017-01-04", periods=5, freq="7D"):
        window = TimeWindow.starting(origin, HORIZON)
        index = units.assign(*window_xy(events, window))
        observed = np.bincount(index[index >= 0], minlength=len(units)).astype(float)
        n_events = observed.sum()
        for model in ("naive", "kde"):
            forecast = run_forecast(events, model=model, at=origin, horizon=HORIZON,
                                    units=units)
            flagged = forecast.top_units(budget)
            hits = observed[flagged].sum()
            best = np.sort(observed)[::-1][:len(flagged)].sum()
            area = units.area[flagged].sum()
            rate = hits / n_events
            rows.append({
                "origin": origin, "horizon": HORIZON, "model": model,
                "n_events": int(n_events), "n_flagged_units": len(flagged),
                "flagged_area": area, "region_area": units.region_area, "hits": int(hits),
                "hit_rate": rate, "pai": rate / (area / units.region_area),
                "pei_star": hits / best if best else np.nan,
                "log_score": float(stats.poisson.logpmf(
                    observed, np.maximum(forecast.intensity, 1e-12)).sum()),
            })
    return pd.DataFrame(rows)


def window_xy(events: Events, window: TimeWindow) -> tuple[np.ndarray, np.ndarray]:
    mask = (events.time >= window.start) & (events.time < window.end)
    return events.x[mask], events.y[mask]


def map_payload(document: str) -> dict:
    """The map data embedded in a report."""
    match = re.search(r'<script type="application/json" id="placecast-data">(.*?)</script>',
                      document, re.S)
    assert match, "no map data in the report"
    return json.loads(match.group(1))


def decode_cells(payload: dict) -> list[dict]:
    """The page's ``decodeCells`` in Python: features with ``properties`` and ``geometry``."""
    c = payload["cells"]
    grid = c.get("grid")
    features = []
    for i in range(len(c["r"])):
        if grid:
            col, row = grid["col"][i], grid["row"][i]

            def node(cc, rr, grid=grid):
                k = 2 * ((rr - grid["r0"]) * (grid["nc"] + 1) + (cc - grid["c0"]))
                return grid["nodes"][k], grid["nodes"][k + 1]

            geometry = shapely.Polygon([node(col, row), node(col + 1, row),
                                        node(col + 1, row + 1), node(col, row + 1)])
            unit = f"c{col}_r{row}"
        else:
            geometry = shapely.from_geojson(json.dumps(c["geometries"][i]))
            unit = c["id"][i]
        props = {"id": unit, "r": c["r"][i], "v": c["v"][i], "c": c["c"][i]}
        for key in ("n", "o", "h"):
            if key in c and c[key][i] is not None:
                props[key] = c[key][i]
        if "x" in c and c["x"][i]:  # forecast --explain: [reason, effect] pairs
            props["x"] = c["x"][i]
        features.append({"properties": props, "geometry": geometry})
    for i in c["f"]:
        features[i]["properties"]["f"] = 1
    return features
