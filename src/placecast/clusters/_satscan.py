"""SaTScan's own files in and out: parameter, case, control, population, coordinates.

Only what placecast's scans need is read (space-time permutation, discrete Poisson and
Bernoulli models; prospective, retrospective and purely spatial analyses); any other
analysis, model or setting that changes the analysis is an error naming the setting.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import textwrap
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from placecast.clusters._scan import GUMBEL_FLOOR, SpaceTimeScan
from placecast.clusters._scan_data import ScanData
from placecast.clusters._scan_result import ScanCluster, ScanResult
from placecast.exceptions import DataError, DataQualityWarning, ParameterError
from placecast.io._atomic import atomic_path

__all__ = [
    "SatscanRun",
    "format_satscan_report",
    "read_satscan",
    "read_satscan_parameters",
    "satscan_input_files",
    "write_satscan_files",
    "write_satscan_report",
]

_RULE = "_" * 95


@dataclass(frozen=True)
class SatscanRun:
    """A SaTScan parameter file turned into placecast objects.

    Attributes
    ----------
    data : ScanData
        Cases and locations from the case and coordinates files.
    scan : SpaceTimeScan
        The scan configured as the parameter file says.
    parameters : dict
        Every ``key=value`` of the parameter file (after overrides).
    case_file, coordinates_file : Path
        The input files actually read.
    control_file, population_file : Path or None
        The control file (Bernoulli) and population file (Poisson) read, if any.
    prm_path : Path
        The parameter file.
    """

    data: ScanData
    scan: SpaceTimeScan
    parameters: dict[str, str] = field(repr=False)
    case_file: Path
    coordinates_file: Path
    prm_path: Path
    control_file: Path | None = None
    population_file: Path | None = None


def read_satscan_parameters(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a SaTScan ``.prm`` file into ``{key: value}`` (sections flattened, comments dropped).

    Raises
    ------
    DataError
        If the file is missing or a line is neither a section, a comment nor ``key=value``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"SaTScan parameter file {path} does not exist.")
    params: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace")
                                 .splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";") or (line.startswith("[") and line.endswith("]")):
            continue
        if "=" not in line:
            raise DataError(f"{path} line {number}: {raw!r} is not 'key=value'.")
        key, value = line.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _locate(value: str, prm: Path, key: str) -> Path:
    """Find a file named in the parameter file, else the same name beside the .prm."""
    if not value:
        raise DataError(f"{prm}: {key} is empty; give the file name in the parameter file.")
    as_given = Path(value)
    if as_given.is_file():
        return as_given
    name = re.split(r"[\\/]", value)[-1]
    beside = prm.parent / name
    if beside.is_file():
        return beside
    raise DataError(f"{prm}: {key}={value} was not found, nor {beside}; put the file beside "
                    "the parameter file or correct the path.")



def satscan_input_files(path: str | os.PathLike[str]) -> list[Path]:
    """The parameter file and the input files it names, as :func:`read_satscan` finds them.

    The case and coordinates files always; the control and population files when the
    parameter file names ones that exist. A watcher compares their modification times to
    know whether a run would see new data.

    Raises
    ------
    DataError
        If the parameter file, its case file or its coordinates file is missing.
    """
    prm = Path(path)
    params = read_satscan_parameters(prm)
    files = [prm] + [_locate(params.get(key, ""), prm, key)
                     for key in ("CaseFile", "CoordinatesFile")]
    for key in ("ControlFile", "PopulationFile"):
        if params.get(key):
            try:
                files.append(_locate(params[key], prm, key))
            except DataError:
                continue  # not used by this model, or reported when the run reads it
    return files


def _rows(path: Path) -> list[list[str]]:
    """Split a SaTScan input file (whitespace- or comma-separated, optional header)."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        parts = [p.strip().strip('"') for p in re.split(r"[,\s]+", line.strip()) if p.strip()]
        rows.append(parts)
    return rows


def _parse_time(text: str, precision: int, where: str) -> int:
    """Parse a case time into an integer count of time units (generic units or days)."""
    if precision == 4:
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: time {text!r} is not a number (generic time "
                            "precision).") from None
        if value != int(value):
            raise DataError(f"{where}: generic time {text!r} must be a whole number.")
        return int(value)
    if precision == 3:
        m = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", text)
        if not m:
            raise DataError(f"{where}: date {text!r} is not YYYY/MM/DD (day time precision).")
        try:
            return dt.date(int(m[1]), int(m[2]), int(m[3])).toordinal()
        except ValueError:
            raise DataError(f"{where}: {text!r} is not a calendar date.") from None
    raise ParameterError(f"PrecisionCaseTimes={precision} is not supported; use 3 (day) or "
                         "4 (generic).")


def _label(value: int, precision: int) -> str:
    if precision in (0, 4):  # no times (relabelled by the caller) or generic units
        return str(value)
    d = dt.date.fromordinal(value)
    return f"{d.year}/{d.month}/{d.day}"


def _int(params: dict[str, str], key: str, default: int) -> int:
    value = params.get(key, "")
    if value == "":
        return default
    try:
        return int(float(value))
    except ValueError:
        raise ParameterError(f"parameter {key}={value!r} must be a number.") from None


def _float(params: dict[str, str], key: str, default: float) -> float:
    value = params.get(key, "")
    if value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ParameterError(f"parameter {key}={value!r} must be a number.") from None


def _yes(params: dict[str, str], key: str) -> bool:
    return params.get(key, "n").strip().lower() in ("y", "yes", "true", "1")


#: SaTScan's AnalysisType and ModelType codes placecast runs.
_ANALYSES = {1: "purely_spatial", 3: "retrospective", 4: "prospective"}
_MODELS = {0: "poisson", 1: "bernoulli", 2: "space_time_permutation"}
_ANALYSIS_CODES = {name: code for code, name in _ANALYSES.items()}
_MODEL_CODES = {name: code for code, name in _MODELS.items()}

#: Settings that change the analysis in ways placecast does not implement, with the value
#: that leaves them off: a file that turns one on is refused rather than run differently.
_UNSUPPORTED = {
    "AdjustForEarlierAnalyses": ("n", "p-values adjusted for earlier prospective analyses"),
    "IterativeScan": ("n", "iterative scans"),
    "AdjustForWeeklyTrends": ("n", "the day-of-week adjustment"),
    "IncludePurelyTemporal": ("n", "purely temporal clusters"),
    "IncludePurelySpatial": ("n", "purely spatial clusters"),
    "UseMaxCirclePopulationFileOption": ("n", "a maximum circle size file"),
    "UseMetaLocationsFile": ("n", "meta locations"),
    "UseLocationsNetworkFile": ("n", "a locations network"),
    "UseAdjustmentsByRRFile": ("n", "adjustments by known relative risks"),
    "PerformPowerEvaluation": ("n", "power evaluation"),
    "SpatialAdjustmentType": ("0", "spatial adjustments"),
    "TimeTrendAdjustmentType": ("0", "time trend adjustments"),
}


def _refuse_unsupported(params: dict[str, str], prm: Path) -> None:
    """Raise for settings that would make SaTScan run another analysis than placecast."""
    for key, (off, what) in _UNSUPPORTED.items():
        value = params.get(key, "").strip()
        if _yes(params, key) if off == "n" else _int(params, key, 0) != 0:
            raise ParameterError(f"{prm}: {key}={value} asks for {what}, which placecast "
                                 f"does not implement; set {key}={off} (or remove it) to run "
                                 "the plain scan.")
    extra = sorted(k for k, v in params.items()
                   if re.fullmatch(r"CaseFile\d+", k) and v.strip())
    if extra:
        raise ParameterError(f"{prm}: {', '.join(extra)} add data sets; placecast scans one "
                             "data set (CaseFile).")


def _warn_shared_coordinates(ids: list[str], coords: list[tuple[float, float]],
                             geo_file: Path) -> None:
    """Warn when locations share coordinates: SaTScan merges them, placecast does not."""
    first: dict[tuple[float, float], str] = {}
    shared = []
    for location_id, xy in zip(ids, coords, strict=True):
        if xy in first:
            shared.append(f"{first[xy]} and {location_id}")
        else:
            first[xy] = location_id
    if shared:
        warnings.warn(
            f"{geo_file}: {len(shared)} location(s) share coordinates with another "
            f"({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}). SaTScan merges "
            "such locations into one; placecast scans them as separate locations, so "
            "clusters and p-values can differ from SaTScan's. Merge them in the files "
            "(one id per coordinate) to match SaTScan.", DataQualityWarning, stacklevel=3)


def _read_counts(path: Path, what: str, index: dict[str, int], geo_file: Path,
                 window: tuple[int, int, int, int, int],
                 checks: tuple[bool, bool]) -> tuple[list[int], list[int]]:
    """Read a case or control file (``location count time``) into indices.

    One location and interval index per case; with precision 0 (no times) every row is
    interval 0.
    """
    start, end, agg_len, n_int, precision = window
    relaxed_times, relaxed_locations = checks
    loc: list[int] = []
    interval: list[int] = []
    skipped = {"time": 0, "location": 0}
    need = 2 if precision == 0 else 3
    for number, row in enumerate(_rows(path), start=1):
        where = f"{path} line {number}"
        if len(row) < need:
            raise DataError(f"{where}: expected 'location count{' time' if need == 3 else ''}"
                            f"', got {' '.join(row)!r}.")
        try:
            count = float(row[1])
        except ValueError:
            if number == 1:
                continue
            raise DataError(f"{where}: {what} count {row[1]!r} is not a number.") from None
        if count < 0 or count != int(count):
            raise DataError(f"{where}: {what} count {row[1]!r} must be a whole number >= 0.")
        if row[0] not in index:
            if relaxed_locations:
                skipped["location"] += int(count)
                continue
            raise DataError(f"{where}: location {row[0]!r} is not in {geo_file.name} (add "
                            f"it, or set GeographicalCoordinatesCheckType=1 to leave such "
                            f"{what}s out, as SaTScan does).")
        if precision == 0:
            i = 0
        else:
            t = _parse_time(row[2], precision, where)
            if not start <= t <= end:
                if relaxed_times:
                    skipped["time"] += int(count)
                    continue
                raise DataError(f"{where}: time {row[2]} is outside the study period "
                                f"{_label(start, precision)} to {_label(end, precision)}; fix "
                                "StartDate/EndDate (or set StudyPeriodCheckType=1 to leave "
                                f"such {what}s out, as SaTScan does).")
            i = n_int - 1 - (end - t) // agg_len
        loc.extend([index[row[0]]] * int(count))
        interval.extend([i] * int(count))
    if skipped["time"] or skipped["location"]:
        warnings.warn(
            f"{path}: {skipped['time']} {what}(s) outside the study period and "
            f"{skipped['location']} at locations missing from {geo_file.name} were left out, "
            "as the relaxed data checks in the parameter file ask.", DataQualityWarning,
            stacklevel=3)
    return loc, interval


def _read_population(path: Path, index: dict[str, int], geo_file: Path,
                     relaxed_locations: bool) -> np.ndarray:
    """Read a population file (``location [date] population``).

    One population per location, constant over the study period; locations not listed
    have population 0.
    """
    population = np.zeros(len(index))
    seen: dict[str, int] = {}
    for number, row in enumerate(_rows(path), start=1):
        where = f"{path} line {number}"
        if len(row) not in (2, 3):
            if len(row) > 3:
                raise DataError(f"{where}: {len(row) - 3} covariate column(s); placecast does "
                                "not adjust for covariates. Give 'location date population' "
                                "rows with the covariates summed out.")
            raise DataError(f"{where}: expected 'location date population', got "
                            f"{' '.join(row)!r}.")
        try:
            value = float(row[-1])
        except ValueError:
            if number == 1:
                continue
            raise DataError(f"{where}: population {row[-1]!r} is not a number.") from None
        if not math.isfinite(value) or value < 0:
            raise DataError(f"{where}: population {row[-1]!r} must be a number >= 0.")
        if row[0] in seen:
            raise DataError(f"{where}: location {row[0]!r} already has a population (line "
                            f"{seen[row[0]]}); placecast holds populations constant in time, "
                            "so give one population per location (e.g. the mid-period "
                            "census).")
        seen[row[0]] = number
        if row[0] not in index:
            if relaxed_locations:
                continue
            raise DataError(f"{where}: location {row[0]!r} is not in {geo_file.name} (add "
                            "it, or set GeographicalCoordinatesCheckType=1 to leave it out).")
        population[index[row[0]]] = value
    return population


def read_satscan(
    prm_path: str | os.PathLike[str],
    *,
    overrides: dict[str, str] | None = None,
    n_permutations: int | None = None,
    random_state: int | None = None,
    n_jobs: int | None = None,
    randomization: str | None = None,
    p_values: str | None = None,
) -> SatscanRun:
    """Read a SaTScan parameter file and the case and coordinates files it names.

    Input paths that do not exist as written (often Windows paths) are looked up by file
    name beside the ``.prm``. Supported: purely spatial, retrospective and prospective
    space-time analyses (``AnalysisType`` 1, 3, 4) with the discrete Poisson
    (``ModelType=0``, ``PopulationFile`` with one population per location, constant in
    time), Bernoulli (``ModelType=1``, ``ControlFile``) or space-time permutation model
    (``ModelType=2``; not purely spatial), high rates, circular windows, Cartesian or
    latitude/longitude coordinates, generic or day time precision, maximum spatial size
    as a share of the population at risk and/or a distance, maximum temporal size as a
    share of the study period or a length, and SaTScan's p-value reporting
    (``PValueReportType`` 0: sequential procedure, Gumbel for clusters fewer than 9
    replications beat; 1: standard Monte Carlo; 2: sequential procedure; 3: Gumbel).

    For the space-time permutation model the replications are by default SaTScan's own
    (``randomization="satscan"``: its generator, seeds and case order), so p-values,
    recurrence intervals and the number of sequential replications are those SaTScan
    prints for the same file; the Poisson and Bernoulli models use NumPy's generator. The
    initial seed is ``random_state``, else the file's ``RandomizationSeed``, else
    SaTScan's 12345678.

    Parameters
    ----------
    prm_path : path
        The parameter file.
    overrides : dict, optional
        ``{key: value}`` replacing settings of the file (e.g. ``{"EndDate": "1000"}``).
    n_permutations : int, optional
        Replications instead of ``MonteCarloReps``.
    random_state : int, optional
        Seed of the permutations (SaTScan's initial seed with ``randomization="satscan"``;
        the seed drawn for ``RandomlyGenerateSeed=y`` is in the result's parameters).
    n_jobs : int, optional
        Threads for the replications.
    randomization : {"satscan", "numpy"}, optional
        SaTScan's own replications (default for the space-time permutation model), or
        independent NumPy replications (default, and the only choice, for the others).
    p_values : {"monte_carlo", "satscan_default", "gumbel"}, optional
        Instead of the file's ``PValueReportType``.

    Returns
    -------
    SatscanRun

    Raises
    ------
    DataError
        Missing files, unreadable rows, unknown location ids, cases outside the study period.
    ParameterError
        Settings this scan does not implement.

    Warns
    -----
    DataQualityWarning
        When locations share coordinates (SaTScan would merge them).
    """
    prm = Path(prm_path)
    params = read_satscan_parameters(prm)
    params.update(overrides or {})
    analysis_type = _int(params, "AnalysisType", 4)
    if analysis_type not in _ANALYSES:
        raise ParameterError(f"{prm}: AnalysisType={params['AnalysisType']} is not supported; "
                             "placecast runs purely spatial (1), retrospective space-time "
                             "(3) and prospective space-time (4) analyses.")
    model_type = _int(params, "ModelType", 2)
    if model_type not in _MODELS:
        raise ParameterError(f"{prm}: ModelType={params['ModelType']} is not supported; "
                             "placecast runs the discrete Poisson (0), Bernoulli (1) and "
                             "space-time permutation (2) models.")
    analysis, model = _ANALYSES[analysis_type], _MODELS[model_type]
    if analysis == "purely_spatial" and model == "space_time_permutation":
        raise ParameterError(f"{prm}: the space-time permutation model (ModelType=2) needs a "
                             "space-time analysis (AnalysisType=3 or 4), as in SaTScan.")
    if _int(params, "ScanAreas", 1) != 1:
        raise ParameterError(f"{prm}: ScanAreas={params['ScanAreas']} is not supported; "
                             "placecast scans for high rates (1).")
    if _int(params, "SpatialWindowShapeType", 0) != 0:
        raise ParameterError(f"{prm}: only circular windows (SpatialWindowShapeType=0) are "
                             "supported.")
    if _yes(params, "UseGridFile") or _yes(params, "UseNeighborsFile"):
        raise ParameterError(f"{prm}: grid and neighbours files are not supported.")
    _refuse_unsupported(params, prm)
    precision = _int(params, "PrecisionCaseTimes", 3)
    if precision == 0:  # no case times: purely spatial only, one interval
        if analysis != "purely_spatial":
            raise ParameterError(f"{prm}: PrecisionCaseTimes=0 (no case times) needs a purely "
                                 "spatial analysis (AnalysisType=1).")
        start = end = 0
        agg_len = 1
    else:
        start = _parse_time(params.get("StartDate", ""), precision, f"{prm} StartDate")
        end = _parse_time(params.get("EndDate", ""), precision, f"{prm} EndDate")
        if end < start:
            raise ParameterError(f"{prm}: EndDate is before StartDate.")
        if analysis == "purely_spatial":  # the whole study period is the one window
            agg_len = end - start + 1
        else:
            agg_units = _int(params, "TimeAggregationUnits", precision)
            if agg_units != precision:
                raise ParameterError(f"{prm}: TimeAggregationUnits={agg_units} must equal "
                                     f"PrecisionCaseTimes={precision}.")
            agg_len = _int(params, "TimeAggregationLength", 1)
            if agg_len < 1:
                raise ParameterError(f"{prm}: TimeAggregationLength must be a positive "
                                     "integer.")
    latlon = _int(params, "CoordinatesType", 0) == 1

    case_file = _locate(params.get("CaseFile", ""), prm, "CaseFile")
    geo_file = _locate(params.get("CoordinatesFile", ""), prm, "CoordinatesFile")

    ids: list[str] = []
    coords: list[tuple[float, float]] = []
    index: dict[str, int] = {}
    for number, row in enumerate(_rows(geo_file), start=1):
        try:
            a, b = float(row[1]), float(row[2])
        except (ValueError, IndexError):
            if number == 1:
                continue  # a header line
            raise DataError(f"{geo_file} line {number}: expected 'id x y' (or 'id latitude "
                            f"longitude'), got {' '.join(row)!r}.") from None
        if row[0] in index:
            raise DataError(f"{geo_file} line {number}: location {row[0]!r} appears twice.")
        index[row[0]] = len(ids)
        ids.append(row[0])
        coords.append((a, b))
    if not ids:
        raise DataError(f"{geo_file} holds no locations.")
    _warn_shared_coordinates(ids, coords, geo_file)

    n_units = end - start + 1
    n_int = math.ceil(n_units / agg_len)
    checks = (_int(params, "StudyPeriodCheckType", 0) == 1,
              _int(params, "GeographicalCoordinatesCheckType", 0) == 1)
    window = (start, end, agg_len, n_int, precision)
    case_loc, case_int = _read_counts(case_file, "case", index, geo_file, window, checks)
    control_loc = control_int = population = None
    control_file = population_file = None
    if model == "bernoulli":
        control_file = _locate(params.get("ControlFile", ""), prm, "ControlFile")
        control_loc, control_int = _read_counts(control_file, "control", index, geo_file,
                                                window, checks)
    if model == "poisson":
        population_file = _locate(params.get("PopulationFile", ""), prm, "PopulationFile")
        population = _read_population(population_file, index, geo_file, checks[1])

    labels, sizes = [], []
    for i in range(n_int):
        last = end - (n_int - 1 - i) * agg_len
        first = max(start, last - agg_len + 1)
        labels.append((_label(first, precision), _label(last, precision)))
        sizes.append(float(last - first + 1))
    if precision == 0:
        labels = [(params.get("StartDate", ""), params.get("EndDate", ""))]

    if _int(params, "MaxTemporalSizeInterpretation", 0) == 1:
        max_len = int(_float(params, "MaxTemporalSize", 1) // agg_len)
    else:
        max_len = int(math.floor(_float(params, "MaxTemporalSize", 50) / 100 * n_units
                                 + 1e-9) // agg_len)
    min_len = max(1, math.ceil(_float(params, "MinimumTemporalClusterSize", 1) / agg_len))
    max_radius = (_float(params, "MaxSpatialSizeInDistanceFromCenter", 1.0)
                  if _yes(params, "UseDistanceFromCenterOption") else None)
    report_type = _int(params, "PValueReportType", 0)
    if report_type not in (0, 1, 2, 3):
        raise ParameterError(f"{prm}: PValueReportType={report_type} is unknown; use 0 "
                             "(default combination), 1 (standard Monte Carlo), 2 (early "
                             "termination) or 3 (Gumbel).")
    early = _int(params, "EarlyTerminationThreshold", 50) if report_type in (0, 2) else None
    if p_values is None:
        p_values = {0: "satscan_default", 3: "gumbel"}.get(report_type, "monte_carlo")
    reps = _int(params, "MonteCarloReps", 999) if n_permutations is None else n_permutations
    if randomization is None:
        randomization = "satscan" if model == "space_time_permutation" else "numpy"
    if random_state is None and randomization == "satscan":
        if _yes(params, "RandomlyGenerateSeed"):  # SaTScan picks a fresh seed; so do we
            random_state = int(np.random.default_rng().integers(1, 2**31 - 2 - reps))
        elif params.get("RandomizationSeed", "").strip():
            random_state = _int(params, "RandomizationSeed", 12345678)

    data = ScanData(
        location_ids=np.asarray(ids, dtype=object),
        coordinates=np.asarray(coords, dtype=float),
        case_location=np.asarray(case_loc, dtype=np.int64),
        case_interval=np.asarray(case_int, dtype=np.int64),
        interval_labels=labels,
        coordinate_system="latlon" if latlon else "cartesian",
        time_unit="unit" if precision == 4 else "day",
        interval_length=float(agg_len),
        study_period=(labels[0][0], labels[-1][1]),
        crs="EPSG:4326" if latlon else None,
        population=population,
        control_location=None if control_loc is None else np.asarray(control_loc, np.int64),
        control_interval=None if control_int is None else np.asarray(control_int, np.int64),
        interval_sizes=np.asarray(sizes),
    )
    scan = SpaceTimeScan(
        max_share=_float(params, "MaxSpatialSizeInPopulationAtRisk", 50) / 100,
        max_radius=max_radius,
        min_intervals=min_len,
        max_intervals=max_len,
        n_permutations=reps,
        early_stop=early,
        min_cases=_int(params, "MinimumCasesInHighRateClusters", 2),
        random_state=random_state,
        n_jobs=n_jobs,
        randomization=randomization,
        p_values=p_values,
        model=model,
        analysis=analysis,
    )
    return SatscanRun(data=data, scan=scan, parameters=params, case_file=case_file,
                      coordinates_file=geo_file, prm_path=prm, control_file=control_file,
                      population_file=population_file)


# ---------------------------------------------------------------------------- report
def _number(value: float, decimals: int = 2) -> str:
    """SaTScan-style: ``decimals`` places, more for small values so two digits show."""
    if value != 0 and abs(value) < 10 ** -(decimals - 1):
        decimals = max(decimals, -math.floor(math.log10(abs(value))) + 1)
    return f"{value:.{decimals}f}"


def _coordinates(cluster: ScanCluster, latlon: bool) -> str:
    if latlon:
        lat, lon = cluster.centre
        return (f"({abs(lat):.6f} {'N' if lat >= 0 else 'S'}, "
                f"{abs(lon):.6f} {'E' if lon >= 0 else 'W'}) / "
                f"{_number(cluster.radius) if cluster.radius > 0 else '0'} km")
    x, y = (np.format_float_positional(v, precision=3, trim="-") for v in cluster.centre)
    radius = f"{cluster.radius:.2f}" if cluster.radius > 0 else "0"
    return f"({x},{y}) / {radius}"


def _p_text(cluster: ScanCluster, n_done: int) -> str:
    """SaTScan's p-value text.

    As many decimals as the replications resolve (Monte Carlo), two significant digits
    (Gumbel), ``< floor`` when the Gumbel tail underflows.
    """
    p = cluster.p_value
    if math.isnan(p):
        return "n/a (no replications)"
    if cluster.p_value_method == "gumbel":
        return f"< {_number(p)}" if p <= GUMBEL_FLOOR else _number(p)
    decimals = max(1, math.ceil(math.log10(n_done + 1)))
    return f"{p:.{decimals}f}"


def _recurrence_text(ri: float, unit: str) -> str:
    """SaTScan's recurrence-interval wording.

    Days below a year, years with one decimal up to 10, then whole years (day data); units
    with one decimal up to 10, then whole units (generic time).
    """
    if math.isinf(ri) or math.isnan(ri):
        return "n/a"
    if unit == "day":
        years, days = ri / 365.25, max(ri, 1.0)
        if years < 1.0:
            return f"{days:.0f} day{'' if days < 1.5 else 's'}"
        if years <= 10.0:
            return f"{years:.1f} year{'' if years < 1.05 else 's'}"
        return f"{years:.0f} years"
    units = max(ri, 1.0)
    if units <= 10.0:
        return f"{units:.1f} {unit}{'' if units < 1.05 else 's'}"
    return f"{units:.0f} {unit}s"


_ANALYSIS_TITLES = {"prospective": "Prospective Space-Time",
                    "retrospective": "Retrospective Space-Time",
                    "purely_spatial": "Purely Spatial"}
_MODEL_TITLES = {"space_time_permutation": "Space-Time Permutation",
                 "poisson": "Discrete Poisson", "bernoulli": "Bernoulli"}


def _population_text(population: float) -> str:
    """SaTScan's population format: all digits below 0.5, one decimal below 1, else none."""
    if math.isnan(population):
        return "n/a"
    if population < 0.5:
        return f"{population:g}"
    return f"{population:.1f}" if population < 1 else f"{population:.0f}"


def format_satscan_report(result: ScanResult, *, title: str = "placecast",
                          parameters: dict[str, str] | None = None) -> str:
    """Format the results as SaTScan's main text report: same fields, same decimals.

    Fields: locations, coordinates / radius, time frame (space-time analyses), population
    (Poisson, Bernoulli), cases, expected cases (2 decimals), observed / expected (2),
    relative risk (Poisson, Bernoulli), percent cases in area (Bernoulli), test
    statistic or log likelihood ratio (6), p-value (as many decimals as the replications
    resolve) and recurrence interval (prospective analyses).
    """
    latlon = result.coordinate_system == "latlon"
    model, analysis = result.model, result.analysis
    summary = [
        ("Study period", f"{result.study_period[0]} to {result.study_period[1]}"),
        ("Number of locations", str(result.n_locations)),
    ]
    if model == "poisson":
        summary.append(("Population, averaged over time", f"{result.total_population:.0f}"))
    if model == "bernoulli":
        summary.append(("Total population", f"{result.total_population:.0f}"))
    summary.append(("Total number of cases", str(result.n_cases)))
    if model == "bernoulli":
        summary.append(("Percent cases",
                        _number(100 * result.n_cases / result.total_population, 1)))
    lines = [
        " " * 33 + "_" * 29, "",
        " " * 40 + f"{title} (SaTScan-compatible report)",
        " " * 33 + "_" * 29, "", "",
        f"{_ANALYSIS_TITLES[analysis]} analysis",
        "scanning for clusters with high rates",
        f"using the {_MODEL_TITLES[model]} model.",
        _RULE, "",
        "SUMMARY OF DATA", "",
        *(f"{label:.<35}: {value}" for label, value in summary),
        _RULE, "",
        "CLUSTERS DETECTED", "",
    ]
    if not result.clusters:
        lines += ["No clusters were found.", ""]
    for c in result.clusters:
        head = f"{c.rank}.Location IDs included.: "
        wrapped = textwrap.wrap(", ".join(c.location_ids), width=95 - len(head),
                                break_on_hyphens=False) or [""]
        lines.append(head + wrapped[0])
        lines += [" " * len(head) + w for w in wrapped[1:]]
        pad = " " * (len(str(c.rank)) + 1)
        fields = [("Coordinates / radius", _coordinates(c, latlon))]
        if analysis != "purely_spatial":
            fields.append(("Time frame", f"{c.time_frame[0]} to {c.time_frame[1]}"))
        if model != "space_time_permutation":
            fields.append(("Population", _population_text(c.population)))
        fields += [("Number of cases", str(c.observed)),
                   ("Expected cases", _number(c.expected)),
                   ("Observed / expected", _number(c.observed_over_expected))]
        if model != "space_time_permutation":
            fields.append(("Relative risk", "infinity" if math.isinf(c.relative_risk)
                           else _number(c.relative_risk)))
        if model == "bernoulli":
            fields.append(("Percent cases in area",
                           _number(100 * c.observed / c.population if c.population else 0.0,
                                   1)))
        fields += [("Test statistic" if model == "space_time_permutation"
                    else "Log likelihood ratio", f"{c.test_statistic:.6f}"),
                   ("P-value", _p_text(c, result.n_permutations))]
        if analysis == "prospective":
            fields.append(("Recurrence interval",
                           _recurrence_text(c.recurrence_interval, result.time_unit)))
        lines += [f"{pad}{label:.<22}: {value}" for label, value in fields] + [""]
    if result.stopped_early:
        note = ("NOTE: The sequential Monte Carlo procedure was used to terminate the "
                f"calculations after {result.n_permutations} replications.")
        lines += textwrap.wrap(note, width=95) + [""]
    lines += [_RULE, "", "PARAMETER SETTINGS", ""]
    settings = dict(result.parameters)
    for key in sorted(settings):
        lines.append(f"  {key:<24}: {settings[key]}")
    if parameters:
        lines += ["", "Parameter file", "--------------"]
        for key in sorted(parameters):
            lines.append(f"  {key} = {parameters[key]}")
    lines += [_RULE, ""]
    return "\n".join(lines)


def write_satscan_report(result: ScanResult, path: str | os.PathLike[str], **options: Any) -> Path:
    """Write :func:`format_satscan_report` atomically to ``path``."""
    target = Path(path)
    with atomic_path(target) as tmp:
        tmp.write_text(format_satscan_report(result, **options), encoding="utf-8")
    return target


# ---------------------------------------------------------------------------- files out
def _day_precision(data: ScanData) -> bool:
    """Whether the intervals are whole days with date labels (else generic time is used)."""
    length = float(data.interval_length)
    if data.time_unit != "day" or length < 1 or length != int(length):
        return False
    try:
        for first, last in (data.interval_labels[0], data.interval_labels[-1]):
            _parse_time(first, 3, "label")
            _parse_time(last, 3, "label")
    except DataError:
        return False
    return True


def _number_text(value: float) -> str:
    return np.format_float_positional(float(value), trim="-")


def _report_type(scan: SpaceTimeScan) -> str:
    """SaTScan's PValueReportType for the scan's p-values (0 always stops early)."""
    if scan.p_values == "gumbel":
        return "3"
    if scan.p_values == "satscan_default":
        return "0"
    return "1" if scan.early_stop is None else "2"


def write_satscan_files(data: ScanData, scan: SpaceTimeScan,
                        prm_path: str | os.PathLike[str]) -> tuple[Path, Path, Path]:
    """Write the scan as SaTScan input: a parameter file and its case and coordinates files.

    ``NAME.prm``, ``NAME.cas`` and ``NAME.geo`` (plus ``NAME.pop`` with each location's
    population for the Poisson model, ``NAME.ctl`` with the controls for Bernoulli) go
    side by side (the parameter file names
    the other two without a folder), so SaTScan can run the same analysis and
    :func:`read_satscan` reads it back to the same data and settings. Intervals of whole
    days are written with day precision (each case dated on the last day of its interval,
    ``TimeAggregationLength`` = days per interval); other intervals as generic time
    (interval numbers). With ``randomization="satscan"`` an integer ``random_state`` is
    written as SaTScan's ``RandomizationSeed``. ``p_values="satscan_default"`` becomes
    ``PValueReportType=0``, which always stops early (at ``early_stop``, else 50).
    Each file is written atomically.

    Parameters
    ----------
    data : ScanData
        The cases and locations.
    scan : SpaceTimeScan
        The settings.
    prm_path : path
        The parameter file to write; the case and coordinates files take its name.

    Returns
    -------
    (Path, Path, Path)
        The parameter, case and coordinates files.

    Raises
    ------
    DataError
        If a location id is empty or holds a space, tab or comma (SaTScan's separators).
    ParameterError
        For settings the scan itself rejects.
    """
    prm = Path(prm_path)
    if prm.suffix.lower() != ".prm":
        raise ParameterError(f"{prm}: the SaTScan parameter file must end in .prm.")
    min_len, max_len = scan._check(data)
    ids = [str(v) for v in data.location_ids]
    for location_id in ids:
        if not location_id or re.search(r"[\s,\"]", location_id):
            raise DataError(f"location id {location_id!r} cannot be written to a SaTScan file "
                            "(it is empty or holds a space, comma or quote); rename the "
                            "locations (e.g. the area units' ids).")
    cas, geo = prm.with_suffix(".cas"), prm.with_suffix(".geo")
    latlon = data.coordinate_system == "latlon"
    day = _day_precision(data)
    agg = int(data.interval_length) if day else 1
    if day:
        start, end = data.interval_labels[0][0], data.interval_labels[-1][1]
        case_times = [last for _, last in data.interval_labels]
    else:
        start, end = "0", str(data.n_intervals - 1)
        case_times = [str(i) for i in range(data.n_intervals)]

    def count_lines(locations: np.ndarray, intervals: np.ndarray) -> list[str]:
        counts: dict[tuple[int, int], int] = {}
        for loc, interval in zip(locations.tolist(), intervals.tolist(), strict=True):
            counts[(loc, interval)] = counts.get((loc, interval), 0) + 1
        return [f"{ids[loc]} {n} {case_times[interval]}"
                for (loc, interval), n in sorted(counts.items(), key=lambda kv: kv[0][::-1])]

    case_lines = count_lines(data.case_location, data.case_interval)
    extra: dict[str, tuple[Path, list[str]]] = {}
    if scan.model == "bernoulli":
        if data.control_location is None or data.control_interval is None:
            raise ParameterError("a Bernoulli scan needs controls; give `data` made with "
                                 "control_location and control_interval.", param="data")
        extra["ControlFile"] = (prm.with_suffix(".ctl"),
                                count_lines(data.control_location, data.control_interval))
    if scan.model == "poisson":
        sizes = data.sizes()
        if not np.allclose(sizes, sizes[0]):
            raise DataError("the intervals differ in length; SaTScan's Poisson model would "
                            "weigh them by their length, which these files cannot carry. "
                            "Use intervals of equal length.")
        extra["PopulationFile"] = (prm.with_suffix(".pop"), [
            f"{location_id} {start} {_number_text(value)}"
            for location_id, value in zip(ids, np.asarray(data.population), strict=True)])
    geo_lines = [f"{location_id} {float(a)!r} {float(b)!r}"
                 for location_id, (a, b) in zip(ids, data.coordinates, strict=True)]

    seed = scan.random_state
    settings = {
        "Input": {
            "CaseFile": cas.name,
            **{key: path.name for key, (path, _) in extra.items()},
            "PrecisionCaseTimes": "3" if day else "4",
            "StartDate": start, "EndDate": end, "CoordinatesFile": geo.name,
            "CoordinatesType": "1" if latlon else "0",
        },
        "Analysis": {
            "AnalysisType": str(_ANALYSIS_CODES[scan.analysis]),
            "ModelType": str(_MODEL_CODES[scan.model]), "ScanAreas": "1",
            "TimeAggregationUnits": "3" if day else "4", "TimeAggregationLength": str(agg),
        },
        "Output": {"ResultsFile": prm.with_suffix(".txt").name},
        "Spatial Window": {
            "MaxSpatialSizeInPopulationAtRisk": _number_text(100 * scan.max_share),
            "UseDistanceFromCenterOption": "n" if scan.max_radius is None else "y",
            "MaxSpatialSizeInDistanceFromCenter": _number_text(
                1 if scan.max_radius is None else scan.max_radius),
            "IncludePurelyTemporal": "n", "SpatialWindowShapeType": "0",
        },
        "Temporal Window": {
            "MinimumTemporalClusterSize": str(min_len * agg),
            "MaxTemporalSizeInterpretation": "1", "MaxTemporalSize": str(max_len * agg),
            "IncludePurelySpatial": "n",
        },
        "Cluster Restrictions": {"MinimumCasesInHighRateClusters": str(int(scan.min_cases))},
        "Inference": {
            "PValueReportType": _report_type(scan),
            "EarlyTerminationThreshold": str(50 if scan.early_stop is None
                                             else int(scan.early_stop)),
            "MonteCarloReps": str(int(scan.n_permutations)),
            "AdjustForEarlierAnalyses": "n", "ProspectiveStartDate": end,
        },
        "Spatial Output": {"CriteriaForReportingSecondaryClusters": "0"},
        "Run Options": ({"RandomizationSeed": str(int(seed))}  # type: ignore[arg-type]
                        if scan.randomization == "satscan" and seed is not None else {}),
    }
    prm_lines = [f"; written by placecast for SaTScan ({scan.analysis.replace('_', ' ')}, "
                 f"{scan.model.replace('_', ' ')} model)"]
    for section, values in settings.items():
        if values:
            prm_lines += ["", f"[{section}]", *(f"{k}={v}" for k, v in values.items())]
    for path, lines in ((cas, case_lines), *extra.values(), (geo, geo_lines),
                        (prm, prm_lines)):
        with atomic_path(path) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return prm, cas, geo
