"""Poisson, Bernoulli and retrospective scans against brute force (Kulldorff 1997 formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from placecast.clusters import ScanData, SpaceTimeScan
from placecast.clusters import _scan_models as models
from placecast.exceptions import DataError, ParameterError


def _xlogx_ratio(a: float, b: float) -> float:
    """``a ln(a / b)`` with ``0 ln 0 = 0``."""
    return a * math.log(a / b) if a > 0 else 0.0


def poisson_llr(n: float, mu: float, total: float) -> float:
    return _xlogx_ratio(n, mu) + _xlogx_ratio(total - n, total - mu)


def bernoulli_llr(n: float, big_n: float, cases: float, everyone: float) -> float:
    inside = _xlogx_ratio(n, big_n) + _xlogx_ratio(big_n - n, big_n)
    rest, out_n = everyone - big_n, cases - n
    outside = _xlogx_ratio(out_n, rest) + _xlogx_ratio(rest - out_n, rest) if rest else 0.0
    null = _xlogx_ratio(cases, everyone) + _xlogx_ratio(everyone - cases, everyone)
    return inside + outside - null


def windows(analysis: str, n_int: int, min_len: int, max_len: int) -> list[tuple[int, int]]:
    """(first, last) intervals in SaTScan's order: end ascending, then shortest first."""
    if analysis == "purely_spatial":
        return [(0, n_int - 1)]
    ends = [n_int - 1] if analysis == "prospective" else range(n_int)
    return [(end - length + 1, end) for end in ends for length in range(min_len, max_len + 1)
            if end - length + 1 >= 0]


def brute_force(data: ScanData, model: str, analysis: str, *, max_share: float = 0.5,
                min_len: int = 1, max_len: int = 1, min_cases: int = 2,
                case_location: np.ndarray | None = None,
                case_interval: np.ndarray | None = None) -> dict:
    """Every circle x window by explicit loops; the first strictly best cylinder wins."""
    loc = data.case_location if case_location is None else case_location
    t = data.case_interval if case_interval is None else case_interval
    total = float(len(loc))
    n_loc, n_int = data.n_locations, data.n_intervals
    sizes = data.sizes()
    if model == "poisson":
        size_at_risk = np.asarray(data.population, dtype=float)
    elif model == "bernoulli":
        size_at_risk = np.array([np.sum(data.case_location == k) + np.sum(
            data.control_location == k) for k in range(n_loc)], dtype=float)
        everyone = float(data.n_cases + data.n_controls)
    else:
        size_at_risk = np.array([np.sum(data.case_location == k) for k in range(n_loc)],
                                dtype=float)
    pts = data.distance_space()
    best = {"llr": 0.0}
    for c in range(n_loc):
        order = sorted(range(n_loc), key=lambda k: (math.dist(pts[c], pts[k]),
                                                    *data.coordinates[k]))
        members: list[int] = []
        for k in order:
            members.append(k)
            if sum(size_at_risk[m] for m in members) > max_share * size_at_risk.sum() + 1e-9:
                break
            for first, last in windows(analysis, n_int, min_len, max_len):
                in_window = (t >= first) & (t <= last)
                n = float(np.sum(in_window & np.isin(loc, members)))
                if model == "poisson":
                    share = (sum(data.population[m] for m in members) / data.population.sum()
                             * sizes[first:last + 1].sum() / sizes.sum())
                    mu = total * share
                    high, llr = n > mu, poisson_llr(n, mu, total) if n > mu else 0.0
                elif model == "bernoulli":
                    everyone_in = float(
                        np.sum(np.isin(data.case_location, members)
                               & (data.case_interval >= first) & (data.case_interval <= last))
                        + np.sum(np.isin(data.control_location, members)
                                 & (data.control_interval >= first)
                                 & (data.control_interval <= last)))
                    mu = everyone_in * total / everyone
                    high = n * (everyone - everyone_in) > (total - n) * everyone_in
                    llr = bernoulli_llr(n, everyone_in, total, everyone) if high else 0.0
                else:
                    c_z = sum(size_at_risk[m] for m in members)
                    mu = c_z * float(np.sum(in_window)) / total
                    high, llr = n > mu, poisson_llr(n, mu, total) if n > mu else 0.0
                if high and n >= min_cases and llr > best["llr"]:
                    best = {"llr": llr, "locations": list(members), "first": first,
                            "last": last, "observed": n, "expected": mu, "centre": c}
    return best


def poisson_data(seed: int, n_locations: int = 14, n_intervals: int = 12,
                 n_cases: int = 70) -> ScanData:
    rng = np.random.default_rng(seed)
    population = rng.integers(50, 500, size=n_locations).astype(float)
    loc = rng.choice(n_locations, size=n_cases, p=population / population.sum())
    t = rng.integers(0, n_intervals, size=n_cases)
    loc = np.concatenate([loc, [0] * 5])                 # a planted late cluster
    t = np.concatenate([t, [n_intervals - 1] * 3 + [n_intervals - 2] * 2])
    sizes = np.ones(n_intervals)
    sizes[0] = 0.5                                       # a short first interval
    return ScanData(location_ids=np.array([f"p{k}" for k in range(n_locations)]),
                    coordinates=rng.uniform(0, 50, size=(n_locations, 2)),
                    case_location=loc, case_interval=t,
                    interval_labels=[(str(k), str(k)) for k in range(n_intervals)],
                    population=population, interval_sizes=sizes)


def bernoulli_data(seed: int, n_locations: int = 13, n_intervals: int = 10) -> ScanData:
    rng = np.random.default_rng(seed)
    n_cases, n_controls = 60, 150
    loc = rng.integers(0, n_locations, size=n_cases)
    t = rng.integers(0, n_intervals, size=n_cases)
    loc = np.concatenate([loc, [2] * 6])
    t = np.concatenate([t, [n_intervals - 1] * 6])
    return ScanData(location_ids=np.array([f"b{k}" for k in range(n_locations)]),
                    coordinates=rng.uniform(0, 50, size=(n_locations, 2)),
                    case_location=loc, case_interval=t,
                    control_location=rng.integers(0, n_locations, size=n_controls),
                    control_interval=rng.integers(0, n_intervals, size=n_controls),
                    interval_labels=[(str(k), str(k)) for k in range(n_intervals)])


def _assert_same_cluster(result, want: dict, data: ScanData) -> None:  # noqa: ANN001
    top = result.most_likely
    assert top is not None
    assert top.test_statistic == pytest.approx(want["llr"], rel=1e-12)
    assert list(top.location_ids) == [str(data.location_ids[m]) for m in want["locations"]]
    assert (top.start_interval, top.end_interval) == (want["first"], want["last"])
    assert top.observed == want["observed"]
    assert top.expected == pytest.approx(want["expected"], rel=1e-12)
    assert top.centre_id == str(data.location_ids[want["centre"]])


CASES = [
    ("poisson", "prospective", 1, 5), ("poisson", "retrospective", 1, 4),
    ("poisson", "purely_spatial", 1, 1), ("bernoulli", "prospective", 1, 4),
    ("bernoulli", "retrospective", 2, 5), ("bernoulli", "purely_spatial", 1, 1),
    ("space_time_permutation", "retrospective", 1, 4),
]


@pytest.mark.parametrize(("model", "analysis", "min_len", "max_len"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_most_likely_cluster_equals_brute_force(model: str, analysis: str, min_len: int,
                                                max_len: int, seed: int) -> None:
    data = bernoulli_data(seed) if model == "bernoulli" else poisson_data(seed)
    max_share = 0.3 if model == "bernoulli" else 0.5
    scan = SpaceTimeScan(model=model, analysis=analysis, min_intervals=min_len,
                         max_intervals=max_len, max_share=max_share, n_permutations=0)
    want = brute_force(data, model, analysis, min_len=min_len, max_len=max_len,
                       max_share=max_share)
    _assert_same_cluster(scan.run(data), want, data)


@pytest.mark.parametrize("model", ["poisson", "bernoulli"])
def test_replications_equal_brute_force_on_the_same_draws(model: str) -> None:
    data = bernoulli_data(5) if model == "bernoulli" else poisson_data(5)
    seed, n_rep = 17, 5
    scan = SpaceTimeScan(model=model, analysis="prospective", max_intervals=4,
                         n_permutations=n_rep, random_state=seed)
    sims = scan.run(data).simulated_statistics
    first = data.n_intervals - 4
    draw = (models.poisson_draws if model == "poisson" else models.bernoulli_draws)(
        data, first, np.random.default_rng(seed))
    rep_loc, rep_t, rep_n = draw(n_rep)
    for b in range(n_rep):
        loc, t = rep_loc[b, :rep_n[b]], rep_t[b, :rep_n[b]]
        # cases before the scanned intervals never enter a window: pad the total with them
        n_before = data.n_cases - rep_n[b]
        loc = np.concatenate([loc, np.zeros(n_before, dtype=np.int64)])
        t = np.concatenate([t, np.full(n_before, -1)])
        want = brute_force(data, model, "prospective", max_len=4, case_location=loc,
                           case_interval=t)
        assert sims[b] == pytest.approx(want["llr"], rel=1e-12, abs=1e-12)


def test_poisson_draws_follow_population_and_time() -> None:
    data = poisson_data(3)
    draw = models.poisson_draws(data, 0, np.random.default_rng(0))
    rep_loc, rep_t, rep_n = draw(400)
    assert (rep_n == data.n_cases).all()              # whole period: all cases drawn
    counts = np.bincount(rep_loc.ravel(), minlength=data.n_locations)
    expected = rep_loc.size * data.population / data.population.sum()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 45                                  # 13 df: p ~ 1e-5
    t_counts = np.bincount(rep_t.ravel(), minlength=data.n_intervals)
    sizes = data.sizes()
    assert t_counts[0] / t_counts[1:].mean() == pytest.approx(sizes[0], rel=0.1)


def test_bernoulli_draws_keep_the_number_of_cases_among_everyone() -> None:
    data = bernoulli_data(4)
    first = data.n_intervals - 3
    rep_loc, rep_t, rep_n = models.bernoulli_draws(data, first, np.random.default_rng(1))(300)
    everyone_t = np.concatenate([data.case_interval, data.control_interval])
    scanned = int((everyone_t >= first).sum())
    total = data.n_cases + data.n_controls
    assert rep_n.mean() == pytest.approx(data.n_cases * scanned / total, rel=0.05)
    assert all((rep_t[b, :rep_n[b]] >= first).all() for b in range(300))
    # no cell ever holds more cases than individuals
    cell = np.bincount(np.concatenate([data.case_location, data.control_location])
                       [everyone_t >= first] * 10
                       + everyone_t[everyone_t >= first] - first, minlength=130)
    for b in range(300):
        drawn = np.bincount(rep_loc[b, :rep_n[b]] * 10 + rep_t[b, :rep_n[b]] - first,
                            minlength=130)
        assert (drawn <= cell).all()


@pytest.mark.parametrize("model", ["poisson", "bernoulli"])
def test_planted_cluster_is_found_and_significant(model: str) -> None:
    data = bernoulli_data(9) if model == "bernoulli" else poisson_data(9)
    result = SpaceTimeScan(model=model, max_intervals=3, n_permutations=199,
                           random_state=4).run(data)
    top = result.most_likely
    planted = "b2" if model == "bernoulli" else "p0"
    assert planted in top.location_ids
    assert top.p_value <= 0.05
    assert top.relative_risk > 1 and top.population > 0


def test_poisson_relative_risk_and_population() -> None:
    data = poisson_data(1)
    top = SpaceTimeScan(model="poisson", analysis="purely_spatial",
                        n_permutations=0).run(data).most_likely
    index = [list(data.location_ids).index(i) for i in top.location_ids]
    assert top.population == pytest.approx(data.population[index].sum())
    total = data.n_cases
    want = (top.observed / top.expected) / ((total - top.observed) / (total - top.expected))
    assert top.relative_risk == pytest.approx(want)
    assert math.isnan(top.recurrence_interval)       # only prospective scans have one


def test_model_errors() -> None:
    data = poisson_data(0)
    with pytest.raises(ParameterError, match="model must be one of"):
        SpaceTimeScan(model="normal").run(data)
    with pytest.raises(ParameterError, match="analysis must be one of"):
        SpaceTimeScan(analysis="temporal").run(data)
    with pytest.raises(ParameterError, match="permutation model needs time windows"):
        SpaceTimeScan(analysis="purely_spatial").run(data)
    with pytest.raises(ParameterError, match="space-time permutation model only"):
        SpaceTimeScan(model="poisson", randomization="satscan").run(data)
    with pytest.raises(DataError, match="needs controls"):
        SpaceTimeScan(model="bernoulli").run(data)
    no_pop = ScanData(location_ids=data.location_ids, coordinates=data.coordinates,
                      case_location=data.case_location, case_interval=data.case_interval,
                      interval_labels=data.interval_labels)
    with pytest.raises(DataError, match="needs a population per location"):
        SpaceTimeScan(model="poisson").run(no_pop)
    population = data.population.copy()
    population[data.case_location[0]] = 0
    zero = ScanData(location_ids=data.location_ids, coordinates=data.coordinates,
                    case_location=data.case_location, case_interval=data.case_interval,
                    interval_labels=data.interval_labels, population=population)
    with pytest.raises(DataError, match="has cases but population 0"):
        SpaceTimeScan(model="poisson").run(zero)
    with pytest.raises(DataError, match="one value per location"):
        ScanData(location_ids=data.location_ids, coordinates=data.coordinates,
                 case_location=data.case_location, case_interval=data.case_interval,
                 interval_labels=data.interval_labels, population=[1.0, 2.0])


def _equal_sizes(data: ScanData) -> ScanData:
    return ScanData(location_ids=data.location_ids, coordinates=data.coordinates,
                    case_location=data.case_location, case_interval=data.case_interval,
                    interval_labels=data.interval_labels, population=data.population,
                    control_location=data.control_location,
                    control_interval=data.control_interval)


@pytest.mark.parametrize(("model", "analysis"), [
    ("poisson", "retrospective"), ("poisson", "purely_spatial"),
    ("bernoulli", "prospective"), ("bernoulli", "purely_spatial"),
    ("space_time_permutation", "retrospective")])
def test_satscan_files_round_trip(tmp_path, model: str, analysis: str) -> None:  # noqa: ANN001
    from placecast.clusters import read_satscan, read_satscan_parameters, write_satscan_files

    data = _equal_sizes(bernoulli_data(3) if model == "bernoulli" else poisson_data(3))
    scan = SpaceTimeScan(model=model, analysis=analysis, max_intervals=4, n_permutations=19,
                         random_state=5)
    prm, cas, _ = write_satscan_files(data, scan, tmp_path / "study.prm")
    settings = read_satscan_parameters(prm)
    codes = {"poisson": "0", "bernoulli": "1", "space_time_permutation": "2"}
    assert settings["ModelType"] == codes[model]
    assert settings["AnalysisType"] == {"retrospective": "3", "purely_spatial": "1",
                                        "prospective": "4"}[analysis]
    if model == "poisson":
        assert settings["PopulationFile"] == "study.pop"
    if model == "bernoulli":
        assert settings["ControlFile"] == "study.ctl"
    run = read_satscan(prm)
    assert (run.scan.model, run.scan.analysis) == (model, analysis)
    assert run.scan.randomization == ("satscan" if model == "space_time_permutation"
                                      else "numpy")
    # without replications every cluster with n > mu is listed (up to 10): same lists
    a = SpaceTimeScan(**{**scan.get_params(), "n_permutations": 0}).run(data)
    back = read_satscan(prm, n_permutations=0)
    b = back.scan.run(back.data)
    assert len(a.clusters) >= 1
    for mine, theirs in zip(a.clusters, b.clusters, strict=True):
        assert mine.location_ids == theirs.location_ids
        assert mine.observed == theirs.observed
        assert mine.expected == pytest.approx(theirs.expected, rel=1e-12)
        assert mine.test_statistic == pytest.approx(theirs.test_statistic, rel=1e-12)


def test_prm_population_file_errors(tmp_path) -> None:  # noqa: ANN001
    from placecast.clusters import read_satscan

    (tmp_path / "s.cas").write_text("a 3 2\nb 1 5\n")
    (tmp_path / "s.geo").write_text("a 0 0\nb 1 1\nc 2 2\n")
    base = ("CaseFile=s.cas\nCoordinatesFile=s.geo\nPrecisionCaseTimes=4\nStartDate=0\n"
            "EndDate=9\nAnalysisType=3\nModelType=0\nPopulationFile=s.pop\n")
    (tmp_path / "s.prm").write_text(base)
    (tmp_path / "s.pop").write_text("a 0 100\nb 0 200\na 5 120\n")
    with pytest.raises(DataError, match=r"s.pop line 3: location 'a' already has a "
                                        r"population \(line 1\)"):
        read_satscan(tmp_path / "s.prm")
    (tmp_path / "s.pop").write_text("a 0 100 1 2\n")
    with pytest.raises(DataError, match="covariate column"):
        read_satscan(tmp_path / "s.prm")
    (tmp_path / "s.pop").write_text("a 0 100\nb 0 200\nc 0 50\n")
    run = read_satscan(tmp_path / "s.prm")
    np.testing.assert_array_equal(run.data.population, [100, 200, 50])
    assert run.scan.analysis == "retrospective" and run.scan.model == "poisson"
    with pytest.raises(ParameterError, match="space-time permutation model only"):
        read_satscan(tmp_path / "s.prm", randomization="satscan").scan.run(run.data)


def _categorised_events_csv(path) -> None:  # noqa: ANN001
    from _helpers_clusters import planted_events_frame

    frame = planted_events_frame()
    frame["kind"] = np.where(np.arange(len(frame)) % 3 == 0, "ARSON", "THEFT")
    frame.loc[frame.index[-14:], "kind"] = "ARSON"      # the planted cluster is arson
    frame.to_csv(path, index=False)


def test_cli_bernoulli_and_retrospective_from_events(tmp_path) -> None:  # noqa: ANN001
    import json

    from typer.testing import CliRunner

    from placecast.cli import app

    path = tmp_path / "events.csv"
    _categorised_events_csv(path)
    common = ["scan", str(path), "--x", "x", "--y", "y", "--crs", "local:m", "--category",
              "kind", "--cell", "500m", "--max-radius", "1km", "--permutations", "99",
              "--seed", "3"]
    res = CliRunner().invoke(app, [*common, "--model", "bernoulli", "--case-categories",
                                   "ARSON", "-o", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "b" / "report.txt").read_text()
    assert "using the Bernoulli model." in report and "Percent cases in area" in report
    result = json.loads((tmp_path / "b" / "result.json").read_text())
    assert result["model"] == "bernoulli"
    assert result["clusters"][0]["p_value"] <= 0.05
    res = CliRunner().invoke(app, [*common, "--analysis", "retrospective", "-o",
                                   str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "r" / "report.txt").read_text()
    assert report.count("Retrospective Space-Time analysis") == 1
    assert "Recurrence interval" not in report
    res = CliRunner().invoke(app, [*common, "--model", "poisson", "-o", str(tmp_path / "p")])
    assert res.exit_code == 2 and "--population go together" in res.output
    res = CliRunner().invoke(app, [*common, "--model", "bernoulli", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "go together" in res.output
    res = CliRunner().invoke(app, [*common, "--model", "bernoulli", "--case-categories",
                                   "FRAUD", "-o", str(tmp_path / "x")])
    assert res.exit_code == 2 and "none of these categories occurs" in res.output


def test_cli_runs_a_poisson_parameter_file(tmp_path) -> None:  # noqa: ANN001
    from typer.testing import CliRunner

    from placecast.cli import app
    from placecast.clusters import write_satscan_files

    data = _equal_sizes(poisson_data(2))
    scan = SpaceTimeScan(model="poisson", analysis="purely_spatial")
    prm, _, _ = write_satscan_files(data, scan, tmp_path / "in" / "pois.prm")
    res = CliRunner().invoke(app, ["scan", "--satscan", str(prm), "--permutations", "99",
                                   "--seed", "1", "-o", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    report = (tmp_path / "out" / "report.txt").read_text()
    assert "Purely Spatial analysis" in report and "Discrete Poisson model" in report
    assert "Population, averaged over time" in report and "Relative risk" in report
    assert "Time frame" not in report and "Log likelihood ratio" in report


def test_bernoulli_cluster_lines_equal_a_satscan_printout() -> None:
    # SaTScan's Bernoulli tutorial (github scanstatistics/satscan, Doc/tutorials/tutorial2,
    # New York births 2005): a cluster of 3172 births with 141 cases among 1237189 births
    # with 24940 cases prints these lines. Rebuild those totals: the cluster at one
    # location, the other births spread evenly over far-away locations.
    from placecast.clusters import format_satscan_report

    everyone, cases, inside, inside_cases = 1_237_189, 24_940, 3_172, 141
    n_out = 8
    out_cases = np.diff(np.linspace(0, cases - inside_cases, n_out + 1).round()).astype(int)
    out_all = np.diff(np.linspace(0, everyone - inside, n_out + 1).round()).astype(int)
    case_counts = np.concatenate([[inside_cases], out_cases])
    control_counts = np.concatenate([[inside - inside_cases], out_all - out_cases])
    angles = np.linspace(0, 2 * np.pi, n_out, endpoint=False)
    coords = np.vstack([[0.0, 0.0], np.column_stack([1e3 * np.cos(angles),
                                                    1e3 * np.sin(angles)])])
    ids = np.array(["GATid182", *[f"z{k}" for k in range(n_out)]])
    data = ScanData(location_ids=ids, coordinates=coords,
                    case_location=np.repeat(np.arange(n_out + 1), case_counts),
                    case_interval=np.zeros(cases, dtype=np.int64),
                    control_location=np.repeat(np.arange(n_out + 1), control_counts),
                    control_interval=np.zeros(everyone - cases, dtype=np.int64),
                    interval_labels=[("2005/1/1", "2005/12/31")],
                    study_period=("2005/1/1", "2005/12/31"))
    result = SpaceTimeScan(model="bernoulli", analysis="purely_spatial", max_share=0.1,
                           n_permutations=0).run(data)
    text = format_satscan_report(result)
    for line in ("Total population...................: 1237189",
                 "Total number of cases..............: 24940",
                 "Percent cases......................: 2.0",
                 "  Population............: 3172",
                 "  Number of cases.......: 141",
                 "  Expected cases........: 63.94",
                 "  Observed / expected...: 2.21",
                 "  Relative risk.........: 2.21",
                 "  Log likelihood ratio..: 35.526304"):
        assert line in text.splitlines(), line
    # the tutorial shows "Percent cases in area: 4.4" in retyped text (it also writes
    # "2. Location IDs included:"); SaTScan pads cluster labels with dots to 22
    # characters (AsciiPrintFormat), so the 21-character label gets one dot
    assert "  Percent cases in area.: 4.4" in text.splitlines()


def test_poisson_from_events_with_unit_populations(tmp_path) -> None:  # noqa: ANN001
    import json

    from typer.testing import CliRunner

    from placecast.cli import app
    from placecast.clusters import scan_data_from_events
    from placecast.io import read_events
    from placecast.pipeline import UnitSpec, build_units

    path = tmp_path / "events.csv"
    _categorised_events_csv(path)
    events = read_events(path, crs="local:m")
    units = build_units(events, UnitSpec(cell_size=500.0))
    population = {str(u): 100.0 + k % 7 for k, u in enumerate(units.unit_id)}
    data = scan_data_from_events(events, units=units, population=population)
    # every populated unit is a location, also those without events
    assert data.n_locations == len(units.unit_id)
    assert data.n_locations > len(np.unique(units.assign(events.x, events.y)))
    np.testing.assert_array_equal(data.population,
                                  [population[str(i)] for i in data.location_ids])
    with pytest.raises(DataError, match="population id\\(s\\) are not area units \\(nowhere"):
        scan_data_from_events(events, units=units, population={"nowhere": 5.0})
    with pytest.raises(ParameterError, match="needs area units"):
        scan_data_from_events(events, population=population)

    pd_path = tmp_path / "population.csv"
    pd_path.write_text("unit,population\n" + "".join(f"{u},{v}\n"
                                                     for u, v in population.items()))
    res = CliRunner().invoke(app, ["scan", str(path), "--x", "x", "--y", "y", "--crs",
                                   "local:m", "--cell", "500m", "--max-radius", "1km",
                                   "--model", "poisson", "--population", str(pd_path),
                                   "--permutations", "99", "--seed", "2", "-o",
                                   str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "p" / "result.json").read_text())
    assert result["model"] == "poisson"
    top = result["clusters"][0]
    assert top["p_value"] <= 0.05 and top["relative_risk"] > 1
    cx, cy = top["centre"]
    assert math.dist((cx, cy), (5_000, 5_000)) < 800
    pd_path.write_text("unit,population\nc1_r1,-3\n")
    res = CliRunner().invoke(app, ["scan", str(path), "--x", "x", "--y", "y", "--crs",
                                   "local:m", "--cell", "500m", "--model", "poisson",
                                   "--population", str(pd_path), "-o", str(tmp_path / "q")])
    assert res.exit_code == 2 and "row 2, column 'population'" in res.output


def test_prm_purely_spatial_without_times_and_bernoulli_needs_controls(tmp_path) -> None:  # noqa: ANN001, E501
    from placecast.clusters import format_satscan_report, read_satscan

    (tmp_path / "h.cas").write_text("a 4\nb 1\nc 1\nd 0\n")
    (tmp_path / "h.ctl").write_text("a 2\nb 6\nc 5\nd 7\n")
    (tmp_path / "h.geo").write_text("a 0 0\nb 1 0\nc 5 5\nd 9 9\n")
    prm = tmp_path / "h.prm"
    prm.write_text("CaseFile=h.cas\nControlFile=h.ctl\nCoordinatesFile=h.geo\n"
                   "PrecisionCaseTimes=0\nStartDate=2000/1/1\nEndDate=2000/12/31\n"
                   "AnalysisType=1\nModelType=1\nMonteCarloReps=99\n")
    run = read_satscan(prm, random_state=0)
    assert run.data.n_intervals == 1 and run.data.n_controls == 20
    assert run.control_file == tmp_path / "h.ctl"
    result = run.scan.run(run.data)
    want = brute_force(run.data, "bernoulli", "purely_spatial")
    _assert_same_cluster(result, want, run.data)
    text = format_satscan_report(result)
    assert "Study period.......................: 2000/1/1 to 2000/12/31" in text
    assert "Purely Spatial analysis" in text and "Time frame" not in text
    prm.write_text(prm.read_text().replace("ControlFile=h.ctl", "ControlFile="))
    with pytest.raises(DataError, match="ControlFile is empty"):
        read_satscan(prm)
    prm.write_text(prm.read_text().replace("AnalysisType=1", "AnalysisType=3"))
    with pytest.raises(ParameterError, match="PrecisionCaseTimes=0 \\(no case times\\) needs a "
                                             "purely spatial analysis"):
        read_satscan(prm)
