"""Space-time permutation scan: SaTScan reproduction, brute force, simulate-then-recover, CLI."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from _helpers_clusters import (
    brute_force_max_llr,
    parse_satscan_report,
    planted_events_frame,
    random_scan_data,
)
from placecast.cli import app
from placecast.clusters import (
    ScanData,
    SpaceTimeScan,
    format_satscan_report,
    read_satscan,
    read_satscan_parameters,
    scan_data_from_events,
    write_satscan_files,
)
from placecast.clusters._satscan_random import case_listing, lehmer_uniforms
from placecast.clusters._scan import gumbel_p_value
from placecast.events import Events
from placecast.exceptions import DataError, ParameterError

FIELDS = ("Location IDs included", "Coordinates / radius", "Number of cases", "Expected cases",
          "Observed / expected", "Test statistic")


@pytest.fixture(scope="module")
def satscan_dir(shared_data: Path) -> Path:
    return shared_data / "satscan"


@pytest.fixture(scope="module")
def reference(satscan_dir: Path) -> dict:
    return parse_satscan_report(satscan_dir / "satscan_test1.txt")


def _report_fields(result) -> dict:  # noqa: ANN001
    return parse_satscan_report_text(format_satscan_report(result))


def parse_satscan_report_text(text: str) -> dict:
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        handle.write(text)
    return parse_satscan_report(Path(handle.name))


def test_satscan_test1_from_prm_as_given(satscan_dir: Path, reference: dict) -> None:
    run = read_satscan(satscan_dir / "satscan_test1.prm", n_permutations=99, random_state=0)
    # the Windows paths in the .prm do not exist; the files beside it were used
    assert run.case_file == satscan_dir / "satscan_test1.cas"
    result = run.scan.run(run.data)
    ours = _report_fields(result)
    assert ours["n_locations"] == reference["n_locations"]
    assert ours["n_cases"] == reference["n_cases"]
    assert len(ours["clusters"]) == len(reference["clusters"])
    end = read_satscan_parameters(satscan_dir / "satscan_test1.prm")["EndDate"]
    for mine, theirs in zip(ours["clusters"], reference["clusters"], strict=True):
        for key in FIELDS:
            assert mine[key] == theirs[key], key
        # the .prm says EndDate=999 while the reference run used 1000 (its report says
        # "End Time : 1000"): same start, our end is the file's
        assert mine["Time frame"].split(" to ")[0] == theirs["Time frame"].split(" to ")[0]
        assert mine["Time frame"].split(" to ")[1] == end


def test_satscan_test1_with_reference_end_date_matches_report(satscan_dir: Path,
                                                              reference: dict) -> None:
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides={"EndDate": "1000"},
                       n_permutations=99, random_state=0)
    ours = _report_fields(run.scan.run(run.data))
    assert ours["study_period"] == reference["study_period"]
    for mine, theirs in zip(ours["clusters"], reference["clusters"], strict=True):
        for key in (*FIELDS, "Time frame"):
            assert mine[key] == theirs[key], key


@pytest.mark.parametrize("end_date", ["1000", None])
def test_satscan_test1_every_printed_field_matches_satscan(satscan_dir: Path, reference: dict,
                                                           end_date: str | None) -> None:
    # SaTScan's own replications (its generator, seeds 12345678 + r, its case order):
    # the sequential procedure stops where SaTScan's did, so p-values and recurrence
    # intervals are the printed ones, not merely close
    overrides = {"EndDate": end_date} if end_date else {}
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides=overrides)
    assert run.scan.randomization == "satscan" and run.scan.n_permutations == 999
    result = run.scan.run(run.data)
    ours = _report_fields(result)
    assert result.stopped_early
    assert ours["replications"] == reference["replications"] == 248
    assert len(ours["clusters"]) == len(reference["clusters"]) == 2
    for mine, theirs in zip(ours["clusters"], reference["clusters"], strict=True):
        for key in (*FIELDS, "P-value", "Recurrence interval"):
            assert mine[key] == theirs[key], key
        if end_date:
            assert mine["Time frame"] == theirs["Time frame"]
    # the exact numbers behind the printed ones: 50 / 248 and 144 / 248
    assert result.clusters[0].p_value == 50 / 248
    assert result.clusters[1].p_value == 144 / 248


def test_satscan_generator_passes_park_miller_check() -> None:
    # Park & Miller's check, as SaTScan's RandomNumberGenerator::Test runs it: from seed
    # 1, the 10,000th state is 399268537
    draws = lehmer_uniforms(1, 10_000)
    modulus = 2**31 - 1
    assert draws[-1] == np.float32(399_268_537) / np.float32(modulus)
    # every draw against Python's exact integers
    for seed in (1, 12_345_679, modulus - 2):
        state, want = seed, []
        for _ in range(300):
            state = 48_271 * state % modulus
            want.append(np.float32(state) / np.float32(modulus))
        np.testing.assert_array_equal(lehmer_uniforms(seed, 300), np.array(want))


def _satscan_replication_slow(data: ScanData, replication: int,
                              seed: int = 12_345_678) -> tuple[np.ndarray, np.ndarray]:
    """SaTScan's SpaceTimeRandomizer written out plainly: (location, time) of every case."""
    by_id = sorted(range(data.n_locations), key=lambda i: str(data.location_ids[i]))
    index = {loc: k for k, loc in enumerate(by_id)}
    cases = sorted(zip(data.case_location.tolist(), data.case_interval.tolist(), strict=True),
                   key=lambda c: (-c[1], index[c[0]]))
    stationary = [loc for loc, _ in cases]
    times = [t for _, t in cases]
    state, draws = seed + replication, []
    for _ in times:
        state = 48_271 * state % (2**31 - 1)
        draws.append(float(np.float32(state) / np.float32(2**31 - 1)))
    permuted = [times[k] for k in sorted(range(len(times)), key=lambda k: draws[k])]
    return np.array(stationary), np.array(permuted)


@pytest.mark.parametrize("seed", [2, 6])
def test_satscan_replications_match_a_plain_implementation(seed: int) -> None:
    data = random_scan_data(seed, n_locations=12, n_cases=80)
    # location ids whose byte order differs from their index order
    data = ScanData(location_ids=np.array([f"z{k:02d}" if k % 3 else f"a{k}"
                                           for k in range(data.n_locations)]),
                    coordinates=data.coordinates, case_location=data.case_location,
                    case_interval=data.case_interval, interval_labels=data.interval_labels)
    scan = SpaceTimeScan(max_intervals=5, n_permutations=6, randomization="satscan")
    result = scan.run(data)
    for r in range(1, 7):
        locations, times = _satscan_replication_slow(data, r)
        want = brute_force_max_llr(data, times, max_share=0.5, min_len=1, max_len=5,
                                   case_location=locations)
        assert result.simulated_statistics[r - 1] == pytest.approx(want, rel=1e-12)


def test_satscan_randomization_same_result_whatever_the_threads() -> None:
    data = random_scan_data(4)
    runs = [SpaceTimeScan(max_intervals=5, n_permutations=130, randomization="satscan",
                          n_jobs=jobs).run(data) for jobs in (1, 2)]
    np.testing.assert_array_equal(runs[0].simulated_statistics, runs[1].simulated_statistics)


def test_satscan_randomization_seed_errors() -> None:
    data = random_scan_data(1)
    with pytest.raises(ParameterError, match="randomization must be 'numpy' or 'satscan'"):
        SpaceTimeScan(randomization="R").run(data)
    with pytest.raises(ParameterError, match="random_state must be an integer seed"):
        SpaceTimeScan(randomization="satscan",
                      random_state=np.random.default_rng(1)).run(data)
    with pytest.raises(ParameterError, match=r"must stay in 1 \.\. 2147483646"):
        SpaceTimeScan(randomization="satscan", random_state=2**31 - 10,
                      n_permutations=99).run(data)


def test_prm_randomization_seed_is_used(satscan_dir: Path) -> None:
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides={"RandomizationSeed": "7"})
    assert run.scan.random_state == 7
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides={"RandomizationSeed": "7"},
                       random_state=9)
    assert run.scan.random_state == 9
    run = read_satscan(satscan_dir / "satscan_test1.prm",
                       overrides={"RandomlyGenerateSeed": "y"})
    assert isinstance(run.scan.random_state, int) and run.scan.random_state > 0


def test_secondary_p_value_within_monte_carlo_error(satscan_dir: Path, reference: dict) -> None:
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides={"PValueReportType": "1"},
                       n_permutations=999, random_state=11, randomization="numpy")
    result = run.scan.run(run.data)
    assert result.n_permutations == 999 and not result.stopped_early
    theirs = float(reference["clusters"][1]["P-value"])
    n_ref = reference["replications"]
    ours = result.clusters[1].p_value
    se = math.sqrt(theirs * (1 - theirs) / n_ref + ours * (1 - ours) / 999)
    assert abs(ours - theirs) <= 4 * se
    # recurrence interval of a one-analysis-per-unit prospective scan: 1 / p units
    assert result.clusters[1].recurrence_interval == pytest.approx(1 / ours)


def test_sequential_monte_carlo_stops_at_threshold(satscan_dir: Path) -> None:
    run = read_satscan(satscan_dir / "satscan_test1.prm", n_permutations=999, random_state=3,
                       randomization="numpy")
    result = run.scan.run(run.data)
    top = result.clusters[0]
    assert result.stopped_early and result.n_permutations < 999
    exceed = int((result.simulated_statistics >= top.test_statistic * (1 - 1e-10)).sum())
    assert exceed == 50
    assert top.p_value == pytest.approx(50 / result.n_permutations)
    report = format_satscan_report(result)
    assert f"after {result.n_permutations}\nreplications." in report


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_observed_statistic_matches_brute_force(seed: int) -> None:
    data = random_scan_data(seed)
    scan = SpaceTimeScan(max_intervals=6, n_permutations=0)
    result = scan.run(data)
    expected = brute_force_max_llr(data, data.case_interval, max_share=0.5, min_len=1,
                                   max_len=6)
    assert result.clusters[0].test_statistic == pytest.approx(expected, rel=1e-12)


def test_replications_match_brute_force_on_the_same_permutations() -> None:
    data = random_scan_data(7)
    seed = 123
    result = SpaceTimeScan(max_intervals=5, n_permutations=4, random_state=seed).run(data)
    # the scan lists the cases canonically, then pairs the cases of the last 5 intervals
    # with a uniform random ordered sample of the case locations (equivalent to permuting
    # times over cases)
    listed = case_listing(data)
    loc, t = data.case_location[listed], data.case_interval[listed]
    rng = np.random.default_rng(seed)
    recent = np.flatnonzero(t >= data.n_intervals - 5)
    for k in range(4):
        locations = loc.copy()
        locations[recent] = loc[rng.choice(data.n_cases, size=len(recent), replace=False)]
        want = brute_force_max_llr(data, t, max_share=0.5, min_len=1, max_len=5,
                                   case_location=locations)
        assert result.simulated_statistics[k] == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("randomization", ["numpy", "satscan"])
def test_row_order_does_not_change_the_replications(randomization: str) -> None:
    data = random_scan_data(8, n_cases=90)
    shuffled = np.random.default_rng(0).permutation(data.n_cases)
    other = ScanData(location_ids=data.location_ids, coordinates=data.coordinates,
                     case_location=data.case_location[shuffled],
                     case_interval=data.case_interval[shuffled],
                     interval_labels=data.interval_labels)
    runs = [SpaceTimeScan(max_intervals=5, n_permutations=40, random_state=5,
                          randomization=randomization).run(d) for d in (data, other)]
    np.testing.assert_array_equal(runs[0].simulated_statistics, runs[1].simulated_statistics)


def test_same_seed_same_result_whatever_the_threads() -> None:
    data = random_scan_data(4)
    a = SpaceTimeScan(max_intervals=5, n_permutations=80, random_state=9, n_jobs=1).run(data)
    b = SpaceTimeScan(max_intervals=5, n_permutations=80, random_state=9, n_jobs=2).run(data)
    np.testing.assert_array_equal(a.simulated_statistics, b.simulated_statistics)
    assert a.to_dict()["clusters"] == b.to_dict()["clusters"]


def test_secondary_clusters_share_no_location() -> None:
    data = random_scan_data(5, n_locations=30, n_cases=200)
    result = SpaceTimeScan(max_intervals=8, n_permutations=0).run(data)
    seen: set[str] = set()
    for c in result.clusters:
        assert not seen & set(c.location_ids)
        seen |= set(c.location_ids)
        assert c.observed > c.expected
    stats = [c.test_statistic for c in result.clusters]
    assert stats == sorted(stats, reverse=True)


def test_tie_break_by_smaller_coordinate() -> None:
    # four locations at the same distance from the centre: SaTScan takes smaller x, then y
    coords = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1], [5, 5]], dtype=float)
    data = ScanData(location_ids=np.array(list("cabdef")), coordinates=coords,
                    case_location=np.array([0, 2, 4, 0, 1, 3, 5, 5, 5, 5]),
                    case_interval=np.array([9, 9, 9, 0, 0, 0, 0, 1, 2, 3]),
                    interval_labels=[(str(k), str(k)) for k in range(10)])
    scan = SpaceTimeScan(max_share=0.5, max_intervals=2, n_permutations=0)
    nb_ptr, nb_idx, _ = scan._neighbours(data, np.bincount(data.case_location,
                                                           minlength=6).astype(float))
    order = data.location_ids[nb_idx[nb_ptr[0]:nb_ptr[1]]].tolist()
    assert order[:3] == ["c", "b", "e"]  # (-1, 0) then (0, -1) before (0, 1) and (1, 0)


def test_nyc_fever_with_satscan_manual_settings(satscan_dir: Path, tmp_path: Path) -> None:
    # rsatscan vignette / SaTScan manual: prospective STP, day precision, 3 km, 7 days
    prm = tmp_path / "NYCfever.prm"
    prm.write_text("\n".join([
        "[Input]", f"CaseFile={satscan_dir / 'nycfever_cases.csv'}", "PrecisionCaseTimes=3",
        "StartDate=2001/11/1", "EndDate=2001/11/24",
        f"CoordinatesFile={satscan_dir / 'nycfever_zip_centroids.csv'}", "CoordinatesType=1",
        "[Analysis]", "AnalysisType=4", "ModelType=2", "TimeAggregationUnits=3",
        "[Spatial Window]", "UseDistanceFromCenterOption=y",
        "MaxSpatialSizeInDistanceFromCenter=3", "NonCompactnessPenalty=0",
        "[Temporal Window]", "MaxTemporalSizeInterpretation=1", "MaxTemporalSize=7",
        "[Inference]", "ProspectiveStartDate=2001/11/24", "MonteCarloReps=999", ""]))
    run = read_satscan(prm, n_permutations=99, random_state=1)
    assert (run.data.n_locations, run.data.n_cases) == (192, 194)
    result = run.scan.run(run.data)
    assert result.study_period == ("2001/11/1", "2001/11/24")
    assert result.clusters
    for c in result.clusters:
        assert c.radius <= 3.0
        assert c.time_frame[1] == "2001/11/24"
        assert 1 <= c.end_interval - c.start_interval + 1 <= 7
    text = format_satscan_report(result)
    assert re.search(r"Coordinates / radius\.\.: \(40\.\d{6} N, 73\.\d{6} W\) / [\d.]+ km", text)
    geometry = result.to_geojson()["features"][0]["geometry"]
    lon, lat = np.array(geometry["coordinates"][0]).mean(axis=0)
    assert -74.3 < lon < -73.6 and 40.4 < lat < 41.0


def test_events_scan_recovers_planted_cluster(tmp_path: Path) -> None:
    frame = planted_events_frame()
    events = Events.from_arrays(frame["time"], frame["x"], frame["y"])
    data = scan_data_from_events(events, round_to=100.0)
    result = SpaceTimeScan(max_radius=600.0, max_intervals=7, n_permutations=99,
                           random_state=0).run(data)
    top = result.most_likely
    assert top is not None
    assert math.dist(top.centre, (5_000, 5_000)) < 300
    assert top.p_value <= 0.02
    assert top.observed >= 10


def test_scan_cli_satscan_writes_all_outputs(satscan_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["scan", "--satscan", str(satscan_dir / "satscan_test1.prm"),
                                   "--set", "EndDate=1000", "--permutations", "99",
                                   "--seed", "1", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} == {"report.txt", "clusters.geojson",
                                               "clusters.csv", "result.json"}
    assert "Time frame............: 993 to 1000" in (out / "report.txt").read_text()
    features = json.loads((out / "clusters.geojson").read_text())["features"]
    assert features[0]["properties"]["location_ids"] == "23;6;16"
    assert json.loads((out / "result.json").read_text())["n_cases"] == 100


def test_unsupported_prm_settings_are_errors(satscan_dir: Path) -> None:
    # retrospective (3) and purely spatial (1) analyses, Poisson (0) and Bernoulli (1)
    # models are supported now (tests/test_scan_models.py); the rest is still refused
    for value in ("2", "5", "6"):
        with pytest.raises(ParameterError, match=f"AnalysisType={value} is not supported"):
            read_satscan(satscan_dir / "satscan_test1.prm", overrides={"AnalysisType": value})
    for value in ("3", "5"):
        with pytest.raises(ParameterError, match=f"ModelType={value} is not supported"):
            read_satscan(satscan_dir / "satscan_test1.prm", overrides={"ModelType": value})
    with pytest.raises(ParameterError, match="permutation model \\(ModelType=2\\) needs a "
                                             "space-time analysis"):
        read_satscan(satscan_dir / "satscan_test1.prm", overrides={"AnalysisType": "1"})


def test_missing_input_file_is_named(tmp_path: Path) -> None:
    prm = tmp_path / "x.prm"
    prm.write_text("CaseFile=C:\\nowhere\\x.cas\nCoordinatesFile=x.geo\nPrecisionCaseTimes=4\n"
                   "StartDate=0\nEndDate=10\n")
    with pytest.raises(DataError, match=r"CaseFile=C:\\nowhere\\x.cas was not found"):
        read_satscan(prm)


def test_case_outside_study_period_is_an_error(satscan_dir: Path) -> None:
    with pytest.raises(DataError, match=r"satscan_test1.cas line \d+: time \d+ is outside"):
        read_satscan(satscan_dir / "satscan_test1.prm", overrides={"EndDate": "900"})


def test_bad_scan_parameters() -> None:
    data = random_scan_data(1)
    with pytest.raises(ParameterError, match="max_share must be in"):
        SpaceTimeScan(max_share=0.8).run(data)
    with pytest.raises(ParameterError, match="time windows of 5 to 3 intervals"):
        SpaceTimeScan(min_intervals=5, max_intervals=3).run(data)


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["scan", "--satscan", str(tmp_path / "missing.prm")])
    assert res.exit_code == 2
    assert "does not exist" in res.output


@pytest.mark.parametrize("interval", ["1d", "2d", "12h"])
def test_written_satscan_files_read_back_to_the_same_scan(tmp_path: Path, interval: str) -> None:
    frame = planted_events_frame()
    events = Events.from_arrays(frame["time"], frame["x"], frame["y"])
    data = scan_data_from_events(events, round_to=250.0, interval=interval)
    scan = SpaceTimeScan(max_radius=600.0, max_intervals=4, n_permutations=60, early_stop=20,
                         randomization="satscan", random_state=99)
    prm, cas, geo = write_satscan_files(data, scan, tmp_path / "planted.prm")
    assert (cas.name, geo.name) == ("planted.cas", "planted.geo")
    run = read_satscan(prm)
    back = run.data
    assert back.n_cases == data.n_cases and back.n_intervals == data.n_intervals
    np.testing.assert_array_equal(back.location_ids, data.location_ids)
    np.testing.assert_array_equal(back.coordinates, data.coordinates)
    mine = sorted(zip(data.case_location.tolist(), data.case_interval.tolist(), strict=True))
    theirs = sorted(zip(back.case_location.tolist(), back.case_interval.tolist(), strict=True))
    assert mine == theirs
    for key in ("max_share", "max_radius", "min_intervals", "max_intervals", "n_permutations",
                "early_stop", "min_cases", "random_state", "randomization"):
        assert getattr(run.scan, key) == getattr(scan, key), key
    a, b = scan.run(data), run.scan.run(back)
    np.testing.assert_array_equal(a.simulated_statistics, b.simulated_statistics)
    assert [c.location_ids for c in a.clusters] == [c.location_ids for c in b.clusters]
    assert [c.p_value for c in a.clusters] == [c.p_value for c in b.clusters]
    if interval != "12h":  # whole days: SaTScan dates
        assert read_satscan_parameters(prm)["PrecisionCaseTimes"] == "3"
        assert [pd.Timestamp(d) for d in a.study_period] == [pd.Timestamp(d)
                                                             for d in b.study_period]


def test_satscan_files_refuse_ids_with_separators(tmp_path: Path) -> None:
    data = ScanData(location_ids=np.array(["a b", "c"]), coordinates=np.zeros((2, 2)),
                    case_location=np.array([0, 1, 1]), case_interval=np.array([0, 1, 1]),
                    interval_labels=[("0", "0"), ("1", "1")])
    with pytest.raises(DataError, match="location id 'a b' cannot be written"):
        write_satscan_files(data, SpaceTimeScan(max_intervals=1), tmp_path / "x.prm")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_scan_cli_events_and_export_to_satscan_files(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    planted_events_frame().to_csv(path, index=False)
    res = CliRunner().invoke(app, ["scan", str(path), "--x", "x", "--y", "y", "--crs",
                                   "local:m", "--cell", "250m", "--max-radius", "600m",
                                   "--permutations", "19", "--seed", "2", "-o",
                                   str(tmp_path / "o"), "--export-satscan",
                                   str(tmp_path / "sat" / "events.prm")])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "sat").iterdir()) == [
        "events.cas", "events.geo", "events.prm"]
    ours = (tmp_path / "o" / "report.txt").read_text()
    assert "Location IDs included" in ours
    res = CliRunner().invoke(app, ["scan", "--satscan", str(tmp_path / "sat" / "events.prm"),
                                   "--randomization", "numpy", "--seed", "2", "-o",
                                   str(tmp_path / "o2")])
    assert res.exit_code == 0, res.output
    again = (tmp_path / "o2" / "report.txt").read_text()
    block = re.compile(r"CLUSTERS DETECTED(.*?)_{20}", re.S)

    def unpadded(text: str) -> str:  # SaTScan prints 2020/2/7 where events say 2020/02/07
        return re.sub(r"/0(\d)", r"/\1", block.search(text)[1])

    assert unpadded(ours) == unpadded(again)


def test_gumbel_p_value_matches_scipy_gumbel_fitted_by_moments() -> None:
    from scipy import stats

    sims = np.random.default_rng(3).gumbel(4.0, 1.3, size=999)
    beta = sims.std() * math.sqrt(6) / math.pi          # population sd, as SaTScan
    mu = sims.mean() - np.euler_gamma * beta
    for statistic in (3.0, 6.5, 12.0, 25.0):
        want = stats.gumbel_r.sf(statistic, loc=mu, scale=beta)
        assert gumbel_p_value(sims, statistic) == pytest.approx(want, rel=1e-6, abs=1e-15)
    assert gumbel_p_value(sims, 500.0) == 1e-17        # underflow: SaTScan's floor


def test_satscan_default_p_values_use_gumbel_for_strong_clusters() -> None:
    frame = planted_events_frame()
    events = Events.from_arrays(frame["time"], frame["x"], frame["y"])
    data = scan_data_from_events(events, round_to=100.0)
    scan = SpaceTimeScan(max_radius=600.0, max_intervals=7, n_permutations=99, random_state=0,
                         p_values="satscan_default")
    result = scan.run(data)
    top = result.most_likely
    assert top is not None and top.p_value_method == "gumbel"
    assert top.p_value == gumbel_p_value(result.simulated_statistics, top.test_statistic)
    assert top.p_value < 1 / 100                       # resolves below the Monte Carlo floor
    assert top.recurrence_interval == pytest.approx(1 / top.p_value)
    weak = [c for c in result.clusters if int((result.simulated_statistics
                                               >= c.test_statistic).sum()) >= 9]
    assert weak and all(c.p_value_method == "monte_carlo" for c in weak)
    text = format_satscan_report(result)
    assert f"P-value...............: {top.p_value:.{_decimals(top.p_value)}f}\n" in text


def _decimals(p: float) -> int:
    """SaTScan's getValueAsString: two significant digits below 1."""
    return 2 + math.ceil(-math.log10(p)) - 1


def test_report_wording_of_p_values_and_recurrence_intervals() -> None:
    from placecast.clusters._satscan import _p_text, _recurrence_text

    cases = {(0.3, "day"): "1 day", (1.0, "day"): "1 day", (100.2, "day"): "100 days",
             (365.25 * 1.04, "day"): "1.0 year", (400.0, "day"): "1.1 years",
             (365.25 * 9.96, "day"): "10.0 years", (365.25 * 20.4, "day"): "20 years",
             (1.02, "unit"): "1.0 unit", (4.96, "unit"): "5.0 units", (57.3, "unit"): "57 units"}
    for (ri, unit), want in cases.items():
        assert _recurrence_text(ri, unit) == want, (ri, unit)
    base = dict(rank=1, centre_id="a", centre=(0.0, 0.0), radius=0.0, location_ids=("a",),
                start_interval=0, end_interval=0, time_frame=("0", "0"), observed=3,
                expected=1.0, test_statistic=5.0, recurrence_interval=1.0)
    from placecast.clusters import ScanCluster

    assert _p_text(ScanCluster(**base, p_value=0.0000123, p_value_method="gumbel"),
                   999) == "0.000012"
    assert _p_text(ScanCluster(**base, p_value=1e-17, p_value_method="gumbel"),
                   999) == "< 0.000000000000000010"
    assert _p_text(ScanCluster(**base, p_value=0.05), 999) == "0.050"


def test_locations_sharing_coordinates_are_flagged(satscan_dir: Path, tmp_path: Path) -> None:
    import shutil

    from placecast.exceptions import DataQualityWarning

    for name in ("satscan_test1.prm", "satscan_test1.cas"):
        shutil.copy(satscan_dir / name, tmp_path / name)
    geo = (satscan_dir / "satscan_test1.geo").read_text().replace("25\t90.0\t50.0",
                                                                  "25\t30.0\t30.0")
    (tmp_path / "satscan_test1.geo").write_text(geo)
    with pytest.warns(DataQualityWarning, match=r"1 location\(s\) share coordinates with "
                                                r"another \(23 and 25\)\. SaTScan merges"):
        read_satscan(tmp_path / "satscan_test1.prm")


@pytest.mark.parametrize(("key", "value", "message"), [
    ("AdjustForEarlierAnalyses", "y", "p-values adjusted for earlier prospective analyses"),
    ("IterativeScan", "y", "iterative scans"),
    ("AdjustForWeeklyTrends", "y", "the day-of-week adjustment"),
    ("IncludePurelyTemporal", "y", "purely temporal clusters"),
    ("SpatialAdjustmentType", "1", "spatial adjustments"),
    ("CaseFile2", "other.cas", "CaseFile2 add data sets"),
])
def test_prm_settings_that_change_the_analysis_are_refused(satscan_dir: Path, key: str,
                                                           value: str, message: str) -> None:
    with pytest.raises(ParameterError, match=message):
        read_satscan(satscan_dir / "satscan_test1.prm", overrides={key: value})


def test_relaxed_data_checks_leave_cases_out_with_a_warning(satscan_dir: Path,
                                                            tmp_path: Path) -> None:
    from placecast.exceptions import DataQualityWarning

    prm = satscan_dir / "satscan_test1.prm"
    with pytest.raises(DataError, match="or set StudyPeriodCheckType=1"):
        read_satscan(prm, overrides={"StartDate": "900"})
    with pytest.warns(DataQualityWarning, match=r"(\d+) case\(s\) outside the study period"):
        run = read_satscan(prm, overrides={"StartDate": "900", "StudyPeriodCheckType": "1"})
    cases = [line.split() for line in (satscan_dir / "satscan_test1.cas").read_text()
             .splitlines() if line.strip()]
    assert run.data.n_cases == sum(int(n) for _, n, t in cases if 900 <= int(t) <= 999)


def _printed_block(text: str) -> list[str]:
    """The lines SaTScan prints from the analysis title to the replication note."""
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.endswith("Space-Time analysis"))
    last = next(i for i, line in enumerate(lines) if line.startswith("replications."))
    return [line.rstrip() for line in lines[first:last + 1]]


# SaTScan 9.4.4's printout for satscan_test3 (github QuantCrimAtLeeds/PredictCode,
# notebooks/satscan_test3.txt at commit 26b7fede, 2017-05-25). That run used a maximum
# circle of 50 Cartesian units ("Maximum Spatial Cluster Size : 50 Cartesian units" in
# its settings), which the .prm committed later does not switch on.
SATSCAN_TEST3 = """\
Prospective Space-Time analysis
scanning for clusters with high rates
using the Space-Time Permutation model.
_______________________________________________________________________________________________

SUMMARY OF DATA

Study period.......................: 0 to 1000
Number of locations................: 23
Total number of cases..............: 100
_______________________________________________________________________________________________

CLUSTERS DETECTED

1.Location IDs included.: 21, 6, 22, 11
  Coordinates / radius..: (30,30) / 20.00
  Time frame............: 930 to 1000
  Number of cases.......: 10
  Expected cases........: 5.46
  Observed / expected...: 1.83
  Test statistic........: 1.622161
  P-value...............: 1.00
  Recurrence interval...: 1.0 unit

NOTE: The sequential Monte Carlo procedure was used to terminate the calculations after 50
replications."""


@pytest.mark.parametrize("overrides", [
    {"UseDistanceFromCenterOption": "y", "MaxSpatialSizeInDistanceFromCenter": "50"}, {}])
def test_satscan_test3_printout_equals_satscan_line_for_line(satscan_dir: Path,
                                                             overrides: dict) -> None:
    # windows 925-1000 and 930-1000 tie (no case anywhere in 925-929); SaTScan evaluates
    # the shortest window first and keeps a later cylinder only when strictly larger
    run = read_satscan(satscan_dir / "satscan_test3.prm", overrides=overrides)
    ours = _printed_block(format_satscan_report(run.scan.run(run.data)))
    assert ours == SATSCAN_TEST3.splitlines()


def test_satscan_test1_printout_equals_satscan_line_for_line(satscan_dir: Path) -> None:
    # the printout's own settings say "End Time : 1000"; SaTScan prints EndDate verbatim
    # (study period and time frames end at the parameter's end), so the run uses 1000
    theirs = (satscan_dir / "satscan_test1.txt").read_text()
    assert "  End Time         : 1000" in theirs
    run = read_satscan(satscan_dir / "satscan_test1.prm", overrides={"EndDate": "1000"})
    ours = _printed_block(format_satscan_report(run.scan.run(run.data)))
    assert ours == _printed_block(theirs)
    # as shipped (EndDate=999) only the end of the period moves
    run = read_satscan(satscan_dir / "satscan_test1.prm")
    shipped = _printed_block(format_satscan_report(run.scan.run(run.data)))
    changed = [(a, b) for a, b in zip(shipped, _printed_block(theirs), strict=True) if a != b]
    assert changed == [("Study period.......................: 0 to 999",
                        "Study period.......................: 0 to 1000"),
                       ("  Time frame............: 993 to 999",
                        "  Time frame............: 993 to 1000"),
                       ("  Time frame............: 962 to 999",
                        "  Time frame............: 962 to 1000")]


def test_tied_clusters_go_to_fewer_locations_then_the_smaller_id() -> None:
    # "b" and "a" each hold 3 late cases; a circle around either that takes in the other
    # ties with it. SaTScan ranks tied clusters by fewer locations, then by the centre's
    # location index (ids in byte order), whatever the order of the coordinates file.
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [50.0, 50.0], [60.0, 60.0], [70.0, 70.0]])
    ids = np.array(["b", "a", "c", "d", "e"])
    loc = np.array([0, 0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 2, 3, 4, 0, 1])
    t = np.array([9, 9, 9, 9, 9, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0])
    data = ScanData(location_ids=ids, coordinates=coords, case_location=loc,
                    case_interval=t, interval_labels=[(str(k), str(k)) for k in range(10)])
    result = SpaceTimeScan(max_intervals=3, max_share=0.5, n_permutations=0).run(data)
    top = result.most_likely
    assert top.centre_id == "a" and top.location_ids == ("a", "b")
