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
from placecast.exceptions import ParameterError

__all__: list[str] = []

SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (reproducible "
                                             "permutations).")]
PermutationsOpt = Annotated[int | None, typer.Option("--permutations", help="Monte Carlo "
                                                     "replications.")]


def _numbers(text: str, name: str, lengths: bool = False) -> list[float]:
    from placecast.quantities import parse_length

    def one(value: str) -> float:
        value = value.strip()
        if not lengths or value.replace(".", "", 1).strip("0") == "":
            return float(value)  # plain numbers; "0" is a valid first edge
        return parse_length(value, name=name)

    try:
        return [one(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{name} {text!r} must be comma-separated numbers, e.g. "
                             "0,100,200.") from None


def _write_text(path: Path, text: str) -> None:
    from placecast.io._atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _print_scan(result: Any) -> None:
    table = Table(title=f"space-time permutation scan: {result.n_cases} cases, "
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
                      f"{c.recurrence_interval:.1f}")
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
                                          "12h.")] = "1d",
    study_days: Annotated[float | None, typer.Option("--study-days", help="Study period, "
                                                     "days before --at (default all).")] = None,
    at: Annotated[str | None, typer.Option("--at", help="Analysis time: the study period "
                                           "ends just before it (default: the day after the "
                                           "last event).")] = None,
    max_days: Annotated[float, typer.Option("--max-days", help="Longest time window, days.")]
    = 7.0,
    max_radius: Annotated[str | None, typer.Option("--max-radius", help="Largest circle "
                                                   "radius, e.g. 1km.")] = None,
    max_share: Annotated[float, typer.Option("--max-share", help="Largest share of cases in a "
                                             "circle (<= 0.5).")] = 0.5,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Prospective space-time permutation scan (Kulldorff 2005), SaTScan-compatible.

    With --satscan FILE.prm the parameter file runs as given (its input files are looked
    up beside it when their paths do not exist). Otherwise EVENTS become locations (cell
    centroids with --cell, rounded coordinates with --round, else exact coordinates) and
    daily intervals ending at --at.
    """
    import pandas as pd

    from placecast.clusters import SpaceTimeScan, scan_data_from_events
    from placecast.io._satscan import format_satscan_report, read_satscan
    from placecast.quantities import parse_length

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
                           randomization=randomization or "satscan", p_values=p_values)
        data, scan = run.data, run.scan
        prm_settings = run.parameters
    else:
        if events_path is None:
            raise ParameterError("give an EVENTS file or --satscan FILE.prm.")
        events = load_events(events_path, **(event_options or {}))
        units = None
        if cell:
            from placecast.pipeline import UnitSpec, build_units

            units = build_units(events, UnitSpec(cell_size=parse_length(cell, name="--cell")))
        from placecast.clusters._scan import parse_step

        step_days = parse_step(interval) / pd.Timedelta("1D")
        data = scan_data_from_events(
            events, at=at, interval=interval, units=units,
            n_intervals=int(round(study_days / step_days)) if study_days else None,
            round_to=parse_length(round_to, name="--round") if round_to else None)
        scan = SpaceTimeScan(
            max_share=max_share,
            max_radius=parse_length(max_radius, name="--max-radius") if max_radius else None,
            max_intervals=max(1, int(max_days / step_days)),
            n_permutations=999 if permutations is None else permutations,
            random_state=seed, n_jobs=jobs, randomization=randomization or "numpy",
            p_values=p_values or "monte_carlo")
    if export_satscan is not None:
        from placecast.io._satscan import write_satscan_files

        written = write_satscan_files(data, scan, export_satscan)
        console.print("wrote SaTScan input " + ", ".join(str(p) for p in written))
    with console.status(f"scanning {data.n_cases} cases at {data.n_locations} locations..."):
        result = scan.run(data)
    output.mkdir(parents=True, exist_ok=True)
    _write_text(output / "report.txt", format_satscan_report(result, parameters=prm_settings))
    _write_text(output / "clusters.geojson", json.dumps(result.to_geojson(), indent=1))
    _write_text(output / "clusters.csv", result.to_frame().to_csv(index=False))
    _write_text(output / "result.json", json.dumps(result.to_dict(), indent=1, default=str))
    _print_scan(result)
    console.print(f"wrote {output}/report.txt, clusters.geojson, clusters.csv, result.json")


def _days(events: Any) -> np.ndarray:
    return events.days_since(events.start)


@command("nearrepeat")
@with_event_options
def nearrepeat_command(
    events_path: Annotated[Path, typer.Argument(help="Events file.", show_default=False)],
    distance_bands: Annotated[str, typer.Option(
        "--distance-bands", help="Distance band edges with units, comma-separated, e.g. "
        "0,100m,200m,300m (calculator convention: start with 0,0 for 'same location').")],
    time_bands: Annotated[str, typer.Option("--time-bands", help="Time band edges in days, "
                                            "e.g. 0,7,14,21.")],
    metric: Annotated[str, typer.Option("--metric", help="euclidean or manhattan.")]
    = "euclidean",
    convention: Annotated[str, typer.Option("--convention", help="half-open ([a, b)) or "
                                            "calculator (the Near Repeat Calculator's "
                                            "inclusive bands).")] = "half-open",
    permutations: PermutationsOpt = 99,
    seed: SeedOpt = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the table as "
                                                "CSV.")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Near-repeat analysis: observed vs expected pairs per distance x time band."""
    from placecast.clusters import near_repeat

    events = load_events(events_path, **(event_options or {}))
    days = _days(events)
    if convention == "calculator":
        days = np.floor(days)
    result = near_repeat(events.x, events.y, days,
                         distance_bands=_numbers(distance_bands, "--distance-bands", True),
                         time_bands=_numbers(time_bands, "--time-bands"), metric=metric,
                         convention=convention, n_permutations=permutations or 99,
                         random_state=seed)
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
    days: Annotated[float, typer.Option("--days", help="Close in time: at most this many "
                                        "days apart.")],
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

    events = load_events(events_path, **(event_options or {}), quiet=as_json)
    result = knox_test(events.x, events.y, _days(events),
                       distance=parse_length(distance, name="--distance"), time=days,
                       metric=metric, n_permutations=permutations or 0, random_state=seed)
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    table = Table(title=f"Knox test: {result.n_pairs:,} pairs, close = within {distance} "
                  f"and {days:g} days")
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
    step: Annotated[str, typer.Option("--step", help="Time step: 7d, 30d.")] = "30d",
    n_steps: Annotated[int | None, typer.Option("--n-steps", help="Time steps back from the "
                                                "end (default: all).")] = None,
    distance: Annotated[str, typer.Option("--distance", help="Neighbourhood radius, e.g. "
                                          "1km.")] = "1km",
    time_steps: Annotated[int, typer.Option("--time-steps", help="Earlier steps in the "
                                            "neighbourhood.")] = 1,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level (after FDR).")]
    = 0.1,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Emerging hot spot analysis: Gi* in a space-time cube, trends, ESRI's patterns."""
    from placecast.clusters import SpaceTimeCube, emerging_hot_spots
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    suffix = output.suffix.lower()
    if suffix not in (".geojson", ".gpkg", ".csv"):
        raise ParameterError(f"{output}: use .geojson, .gpkg or .csv.")
    events = load_events(events_path, **(event_options or {}))
    units = build_units(events, UnitSpec(cell_size=parse_length(cell, name="--cell"),
                                         region=region))
    cube = SpaceTimeCube.from_events(events, units, step=step, n_steps=n_steps)
    result = emerging_hot_spots(cube, distance=parse_length(distance, name="--distance"),
                                time_steps=time_steps, alpha=alpha)
    from placecast.io._atomic import atomic_path

    with atomic_path(output) as tmp:
        if suffix == ".csv":
            result.to_frame().to_csv(tmp, index=False)
        else:
            gdf = result.to_geodataframe()
            gdf.to_file(tmp, driver="GeoJSON" if suffix == ".geojson" else "GPKG")
    table = Table(title=f"emerging hot spots: {cube.n_units} units x {cube.n_steps} steps "
                  f"of {step}")
    table.add_column("pattern")
    table.add_column("units", justify="right")
    for name, n in sorted(result.counts().items(), key=lambda kv: -kv[1]):
        table.add_row(name, str(n))
    print_table(table)
    console.print(f"wrote {output}")


@command("watch")
def watch_command(
    config: Annotated[Path, typer.Argument(help="Watch configuration (.json or .toml).",
                                           show_default=False)],
    once: Annotated[bool, typer.Option("--once", help="Run one check and stop.")] = False,
    interval: Annotated[float | None, typer.Option("--interval", help="Seconds between "
                                                   "runs.")] = None,
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
    from placecast.clusters._alerts import Watcher, load_watch_config

    if once and (interval is not None or (max_runs or 1) > 1):
        raise ParameterError("--once runs a single check; drop --interval/--max-runs.")
    if interval is not None and max_runs is None:
        raise ParameterError("--interval needs --max-runs N (watch runs are bounded).")
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

    watcher.run(interval=interval, max_runs=max_runs or 1, force=force, on_report=show)
