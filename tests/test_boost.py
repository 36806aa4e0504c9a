"""The learned model (boost): covariate recovery, no leakage, determinism, CLI."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from typer.testing import CliRunner

from placecast.cli import app
from placecast.evaluate import run_backtest
from placecast.events import Events
from placecast.forecast import TimeWindow
from placecast.models import BoostedPoisson, make_model
from placecast.pipeline import UnitSpec, build_units

X0, Y0 = 500_000.0, 5_040_000.0  # UTM zone 10N, metres
SIDE = 4_000.0
STRIPE = 400.0
RISK = np.array([0, 3, 1, 0, 2, 3, 0, 1, 3, 0])  # one value per 400 m stripe
CRS = "EPSG:32610"


def _stripes(path: Path, crs: str = CRS) -> Path:
    """A polygon layer of vertical stripes carrying a 'risk' attribute."""
    polygons = [shapely.box(X0 + i * STRIPE, Y0, X0 + (i + 1) * STRIPE, Y0 + SIDE)
                for i in range(len(RISK))]
    frame = gpd.GeoDataFrame({"risk": RISK.astype(float)}, geometry=polygons, crs=CRS)
    frame.to_crs(crs).to_file(path, driver="GPKG")
    return path


def _simulate(seed: int = 0, n_days: int = 1100, per_day: float = 4.0) -> Events:
    """Events whose intensity rises as exp(1.2 * risk) of the stripe they fall in."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(per_day * n_days)
    weights = np.exp(1.2 * RISK)
    stripe = rng.choice(len(RISK), size=n, p=weights / weights.sum())
    x = X0 + (stripe + rng.random(n)) * STRIPE
    y = Y0 + rng.random(n) * SIDE
    days = np.sort(rng.integers(0, n_days, size=n))
    time = np.datetime64("2014-01-01", "D") + days
    return Events.from_arrays(time.astype("datetime64[ns]"), x, y, crs=CRS)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Events, Path, object]:
    folder = tmp_path_factory.mktemp("boost")
    events = _simulate()
    region = folder / "region.gpkg"
    gpd.GeoDataFrame(geometry=[shapely.box(X0, Y0, X0 + SIDE, Y0 + SIDE)],
                     crs=CRS).to_file(region, driver="GPKG")
    units = build_units(events, UnitSpec(cell_size=200.0, region=region))
    return events, _stripes(folder / "stripes.gpkg"), units


def test_recovers_a_covariate_effect_and_beats_kde(simulated) -> None:
    events, stripes, units = simulated
    window = TimeWindow.starting("2016-11-01", "7d")
    model = BoostedPoisson(covariates=[f"{stripes}:attr=risk"]).fit(events.before(window.start))
    importance = model.feature_importance(units, window)
    assert importance["feature"].iloc[0].startswith("stripes_"), importance.head()
    origins = np.datetime64("2016-10-04") + np.arange(6) * np.timedelta64(7, "D")
    result = run_backtest(events, units, models={
        "kde": make_model("kde"),
        "boost": BoostedPoisson(covariates=[f"{stripes}:attr=risk"]),
    }, origins=origins, horizons="7d", area="30%")  # the three risk-3 stripes
    scores = result.to_frame().groupby("model")[["log_score", "hits"]].mean()
    assert scores.loc["boost", "log_score"] > scores.loc["kde", "log_score"]
    assert scores.loc["boost", "hits"] >= scores.loc["kde", "hits"]


def test_covariate_layer_in_another_crs_is_reprojected(simulated, tmp_path) -> None:
    events, stripes, units = simulated
    lonlat = _stripes(tmp_path / "stripes_wgs84.gpkg", crs="EPSG:4326")
    window = TimeWindow.starting("2016-11-01", "7d")
    history = events.before(window.start)
    native = BoostedPoisson(covariates=[f"{stripes}:attr=risk"]).fit(history)
    moved = BoostedPoisson(covariates=[f"{lonlat}:attr=risk:name=stripes"]).fit(history)
    a = native._context(units)["static"]
    b = moved._context(units)["static"]
    assert a.names == b.names
    # the stripes' straight edges bend slightly in lon/lat: area shares agree to 1 %
    np.testing.assert_allclose(b.values, a.values, atol=0.01 * float(np.abs(a.values).max()))
    top_native = set(native.predict(units, window).order[:40])
    top_moved = set(moved.predict(units, window).order[:40])
    assert len(top_native & top_moved) >= 30


def test_no_leakage_scrambling_later_events_changes_nothing(simulated) -> None:
    events, _, units = simulated
    window = TimeWindow.starting("2016-06-01", "14d")
    rng = np.random.default_rng(3)
    later = events.time >= window.start
    x, y = events.x.copy(), events.y.copy()
    x[later] = rng.permutation(x[later])
    y[later] = X0 * 0 + rng.uniform(Y0, Y0 + SIDE, int(later.sum()))
    scrambled = Events.from_arrays(events.time, x, y, crs=CRS)
    first = make_model("boost").fit(events).predict(units, window)
    second = make_model("boost").fit(scrambled).predict(units, window)
    np.testing.assert_array_equal(first.intensity, second.intensity)


def test_deterministic_for_a_seed_and_expected_counts(simulated) -> None:
    events, _, units = simulated
    window = TimeWindow.starting("2016-09-01", "28d")
    a = BoostedPoisson(random_state=7).fit(events).predict(units, window)
    b = BoostedPoisson(random_state=7).fit(events).predict(units, window)
    np.testing.assert_array_equal(a.intensity, b.intensity)
    # the simulated rate is 4 events a day: a 28-day forecast expects about 112
    assert 0.8 * 112 < a.expected_total < 1.25 * 112


def test_explanations_name_features(simulated) -> None:
    events, stripes, units = simulated
    window = TimeWindow.starting("2016-11-01", "7d")
    model = BoostedPoisson(covariates=[f"{stripes}:attr=risk"]).fit(events)
    forecast = model.explained_forecast(units, window)
    frame = forecast.to_frame()
    top = frame.iloc[0]
    assert top["reason_1"] and top["effect_1"] > 1.0
    features = set(model.feature_importance(units, window)["feature"])
    assert {r for r in frame["reason_1"] if r} <= features


def test_boost_parameters_are_checked() -> None:
    events = _simulate(n_days=200)
    with pytest.raises(Exception, match="n_origins"):
        BoostedPoisson(n_origins=0).fit(events)
    with pytest.raises(Exception, match="zero_fraction"):
        BoostedPoisson(zero_fraction=2.0).fit(events)


def _csv(events: Events, path: Path) -> Path:
    pd.DataFrame({"date": pd.DatetimeIndex(events.time).strftime("%Y-%m-%d"),
                  "x": events.x, "y": events.y}).to_csv(path, index=False)
    return path


def test_cli_forecast_with_covariate_and_explain(simulated, tmp_path) -> None:
    events, stripes, _ = simulated
    data = _csv(events, tmp_path / "events.csv")
    out = tmp_path / "f.csv"
    res = CliRunner().invoke(app, ["forecast", str(data), "--x", "x", "--y", "y", "--crs", CRS,
                                   "--cell", "200m", "--at", "2016-11-01", "--model", "boost",
                                   "--covariate", f"{stripes}:attr=risk", "--explain",
                                   "-o", str(out)])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert {"reason_1", "effect_1"} <= set(frame.columns)
    fit = tmp_path / "boost.json"
    res = CliRunner().invoke(app, ["fit", str(data), "--x", "x", "--y", "y", "--crs", CRS,
                                   "--cell", "200m", "--model", "boost", "-o", str(fit)])
    assert res.exit_code == 0, res.output
    importance = pd.read_csv(tmp_path / "boost_importance.csv")
    assert importance["share"].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("make_layer, message", [
    (lambda p: p / "missing.gpkg", "missing.gpkg"),
    (lambda p: (gpd.GeoDataFrame({"risk": []}, geometry=[], crs=CRS)
                .to_file(p / "empty.gpkg", driver="GPKG"), p / "empty.gpkg")[1], "empty.gpkg"),
    (lambda p: (gpd.GeoDataFrame(geometry=[shapely.Point(X0, Y0)])
                .to_file(p / "nocrs.gpkg", driver="GPKG"), p / "nocrs.gpkg")[1], "nocrs.gpkg"),
])
def test_cli_bad_covariate_files_exit_2(simulated, tmp_path, make_layer, message) -> None:
    events, _, _ = simulated
    data = _csv(events, tmp_path / "events.csv")
    layer = make_layer(tmp_path)
    out = tmp_path / "f.csv"
    res = CliRunner().invoke(app, ["forecast", str(data), "--x", "x", "--y", "y", "--crs", CRS,
                                   "--cell", "200m", "--at", "2016-11-01", "--model", "boost",
                                   "--covariate", str(layer), "-o", str(out)])
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert not out.exists()


def test_cli_wrong_geometry_type_and_no_model_taking_covariates(simulated, tmp_path) -> None:
    events, stripes, _ = simulated
    data = _csv(events, tmp_path / "events.csv")
    out = tmp_path / "f.csv"
    base = ["forecast", str(data), "--x", "x", "--y", "y", "--crs", CRS, "--cell", "200m",
            "--at", "2016-11-01", "-o", str(out)]
    res = CliRunner().invoke(app, [*base, "--model", "boost", "--covariate",
                                   f"{stripes}:length"])
    assert res.exit_code == 2 and "stripes.gpkg" in res.output, res.output
    res = CliRunner().invoke(app, [*base, "--model", "kde", "--covariate", str(stripes)])
    assert res.exit_code == 2 and "--model boost" in res.output, res.output
    assert not out.exists()


def test_backtest_calibration_tables(simulated, tmp_path) -> None:
    events, _, units = simulated
    origins = np.datetime64("2016-06-07") + np.arange(4) * np.timedelta64(28, "D")
    kwargs = dict(models=["naive", "boost"], origins=origins, horizons="28d", area="5%")
    result = run_backtest(events, units, **kwargs)
    table = result.calibration()
    frame = result.to_frame()
    for model in ("naive", "boost"):
        mine = table[table.model == model].set_index("decile")
        deciles = mine.drop(index="all")
        assert len(deciles) == 10
        assert deciles.observed.sum() == pytest.approx(mine.loc["all", "observed"])
        assert deciles.predicted.sum() == pytest.approx(mine.loc["all", "predicted"])
        assert mine.loc["all", "observed"] == frame[frame.model == model].n_events.sum()
        # forecasts rank: the top decile sees more events than the bottom one
        assert deciles.loc["1", "observed"] > deciles.loc["10", "observed"]
    boost = table[(table.model == "boost") & (table.decile == "all")].ratio.item()
    assert 0.8 < boost < 1.25  # stationary simulated events: honest expected counts
    # a resumed run from checkpoints keeps the calibration records
    folder = tmp_path / "ck"
    run_backtest(events, units, checkpoint=folder, **kwargs)
    resumed = run_backtest(events, units, checkpoint=folder, resume=True, **kwargs)
    pd.testing.assert_frame_equal(resumed.calibration(), table)


def test_ensemble_and_auto_learn_only_from_the_past(simulated) -> None:
    from placecast.models import AutoForecast, EnsembleForecast

    events, _, units = simulated
    window = TimeWindow.starting("2016-08-01", "14d")
    rng = np.random.default_rng(5)
    later = events.time >= window.start
    x = events.x.copy()
    x[later] = rng.permutation(x[later])
    scrambled = Events.from_arrays(events.time, x, events.y, crs=CRS)
    for cls in (EnsembleForecast, AutoForecast):
        model = cls(members=("kde", "naive"), n_origins=3)
        first = model.fit(events).predict(units, window)
        second = cls(members=("kde", "naive"), n_origins=3).fit(scrambled).predict(units,
                                                                                    window)
        np.testing.assert_array_equal(first.intensity, second.intensity)
        weights = dict(item.split("=") for item in first.params["weights"].split(", "))
        assert set(weights) == {"kde", "naive"} and all(float(w) >= 0 for w in weights.values())
    auto = AutoForecast(members=("kde", "naive"), n_origins=3).fit(events).predict(units, window)
    assert auto.params["chosen"] in {"kde", "naive", "ensemble"}
    assert "log score on 3 past windows" in auto.params["validation"]


def test_ensemble_refuses_unknown_or_nested_members(simulated) -> None:
    from placecast.models import EnsembleForecast

    events, _, _ = simulated
    with pytest.raises(Exception, match="unknown or nested"):
        EnsembleForecast(members=("kde", "auto")).fit(events)


def test_leading_categories_are_features_not_targets(simulated) -> None:
    events, _, units = simulated
    rng = np.random.default_rng(2)
    category = np.where(rng.random(len(events)) < 0.7, "THEFT", "CALL")
    labelled = Events.from_arrays(events.time, events.x, events.y, crs=CRS, category=category)
    window = TimeWindow.starting("2016-11-01", "7d")
    model = BoostedPoisson(target_categories="THEFT", leading_categories="all").fit(labelled)
    assert len(model.events_) == int((category == "THEFT").sum())
    names = set(model.feature_importance(units, window)["feature"])
    assert {"leading_count_28d", "leading_count_365d"} <= names
    # the forecast counts THEFT only: about 70 % of the 4 events a day
    total = model.predict(units, window).expected_total
    assert 0.7 * 28 * 0.75 < total < 0.7 * 28 * 1.3
    with pytest.raises(Exception, match="no events of BURGLARY"):
        BoostedPoisson(target_categories="BURGLARY").fit(labelled)


def test_feature_cache_reuses_only_valid_origins(simulated, monkeypatch) -> None:
    """Consecutive forecasts reuse past origins' features; results equal a cold run's."""
    from placecast.models import boost

    events, _, units = simulated
    windows = [TimeWindow.starting(day, "7d") for day in ("2016-10-04", "2016-10-11")]

    def run() -> list[np.ndarray]:
        return [BoostedPoisson(n_origins=20, n_trees=30).fit(events.before(w.start))
                .predict(units, w).intensity for w in windows]

    monkeypatch.setenv("PLACECAST_FEATURE_CACHE_MB", "0")  # no cache: every origin computed
    cold = run()
    monkeypatch.setenv("PLACECAST_FEATURE_CACHE_MB", "512")
    boost._FEATURE_CACHE.entries.clear()
    calls = []
    original = boost._FeatureInputs.origin_features
    monkeypatch.setattr(boost._FeatureInputs, "origin_features",
                        lambda self, origin: calls.append(origin) or original(self, origin))
    warm = run()
    for a, b in zip(cold, warm, strict=True):
        np.testing.assert_array_equal(a, b)
    # 20 training origins + the forecast origin; then only the new forecast origin: the
    # second forecast trains on the first's origin and 19 of its training origins
    assert len(calls) == 21 + 1, len(calls)

    # events changed before some origins: those origins are recomputed, results still exact
    moved = np.asarray(events.x).copy()
    moved[10] += 150.0
    changed = Events.from_arrays(events.time, moved, events.y, crs=CRS)
    calls.clear()
    window = windows[1]
    warm_changed = BoostedPoisson(n_origins=20, n_trees=30).fit(
        changed.before(window.start)).predict(units, window).intensity
    assert len(calls) == 21  # the change is before every origin: nothing reused
    monkeypatch.setenv("PLACECAST_FEATURE_CACHE_MB", "0")
    cold_changed = BoostedPoisson(n_origins=20, n_trees=30).fit(
        changed.before(window.start)).predict(units, window).intensity
    np.testing.assert_array_equal(warm_changed, cold_changed)


@pytest.mark.parametrize("value", ["lots", "-5", "nan"])
def test_feature_cache_size_must_be_megabytes(simulated, monkeypatch, value) -> None:
    from placecast.exceptions import ParameterError

    events, _, units = simulated
    window = TimeWindow.starting("2016-10-04", "7d")
    monkeypatch.setenv("PLACECAST_FEATURE_CACHE_MB", value)
    with pytest.raises(ParameterError, match="PLACECAST_FEATURE_CACHE_MB"):
        BoostedPoisson(n_origins=5, n_trees=5).fit(events.before(window.start)).predict(
            units, window)
