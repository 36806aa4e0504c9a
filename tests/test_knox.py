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
                if k == 0 and edges[0] <= value <= edges[1]:
                    return 0
                if k > 0 and edges[k] < value <= edges[k + 1]:
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
