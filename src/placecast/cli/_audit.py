"""``placecast audit``: exposure, disparity and feedback audit of a forecasting policy.

Thin: parses the options, calls :func:`placecast.audit.run_audit` (which runs the policy
over rolling forecast origins, audits exposure and disparity and optionally simulates the
recording feedback loop), prints a summary and writes the tables, plots and model card with
:meth:`AuditResult.write`. Every file is written atomically after all the computation has
succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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

__all__: list[str] = []


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
    from placecast.audit import check_directory, check_plot_format, run_audit

    check_plot_format(plot_format)  # cheap checks before the events are read
    check_directory(output_dir)
    events = load_events(events_path, **(event_options or {}))
    area_units = build_units_reported(events, unit_spec)
    with progress_bar(f"backtesting {model}: origins") as bar:
        result = run_audit(
            events, area_units, model=model, params=parse_params(param), start=start,
            end=end, horizon=horizon, area=area, groups=groups, group_by=group_by,
            quantiles=quantiles, population=population, assign=assign, n_boot=n_boot,
            simulate_feedback=simulate_feedback, uplift=uplift, detection=detection,
            periods=periods, runs=runs, random_share=random_share, truth=truth_source,
            seed=seed, jobs=jobs, source=str(events_path), unit_spec=unit_spec,
            progress=bar)
    err_console.print(f"[dim]{result.n_periods} periods of {horizon}, {len(area_units):,} "
                      f"units, {int(result.exposure.units['n_events'].sum()):,} events in the "
                      "audited period[/dim]")
    written = result.write(output_dir, plot_format=plot_format)
    _print_summary(result.performance, result.exposure, result.disparity, result.feedback)
    console.print(f"wrote {len(written)} files to {output_dir}/: "
                  + ", ".join(p.name for p in written))


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
