"""Knox test (Burkitt reference) and near-repeat tables (Chicago, against brute force)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from placecast.cli import app
from placecast.clusters import knox_test, near_repeat
from placecast.exceptions import DataError, ParameterError


@pytest.fixture(scope="module")
def burkitt(shared_data: Path) -> pd.DataFrame:
    return pd.read_csv(shared_data / "burkitt" / "burkitt_events.csv")


@pytest.fixture(scope="module")
def knox_reference(shared_data: Path) -> dict:
    text = (shared_data / "burkitt" / "REFERENCE.md").read_text()
    return {
        "close": int(re.search(r"close-close pairs (\d+)", text)[1]),
        "table": ast.literal_eval(re.search(r"2x2 table (\[\[.*?\]\])", text)[1]),
        "n_pairs": int(re.search(r"of the ([\d,]+) pairs", text)[1].replace(",", "")),
        "expected": ast.literal_eval(re.search(r"expected (\[\[.*?\]\])", text, re.S)[1]),
        "p": float(re.search(r"Poisson p = (\d+\.\d+)", text)[1]),
    }


@pytest.fixture(scope="module")
def chicago(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "chicago" / "burglary_2016.csv").dropna()
    frame["days"] = (pd.to_datetime(frame["date"]) - pd.Timestamp("2016-01-01")).dt.days
    # a dense corner of the city, for a brute-force-sized subset with near repeats in it
    x0, y0 = frame["X"].median(), frame["Y"].median()
    near = frame[(abs(frame["X"] - x0) < 2500) & (abs(frame["Y"] - y0) < 2500)]
    return near.head(700).reset_index(drop=True)


def test_knox_burkitt_matches_reference(burkitt: pd.DataFrame, knox_reference: dict) -> None:
    result = knox_test(burkitt["X"], burkitt["Y"], burkitt["T"], distance=20, time=5)
    assert result.statistic == knox_reference["close"]
    assert result.table.tolist() == knox_reference["table"]
    assert result.n_pairs == knox_reference["n_pairs"]
    np.testing.assert_allclose(result.expected, knox_reference["expected"], rtol=1e-8)
    assert result.p_value_poisson == pytest.approx(knox_reference["p"], rel=1e-12)


def test_knox_permutation_p_value(burkitt: pd.DataFrame) -> None:
    a = knox_test(burkitt["X"], burkitt["Y"], burkitt["T"], distance=20, time=5,
                  n_permutations=199, random_state=4)
    b = knox_test(burkitt["X"], burkitt["Y"], burkitt["T"], distance=20, time=5,
                  n_permutations=199, random_state=4)
    assert a.p_value_permutation == b.p_value_permutation
    # the Poisson approximation and the permutation test agree on "not significant"
    assert 0.05 < a.p_value_permutation < 0.6


def test_knox_brute_force_manhattan(burkitt: pd.DataFrame) -> None:
    x, y, t = (burkitt[c].to_numpy() for c in ("X", "Y", "T"))
    result = knox_test(x, y, t, distance=15, time=30, metric="manhattan")
    d = np.abs(x[:, None] - x[None, :]) + np.abs(y[:, None] - y[None, :])
    dt = np.abs(t[:, None] - t[None, :])
    iu = np.triu_indices(len(x), 1)
    s, c = d[iu] <= 15, dt[iu] <= 30
    assert result.table.tolist() == [[int((s & c).sum()), int((s & ~c).sum())],
                                     [int((~s & c).sum()), int((~s & ~c).sum())]]


def _brute_table(x: np.ndarray, y: np.ndarray, t: np.ndarray, d_edges: list[float],
                 t_edges: list[float], convention: str) -> np.ndarray:
    """Pairs per band by explicit comparisons over every pair."""
    table = np.zeros((len(d_edges) - 1, len(t_edges) - 1), dtype=int)

    def band(value: float, edges: list[float]) -> int:
        for k in range(len(edges) - 1):
            if convention == "half-open" and edges[k] <= value < edges[k + 1]:
                return k
            if convention == "calculator":
                # the calculator's "a to b" is [a - 1, b); edges starting 0, 0 make a
                # "same location" band (exactly 0) and then (0, e_2) (Steenbeek's
                # NearRepeat vignette "NRC"; this oracle replaced the old (a, b] reading)
                if edges[k] == edges[k + 1] == 0:
                    if value == 0:
                        return k
                elif edges[k] <= value < edges[k + 1] and not (value == 0 and k == 1
                                                               and edges[0] == edges[1]):
                    return k
        return -1

    n = len(x)
    dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    gap = np.abs(t[:, None] - t[None, :])
    for i in range(n):
        for j in range(i + 1, n):
            if dist[i, j] > d_edges[-1] or gap[i, j] > t_edges[-1]:
                continue
            a, b = band(dist[i, j], d_edges), band(gap[i, j], t_edges)
            if a >= 0 and b >= 0:
                table[a, b] += 1
    return table


@pytest.mark.parametrize("convention,d_edges,t_edges", [
    ("half-open", [0.0, 100.0, 200.0, 400.0], [0.0, 7.0, 14.0, 28.0]),
    ("calculator", [0.0, 0.0, 100.0, 200.0, 300.0], [0.0, 7.0, 14.0, 21.0]),
])
def test_near_repeat_counts_match_brute_force(chicago: pd.DataFrame, convention: str,
                                              d_edges: list[float],
                                              t_edges: list[float]) -> None:
    x, y, t = (chicago[c].to_numpy(dtype=float) for c in ("X", "Y", "days"))
    result = near_repeat(x, y, t, distance_bands=d_edges, time_bands=t_edges,
                         convention=convention, n_permutations=9, random_state=0)
    np.testing.assert_array_equal(result.observed, _brute_table(x, y, t, d_edges, t_edges,
                                                                convention))
    assert result.observed.sum() > 50  # the subset really has close pairs


def test_near_repeat_expected_and_p_values_from_the_same_permutations(
        chicago: pd.DataFrame) -> None:
    x, y, t = (chicago[c].to_numpy(dtype=float) for c in ("X", "Y", "days"))
    d_edges, t_edges = [0.0, 150.0, 400.0], [0.0, 10.0, 30.0]
    result = near_repeat(x, y, t, distance_bands=d_edges, time_bands=t_edges,
                         n_permutations=5, random_state=3)
    rng = np.random.default_rng(3)
    sims = [_brute_table(x, y, rng.permutation(t), d_edges, t_edges, "half-open")
            for _ in range(5)]
    np.testing.assert_allclose(result.expected, np.mean(sims, axis=0))
    hits = np.sum([s >= result.observed for s in sims], axis=0)
    np.testing.assert_allclose(result.p_value, (hits + 1) / 6)


def test_near_repeat_labels_and_summary(chicago: pd.DataFrame) -> None:
    x, y, t = (chicago[c].to_numpy(dtype=float) for c in ("X", "Y", "days"))
    result = near_repeat(x, y, t, distance_bands=[0, 0, 100, 200], time_bands=[0, 7, 14],
                         convention="calculator", n_permutations=19, random_state=1)
    assert result.distance_labels == ("same location", "1 to 100", "101 to 200")
    assert result.time_labels == ("0 to 7", "8 to 14")
    text = result.summary()
    assert "19 permutations" in text
    frame = result.to_frame()
    assert len(frame) == 6 and set(frame.columns) >= {"observed", "expected", "ratio"}


def test_near_repeat_bad_input() -> None:
    with pytest.raises(ParameterError, match="metric must be"):
        near_repeat([0, 1], [0, 1], [0, 1], distance_bands=[0, 1], time_bands=[0, 1],
                    metric="chebyshev")
    with pytest.raises(ParameterError, match="distance_bands must be strictly increasing"):
        near_repeat([0, 1], [0, 1], [0, 1], distance_bands=[0, 0, 1], time_bands=[0, 1])
    with pytest.raises(DataError, match="finite"):
        knox_test([0, np.nan], [0, 1], [0, 1], distance=1, time=1)


def test_knox_and_nearrepeat_cli(shared_data: Path, tmp_path: Path) -> None:
    path = shared_data / "burkitt" / "burkitt_events.csv"
    res = CliRunner().invoke(app, ["knox", str(path), "--x", "X", "--y", "Y", "--crs",
                                   "local:km", "--time", "T", "--time-format",
                                   "days since 1960-01-01", "--distance", "20km", "--days",
                                   "5", "--json"])
    assert res.exit_code == 0, res.output
    out = res.output[res.output.index("{"):]
    assert '"statistic": 13' in out
    res = CliRunner().invoke(app, ["nearrepeat", str(path), "--x", "X", "--y", "Y", "--crs",
                                   "local:km", "--time", "T", "--time-format",
                                   "days since 1960-01-01", "--distance-bands",
                                   "0,0,10km,20km", "--time-bands", "0,5d,10d",
                                   "--convention", "calculator", "--permutations", "9",
                                   "-o", str(tmp_path / "nr.csv")])
    assert res.exit_code == 0, res.output
    assert len(pd.read_csv(tmp_path / "nr.csv")) == 6


# The Near Repeat Calculator 1.3's own output for Chicago residential burglary, 2015-12-31
# to 2016-01-31 (970 events), Manhattan distance, bandwidths 100 m (3 bands) and 7 days
# (3 bands), 20 iterations: the "Observed frequencies distribution" and the mean expected
# counts of its verbose file inst/extdata/chicago_be_month1_NRverbose_2019-09-23_143005.csv
# in the R package NearRepeat (github wsteenbeek/NearRepeat), shown in its vignette "NRC".
NRC_ROWS = ("same location", "1 to 100", "101 to 200", "201 to 300", "more than 300")
NRC_COLUMNS = ("0 to 7", "8 to 14", "15 to 21", "more than 21")
NRC_OBSERVED = [[28, 5, 5, 2],
                [44, 13, 8, 4],
                [97, 56, 19, 16],
                [77, 67, 45, 20],
                [182194, 146149, 95237, 45879]]
NRC_MEAN_EXPECTED = [[16.947, 11.632, 7.947, 3.474],
                     [26.105, 21.684, 14.053, 7.158],
                     [73.579, 59.263, 37.053, 18.105],
                     [82.053, 65.158, 42.000, 19.789],
                     [182241.3, 146132.3, 95212.9, 45872.5]]


@pytest.fixture(scope="module")
def chicago_january(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_csv(shared_data / "chicago" / "burglary_2016.csv").dropna()
    frame = frame[pd.to_datetime(frame["date"]) < "2016-02-01"].reset_index(drop=True)
    frame["days"] = (pd.to_datetime(frame["date"]) - pd.Timestamp("2016-01-01")).dt.days
    return frame


def test_calculator_convention_reproduces_the_published_calculator_table(
        chicago_january: pd.DataFrame) -> None:
    assert len(chicago_january) == 970  # the calculator's "source data records used"
    x, y, t = (chicago_january[c].to_numpy(dtype=float) for c in ("X", "Y", "days"))
    result = near_repeat(x, y, t, distance_bands="0,0,100m,200m,300m+",
                         time_bands=[0, 7, 14, "21+"], metric="manhattan",
                         convention="calculator", n_permutations=999, random_state=831)
    assert result.distance_labels == NRC_ROWS
    assert result.time_labels == NRC_COLUMNS
    assert result.observed.tolist() == NRC_OBSERVED          # every cell, exactly
    assert result.n_pairs == 970 * 969 // 2 and result.n_pairs_outside == 0
    # the calculator's means come from 19 permutations: ours (999) must lie within
    # sampling error of them (about 4 Poisson standard errors of a 19-draw mean)
    nrc = np.array(NRC_MEAN_EXPECTED)
    tolerance = 4 * np.sqrt(np.maximum(nrc, 1) / 19) + 0.5
    assert (np.abs(result.expected - nrc)[:4] <= tolerance[:4]).all()
    # the near-repeat signal the calculator reports: 0-7 days within 200 m, p = 0.001
    assert (result.p_value[:3, 0] == 1 / 1000).all() and (result.ratio[:3, 0] > 1.3).all()


def test_open_bands_match_brute_force_and_a_plain_permutation_loop(
        chicago: pd.DataFrame) -> None:
    x, y, t = (chicago[c].to_numpy(dtype=float) for c in ("X", "Y", "days"))
    d_edges, t_edges = [50.0, 150.0, 400.0, np.inf], [0.0, 10.0, np.inf]
    result = near_repeat(x, y, t, distance_bands=d_edges, time_bands=t_edges,
                         n_permutations=7, random_state=5)

    def brute(times: np.ndarray) -> np.ndarray:
        iu = np.triu_indices(len(x), 1)
        d = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])[iu]
        gap = np.abs(times[:, None] - times[None, :])[iu]
        a = np.digitize(d, d_edges) - 1        # pairs nearer than 50 m: -1, left out
        b = np.digitize(gap, t_edges) - 1
        ok = a >= 0
        return np.bincount(a[ok] * 2 + b[ok], minlength=6).reshape(3, 2)

    np.testing.assert_array_equal(result.observed, brute(t))
    assert result.n_pairs_outside == len(x) * (len(x) - 1) // 2 - brute(t).sum() > 0
    rng = np.random.default_rng(5)
    sims = [brute(rng.permutation(t)) for _ in range(7)]
    np.testing.assert_allclose(result.expected, np.mean(sims, axis=0))
    np.testing.assert_allclose(result.p_value,
                               (np.sum([s >= result.observed for s in sims], axis=0) + 1) / 8)


def test_band_edges_text_and_open_bands() -> None:
    from placecast.clusters._knox import band_edges

    assert band_edges("0, 0, 100m, 0.2km, 300m, inf", kind="distance").tolist() == \
        [0, 0, 100, 200, 300, np.inf]
    assert band_edges("0,7d,2w,21d+", kind="time").tolist() == [0, 7, 14, 21, np.inf]
    with pytest.raises(ParameterError, match="only the last edge may be open-ended"):
        band_edges("0,100m+,200m", kind="distance")
    with pytest.raises(ParameterError, match="not a fixed number of days"):
        band_edges("0,1M", kind="time")
    with pytest.raises(ParameterError, match="only the last edge may be inf"):
        near_repeat([0, 1], [0, 1], [0, 1], distance_bands=[0, np.inf, 5],
                    time_bands=[0, 1])
    with pytest.raises(ParameterError, match="strictly increasing for the calculator"):
        near_repeat([0, 1], [0, 1], [0, 1], distance_bands=[0, 0, 1],
                    time_bands=[0, 0, 1], convention="calculator")
    # an open band leaves nothing out; a finite one says how much it leaves out
    closed = near_repeat([0, 1, 500], [0, 0, 0], [0, 1, 2], distance_bands=[0, 10],
                         time_bands=[0, 5], n_permutations=3, random_state=0)
    assert closed.n_pairs_outside == 2 and "beyond the last" in closed.summary()
    opened = near_repeat([0, 1, 500], [0, 0, 0], [0, 1, 2], distance_bands=[0, "10+"],
                         time_bands=[0, "5+"], n_permutations=3, random_state=0)
    assert opened.observed.sum() == 3 and opened.n_pairs_outside == 0
    assert opened.distance_labels == ("0 to <10", "10 or more")


def test_nearrepeat_cli_calculator_table(chicago_january: pd.DataFrame,
                                         tmp_path: Path) -> None:
    events = tmp_path / "chicago_january.csv"
    chicago_january[["X", "Y", "date"]].to_csv(events, index=False)
    out = tmp_path / "nr.csv"
    res = CliRunner().invoke(app, ["nearrepeat", str(events), "--x", "X", "--y", "Y",
                                   "--time", "date", "--crs", "EPSG:26971",
                                   "--distance-bands", "0,0,100m,200m,300m+",
                                   "--time-bands", "0,7d,14d,21d,inf", "--metric", "manhattan",
                                   "--convention", "calculator", "--permutations", "19",
                                   "--seed", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert table["observed"].to_numpy().reshape(5, 4).tolist() == NRC_OBSERVED
    assert tuple(table["distance_band"].unique()) == NRC_ROWS
    res = CliRunner().invoke(app, ["nearrepeat", str(events), "--x", "X", "--y", "Y",
                                   "--time", "date", "--crs", "EPSG:26971",
                                   "--distance-bands", "0,100m,200m", "--time-bands",
                                   "0,7d", "--permutations", "3"])
    assert res.exit_code == 0 and "beyond the last" in res.output
