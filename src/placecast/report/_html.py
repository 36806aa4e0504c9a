"""The offline HTML report: one self-contained file with the map, plots and tables.

Leaflet (JavaScript, CSS and its images) is inlined from the ``XStatic-Leaflet`` package,
plots are inline SVG, and the forecast cells are embedded as GeoJSON in WGS 84: the file
opens from disk with no network and never asks for a basemap tile.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from placecast.evaluate import (
    COLUMNS,
    SQUARE_MILE_M2,
    BacktestResult,
    hit_rate_from_counts,
    pai_from_counts,
    pei_star_from_counts,
    resolve_area,
)
from placecast.events import Events, LoadReport
from placecast.exceptions import DataError, ParameterError, UndefinedMetricWarning
from placecast.forecast import Forecast
from placecast.report._backtest import as_result, backtest_tables
from placecast.report._maplayers import (
    DEFAULT_MAX_INLINE_BYTES,
    Basemap,
    ReferenceLayer,
    inline_basemap,
    read_basemap,
    read_reference_layer,
    vendor_dir,
)
from placecast.report._plots import hit_rate_curve_svg, pai_over_origins_svg
from placecast.report._privacy import DEFAULT_K, PublicAreas, check_k, public_areas
from placecast.units import Units, aggregate

__all__ = ["BACKTEST_COLUMNS", "build_report", "compare_models", "write_report"]

#: Columns of a backtest results table (``placecast.evaluate.run_backtest``).
BACKTEST_COLUMNS = COLUMNS
#: Colour ramp of the forecast classes, low to high (ColorBrewer YlOrRd, 8 classes).
_RAMP = ("#ffffcc", "#ffeda0", "#fed976", "#feb24c", "#fd8d3c", "#fc4e2a", "#e31a1c",
         "#b10026")
#: Cell shares (from the top) that bound the colour classes.
_TOP_SHARES = (0.005, 0.01, 0.02, 0.05, 0.10, 0.25, 0.50)
_HOTSPOT_COLOURS = ("#6a4c93", "#1982c4", "#8ac926", "#ff595e", "#ffca3a", "#00798c",
                    "#8c564b", "#e377c2")


# ---------------------------------------------------------------------- assets
@cache
def _leaflet_assets() -> tuple[str, str]:
    """Leaflet's JS and CSS, with the CSS images turned into ``data:`` URIs."""
    try:
        import xstatic.pkg.leaflet as xleaflet
    except ImportError:  # pragma: no cover - a declared dependency
        raise ParameterError("the HTML report needs the XStatic-Leaflet package: "
                             "pip install XStatic-Leaflet") from None
    base = Path(xleaflet.BASE_DIR)
    script = (base / "leaflet.js").read_text(encoding="utf-8")
    script = re.sub(r"//# sourceMappingURL=\S+", "", script)
    css = (base / "leaflet.css").read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        image = base / match.group(1)
        data = base64.b64encode(image.read_bytes()).decode("ascii")
        return f"url(data:image/png;base64,{data})"

    css = re.sub(r"url\((images/[\w.-]+\.png)\)", inline, css)
    return script.replace("</script", "<\\/script"), css


@cache
def _map_context_script() -> str:
    """The vendored pmtiles and protomaps-leaflet builds and placecast's basemap.js."""
    parts = []
    for path in (vendor_dir() / "pmtiles.js", vendor_dir() / "protomaps-leaflet.js",
                 vendor_dir().parent / "basemap.js"):
        text = re.sub(r"//# sourceMappingURL=\S+", "", path.read_text(encoding="utf-8"))
        parts.append(text.replace("</script", "<\\/script"))
    return "\n;\n".join(parts)


@cache
def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("placecast.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = _fmt_number
    return env.get_template("report.html.j2")


# ---------------------------------------------------------------------- formatting
def _fmt_number(value: Any, digits: int = 3) -> str:
    """Numbers for tables: integers with separators, floats to ``digits`` significant."""
    if value is None:
        return "-"
    if isinstance(value, (bool, np.bool_)):
        return str(value)
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not np.isfinite(v):
            return "n/a"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v):,}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.{digits}g}"
    return str(value)


def _area_text(area_m2: float) -> str:
    return f"{area_m2 / SQUARE_MILE_M2:.3g} sq mi ({area_m2 / 1e6:.3g} km²)"


def _frame_table(frame: pd.DataFrame) -> dict[str, Any]:
    """Turn a DataFrame into ``{"columns": [...], "rows": [[str, ...], ...]}`` for the template."""
    rows = [[_fmt_number(v) for v in row] for row in frame.itertuples(index=False)]
    return {"columns": [str(c) for c in frame.columns], "rows": rows}


# ---------------------------------------------------------------------- geometry
def _to_display(units: Units, geometries: np.ndarray) -> tuple[np.ndarray, bool]:
    """Geometries in WGS 84 (or metres on a local grid), rounded for a compact file."""
    sref = units.spatial_reference
    if sref.is_local:
        return shapely.transform(geometries, lambda c: np.round(c, 1)), True

    def convert(coords: np.ndarray) -> np.ndarray:
        lon, lat = sref.to_crs_coordinates(coords[:, 0], coords[:, 1], "EPSG:4326")
        return np.round(np.column_stack([lon, lat]), 5)

    return shapely.transform(geometries, convert), False


def _features(geometries: np.ndarray, properties: Sequence[dict[str, Any]]) -> str:
    """Write a GeoJSON FeatureCollection as JSON text (geometries in display units)."""
    texts = shapely.to_geojson(geometries)
    parts = [f'{{"type":"Feature","geometry":{g},"properties":{json.dumps(p)}}}'
             for g, p in zip(texts, properties, strict=True)]
    return '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"


def _classes(values: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Colour class of each value (0 = lowest) and the legend entries, highest first."""
    finite = np.sort(values)[::-1]
    breaks: list[float] = []
    for share in reversed(_TOP_SHARES):
        if len(finite) == 0:
            break
        index = min(int(np.ceil(share * len(finite))) - 1, len(finite) - 1)
        value = float(finite[max(index, 0)])
        if value > 0 and (not breaks or value > breaks[-1]):
            breaks.append(value)
    breaks_arr = np.asarray(breaks)
    cls = np.searchsorted(breaks_arr, values, side="right")  # 0 .. len(breaks)
    # the lowest class is always the palest colour and the highest the darkest
    ramp_index = (np.rint(np.arange(len(breaks) + 1) * (len(_RAMP) - 1) / len(breaks))
                  .astype(int) if breaks else np.zeros(1, dtype=int))
    colour_index = ramp_index[cls]
    legend = []
    labels = _break_labels(breaks)
    for c in range(len(breaks), -1, -1):
        n = int((cls == c).sum())
        if not breaks:
            text = "all units"
        elif c == 0:
            text = f"below {labels[0]}"
        elif c == len(breaks):
            text = f"{labels[-1]} or more"
        else:
            text = f"{labels[c - 1]} to {labels[c]}"
        legend.append({"colour": _RAMP[ramp_index[c]], "text": text, "n": n,
                       "share": n / len(values) if len(values) else 0.0})
    return colour_index, legend


def _break_labels(breaks: Sequence[float]) -> list[str]:
    """Class breaks as short numbers: two significant digits, or more where needed.

    Neighbouring breaks never read the same.

    >>> _break_labels([0.012345, 0.0251, 0.6789, 1234.5])
    ['0.012', '0.025', '0.68', '1,200']
    >>> _break_labels([0.1212, 0.1234])
    ['0.121', '0.123']
    """
    for digits in range(2, 7):
        texts = [_significant(v, digits) for v in breaks]
        if len(set(texts)) == len(texts):
            return texts
    return [repr(float(v)) for v in breaks]


def _significant(value: float, digits: int) -> str:
    rounded = float(f"{value:.{digits}g}")
    if rounded == int(rounded) and abs(rounded) < 1e15:
        return f"{int(rounded):,}"
    return f"{rounded:,.{max(digits - 1 - int(np.floor(np.log10(abs(rounded)))), 0)}f}"


# ---------------------------------------------------------------------- backtest
def compare_models(backtest: pd.DataFrame | BacktestResult, reference: str | None = None,
                   metrics: Sequence[str] = ("pai", "log_score")) -> pd.DataFrame:
    """Paired Wilcoxon signed-rank tests of each model against a reference model.

    A table view of :meth:`placecast.evaluate.BacktestResult.compare`, placecast's one
    paired comparison (same pairing, ties rule and test as the ``backtest`` command, its
    ``backtest.html`` and the service): rows are paired on origin within each horizon.

    Parameters
    ----------
    backtest : DataFrame or BacktestResult
        Backtest results (``origin``, ``model`` and the metric columns; one row per
        origin, horizon and model).
    reference : str, optional
        Reference model; default ``BacktestResult.compare``'s rule: the model with the
        highest mean of each metric (ties: the first model in the table).
    metrics : sequence of str
        Metrics to compare (those present in ``backtest``).

    Returns
    -------
    DataFrame
        One row per (model, metric, horizon): ``model, reference, metric, horizon,
        n_pairs, median_difference`` (model minus reference), ``mean_difference``,
        ``statistic`` (Wilcoxon W) and ``p_value`` (two-sided; ``nan`` with fewer than two
        pairs or no non-zero difference).

    References
    ----------
    Wilcoxon, F. (1945). Individual comparisons by ranking methods. *Biometrics
    Bulletin* 1(6), 80-83.
    """
    result = as_result(backtest)
    rows = []
    for metric in (m for m in metrics if m in result.records):
        for horizon in result.horizons:
            for c in result.compare(metric, horizon, reference=reference):
                rows.append({"model": c.other, "reference": c.model, "metric": metric,
                             "horizon": horizon, "n_pairs": c.n_pairs,
                             "median_difference": -c.median_difference,
                             "mean_difference": -c.mean_difference,
                             "statistic": c.statistic, "p_value": c.p_value})
    return pd.DataFrame(rows, columns=["model", "reference", "metric", "horizon", "n_pairs",
                                       "median_difference", "mean_difference", "statistic",
                                       "p_value"])


# ---------------------------------------------------------------------- inputs
def _resolve_area(area: float | str | None, units: Units) -> tuple[float, str]:
    """The budget in m² (``evaluate.resolve_area``: checked against the units) and its text."""
    if area is None:
        area = "1%"
    budget = resolve_area(area, units)
    return budget, area if isinstance(area, str) else _area_text(budget)


def _hotspot_series(hotspots: Any, units: Units) -> pd.Series:
    if isinstance(hotspots, pd.DataFrame):
        if not {"unit_id", "category"} <= set(hotspots.columns):
            raise DataError("emerging hot spots need columns unit_id and category (has: "
                            f"{', '.join(map(str, hotspots.columns))}).")
        series = pd.Series(hotspots["category"].to_numpy(),
                           index=hotspots["unit_id"].astype(str))
    elif isinstance(hotspots, (pd.Series, Mapping)):
        series = pd.Series(hotspots)
        series.index = series.index.astype(str)
    else:
        raise ParameterError("hotspots must be a DataFrame (unit_id, category), a Series or "
                             f"a dict unit_id -> category, got {type(hotspots).__name__}.")
    known = set(map(str, units.unit_id))
    unknown = [u for u in series.index if u not in known]
    if unknown:
        raise DataError(f"emerging hot spots name {len(unknown)} unit(s) not in the forecast's "
                        f"units, e.g. {unknown[0]!r}; use the same cell size and region.")
    return series.astype(str)


def _cluster_features(clusters: Any) -> list[dict[str, Any]]:
    if isinstance(clusters, (str, os.PathLike)):
        path = Path(clusters)
        try:
            clusters = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: could not read the clusters as GeoJSON ({exc}).") from None
    if isinstance(clusters, Mapping):
        features = clusters.get("features")
        if features is None:
            raise DataError("clusters must be a GeoJSON FeatureCollection (no 'features').")
    else:
        features = list(clusters)
    out = []
    for i, feature in enumerate(features):
        props = dict(feature.get("properties") or {})
        if feature.get("geometry") is None:
            raise DataError(f"cluster {i + 1} has no geometry.")

        def pick(*names: str, props: dict[str, Any] = props) -> Any:
            for name in names:
                if name in props:
                    return props[name]
            return None

        out.append({"geometry": feature["geometry"], "id": pick("id", "cluster_id") or i + 1,
                    "observed": pick("observed", "n_observed", "n_events"),
                    "expected": pick("expected", "n_expected"),
                    "p_value": pick("p_value", "p-value", "pvalue", "p")})
    return out


@dataclass(frozen=True)
class _MapData:
    payload: str
    legend: list[dict[str, Any]]
    n_drawn: int
    n_points: int
    local: bool


# ---------------------------------------------------------------------- the report
def build_report(
    forecast: Forecast,
    *,
    events: Events | None = None,
    summary: Mapping[str, Any] | None = None,
    load_report: LoadReport | None = None,
    area: float | str | None = None,
    backtest: Any = None,
    reference_model: str | None = None,
    clusters: Any = None,
    hotspots: Any = None,
    audit: Mapping[str, pd.DataFrame] | None = None,
    model_card: str | None = None,
    public: bool = False,
    k: int = DEFAULT_K,
    title: str | None = None,
    basemap: Basemap | str | os.PathLike[str] | None = None,
    reference_layers: Sequence[ReferenceLayer | str | os.PathLike[str]] = (),
    max_basemap_bytes: int = DEFAULT_MAX_INLINE_BYTES,
) -> str:
    """Render a self-contained HTML report of a forecast and whatever else is available.

    Parameters
    ----------
    forecast : Forecast
        The forecast to map (required).
    events : Events, optional
        The events behind it. Gives the data summary, the per-cell counts (needed for
        ``public``) and the events observed in the forecast window (hit rate, PAI, PEI*).
    summary : dict, optional
        ``Events.summary()`` when ``events`` are not given.
    load_report : LoadReport, optional
        How the events were read (rows, dropped rows); default ``events.report``.
    area : float or str, optional
        Flagged-area budget: m², or a quantity such as ``"0.25sqmi"`` or ``"1%"`` of the
        region (default ``"1%"``). The top units within it are outlined.
    backtest : DataFrame or BacktestResult, optional
        Backtest results (``placecast.evaluate.run_backtest``) or its table with columns
        ``origin, horizon, model, n_events, n_flagged_units, flagged_area, region_area,
        hits, hit_rate, pai, pei_star, log_score`` (at least ``origin, model, hit_rate,
        pai``).
    reference_model : str, optional
        Model the paired tests compare against; default the best mean PAI.
    clusters : FeatureCollection dict, list of features or path, optional
        Clusters in WGS 84 with properties ``observed``, ``expected``, ``p_value``.
    hotspots : DataFrame, Series or dict, optional
        Emerging hot-spot category per unit id.
    audit : dict of str -> DataFrame, optional
        Audit tables, shown under their titles.
    model_card : str, optional
        Model card text (plain text; blank lines separate paragraphs).
    public : bool
        Report for sharing: counts only for areas of at least ``k`` events (smaller grid
        cells merged into blocks, the rest left out), no event points.
    k : int
        Minimum events per shown area in a public report (default 5).
    title : str, optional
        Page title.
    basemap : Basemap or path, optional
        PMTiles archive drawn under the map (:func:`placecast.report._maplayers.read_basemap`).
        The whole archive is inlined in the HTML (base64: the file grows by 4/3 of it).
    reference_layers : sequence of ReferenceLayer or paths
        Vector files (districts, streets; any CRS) drawn as outlines for context.
    max_basemap_bytes : int
        Refuse a larger basemap (default 30 MB).

    Returns
    -------
    str
        The HTML document.

    Raises
    ------
    ParameterError
        If ``public`` is asked without ``events`` or ``k`` is not a positive integer.
    DataError
        If a backtest table, cluster or hot-spot input lacks what the report needs, or a
        basemap or reference layer cannot be read.
    ParameterError
        If the basemap is larger than ``max_basemap_bytes``, or map context is asked for
        units in local coordinates (no real-world CRS to place it).
    """
    if not isinstance(forecast, Forecast):
        raise ParameterError(f"build_report needs a Forecast, got {type(forecast).__name__}.")
    k = check_k(k)
    if public and events is None:
        raise ParameterError("a public report needs the events, to count them per cell and "
                             "hide cells with fewer than k; pass events=...")
    units = forecast.units
    window = forecast.window
    # validate every input before the (slow) map is built
    result = as_result(backtest) if backtest is not None else None
    frame = result.records if result is not None else None
    hotspot_series = _hotspot_series(hotspots, units) if hotspots is not None else None
    cluster_list = _cluster_features(clusters) if clusters is not None else None
    context = _map_context(units, basemap, reference_layers, max_basemap_bytes)
    budget, budget_text = _resolve_area(area, units)
    flagged = forecast.top_units(budget)
    is_flagged = np.zeros(len(units), dtype=bool)
    is_flagged[flagged] = True

    counts = observed = window_events = None
    if events is not None:
        index = units.assign(events.x, events.y)
        counts = aggregate(events, units, unit_index=index, weighted=False)
        in_window = (events.time >= window.start) & (events.time < window.end)
        window_events = events.select(in_window & (index >= 0))
        observed = aggregate(window_events, units, weighted=False)
        load_report = load_report if load_report is not None else events.report
        summary = events.summary()
    privacy = public_areas(units, counts, k) if public and counts is not None else None

    headline = _headline(forecast, budget, budget_text, flagged, observed,
                         k if public else None)
    map_data = _map_data(forecast, is_flagged, counts, observed, window_events, privacy,
                         hotspot_series, cluster_list, k)

    sections: dict[str, Any] = dict.fromkeys(
        ("backtest", "clusters", "hotspots", "audit", "model_card"))
    plots: dict[str, str] = {}
    # a public report draws no per-window curve: its steps would place single events in cells
    curve = hit_rate_curve_svg(forecast.intensity, units.area, None if public else observed,
                               units.region_area,
                               budget_area=budget, model=forecast.model, backtest=frame)
    if curve:
        plots["curve"] = curve
    if result is not None and frame is not None and len(frame):
        # the reference rule of BacktestResult.compare: the model this report is about
        # when the backtest has it, else the winner
        reference = reference_model or (forecast.model if forecast.model in result.models
                                         else None)
        tables = backtest_tables(result, reference)
        tests = tables["comparisons"]
        sections["backtest"] = {
            "summary": {"columns": list(tables["summary"].columns),
                        "rows": tables["summary"].to_numpy().tolist()},
            "tests": ({"columns": list(tests.columns), "rows": tests.to_numpy().tolist()}
                      if len(tests) else None),
            "reference": (reference or ", ".join(dict.fromkeys(tests["model"])))
            if len(tests) else None,
            "n_origins": int(frame["origin"].nunique()),
            "span": f"{frame['origin'].min():%Y-%m-%d} .. {frame['origin'].max():%Y-%m-%d}",
        }
        pai_plot = pai_over_origins_svg(frame)
        if pai_plot:
            plots["pai"] = pai_plot
    if cluster_list is not None:
        sections["clusters"] = _clusters_section(cluster_list, public, k)
    if hotspot_series is not None:
        table = hotspot_series.value_counts().rename_axis("category").reset_index(name="units")
        sections["hotspots"] = _frame_table(table)
    if audit:
        sections["audit"] = [{"title": str(name), "table": _frame_table(pd.DataFrame(frame))}
                             for name, frame in audit.items()]
    if model_card:
        sections["model_card"] = render_markdown(model_card)

    script, css = _leaflet_assets()
    if context["payload"]:
        script = script + "\n;\n" + _map_context_script()
    return str(_template().render(
        context=context,
        title=title or f"placecast report: {forecast.model} forecast, {window}",
        forecast=forecast.to_dict(),
        window=str(window),
        headline=headline,
        data_rows=_data_rows(forecast, summary, load_report),
        map=map_data,
        plots={name: "data:image/svg+xml;base64," + base64.b64encode(plots[name].encode())
               .decode() if name in plots else None for name in ("curve", "pai")},
        sections=sections,
        public=public,
        privacy=privacy.to_dict() if privacy else None,
        k=k,
        leaflet_js=script,
        leaflet_css=css,
    ))


def render_markdown(text: str) -> str:
    r"""Render Markdown (a model card) to safe HTML: CommonMark, raw HTML escaped.

    Raw HTML in the text is shown as text, not run; links with ``javascript:`` and similar
    schemes are not made links (markdown-it-py's link validation).

    >>> render_markdown("# Card\n\n*Intended* use <script>x</script>")
    '<h1>Card</h1>\n<p><em>Intended</em> use &lt;script&gt;x&lt;/script&gt;</p>\n'
    """
    from markdown_it import MarkdownIt

    return str(MarkdownIt("commonmark", {"html": False}).enable("table").render(text))


def write_report(path: str | os.PathLike[str], forecast: Forecast, **kwargs: Any) -> Path:
    """Write :func:`build_report`'s HTML to ``path`` atomically (whole file or nothing).

    Returns
    -------
    Path
        ``path``.
    """
    from placecast.io._atomic import atomic_path

    path = Path(path)
    document = build_report(forecast, **kwargs)
    with atomic_path(path) as tmp:
        tmp.write_text(document, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- pieces
def _map_context(units: Units, basemap: Any, reference_layers: Sequence[Any],
                 max_basemap_bytes: int) -> dict[str, Any]:
    """Basemap (base64) and reference layers for the page, checked before the map is built."""
    if isinstance(reference_layers, (str, os.PathLike, ReferenceLayer)):
        reference_layers = [reference_layers]
    if basemap is None and not reference_layers:
        return {"payload": None, "basemap": None, "base64": None, "references": []}
    if units.spatial_reference.is_local:
        raise ParameterError("a basemap or reference layers need units with a real-world CRS; "
                             "these are in local coordinates (give the events' CRS).")
    if basemap is not None and not isinstance(basemap, Basemap):
        basemap = read_basemap(basemap)
    encoded = inline_basemap(basemap, max_basemap_bytes) if basemap is not None else None
    layers = [layer if isinstance(layer, ReferenceLayer) else read_reference_layer(layer)
              for layer in reference_layers]
    payload = {"basemap": basemap.to_dict() if basemap is not None else None,
               "references": [layer.to_dict() for layer in layers]}
    return {"payload": json.dumps(payload).replace("</", "<\\/"),
            "basemap": basemap.to_dict() if basemap is not None else None,
            "base64": encoded,
            "references": [{"name": layer.name, "n_features": layer.n_features,
                            "n_without_geometry": layer.n_without_geometry}
                           for layer in layers]}


def _headline(forecast: Forecast, budget: float, budget_text: str, flagged: np.ndarray,
              observed: np.ndarray | None, public_k: int | None = None
              ) -> list[tuple[str, str]]:
    units = forecast.units
    flagged_area = float(units.area[flagged].sum())
    expected_flagged = float(forecast.intensity[flagged].sum())
    rows = [
        ("area budget", _area_text(budget) + (f" ({budget_text} of the region)"
                                               if budget_text.endswith("%") else "")),
        ("flagged", f"{len(flagged):,} of {len(units):,} units"),
        ("flagged area", f"{_area_text(flagged_area)}, {flagged_area / units.region_area:.2%} "
                         "of the region"),
        ("region", _area_text(units.region_area)),
        ("expected events", f"{forecast.expected_total:.1f} in the region, "
                            f"{expected_flagged:.1f} in the flagged units"),
    ]
    if observed is not None:
        total = float(observed.sum())
        hits = float(observed[flagged].sum())
        if public_k and (0 < total < public_k or 0 < hits < public_k):
            rows.append(("observed in the window",
                         f"{total:,.0f} events" if total >= public_k else
                         f"fewer than {public_k} events (suppressed)"))
            rows.append(("caught in flagged units", f"fewer than {public_k} events: hit rate, "
                                                    "PAI and PEI* suppressed in a public report"))
        elif total > 0:
            import warnings

            with warnings.catch_warnings():  # undefined: shown as n/a
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                hit_rate = hit_rate_from_counts(observed, flagged)
                pai = pai_from_counts(observed, flagged, units.area, units.region_area)
                pei = pei_star_from_counts(observed, flagged)
            rows += [("observed in the window", f"{total:,.0f} events"),
                     ("caught in flagged units", f"{hits:,.0f} (hit rate {hit_rate:.3f})"),
                     ("PAI", _fmt_number(pai)),
                     ("PEI* (same number of units)", _fmt_number(pei))]
        else:
            rows.append(("observed in the window", "no events (the window is in the future "
                                                   "or outside the data)"))
    return rows


def _data_rows(forecast: Forecast, summary: Mapping[str, Any] | None,
               report: LoadReport | None) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if report is not None:
        rows.append(("source", Path(report.source).name))
        rows.append(("rows read", f"{report.n_rows:,}"))
        rows.append(("events kept", f"{report.n_kept:,}"))
        dropped = ", ".join(f"{n:,} {reason}" for reason, n in report.dropped.items())
        rows.append(("dropped rows", f"{report.n_dropped:,}" + (f" ({dropped})" if dropped
                                                                 else "")))
        if report.filtered:
            rows.append(("filtered out", ", ".join(f"{n:,} by {key}" for key, n in
                                                   report.filtered.items())))
        if report.crs_note:
            rows.append(("CRS", report.crs_note))
    if summary:
        if report is None:
            rows.append(("events", f"{summary.get('n_events', 0):,}"))
        if "start" in summary:
            rows.append(("span", f"{str(summary['start'])[:10]} .. {str(summary['end'])[:10]}"))
        categories = summary.get("categories")
        if categories:
            shown = ", ".join(f"{name} ({n:,})" for name, n in list(categories.items())[:8])
            more = f" and {len(categories) - 8} more" if len(categories) > 8 else ""
            rows.append(("categories", shown + more))
    info = forecast.to_dict()
    described = info["units"] or {}
    unit_text = str(described.get("kind", forecast.units.kind))
    if "cell_size_m" in described:
        unit_text += f", {described['cell_size_m']:.4g} m cells"
    rows.append(("area units", f"{unit_text}, {len(forecast.units):,} units"))
    rows.append(("model", forecast.model))
    params = ", ".join(f"{k}={_fmt_number(v)}" for k, v in (forecast.params or {}).items())
    if params:
        rows.append(("parameters", params))
    rows.append(("forecast window", f"{forecast.window} ({forecast.window.days:g} days)"))
    return rows


def _grid_nodes(units: Units, cols: np.ndarray, rows: np.ndarray) -> tuple[dict[str, Any], bool]:
    """Project the grid's corner lattice over the drawn cells to display coordinates."""
    grid = units.grid
    assert grid is not None
    c0, r0 = int(cols.min()), int(rows.min())
    n_cols, n_rows = int(cols.max()) - c0 + 1, int(rows.max()) - r0 + 1
    node_rows, node_cols = np.meshgrid(np.arange(r0, r0 + n_rows + 1),
                                       np.arange(c0, c0 + n_cols + 1), indexing="ij")
    x, y = node_cols.ravel() * grid.cell_size, node_rows.ravel() * grid.cell_size
    if grid.rotation:
        theta = np.deg2rad(grid.rotation)
        x, y = np.cos(theta) * x - np.sin(theta) * y, np.sin(theta) * x + np.cos(theta) * y
    points, local = _to_display(units, shapely.points(x + grid.origin[0], y + grid.origin[1]))
    nodes = shapely.get_coordinates(points).ravel()
    return {"c0": c0, "r0": r0, "nc": n_cols, "nr": n_rows, "nodes": nodes.tolist(),
            "col": cols.tolist(), "row": rows.tolist()}, local


def _cells_json(units: Units, index: np.ndarray, columns: dict[str, Any]) -> tuple[str, bool]:
    """Encode the drawn units as compact columns: a grid as (col, row) over its corners.

    The page rebuilds GeoJSON features from it (``decodeCells`` in the template); a grid of
    12,000 cells takes about a quarter of the space of plain GeoJSON.
    """
    if units.grid is not None and units.grid_cells is not None and len(index):
        cells = np.asarray(units.grid_cells)[index]
        grid, local = _grid_nodes(units, cells[:, 0], cells[:, 1])
        return json.dumps({"grid": grid, **columns}), local
    geometry, local = _to_display(units, units.geometry[index])
    texts = ",".join(shapely.to_geojson(geometry))
    ids = json.dumps([str(u) for u in units.unit_id[index]])
    body = json.dumps(columns)[1:-1]
    return (f'{{"geometries":[{texts}],"id":{ids}' + (f",{body}" if body else "") + "}",
            local)


def _map_data(forecast: Forecast, is_flagged: np.ndarray, counts: np.ndarray | None,
              observed: np.ndarray | None, window_events: Events | None,
              privacy: PublicAreas | None, hotspots: pd.Series | None,
              clusters: list[dict[str, Any]] | None, k: int) -> _MapData:
    units = forecast.units
    intensity = forecast.intensity
    rank = forecast.rank
    drawn = privacy.shown if privacy is not None else np.ones(len(units), dtype=bool)
    density = intensity / units.area * float(np.median(units.area))

    block_density = np.zeros(0)
    if privacy is not None and privacy.blocks:
        block_density = np.array([
            intensity[b["members"]].sum() / units.area[b["members"]].sum()
            * float(np.median(units.area)) for b in privacy.blocks])
    colour_index, legend = _classes(np.concatenate([density[drawn], block_density]))
    cell_colour = colour_index[:int(drawn.sum())]
    block_colour = colour_index[int(drawn.sum()):]

    index = np.flatnonzero(drawn)
    columns: dict[str, Any] = {
        "r": rank[index].tolist(),
        "v": [float(f"{v:.4g}") for v in intensity[index]],
        "c": cell_colour.tolist(),
        "f": np.flatnonzero(is_flagged[index]).tolist(),
    }
    if counts is not None:
        columns["n"] = counts[index].astype(int).tolist()
    if observed is not None and privacy is None:
        columns["o"] = observed[index].astype(int).tolist()
    if hotspots is not None:
        columns["h"] = [hotspots.get(str(u)) for u in units.unit_id[index]]
    explanations = _explanations(forecast, index)
    if explanations is not None:
        columns["x"] = explanations
    cells_json, local = _cells_json(units, index, columns)
    parts = {"cells": cells_json}

    if privacy is not None and privacy.blocks:
        block_geometry, _ = _to_display(units, np.array([b["geometry"] for b in
                                                         privacy.blocks]))
        block_props = [{"v": float(f"{intensity[b['members']].sum():.4g}"),
                        "n": int(b["count"]), "m": int(len(b["members"])),
                        "f": int(is_flagged[b["members"]].any()), "c": int(c)}
                       for b, c in zip(privacy.blocks, block_colour, strict=True)]
        parts["blocks"] = _features(block_geometry, block_props)
    region_geometry, _ = _to_display(units, np.array([units.region]))
    parts["region"] = shapely.to_geojson(region_geometry[0])
    if clusters is not None:
        shown = [c for c in clusters if privacy is None or _enough(c["observed"], k)]
        parts["clusters"] = json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": c["geometry"],
             "properties": {key: c[key] for key in ("id", "observed", "expected",
                                                    "p_value")}} for c in shown]})
    payload: dict[str, Any] = {
        "local": local,
        "ramp": list(_RAMP),
        "public": privacy is not None,
        "k": k,
        "hotspotColours": dict(zip(sorted(hotspots.unique()), _HOTSPOT_COLOURS * 4,
                                   strict=False)) if hotspots is not None else {},
    }
    if window_events is not None and privacy is None and len(window_events):
        sref = units.spatial_reference
        if local:
            px, py = window_events.x, window_events.y
        else:
            px, py = sref.to_crs_coordinates(window_events.x, window_events.y, "EPSG:4326")
        payload["points"] = np.round(np.column_stack([py, px]), 5 if not local else 1).tolist()
    text = json.dumps(payload)[:-1] + "," + ",".join(
        f'"{name}":{value}' for name, value in parts.items()) + "}"
    return _MapData(payload=text.replace("</", "<\\/"), legend=legend,
                    n_drawn=int(drawn.sum()), n_points=len(payload.get("points", [])),
                    local=local)


def _explanations(forecast: Forecast, index: np.ndarray) -> list[list[Any]] | None:
    """Per drawn unit, its ``[reason, effect]`` pairs (``forecast --explain``), else None.

    Reads the ``reason_k``/``effect_k`` columns of ``forecast.details`` (set by
    ``BoostedPoisson.explained_forecast``); a blank reason (no feature raised the
    forecast) is left out.
    """
    details = forecast.details
    if details is None:
        return None
    pairs = [(f"reason_{k}", f"effect_{k}") for k in range(1, 10)
             if f"reason_{k}" in details and f"effect_{k}" in details]
    if not pairs:
        return None
    reasons = [details[r].astype(str).to_numpy()[index] for r, _ in pairs]
    effects = [pd.to_numeric(details[e], errors="coerce").to_numpy(float)[index]
               for _, e in pairs]
    out = []
    for i in range(len(index)):
        out.append([[reasons[k][i], float(f"{effects[k][i]:.3g}")] for k in range(len(pairs))
                    if reasons[k][i] not in ("", "nan", "None") and np.isfinite(effects[k][i])])
    return out


def _enough(value: Any, k: float) -> bool:
    try:
        return float(value) >= k
    except (TypeError, ValueError):
        return False


def _clusters_section(clusters: list[dict[str, Any]], public: bool, k: int) -> dict[str, Any]:
    rows = []
    hidden = 0
    for cluster in clusters:
        if public and not _enough(cluster["observed"], k):
            hidden += 1
            continue
        observed, expected = cluster["observed"], cluster["expected"]
        ratio = (float(observed) / float(expected)
                 if _enough(expected, 1e-300) and observed is not None else None)
        rows.append([str(cluster["id"]), _fmt_number(observed),
                     _fmt_number(expected), _fmt_number(ratio), _fmt_number(cluster["p_value"])])
    return {"table": {"columns": ["cluster", "observed", "expected", "observed / expected",
                                  "p-value"], "rows": rows}, "hidden": hidden}
