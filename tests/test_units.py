"""Area units: grids, hexes, polygons, regions and aggregation against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from placecast import DataError, Events, aggregate, read_events
from placecast.events import SpatialReference
from placecast.pipeline import UnitSpec, build_units
from placecast.units import default_region, hex_grid, polygon_units, read_region, square_grid

LOCAL = SpatialReference("local:m")
SQ_MILE = 1609.344**2


@pytest.fixture(scope="module")
def portland(shared_data: Path) -> Events:
    return read_events(shared_data / "portland" / "burglary_2012-03_2017-05.csv",
                       crs="EPSG:2913")


@pytest.fixture(scope="module")
def portland_region_file(shared_data: Path) -> Path:
    return shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp"


def test_portland_region_is_the_nij_area(portland: Events, portland_region_file: Path) -> None:
    region = read_region(portland_region_file, portland.spatial_reference)
    assert shapely.area(region) / SQ_MILE == pytest.approx(147.7, abs=0.05)
    units = square_grid(region, 182.88, portland.spatial_reference)
    # every cell touches the region; cells are 600 ft squares
    assert np.allclose(units.area, 182.88**2)
    assert shapely.intersects(region, units.geometry).all()
    assert len(units) == 11985


def test_grid_assign_matches_point_in_polygon(portland: Events,
                                              portland_region_file: Path) -> None:
    region = read_region(portland_region_file, portland.spatial_reference)
    for rotation in (0.0, 17.0):
        units = square_grid(region, 500.0, portland.spatial_reference, rotation=rotation)
        sample = portland.select(np.arange(0, len(portland), 7))
        index = units.assign(sample.x, sample.y)
        points = shapely.points(sample.x, sample.y)
        for i in np.flatnonzero(index >= 0)[:200]:
            assert shapely.covers(units.geometry[index[i]], points[i])
        # points not assigned lie in no cell
        tree = shapely.STRtree(units.geometry)
        for i in np.flatnonzero(index < 0):
            hits = tree.query(points[i], predicate="contains_properly")
            assert len(hits) == 0


def test_aggregate_matches_brute_force(portland: Events, portland_region_file: Path) -> None:
    units = build_units(portland, UnitSpec(cell_size=1000.0, region=portland_region_file))
    edges = np.array(["2016-01-01", "2016-02-01", "2016-03-01", "2016-04-01"],
                     dtype="datetime64[ns]")
    counts = aggregate(portland, units, edges)
    assert counts.shape == (len(units), 3)
    brute = np.zeros_like(counts)
    boxes = units.geometry
    tree = shapely.STRtree(boxes)
    for t, x, y in zip(portland.time, portland.x, portland.y, strict=True):
        b = np.searchsorted(edges, t, side="right") - 1
        if not 0 <= b < 3:
            continue
        # lower-left-inclusive cell rule, like floor division
        for j in tree.query(shapely.Point(x, y), predicate="intersects"):
            xmin, ymin, xmax, ymax = shapely.bounds(boxes[j])
            if xmin <= x < xmax and ymin <= y < ymax:
                brute[j, b] += 1
                break
    np.testing.assert_array_equal(counts, brute)
    assert counts.sum() == len(portland.between("2016-01-01", "2016-04-01"))


@settings(max_examples=25, deadline=None)
@given(dx=st.floats(-1e5, 1e5), dy=st.floats(-1e5, 1e5), seed=st.integers(0, 1000))
def test_aggregation_is_invariant_to_translation(dx: float, dy: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    x, y = rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)
    times = np.datetime64("2020-01-01") + rng.integers(0, 30, n).astype("timedelta64[D]")
    region = shapely.box(0, 0, 1000, 1000)

    def counts(ox: float, oy: float) -> np.ndarray:
        events = Events.from_arrays(times, x + ox, y + oy)
        units = square_grid(shapely.affinity.translate(region, ox, oy), 100.0, LOCAL)
        return aggregate(events, units)

    np.testing.assert_array_equal(counts(0.0, 0.0), counts(dx, dy))


def test_default_region_is_buffered_hull() -> None:
    events = Events.from_arrays(["2020-01-01"] * 3, [0.0, 100.0, 0.0], [0.0, 0.0, 100.0])
    region = default_region(events, 10.0)
    assert shapely.contains(region, shapely.points(events.xy)).all()
    assert shapely.area(region) > 5000.0


def test_hex_units_cover_the_events(portland: Events, portland_region_file: Path) -> None:
    region = read_region(portland_region_file, portland.spatial_reference)
    units = hex_grid(region, 800.0, portland.spatial_reference)
    assert units.kind == "hex" and units.description["h3_resolution"] == 8
    sample = portland.select(np.arange(0, len(portland), 25))
    index = units.assign(sample.x, sample.y)
    assert (index >= 0).mean() > 0.99
    inside = index >= 0
    # the assigned hexagon contains the point (up to projection of straight edges)
    d = shapely.distance(units.geometry[index[inside]], shapely.points(sample.xy[inside]))
    assert np.max(d) < 1.0


def test_polygon_units_from_districts(portland: Events, portland_region_file: Path) -> None:
    units = polygon_units(portland_region_file, portland.spatial_reference,
                          id_column="DISTRICT")
    counts = aggregate(portland, units)
    assert counts.sum() == pytest.approx(len(portland), abs=5)
    with pytest.raises(DataError, match="no column 'NOPE'"):
        polygon_units(portland_region_file, portland.spatial_reference, id_column="NOPE")


def test_region_file_without_polygon(tmp_path: Path, portland: Events) -> None:
    import geopandas as gpd

    path = tmp_path / "points.geojson"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy([1, 2], [3, 4]), crs="EPSG:4326").to_file(path)
    with pytest.raises(DataError, match=r"holds no polygon \(found Point\)"):
        read_region(path, portland.spatial_reference)
    with pytest.raises(DataError, match="no such region file"):
        read_region(tmp_path / "missing.shp", portland.spatial_reference)
