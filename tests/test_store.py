"""The Store: one suite run against DuckDB and against a real PostgreSQL + PostGIS server."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

import _helpers_store as helpers
from _helpers_store import (
    BACKENDS,
    POSTGIS_URL,
    SKIP_POSTGIS,
    assert_same_events,
    schema_url,
    synthetic_events,
)
from placecast.cli import app
from placecast.clusters._alerts import Alert
from placecast.events import Events, SpatialReference
from placecast.exceptions import DataError, ParameterError
from placecast.io import read_events
from placecast.pipeline import run_forecast
from placecast.store import (
    BACKTEST_COLUMNS,
    PostGISStore,
    open_store,
    split_store_reference,
)
from placecast.units import default_region, polygon_units, square_grid

store_url = helpers.store_url  # the fixture: a fresh store per test and backend
each_store = pytest.mark.parametrize("store_url", BACKENDS, indirect=True)

SRC = Path(__file__).resolve().parents[1] / "src"


# ---------------------------------------------------------------------- round trips
@each_store
def test_events_round_trip_every_field(store_url):
    events = synthetic_events(500, timezone="America/Los_Angeles")
    with open_store(store_url) as store:
        report = store.add_events("crimes", events, source="synthetic.csv")
        assert (report.n_read, report.n_new, report.n_duplicates) == (500, 500, 0)
    with open_store(store_url) as store:  # a new connection reads what was committed
        loaded = store.load_events("crimes")
    assert_same_events(events, loaded)
    assert loaded.report is not None and loaded.report.n_kept == 500


@each_store
def test_events_round_trip_without_optional_fields(store_url):
    events = Events.from_arrays(np.array(["2020-01-01T10:00:00", "2020-01-02T11:30:00.25"],
                                         dtype="datetime64[ns]"),
                                [1.5, -2.25], [0.0, 1e6], crs="local:km",
                                metres_per_unit=1000.0)
    with open_store(store_url) as store:
        store.add_events("plain", events)
        loaded = store.load_events("plain")
        info = store.list_datasets()[0]
    assert_same_events(events, loaded)
    assert info.fields == () and info.crs == "local:km" and info.n_events == 2


@each_store
def test_real_data_round_trip(store_url, shared_data):
    events = read_events(shared_data / "memphis" / "personal_robberies_2019.csv")
    assert events.incident_id is not None and events.spatial_reference.input_crs
    with open_store(store_url) as store:
        store.add_events("nyc", events)
        assert_same_events(events, store.load_events("nyc"))


# ---------------------------------------------------------------------- incremental ingest
@each_store
def test_incremental_ingest_deduplicates_on_incident_id(store_url):
    first = synthetic_events(300, seed=1, start_id=0)
    second = synthetic_events(300, seed=2, start_id=200)  # ids 200..499: 100 repeats
    with open_store(store_url) as store:
        store.add_events("d", first)
        report = store.add_events("d", second)
        loaded = store.load_events("d")
        imports = store.imports("d")
    assert (report.n_new, report.n_duplicates) == (200, 100)
    # brute force: first batch, then the rows of the second whose id was not seen
    seen = set(first.incident_id)
    expected_ids = list(first.incident_id) + [i for i in second.incident_id if i not in seen]
    assert list(loaded.incident_id) == expected_ids
    keep = ~np.isin(second.incident_id.astype(str), first.incident_id.astype(str))
    np.testing.assert_array_equal(loaded.x[300:], second.x[keep])
    assert list(imports["n_new"]) == [300, 200] and list(imports["n_duplicates"]) == [0, 100]


@each_store
def test_repeated_ids_inside_one_batch_are_duplicates(store_url):
    events = synthetic_events(10, seed=3)
    ids = events.incident_id.copy()
    ids[5:] = ids[:5]
    events = Events(events.time, events.x, events.y, events.spatial_reference,
                    incident_id=ids)
    with open_store(store_url) as store:
        report = store.add_events("d", events)
        loaded = store.load_events("d")
    assert (report.n_new, report.n_duplicates) == (5, 5)
    np.testing.assert_array_equal(loaded.x, events.x[:5])


@each_store
def test_rows_without_ids_deduplicate_as_a_multiset(store_url):
    # with date-only times, identical rows are distinct events: k copies stay k copies
    rng = np.random.default_rng(4)
    times = np.array(["2017-03-01", "2017-03-01", "2017-03-01", "2017-03-02"])
    x, y = np.array([5.0, 5.0, 7.0, 5.0]), np.array([1.0, 1.0, 1.0, 1.0])
    cat = np.array(["A", "A", "A", None], dtype=object)
    batch = Events.from_arrays(times, x, y, category=cat)
    bigger = Events.from_arrays(np.concatenate([times, ["2017-03-01", "2017-03-05"]]),
                                np.r_[x, 5.0, rng.uniform()], np.r_[y, 1.0, 1.0],
                                category=np.concatenate([cat, ["a", "B"]]).astype(object))
    with open_store(store_url) as store:
        assert store.add_events("d", batch).n_new == 4
        again = store.add_events("d", batch)
        assert (again.n_new, again.n_duplicates) == (0, 4)
        more = store.add_events("d", bigger)
        loaded = store.load_events("d")

    def key(ev, i):
        return (str(ev.time[i]), ev.x[i], ev.y[i], ev.category[i] or "")

    # brute force: the stored multiset is the union (max count) of the batches' multisets
    want = collections.Counter(key(batch, i) for i in range(len(batch)))
    want |= collections.Counter(key(bigger, i) for i in range(len(bigger)))
    got = collections.Counter(key(loaded, i) for i in range(len(loaded)))
    assert got == want
    assert (more.n_new, more.n_duplicates) == (2, 4)  # the lower-case "a" is another category


@each_store
def test_mixed_rows_with_and_without_ids(store_url):
    events = synthetic_events(50, seed=5)
    ids = events.incident_id.copy()
    ids[::3] = None
    events = Events(events.time, events.x, events.y, events.spatial_reference,
                    incident_id=ids)
    with open_store(store_url) as store:
        assert store.add_events("d", events).n_new == 50
        assert store.add_events("d", events).n_duplicates == 50
        loaded = store.load_events("d")
    assert list(loaded.incident_id) == list(ids)


@each_store
def test_load_filters_match_events_methods(store_url):
    events = synthetic_events(400, seed=6)
    with open_store(store_url) as store:
        store.add_events("d", events)
        window = store.load_events("d", since="2017-02-01", until="2017-03-01")
        picked = store.load_events("d", categories=["burglary", "ROBBERY"])
        both = store.load_events("d", since="2017-02-01", categories=["theft"])
    assert_same_events(window, events.between("2017-02-01", "2017-03-01"))
    assert_same_events(picked, events.of_categories(["burglary", "ROBBERY"]))
    assert_same_events(both, events.between("2017-02-01").of_categories(["theft"]))
    assert 0 < len(window) < len(events) and 0 < len(picked) < len(events)


# ---------------------------------------------------------------------- bad input
@each_store
def test_batches_must_fit_the_dataset(store_url):
    events = synthetic_events(20, seed=7)
    with open_store(store_url) as store:
        store.add_events("d", events)
        no_ids = synthetic_events(5, seed=8, ids=False)
        with pytest.raises(DataError, match="optional fields"):
            store.add_events("d", no_ids)
        with pytest.raises(DataError, match="time zone"):
            store.add_events("d", synthetic_events(5, seed=9, timezone="UTC"))
        local = Events.from_arrays(["2017-01-01"], [0.0], [0.0])
        store.add_events("grid", local)
        with pytest.raises(DataError, match="local:m"):
            store.add_events("grid", Events.from_arrays(
                ["2017-01-01"], [0.0], [0.0], crs="local:km", metres_per_unit=1000.0))
        ns = Events.from_arrays(["2017-01-01T00:00:00.000000001"], [0.0], [0.0])
        with pytest.raises(DataError, match="sub-microsecond"):
            store.add_events("ns", ns)
        with pytest.raises(ParameterError, match="dataset name"):
            store.add_events("bad name; drop table", local)
        with pytest.raises(DataError, match="no dataset 'nope'.*datasets: d, grid"):
            store.load_events("nope")
        with pytest.raises(ParameterError, match="no category"):
            store.load_events("grid", categories=["A"])
        assert [d.name for d in store.list_datasets()] == ["d", "grid"]
        assert store.load_events("d").n_events == 20


@each_store
def test_events_in_another_crs_are_projected_to_the_dataset_crs(store_url):
    from pyproj import Transformer

    feet = synthetic_events(30, seed=10, ids=True)
    with open_store(store_url) as store:
        store.add_events("d", feet)
        # the same places given in UTM 10N metres
        ex, ey = Transformer.from_crs("EPSG:2913", "EPSG:32610", always_xy=True).transform(
            feet.x / 0.3048, feet.y / 0.3048)
        utm = Events(feet.time, ex, ey, SpatialReference("EPSG:32610"),
                     category=feet.category, weight=feet.weight,
                     incident_id=np.array([f"U{i}" for i in range(30)], dtype=object),
                     mark=feet.mark)
        assert store.add_events("d", utm).n_new == 30
        loaded = store.load_events("d")
    np.testing.assert_allclose(loaded.x[30:], feet.x, atol=1e-3)
    np.testing.assert_allclose(loaded.y[30:], feet.y, atol=1e-3)


# ---------------------------------------------------------------------- atomicity
@each_store
def test_exception_mid_batch_leaves_store_unchanged(store_url, monkeypatch):
    events = synthetic_events(200, seed=11)
    more = synthetic_events(200, seed=12, start_id=1000)
    with open_store(store_url) as store:
        store.add_events("kept", events)
        written = {}

        def fail(self, dataset):
            # the rows are in the table (inside the transaction) when the failure hits
            written["n"] = self._execute("SELECT COUNT(*) FROM events WHERE dataset = ?",
                                         (dataset,)).fetchone()[0]
            raise RuntimeError("disk full")

        monkeypatch.setattr(type(store), "_before_commit", fail)
        with pytest.raises(RuntimeError, match="disk full"):
            store.add_events("kept", more)
        assert written["n"] == 400
        with pytest.raises(RuntimeError):
            store.add_events("fresh", more)
        monkeypatch.undo()
        info = {d.name: d for d in store.list_datasets()}
        assert list(info) == ["kept"] and info["kept"].n_events == 200
        assert info["kept"].n_imports == 1
        assert_same_events(store.load_events("kept"), events)
        # and the store still works afterwards
        assert store.add_events("kept", more).n_new == 200


@each_store
def test_import_killed_half_way_leaves_no_partial_dataset(store_url, tmp_path):
    marker = tmp_path / "inside-transaction"
    with open_store(store_url) as store:
        store.add_events("existing", synthetic_events(100, seed=13))
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from _helpers_store import synthetic_events
        from placecast.store import open_store
        from placecast.store._sql import SQLStore

        def pause(self, dataset):
            n = self._execute("SELECT COUNT(*) FROM events", ()).fetchone()[0]
            Path({str(marker)!r}).write_text(str(n))
            time.sleep(120)

        SQLStore._before_commit = pause
        store = open_store({store_url!r})
        events = synthetic_events(20_000, seed=14, start_id=10**6)
        store.add_events("existing", events)
        store.add_events("fresh", events)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(SRC), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    process = subprocess.Popen([sys.executable, "-c", script], env=env,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert marker.exists(), process.stderr.read().decode() if process.stderr else ""
        time.sleep(0.05)
        rows_in_transaction = int(marker.read_text() or 0)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert rows_in_transaction == 20_100  # killed with the rows written, not committed
    with open_store(store_url) as store:
        infos = store.list_datasets()
        assert [(d.name, d.n_events, d.n_imports) for d in infos] == [("existing", 100, 1)]
        assert len(store.load_events("existing")) == 100
        total = store._execute("SELECT COUNT(*) FROM events", ()).fetchone()[0]
        assert total == 100
        # the next import of the same file goes through completely
        again = store.add_events("existing", synthetic_events(1000, seed=14,
                                                              start_id=10**6))
        assert again.n_new == 1000


# ---------------------------------------------------------------------- list / delete
@each_store
def test_list_and_delete_datasets(store_url):
    with open_store(store_url) as store:
        store.add_events("a", synthetic_events(10, seed=15))
        store.add_events("b", synthetic_events(20, seed=16))
        store.add_events("b", synthetic_events(5, seed=17, start_id=100))
        infos = {d.name: d for d in store.list_datasets()}
        assert infos["b"].n_events == 25 and infos["b"].n_imports == 2
        events_b = store.load_events("b")
        assert infos["b"].start == pd.Timestamp(events_b.start).isoformat()
        assert infos["b"].fields == ("category", "weight", "incident_id", "mark")
        assert infos["a"].to_dict()["n_events"] == 10
        assert store.delete_dataset("b") == 25
        assert [d.name for d in store.list_datasets()] == ["a"]
        with pytest.raises(DataError, match="no dataset 'b'"):
            store.delete_dataset("b")
        # a deleted name can be reused with other fields
        store.add_events("b", Events.from_arrays(["2017-01-01"], [0.0], [0.0]))
        assert store.load_events("b").category is None


# ---------------------------------------------------------------------- units, forecasts
def _forecast(events, units, model="naive"):
    return run_forecast(events, model=model, at="2017-03-15", horizon="7d", units=units)


@each_store
def test_forecast_and_units_round_trip(store_url, shared_data):
    events = synthetic_events(300, seed=18, ids=False)
    region = default_region(events, 300.0)
    grid = square_grid(region, 800.0, events.spatial_reference, rotation=12.5)
    districts = polygon_units(shared_data / "portland" / "police_districts"
                              / "Portland_Police_Districts.shp", events.spatial_reference)
    with open_store(store_url) as store:
        for units in (grid, districts):
            forecast = _forecast(events, units)
            forecast_id = store.save_forecast(forecast, "weekly", dataset="d")
            again = store.load_forecast(forecast_id)
            assert again.model == forecast.model and again.params == forecast.params
            assert again.window == forecast.window
            np.testing.assert_array_equal(again.intensity, forecast.intensity)
            assert list(again.units.unit_id) == list(units.unit_id)
            assert shapely.equals_exact(again.units.geometry, units.geometry, 0).all()
            assert shapely.equals_exact(again.units.region, units.region, 0)
            assert again.units.spatial_reference == units.spatial_reference
            assert again.units.description == units.description
            assert again.units.grid == units.grid
            # the rebuilt units assign points exactly as the originals
            np.testing.assert_array_equal(again.units.assign(events.x, events.y),
                                          units.assign(events.x, events.y))
        # identical units are stored once
        assert store.save_units(grid) == store.save_units(grid)
        saved = store.list_forecasts()
        assert [f.n_units for f in saved] == [len(districts), len(grid)]
        assert saved[0].dataset == "d" and saved[0].name == "weekly"
        with pytest.raises(DataError, match="no saved forecast"):
            store.load_forecast(10**6)


# ---------------------------------------------------------------------- backtests, alerts
def _backtest_frame(n=6, seed=19):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "origin": pd.date_range("2017-01-01", periods=n, freq="7D"),
        "horizon": ["7d"] * n,
        "model": ["kde", "naive"] * (n // 2),
        "n_events": rng.integers(10, 50, n),
        "n_flagged_units": rng.integers(5, 20, n),
        "flagged_area": rng.uniform(1e5, 2e5, n),
        "region_area": np.full(n, 3.8e8),
        "hits": rng.integers(0, 10, n),
        "hit_rate": rng.uniform(0, 1, n),
        "pai": rng.uniform(0, 30, n),
        "pei_star": rng.uniform(0, 1, n),
        "log_score": np.r_[rng.normal(size=n - 1), np.nan],
        "coverage_note": ["x"] * n,  # extra columns are kept
    })


@each_store
def test_backtest_round_trip(store_url):
    frame = _backtest_frame()
    with open_store(store_url) as store:
        backtest_id = store.save_backtest(frame, {"model": "kde", "cell": 600})
        saved = store.load_backtest(backtest_id)  # a BacktestResult
        loaded, meta = saved.records, saved.meta
        pd.testing.assert_frame_equal(loaded, frame)
        assert meta == {"model": "kde", "cell": 600}
        # the typed rows are there for SQL
        mean_pai = store._execute("SELECT AVG(pai) FROM backtest_rows WHERE backtest_id = ?",
                                  (backtest_id,)).fetchone()[0]
        assert mean_pai == pytest.approx(frame["pai"].mean())
        assert store.list_backtests()[0].n_rows == 6
        with pytest.raises(DataError, match="pei_star"):
            store.save_backtest(frame.drop(columns=["pei_star"]))
    assert set(BACKTEST_COLUMNS) <= set(frame.columns)


@each_store
def test_real_backtest_frame_round_trips(store_url):
    from placecast.evaluate import run_backtest

    events = synthetic_events(400, seed=22, ids=False)
    units = square_grid(default_region(events, 200.0), 1500.0, events.spatial_reference)
    result = run_backtest(events, units, models=("naive",), start="2017-02-01",
                          end="2017-02-15", horizons=("7d",), area="5%")
    frame = result.to_frame()
    with open_store(store_url) as store:
        loaded = store.load_backtest(store.save_backtest(frame, {"cell": 1500})).records
    pd.testing.assert_frame_equal(loaded, frame.reset_index(drop=True))


@each_store
def test_alerts(store_url):
    square = {"type": "Polygon", "coordinates": [[[-122.7, 45.5], [-122.6, 45.5],
                                                  [-122.6, 45.6], [-122.7, 45.5]]]}
    with open_store(store_url) as store:
        first = store.save_alert({"id": "a1", "created": "2017-03-01T08:00", "kind": "cluster",
                                  "geometry": square, "observed": 12, "expected": 3.5,
                                  "p_value": 0.004, "acknowledged": False, "radius_m": 400})
        second = store.save_alert({"kind": "emerging", "geometry": None, "observed": 4,
                                   "expected": 1.0, "p_value": 0.03})
        assert first == "a1" and second
        alerts = store.list_alerts()
        assert [a["id"] for a in alerts] == [second, "a1"]  # newest first
        a1 = alerts[1]
        assert a1["geometry"] == square and a1["radius_m"] == 400
        assert a1["created"] == "2017-03-01T08:00:00" and a1["observed"] == 12.0
        store.acknowledge_alert("a1")
        assert [a["id"] for a in store.list_alerts(acknowledged=False)] == [second]
        assert store.list_alerts(kind="cluster")[0]["acknowledged"] is True
        store.save_alert({**a1, "observed": 13, "acknowledged": False})  # replace
        assert len(store.list_alerts()) == 2
        assert store.list_alerts(kind="cluster")[0]["observed"] == 13.0
        with pytest.raises(DataError, match="no alert"):
            store.acknowledge_alert("missing")
        # what the alerting code produces round-trips
        produced = Alert(alert_id="scan-3", check="weekly", kind="space-time cluster",
                         detected_at="2017-03-08T06:00:00", location_ids=("c1_r2", "c1_r3"),
                         start="2017-03-01", end="2017-03-08", observed=9.0, expected=2.5,
                         p_value=0.01, recurrence_interval=100.0, geometry=square).to_dict()
        assert store.save_alert(produced) == "scan-3"
        [saved] = store.list_alerts(kind="space-time cluster")
        assert {k: saved[k] for k in produced} == produced
        assert saved["created"] == "2017-03-08T06:00:00" and saved["acknowledged"] is False


# ---------------------------------------------------------------------- PostGIS geometry
@pytest.mark.parametrize("store_url", BACKENDS[1:], indirect=True)
def test_postgis_geometry_columns_have_the_dataset_srid(store_url):
    events = synthetic_events(50, seed=20)
    with open_store(store_url) as store:
        assert isinstance(store, PostGISStore)
        store.add_events("d", events)
        rows = store._execute("SELECT ST_SRID(geom), ST_X(geom), ST_Y(geom) FROM events "
                              "ORDER BY seq").fetchall()
        units = square_grid(default_region(events, 100.0), 500.0, events.spatial_reference)
        units_id = store.save_units(units)
        cell = store._execute(
            "SELECT ST_SRID(geom), ST_Area(geom) FROM unit_cells WHERE units_id = ? "
            "ORDER BY idx LIMIT 1", (units_id,)).fetchone()
        inside = store._execute(
            "SELECT COUNT(*) FROM events e JOIN unit_cells c ON ST_Contains(c.geom, e.geom) "
            "WHERE c.units_id = ?", (units_id,)).fetchone()[0]
    assert {r[0] for r in rows} == {2913}
    np.testing.assert_allclose([r[1] for r in rows], events.x / 0.3048, rtol=1e-12)
    np.testing.assert_allclose([r[2] for r in rows], events.y / 0.3048, rtol=1e-12)
    assert cell[0] == 2913 and cell[1] == pytest.approx((500 / 0.3048) ** 2)
    assert inside == int((units.assign(events.x, events.y) >= 0).sum())


@pytest.mark.parametrize("store_url", BACKENDS[1:], indirect=True)
def test_postgis_lost_connection_is_a_data_error(store_url):
    import psycopg

    with open_store(store_url) as store:
        store.add_events("d", synthetic_events(10, seed=23))
        pid = store._con.info.backend_pid
        with psycopg.connect(POSTGIS_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DataError, match="connection failed"):
            store.add_events("d", synthetic_events(10, seed=24, start_id=100))
    with open_store(store_url) as store:
        assert store.list_datasets()[0].n_events == 10


# ---------------------------------------------------------------------- CLI
@each_store
def test_cli_ingest_then_forecast_from_the_store(store_url, shared_data, tmp_path):
    # the last 15 months of Portland burglaries (keeps the test fast)
    full = pd.read_csv(shared_data / "portland" / "burglary_2012-03_2017-05.csv", dtype=str)
    recent = full[full["occ_date"] >= "2016-03-01"]
    csv = tmp_path / "burglary_recent.csv"
    recent.to_csv(csv, index=False)
    n = f"{len(recent):,}"
    runner = CliRunner()
    result = runner.invoke(app, ["ingest", str(csv), "--dataset", "burglary", "--db",
                                 store_url, "--crs", "EPSG:2913"])
    assert result.exit_code == 0, result.output
    assert f"{n} new events" in " ".join(result.output.split())
    result = runner.invoke(app, ["ingest", str(csv), "--dataset", "burglary", "--db",
                                 store_url, "--crs", "EPSG:2913"])
    assert result.exit_code == 0
    assert f"0 new events, {n} already stored" in " ".join(result.output.split())
    listing = runner.invoke(app, ["datasets", "--db", store_url, "--json"])
    assert listing.exit_code == 0, listing.output
    [info] = json.loads(listing.output)
    assert (info["name"], info["n_events"], info["n_imports"]) == ("burglary", len(recent), 2)
    assert info["start"] == f"{recent['occ_date'].min()}T00:00:00"
    assert info["crs"] == "EPSG:2913"
    table = runner.invoke(app, ["datasets", "--db", store_url])
    assert table.exit_code == 0 and "burglary" in table.output

    options = ["--at", "2017-03-01", "--model", "naive", "--cell", "2000ft", "--since",
               "2016-06-01"]
    from_store = tmp_path / "store.csv"
    from_file = tmp_path / "file.csv"
    result = runner.invoke(app, ["forecast", f"{store_url}#burglary", *options, "-o",
                                 str(from_store)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["forecast", str(csv), "--crs", "EPSG:2913", *options,
                                 "-o", str(from_file)])
    assert result.exit_code == 0, result.output
    assert from_store.read_text() == from_file.read_text()

    bad = runner.invoke(app, ["forecast", f"{store_url}#burglary", "--crs", "EPSG:2913",
                              *options, "-o", str(tmp_path / "x.csv")])
    assert bad.exit_code == 2
    assert "--crs cannot be used with a stored dataset" in " ".join(bad.output.split())
    missing = runner.invoke(app, ["forecast", f"{store_url}#nope", *options, "-o",
                                  str(tmp_path / "y.csv")])
    assert missing.exit_code == 2 and "no dataset 'nope'" in " ".join(missing.output.split())
    # a store's dataset can be ingested into another store (DuckDB -> PostGIS and back)
    other = tmp_path / "other.duckdb"
    copied = runner.invoke(app, ["ingest", f"{store_url}#burglary", "--dataset", "b2",
                                 "--db", str(other)])
    assert copied.exit_code == 0, copied.output
    with open_store(store_url) as source, open_store(other) as target:
        assert_same_events(target.load_events("b2"), source.load_events("burglary"))
    typo = runner.invoke(app, ["forecast", str(tmp_path / "typo.duckdb#burglary"), *options,
                               "-o", str(tmp_path / "z.csv")])
    assert typo.exit_code == 2 and "no such store" in typo.output
    assert not (tmp_path / "typo.duckdb").exists()
    deleted = runner.invoke(app, ["datasets", "--db", store_url, "--delete", "burglary"])
    assert deleted.exit_code == 0 and f"{n} events" in " ".join(deleted.output.split())


# ---------------------------------------------------------------------- references
@each_store
def test_store_references(store_url, tmp_path):
    if store_url.startswith("postgresql"):
        mangled = store_url.replace("postgresql://", "postgresql:/")  # as pathlib leaves it
        assert split_store_reference(Path(mangled + "#burglary")) == (store_url, "burglary")
    else:
        assert split_store_reference(f"{store_url}#burglary") == (store_url, "burglary")
    odd = tmp_path / "events#1.csv"
    odd.write_text("time,x,y\n")
    assert split_store_reference(odd) is None  # an existing file is never a reference
    assert split_store_reference("events.csv#x") is None


@SKIP_POSTGIS
def test_postgis_schema_from_url_and_argument():
    assert POSTGIS_URL is not None
    import uuid

    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        with open_store(schema_url(POSTGIS_URL, schema)) as store:
            assert store.schema == schema  # type: ignore[attr-defined]
        with open_store(POSTGIS_URL, schema=schema) as store:
            assert store.list_datasets() == []
        with pytest.raises(ParameterError, match="schema"):
            open_store(POSTGIS_URL, schema="Robert'); DROP TABLE x;--")
    finally:
        with psycopg.connect(POSTGIS_URL, autocommit=True) as con:
            con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@each_store
def test_unreachable_server_is_a_data_error(store_url):
    if store_url.startswith("postgresql"):
        with pytest.raises(DataError, match="cannot connect"):
            open_store("postgresql://nobody@127.0.0.1:1/none")
    else:
        not_a_db = Path(store_url).with_suffix(".txt")
        not_a_db.write_text("hello")
        with pytest.raises(DataError, match="cannot open"):
            open_store(not_a_db)


@each_store
def test_ingest_report_to_dict(store_url):
    with open_store(store_url) as store:
        report = store.add_events("d", synthetic_events(3, seed=21), source="x.csv")
    assert report.to_dict() == {"dataset": "d", "source": "x.csv", "n_read": 3, "n_new": 3,
                                "n_duplicates": 0, "import_id": report.import_id}

