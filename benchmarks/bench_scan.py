"""Speed of the space-time permutation scan against a plain NumPy baseline, in one run.

Cases:
- NYC fever (SaTScan sample): 194 cases, 192 ZIP centroids, SaTScan-manual settings
  (3 km, 7 days), 999 replications (standard Monte Carlo, no early stop).
- NYC motor-vehicle thefts: 35,746 events 2014-2017 -> 500 m cells, daily intervals,
  windows up to 30 days, circles up to 2 km, 999 replications.

Each case runs with both replication sources: ``numpy`` (independent permutations) and
``satscan`` (SaTScan's own generator, seeds and case order; sorts C draws per replication).

The baseline scans each replication with NumPy only (a Python loop over centres, cumulative
sums over neighbours x windows, vectorised LLR); it is timed on a few replications and
scaled to 999.

A second table compares the two replication streams on ``satscan_test1`` (observed maximum
LLR 3.352053): the share of replications at or above it, and strictly above it (SaTScan's
count), over ``--stream-reps`` replications each, with binomial standard errors; and a
third where SaTScan's stream puts the first, second and 50th listed case's time.

A fourth table (``--models-only`` runs just it) times one replication of each model on
the same NYC theft locations and days: the space-time permutation scan (all events are
cases), the discrete Poisson scan (all events are cases; a stand-in population per cell
of 100 + its number of events, for timing only) and the Bernoulli scan (every other event
is a case, the rest controls), prospective (windows up to 30 days) and retrospective
(the last 60 days, windows up to 7 days). Seconds per replication are
``(time with R replications - time with none) / R``; the ratio is against the
permutation scan in the same run.

Run: ``PYTHONPATH=src python benchmarks/bench_scan.py [--jobs 2] [--stream-reps 20000]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from placecast.clusters import ScanData, SpaceTimeScan, read_satscan, scan_data_from_events
from placecast.io import ColumnMap, read_events
from placecast.pipeline import UnitSpec, build_units

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def numpy_replication(data: ScanData, scan: SpaceTimeScan, locations: np.ndarray,
                      nb: tuple[np.ndarray, ...], max_len: int) -> float:
    """One replication's maximum LLR, NumPy only."""
    nb_ptr, nb_idx, _ = nb
    n_int, total = data.n_intervals, float(data.n_cases)
    counts = np.zeros((data.n_locations, n_int))
    np.add.at(counts, (locations, data.case_interval), 1.0)
    tail = np.cumsum(counts[:, ::-1], axis=1)[:, :max_len]          # windows of 1..max_len
    loc_total = np.bincount(data.case_location, minlength=data.n_locations).astype(float)
    win_total = np.cumsum(np.bincount(data.case_interval, minlength=n_int)[::-1])[:max_len]
    best = 0.0
    for c in range(data.n_locations):
        members = nb_idx[nb_ptr[c]:nb_ptr[c + 1]]
        n = np.cumsum(tail[members], axis=0)                          # (k, windows)
        mu = np.cumsum(loc_total[members])[:, None] * win_total[None, :] / total
        ok = (n > mu) & (n >= scan.min_cases)
        if ok.any():
            a, b = n[ok], mu[ok]
            rest = np.where(total > a, (total - a) * np.log(np.maximum(total - a, 1e-300)
                                                              / (total - b)), 0.0)
            best = max(best, float((a * np.log(a / b) + rest).max()))
    return best


def bench(name: str, data: ScanData, scan: SpaceTimeScan, n_baseline: int = 3) -> list[str]:
    t0 = time.perf_counter()
    result = scan.run(data)
    fast = time.perf_counter() - t0
    name = f"{name} [{scan.randomization}]"
    max_len = int(result.parameters["max_intervals"])
    loc_total = np.bincount(data.case_location, minlength=data.n_locations).astype(float)
    nb = scan._neighbours(data, loc_total)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(n_baseline):
        numpy_replication(data, scan, rng.permutation(data.case_location), nb, max_len)
    per_rep = (time.perf_counter() - t0) / n_baseline
    base = per_rep * (scan.n_permutations + 1)
    top = result.most_likely
    return [name, f"{data.n_locations:,}", f"{data.n_cases:,}", str(result.n_permutations),
            f"{fast:.1f}", f"{base:.1f}", f"{base / fast:.0f}x",
            f"{top.test_statistic:.3f} / p={top.p_value:.3f}" if top else "-"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--permutations", type=int, default=999)
    parser.add_argument("--stream-reps", type=int, default=20_000)
    parser.add_argument("--model-reps", type=int, default=199)
    parser.add_argument("--models-only", action="store_true")
    args = parser.parse_args()
    if args.models_only:
        print_table(["analysis", "model", "locations", "cases", "controls", "reps",
                     "s / replication", "ratio to permutation"],
                    model_rows(args.model_reps, args.jobs))
        return
    rows = []

    sat = DATA / "satscan"
    with tempfile.TemporaryDirectory() as tmp:
        prm = Path(tmp) / "NYCfever.prm"
        prm.write_text("\n".join([
            f"CaseFile={sat / 'nycfever_cases.csv'}", "PrecisionCaseTimes=3",
            "StartDate=2001/11/1", "EndDate=2001/11/24",
            f"CoordinatesFile={sat / 'nycfever_zip_centroids.csv'}", "CoordinatesType=1",
            "AnalysisType=4", "ModelType=2", "TimeAggregationUnits=3",
            "UseDistanceFromCenterOption=y", "MaxSpatialSizeInDistanceFromCenter=3",
            "MaxTemporalSizeInterpretation=1", "MaxTemporalSize=7", "PValueReportType=1", ""]))
        for source in ("numpy", "satscan"):
            run = read_satscan(prm, n_permutations=args.permutations, random_state=1,
                               n_jobs=args.jobs, randomization=source)
            rows.append(bench("NYC fever (SaTScan manual)", run.data, run.scan, n_baseline=20))

    events = read_events(DATA / "nyc" / "motor_vehicle_thefts_2014_2017.csv",
                         columns=ColumnMap(time="date_single", lon="longitude", lat="latitude"))
    units = build_units(events, UnitSpec(cell_size=500.0))
    data = scan_data_from_events(events, units=units)
    for source in ("numpy", "satscan"):
        scan = SpaceTimeScan(max_radius=2000.0, max_intervals=30,
                             n_permutations=args.permutations, random_state=1,
                             n_jobs=args.jobs, randomization=source)
        rows.append(bench("NYC thefts, 500 m cells, 2 km, 30 d", data, scan))

    print_table(["case", "locations", "cases", "reps", "placecast s", "numpy baseline s",
                 "ratio", "top LLR / p"], rows)
    print(f"(threads: {args.jobs}; baseline timed on a few replications and scaled)\n")
    print_table(["stream", "reps", "share >= observed", "share > observed", "s"],
                stream_rows(sat / "satscan_test1.prm", args.stream_reps, args.jobs))
    print("\nSaTScan stream, first 999 replications, 100 cases: the k-th listed case")
    print_table(["k", "its draw", "its list position", "chi-square p (uniform positions)"],
                first_draw_rows())
    print()
    print_table(["analysis", "model", "locations", "cases", "controls", "reps",
                 "s / replication", "ratio to permutation"],
                model_rows(args.model_reps, args.jobs))


def _thefts(n_days: int | None = None) -> ScanData:
    events = read_events(DATA / "nyc" / "motor_vehicle_thefts_2014_2017.csv",
                         columns=ColumnMap(time="date_single", lon="longitude", lat="latitude"))
    units = build_units(events, UnitSpec(cell_size=500.0))
    every_other = np.arange(len(events)) % 2 == 0
    return scan_data_from_events(events, units=units, n_intervals=n_days, cases=every_other)


def model_rows(reps: int, jobs: int) -> list[list[str]]:
    """Seconds per replication of each model on the same locations and days."""
    rows = []
    for analysis, n_days, max_len in (("prospective", None, 30), ("retrospective", 60, 7)):
        split = _thefts(n_days)
        # all events as cases (permutation, Poisson) or cases and controls (Bernoulli)
        every = ScanData(
            location_ids=split.location_ids, coordinates=split.coordinates,
            case_location=np.concatenate([split.case_location, split.control_location]),
            case_interval=np.concatenate([split.case_interval, split.control_interval]),
            interval_labels=split.interval_labels, study_period=split.study_period)
        counts = np.bincount(every.case_location, minlength=every.n_locations)
        poisson = ScanData(location_ids=every.location_ids, coordinates=every.coordinates,
                           case_location=every.case_location,
                           case_interval=every.case_interval,
                           interval_labels=every.interval_labels,
                           population=100.0 + counts)
        baseline = None
        for model, data in (("space_time_permutation", every), ("poisson", poisson),
                            ("bernoulli", split)):
            times = []
            for n in (0, reps):
                scan = SpaceTimeScan(model=model, analysis=analysis, max_radius=2000.0,
                                     max_intervals=max_len, n_permutations=n,
                                     random_state=1, n_jobs=jobs)
                scan.run(data) if n == 0 else None          # compile and warm caches
                t0 = time.perf_counter()
                scan.run(data)
                times.append(time.perf_counter() - t0)
            per_rep = (times[1] - times[0]) / reps
            baseline = per_rep if baseline is None else baseline
            rows.append([analysis, model, f"{data.n_locations:,}", f"{data.n_cases:,}",
                         f"{data.n_controls:,}", str(reps), f"{per_rep:.4f}",
                         f"{per_rep / baseline:.2f}"])
    return rows


def stream_rows(prm: Path, reps: int, jobs: int) -> list[list[str]]:
    """Exceedance rates of satscan_test1's observed maximum under both replication streams."""
    rows = []
    for source in ("numpy", "satscan"):
        run = read_satscan(prm, overrides={"PValueReportType": "1", "EndDate": "1000"},
                           n_permutations=reps, random_state=None if source == "satscan"
                           else 2018, n_jobs=jobs, randomization=source)
        t0 = time.perf_counter()
        result = run.scan.run(run.data)
        seconds = time.perf_counter() - t0
        sims, observed = result.simulated_statistics, result.most_likely.test_statistic
        cells = [source, f"{len(sims):,}"]
        for share in (np.mean(sims >= observed - 1e-9), np.mean(sims - observed >= 1e-9)):
            se = np.sqrt(share * (1 - share) / len(sims))
            cells.append(f"{share:.4f} +- {se:.4f}")
        rows.append([*cells, f"{seconds:.1f}"])
    return rows


def first_draw_rows(n_cases: int = 100, reps: int = 999) -> list[list[str]]:
    """Where SaTScan's stream puts the k-th listed case's time over its first replications.

    With seeds 12345678 + r, the k-th draw of replication r is ``48271**k (s0 + r) mod m``:
    for k = 1 consecutive replications differ by only 48271 / m. Reports the range of the
    draw, the range of list positions it gets (its rank among the ``n_cases`` draws) and a
    chi-square test of uniform positions.
    """
    from scipy import stats

    from placecast.clusters._satscan_random import SATSCAN_DEFAULT_SEED, lehmer_uniforms

    rows = []
    for k in (0, 1, 49):
        draws = np.array([lehmer_uniforms(SATSCAN_DEFAULT_SEED + r, n_cases)
                          for r in range(1, reps + 1)])
        own = draws[:, k]
        positions = (draws < own[:, None]).sum(axis=1)
        p = stats.chisquare(np.bincount(positions, minlength=n_cases)).pvalue
        rows.append([str(k + 1), f"{own.min():.3f} .. {own.max():.3f}",
                     f"{positions.min()} .. {positions.max()}", f"{p:.2g}"])
    return rows


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Print rows under a header, columns padded."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        print(" | ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
