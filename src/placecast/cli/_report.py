"""The ``report`` command: forecast (and optionally backtest) and write one offline HTML file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from placecast.cli._app import (
    EventsPath,
    command,
    console,
    load_events,
    with_event_options,
)
from placecast.cli._core import (
    ModelOpt,
    ParamOpt,
    parse_params,
    with_unit_options,
)
from placecast.exceptions import DataError, ParameterError

__all__: list[str] = []


def _read_table(path: Path, what: str) -> Any:
    import pandas as pd

    if not path.exists():
        raise DataError(f"{path}: no such {what} file.")
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path)
    except Exception as exc:
        raise DataError(f"{path}: could not read the {what} table ({exc}).") from None


def read_backtest(reference: Path) -> Any:
    """Read the backtest ``report --backtest`` names, as a ``BacktestResult``.

    ``reference`` is a file (``.csv``/``.parquet``, as ``backtest -o`` writes) or a store,
    ``DB#NAME`` or ``DB#ID`` (as ``backtest --save NAME --db DB`` keeps it).
    """
    from placecast.evaluate import BacktestResult
    from placecast.store import open_store, split_store_reference

    if reference.exists() or reference.suffix.lower() in (".csv", ".parquet"):
        return BacktestResult.read(reference)
    parts = split_store_reference(reference)
    if parts is None:
        raise DataError(f"{reference}: no such backtest file (give a .csv or .parquet file "
                        "that `placecast backtest -o` wrote, or DB#NAME for one kept with "
                        "`placecast backtest --save NAME --db DB`).")
    db, key = parts
    if "://" not in db and not Path(db).is_file():
        raise DataError(f"{db}: no such store (in --backtest {reference}).")
    store = open_store(db)
    try:
        saved = store.list_backtests()
        matches = [b for b in saved if str(b.id) == key or b.meta.get("name") == key]
        if not matches:
            names = sorted({str(b.meta["name"]) for b in saved if b.meta.get("name")})
            raise DataError(f"{db}: no saved backtest named or numbered {key!r} (names: "
                            f"{', '.join(names) or 'none'}).")
        by_id = [b for b in matches if str(b.id) == key]
        if not by_id and len(matches) > 1:
            raise DataError(f"{db}: {len(matches)} backtests are named {key!r} (ids "
                            f"{', '.join(str(b.id) for b in matches)}); give the id, "
                            f"{db}#{matches[0].id}.")
        return store.load_backtest((by_id or matches)[0].id)
    finally:
        store.close()


@command("report")
@with_event_options
@with_unit_options
def report_command(
    events_path: EventsPath,
    at: Annotated[str, typer.Option("--at", help="Forecast start (ISO date); the model sees "
                                    "only events before it.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")]
    = Path("report.html"),
    model: ModelOpt = "kde",
    horizon: Annotated[str, typer.Option("--horizon", help="Window length: 7d, 2w, 1M.")]
    = "7d",
    unit_spec: Any = None,
    param: ParamOpt = None,
    area: Annotated[str, typer.Option("--area", help="Area budget to flag: 0.25sqmi, 2km2 "
                                      "or 1% of the region.")] = "1%",
    start: Annotated[str | None, typer.Option("--start", help="First backtest origin: run a "
                                              "rolling backtest of --models.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Last backtest origin.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="Time between backtest origins "
                                             "(default: --horizon).")] = None,
    models: Annotated[str | None, typer.Option("--models", help="Models the backtest "
                                               "compares, comma-separated (default: --model "
                                               "and naive).")] = None,
    backtest: Annotated[Path | None, typer.Option(
        "--backtest", help="Backtest to compare models: the .csv or .parquet that `backtest "
        "-o` wrote, or DB#NAME (or DB#ID) kept with `backtest --save`.")] = None,
    clusters: Annotated[Path | None, typer.Option("--clusters", help="Clusters as GeoJSON "
                                                  "(WGS 84) with observed, expected, "
                                                  "p_value.")] = None,
    hotspots: Annotated[Path | None, typer.Option(
        "--hotspots", help="Emerging hot spots as `placecast hotspots -o` writes them "
        "(.geojson, .gpkg, .csv), or a table with columns unit_id, category.")]
    = None,
    model_card: Annotated[Path | None, typer.Option("--model-card", help="Model card "
                                                    "(Markdown, e.g. the audit's "
                                                    "model_card.md), rendered in the "
                                                    "report.")] = None,
    public: Annotated[bool, typer.Option("--public", help="Report for sharing: counts only "
                                         "for areas with at least --k events, no event "
                                         "points.")] = False,
    k: Annotated[int, typer.Option("--k", help="Minimum events per shown area with "
                                   "--public.")] = 5,
    title: Annotated[str | None, typer.Option("--title", help="Page title.")] = None,
    basemap: Annotated[Path | None, typer.Option(
        "--basemap", help="PMTiles file to draw under the map, inlined in the HTML "
        "(vector tiles in the Protomaps basemap schema, or raster tiles).")] = None,
    max_basemap_mb: Annotated[float, typer.Option(
        "--max-basemap-mb", min=0.001, help="Refuse a --basemap larger than this.")] = 30.0,
    reference: Annotated[list[Path] | None, typer.Option(
        "--reference", help="Vector file (districts, streets; any CRS) drawn on the map "
        "(repeatable).")] = None,
    event_options: dict[str, Any] | None = None,
) -> None:
    """Forecast and write a self-contained HTML report (map, plots, tables) that opens offline.

    The report has the forecast map with the top units within --area outlined, the hit
    rate over coverage for the forecast window when its events are in the data, a
    backtest comparison (--backtest, or --start/--end), clusters, emerging hot spots and
    a model card when given, and a data summary. --public hides areas with fewer than
    --k events and never draws event points. --basemap inlines a PMTiles basemap (the
    file grows by 4/3 of it) and --reference draws districts or streets for context.
    """
    from placecast.clusters import read_hotspots
    from placecast.pipeline import build_units, run_forecast
    from placecast.report import check_k, write_report

    if output.suffix.lower() not in (".html", ".htm"):
        raise ParameterError(f"{output}: the report is HTML; give an output ending in .html.")
    check_k(k)
    if (start is None) != (end is None):
        raise ParameterError("give both --start and --end for a backtest, or neither.")
    if models is not None and start is None:
        raise ParameterError("--models chooses the models of a backtest; give --start and "
                             "--end too.")
    if start is not None and backtest is not None:
        raise ParameterError("give either --start/--end (run a backtest) or --backtest FILE "
                             "(use one already run), not both.")
    from placecast.report import read_basemap, read_reference_layer

    # check the map context before the (slow) forecast
    checked_basemap = read_basemap(basemap) if basemap is not None else None
    max_basemap_bytes = int(max_basemap_mb * 1e6)
    if checked_basemap is not None and checked_basemap.n_bytes > max_basemap_bytes:
        raise ParameterError(
            f"--basemap {basemap} is {checked_basemap.n_bytes / 1e6:.1f} MB, more than "
            f"--max-basemap-mb {max_basemap_mb:g}: the whole archive goes into the HTML file. "
            "Cut a smaller area (`pmtiles extract IN OUT --bbox=... --maxzoom=14`) or raise "
            "--max-basemap-mb.")
    layers = [read_reference_layer(path) for path in reference or ()]
    events = load_events(events_path, **(event_options or {}))
    spec = unit_spec
    params = parse_params(param)
    with console.status("building area units..."):
        area_units = build_units(events, spec)
    with console.status(f"fitting {model} and forecasting..."):
        forecast = run_forecast(events, model=model, at=at, horizon=horizon, units=area_units,
                                model_params=params)
    results = None
    if backtest is not None:
        results = read_backtest(backtest)
    elif start is not None:
        from placecast.evaluate import run_backtest

        names = ([m.strip().lower() for m in models.split(",") if m.strip()] if models
                 else list(dict.fromkeys([model, "naive"])))
        with console.status(f"backtesting {', '.join(names)}..."):
            results = run_backtest(events, area_units, models=names,
                                   model_params={model: params} if model in names else None,
                                   start=start, end=end, step=step or horizon,
                                   horizons=[horizon], area=area)
    card = None
    if model_card is not None:
        from placecast.audit import model_card_text

        card = model_card_text(model_card)  # an audit's folder or card files, or any text
    write_report(
        output, forecast, events=events, area=area, backtest=results,
        clusters=clusters, hotspots=read_hotspots(hotspots) if hotspots else None,
        model_card=card, public=public, k=k, title=title, basemap=checked_basemap,
        reference_layers=layers, max_basemap_bytes=max_basemap_bytes,
    )
    kind = f"public report (k={k})" if public else "report"
    inlined = (f", basemap {checked_basemap.path.name} inlined: "
               f"{checked_basemap.n_bytes / 1e6:.1f} MB" if checked_basemap else "")
    console.print(f"wrote {kind} {output} ({output.stat().st_size / 1e6:.1f} MB{inlined})")
