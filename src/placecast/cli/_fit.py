"""``placecast fit``: estimate a point-process model and write its parameters as JSON.

Models register a handler in ``FIT_HANDLERS``: a function taking a ``FitRequest`` and
returning a JSON-ready dict of estimates (and optionally writing side files such as
declustering probabilities beside the output). This module owns only the command, the
shared options and the atomic JSON write.
"""

from __future__ import annotations

import json
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from placecast.cli._app import (
    EventsPath,
    command,
    console,
    with_event_options,
)
from placecast.cli._core import CellOpt, ParamOpt, RegionOpt, parse_params
from placecast.exceptions import ParameterError

__all__ = ["FIT_HANDLERS", "FitRequest", "degenerate_notes", "estimate_rows", "print_estimates",
           "register_fit_handler"]


@dataclass
class FitRequest:
    """Everything ``placecast fit`` was given, for a model's handler.

    Attributes
    ----------
    events_path : Path
        The events or catalog file.
    event_options : dict
        Keyword options for ``placecast.cli._app.load_events`` (columns, CRS, filters).
    model : str
        The model name.
    params : dict
        ``--param name=value`` pairs, typed.
    output : Path
        The JSON file to be written (handlers may write side files beside it).
    cell : str
        ``--cell`` as typed (grid models).
    region : str or None
        ``--region`` as typed: a polygon file or "lon lat, lon lat, ..." vertices.
    magnitude : str or None
        Magnitude column (marked models).
    mag_threshold : float or None
        Magnitude threshold m0.
    study_start, study_end : str or None
        Study period (target events).
    distance_unit : str
        ``degree`` or ``km`` (earthquake models).
    initial : dict
        ``--initial "mu=0.5,A=0.2"`` parsed.
    extra : dict
        Room for handler-specific values.
    """

    events_path: Path
    event_options: dict[str, Any]
    model: str
    params: dict[str, Any]
    output: Path
    cell: str = "150m"
    region: str | None = None
    magnitude: str | None = None
    mag_threshold: float | None = None
    study_start: str | None = None
    study_end: str | None = None
    distance_unit: str = "degree"
    initial: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


FitHandler = Callable[[FitRequest], dict[str, Any]]

#: Model name -> handler. Model modules register here (see ``register_fit_handler``).
FIT_HANDLERS: dict[str, FitHandler] = {}


def _model_help() -> str:
    known = ", ".join(sorted(FIT_HANDLERS)) or "none registered"
    return (f"Model to fit: {known} (etas and sepp for crime-like events; etas_marked for "
            "earthquake catalogs with magnitudes).")


#: ``--model`` of ``placecast fit``; its help lists the registered models.
_MODEL_OPTION = typer.Option("--model", "-m", help=_model_help())


def register_fit_handler(name: str) -> Callable[[FitHandler], FitHandler]:
    """Decorator: make ``placecast fit --model NAME`` call the decorated handler."""

    def decorate(handler: FitHandler) -> FitHandler:
        FIT_HANDLERS[name] = handler
        _MODEL_OPTION.help = _model_help()  # help is read when it is shown
        return handler

    return decorate


def _parse_initial(text: str | None) -> dict[str, float]:
    values: dict[str, float] = {}
    if not text:
        return values
    for item in text.split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise ParameterError(f"`initial` item {item!r} must look like name=value.",
                                 param="initial")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            values[key] = float(value)
        except ValueError:
            raise ParameterError(f"`initial` {key}={value!r} is not a number.",
                                 param="initial") from None
    return values


@command("fit")
@with_event_options
def fit_command(
    events_path: EventsPath,
    model: Annotated[str, _MODEL_OPTION],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSON file for the "
                                         "estimates.")],
    param: ParamOpt = None,
    cell: CellOpt = "150m",
    region: Annotated[str | None, typer.Option(
        "--region", help="Region: a polygon file, or vertices 'lon lat, lon lat, ...'.")]
    = None,
    magnitude: Annotated[str | None, typer.Option("--magnitude", help="Magnitude column "
                                                  "(marked models).")] = None,
    mag_threshold: Annotated[float | None, typer.Option("--mag-threshold", help="Magnitude "
                                                        "threshold m0.")] = None,
    study_start: Annotated[str | None, typer.Option("--study-start", help="Start of the "
                                                    "study period.")] = None,
    study_end: Annotated[str | None, typer.Option("--study-end", help="End of the study "
                                                  "period.")] = None,
    distance_unit: Annotated[str, typer.Option("--distance-unit", help="degree or km "
                                               "(earthquake models).")] = "degree",
    initial: Annotated[str | None, typer.Option("--initial", help="Initial values "
                                                "'mu=0.5,A=0.2,...'.")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Fit a point-process model (etas, sepp, etas_marked, ...) and write its estimates."""
    _ = RegionOpt  # the region option here also takes vertex lists, hence its own type
    name = model.strip().lower()
    handler = FIT_HANDLERS.get(name)
    if handler is None:
        known = ", ".join(sorted(FIT_HANDLERS)) or "none registered"
        raise ParameterError(f"`model` {model!r} cannot be fitted by 'placecast fit' "
                             f"(choose one of: {known}).", param="model")
    request = FitRequest(
        events_path=events_path,
        event_options=dict(event_options or {}),
        model=name, params=parse_params(param), output=output, cell=cell, region=region,
        magnitude=magnitude, mag_threshold=mag_threshold, study_start=study_start,
        study_end=study_end, distance_unit=distance_unit, initial=_parse_initial(initial),
    )
    started = _time.perf_counter()
    result = handler(request)
    result.setdefault("model", name)
    result.setdefault("run_time_s", round(_time.perf_counter() - started, 3))
    from placecast.io._atomic import atomic_path

    with atomic_path(output) as tmp:
        tmp.write_text(json.dumps(result, indent=2, default=float))
    print_estimates(result)
    console.print(f"wrote {output}")


#: What each estimate means, for the table ``placecast fit`` prints.
_MEANINGS = {
    "theta": "triggering amplitude",
    "branching_ratio": "events directly triggered per event",
    "omega": "decay of triggering, per day",
    "sigma": "spatial spread of triggering, metres",
    "background_rate": "background events per day (region)",
    "beta": "Gutenberg-Richter b-value x ln 10",
    "mu": "background rate multiplier",
    "A": "productivity",
    "c": "Omori c, days",
    "alpha": "magnitude sensitivity of productivity",
    "p": "Omori decay exponent",
    "D": "spatial scale",
    "q": "spatial decay exponent",
    "gamma": "magnitude scaling of spatial extent",
}


def _number(value: Any) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value != value:  # nan
        return "-"
    return f"{value:.4g}"


def estimate_rows(result: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """``(parameter, estimate, std. error, 95% interval, meaning)`` rows of a fit's JSON."""
    errors = result.get("standard_errors") or result.get("std_errors") or {}
    intervals = result.get("intervals_95") or {}
    names = [n for n in _MEANINGS if isinstance(result.get(n), int | float)
             and not isinstance(result.get(n), bool)]
    rows = []
    for name in names:
        estimate = float(result[name])
        se = errors.get(name)
        finite = se is not None and se == se and abs(float(se)) != float("inf")
        low: float | None = None
        high: float | None = None
        if intervals.get(name):
            low, high = intervals[name]
        elif finite and se is not None:
            low, high = estimate - 1.96 * float(se), estimate + 1.96 * float(se)
        interval = f"{_number(low)} .. {_number(high)}" if low is not None else "-"
        rows.append((name, _number(estimate), _number(se) if finite else "-", interval,
                     _MEANINGS[name]))
    return rows


def degenerate_notes(result: dict[str, Any]) -> list[str]:
    """Plain-language notes on estimates that sit on a bound or vanished."""
    details = result.get("details") or {}
    notes = []
    if details.get("triggering_vanished"):
        notes.append(
            f"The triggering vanished (theta = {_number(result.get('theta'))}, "
            "practically 0): these events show no detectable self-excitation at the "
            "scales fitted, so the fit is a background-only model. The other triggering "
            "parameters (omega, and sigma for sepp) then mean nothing (no intervals are "
            "given). To forecast these data, a background "
            "model such as kde or naive is as good; date-only times or coarse cells can "
            "also hide repeats, so try finer cells or other cut-offs before concluding "
            "there are none.")
    if details.get("sigma_at_bound"):
        bound = details.get("sigma_min_m")
        notes.append(
            f"sigma sits at its lower bound ({_number(bound)} m): triggered events fall "
            "closer to the events that triggered them than the fit may resolve (repeats "
            "at the same address, or coordinates rounded to the same points). Read sigma "
            f"as 'at most about {_number(bound)} m'; its interval is not reported. Lower "
            "the bound with -p sigma_min=... only if the coordinates are that precise.")
    if result.get("converged") is False:
        notes.append(
            "The fit stopped at its iteration limit without converging: the estimates may "
            "still move. Raise the limit (-p max_iter=... or -p max_iterations=...) and "
            "compare.")
    return notes


def print_estimates(result: dict[str, Any]) -> None:
    """Print a fit's estimates with 95% intervals as a table, then notes in words."""
    from rich.table import Table

    from placecast.cli._app import print_table

    rows = estimate_rows(result)
    if rows:
        table = Table(title=f"{result.get('model', 'model')} estimates "
                      "(95% intervals: estimate +- 1.96 standard errors)")
        for column in ("parameter", "estimate", "std. error", "95% interval", "meaning"):
            table.add_column(column, justify="left" if column in ("parameter", "meaning")
                             else "right")
        for row in rows:
            table.add_row(*row)
        print_table(table)
    for note in degenerate_notes(result):
        console.print(f"[bold yellow]note:[/bold yellow] {note}", highlight=False,
                      soft_wrap=True)
