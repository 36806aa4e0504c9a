"""Backtest tables as text: one formatting for the terminal, ``backtest.html`` and the report.

Every number comes from a :class:`placecast.evaluate.BacktestResult` method (``summary``,
``compare``, ``winner``); this module only formats them, once, so that the ``backtest``
command's table, its ``backtest.html``, the HTML report and the service's numbers agree
to the last printed digit.
"""

from __future__ import annotations

import html
import json
from typing import Any

import numpy as np
import pandas as pd

from placecast.evaluate import SQUARE_MILE_M2, BacktestResult

__all__ = ["backtest_tables", "format_difference", "format_p", "format_value",
           "render_backtest_html"]

#: Columns of the summary table (one row per horizon and model).
SUMMARY_COLUMNS = ("horizon", "model", "origins", "PAI mean", "median", "p10-p90", "pooled",
                   "hit rate", "PEI*", "log score")
#: Columns of the paired-comparison table (one row per horizon and other model).
COMPARISON_COLUMNS = ("horizon", "model", "other", "n pairs", "mean PAI difference",
                      "median", "better", "worse", "Wilcoxon p")


def format_value(value: Any, digits: int = 2) -> str:
    """A metric as printed everywhere: fixed ``digits`` decimals, ``-`` when undefined.

    >>> format_value(3.14159), format_value(float("nan")), format_value(0.12345, 3)
    ('3.14', '-', '0.123')
    """
    value = float(value)
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def format_p(value: float) -> str:
    """A p-value as printed everywhere: 4 decimals, or 1 significant digit below 1e-4.

    >>> format_p(0.116727), format_p(3.2e-7), format_p(float("nan"))
    ('0.1167', '3.2e-07', '- (no difference)')
    """
    value = float(value)
    if not np.isfinite(value):
        return "- (no difference)"
    return f"{value:.1e}" if value < 1e-4 else f"{value:.4f}"


def format_difference(value: float) -> str:
    """A difference of PAI as printed everywhere: signed, 2 decimals.

    >>> format_difference(1.234), format_difference(-0.5)
    ('+1.23', '-0.50')
    """
    value = float(value)
    return "-" if not np.isfinite(value) else f"{value:+.2f}"


def backtest_tables(result: BacktestResult, reference: str | None = None
                    ) -> dict[str, pd.DataFrame]:
    """The summary and paired-comparison tables of a backtest, formatted as text.

    Parameters
    ----------
    result : BacktestResult
        The backtest (from ``run_backtest``, a file or a store).
    reference : str, optional
        Reference model of the paired tests; default the winner on PAI per horizon
        (:meth:`BacktestResult.compare`'s rule).

    Returns
    -------
    dict
        ``"summary"``: ``SUMMARY_COLUMNS``, one row per horizon and model (from
        ``result.summary()``); ``"comparisons"``: ``COMPARISON_COLUMNS``, one row per
        horizon and other model (from ``result.compare("pai", horizon, reference)``).
        Cells are strings.
    """
    summary = result.summary()
    rows = []
    for horizon in result.horizons:
        part = summary[summary.horizon == horizon].set_index(["model", "metric"])

        def cell(model: str, metric: str, column: str, digits: int = 2,
                 part: pd.DataFrame = part) -> str:
            key = (model, metric)
            return format_value(part.loc[key, column], digits) if key in part.index else "-"

        for model in result.models:
            n = (int(float(part.loc[(model, "pai"), "n"]))  # type: ignore[arg-type]
                 if (model, "pai") in part.index else 0)
            rows.append([horizon, model, str(n), cell(model, "pai", "mean"),
                         cell(model, "pai", "median"),
                         f"{cell(model, 'pai', 'p10')}-{cell(model, 'pai', 'p90')}",
                         cell(model, "pai", "pooled"), cell(model, "hit_rate", "mean", 3),
                         cell(model, "pei_star", "mean", 3), cell(model, "log_score", "mean")])
    comparisons = []
    if len(result.models) > 1:
        for horizon in result.horizons:
            for c in result.compare("pai", horizon, reference=reference):
                comparisons.append([horizon, c.model, c.other, str(c.n_pairs),
                                    format_difference(c.mean_difference),
                                    format_difference(c.median_difference),
                                    str(c.n_better), str(c.n_worse), format_p(c.p_value)])
    return {"summary": pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS)),
            "comparisons": pd.DataFrame(comparisons, columns=list(COMPARISON_COLUMNS))}


def _html_table(frame: pd.DataFrame, table_id: str) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(v))}</td>" for v in row) + "</tr>"
                   for row in frame.itertuples(index=False))
    return (f"<table id='{table_id}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def render_backtest_html(result: BacktestResult, *, protocol: str | None = None) -> str:
    """A minimal self-contained HTML page: settings, summary, paired tests, plot (SVG).

    The tables are :func:`backtest_tables`, as the HTML report and the terminal show them.
    """
    from placecast.evaluate import plot_backtest

    esc = html.escape
    tables = backtest_tables(result)
    n_units = result.n_units
    settings = {"models": ", ".join(result.models), "horizons": ", ".join(result.horizons),
                "origins": f"{len(result.origins)} ({str(result.origins[0])[:10]} .. "
                           f"{str(result.origins[-1])[:10]})",
                "flagged-area budget": f"{result.area / SQUARE_MILE_M2:.4f} sq mi",
                "region": f"{result.region_area / SQUARE_MILE_M2:.2f} sq mi"
                          + (f", {n_units:,} units" if n_units is not None else ""),
                "protocol": protocol or "-",
                "parameters": json.dumps(result.settings.get("models", {}), default=str)}
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>",
             "<title>placecast backtest</title><style>body{font-family:sans-serif;"
             "max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style></head>"
             "<body><h1>placecast backtest</h1>", "<h2>Settings</h2><table>"]
    parts.extend(f"<tr><th>{esc(k)}</th><td style='text-align:left'>{esc(str(v))}</td></tr>"
                 for k, v in settings.items())
    parts.append("</table><h2>Summary over origins</h2>")
    parts.append(_html_table(tables["summary"], "summary"))
    if len(tables["comparisons"]):
        parts.append("<h2>Paired comparison (Wilcoxon signed-rank on per-origin PAI, best "
                     "mean PAI against each other model)</h2>")
        parts.append(_html_table(tables["comparisons"], "comparisons"))
    if len(result.origins) > 1:
        parts.append("<h2>PAI and hit rate per origin</h2>")
        svg = plot_backtest(result)
        parts.append(svg[svg.find("<svg"):])
    parts.append("</body></html>")
    return "\n".join(parts)


def as_result(backtest: Any, source: str = "the backtest table") -> BacktestResult:
    """A ``BacktestResult`` from a result (as is) or a table (``from_records``)."""
    if isinstance(backtest, BacktestResult):
        return backtest
    return BacktestResult.from_records(backtest, source=source)
