"""``placecast backtest`` and ``placecast tune``: honest evaluation from the command line."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from placecast.cli._app import (
    EventsPath,
    command,
    console,
    err_console,
    load_events,
    print_table,
    with_event_options,
)
from placecast.cli._core import (
    CovariateOpt,
    RegionOpt,
    RotationOpt,
    UnitsOpt,
    add_covariates,
    build_units_reported,
    parse_params,
    unit_spec_from_options,
    with_unit_options,
)
from placecast.cli._progress import progress_bar
from placecast.cli._regions import ByIdOpt, ByOpt
from placecast.evaluate import SQUARE_MILE_M2
from placecast.exceptions import ParameterError
from placecast.models import MODELS
from placecast.report import (
    backtest_tables,
    format_difference,
    format_p,
    format_value,
    render_backtest_html,
)

__all__ = ["render_backtest_html"]

SQMI = SQUARE_MILE_M2
_RESULT_FORMATS = (".csv", ".parquet")

ModelsOpt = Annotated[str, typer.Option("--models", "-m", help=(
    f"Models to compare, comma-separated, from: {', '.join(sorted(MODELS))}."))]
AreaOpt = Annotated[str | None, typer.Option("--area", help="Flagged-area budget: 0.25sqmi, "
                                             "62500sqft or 1% of the region. Default 1% "
                                             "(nij: the fewest cells covering 0.25 sq mi).")]
StepOpt = Annotated[str, typer.Option("--step", help="Spacing of origins: 7d, 1M.")]
HorizonOpt = Annotated[str | None, typer.Option(
    "--horizon", help="Window length(s), comma-separated: 7d,14d,1M,2M,3M. Default 7d.")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", help="Parallel processes "
                                             "(default: all cores; 1 = serial).")]
DaskOpt = Annotated[str | None, typer.Option("--dask", help="Run on Dask: 'local' (a "
                                             "LocalCluster of --jobs workers) or a scheduler "
                                             "address tcp://host:port.")]
ModelParamOpt = Annotated[list[str] | None, typer.Option(
    "--param", "-p", help="Model parameter model.name=value (repeatable), e.g. "
    "kde.bandwidth=250; a plain name=value applies when one model is given.")]


def _jobs(jobs: int | None) -> int:
    if jobs is None:
        return max(os.cpu_count() or 1, 1)
    if jobs < 1:
        raise ParameterError(f"--jobs must be at least 1, got {jobs}.")
    return jobs


def _model_params(items: list[str] | None, models: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_params(items).items():
        if "." in key:
            model, name = key.split(".", 1)
        elif len(models) == 1:
            model, name = models[0], key
        else:
            raise ParameterError(f"--param {key}=...: say which model it is for, e.g. "
                                 f"{models[0]}.{key}=... .")
        if model not in models:
            raise ParameterError(f"--param {key}: model {model!r} is not in --models "
                                 f"({', '.join(models)}).")
        out.setdefault(model, {})[name] = value
    return out


def _check_output(path: Path | None, formats: tuple[str, ...], option: str) -> None:
    if path is not None and path.suffix.lower() not in formats:
        raise ParameterError(f"{option} {path}: unknown format {path.suffix or '(none)'!r}; "
                             f"use {' or '.join(formats)}.")


def _write_table(frame: Any, path: Path) -> None:
    from placecast.io._atomic import atomic_path

    with atomic_path(path) as tmp:
        if path.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, date_format="%Y-%m-%d")


@command("backtest")
@with_event_options
@with_unit_options
def backtest_command(
    events_path: EventsPath,
    output: Annotated[Path, typer.Option("--output", "-o", help="Results: one row per "
                                         "origin x horizon x model (.csv or .parquet).")],
    models: ModelsOpt = "naive,kde,prospective",
    start: Annotated[str | None, typer.Option("--start", help="First origin (ISO date).")]
    = None,
    end: Annotated[str | None, typer.Option("--end", help="Last possible origin.")] = None,
    step: StepOpt = "7d",
    horizon: HorizonOpt = None,
    area: AreaOpt = None,
    protocol: Annotated[str | None, typer.Option(
        "--protocol", help="'nij': the NIJ challenge (origin 2017-03-01, windows "
        "1w,2w,1M,2M,3M, 250-600 ft cells, 0.25-0.75 sq mi).")] = None,
    ties: Annotated[str, typer.Option("--ties", help="Ties at the budget edge: first (unit "
                                      "order) or mean (average over tie-breaks).")] = "first",
    param: ModelParamOpt = None,
    covariate: CovariateOpt = None,
    jobs: JobsOpt = None,
    dask: DaskOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="Checkpoint folder (default: .<output>.checkpoint beside the "
        "output; removed after success).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Reuse the origins finished by an "
                                         "interrupted run with the same settings.")] = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="PAI and hit-rate plot per "
                                              "model (.png or .svg).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="A minimal HTML summary.")]
    = None,
    save: Annotated[str | None, typer.Option(
        "--save", help="Also keep the backtest in a store under this name (see --db); the "
        "dashboard shows it for the dataset it ran on.")] = None,
    db: Annotated[str, typer.Option("--db", envvar="PLACECAST_DB", help="Store for --save: "
                                    "a DuckDB file or postgresql://... URL.")]
    = "placecast.duckdb",
    by: ByOpt = None,
    by_id: ByIdOpt = None,
    unit_spec: Any = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Rolling-origin backtest: refit each model at each origin, score PAI, PEI*, hit rate.

    Each model sees only events strictly before each origin. Prints a summary per model
    (mean, median, 10th-90th percentile), the winner, and a paired Wilcoxon signed-rank
    test of the winner against each other model on per-origin scores.
    """
    from placecast.evaluate import (
        nij_plan,
        nij_settings,
        plot_backtest,
        resolve_area,
        run_backtest,
    )

    _check_output(output, _RESULT_FORMATS, "--output")
    _check_output(plot, (".png", ".svg"), "--plot")
    _check_output(report, (".html", ".htm"), "--report")
    n_jobs = _jobs(jobs)
    model_names = [m.strip().lower() for m in models.split(",") if m.strip()]
    model_params = add_covariates(_model_params(param, model_names), model_names, covariate)
    origins = None
    if protocol is not None:
        origins, horizons = nij_plan(protocol, start=start, end=end, horizon=horizon,
                                     region=unit_spec.region)
    else:
        if start is None or end is None:
            raise ParameterError("give --start and --end (the first and last origin), or "
                                 "--protocol nij.")
        horizons = [h.strip() for h in (horizon or "7d").split(",") if h.strip()]
    if by is not None:
        _backtest_by_region(events_path, output, by=by, by_id=by_id, unit_spec=unit_spec,
                            event_options=event_options, dask=dask, jobs=n_jobs,
                            not_with={"--protocol": protocol, "--plot": plot,
                                      "--report": report, "--checkpoint": checkpoint,
                                      "--resume": resume or None, "--save": save},
                            params=dict(models=model_names, model_params=model_params,
                                        start=start, end=end, step=step, horizons=horizons,
                                        area=area or "1%", ties=ties))
        return
    events = load_events(events_path, **(event_options or {}))
    area_units = build_units_reported(events, unit_spec)
    budget = (nij_settings(area_units, area) if protocol is not None
              else resolve_area(area or "1%", area_units))
    folder = checkpoint or output.parent / f".{output.name}.checkpoint"
    if resume and not (folder / "manifest.json").exists():
        err_console.print(f"[yellow]--resume: no checkpoint in {folder}; starting afresh."
                          "[/yellow]")
    existed = folder.exists()
    counts = [0, 0]  # origins finished, origins in all

    def count(n_done: int, n_total: int) -> None:
        counts[:] = [n_done, n_total]

    try:
        with progress_bar("origins") as bar:
            def both(n_done: int, n_total: int) -> None:
                count(n_done, n_total)
                bar(n_done, n_total)

            result = run_backtest(
                events, area_units, models=model_names, model_params=model_params,
                origins=origins, start=start, end=end, step=step, horizons=horizons,
                area=budget, ties=ties, jobs=n_jobs, dask=dask, checkpoint=folder,
                resume=resume, progress=both)
    except KeyboardInterrupt:
        if not any(folder.glob("origin-*.npz")):
            _drop_unresumable_checkpoint(folder, existed=existed, given=checkpoint is not None)
            err_console.print("[yellow]interrupted before any origin finished; nothing was "
                              "written.[/yellow]")
            raise typer.Exit(130) from None
        err_console.print(
            f"[yellow]interrupted after {counts[0]} of {counts[1]} origins; the finished "
            f"ones are kept in {folder}/.[/yellow] To finish the rest, run the same command "
            f"with --resume:\n  {_resume_command()}", highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    except BaseException:
        _drop_unresumable_checkpoint(folder, existed=existed, given=checkpoint is not None)
        raise
    result.write(output)
    written = [str(output)]
    if plot is not None:
        plot_backtest(result, plot)
        written.append(str(plot))
    if report is not None:
        from placecast.io._atomic import atomic_path

        with atomic_path(report) as tmp:
            tmp.write_text(render_backtest_html(result, protocol=protocol))
        written.append(str(report))
    if checkpoint is None:
        shutil.rmtree(folder, ignore_errors=True)
    _print_summary(result, protocol=protocol)
    console.print(f"wrote {', '.join(written)}")
    if save:
        _save_backtest(result, save, db, events_path, event_options,
                       {"models": model_names, "horizons": list(result.horizons),
                        "step": step, "area": area or ("nij" if protocol else "1%"),
                        "area_m2": result.area, "protocol": protocol})


def _save_backtest(result: Any, name: str, db: str, events_path: Any,
                   event_options: dict[str, Any] | None, settings: dict[str, Any]) -> None:
    """``--save``: keep the result in the store, with the dataset it ran on (if stored)."""
    from dataclasses import replace

    from placecast.store import open_store, split_store_reference

    reference = ((event_options or {}).get("store")
                 or (split_store_reference(events_path) if events_path is not None else None))
    meta = {"name": name, "dataset": reference[1] if reference else None,
            "source": None if reference else str(events_path), **settings}
    store = open_store(db)
    try:
        backtest_id = store.save_backtest(replace(result, meta=meta), name=name)
    finally:
        store.close()
    console.print(f"saved backtest {name!r} as id {backtest_id} in {db}")


def _backtest_by_region(events_path: Any, output: Path, *, by: str, by_id: str | None,
                        unit_spec: Any, event_options: Any, dask: str | None, jobs: int,
                        not_with: dict[str, Any], params: dict[str, Any]) -> None:
    """``backtest --by``: one backtest per region, one table with a ``region`` column."""
    from placecast.cli._regions import run_regions

    given = [name for name, value in not_with.items() if value is not None]
    if given:
        raise ParameterError(f"--by runs one backtest per region; {', '.join(given)} "
                             "work on a single backtest: drop them.")
    table = run_regions("backtest", events_path, by=by, by_id=by_id,
                        event_options=event_options, output=output, params=params,
                        unit_spec=unit_spec, dask=dask, jobs=jobs)
    _write_table(table, output)
    summary = (table.groupby(["horizon", "model"], sort=False)
               .agg(regions=("region", "nunique"), origins=("origin", "nunique"),
                    pai=("pai", "mean"), hit_rate=("hit_rate", "mean"))
               .reset_index())
    out = Table(title=f"backtest in {table.region.nunique()} regions (means over regions "
                "and origins)")
    for column in ("horizon", "model", "regions", "origins", "PAI", "hit rate"):
        out.add_column(column, justify="left" if column in ("horizon", "model") else "right")
    for row in summary.itertuples():
        out.add_row(row.horizon, row.model, str(row.regions), str(row.origins),
                    _fmt(row.pai), _fmt(row.hit_rate, 3))
    print_table(out)
    console.print(f"wrote {output}")


def _resume_command() -> str:
    """The command line that was run, with ``--resume`` added."""
    import shlex
    import sys

    args = sys.argv[1:]
    if "--resume" not in args:
        args = [*args, "--resume"]
    return shlex.join(["placecast", *args])


def _drop_unresumable_checkpoint(folder: Path, *, existed: bool, given: bool) -> None:
    """After a failed run, remove a checkpoint folder it made that holds no finished origin.

    Such a folder cannot save any work on ``--resume``; one holding finished origins is
    kept (and said so), and a folder the user named or that existed before is never removed.
    """
    if not folder.exists():
        return
    if any(folder.glob("origin-*.npz")):
        n_done = sum(1 for _ in folder.glob("origin-*.npz"))
        err_console.print(f"[yellow]{n_done} finished origins are kept in {folder}/; fix the "
                          "problem and run the same command with --resume to reuse them."
                          "[/yellow]", highlight=False, soft_wrap=True)
    elif not existed and not given:
        shutil.rmtree(folder, ignore_errors=True)


def _fmt(value: float, digits: int = 2) -> str:
    return format_value(value, digits)


def _fmt_p(value: float) -> str:
    return format_p(value)


def _fractions(text: str | None, option: str, *, low: float = 0.0, high: float = 1.0
               ) -> list[float] | None:
    """Comma-separated numbers within ``[low, high)`` (None when the option is not given)."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ParameterError(f"{option} {text!r} must be comma-separated numbers.") from None
    if not values or any(not low <= v < high for v in values):
        raise ParameterError(f"{option} {text!r}: each value must be in [{low:g}, {high:g}).")
    return values


def _print_calibration(result: Any, horizon: str) -> None:
    """Print predicted vs observed events per model (are the expected counts honest)."""
    if getattr(result, "calibration_records", None) is None:
        return
    table_data = result.calibration(horizon)
    table = Table(title=f"calibration ({horizon}): predicted vs observed events, all origins")
    for column in ("model", "predicted", "observed", "observed/predicted",
                   "top decile obs/pred", "bottom half obs/pred"):
        table.add_column(column, justify="left" if column == "model" else "right",
                         no_wrap=True)
    for model in result.models:
        mine = table_data[table_data.model == model].set_index("decile")
        bottom = mine.loc[[str(d) for d in range(6, 11)]]
        low = (bottom.observed.sum() / bottom.predicted.sum()
               if bottom.predicted.sum() > 0 else float("nan"))
        table.add_row(model, f"{mine.loc['all', 'predicted']:.1f}",
                      f"{mine.loc['all', 'observed']:.0f}", _fmt(mine.loc["all", "ratio"], 3),
                      _fmt(mine.loc["1", "ratio"], 3), _fmt(low, 3))
    print_table(table)


def _print_summary(result: Any, *, protocol: str | None = None) -> None:
    flagged_sqmi = result.flagged_area / SQMI
    region_sqmi = result.region_area / SQMI
    if protocol is not None:
        table = Table(title=f"NIJ protocol, origin {str(result.origins[0])[:10]}: "
                      f"{flagged_sqmi:.3f} of {region_sqmi:.1f} sq mi flagged")
        for column in ("window", "model", "events", "cells", "hits", "PAI", "PEI*",
                       "log score"):
            table.add_column(column, justify="left" if column in ("window", "model")
                             else "right")
        for row in result.to_frame().itertuples():
            table.add_row(row.horizon, row.model, f"{row.n_events:g}",
                          str(row.n_flagged_units), f"{row.hits:g}", _fmt(row.pai),
                          _fmt(row.pei_star, 3), _fmt(row.log_score))
        print_table(table)
        return
    # the same tables, from the same methods, as backtest.html and the HTML report
    tables = backtest_tables(result)
    summary = tables["summary"]
    for horizon in result.horizons:
        table = Table(title=f"{horizon} windows from {len(result.origins)} origins "
                      f"({str(result.origins[0])[:10]} .. {str(result.origins[-1])[:10]}), "
                      f"{flagged_sqmi:.3f} of {region_sqmi:.1f} sq mi flagged")
        columns = ("model", "PAI mean", "median", "p10-p90", "pooled", "hit rate", "PEI*",
                   "log score")
        for column in columns:
            table.add_column(column, justify="left" if column == "model" else "right",
                             no_wrap=True)
        for row in summary[summary.horizon == horizon].itertuples(index=False):
            values = dict(zip(summary.columns, row, strict=True))
            table.add_row(*[values[c] for c in columns])
        print_table(table)
        _print_calibration(result, horizon)
        if len(result.models) > 1:
            best = result.winner("pai", horizon)
            console.print(f"best mean PAI ({horizon}): [bold]{best}[/bold]")
            for c in result.compare("pai", horizon):
                verdict = ("a real difference at the 5% level" if c.p_value < 0.05
                           else "not distinguishable from noise at the 5% level")
                console.print(
                    f"  {c.model} vs {c.other}: mean PAI difference "
                    f"{format_difference(c.mean_difference)}, better at {c.n_better} and "
                    f"worse at {c.n_worse} of {c.n_pairs} origins; Wilcoxon signed-rank p = "
                    f"{format_p(c.p_value)} ({verdict})")


@command("tune")
@with_event_options
def tune_command(
    events_path: EventsPath,
    model: Annotated[str, typer.Option("--model", "-m", help="Model to tune.")],
    tuning: Annotated[str, typer.Option("--tuning", help="Tuning origins 'START..END' (ISO "
                                        "dates); their windows must end before "
                                        "--evaluation starts.")],
    evaluation: Annotated[str, typer.Option("--evaluation", help="Evaluation origins "
                                            "'START..END', after the tuning period.")],
    grid: Annotated[list[str] | None, typer.Option(
        "--grid", "-g", help="Parameter values to try, name=v1,v2,... (repeatable), e.g. "
        "bandwidth=100,200,400 or time_decay=none,30,90.")] = None,
    cells: Annotated[str, typer.Option("--cells", help="Cell sizes to try, comma-separated: "
                                       "400ft,600ft.")] = "150m",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Candidate table "
                                                "(.csv or .parquet).")] = None,
    step: StepOpt = "7d",
    horizon: Annotated[str, typer.Option("--horizon", help="Window length.")] = "7d",
    area: Annotated[str, typer.Option("--area", help="Flagged-area budget.")] = "1%",
    metric: Annotated[str, typer.Option("--metric", help="pai, hit_rate, pei_star or "
                                        "log_score.")] = "pai",
    baselines: Annotated[str, typer.Option("--baselines", help="Models compared on the "
                                           "evaluation period.")] = "naive",
    jobs: JobsOpt = None,
    dask: DaskOpt = None,
    units: UnitsOpt = "grid",
    region: RegionOpt = None,
    rotation: RotationOpt = 0.0,
    covariate: CovariateOpt = None,
    shifts: Annotated[str | None, typer.Option(
        "--shifts", help="Grid placements to try (Mohler & Porter): origin shifts as "
        "fractions of a cell, tried in x and y, e.g. 0,0.25,0.5,0.75.")] = None,
    rotations: Annotated[str | None, typer.Option(
        "--rotations", help="Grid rotations to try, degrees, e.g. 0,15,30,45.")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Grid-search a model's parameters and cell size on a tuning period.

    The choice is then scored on a later evaluation period against the model's defaults
    and the baselines (the evaluation period is never used for choosing).
    """
    from dataclasses import replace

    from placecast.evaluate import tune
    from placecast.pipeline import build_units
    from placecast.quantities import parse_length

    _check_output(output, _RESULT_FORMATS, "--output")
    tune_start, tune_end = _period(tuning, "--tuning")
    eval_start, eval_end = _period(evaluation, "--evaluation")
    values: dict[str, list[Any]] = {}
    for item in grid or []:
        if "=" not in item:
            raise ParameterError(f"--grid {item!r} must look like name=v1,v2,...")
        name, text = item.split("=", 1)
        values[name.strip()] = [next(iter(parse_params([f"v={v}"]).values()))
                                for v in text.split(",") if v.strip()]
    fixed = add_covariates({}, [model.strip().lower()], covariate)
    for name, value in fixed.get(model.strip().lower(), {}).items():
        values[name] = [value]  # one value: the same layers for every candidate
    texts = [c.strip() for c in cells.split(",") if c.strip()]
    sizes = [parse_length(c, name="--cells") for c in texts]
    as_given = dict(zip(sizes, texts, strict=True))  # echo lengths in the user's units
    events = load_events(events_path, **(event_options or {}))
    spec = unit_spec_from_options(cells.split(",")[0], units, None, None, region, None,
                                  rotation)
    shift_values = _fractions(shifts, "--shifts")
    rotation_values = _fractions(rotations, "--rotations", low=-360.0, high=360.0)
    grid_shifts = ([(fx, fy) for fx in shift_values for fy in shift_values]
                   if shift_values is not None else None)
    base_region: list[Any] = []

    def make_units(size: float, shift: tuple[float, float] | None = None,
                   angle: float | None = None) -> Any:
        if shift is None and angle is None:
            builder = build_units_reported if size == sizes[0] else build_units
            return builder(events, replace(spec, cell_size=size))
        if not base_region:  # the region's corner in metres, from the default grid
            base_region.append(build_units(events, replace(spec, cell_size=size)).region)
        import shapely

        xmin, ymin, _, _ = shapely.bounds(base_region[0])
        per_unit = events.spatial_reference.metres_per_unit
        fx, fy = shift or (0.0, 0.0)
        origin = ((xmin + fx * size) / per_unit, (ymin + fy * size) / per_unit)
        return build_units(events, replace(spec, cell_size=size, origin=origin,
                                           rotation=angle or 0.0))

    with progress_bar("candidates x origins") as bar:
        result = tune(events, make_units,
                      model=model.strip().lower(), grid=values, cell_sizes=sizes,
                      tuning_start=tune_start, tuning_end=tune_end,
                      evaluation_start=eval_start, evaluation_end=eval_end, step=step,
                      horizon=horizon, area=area, metric=metric,
                      baselines=[b.strip() for b in baselines.split(",") if b.strip()],
                      jobs=_jobs(jobs), dask=dask,
                      progress=bar, shifts=grid_shifts, rotations=rotation_values)
    table = Table(title=f"{model} on {len(result.tuning_origins)} tuning origins "
                  f"({tune_start} .. {tune_end}), mean {metric}: best first")
    frame = result.to_frame()
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for row in frame.head(15).itertuples(index=False):
        table.add_row(*[as_given.get(v, _fmt(v)) if column == "cell_size"
                        else _fmt(v) if isinstance(v, float) else str(v)
                        for column, v in zip(frame.columns, row, strict=True)])
    print_table(table)
    cell_text = as_given.get(result.best_cell_size, f"{result.best_cell_size:g} m")
    placement = ""
    if result.best_placement is not None:
        fx, fy, angle = result.best_placement
        placement = f"grid shifted {fx:g},{fy:g} cells, rotated {angle:g} deg, "
    console.print(f"chosen: cell {cell_text} ({result.best_cell_size:.2f} m), {placement}"
                  + ", ".join(f"{k}={v}" for k, v in result.best_params.items()))
    if result.evaluation is not None:
        console.print(f"[bold]evaluation period {eval_start} .. {eval_end}[/bold] "
                      "(not used for choosing):")
        _print_summary(result.evaluation)
    if output is not None:
        _write_table(frame, output)
        console.print(f"wrote {output}")


def _period(text: str, option: str) -> tuple[str, str]:
    if ".." not in text:
        raise ParameterError(f"{option} {text!r} must look like START..END, e.g. "
                             "2015-03-01..2016-02-21.")
    first, last = (s.strip() for s in text.split("..", 1))
    return first, last
