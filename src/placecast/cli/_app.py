"""The Typer application, shared options and error handling for every command.

Commands live in sibling modules (``_core.py``, ...) and register themselves on ``app``.
Every ``PlacecastError`` becomes a one-paragraph message on stderr and exit status 2.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from placecast.events import Events
from placecast.exceptions import PlacecastError, render_message

__all__ = [
    "EVENT_OPTIONS",
    "STORE_EVENT_OPTIONS",
    "app",
    "command",
    "console",
    "err_console",
    "load_events",
    "main",
    "print_table",
    "shared_options",
    "store_reference",
    "with_event_options",
]

app = typer.Typer(
    name="placecast",
    help="Place-based forecasting, clustering and auditing of point events "
         "(what, where, when - never who).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",  # docstring paragraphs reflow; `code` shows as code
)
console = Console()
err_console = Console(stderr=True)


def _show_flags_as_flags() -> None:
    """Make help list a flag as ``--resume``, not ``--resume <bool>``.

    Typer 0.2x prints a ``<bool>`` type beside every flag, as if it took a value
    (``--once true`` then fails with "unexpected extra argument"). Flags parse as flags;
    only their help line is changed here.
    """
    from typer.core import TyperOption

    original = getattr(TyperOption, "display_type_rich", None)
    if original is None or getattr(original, "placecast_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return original(self, ctx)

    display_type_rich.placecast_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_show_flags_as_flags()


def _version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("placecast")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            text = "unknown (not installed)"
        typer.echo(f"placecast {text}")
        raise typer.Exit()


@app.callback()
def _global_options(
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="No progress bars or informational lines on stderr (errors "
        "and results are still printed).")] = False,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the placecast version and exit.")] = False,
) -> None:
    """Apply the global options (``--quiet``, ``--version``) before any command."""
    from placecast.cli._progress import set_quiet

    set_quiet(quiet)

# ---------------------------------------------------------------------- shared options
EventsPath = Annotated[Path, typer.Argument(help="Events file: .csv, .parquet, .geojson, "
                                            ".gpkg, .shp or .fgb; or a stored dataset, "
                                            "DB#DATASET (placecast.duckdb#burglary), or "
                                            "omit it and give --db FILE --dataset NAME.",
                                            show_default=False)]
TimeCol = Annotated[str | None, typer.Option("--time", help="Time column (or two joined: "
                                             "'date,time'). Default: auto-detect.")]
XCol = Annotated[str | None, typer.Option("--x", help="Projected x column (needs --crs).")]
YCol = Annotated[str | None, typer.Option("--y", help="Projected y column (needs --crs).")]
LonCol = Annotated[str | None, typer.Option("--lon", help="Longitude column (WGS 84).")]
LatCol = Annotated[str | None, typer.Option("--lat", help="Latitude column (WGS 84).")]
CategoryCol = Annotated[str | None, typer.Option("--category", help="Category column.")]
WeightCol = Annotated[str | None, typer.Option("--weight", help="Weight column (>= 0).")]
CrsOpt = Annotated[str | None, typer.Option("--crs", help="CRS of --x/--y, e.g. EPSG:2913; "
                                            "local:m or local:km for a planar grid.")]
TimeFormatOpt = Annotated[str | None, typer.Option(
    "--time-format", help="strftime format such as '%m/%d/%Y %H:%M', or "
    "'days since 1960-01-01'. Default ISO 8601.")]
TimezoneOpt = Annotated[str | None, typer.Option(
    "--timezone", help="IANA time zone: offsets are converted to it; naive times are in it.")]
CategoriesOpt = Annotated[str | None, typer.Option(
    "--categories", help="Keep only these categories, comma-separated.")]
SinceOpt = Annotated[str | None, typer.Option("--since", help="Keep events at or after this "
                                              "date.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Keep events before this date.")]
EncodingOpt = Annotated[str | None, typer.Option(
    "--encoding", help="Text encoding of a CSV file, e.g. latin-1 or cp1252. Default UTF-8.")]
SepOpt = Annotated[str | None, typer.Option(
    "--sep", help="Field delimiter of a CSV file, e.g. ';' or '\\t'. Default ',' (tab for "
    ".tsv).")]
SkipBadOpt = Annotated[bool, typer.Option(
    "--skip-bad-rows", help="Drop rows with a bad date or coordinate (counted and reported) "
    "instead of stopping at the first.")]


EventsDbOpt = Annotated[str | None, typer.Option(
    "--db", help="Store to read the events from (with --dataset) instead of an events file: "
    "a DuckDB file or postgresql://... URL.")]
EventsDatasetOpt = Annotated[str | None, typer.Option(
    "--dataset", help="Dataset in --db (or $PLACECAST_DB) to read the events from.")]
#: Where stored events come from, for commands that read events: ``--db FILE --dataset
#: NAME`` is the same as the events argument ``FILE#NAME``.
STORE_EVENT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "db": (EventsDbOpt, None),
    "dataset": (EventsDatasetOpt, None),
}

#: The event-reading options every command that reads events shares: name -> (type, default).
EVENT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "time": (TimeCol, None),
    "x": (XCol, None),
    "y": (YCol, None),
    "lon": (LonCol, None),
    "lat": (LatCol, None),
    "category": (CategoryCol, None),
    "weight": (WeightCol, None),
    "crs": (CrsOpt, None),
    "time_format": (TimeFormatOpt, None),
    "timezone": (TimezoneOpt, None),
    "categories": (CategoriesOpt, None),
    "since": (SinceOpt, None),
    "until": (UntilOpt, None),
    "encoding": (EncodingOpt, None),
    "sep": (SepOpt, None),
    "skip_bad_rows": (SkipBadOpt, False),
}


def shared_options(
    options: dict[str, tuple[Any, Any]], name: str,
    combine: Callable[[dict[str, Any]], Any] = dict,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a decorator that gives a command a shared group of options.

    The ``options`` (name -> (annotated type, default)) are appended to the command's
    parameters for Typer; the values the user gave are collected, passed through
    ``combine`` and handed to the command as the one keyword argument ``name``.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(function, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != name]
        keyword_only = any(p.kind is inspect.Parameter.KEYWORD_ONLY for p in own)
        shared = [inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY if keyword_only
                                    else inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=default, annotation=annotation)
                  for option, (annotation, default) in options.items()]

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            given = {option: kwargs.pop(option) for option in options if option in kwargs}
            return function(*args, **{name: combine(given)}, **kwargs)

        parameters = own + shared
        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        wrapper.__annotations__["return"] = signature.return_annotation
        return wrapper

    return decorate


def with_event_options(function: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared event-reading options as one dict, ``event_options``.

    The dict is ready for ``load_events(events_path, **event_options)``. Put it under
    ``@command(...)``. The command's ``events_path`` argument becomes optional, and
    ``--db FILE --dataset NAME`` (options the command does not have itself) name a stored
    dataset instead; a command with its own ``--db`` (``forecast --save``) reads
    ``--dataset`` from that store. Giving both an events file and ``--dataset``, or only
    one of ``--db``/``--dataset``, is refused with a message saying what to give.
    """
    signature = inspect.signature(function, eval_str=True)
    params = signature.parameters
    if "dataset" in params or "events_path" not in params:
        # ``ingest``: its --db/--dataset say where events go, not where they come from.
        return shared_options(EVENT_OPTIONS, "event_options")(function)
    store_options = {k: v for k, v in STORE_EVENT_OPTIONS.items() if k not in params}

    @functools.wraps(function)
    def resolve(*args: Any, **kwargs: Any) -> Any:
        options = dict(kwargs.pop("event_options", None) or {})
        db = options.pop("db", None)
        dataset = options.pop("dataset", None)
        if "db" not in store_options and dataset is not None:
            db = kwargs.get("db")
        if db is not None or dataset is not None:
            reference = store_reference(kwargs.get("events_path"), db, dataset)
            kwargs["events_path"] = Path(f"{reference[0]}#{reference[1]}")
            options["store"] = reference
        return function(*args, event_options=options, **kwargs)

    events_path = params["events_path"]
    if events_path.default is inspect.Parameter.empty:
        metadata = getattr(events_path.annotation, "__metadata__", ())
        events_path = events_path.replace(
            default=None, annotation=Annotated[(Path | None, *metadata)]
            if metadata else Path | None)
    # Keyword-only (Typer passes every value by name), so that the now optional events
    # argument may come before parameters without a default.
    parameters = [(events_path if p.name == "events_path" else p).replace(
        kind=inspect.Parameter.KEYWORD_ONLY) for p in params.values()]
    resolve.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters)
    resolve.__annotations__ = {p.name: p.annotation for p in parameters}
    resolve.__annotations__["return"] = signature.return_annotation
    return shared_options({**EVENT_OPTIONS, **store_options}, "event_options")(resolve)


def store_reference(path: Path | None, db: str | None, dataset: str | None
                    ) -> tuple[str, str]:
    """``(db, dataset)`` from ``--db``/``--dataset``, refusing conflicts and half of a pair.

    A missing ``--db`` is taken from ``$PLACECAST_DB`` when set.

    Raises
    ------
    ParameterError
        When an events file is given too, or ``--dataset`` is missing, or ``--db`` is
        missing and ``$PLACECAST_DB`` is not set.
    """
    import os

    from placecast.exceptions import ParameterError

    if dataset is None:
        raise ParameterError(
            f"`db` {db} needs `dataset` NAME: the dataset in that store to read the events "
            f"from (list them with `placecast datasets --db {db}`).", param=("dataset", "db"))
    if db is None:
        db = os.environ.get("PLACECAST_DB")
        if not db:
            raise ParameterError(
                f"`dataset` {dataset} needs `db` FILE (a DuckDB file or postgresql://... "
                "URL) or $PLACECAST_DB: the store that holds it.", param=("db", "dataset"))
    if path is not None:
        raise ParameterError(
            f"give the events once: either the events argument ({path}) or `db` {db} "
            f"`dataset` {dataset}, not both.", param=("db", "dataset"))
    return db, dataset


def load_events(
    path: Path | None,
    *,
    time: str | None = None,
    x: str | None = None,
    y: str | None = None,
    lon: str | None = None,
    lat: str | None = None,
    category: str | None = None,
    weight: str | None = None,
    crs: str | None = None,
    time_format: str | None = None,
    timezone: str | None = None,
    categories: str | None = None,
    since: str | None = None,
    until: str | None = None,
    encoding: str | None = None,
    sep: str | None = None,
    skip_bad_rows: bool = False,
    quiet: bool = False,
    incident_id: str | None = None,
    store: tuple[str, str] | None = None,
) -> Events:
    """Read events with the shared CLI options and report what was detected or dropped.

    ``path`` may name a dataset in a store, ``DB#DATASET`` (``placecast.duckdb#burglary``,
    ``postgresql://user@host/db#burglary``), or ``store`` may give it as ``(db, dataset)``
    (from ``--db``/``--dataset``): its events are loaded with ``since``, ``until`` and
    ``categories`` applied; column and CRS options belong to ``placecast ingest``.
    """
    from placecast.exceptions import ParameterError
    from placecast.io import ColumnMap, read_events
    from placecast.store import split_store_reference

    reference: tuple[str, str] | None = store
    if store is None:
        if path is None:
            raise ParameterError("no events given: pass an events file (or DB#DATASET), or "
                                 "`db` FILE `dataset` NAME.", param=("path", "db", "dataset"))
        reference = split_store_reference(path)
    if reference is not None:
        return _load_store_events(
            reference, categories=categories, since=since, until=until, quiet=quiet,
            ignored={"time": time, "x": x, "y": y, "lon": lon, "lat": lat,
                     "category": category, "weight": weight, "crs": crs,
                     "time_format": time_format, "timezone": timezone,
                     "encoding": encoding, "sep": sep,
                     "skip_bad_rows": skip_bad_rows or None, "incident_id": incident_id})
    assert path is not None  # without a store reference, the events come from a file
    events = read_events(
        path,
        columns=ColumnMap(time=time, x=x, y=y, lon=lon, lat=lat, category=category,
                          weight=weight, incident_id=incident_id),
        crs=crs,
        time_format=time_format,
        timezone=timezone,
        categories=[c.strip() for c in categories.split(",")] if categories else None,
        since=since,
        until=until,
        skip_bad_rows=skip_bad_rows,
        encoding=encoding,
        sep=sep,
    )
    from placecast.cli._progress import is_quiet

    quiet = quiet or is_quiet()
    report = events.report
    if report is not None and not quiet:
        if report.detected:
            used = ", ".join(f"{f}={report.columns[f]}" for f in report.detected)
            err_console.print(f"[dim]columns detected: {used}[/dim]")
        err_console.print(f"[dim]CRS: {report.crs_note}[/dim]")
        if report.dropped:
            detail = "; ".join(f"{n} {reason}" for reason, n in report.dropped.items())
            err_console.print(f"[yellow]dropped {report.n_dropped} bad rows: {detail}[/yellow]")
    return events


def _load_store_events(reference: tuple[str, str], *, categories: str | None,
                       since: str | None, until: str | None, quiet: bool,
                       ignored: dict[str, Any]) -> Events:
    """Load a stored dataset for ``load_events``."""
    from placecast.exceptions import ParameterError
    from placecast.store import open_store

    given = [name for name, value in ignored.items() if value is not None]
    if given:
        raise ParameterError(
            f"{', '.join(f'`{name}`' for name in given)} cannot be used with a stored dataset "
            f"({reference[0]}#{reference[1]}): columns, CRS and time zone were fixed when it "
            "was ingested. Drop them, or give the events file instead.", param=given
        )
    from placecast.cli._progress import is_quiet

    with open_store(reference[0], create=False) as store:
        events = store.load_events(
            reference[1], since=since, until=until,
            categories=[c.strip() for c in categories.split(",")] if categories else None)
    if not (quiet or is_quiet()):
        err_console.print(f"[dim]loaded {len(events):,} events from dataset "
                          f"{reference[1]!r} in {reference[0]}[/dim]")
    return events


def print_table(table: Any, *, to: Console | None = None) -> None:
    """Print a rich table without squeezing it, on a terminal or not.

    Off a terminal (a pipe, a file, CI logs) rich assumes 80 columns and wraps cells and
    titles into narrow columns; the table is printed at its natural width instead. A title
    wider than the table is printed as its own line above it rather than wrapped into the
    table's width.
    """
    from rich.measure import Measurement
    from rich.text import Text

    target = to or console
    natural = Measurement.get(target, target.options.update_width(10_000), table).maximum
    if not target.is_terminal:
        target = Console(file=target.file, width=max(natural, 80), no_color=True,
                         highlight=False)
    title = table.title
    if title is not None and Text.from_markup(str(title)).cell_len > min(natural,
                                                                         target.width):
        target.print(Text.from_markup(str(title), style="italic"), soft_wrap=True)
        table.title = None
        try:
            target.print(table)
        finally:
            table.title = title
        return
    target.print(table)


#: Python parameter names whose command-line flag is not ``--`` + the name with dashes.
FLAGS: dict[str, str] = {
    "cell_size": "--cell", "area_budget": "--area", "model_params": "--param",
    "incident_id": "--id", "path": "EVENTS", "horizons": "--horizon",
    "hotspot_area": "--area",  # io.export_forecast
    "mark": "--magnitude",  # ColumnMap.mark: only `fit --model etas_marked` reads it
    "polygons": "--units-file",  # UnitSpec.polygons
    "covariates": "--covariate",  # BoostedPoisson.covariates, one layer per flag
    "params_file": "--params",  # simulate: a fit's JSON
}


def flag_for(param: str) -> str:
    """The command-line flag for a library parameter name (``"n_origins"`` -> ``--n-origins``)."""
    return FLAGS.get(param, "--" + param.replace("_", "-"))


def command(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a command on ``app``; ``PlacecastError`` inside it becomes exit status 2.

    ``KeyboardInterrupt`` (Ctrl-C) becomes exit status 130 without a traceback; outputs
    are written atomically, so an interrupted command leaves none half-written.

    Use instead of ``@app.command()`` so that every command reports bad input the same way
    (one paragraph on stderr, no traceback, status 2), under ``CliRunner`` too.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*f_args: Any, **f_kwargs: Any) -> Any:
            try:
                return function(*f_args, **f_kwargs)
            except PlacecastError as exc:
                # escaped: "pip install 'placecast[dask]'" must keep its [dask]
                text = render_message(exc, flag_for)
                err_console.print(f"[bold red]error:[/bold red] {escape(text)}",
                                  highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt:  # Ctrl-C: no traceback, the shell's status 128 + 2
                err_console.print("[yellow]interrupted; nothing was written.[/yellow]")
                raise typer.Exit(130) from None

        app.command(*args, **kwargs)(wrapper)
        return wrapper

    return decorate


def main() -> None:
    """Entry point of the ``placecast`` command."""
    import placecast.cli  # noqa: F401  (registers the commands)

    app()
