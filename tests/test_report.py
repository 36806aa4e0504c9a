"""The offline HTML report: content, privacy (--public), sections, errors, CLI."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import shapely
from scipy import stats
from typer.testing import CliRunner

from _helpers_report import (
    AT,
    BUDGET,
    HORIZON,
    count_in_polygons,
    decode_cells,
    map_payload,
    portland,
    portland_backtest,
    window_xy,
)
from placecast.cli import app
from placecast.events import Events
from placecast.exceptions import DataError, ParameterError
from placecast.forecast import TimeWindow
from placecast.pipeline import UnitSpec, build_units, run_forecast
from placecast.quantities import parse_area
from placecast.report import build_report, compare_models, public_areas, write_report
from placecast.report._plots import coverage_curve
from placecast.units import square_grid


@pytest.fixture(scope="module")
def case(shared_data):
    return portland(shared_data)


@pytest.fixture(scope="module")
def private_html(case):
    events, _, forecast = case
    return build_report(forecast, events=events, area=BUDGET)


@pytest.fixture(scope="module")
def public_html(case):
    events, _, forecast = case
    return build_report(forecast, events=events, area=BUDGET, public=True, k=5)


def _synthetic(seed: int = 0, n: int = 400) -> Events:
    rng = np.random.default_rng(seed)
    hot = rng.normal([300.0, 300.0], 60.0, size=(n // 2, 2))
    flat = rng.uniform(0, 1000, size=(n - n // 2, 2))
    xy = np.clip(np.vstack([hot, flat]), 1, 999)
    days = rng.uniform(0, 120, size=n)
    times = np.datetime64("2020-01-01") + (days * 86400).astype("timedelta64[s]")
    return Events.from_arrays(times, xy[:, 0], xy[:, 1], crs="local:m")


# ---------------------------------------------------------------------- the private report
def test_report_is_self_contained(private_html):
    assert "<script src" not in private_html and "<link rel=\"stylesheet\"" not in private_html
    markup = re.sub(r"<script>.*?</script>", "", private_html, flags=re.S)  # inlined Leaflet
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', markup)
    assert "url(images/" not in private_html  # Leaflet's CSS images are inlined
    assert "sourceMappingURL" not in private_html
    assert "No basemap tiles" in private_html
    assert "L.tileLayer" not in private_html


def test_flagged_cells_and_headline_match_an_independent_count(case, private_html):
    events, units, forecast = case
    payload = map_payload(private_html)
    features = decode_cells(payload)
    flagged_ids = {f["properties"]["id"] for f in features if f["properties"].get("f")}
    budget = parse_area(BUDGET).resolve(units.region_area)
    # brute force: the greedy top-area set, recomputed from the intensities
    order = sorted(range(len(units)), key=lambda i: (-forecast.intensity[i], i))
    chosen, used = [], 0.0
    for i in order:
        if used + units.area[i] > budget * (1 + 1e-9):
            break
        chosen.append(i)
        used += units.area[i]
    assert flagged_ids == {str(units.unit_id[i]) for i in chosen}
    # hits by shapely point-in-polygon over the window's events
    window = TimeWindow.starting(AT, HORIZON)
    mask = (events.time >= window.start) & (events.time < window.end)
    in_window = events.select(mask)
    hits = count_in_polygons(in_window, units.geometry[chosen]).sum()
    total = count_in_polygons(in_window, np.array([units.region])).sum()
    assert total > 0
    assert f"caught in flagged units</dt><dd>{hits:,} (hit rate {hits / total:.3f})" \
        in private_html
    assert len(payload["points"]) == total
    assert len(features) == len(units)
    # the cells drawn are the units' own polygons (to within the 1e-5 degree rounding)
    index = {str(u): i for i, u in enumerate(units.unit_id)}
    truth = units.geometry_in("EPSG:4326")
    for feature in features[::97]:
        drawn = feature["geometry"]
        true = truth[index[feature["properties"]["id"]]]
        assert shapely.hausdorff_distance(drawn, true) < 2e-5


def test_map_is_in_wgs84_inside_portland(private_html):
    payload = map_payload(private_html)
    coords = np.array(shapely.get_coordinates(shapely.from_geojson(
        json.dumps(payload["region"]))))
    assert payload["local"] is False
    assert (-123.0 < coords[:, 0]).all() and (coords[:, 0] < -122.4).all()
    assert (45.4 < coords[:, 1]).all() and (coords[:, 1] < 45.7).all()


def test_colour_classes_follow_intensity(case, private_html):
    _, units, forecast = case
    features = decode_cells(map_payload(private_html))
    index = {str(u): i for i, u in enumerate(units.unit_id)}
    density = np.array([forecast.intensity[index[f["properties"]["id"]]]
                        / units.area[index[f["properties"]["id"]]] for f in features])
    classes = np.array([f["properties"]["c"] for f in features])
    order = np.argsort(density, kind="stable")
    assert (np.diff(classes[order]) >= 0).all()  # never a darker colour for less
    assert len(set(classes)) >= 6


def test_plots_are_inline_svg(private_html):
    import base64

    images = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', private_html)
    assert len(images) == 1  # the hit-rate curve (no backtest given)
    svg = base64.b64decode(images[0]).decode()
    assert svg.startswith("<svg") and "hit rate" in svg


def test_coverage_curve_against_brute_force():
    rng = np.random.default_rng(3)
    intensity = rng.gamma(1.0, size=50)
    area = rng.uniform(1, 3, size=50)
    observed = rng.poisson(2, size=50).astype(float)
    coverage, hit_rate = coverage_curve(intensity, area, observed, area.sum())
    for m in (0, 1, 10, 50):
        top = np.argsort(-intensity)[:m]
        assert coverage[m] == pytest.approx(area[top].sum() / area.sum())
        assert hit_rate[m] == pytest.approx(observed[top].sum() / observed.sum())
    assert coverage[-1] == pytest.approx(1.0) and hit_rate[-1] == pytest.approx(1.0)


# ---------------------------------------------------------------------- public
def test_public_shows_no_area_under_k(case, public_html):
    events, units, _ = case
    payload = map_payload(public_html)
    k = payload["k"]
    assert k == 5 and payload["public"] is True
    index = {str(u): i for i, u in enumerate(units.unit_id)}
    cells = decode_cells(payload)
    drawn = np.array([index[f["properties"]["id"]] for f in cells])
    independent = count_in_polygons(events, units.geometry[drawn])
    assert (independent >= k).all()
    assert [f["properties"]["n"] for f in cells] == independent.tolist()
    for block in payload.get("blocks", {"features": []})["features"]:
        polygon = shapely.from_geojson(json.dumps(block["geometry"]))
        assert block["properties"]["n"] >= k
        assert polygon.area > 0
    # every cell under k in the data is absent from the cell layer
    all_counts = count_in_polygons(events, units.geometry)
    small = {str(units.unit_id[i]) for i in np.flatnonzero(all_counts < k)}
    assert small and not small & {f["properties"]["id"] for f in cells}
    assert "o" not in cells[0]["properties"]  # no per-cell window counts either


def test_public_has_no_event_points(case, public_html):
    events, units, _ = case
    payload = map_payload(public_html)
    assert "points" not in payload
    assert "Public report." in public_html and "No individual event locations" in public_html
    # no event coordinate appears, in WGS 84 (as drawn) or in the source CRS
    window = TimeWindow.starting(AT, HORIZON)
    x, y = window_xy(events, window)
    lon, lat = units.spatial_reference.to_crs_coordinates(x, y, "EPSG:4326")
    for a, b in zip(np.round(lat, 5), np.round(lon, 5), strict=True):
        assert f"{a}, {b}" not in public_html and f"{a},{b}" not in public_html
    feet_x, feet_y = units.spatial_reference.to_crs_coordinates(events.x, events.y)
    words = set(re.split(r"[^0-9.]+", public_html))
    for value in np.concatenate([feet_x, feet_y]):
        assert f"{value:.0f}" not in words and f"{value:.1f}" not in words


def test_public_suppresses_small_window_counts(case, public_html):
    # the demo week has 20 events but only 2 in the flagged cells: below k, so suppressed
    assert "hit rate 0.1" not in public_html
    assert "fewer than 5 events: hit rate, PAI and PEI* suppressed" in public_html
    assert "this window" not in public_html  # no per-window hit-rate curve


def test_public_areas_partition_and_merge_rule():
    sref = _synthetic().spatial_reference
    units = square_grid(shapely.box(0, 0, 1000, 1000), 50.0, sref)
    rng = np.random.default_rng(1)
    counts = rng.poisson(1.2, size=len(units)).astype(float)
    areas = public_areas(units, counts, k=5, max_level=3)
    members = [m for b in areas.blocks for m in b["members"]]
    everyone = np.concatenate([np.flatnonzero(areas.shown), members, areas.suppressed])
    assert sorted(everyone.tolist()) == list(range(len(units)))  # a partition
    assert (counts[areas.shown] >= 5).all()
    cells = units.grid_cells
    for block in areas.blocks:
        assert block["count"] == counts[block["members"]].sum() >= 5
        level = block["level"]
        keys = {(c >> level, r >> level) for c, r in cells[block["members"]]}
        assert len(keys) == 1  # one 2^L x 2^L block
        assert shapely.area(block["geometry"]) == pytest.approx(
            units.area[block["members"]].sum())
    # brute force: a suppressed cell's small neighbours in its coarsest block stay under k
    unresolved = set(areas.suppressed.tolist())
    for i in areas.suppressed:
        key = (cells[i, 0] >> 3, cells[i, 1] >> 3)
        mates = [j for j in unresolved if (cells[j, 0] >> 3, cells[j, 1] >> 3) == key]
        assert counts[mates].sum() < 5


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_bad_k(case, k):
    events, _, forecast = case
    with pytest.raises(ParameterError, match="`k` must be a whole number"):
        build_report(forecast, events=events, public=True, k=k)


def test_public_needs_events(case):
    with pytest.raises(ParameterError, match="a public report needs the events"):
        build_report(case[2], public=True)


# ---------------------------------------------------------------------- sections
def test_sections_are_omitted_without_inputs(case):
    html = build_report(case[2], title="<script>alert(1)</script>")  # only the forecast
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    for section in ("backtest", "clusters", "hotspots", "audit", "model-card"):
        assert f'id="{section}"' not in html
    assert 'id="forecast-map"' in html and 'id="data-summary"' in html
    assert 'id="performance"' not in html  # no events, no backtest: nothing to plot


def test_backtest_section_and_paired_test(shared_data, case):
    events, _, forecast = case
    frame = portland_backtest(shared_data)
    html = build_report(forecast, events=events, area=BUDGET, backtest=frame)
    assert 'id="backtest"' in html and "Paired Wilcoxon signed-rank tests against kde" in html
    assert len(re.findall(r'src="data:image/svg\+xml', html)) == 2
    tests = compare_models(frame.sample(frac=1.0, random_state=0), reference="kde")
    naive = frame[frame.model == "naive"].sort_values("origin")["pai"].to_numpy()
    kde = frame[frame.model == "kde"].sort_values("origin")["pai"].to_numpy()
    expected = stats.wilcoxon(naive, kde)
    row = tests[(tests.model == "naive") & (tests.metric == "pai")].iloc[0]
    assert row.n_pairs == 5 and np.count_nonzero(naive - kde) >= 2
    assert row.p_value == pytest.approx(expected.pvalue)
    assert row.median_difference == pytest.approx(np.median(naive - kde))


def test_compare_models_detects_a_better_model():
    rng = np.random.default_rng(7)
    origins = pd.date_range("2020-01-01", periods=30, freq="7D")
    base = rng.gamma(4.0, 5.0, size=30)
    frame = pd.concat([
        pd.DataFrame({"origin": origins, "model": "a", "hit_rate": 0.1, "pai": base}),
        pd.DataFrame({"origin": origins, "model": "b", "hit_rate": 0.1,
                      "pai": base * 1.3 + rng.normal(0, 0.5, 30)}),
    ])
    tests = compare_models(frame, reference="a", metrics=("pai",))
    assert tests.loc[0, "p_value"] < 1e-4 and tests.loc[0, "median_difference"] > 0
    same = compare_models(frame.assign(pai=np.tile(base, 2)), reference="a",
                          metrics=("pai",))
    assert np.isnan(same.loc[0, "p_value"])  # all differences zero: no test


def test_backtest_missing_columns_is_a_data_error(case):
    with pytest.raises(DataError, match=r"lacks the column\(s\) pai"):
        build_report(case[2], backtest=pd.DataFrame({"origin": ["2017-01-01"],
                                                      "model": ["kde"], "hit_rate": [0.1]}))
    bad = pd.DataFrame({"origin": ["2017-01-01"], "model": ["kde"], "hit_rate": [0.1],
                        "pai": ["lots"]})
    with pytest.raises(DataError, match="row 1: column 'pai' holds 'lots'"):
        build_report(case[2], backtest=bad)


def test_clusters_hotspots_audit_and_card_on_a_local_grid():
    events = _synthetic()
    units = build_units(events, UnitSpec(cell_size=100.0))
    forecast = run_forecast(events, model="naive", at="2020-04-01", horizon="14d",
                            units=units)
    clusters = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": shapely.geometry.mapping(shapely.box(200, 200, 400, 400)),
         "properties": {"id": "A", "observed": 40, "expected": 10.0, "p_value": 0.001}},
        {"type": "Feature", "geometry": shapely.geometry.mapping(shapely.box(800, 800, 900, 900)),
         "properties": {"id": "B", "observed": 3, "expected": 1.0, "p_value": 0.2}},
    ]}
    hotspots = pd.DataFrame({"unit_id": units.unit_id[:3], "category": ["new", "new",
                                                                      "<b>persistent</b>"]})
    audit = {"exposure by district": pd.DataFrame({"district": ["N", "S"], "share": [0.6, 0.4]})}
    html = build_report(forecast, events=events, clusters=clusters, hotspots=hotspots,
                        audit=audit, model_card="Intended use: patrol planning.\n\nNot for people.")
    payload = map_payload(html)
    assert payload["local"] is True
    assert [f["properties"]["id"] for f in payload["clusters"]["features"]] == ["A", "B"]
    assert "<td>4</td>" in html  # observed / expected of cluster A
    assert "&lt;b&gt;persistent&lt;/b&gt;" in html and "<b>persistent</b>" not in html
    assert "exposure by district" in html and "<p>Not for people.</p>" in html
    public = build_report(forecast, events=events, clusters=clusters, public=True, k=5)
    assert [f["properties"]["id"] for f in map_payload(public)["clusters"]["features"]] == ["A"]
    assert "1 cluster(s) with fewer than 5 observed" in public


def test_unknown_hotspot_unit(case):
    with pytest.raises(DataError, match="not in the forecast's units, e.g. 'nowhere'"):
        build_report(case[2], hotspots={"nowhere": "new"})


# ---------------------------------------------------------------------- writing and CLI
def test_write_is_atomic(case, tmp_path):
    target = tmp_path / "report.html"
    target.write_text("old")
    with pytest.raises(DataError):
        write_report(target, case[2], backtest=pd.DataFrame({"origin": []}))
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory):
    events = _synthetic(seed=2, n=300)
    path = tmp_path_factory.mktemp("report") / "events.csv"
    pd.DataFrame({"time": pd.to_datetime(events.time), "x": events.x, "y": events.y}).to_csv(
        path, index=False)
    return path


def test_cli_report_with_saved_results(small_csv, tmp_path):
    backtest = pd.DataFrame({
        "origin": ["2020-03-01", "2020-03-08", "2020-03-15"] * 2,
        "horizon": "7d", "model": ["naive"] * 3 + ["kde"] * 3,
        "hit_rate": [0.2, 0.3, 0.25, 0.3, 0.35, 0.3], "pai": [2.0, 3.0, 2.5, 3.0, 3.5, 3.1],
        "flagged_area": 1e4, "region_area": 1e6})
    backtest.to_csv(tmp_path / "bt.csv", index=False)
    card = tmp_path / "card.txt"
    card.write_text("A naive forecast.")
    out = tmp_path / "out" / "r.html"
    result = CliRunner().invoke(app, [
        "report", str(small_csv), "--crs", "local:m", "--at", "2020-04-01", "--cell", "100m",
        "--model", "naive", "--area", "5%", "--backtest", str(tmp_path / "bt.csv"),
        "--model-card", str(card), "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'id="backtest"' in html and "A naive forecast." in html
    assert "(5% of the region)" in html


@pytest.mark.parametrize(("extra", "message"), [
    (["-o", "r.txt"], "the report is HTML"),
    (["--public", "--k", "0"], "--k must be a whole number"),
    (["--start", "2020-02-01"], "give both --start and --end"),
    (["--backtest", "missing.csv"], "no such backtest file"),
    (["--models", "naive,kde"], "--models chooses the models of a backtest"),
    (["--start", "2020-02-01", "--end", "2020-03-01", "--backtest", "x.csv"],
     "not both"),
])
def test_cli_errors(small_csv, tmp_path, extra, message):
    args = ["report", str(small_csv), "--crs", "local:m", "--at", "2020-04-01", "--cell",
            "100m", "-o", str(tmp_path / "r.html")]
    result = CliRunner().invoke(app, args + [e if not e.endswith((".txt", ".csv")) else
                                             str(tmp_path / e) for e in extra])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_backtest_result_from_evaluate_agrees(shared_data, case):
    """run_backtest's table matches the scores computed here, and so do the paired tests."""
    from placecast.evaluate import run_backtest

    events, units, forecast = case
    mine = portland_backtest(shared_data)
    result = run_backtest(events, units, models=["naive", "kde"], start="2017-01-04",
                          end="2017-02-01", step="7d", horizons=["7d"], area="3sqmi")
    theirs = result.to_frame()
    merged = mine.merge(theirs.assign(origin=pd.to_datetime(theirs.origin)),
                        on=["origin", "model"], suffixes=("", "_evaluate"))
    assert len(merged) == len(mine) == 10
    for column in ("n_events", "hits", "n_flagged_units"):
        assert (merged[column] == merged[f"{column}_evaluate"]).all(), column
    assert np.allclose(merged["pai"], merged["pai_evaluate"])
    winner = result.winner("pai", "7d")
    tests = compare_models(theirs, reference=winner, metrics=("pai",))
    for comparison in result.compare("pai", "7d"):
        row = tests[tests.model == comparison.other].iloc[0]
        assert row.p_value == pytest.approx(comparison.p_value, nan_ok=True)
    html = build_report(forecast, events=events, area=BUDGET, backtest=result)
    assert f"Paired Wilcoxon signed-rank tests against {forecast.model}" in html


def test_cli_runs_the_backtest(small_csv, tmp_path):
    out = tmp_path / "bt.html"
    result = CliRunner().invoke(app, [
        "report", str(small_csv), "--crs", "local:m", "--at", "2020-04-01", "--cell", "100m",
        "--model", "kde", "--start", "2020-02-01", "--end", "2020-03-15", "--step", "14d",
        "--area", "5%", "-o", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'id="backtest"' in html and "4 forecast origins" in html
    assert "against kde" in html and "<td>naive</td>" in html


def test_forecast_beyond_the_data_says_so():
    events = _synthetic(seed=4, n=200)  # 2020-01-01 .. 2020-04-30
    units = build_units(events, UnitSpec(cell_size=100.0))
    forecast = run_forecast(events, model="kde", at="2020-06-01", horizon="7d", units=units)
    html = build_report(forecast, events=events)
    assert "no events (the window is in the future or outside the data)" in html
    assert "caught in flagged units" not in html and 'id="performance"' not in html
    assert "points" not in map_payload(html)


@pytest.mark.parametrize(("values", "expected"), [
    (np.zeros(10), {0}),                              # nothing forecast: palest only
    (np.r_[np.zeros(98), 1.0, 2.0], {0, 4, 7}),       # two units stand out: 3 classes
    (np.arange(1000.0), set(range(8))),               # the full ramp
])
def test_colour_classes_use_the_ends_of_the_ramp(values, expected):
    from placecast.report._html import _classes

    colour, legend = _classes(values)
    assert set(colour.tolist()) == expected
    assert sum(entry["n"] for entry in legend) == len(values)
    assert colour[np.argmax(values)] == max(expected)


def test_summary_and_load_report_without_events(case):
    events, _, forecast = case
    html = build_report(forecast, summary=events.summary(), load_report=events.report)
    assert "<td>rows read</td><td>5,364</td>" in html
    assert "<td>dropped rows</td><td>0</td>" in html
    assert "<td>span</td><td>2012-03-01 .. 2017-05-31</td>" in html
    assert "points" not in map_payload(html)  # no events given, none drawn


def test_unit_popup_shows_the_forecast_explanation(case):
    """``forecast --explain`` columns (reason_k, effect_k) reach each unit's popup."""
    import dataclasses

    from _helpers_report import decode_cells

    forecast = case[2]
    n = len(forecast.units)
    top = np.argsort(-forecast.intensity, kind="stable")[:2]
    reason = np.full(n, "", dtype=object)
    reason[top] = ["recent burglaries within 200 m", "<b>distance</b> to a bar"]
    details = pd.DataFrame({"reason_1": reason, "effect_1": np.where(reason != "", 2.5, 1.0),
                            "reason_2": "", "effect_2": 1.0})
    explained = dataclasses.replace(forecast, details=details)
    html = build_report(explained, area=BUDGET)
    cells = decode_cells(map_payload(html))
    why = {c["properties"]["id"]: c["properties"].get("x") for c in cells}
    shown = [w for w in why.values() if w]
    assert sorted(w[0][0] for w in shown) == sorted(reason[top])
    assert all(w == [[w[0][0], 2.5]] for w in shown)  # blank reasons are left out
    assert '"reason " + (k + 1)' in html  # the popup lists them (escaped by rows())
    assert "x" not in map_payload(build_report(forecast, area=BUDGET))["cells"]
