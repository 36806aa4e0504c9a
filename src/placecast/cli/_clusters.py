"""Cluster commands: ``scan``, ``nearrepeat``, ``knox``, ``hotspots`` and ``watch``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from placecast.cli._app import (
    command,
    console,
    err_console,
    load_events,
    print_table,
    with_event_options,
)
from placecast.cli._regions import ByIdOpt, ByOpt
from placecast.exceptions import ParameterError

__all__: list[str] = []

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (reproducible "
                                             "permutations).")]
PermutationsOpt = Annotated[int | None, typer.Option("--permutations", help="Monte Carlo "
                                                     "replications.")]


def _days_option(text: str | None, name: str) -> float | None:
    """An option whose name says days: a bare number is days, units are accepted too."""
    from placecast.quantities import parse_duration

    if text is None:
        return None
    duration = parse_duration(text, name=name, bare="d")
    if duration.unit == "M":
        raise ParameterError(f"{name} {text!r}: months differ in length; give days or weeks "
                             "(e.g. 90d, 13w).")
    return duration.amount


def _write_text(path: Path, text: str) -> None:
    from placecast.io._atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _print_scan(result: Any) -> None:
    table = Table(title=f"{result.analysis.replace('_', ' ')} "
                  f"{result.model.replace('_', ' ')} scan: {result.n_cases} cases, "
                  f"{result.n_locations} locations, {result.n_permutations} replications")
    for column in ("#", "locations", "time frame", "obs", "exp", "LLR", "p", "RI"):
        table.add_column(column, justify="left" if column in ("locations", "time frame")
                         else "right")
    for c in result.clusters:
        ids = ", ".join(c.location_ids[:4]) + (f" +{len(c.location_ids) - 4}"
                                               if len(c.location_ids) > 4 else "")
        table.add_row(str(c.rank), ids, f"{c.time_frame[0]} to {c.time_frame[1]}",
                      str(c.observed), f"{c.expected:.2f}", f"{c.test_statistic:.6f}",
                      "n/a" if math.isnan(c.p_value) else f"{c.p_value:.3f}",
                      "-" if math.isnan(c.recurrence_interval)
                      else f"{c.recurrence_interval:.1f}")
    print_table(table)


@command("scan")
@with_event_options
def scan_command(
    events_path: Annotated[Path | None, typer.Argument(
        help="Events file (omit with --satscan).", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Output folder: report.txt "
                                         "(SaTScan layout), clusters.geojson, clusters.csv, "
                                         "result.json.")] = Path("scan-results"),
    satscan: Annotated[Path | None, typer.Option("--satscan", help="Run a SaTScan parameter "
                                                 "file (.prm) as given.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a .prm setting, "
                                                   "KEY=VALUE (repeatable).")] = None,
    permutations: PermutationsOpt = None,
    seed: SeedOpt = None,
    jobs: Annotated[int | None, typer.Option("--jobs", help="Threads for replications "
                                             "(default all cores).")] = None,
    randomization: Annotated[str | None, typer.Option(
        "--randomization", help="Replications: 'satscan' (SaTScan's own generator and "
        "seeds, reproduces its p-values; default with --satscan) or 'numpy' (independent "
        "permutations; default for EVENTS).")] = None,
    p_values: Annotated[str | None, typer.Option(
        "--p-values", help="monte_carlo (ranks; default for EVENTS), satscan_default "
        "(Gumbel for clusters fewer than 9 replications beat, as SaTScan; default with "
        "--satscan, from PValueReportType) or gumbel.")] = None,
    export_satscan: Annotated[Path | None, typer.Option(
        "--export-satscan", help="Also write the analysis as SaTScan input: FILE.prm with "
        "FILE.cas and FILE.geo beside it (run it in SaTScan, or here with --satscan).")]
    = None,
    cell: Annotated[str | None, typer.Option("--cell", help="Events -> locations: centroids "
                                             "of square cells of this size (e.g. 250m).")]
    = None,
    round_to: Annotated[str | None, typer.Option("--round", help="Events -> locations: "
                                                 "coordinates rounded to this spacing "
                                                 "(e.g. 50m). Default exact coordinates.")]
    = None,
    interval: Annotated[str, typer.Option("--interval", help="Time interval length: 1d, 7d, "
                                          "12h, 1M (calendar months).")] = "1d",
    study_days: Annotated[str | None, typer.Option("--study-days", help="Study period before "
                                                   "--at: days, or with a unit (13w). Default "
                                                   "all.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Analysis time: the study period "
                                           "ends just before it (default: the day after the "
                                           "last event).")] = None,
    max_days: Annotated[str, typer.Option("--max-days", help="Longest time window: days, or "
                                          "with a unit (2w).")] = "7",
    max_radius: Annotated[str | None, typer.Option("--max-radius", help="Largest circle "
                                                   "radius, e.g. 1km.")] = None,
    max_share: Annotated[float, typer.Option("--max-share", help="Largest share of cases in a "
                                             "circle (<= 0.5).")] = 0.5,
    model: Annotated[str, typer.Option(
        "--model", help="EVENTS: space_time_permutation (default), poisson (needs "
        "--population) or bernoulli (cases = --case-categories, controls = the other "
        "events).")] = "space_time_permutation",
    analysis: Annotated[str, typer.Option(
        "--analysis", help="EVENTS: prospective (windows ending at --at; default), "
        "retrospective (every window in the study period) or purely_spatial "
        "(bernoulli only).")] = "prospective",
    population: Annotated[Path | None, typer.Option(
        "--population", help="With --model poisson: CSV of unit id (first column) and "
        "population (second column), for the --cell or --units-file units; every listed "
        "unit is a location.")] = None,
    units_file: Annotated[Path | None, typer.Option(
        "--units-file", help="EVENTS -> locations: polygons (beats, tracts; any vector "
        "format) instead of --cell squares.")] = None,
    units_id: Annotated[str | None, typer.Option("--units-id", help="Id column of "
                                                 "--units-file.")] = None,
    case_categories: Annotated[str | None, typer.Option(
        "--case-categories", help="With --model bernoulli: comma-separated categories "
        "that are cases; every other event is a control.")] = None,
    by: ByOpt = None,
    by_id: ByIdOpt = None,
    dask: Annotated[str | None, typer.Option("--dask", help="With --by: run the regions on "
                                             "Dask, 'local' or tcp://host:port.")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Space-time scan statistics (Kulldorff), SaTScan-compatible.

    With --satscan FILE.prm the parameter file runs as given (prospective or
    retrospective space-time, or purely spatial; space-time permutation, discrete
    Poisson or Bernoulli model; its input files are looked up beside it when their paths
    do not exist). Otherwise EVENTS become locations (cell centroids with --cell, rounded
    coordinates with --round, else exact coordinates) and daily intervals ending at --at.
    """
    from placecast.clusters import (
        SpaceTimeScan,
        format_satscan_report,
        read_satscan,
        scan_data_from_events,
    )
    from placecast.quantities import parse_duration, parse_length

    if by is not None:
        given = [name for name, value in (
            ("--satscan", satscan), ("--export-satscan", export_satscan),
            ("--population", population), ("--units-file", units_file),
            ("--case-categories", case_categories)) if value is not None]
        if given:
            raise ParameterError(f"--by scans each region on its own from EVENTS; drop "
                                 f"{', '.join(given)}.")
        step_days = parse_duration(interval, name="--interval").days
        study = _days_option(study_days, "--study-days")
        longest = _days_option(max_days, "--max-days") or 0.0
        scan_options = dict(
            max_share=max_share,
            max_radius=parse_length(max_radius, name="--max-radius") if max_radius else None,
            max_intervals=max(1, int(longest / step_days)),
            n_permutations=999 if permutations is None else permutations,
            random_state=seed, n_jobs=1, randomization=randomization or "numpy",
            p_values=p_values or "monte_carlo", model=model, analysis=analysis)
        _scan_by_region(events_path, output, by=by, by_id=by_id, dask=dask, jobs=jobs,
                        event_options=event_options, cell=cell, params=dict(
                            at=at, interval=interval,
                            n_intervals=int(round(study / step_days)) if study else None,
                            round_to=parse_length(round_to, name="--round") if round_to
                            else None, scan=scan_options))
        return
    if dask is not None:
        raise ParameterError("--dask runs regions in parallel; it needs --by.")
    prm_settings = None
    if satscan is not None:
        if events_path is not None:
            raise ParameterError("give either EVENTS or --satscan FILE.prm, not both.")
        overrides = {}
        for item in set_ or []:
            if "=" not in item:
                raise ParameterError(f"--set {item!r} must look like KEY=VALUE.")
            key, value = item.split("=", 1)
            overrides[key.strip()] = value.strip()
        run = read_satscan(satscan, overrides=overrides, n_permutations=permutations,
                           random_state=seed, n_jobs=jobs,
                           randomization=randomization, p_values=p_values)
        data, scan = run.data, run.scan
        prm_settings = run.parameters
    else:
        if events_path is None:
            raise ParameterError("give an EVENTS file or --satscan FILE.prm.")
        if (model == "poisson") != (population is not None):
            raise ParameterError("--model poisson and --population go together: the Poisson "
                                 "model needs the population of every location (a CSV of "
                                 "unit id and population).")
        if (model == "bernoulli") != (case_categories is not None):
            raise ParameterError("--model bernoulli and --case-categories go together: the "
                                 "listed categories are the cases, the other events the "
                                 "controls.")
        events = load_events(events_path, **(event_options or {}))
        cases = None
        if case_categories is not None:
            if events.category is None:
                raise ParameterError("--case-categories needs event categories; map the "
                                     "category column with --category.")
            wanted = {c.strip() for c in case_categories.split(",") if c.strip()}
            present = set(np.unique(events.category.astype(str)))
            if not wanted & present:
                raise ParameterError(f"--case-categories {case_categories!r}: none of these "
                                     f"categories occurs; the events have "
                                     f"{', '.join(sorted(present)[:10])}.")
            cases = np.isin(events.category.astype(str), sorted(wanted))
        units = None
        if cell and units_file:
            raise ParameterError("give --cell (square cells) or --units-file (polygons), not "
                                 "both.")
        if cell or units_file:
            from placecast.pipeline import UnitSpec, build_units

            spec = (UnitSpec(kind="polygons", polygons=units_file, id_column=units_id)
                    if units_file or cell is None
                    else UnitSpec(cell_size=parse_length(cell, name="--cell")))
            units = build_units(events, spec)
        unit_population = None
        if population is not None:
            if units is None:
                raise ParameterError("--population gives a population per area unit: add "
                                     "--cell or --units-file.")
            unit_population = _read_population_csv(population)
        from placecast.quantities import parse_duration

        step_days = parse_duration(interval, name="--interval").days
        study = _days_option(study_days, "--study-days")
        longest = _days_option(max_days, "--max-days") or 0.0
        data = scan_data_from_events(
            events, at=at, interval=interval, units=units,
            n_intervals=int(round(study / step_days)) if study else None,
            round_to=parse_length(round_to, name="--round") if round_to else None,
            cases=cases, population=unit_population)
        scan = SpaceTimeScan(
            max_share=max_share,
            max_radius=parse_length(max_radius, name="--max-radius") if max_radius else None,
            max_intervals=max(1, int(longest / step_days)),
            n_permutations=999 if permutations is None else permutations,
            random_state=seed, n_jobs=jobs, randomization=randomization or "numpy",
            p_values=p_values or "monte_carlo", model=model, analysis=analysis)
    if export_satscan is not None:
        from placecast.clusters import write_satscan_files

        written = write_satscan_files(data, scan, export_satscan)
        console.print("wrote SaTScan input " + ", ".join(str(p) for p in written))
    from placecast.cli._progress import progress_bar

    with progress_bar(f"scan of {data.n_cases} cases at {data.n_locations} locations: "
                      "replications") as bar:
        result = scan.run(data, progress=bar)
    output.mkdir(parents=True, exist_ok=True)
    _write_text(output / "report.txt", format_satscan_report(result, parameters=prm_settings))
    _write_text(output / "clusters.geojson", json.dumps(result.to_geojson(), indent=1))
    _write_text(output / "clusters.csv", result.to_frame().to_csv(index=False))
    _write_text(output / "result.json", json.dumps(result.to_dict(), indent=1, default=str))
    _print_scan(result)
    console.print(f"wrote {output}/report.txt, clusters.geojson, clusters.csv, result.json")


def _scan_by_region(events_path: Any, output: Path, *, by: str, by_id: str | None,
                    dask: str | None, jobs: int | None, event_options: Any,
                    cell: str | None, params: dict[str, Any]) -> None:
    """``scan --by``: one scan per region; all clusters in ``output/clusters.csv``."""
    from placecast.cli._regions import run_regions
    from placecast.pipeline import UnitSpec
    from placecast.quantities import parse_length

    unit_spec = UnitSpec(cell_size=parse_length(cell, name="--cell")) if cell else None
    table = run_regions("scan", events_path, by=by, by_id=by_id, event_options=event_options,
                        output=output, params=params, unit_spec=unit_spec, dask=dask,
                        jobs=jobs or 2)
    output.mkdir(parents=True, exist_ok=True)
    _write_text(output / "clusters.csv", table.to_csv(index=False))
    significant = table[table.p_value < 0.05] if len(table) else table
    console.print(f"{len(table):,} clusters in {table.region.nunique() if len(table) else 0} "
                  f"regions, {len(significant):,} with p < 0.05")
    console.print(f"wrote {output}/clusters.csv")


def _read_population_csv(path: Path) -> dict[str, float]:
    """``{unit id: population}`` from a CSV whose first two columns are id and population."""
    import pandas as pd

    from placecast.exceptions import DataError

    if not path.is_file():
        raise DataError(f"population file {path} does not exist.")
    frame = pd.read_csv(path, dtype={0: str})
    if frame.shape[1] < 2:
        raise DataError(f"{path}: expected two columns, unit id and population, with a "
                        "header line.")
    ids = frame.iloc[:, 0].astype(str)
    values = pd.to_numeric(frame.iloc[:, 1], errors="coerce")
    bad = values.isna() | (values < 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path} row {row + 2}, column {frame.columns[1]!r}: "
                        f"{frame.iloc[row, 1]!r} is not a population (a number >= 0).")
    if ids.duplicated().any():
        raise DataError(f"{path}: unit {ids[ids.duplicated()].iloc[0]!r} appears twice; give "
                        "one population per unit.")
    return dict(zip(ids, values.astype(float), strict=True))


def _days(events: Any) -> np.ndarray:
    return events.days_since(events.start)


@command("nearrepeat")
@with_event_options
def nearrepeat_command(
    events_path: Annotated[Path, typer.Argument(help="Events file.", show_default=False)],
    distance_bands: Annotated[str, typer.Option(
        "--distance-bands", help="Distance band edges with units, comma-separated, e.g. "
        "0,100m,200m,300m; end with 300m+ (or ,inf) for an open 'more than 300 m' band "
        "(calculator convention: start with 0,0 for 'same location').")],
    time_bands: Annotated[str, typer.Option(
        "--time-bands", help="Time band edges with units, e.g. 0,7d,14d,21d; end with 21d+ (or "
        ",inf) for an open 'more than 21 days' band.")],
    metric: Annotated[str, typer.Option("--metric", help="euclidean or manhattan.")]
    = "euclidean",
    convention: Annotated[str, typer.Option(
        "--convention", help="half-open (band [a, b), labelled 'a to <b') or calculator "
        "(Ratcliffe's Near Repeat Calculator: its 'a to b' is [a-1, b), 'same location' is "
        "distance 0).")] = "half-open",
    permutations: PermutationsOpt = 99,
    seed: SeedOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the table as "
                                                "CSV.")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Near-repeat analysis: observed vs expected pairs per distance x time band.

    The Near Repeat Calculator's table with bandwidths 100 m and 7 days, 3 bands each:
    --distance-bands 0,0,100m,200m,300m+ --time-bands 0,7d,14d,21d+ --convention calculator
    --metric manhattan (its 20 iterations are --permutations 19).
    """
    from placecast.clusters import band_edges, near_repeat

    d_edges = band_edges(distance_bands, kind="distance", name="distance_bands")
    t_edges = band_edges(time_bands, kind="time", name="time_bands")
    events = load_events(events_path, **(event_options or {}))
    days = _days(events)
    if convention == "calculator":
        days = np.floor(days)
    result = near_repeat(events.x, events.y, days, distance_bands=d_edges,
                         time_bands=t_edges, metric=metric, convention=convention,
                         n_permutations=permutations or 99, random_state=seed)
    frame = result.to_frame()
    table = Table(title=f"near-repeat pairs ({result.n_events} events, "
                  f"{result.n_permutations} permutations)")
    for column in ("distance (m)", "days", "observed", "expected", "obs/exp", "p"):
        table.add_column(column, justify="right")
    for row in frame.itertuples():
        table.add_row(str(row.distance_band), str(row.time_band), str(row.observed),
                      f"{row.expected:.1f}", f"{row.ratio:.2f}", f"{row.p_value:.3f}")
    print_table(table)
    console.print(result.summary())
    if output is not None:
        _write_text(output, frame.to_csv(index=False))
        console.print(f"wrote {output}")


@command("knox")
@with_event_options
def knox_command(
    events_path: Annotated[Path, typer.Argument(help="Events file.", show_default=False)],
    distance: Annotated[str, typer.Option("--distance", help="Close in space: at most this "
                                          "far, e.g. 20km.")],
    days: Annotated[str, typer.Option("--days", help="Close in time: at most this many "
                                      "days apart (or with a unit: 2w).")],
    metric: Annotated[str, typer.Option("--metric", help="euclidean or manhattan.")]
    = "euclidean",
    permutations: PermutationsOpt = 0,
    seed: SeedOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Global Knox test of space-time interaction (2x2 table, Poisson p-value)."""
    from placecast.clusters import knox_test
    from placecast.quantities import parse_length

    close_days = _days_option(days, "--days")
    assert close_days is not None  # --days is a required option
    events = load_events(events_path, **(event_options or {}), quiet=as_json)
    result = knox_test(events.x, events.y, _days(events),
                       distance=parse_length(distance, name="--distance"), time=close_days,
                       metric=metric, n_permutations=permutations or 0, random_state=seed)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=f"Knox test: {result.n_pairs:,} pairs, close = within {distance} "
                  f"and {close_days:g} days")
    for column in ("", "close in time", "not close in time"):
        table.add_column(column, justify="right")
    for a, label in enumerate(("close in space", "not close in space")):
        table.add_row(label, *(f"{result.table[a, b]} ({result.expected[a, b]:.2f})"
                               for b in range(2)))
    print_table(table)
    console.print(f"close-close pairs {result.statistic}, expected "
                  f"{result.expected[0, 0]:.4f}; Poisson p = {result.p_value_poisson:.6g}"
                  + (f"; permutation p = {result.p_value_permutation:.4f}"
                     if result.n_permutations else ""))


@command("hotspots")
@with_event_options
def hotspots_command(
    events_path: Annotated[Path, typer.Argument(help="Events file.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Map-ready output: .geojson, "
                                         ".gpkg or .csv.")],
    cell: Annotated[str, typer.Option("--cell", help="Square cell size, e.g. 500m.")]
    = "500m",
    region: Annotated[Path | None, typer.Option("--region", help="Region polygon file.")]
    = None,
    step: Annotated[str, typer.Option("--step", help="Time step: 7d, 30d, or 1M for "
                                      "calendar months.")] = "30d",
    cube_start: Annotated[str | None, typer.Option(
        "--cube-start", help="Cube origin: start of the first step (e.g. 2012-03-01); "
        "steps are laid forward from it. Default: laid back from the end (calendar "
        "months: from the first day of the month after the last event).")] = None,
    n_steps: Annotated[int | None, typer.Option("--n-steps", help="Number of time steps "
                                                "(default: all that hold events).")]
    = None,
    rules: Annotated[str, typer.Option(
        "--rules", help="Pattern rules: arcgis (ArcGIS Pro's definitions) or sfdep (R "
        "sfdep's classify_hotspot). sfdep also switches the defaults below to sfdep's: "
        "per-slice Gi* with permutations, queen neighbours, alpha 0.01, no FDR, empty "
        "cells dropped.")] = "arcgis",
    gi: Annotated[str | None, typer.Option(
        "--gi", help="Gi*: cube (whole-cube mean and deviation, normal p-values; arcgis "
        "default) or slice (per time slice, permutation p-values; sfdep default).")] = None,
    neighbours: Annotated[str | None, typer.Option(
        "--neighbours", help="distance (cells within --distance; arcgis default) or queen "
        "(cells sharing an edge or corner; sfdep default). The cell itself is included.")]
    = None,
    distance: Annotated[str, typer.Option("--distance", help="Neighbourhood radius for "
                                          "distance neighbours, e.g. 1km.")] = "1km",
    time_steps: Annotated[int, typer.Option("--time-steps", help="Earlier steps in the "
                                            "neighbourhood (sfdep's k).")] = 1,
    alpha: Annotated[float | None, typer.Option(
        "--alpha", help="Significance level of bins and trends (default 0.1 arcgis, 0.01 "
        "sfdep).")] = None,
    fdr: Annotated[bool | None, typer.Option(
        "--fdr/--no-fdr", help="False discovery rate correction of the bins (default: on "
        "for arcgis, off for sfdep).")] = None,
    empty_cells: Annotated[str | None, typer.Option(
        "--empty-cells", help="keep or drop cells with no event in any step (default: keep "
        "for arcgis, drop for sfdep).")] = None,
    permutations: Annotated[int, typer.Option("--permutations", help="Permutations of the "
                                              "per-slice Gi*.")] = 199,
    runs: Annotated[int | None, typer.Option(
        "--runs", help="With the per-slice Gi*: classify this many times with independent "
        "permutations and keep each cell's most frequent pattern (1 = one sfdep run; "
        "default 5 with the per-slice Gi*, 1 otherwise).")]
    = None,
    seed: SeedOpt = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Emerging hot spot analysis: Gi* in a space-time cube, trends, ArcGIS or sfdep patterns.

    Like R sfdep's emerging_hotspot_analysis on a monthly cube:
    --step 1M --cube-start 2012-03-01 --n-steps 60 --rules sfdep.
    """
    from placecast.clusters import (
        HOTSPOT_FORMATS,
        SpaceTimeCube,
        emerging_hot_spots,
        write_hotspots,
    )
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    if output.suffix.lower() not in HOTSPOT_FORMATS:
        raise ParameterError(f"{output}: use .geojson, .gpkg or .csv.")
    if rules not in ("arcgis", "sfdep"):
        raise ParameterError(f"--rules must be arcgis or sfdep, got {rules!r}.")
    if empty_cells not in (None, "keep", "drop"):
        raise ParameterError(f"--empty-cells must be keep or drop, got {empty_cells!r}.")
    drop = (rules == "sfdep") if empty_cells is None else empty_cells == "drop"
    # five runs' most frequent pattern agrees more often with any one sfdep run than a
    # single run does (seed-to-seed agreement 0.89-0.92 for one run, 0.91-0.94 for five)
    per_slice = (gi or ("slice" if rules == "sfdep" else "cube")) == "slice"
    n_runs = runs if runs is not None else (5 if per_slice else 1)
    events = load_events(events_path, **(event_options or {}))
    units = build_units(events, UnitSpec(cell_size=parse_length(cell, name="--cell"),
                                         region=region))
    cube = SpaceTimeCube.from_events(events, units, step=step, n_steps=n_steps,
                                     start=cube_start, drop_empty=drop)
    with console.status(f"emerging hot spots: {cube.n_units} cells x {cube.n_steps} steps..."):
        result = emerging_hot_spots(
            cube, distance=parse_length(distance, name="--distance"), time_steps=time_steps,
            alpha=alpha, fdr=fdr, rules=rules, gi=gi, neighbours=neighbours,
            n_permutations=permutations, random_state=seed, n_runs=n_runs)
    write_hotspots(result, output)
    settings = result.parameters
    first = np.datetime_as_string(cube.step_edges[0], unit="D")
    last = np.datetime_as_string(cube.step_edges[-1], unit="D")
    table = Table(title=f"emerging hot spots ({rules} rules): {cube.n_units} cells x "
                  f"{cube.n_steps} steps of {step}, {first} to {last}")
    table.add_column("pattern")
    table.add_column("cells", justify="right")
    for name, n in sorted(result.counts().items(), key=lambda kv: -kv[1]):
        table.add_row(name, str(n))
    print_table(table)
    dropped = units.n_units - cube.n_units
    console.print(f"Gi* {settings['gi']}, {settings['neighbours']} neighbours, time lag "
                  f"{settings['time_steps']}, alpha {settings['alpha']:g}, FDR "
                  f"{'on' if settings['fdr'] else 'off'}"
                  + (f", {settings['n_permutations']} permutations"
                     if settings["n_permutations"] else "")
                  + (f", most frequent pattern of {settings['n_runs']} runs"
                     if settings["n_runs"] > 1 else "")
                  + (f"; {dropped} cells without events left out" if dropped else ""))
    console.print(f"wrote {output}")


@command("watch")
def watch_command(
    config: Annotated[Path, typer.Argument(help="Watch configuration (.json or .toml).",
                                           show_default=False)],
    once: Annotated[bool, typer.Option("--once", help="Run one check and stop.")] = False,
    interval: Annotated[str | None, typer.Option("--interval", help="Time between runs with "
                                                 "a unit: 30s, 5min, 1h.")] = None,
    max_runs: Annotated[int | None, typer.Option("--max-runs", help="Stop after this many "
                                                 "runs (needed with --interval).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run the check even if the events "
                                        "did not change.")] = False,
) -> None:
    """Run a configured cluster check and send one alert per new cluster.

    Alerts go to the configured sinks (stdout JSON lines, a file, an HTTP webhook with
    retries and a timeout); a cluster is not sent again while it persists; failed
    deliveries wait in an outbox file and are retried on the next run.
    """
    from placecast.alerting import Watcher, load_watch_config

    if once and (interval is not None or (max_runs or 1) > 1):
        raise ParameterError("--once runs a single check; drop --interval/--max-runs.")
    if interval is not None and max_runs is None:
        raise ParameterError("--interval needs --max-runs N (watch runs are bounded).")
    seconds = None
    if interval is not None:
        seconds = 0.0 if interval.strip().replace(".", "", 1).strip("0") == "" else (
            _interval_seconds(interval))
    watcher = Watcher(load_watch_config(config))

    def show(report: Any) -> None:  # on stderr: stdout carries the alerts (stdout sink)
        summary = report.to_dict()
        table = Table(title="watch run", show_header=False)
        table.add_row("check ran", "yes" if summary["ran_check"] else
                      "no (events unchanged; --force to run anyway)")
        table.add_row("signals", str(summary["n_signals"]))
        table.add_row("new alerts", ", ".join(map(str, summary["new_alerts"])) or "none")
        table.add_row("delivered", str(summary["delivered"]))
        table.add_row("queued in outbox", str(summary["queued"]))
        print_table(table, to=err_console)
        for message in report.errors:
            err_console.print(f"[yellow]delivery failed (kept in outbox): {message}[/yellow]",
                              highlight=False)

    watcher.run(interval=seconds, max_runs=max_runs or 1, force=force, on_report=show)


def _interval_seconds(text: str) -> float:
    """``watch --interval`` in seconds (``30s``, ``5min``, ``1h``)."""
    from placecast.quantities import parse_duration

    duration = parse_duration(text, name="--interval")
    if duration.unit == "M":
        raise ParameterError(f"--interval {text!r}: give a fixed time such as 30s, 5min or 1h.")
    return duration.amount * 86400.0
