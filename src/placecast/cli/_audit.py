"""``placecast audit``: exposure, disparity and feedback audit of a forecasting policy.

Runs the policy (model + units + area budget) over rolling forecast origins, audits which
area units and groups of areas it flags against where events were recorded, optionally
simulates the recording feedback loop, and writes CSV tables, plots and a model card
(Markdown + self-contained HTML). Every file is written atomically after all the
computation has succeeded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
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
    ParamOpt,
    build_units_reported,
    parse_params,
    with_unit_options,
)
from placecast.cli._progress import progress_bar
from placecast.exceptions import DataError, ParameterError

__all__ = ["PolicyBacktest", "backtest_policy"]


@dataclass(frozen=True, eq=False)
class PolicyBacktest:
    """A policy's flags and the observed events over rolling origins, as plain arrays.

    Attributes
    ----------
    origins : list of Timestamp
        Forecast origins (period starts).
    flags : ndarray of bool, shape (n_periods, n_units)
        Units flagged for each period.
    observed : ndarray of float, shape (n_periods, n_units)
        Events per unit in each period.
    per_origin : DataFrame
        ``placecast.evaluate`` scores per origin (hit rate, PAI, PEI*, log score, ...).
    period_days : float
        Length of the first period, days.
    result : BacktestResult
        The full backtest.
    """

    origins: list[pd.Timestamp]
    flags: np.ndarray
    observed: np.ndarray
    per_origin: pd.DataFrame
    period_days: float
    result: Any


def backtest_policy(events: Any, units: Any, model: str, params: dict[str, Any], start: str,
                    end: str, horizon: str, budget_m2: float, *, jobs: int = 1,
                    progress: Any = None) -> PolicyBacktest:
    """Backtest the policy with ``placecast.evaluate.run_backtest``.

    Origins are ``start, start + horizon, ...`` while the window ends by ``end``, so the
    periods tile ``[start, end)`` without overlap; at each the model is refitted on the
    events before it and the top units within ``budget_m2`` are flagged.
    """
    from placecast.evaluate import run_backtest
    from placecast.events import to_datetime64
    from placecast.quantities import parse_duration

    duration = parse_duration(horizon, name="--horizon")
    first = pd.Timestamp(to_datetime64(start, name="--start"))
    last = pd.Timestamp(to_datetime64(end, name="--end"))
    edges = [first]
    while duration.add_to(edges[-1]) <= last:
        edges.append(duration.add_to(edges[-1]))
    if len(edges) < 2:
        raise ParameterError(f"--start {start} .. --end {end} holds no whole {horizon} window; "
                             "move --end later or shorten --horizon.")
    result = run_backtest(events, units, models={model: model},
                          model_params={model: params},
                          origins=[e.to_datetime64() for e in edges[:-1]],
                          horizons=(horizon,), area=budget_m2, jobs=jobs,
                          progress=progress)
    per_origin = result.to_frame()
    per_origin["origin"] = pd.to_datetime(per_origin["origin"]).dt.date.astype(str)
    return PolicyBacktest(origins=edges[:-1], flags=result.flags(model, horizon),
                          observed=np.asarray(result.observed[horizon], dtype=float),
                          per_origin=per_origin,
                          period_days=(edges[1] - edges[0]) / pd.Timedelta(days=1),
                          result=result)


@command("audit")
@with_event_options
@with_unit_options
def audit_command(
    events_path: EventsPath,
    start: Annotated[str, typer.Option("--start", help="First forecast origin (ISO date).")],
    end: Annotated[str, typer.Option("--end", help="End of the audited period: the last "
                                     "window ends by it.")],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Directory for the "
                                             "tables, plots and model card.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Forecasting model (kde, naive, "
                                       "prospective, ...).")] = "kde",
    area: Annotated[str, typer.Option("--area", help="Area flagged per period: 0.25sqmi, "
                                      "1%.")] = "0.25sqmi",
    horizon: Annotated[str, typer.Option("--horizon", help="Period (window) length: 7d, "
                                         "1M.")] = "7d",
    unit_spec: Any = None,
    param: ParamOpt = None,
    groups: Annotated[Path | None, typer.Option("--groups", help="Polygons of area groups "
                                                "(tracts, districts) with area-level "
                                                "attributes.")] = None,
    group_by: Annotated[str | None, typer.Option("--group-by", help="Column of --groups "
                                                 "naming each polygon's group.")] = None,
    quantiles: Annotated[int | None, typer.Option("--quantiles", help="Cut the numeric "
                                                  "--group-by column into this many "
                                                  "quantile groups.")] = None,
    population: Annotated[str | None, typer.Option("--population", help="Column of --groups "
                                                   "with population, for per-capita "
                                                   "exposure.")] = None,
    assign: Annotated[str, typer.Option("--assign", help="Unit to group by 'centroid' or "
                                        "largest 'overlap'.")] = "centroid",
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 999,
    simulate_feedback: Annotated[bool, typer.Option("--simulate-feedback", help="Also run "
                                                    "the feedback-loop simulation.")] = False,
    uplift: Annotated[float, typer.Option("--uplift", help="Extra recording probability in "
                                          "flagged units, relative (0.5 = +50%).")] = 0.5,
    detection: Annotated[float, typer.Option("--detection", help="Base probability an "
                                             "event is recorded.")] = 0.5,
    periods: Annotated[int, typer.Option("--periods", help="Simulated periods.")] = 52,
    runs: Annotated[int, typer.Option("--runs", help="Simulation replicates.")] = 3,
    random_share: Annotated[float, typer.Option("--random-share", help="Share of flags "
                                                "randomised in the 'randomised' "
                                                "variant.")] = 0.2,
    truth_source: Annotated[str, typer.Option("--truth", help="Ground truth of the "
                                              "simulation: 'history' (the model fitted on "
                                              "all events before --start) or 'forecast' "
                                              "(its forecast at --start).")] = "history",
    seed: Annotated[int, typer.Option("--seed", help="Random seed (bootstrap, "
                                      "simulation).")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", help="Processes for the backtest.")] = 1,
    plot_format: Annotated[str, typer.Option("--plot-format", help="png or svg.")] = "png",
    event_options: dict[str, Any] | None = None,
) -> None:
    """Audit a forecasting policy: exposure, disparity across area groups, feedback loops.

    Writes CSV tables, plots and a model card (Markdown and self-contained HTML).

    Everything concerns areas (cells, beats, districts, tracts), never persons.
    """
    from placecast.audit import (
        assign_groups,
        build_model_card,
        disparity_audit,
        exposure_audit,
        model_refit,
        plot_disparity,
        plot_feedback,
        summarise_performance,
    )
    from placecast.audit import simulate_feedback as run_simulation
    from placecast.io._atomic import atomic_path
    from placecast.models import make_model
    from placecast.quantities import parse_area
    from placecast.units import aggregate

    if plot_format not in ("png", "svg"):
        raise ParameterError(f"--plot-format {plot_format!r}: use png or svg.")
    if (groups is None) != (group_by is None):
        raise ParameterError("--groups and --group-by go together: give the polygon file "
                             "and the column that names each polygon's group.")
    if (quantiles is not None or population is not None) and groups is None:
        raise ParameterError("--quantiles and --population need --groups FILE --group-by COL.")
    if output_dir.exists() and not output_dir.is_dir():
        raise ParameterError(f"{output_dir} exists and is not a directory; give -o DIR.")
    params = parse_params(param)
    if simulate_feedback:  # check before the backtest: fail early
        if truth_source not in ("history", "forecast"):
            raise ParameterError(f"--truth {truth_source!r}: use history or forecast.")
        if (truth_source == "history"
                and "lookback_days" not in make_model(model, **params).get_params()):
            raise ParameterError(f"--truth history needs a model with a lookback_days "
                                 f"parameter ({model} has none); use --truth forecast.")
    events = load_events(events_path, **(event_options or {}))
    area_units = build_units_reported(events, unit_spec)
    budget = parse_area(area, name="--area").resolve(area_units.region_area)
    if budget < area_units.area.min():
        raise ParameterError(f"--area {area} is smaller than one unit "
                             f"({area_units.area.min():,.0f} m²); nothing would be flagged.")
    assignment = None
    if groups is not None and group_by is not None:  # before the backtest: fail early
        with console.status("assigning units to area groups..."):
            assignment = assign_groups(area_units, groups, group_by, quantiles=quantiles,
                                       method=assign, population=population)
    with progress_bar(f"backtesting {model}: origins") as bar:
        backtest = backtest_policy(events, area_units, model, params, start, end, horizon,
                                   budget, jobs=jobs, progress=bar)
    n_periods = len(backtest.origins)
    err_console.print(f"[dim]{n_periods} periods of {horizon}, {len(area_units):,} units, "
                      f"{int(backtest.observed.sum()):,} events in the audited period[/dim]")
    exposure = exposure_audit(backtest.flags, backtest.observed, unit_id=area_units.unit_id)
    performance = summarise_performance(
        backtest.per_origin, metrics=["hit_rate", "pai", "pei_star", "log_score"],
        n_boot=n_boot, random_state=seed)
    disparity = None
    if assignment is not None:
        disparity = disparity_audit(backtest.flags, backtest.observed, area_units.area,
                                    assignment.unit_group, assignment.labels,
                                    unit_population=assignment.unit_population,
                                    n_boot=n_boot, random_state=seed,
                                    description=assignment.to_dict())
    feedback = None
    if simulate_feedback:
        first = backtest.origins[0]
        period_days = backtest.period_days
        n_hist = 52
        hist_edges = [first - pd.Timedelta(days=period_days) * k for k in range(n_hist, -1, -1)]
        history = aggregate(events, area_units,
                            np.array([e.to_datetime64() for e in hist_edges])).T
        truth = _ground_truth(events, area_units, model, params, first, period_days,
                              truth_source) / detection
        if truth.sum() <= 0:
            raise DataError("the model forecasts no events at --start; the feedback "
                            "simulation needs a non-zero ground-truth intensity.")
        refit = model_refit(make_model(model, **params), area_units, first, period_days,
                            n_hist)
        with err_console.status(f"simulating {periods} periods of feedback x {runs} "
                                "run(s)..."):
            feedback = run_simulation(truth, area_units.area, budget, refit=refit,
                                      history=history, n_periods=periods, uplift=uplift,
                                      detection=detection, random_share=random_share,
                                      n_runs=runs, random_state=seed)

    # ------------------------------------------------------------------ write everything
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def write_csv(frame: pd.DataFrame, name: str) -> None:
        path = output_dir / name
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        written.append(path)

    write_csv(backtest.per_origin, "performance_by_origin.csv")
    write_csv(performance, "performance.csv")
    write_csv(exposure.units, "exposure_units.csv")
    write_csv(exposure.runs, "exposure_runs.csv")
    flag_t, flag_u = np.nonzero(backtest.flags)
    write_csv(pd.DataFrame({"origin": [backtest.origins[t].date().isoformat() for t in flag_t],
                            "unit_id": area_units.unit_id[flag_u]}), "flags.csv")
    figures: dict[str, str | os.PathLike[str]] = {}
    if disparity is not None:
        write_csv(disparity.table, "disparity.csv")
        figures["disparity"] = plot_disparity(disparity, output_dir /
                                              f"disparity.{plot_format}")
        written.append(output_dir / f"disparity.{plot_format}")
    if feedback is not None:
        write_csv(feedback.periods, "feedback.csv")
        write_csv(feedback.summary(), "feedback_summary.csv")
        figures["feedback"] = plot_feedback(feedback, output_dir / f"feedback.{plot_format}")
        written.append(output_dir / f"feedback.{plot_format}")
    summary = events.summary()
    provenance = {
        "events file": str(events_path), "events": f"{len(events):,}",
        "data span": f"{summary['start'][:10]} .. {summary['end'][:10]}",
        "CRS": events.spatial_reference.source_crs,
        "audited period": f"{backtest.origins[0].date()} .. {end} ({n_periods} x {horizon})",
        "events in audited period": f"{int(backtest.observed.sum()):,}",
    }
    if events.report is not None:
        provenance["rows dropped"] = str(events.report.n_dropped)
    policy = {
        "model": model, "parameters": json.dumps(params) if params else "defaults",
        "units": (f"{unit_spec.kind} {unit_spec.cell_size:g} m" if unit_spec.kind != "polygons"
                  else f"polygons {unit_spec.polygons}"),
        "n units": f"{len(area_units):,}",
        "region area": f"{area_units.region_area / 1e6:,.2f} km²",
        "area flagged per period": f"{area} = {budget / 1e6:.3f} km²",
        "horizon": horizon, "forecast origins": f"{n_periods}",
        "backtest": "placecast.evaluate.run_backtest: rolling origins, refit on the events "
                    "before each",
    }
    if feedback is not None:
        policy["feedback ground truth"] = (
            f"{model} fitted on all events before --start, / detection" if truth_source ==
            "history" else f"{model} forecast at --start, / detection")
    card = build_model_card(
        title=(f"Model card: {model} on {unit_spec.cell_size:g} m {unit_spec.kind}, {area} "
               f"per {horizon}"),
        provenance=provenance, policy=policy, performance=performance, exposure=exposure,
        disparity=disparity, feedback=feedback, figures=figures)
    written += list(card.write(output_dir))
    audit_json = output_dir / "audit.json"
    payload = {"card": card.to_dict(), "exposure": exposure.to_dict()}
    with atomic_path(audit_json) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_json_default), encoding="utf-8")
    written.append(audit_json)
    _print_summary(performance, exposure, disparity, feedback)
    console.print(f"wrote {len(written)} files to {output_dir}/: "
                  + ", ".join(p.name for p in written))


def _ground_truth(events: Any, units: Any, model: str, params: dict[str, Any],
                  first: pd.Timestamp, period_days: float, source: str) -> np.ndarray:
    """Expected recorded events per unit per period at ``first``.

    ``forecast``: the policy's own forecast; ``history``: the same model with its lookback
    stretched over all events before ``first`` (a long-run intensity that differs from the
    policy's first allocation, so the simulation shows whether the policy moves towards it
    or stays where it started).
    """
    from placecast.events import to_datetime64
    from placecast.forecast import TimeWindow
    from placecast.models import make_model

    estimator = make_model(model, **params)
    before = events.before(first)
    if source == "history":
        span = (first - pd.Timestamp(before.start)) / pd.Timedelta(days=1)
        estimator.set_params(lookback_days=float(max(span, period_days)) + 1.0)
    window = TimeWindow(to_datetime64(first),
                        to_datetime64(first + pd.Timedelta(days=period_days)))
    return np.asarray(estimator.fit(before).predict(units, window).intensity)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _print_summary(performance: pd.DataFrame, exposure: Any, disparity: Any,
                   feedback: Any) -> None:
    table = Table(title="backtest performance (mean over origins, 95% bootstrap CI)")
    for column in ("metric", "mean", "95% CI"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for row in performance.itertuples():
        table.add_row(str(row.metric), f"{row.mean:.3f}", f"{row.low:.3f} .. {row.high:.3f}")
    print_table(table)
    s = exposure.summary
    console.print(f"exposure: {s['n_flags']:,} flags on {s['n_units_ever_flagged']:,} units; "
                  f"top 1% of units hold {s['top_1pct_share_flags']:.0%} of flags "
                  f"({s['top_1pct_share_events']:.0%} of events); Gini flags "
                  f"{s['gini_flags']:.3f}, events {s['gini_events']:.3f}; persistence "
                  f"{s['persistence']:.2f}; {s['n_over']} over-, {s['n_under']} under-flagged "
                  "units")
    if disparity is not None:
        t = disparity.table.sort_values("flag_share", ascending=False).head(10)
        dt = Table(title="area groups with the largest share of flagged area")
        for column in ("group", "units", "events %", "flagged %", "ratio (95% CI)"):
            dt.add_column(column, justify="left" if column == "group" else "right")
        for row in t.itertuples():
            dt.add_row(str(row.group), str(row.n_units), f"{100 * row.event_share:.1f}",
                       f"{100 * row.flag_share:.1f}",
                       f"{row.ratio:.2f} ({row.ratio_low:.2f} .. {row.ratio_high:.2f})")
        console.print(dt)
    if feedback is not None:
        ft = Table(title="feedback simulation: allocation drift (TV distance)")
        for column in ("variant", "start", "end", "mean", "turnover"):
            ft.add_column(column, justify="left" if column == "variant" else "right")
        for row in feedback.summary().itertuples():
            ft.add_row(str(row.variant), f"{row.tv_start:.3f}", f"{row.tv_end:.3f}",
                       f"{row.tv_mean:.3f}", f"{row.turnover_mean:.3f}")
        console.print(ft)
