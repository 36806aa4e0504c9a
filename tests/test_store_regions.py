"""The store split by region: import by region, read one region, run regions from the store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import _helpers_store as helpers
from placecast.cli import app
from placecast.evaluate import run_backtest
from placecast.exceptions import DataError, ParameterError
from placecast.pipeline import UnitSpec, run_forecast
from placecast.regions import (
    read_store_region,
    regions_from_labels,
    run_by_region,
    split_events,
    store_regions,
)
from placecast.store import open_store
from test_regions import BACKTEST, CELL, _alone, portland  # noqa: F401  (fixture)

runner = CliRunner()
store_url = helpers.store_url  # the fixture: a fresh store per test and backend
each_store = pytest.mark.parametrize("store_url", helpers.BACKENDS, indirect=True)


def _labels(n: int, seed: int) -> np.ndarray:
    names = np.array(["north", "south", "east", "west side"], dtype=object)
    return np.random.default_rng(seed).choice(names, n)


@each_store
def test_each_region_reads_back_as_its_split(store_url):
    events = helpers.synthetic_events(3_000, seed=1)
    labels = _labels(len(events), seed=2)
    more = helpers.synthetic_events(1_000, seed=3, start_id=2_500)  # 500 already stored
    more_labels = _labels(len(more), seed=4)
    with open_store(store_url) as store:
        assert store.add_events("d", events, by=labels).n_new == 3_000
        report = store.add_events("d", more, by=regions_from_labels(more_labels))
        assert (report.n_new, report.n_duplicates) == (500, 500)
        # what the dataset holds: the first batch, then the new half of the second
        new = np.arange(500, 1_000)
        whole = split_events(events, regions_from_labels(labels))
        added = split_events(more.select(new), regions_from_labels(more_labels[new]))
        want_counts = {r: len(whole[r]) + len(added.get(r, [])) for r in whole}
        assert store.list_regions("d") == want_counts
        assert list(store.list_regions("d")) == sorted(want_counts)
        total = 0
        for region in want_counts:
            got = store.load_events("d", region=region)
            first, second = whole[region], added[region]
            # import order: the region's events of the first batch, then of the second
            helpers.assert_same_events(got.select(np.arange(len(first))), first)
            helpers.assert_same_events(got.select(np.arange(len(first), len(got))), second)
            assert got.report.n_rows == want_counts[region] == got.report.n_kept
            total += len(got)
        assert total == len(store.load_events("d"))
        # region and time filters together equal filtering the region's events
        since = np.datetime64("2017-02-01")
        got = store.load_events("d", since=since, region="north")
        north = store.load_events("d", region="north")
        helpers.assert_same_events(got, north.select(north.time >= since))
        assert got.report.filtered == {"since/until/categories": len(north) - len(got)}
        with pytest.raises(DataError, match="no region 'nowhere'.*east, north") as info:
            store.load_events("d", region="nowhere")
        assert info.value.params == ("region",)
        # one region for a whole batch
        store.add_events("one", events, region="north")
        assert store.list_regions("one") == {"north": len(events)}


@each_store
def test_regions_and_no_regions_do_not_mix(store_url):
    events = helpers.synthetic_events(200, seed=5)
    with open_store(store_url) as store:
        store.add_events("plain", events)
        assert store.list_regions("plain") == {}
        with pytest.raises(DataError, match="not split by region") as info:
            store.load_events("plain", region="north")
        assert info.value.params == ("region",)
        other = helpers.synthetic_events(10, seed=6, start_id=10_000)
        with pytest.raises(DataError, match="holds events without a region"):
            store.add_events("plain", other, region="north")
        store.add_events("split", events, by=_labels(len(events), seed=7))
        with pytest.raises(DataError, match="is split by region, so these events need one"
                           ) as info:
            store.add_events("split", other)
        assert info.value.params == ("by",)
        with pytest.raises(ParameterError, match="not both"):
            store.add_events("split", other, region="a", by=["a"] * len(other))
        with pytest.raises(ParameterError, match="10 region names for 200 events|"
                                                 "200 events"):
            store.add_events("split", events, by=["a"] * 10)
        with pytest.raises(DataError, match="have no value"):
            store.add_events("split", other, by=["a"] * 9 + [None])
        assert len(store.load_events("split")) == len(events)  # refused imports kept nothing
    with pytest.raises(DataError, match="not split by region"):
        store_regions(f"{store_url}#plain")


@each_store
def test_read_only_store(store_url):
    events = helpers.synthetic_events(100, seed=8)
    labels = _labels(len(events), seed=9)
    with open_store(store_url) as store:
        store.add_events("d", events, by=labels)
    reference = f"{store_url}#d"
    with open_store(store_url, read_only=True) as first, \
            open_store(store_url, read_only=True) as second:  # two readers at once
        helpers.assert_same_events(first.load_events("d", region="south"),
                                   second.load_events("d", region="south"))
        with pytest.raises(DataError, match="opened read-only") as info:
            first.add_events("d", events)
        assert info.value.params == ("read_only",)
    helpers.assert_same_events(read_store_region(reference, "east"),
                               events.select(labels == "east"))


@each_store
def test_store_from_before_regions_is_upgraded(store_url):
    events = helpers.synthetic_events(100, seed=10)
    with open_store(store_url) as store:
        store.add_events("old", events)
        store._execute("ALTER TABLE events DROP COLUMN region")  # as an earlier version wrote
    with pytest.raises(DataError, match="earlier placecast"):
        open_store(store_url, read_only=True)
    with open_store(store_url) as store:  # opening for writing adds the column
        helpers.assert_same_events(store.load_events("old"), events)
        assert store.list_regions("old") == {}
        store.add_events("new", events, by=_labels(len(events), seed=11))
        assert sum(store.list_regions("new").values()) == len(events)
    with open_store(store_url, read_only=True) as store:
        assert len(store.load_events("old")) == len(events)


@pytest.mark.parametrize("store_url", helpers.BACKENDS[1:], indirect=True)
def test_postgis_region_read_uses_the_region_index(store_url):
    events = helpers.synthetic_events(2_000, seed=12)
    with open_store(store_url) as store:
        store.add_events("d", events, by=_labels(len(events), seed=13))
        store._con.execute("ANALYZE events")
        store._con.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in store._con.execute(
            "EXPLAIN SELECT time, x, y FROM events WHERE dataset = 'd' AND region = 'north' "
            "ORDER BY seq").fetchall())
    assert "Index Cond: ((dataset = 'd'::text) AND (region = 'north'::text))" in plan, plan
    assert "events_dataset_region" in plan, plan


@pytest.fixture(scope="module")
def threads_client(tmp_path_factory):
    distributed = pytest.importorskip("dask.distributed")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, dashboard_address=None, processes=False,
        local_directory=str(tmp_path_factory.mktemp("dask")))
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@each_store
def test_dask_regions_from_the_store_equal_each_region_alone(store_url, portland,  # noqa: F811
                                                             threads_client):
    events, labels = portland["events"], portland["labels"]
    with open_store(store_url) as store:
        store.add_events("burglary", events, by=labels)
    reference = f"{store_url}#burglary"
    spec = UnitSpec(cell_size=CELL)
    backtests = run_by_region("backtest", reference, params=BACKTEST, unit_spec=spec,
                              dask=threads_client)
    forecasts = run_by_region("forecast", reference, unit_spec=spec, dask=threads_client,
                              params=dict(model="kde", at="2016-10-01", horizon="7d"))
    assert sorted(backtests.region.unique()) == sorted(set(labels))
    for region in sorted(set(labels)):
        mine, units = _alone(events, labels, region)
        params = dict(BACKTEST)
        alone = run_backtest(mine, units, area=params.pop("area"), **params).to_frame()
        got = backtests[backtests.region == region].drop(columns="region")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone)
        forecast = run_forecast(mine, model="kde", at="2016-10-01", horizon="7d", units=units)
        got = forecasts[forecasts.region == region].drop(columns="region")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), forecast.to_frame())
    # serially in this process, from the store, the same table
    serial = run_by_region("backtest", reference, params=BACKTEST, unit_spec=spec)
    pd.testing.assert_frame_equal(serial, backtests)
    one = run_by_region("forecast", reference, unit_spec=spec, regions=["CE"],
                        params=dict(model="kde", at="2016-10-01", horizon="7d"))
    assert set(one.region) == {"CE"}


@each_store
def test_cli_ingest_by_region_then_run_by_region(store_url, portland, tmp_path):  # noqa: F811
    reference = f"{store_url}#burglary"
    result = runner.invoke(app, ["ingest", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--dataset", "burglary", "--db", store_url, "--by",
                                 str(portland["polygons"]), "--by-id", "PRECINCT"])
    assert result.exit_code == 0, result.output
    assert "in 3 regions" in " ".join(result.output.split())
    # a region column gives the same regions
    result = runner.invoke(app, ["ingest", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--dataset", "by_column", "--db", store_url, "--by",
                                 "precinct"])
    assert result.exit_code == 0, result.output
    with open_store(store_url) as store:
        want = dict(zip(*np.unique(portland["labels"], return_counts=True), strict=True))
        assert store.list_regions("burglary") == store.list_regions("by_column") == want
    out = tmp_path / "forecasts.csv"
    result = runner.invoke(app, ["forecast", reference, "--by", "region", "--cell", "1500ft",
                                 "--at", "2016-10-01", "--model", "kde", "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    events, labels = portland["events"], portland["labels"]
    for region in sorted(set(labels)):
        mine, units = _alone(events, labels, region)
        want_forecast = run_forecast(mine, model="kde", at="2016-10-01", horizon="7d",
                                     units=units)
        np.testing.assert_allclose(table[table.region == region].intensity.to_numpy(),
                                   want_forecast.to_frame().intensity)
    for args, message in [
        (["--by", "precinct"], "give --by region"),
        (["--by", "region", "--since", "2016-06-01"], "drop --since"),
        (["--by", "region", "--by-id", "X"], "drop --by-id"),
    ]:
        result = runner.invoke(app, ["forecast", reference, *args, "--at", "2016-10-01",
                                     "-o", str(tmp_path / "bad.csv")])
        assert result.exit_code == 2, result.output
        assert message in " ".join(result.output.split())
        assert not (tmp_path / "bad.csv").exists()
    # plain events into a dataset split by region: refused, named as the CLI's flag
    result = runner.invoke(app, ["ingest", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--dataset", "burglary", "--db", store_url])
    assert result.exit_code == 2, result.output
    assert "give each its region with --by" in " ".join(result.output.split())
    result = runner.invoke(app, ["ingest", str(portland["csv"]), "--crs", "EPSG:2913",
                                 "--dataset", "x", "--db", store_url, "--by-id", "PRECINCT"])
    assert result.exit_code == 2 and "give --by too" in " ".join(result.output.split())


@each_store
def test_a_missing_region_names_the_region_and_parameter(store_url):
    events = helpers.synthetic_events(50, seed=14)
    with open_store(store_url) as store:
        store.add_events("d", events, by=_labels(len(events), seed=15))
    with pytest.raises(ParameterError, match="no region 'nowhere' in the events"):
        run_by_region("forecast", f"{store_url}#d", unit_spec=UnitSpec(cell_size=500.0),
                      regions=["nowhere"], params=dict(model="naive", at="2017-03-01"))
    # an error inside a region's task keeps the parameter it is about
    from placecast.regions import _run_task, _Task

    task = _Task("forecast", "north", dict(model="naive", at="2017-03-01", horizon="7d"),
                 UnitSpec(cell_size=500.0), store=f"{store_url}#d")
    with open_store(store_url) as store:
        store.delete_dataset("d")
        store.add_events("d", events)  # no regions any more
    with pytest.raises(DataError, match="region 'north': .*not split by region") as info:
        _run_task(task)
    assert info.value.params == ("region",)
