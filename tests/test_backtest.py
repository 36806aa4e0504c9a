"""Backtests: no look-ahead, identical serial / processes / Dask, resume, bad input."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from placecast.evaluate import COLUMNS, data_end, rolling_origins, run_backtest, tune
from placecast.events import Events
from placecast.exceptions import ParameterError, UndefinedMetricWarning
from placecast.forecast import TimeWindow
from placecast.models import Forecaster
from placecast.pipeline import UnitSpec, build_units
from placecast.units import Units

ORIGINS = ["2016-06-01", "2016-06-08", "2016-06-15", "2016-06-22"]
CELL = 1500 * 0.3048  # coarse cells keep the tests fast


@pytest.fixture(scope="module")
def portland(shared_data):
    from placecast.io import read_events

    folder = shared_data / "portland"
    events = read_events(folder / "burglary_2012-03_2017-05.csv", crs="EPSG:2913",
                         since="2015-01-01")
    region = folder / "police_districts" / "Portland_Police_Districts.shp"
    units = build_units(events, UnitSpec(cell_size=CELL, region=region))
    return events, units, region


@pytest.fixture(scope="module")
def serial(portland):
    events, units, _ = portland
    return run_backtest(events, units, models=["naive", "kde", "prospective"],
                        origins=ORIGINS, horizons="7d,14d", area="1%")


class SpyModel(Forecaster):
    """Records the latest event time it was given at fit and predict."""

    name = "spy"
    seen: ClassVar[list[tuple[np.datetime64, np.datetime64]]] = []

    def __init__(self, *, lookback_days: float = 365.0) -> None:
        self.lookback_days = lookback_days

    def fit(self, events: Events):
        self.events_ = events
        return self

    def predict(self, units: Units, window: TimeWindow):
        SpyModel.seen.append((window.start, self.events_.time.max()))
        return self._make_forecast(units, window, np.ones(len(units)))


def test_result_table_and_flags(serial, portland):
    _, units, _ = portland
    frame = serial.to_frame()
    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == len(ORIGINS) * 2 * 3
    assert list(frame.model[:3]) == ["naive", "kde", "prospective"]
    assert (frame.region_area == units.region_area).all()
    assert (frame.flagged_area <= 0.01 * units.region_area + 1e-6).all()
    for model in serial.models:
        for h_index, horizon in enumerate(serial.horizons):
            flags = serial.flags(model, horizon)
            assert flags.shape == (len(ORIGINS), len(units))
            part = frame[(frame.model == model) & (frame.horizon == horizon)]
            np.testing.assert_array_equal(flags.sum(axis=1), part.n_flagged_units)
            observed = serial.observed[horizon]
            np.testing.assert_allclose((observed * flags).sum(axis=1), part.hits)
            np.testing.assert_allclose(observed.sum(axis=1), part.n_events)
            assert h_index < 2
    summary = serial.summary()
    assert set(summary.columns) >= {"horizon", "model", "metric", "n", "mean", "median",
                                    "p10", "p90"}
    pai_kde = frame[(frame.model == "kde") & (frame.horizon == "7d")].pai
    row = summary[(summary.model == "kde") & (summary.metric == "pai")
                  & (summary.horizon == "7d")].iloc[0]
    assert row["mean"] == pytest.approx(pai_kde.mean())
    part = frame[(frame.model == "kde") & (frame.horizon == "7d")]
    assert row["pooled"] == pytest.approx(
        part.hits.sum() / part.n_events.sum() / (part.flagged_area.iloc[0] / units.region_area))
    comparisons = serial.compare("pai", "7d")
    assert len(comparisons) == 2 and all(c.model == serial.winner("pai", "7d")
                                         for c in comparisons)
    assert serial.to_dict()["n_units"] == len(units)


def test_no_look_ahead_spy(portland):
    events, units, _ = portland
    SpyModel.seen.clear()
    run_backtest(events, units, models={"spy": SpyModel()}, origins=ORIGINS,
                 horizons=["7d", "1M"], area="1%")
    assert len(SpyModel.seen) == len(ORIGINS) * 2
    for start, latest in SpyModel.seen:
        assert latest < start
        assert start - latest <= np.timedelta64(3, "D")  # it did see the recent past


def test_future_events_do_not_change_forecasts(portland):
    events, units, _ = portland
    origin = np.datetime64("2016-06-01")
    rng = np.random.default_rng(1)
    future = events.time >= origin
    moved = Events(time=events.time, x=np.where(future, rng.permutation(events.x), events.x),
                   y=np.where(future, rng.permutation(events.y), events.y),
                   spatial_reference=events.spatial_reference)
    first = run_backtest(events, units, models=["kde", "prospective", "naive"],
                         origins=[origin], horizons="7d", area="1%")
    second = run_backtest(moved, units, models=["kde", "prospective", "naive"],
                          origins=[origin], horizons="7d", area="1%")
    for model in first.models:
        np.testing.assert_array_equal(first.flags(model), second.flags(model))
    assert not np.array_equal(first.observed["7d"], second.observed["7d"])


@pytest.mark.slow  # starting two Dask worker processes dominates (imports)
def test_processes_and_dask_identical_to_serial(portland):
    events, units, _ = portland
    options = dict(models=["naive", "kde"], origins=ORIGINS[:3], horizons="7d,14d",
                   area="1%")
    serial = run_backtest(events, units, **options)
    parallel = run_backtest(events, units, jobs=2, **options)
    pd.testing.assert_frame_equal(parallel.to_frame(), serial.to_frame())
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      processes=True) as cluster:
        # by scheduler address, as --dask tcp://host:port does
        on_dask = run_backtest(events, units, dask=cluster.scheduler_address, **options)
    pd.testing.assert_frame_equal(on_dask.to_frame(), serial.to_frame())
    for model in serial.models:
        np.testing.assert_array_equal(on_dask.flags(model, "14d"), serial.flags(model, "14d"))
        np.testing.assert_array_equal(parallel.flags(model, "7d"), serial.flags(model, "7d"))


def test_interrupted_run_resumes(serial, portland, tmp_path):
    events, units, _ = portland
    folder = tmp_path / "checkpoint"

    def stop_after_two(n_done, n_total):
        if n_done == 2:
            raise KeyboardInterrupt

    options = dict(models=["naive", "kde", "prospective"], origins=ORIGINS, horizons="7d,14d",
                   area="1%", checkpoint=folder)
    with pytest.raises(KeyboardInterrupt):
        run_backtest(events, units, progress=stop_after_two, **options)
    assert len(list(folder.glob("origin-*.npz"))) == 2
    calls = []
    resumed = run_backtest(events, units, resume=True,
                           progress=lambda n, total: calls.append(n), **options)
    assert calls[0] == 2 and calls[-1] == len(ORIGINS)  # two origins came from the checkpoint
    pd.testing.assert_frame_equal(resumed.to_frame(), serial.to_frame())
    for model in serial.models:
        np.testing.assert_array_equal(resumed.flags(model, "14d"), serial.flags(model, "14d"))
    with pytest.raises(ParameterError, match="other data or settings"):
        run_backtest(events, units, resume=True, **{**options, "area": "2%"})


def test_compare_treats_rounding_as_ties(serial):
    import dataclasses

    frame = serial.records.copy()
    # a copy of kde whose PAI differs from kde only by rounding
    twin = frame[frame.model == "kde"].assign(model="twin")
    twin["pai"] = twin["pai"] * (1 + 1e-13)
    records = pd.concat([frame, twin], ignore_index=True)
    result = dataclasses.replace(serial, records=records, models=("kde", "twin"))
    for horizon in result.horizons:
        assert result.winner("pai", horizon) == "kde"
        (comparison,) = result.compare("pai", horizon)
        assert comparison.n_better == comparison.n_worse == 0
        assert np.isnan(comparison.p_value)


def test_rolling_origins_and_data_end(portland):
    events, _, _ = portland
    origins = rolling_origins("2016-03-01", "2017-02-28", "7d")
    assert len(origins) == 53 and str(origins[-1])[:10] == "2017-02-28"
    assert str(data_end(events))[:10] == "2017-06-01"  # date-only data: last day in full
    months = rolling_origins("2016-01-31", "2016-04-30", "1M")
    assert [str(o)[:10] for o in months] == ["2016-01-31", "2016-02-29", "2016-03-31",
                                             "2016-04-30"]


@pytest.mark.parametrize(("options", "message"), [
    ({"origins": ["2014-06-01"]}, "not after the data start"),
    ({"origins": ["2017-06-05"]}, "at or after the data end"),
    ({"origins": ["2017-05-01"], "horizons": "2M"}, "past the end of the data"),
    ({"area": "100sqft"}, "smaller than one unit"),
    ({"area": "500sqmi"}, "larger than the region"),
    ({"models": ["naive", "oracle"]}, "unknown model 'oracle'"),
    ({"model_params": {"kde": {"band": 3}}}, "no parameter 'band'"),
    ({"horizons": "7d,7d"}, "repeated"),
    ({"jobs": 0}, "`jobs` must be a positive"),
])
def test_bad_input(portland, options, message):
    events, units, _ = portland
    settings = {"models": ["naive", "kde"], "origins": ORIGINS[:1], "horizons": "7d",
                "area": "1%"}
    settings.update(options)
    with pytest.raises(ParameterError, match=message):
        run_backtest(events, units, **settings)


def test_empty_windows_warn_once_and_are_nan():
    units_region = "local"
    assert units_region  # synthetic data on a local grid
    import shapely

    from placecast.events import SpatialReference
    from placecast.units import square_grid

    units = square_grid(shapely.box(0, 0, 100, 100), 10.0, SpatialReference("local:m"))
    times = ["2020-01-01", "2020-01-02", "2020-01-20", "2020-02-20"]
    events = Events.from_arrays(times, [5.0, 15.0, 25.0, 35.0], [5.0, 5.0, 5.0, 5.0])
    with pytest.warns(UndefinedMetricWarning, match="undefined"):
        result = run_backtest(events, units, models=["naive"],
                              origins=["2020-01-10", "2020-01-19"], horizons="7d",
                              area=200)
    frame = result.to_frame()
    assert np.isnan(frame.pai[0]) and frame.n_events[0] == 0
    assert frame.pai[1] == 0.0  # the naive forecast flags cells 0 and 1; the event is in 2
    summary = result.summary(["pai"])
    assert summary["n"].iloc[0] == 1


def test_tuning_keeps_periods_apart(portland):
    events, units, region = portland

    def make_units(cell_size):
        return build_units(events, UnitSpec(cell_size=cell_size, region=region))

    options = dict(model="kde", grid={"bandwidth": [100.0, 400.0]}, cell_sizes=[CELL],
                   tuning_start="2016-04-01", tuning_end="2016-04-15",
                   evaluation_start="2016-05-01", step="7d", horizon="7d", area="1%")
    result = tune(events, make_units, evaluation_end="2016-05-08", **options)
    table = result.to_frame()
    assert len(table) == 2 and table["mean"].iloc[0] >= table["mean"].iloc[1]
    assert result.best_params["bandwidth"] == table["bandwidth"].iloc[0]
    assert set(result.evaluation.models) == {"kde-tuned", "kde", "naive"}
    assert (result.evaluation.origins >= np.datetime64("2016-05-01")).all()
    # events from the evaluation period on cannot change the choice
    cut = events.time >= np.datetime64("2016-05-01")
    rng = np.random.default_rng(3)
    moved = Events(time=events.time, x=np.where(cut, rng.permutation(events.x), events.x),
                   y=np.where(cut, rng.permutation(events.y), events.y),
                   spatial_reference=events.spatial_reference)
    again = tune(moved, make_units, **options)
    pd.testing.assert_frame_equal(again.to_frame(), table)
    with pytest.raises(ParameterError, match="run into the evaluation period"):
        tune(events, make_units, **{**options, "tuning_end": "2016-04-29"})
    with pytest.raises(ParameterError, match="no parameter 'width'"):
        tune(events, make_units, **{**options, "grid": {"width": [1.0]}})
