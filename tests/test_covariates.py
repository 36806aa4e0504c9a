"""Covariate layers: parsing, reading with checks, and per-unit features vs slow loops."""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from scipy.special import ndtr

from placecast.covariates import (
    CovariateLayer,
    covariate_features,
    parse_covariate,
    read_covariate,
)
from placecast.events import SpatialReference
from placecast.exceptions import DataError, DataQualityWarning, ParameterError
from placecast.units import Units, hex_grid, polygon_units, square_grid

UTM = SpatialReference("EPSG:32610")
X0, Y0 = 525_000.0, 5_040_000.0  # Portland, UTM 10N metres
FEET = SpatialReference("EPSG:2913", 0.3048)


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize(("spec", "how", "scales", "attribute", "name"), [
    ("bars.gpkg", "auto", (), None, "bars"),
    ("bars.gpkg:count:100m,400m", "count", (100.0, 400.0), None, "bars"),
    ("bars.gpkg:density", "density", (), None, "bars"),
    ("bars.gpkg:600ft:count", "count", (182.88,), None, "bars"),
    ("streets.shp:length", "length", (), None, "streets"),
    ("streets.shp:len:0.5km", "length", (500.0,), None, "streets"),
    ("streets.shp:dist", "distance", (), None, "streets"),
    ("zoning.gpkg:attr=commercial_share", "auto", (), "commercial_share", "zoning"),
    ("zoning.gpkg:mean:attr=commercial_share", "mean", (), "commercial_share", "zoning"),
    ("parks.geojson:cover:name=green space", "share", (), None, "green_space"),
    ("data/2019 Bus-Stops.gpkg", "auto", (), None, "cov_2019_bus_stops"),
])
def test_parse_covariate_examples(spec, how, scales, attribute, name):
    layer = parse_covariate(spec)
    assert layer.path == Path(spec.split(":")[0])
    assert (layer.how, layer.scales, layer.attribute, layer.name) == (how, scales, attribute,
                                                                       name)


@pytest.mark.parametrize(("spec", "message"), [
    ("bars.gpkg:count:400", r"scale '400' has no unit; add one \(e.g. 400m"),
    ("bars.gpkg:100m,400", r"scale '400' has no unit"),
    ("bars.gpkg:count:400parsecs", r"unknown unit 'parsecs'"),
    ("bars.gpkg:cnt", r"bars.gpkg:cnt.*unknown option 'cnt'"),
    ("bars.gpkg:count:density", r"two ways to summarise"),
    ("bars.gpkg:dist:400m", r"how='distance' takes no scales"),
    ("zoning.gpkg:mean", r"how='mean' needs attr=COLUMN"),
    ("zoning.gpkg:count:attr=x", r"does not go with how='count'"),
    ("bars.gpkg:100m:200m", r"give the scales once"),
    ("bars.gpkg:183m,600ft", r"two scales round to the same metre"),
    ("bars.gpkg::count", r"empty option"),
    (":count", r"no file before ':'"),
    ("bars.gpkg:attr=", r"give attr= once, with a value"),
])
def test_parse_covariate_errors(spec, message):
    with pytest.raises(ParameterError, match=message):
        parse_covariate(spec)


def test_covariate_layer_scales_in_python():
    assert CovariateLayer("bars.gpkg", "count", ("600ft", 400)).scales == (182.88, 400.0)
    assert CovariateLayer("bars.gpkg", "count", 250).scales == (250.0,)
    with pytest.raises(ParameterError, match=r"covariate 'bars.gpkg': scale '400' has no unit"):
        CovariateLayer("bars.gpkg", "count", ("400",))
    with pytest.raises(ParameterError, match=r"covariate bars.gpkg: scales must be positive"):
        CovariateLayer("bars.gpkg", "count", (-5.0,))
    with pytest.raises(ParameterError, match=r"covariate bars.gpkg: unknown how 'sum'"):
        CovariateLayer("bars.gpkg", "sum")


def test_parse_covariate_path_with_colon(tmp_path):
    odd = tmp_path / "bars:2019.gpkg"
    odd.write_text("")
    layer = parse_covariate(f"{odd}:count")
    assert layer.path == odd and layer.how == "count"
    assert parse_covariate(str(odd)).path == odd
    # a missing file with ':' in its name: the part before the first ':' is the file
    assert parse_covariate(f"{tmp_path}/nothing.gpkg:count").path == tmp_path / "nothing.gpkg"
    plain = tmp_path / "a.gpkg"
    plain.write_text("")
    (tmp_path / "a.gpkg:count").write_text("")
    with pytest.raises(ParameterError, match=r"ambiguous: both .*a.gpkg' and .*a.gpkg:count'"):
        parse_covariate(f"{plain}:count")


# ---------------------------------------------------------------------- test layers
def _points(rng: np.random.Generator, n: int, box: tuple[float, float, float, float]
            ) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.column_stack([rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)])


def _write(tmp_path: Path, name: str, geometry, crs="EPSG:32610", **columns) -> Path:
    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'crs' was not provided", UserWarning)
        gpd.GeoDataFrame(columns, geometry=list(geometry), crs=crs).to_file(path)
    return path


@pytest.fixture(scope="module")
def layers(tmp_path_factory):
    """Points, lines and polygons around a 400 m x 300 m patch, in UTM metres."""
    tmp_path = tmp_path_factory.mktemp("covariate_layers")
    rng = np.random.default_rng(7)
    box = (X0 - 150, Y0 - 150, X0 + 550, Y0 + 450)
    points = shapely.points(_points(rng, 120, box))
    starts = _points(rng, 25, box)
    angle = rng.uniform(0, np.pi, 25)
    ends = starts + rng.uniform(50, 300, (25, 1)) * np.column_stack([np.cos(angle),
                                                                     np.sin(angle)])
    lines = list(shapely.linestrings(np.stack([starts, ends], axis=1)))
    lines.append(shapely.MultiLineString([[(X0 + 10, Y0 + 10), (X0 + 390, Y0 + 290)],
                                          [(X0 - 40, Y0 + 200), (X0 + 300, Y0 + 205)]]))
    # zones: a tiling of four rectangles with values, plus two overlapping discs
    zones = [shapely.box(X0 - 100, Y0 - 100, X0 + 170, Y0 + 120),
             shapely.box(X0 + 170, Y0 - 100, X0 + 500, Y0 + 120),
             shapely.box(X0 - 100, Y0 + 120, X0 + 230, Y0 + 380)]
    parks = [shapely.Point(X0 + 100, Y0 + 100).buffer(90),
             shapely.Point(X0 + 160, Y0 + 140).buffer(70),
             shapely.box(X0 + 300, Y0 + 200, X0 + 360, Y0 + 230)]
    return {
        "points": _write(tmp_path, "bars.gpkg", points),
        "lines": _write(tmp_path, "streets.geojson", lines),
        "zones": _write(tmp_path, "zoning.shp", zones, commercial=[0.2, 0.9, 0.5]),
        "parks": _write(tmp_path, "parks.gpkg", parks),
    }


def _grid(rotation: float = 0.0) -> Units:
    return square_grid(shapely.box(X0, Y0, X0 + 400, Y0 + 300), 50.0, UTM,
                       origin=(X0, Y0), rotation=rotation)


def _as_polygon_units(units: Units) -> Units:
    return Units(kind="polygons", unit_id=units.unit_id, geometry=units.geometry,
                 region=units.region, spatial_reference=units.spatial_reference)


def _hexes() -> Units:
    return hex_grid(shapely.box(X0, Y0, X0 + 400, Y0 + 300), 50.0, UTM)


UNIT_KINDS = {
    "grid": _grid,
    "rotated grid": lambda: _grid(rotation=25.0),
    "polygons": lambda: _as_polygon_units(_grid(rotation=10.0)),
    "hex": _hexes,
}


# ---------------------------------------------------------------------- slow references
def _slow_points(units: Units, xy: np.ndarray, scales) -> dict[str, np.ndarray]:
    points = [shapely.Point(p) for p in xy]
    out: dict[str, list[float]] = {f"count_{r}": [] for r in scales}
    out["dist"] = []
    for unit in units.geometry:
        distances = np.array([unit.distance(p) for p in points])
        for r in scales:
            out[f"count_{r}"].append(float((distances <= r).sum()))
        centroid = unit.centroid
        out["dist"].append(min(centroid.distance(p) for p in points))
    return {k: np.array(v) for k, v in out.items()}


def _slow_density(units: Units, xy: np.ndarray, bandwidth: float) -> np.ndarray:
    """Mean Gaussian density over each unit, per km², by fine sampling of the unit."""
    out = []
    for unit in units.geometry:
        x0, y0, x1, y1 = unit.bounds
        gx, gy = np.meshgrid(np.linspace(x0, x1, 41), np.linspace(y0, y1, 41))
        inside = shapely.contains_xy(unit, gx, gy)
        sx, sy = gx[inside], gy[inside]
        total = np.zeros(len(sx))
        for px, py in xy:
            total += np.exp(-((sx - px) ** 2 + (sy - py) ** 2) / (2 * bandwidth**2))
        out.append(total.mean() / (2 * np.pi * bandwidth**2) * 1e6)
    return np.array(out)


def _exact_square_density(units: Units, xy: np.ndarray, bandwidth: float) -> np.ndarray:
    """Gaussian mass over axis-aligned square cells (erf), divided by the cell area."""
    out = []
    for unit in units.geometry:
        x0, y0, x1, y1 = unit.bounds
        mass = sum((ndtr((x1 - px) / bandwidth) - ndtr((x0 - px) / bandwidth))
                   * (ndtr((y1 - py) / bandwidth) - ndtr((y0 - py) / bandwidth))
                   for px, py in xy)
        out.append(mass / unit.area * 1e6)
    return np.array(out)


def _slow_lines(units: Units, lines, scales) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {"len": [], "dist": []}
    for r in scales:
        out[f"len_{r}"] = []
        out[f"crossings_{r}"] = []
    for unit in units.geometry:
        out["len"].append(sum(unit.intersection(line).length for line in lines))
        out["dist"].append(min(unit.centroid.distance(line) for line in lines))
        for r in scales:
            zone = unit.buffer(r, quad_segs=256)
            out[f"len_{r}"].append(sum(zone.intersection(line).length for line in lines))
            out[f"crossings_{r}"].append(sum(
                len(shapely.get_parts(zone.boundary.intersection(line))) for line in lines))
    return {k: np.array(v, dtype=float) for k, v in out.items()}


def _slow_polygons(units: Units, polygons, values=None) -> dict[str, np.ndarray]:
    union = shapely.union_all(polygons)
    share, mean, dist = [], [], []
    for unit in units.geometry:
        share.append(unit.intersection(union).area / unit.area)
        dist.append(min(unit.centroid.distance(p) for p in polygons))
        if values is not None:
            areas = np.array([unit.intersection(p).area for p in polygons])
            mean.append(float(areas @ values / areas.sum()) if areas.sum() > 0 else 0.0)
    return {"share": np.array(share), "mean": np.array(mean), "dist": np.array(dist)}


def _read_shapes(path: Path) -> tuple[list, np.ndarray | None]:
    frame = gpd.read_file(path)
    values = frame["commercial"].to_numpy(float) if "commercial" in frame else None
    return list(frame.geometry), values


# ---------------------------------------------------------------------- features vs slow
@pytest.mark.parametrize("kind", list(UNIT_KINDS))
def test_point_features_match_slow_loops(layers, kind):
    units = UNIT_KINDS[kind]()
    scales = (40.0, 130.0)
    layer = CovariateLayer(layers["points"], "auto", scales)
    table = covariate_features(units, [layer])
    assert table.names == ["bars_count_40m", "bars_count_130m", "bars_dist",
                           "bars_density_40m", "bars_density_130m"]
    frame = table.to_frame()
    assert list(frame.index) == list(units.unit_id)
    xy = shapely.get_coordinates(read_covariate(layer, UTM).geometry)
    slow = _slow_points(units, xy, scales)
    np.testing.assert_array_equal(frame["bars_count_40m"], slow["count_40.0"])
    np.testing.assert_array_equal(frame["bars_count_130m"], slow["count_130.0"])
    np.testing.assert_allclose(frame["bars_dist"], slow["dist"], rtol=1e-9, atol=1e-6)
    for r in scales:
        reference = _slow_density(units, xy, r)
        got = frame[f"bars_density_{r:.0f}m"].to_numpy()
        # raster integration on pixels of r/4, then the mean over the pixel centres of
        # units.raster() (a quarter of the unit size) inside each unit: exact for a grid
        # aligned with that raster, an uneven sample of rotated squares and hexagons
        rtol = 0.02 if kind == "grid" else 0.05
        np.testing.assert_allclose(got, reference, rtol=rtol, atol=0.01 * reference.max())
        assert np.corrcoef(got, reference)[0, 1] > 0.995


def test_density_against_exact_erf_integral(layers):
    units = _grid()
    xy = shapely.get_coordinates(read_covariate(CovariateLayer(layers["points"]), UTM).geometry)
    for r in (30.0, 100.0):
        table = covariate_features(units, [CovariateLayer(layers["points"], "density", (r,))])
        exact = _exact_square_density(units, xy, r)
        np.testing.assert_allclose(table.values[:, 0], exact, rtol=0.015,
                                   atol=0.01 * exact.max())


@pytest.mark.parametrize("kind", list(UNIT_KINDS))
def test_line_features_match_slow_loops(layers, kind):
    units = UNIT_KINDS[kind]()
    scales = (32.0, 96.0)
    table = covariate_features(units, [CovariateLayer(layers["lines"], "auto", scales)])
    assert table.names == ["streets_len", "streets_len_32m", "streets_len_96m", "streets_dist"]
    lines, _ = _read_shapes(layers["lines"])
    slow = _slow_lines(units, lines, scales)
    frame = table.to_frame()
    np.testing.assert_allclose(frame["streets_len"], slow["len"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(frame["streets_dist"], slow["dist"], rtol=1e-9, atol=1e-6)
    assert slow["len"].max() > 0
    for r in scales:
        # lines are cut into pieces of at most r/8, each counted at its midpoint: an error
        # of at most half a piece wherever a line crosses the edge of the r-zone (plus the
        # zone's polygonal approximation in the slow version)
        bound = slow[f"crossings_{r}"] * r / 16.0 + 0.5
        error = np.abs(frame[f"streets_len_{r:.0f}m"].to_numpy() - slow[f"len_{r}"])
        assert (error <= bound).all(), (error - bound).max()
        assert (slow[f"len_{r}"] > 0).mean() > 0.8


@pytest.mark.parametrize("kind", list(UNIT_KINDS))
def test_polygon_features_match_slow_loops(layers, kind):
    units = UNIT_KINDS[kind]()
    table = covariate_features(units, [
        CovariateLayer(layers["zones"], attribute="commercial"),
        CovariateLayer(layers["parks"]),
    ])
    assert table.names == ["zoning_commercial_mean", "zoning_share", "parks_share", "parks_dist"]
    frame = table.to_frame()
    zones, values = _read_shapes(layers["zones"])
    slow = _slow_polygons(units, zones, values)
    np.testing.assert_allclose(frame["zoning_share"], slow["share"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(frame["zoning_commercial_mean"], slow["mean"], rtol=1e-9,
                               atol=1e-12)
    assert (slow["share"] < 1).any() and (slow["share"] == 1).any()
    parks, _ = _read_shapes(layers["parks"])
    slow_parks = _slow_polygons(units, parks)
    # the two discs overlap: the share counts their union once
    assert (frame["parks_share"] > 0).sum() > 3
    np.testing.assert_allclose(frame["parks_share"], slow_parks["share"], atol=1e-9)
    np.testing.assert_allclose(frame["parks_dist"], slow_parks["dist"], rtol=1e-9, atol=1e-6)


def test_default_scales_follow_the_unit_size(layers):
    units = _grid()
    table = covariate_features(units, [CovariateLayer(layers["points"], "count")])
    assert table.names == ["bars_count_50m", "bars_count_100m", "bars_count_200m"]
    assert table.values.shape == (len(units), 3)
    assert np.isfinite(table.values).all()
    assert len(table.descriptions) == 3 and "within 50 m" in table.descriptions[0]


# ---------------------------------------------------------------------- CRS
def test_layer_in_another_crs_is_reprojected_into_feet_crs(tmp_path):
    """EPSG:2913 is in international feet: a layer in lon/lat and the same layer in
    EPSG:2913 must give the same features, and distances must come out in metres."""
    rng = np.random.default_rng(3)
    x0, y0 = 7_650_000 * 0.3048, 680_000 * 0.3048  # central Portland, metres
    units = square_grid(shapely.box(x0, y0, x0 + 1500, y0 + 1200), 150.0, FEET)
    metres = _points(rng, 300, (x0 - 300, y0 - 300, x0 + 1800, y0 + 1500))
    feet = shapely.points(metres / 0.3048)
    in_feet = _write(tmp_path, "bars.gpkg", feet, crs="EPSG:2913")
    frame = gpd.read_file(in_feet).to_crs("EPSG:4326")
    in_degrees = tmp_path / "bars_lonlat.geojson"
    frame.to_file(in_degrees)
    lines = shapely.linestrings(np.stack([metres[:40], metres[40:80]], axis=1) / 0.3048)
    lines_feet = _write(tmp_path, "streets.shp", lines, crs="EPSG:2913")
    lines_other = tmp_path / "streets_utm.gpkg"
    gpd.read_file(lines_feet).to_crs("EPSG:32610").to_file(lines_other)

    scales = (150.0, 300.0)
    a = covariate_features(units, [CovariateLayer(in_feet, "auto", scales, name="bars"),
                                   CovariateLayer(lines_feet, "auto", scales, name="st")])
    b = covariate_features(units, [CovariateLayer(in_degrees, "auto", scales, name="bars"),
                                   CovariateLayer(lines_other, "auto", scales, name="st")])
    assert a.names == b.names
    assert read_covariate(CovariateLayer(in_degrees), FEET).source_crs == "EPSG:4326"
    np.testing.assert_allclose(a.values, b.values, rtol=1e-6, atol=1e-3)
    # the same features straight from the metre coordinates (feet read as metres would fail)
    from scipy.spatial import cKDTree

    distance, _ = cKDTree(metres).query(units.centroids)
    np.testing.assert_allclose(a.to_frame()["bars_dist"], distance, rtol=1e-9)
    assert a.to_frame()["st_len"].sum() > 0


def test_local_grid_takes_a_layer_without_crs(tmp_path):
    """On a local grid in km, a layer without CRS is in km too."""
    units = square_grid(shapely.box(0, 0, 3000, 2000), 1000.0,
                        SpatialReference("local:km", 1000.0))
    path = _write(tmp_path, "bars.gpkg", shapely.points([[0.5, 0.5], [2.5, 1.5]]), crs=None)
    table = covariate_features(units, [CovariateLayer(path, "distance")])
    expected = np.hypot(units.centroids[:, 0] - 500, units.centroids[:, 1] - 500)
    expected = np.minimum(expected, np.hypot(units.centroids[:, 0] - 2500,
                                             units.centroids[:, 1] - 1500))
    np.testing.assert_allclose(table.values[:, 0], expected)


def test_portland_districts_as_a_polygon_layer(shared_data):
    """Real polygons: the covered area summed over 1 km cells equals the districts' area."""
    districts = shared_data / "portland" / "police_districts" / "Portland_Police_Districts.shp"
    units = polygon_units(districts, FEET)
    grid = square_grid(units.region, 1000.0, FEET)
    table = covariate_features(grid, [CovariateLayer(districts, "share", name="districts")])
    covered = float((table.values[:, 0] * grid.area).sum())
    assert covered == pytest.approx(shapely.area(units.region), rel=1e-6)
    assert 0.0 < table.values.min() and table.values.max() == pytest.approx(1.0)


def test_portland_burglaries_counted_around_districts(shared_data, tmp_path):
    """Real concave district polygons as units, real burglary points (EPSG:2913 feet) as a
    layer: counts within r of each district match a per-district shapely loop."""
    folder = shared_data / "portland"
    units = polygon_units(folder / "police_districts" / "Portland_Police_Districts.shp", FEET)
    table = pd.read_csv(folder / "burglary_2012-03_2017-05.csv")
    table = table[table["occ_date"].str.startswith("2016")]
    path = tmp_path / "burglary_2016.gpkg"
    gpd.GeoDataFrame(geometry=gpd.points_from_xy(table["x_coordina"], table["y_coordina"]),
                     crs="EPSG:2913").to_file(path)
    scales = (200.0, 800.0)
    features = covariate_features(units, [CovariateLayer(path, "count", scales)]).to_frame()
    points = shapely.points(table[["x_coordina", "y_coordina"]].to_numpy() * 0.3048)
    for r in scales:
        slow = [int((shapely.distance(unit, points) <= r).sum()) for unit in units.geometry]
        np.testing.assert_array_equal(features[f"burglary_2016_count_{r:.0f}m"], slow)
    assert features["burglary_2016_count_800m"].sum() > len(table)  # neighbours overlap


# ---------------------------------------------------------------------- errors
def test_read_errors_name_the_file(tmp_path):
    points = shapely.points([[X0, Y0], [X0 + 10, Y0 + 10]])

    def fails(layer: CovariateLayer, message: str, sref=UTM) -> None:
        with pytest.raises(DataError, match=message) as info:
            read_covariate(layer, sref)
        assert str(layer.path) in str(info.value)

    fails(CovariateLayer(tmp_path / "none.gpkg"), r"no such covariate file")
    garbage = tmp_path / "garbage.gpkg"
    garbage.write_text("not a geopackage")
    fails(CovariateLayer(garbage), r"could not read the covariate layer")
    empty = tmp_path / "empty.gpkg"
    gpd.GeoDataFrame({"a": []}, geometry=[], crs="EPSG:32610").to_file(empty)
    fails(CovariateLayer(empty), r"has no features")
    no_crs = _write(tmp_path, "nocrs.shp", points, crs=None)
    fails(CovariateLayer(no_crs), r"has no CRS .*set its CRS")
    pts = _write(tmp_path, "bars.gpkg", points)
    fails(CovariateLayer(pts, "length"), r"how='length' does not apply to a layer of points; "
                                         r"for points use auto, count, distance, density")
    fails(CovariateLayer(pts, attribute="x"), r"needs polygons, but the layer holds points")
    fails(CovariateLayer(pts), r"has CRS EPSG:32610 but the events are on the local grid",
          sref=SpatialReference("local:m"))
    mixed = tmp_path / "mixed.geojson"
    gpd.GeoDataFrame(geometry=[shapely.Point(X0, Y0), shapely.LineString([(X0, Y0),
                                                                           (X0 + 5, Y0)])],
                     crs="EPSG:32610").to_file(mixed)
    fails(CovariateLayer(mixed), r"mixes geometry types \(1 lines, 1 points of 2 features\)")
    nulls = tmp_path / "nulls.geojson"
    gpd.GeoDataFrame({"a": [1, 2, 3]}, geometry=[shapely.Point(X0, Y0), None, None],
                     crs="EPSG:32610").to_file(nulls)
    fails(CovariateLayer(nulls), r"2 of 3 features have no geometry")
    zones = _write(tmp_path, "zones.gpkg", [shapely.box(X0, Y0, X0 + 9, Y0 + 9)] * 2,
                   kind=["a", "b"], level=[1.0, np.nan])
    fails(CovariateLayer(zones, attribute="share"), r"no column 'share' for attr= "
                                                    r"\(columns: kind, level\)")
    fails(CovariateLayer(zones, attribute="kind"), r"column 'kind' is not numeric \(e.g. 'a'\)"
                                                   r".*numeric columns: level")
    fails(CovariateLayer(zones, attribute="level"), r"'level' has 1 missing or infinite")
    fails(CovariateLayer(zones, scales=(100.0,)), r"a polygon layer takes no scales")
    off = _write(tmp_path, "off.geojson", shapely.points([[-122.6, 45.5], [0.0, 95.0]]),
                 crs="EPSG:4326")
    fails(CovariateLayer(off), r"1 vertices could not be reprojected from EPSG:4326 to "
                               r"EPSG:2913", sref=FEET)
    two = tmp_path / "two.gpkg"
    gpd.GeoDataFrame(geometry=points, crs="EPSG:32610").to_file(two, layer="bars")
    gpd.GeoDataFrame(geometry=points, crs="EPSG:32610").to_file(two, layer="pubs")
    fails(CovariateLayer(two), r"holds 2 layers \(bars, pubs\); choose one with layer=NAME")
    fails(CovariateLayer(two, layer="cafes"), r"no layer 'cafes' \(layers: bars, pubs\)")
    assert len(read_covariate(parse_covariate(f"{two}:layer=pubs"), UTM).geometry) == 2


def test_feature_errors_and_warnings(tmp_path):
    units = _grid()
    path = _write(tmp_path, "bars.gpkg", shapely.points([[X0 + 5, Y0 + 5]]))
    with pytest.raises(ParameterError, match=r"feature 'bars_dist' is already made .*name="):
        covariate_features(units, [CovariateLayer(path, "distance"),
                                   CovariateLayer(path, "auto")])
    far = _write(tmp_path, "far.gpkg", shapely.points([[X0 + 50_000, Y0]]))
    with pytest.warns(DataQualityWarning, match=r"far.gpkg: the covariate layer lies "
                                                r"49,600 m from the units"):
        covariate_features(units, [CovariateLayer(far, "count", (100.0,))])
    data = read_covariate(CovariateLayer(path), SpatialReference("EPSG:32611"))
    with pytest.raises(ParameterError, match=r"bars.gpkg: read in EPSG:32611, but the units "
                                             r"are in EPSG:32610"):
        covariate_features(units, [data])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert covariate_features(units, []).values.shape == (len(units), 0)
