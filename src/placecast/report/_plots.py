"""Report plots drawn with matplotlib (no pyplot, no global state) and returned as SVG text.

Each function takes plain arrays or a backtest ``DataFrame`` and returns the ``<svg>``
element as a string, or ``None`` when there is nothing to draw.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["coverage_curve", "hit_rate_curve_svg", "model_colours", "pai_over_origins_svg"]

_COLOURS = ("#1f5fa8", "#d1495b", "#2e933c", "#edae49", "#6a4c93", "#00798c", "#8c564b")


def coverage_curve(intensity: np.ndarray, area: np.ndarray, observed: np.ndarray,
                   region_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Hit rate against coverage when units are flagged in forecast order.

    Parameters
    ----------
    intensity : ndarray, shape (n_units,)
        Forecast intensity (units are flagged from highest to lowest, ties by index).
    area : ndarray, shape (n_units,)
        Unit areas, m².
    observed : ndarray, shape (n_units,)
        Events observed per unit in the window.
    region_area : float
        Region area, m².

    Returns
    -------
    coverage, hit_rate : ndarray
        ``coverage[i] = sum(area of the first i units) / region_area`` and
        ``hit_rate[i] = sum(observed in the first i units) / sum(observed)``, both starting
        at 0. O(n log n) for the sort.
    """
    order = np.argsort(-np.asarray(intensity, dtype=float), kind="stable")
    total = float(np.sum(observed))
    coverage = np.concatenate([[0.0], np.cumsum(np.asarray(area, dtype=float)[order])])
    hits = np.concatenate([[0.0], np.cumsum(np.asarray(observed, dtype=float)[order])])
    return coverage / region_area, hits / total if total > 0 else hits * np.nan


def model_colours(models: Any) -> dict[str, str]:
    """One colour per model name (sorted), the same in every plot of a report."""
    return {name: _COLOURS[i % len(_COLOURS)]
            for i, name in enumerate(sorted({str(m) for m in models}))}


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.16, top=0.96)
    return fig


def _step_points(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the points of a post-step curve where ``y`` does not change (same drawing)."""
    keep = np.ones(len(y), dtype=bool)
    keep[1:] = y[1:] != y[:-1]
    keep[-1] = True
    return x[keep], y[keep]


def _to_svg(fig: Any) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "placecast",
                                "font.size": 10}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _style(ax: Any) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#e3e6ea", linewidth=0.8)
    ax.set_axisbelow(True)


def hit_rate_curve_svg(
    intensity: np.ndarray,
    area: np.ndarray,
    observed: np.ndarray | None,
    region_area: float,
    *,
    budget_area: float | None = None,
    model: str = "forecast",
    backtest: pd.DataFrame | None = None,
) -> str | None:
    """Hit rate over coverage: the forecast's curve, the best possible and chance.

    Parameters
    ----------
    intensity, area : ndarray
        Forecast intensity and unit areas (m²).
    observed : ndarray or None
        Events per unit in the forecast window; without them only backtest points are drawn.
    region_area : float
        Region area, m².
    budget_area : float, optional
        Flagged-area budget, m² (a dashed vertical line).
    model : str
        Label of the forecast's curve.
    backtest : DataFrame, optional
        Backtest results; mean ``hit_rate`` per model at each ``flagged_area /
        region_area`` is drawn as points.

    Returns
    -------
    str or None
        SVG text, or None when there is neither an observed window nor a backtest.
    """
    from matplotlib.ticker import FuncFormatter

    has_window = observed is not None and float(np.sum(observed)) > 0
    has_backtest = backtest is not None and len(backtest) > 0
    if not has_window and not has_backtest:
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    _style(ax)
    names = [model] + (list(backtest["model"].astype(str)) if has_backtest and
                       backtest is not None else [])
    colours = model_colours(names)
    low = 1e-4
    if has_window:
        assert observed is not None
        coverage, hit_rate = coverage_curve(intensity, area, observed, region_area)
        best_cov, best_hits = coverage_curve(np.asarray(observed) / np.asarray(area), area,
                                             observed, region_area)
        low = max(min(low, float(coverage[1]) if len(coverage) > 1 else low), 1e-6)
        best_cov, best_hits = _step_points(best_cov, best_hits)
        coverage, hit_rate = _step_points(coverage, hit_rate)
        ax.step(best_cov, best_hits, where="post", color="#9aa5b1", linewidth=1.2,
                linestyle=":", label="best possible (hindsight)")
        ax.step(coverage, hit_rate, where="post", color=colours[model], linewidth=1.8,
                label=f"{model} (this window)")
    grid = np.logspace(np.log10(low), 0, 100)
    ax.plot(grid, grid, color="#9aa5b1", linewidth=1.0, linestyle="--", label="chance")
    if has_backtest:
        assert backtest is not None
        frame = backtest.assign(
            coverage=backtest["flagged_area"] / backtest["region_area"],
            level=backtest.groupby(["origin", "horizon", "model"])["flagged_area"]
            .rank(method="first"))
        for name, group in frame.groupby("model", sort=True):
            means = group.groupby("level")[["coverage", "hit_rate"]].mean()
            ax.plot(means["coverage"], means["hit_rate"], marker="D", linestyle="none",
                    color=colours[str(name)], markersize=6, markeredgecolor="white",
                    label=f"{name} (backtest mean)")
    if budget_area:
        ax.axvline(budget_area / region_area, color="#333", linewidth=0.9, linestyle="-.",
                   label=f"budget {budget_area / region_area:.2%}")
    ax.set_xscale("log")
    ax.set_xlim(low, 1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("coverage: flagged share of the region area (log scale)")
    ax.set_ylabel("hit rate: share of events caught")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value * 100:g}%"))
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    return _to_svg(fig)


def pai_over_origins_svg(backtest: pd.DataFrame) -> str | None:
    """PAI of each model (and horizon) over the backtest's forecast origins.

    Parameters
    ----------
    backtest : DataFrame
        Columns ``origin``, ``horizon``, ``model``, ``pai`` (more are ignored). With
        several budgets per origin, the PAI at the smallest flagged area is drawn.

    Returns
    -------
    str or None
        SVG text, or None for an empty frame.
    """
    fig = _pai_figure(backtest)
    return None if fig is None else _to_svg(fig)


def _pai_figure(backtest: pd.DataFrame) -> Any:
    if backtest is None or len(backtest) == 0:
        return None
    import matplotlib.dates as mdates

    frame = backtest.copy()
    frame["origin"] = pd.to_datetime(frame["origin"])
    if "flagged_area" in frame:
        smallest = frame.groupby(["origin", "horizon", "model"])["flagged_area"].transform("min")
        frame = frame[frame["flagged_area"] == smallest]
    horizons = frame["horizon"].astype(str).unique()
    fig = _figure(6.4, 3.4)
    # room for the date ticks (two lines with the concise formatter) and the axis title
    fig.subplots_adjust(bottom=0.22)
    ax = fig.add_subplot()
    _style(ax)
    colours = model_colours(frame["model"])
    styles = ("-", "--", ":", "-.")
    horizon_style = {h: styles[i % len(styles)] for i, h in enumerate(sorted(horizons))}
    for (name, horizon), group in frame.groupby(["model", frame["horizon"].astype(str)],
                                                sort=True):
        series = group.groupby("origin")["pai"].mean().sort_index()
        label = name if len(horizons) == 1 else f"{name} ({horizon})"
        ax.plot(series.index, series.to_numpy(), marker="o", markersize=4, linewidth=1.5,
                color=colours[str(name)], linestyle=horizon_style[horizon], label=label)
    ax.set_xlabel("forecast origin")
    ax.set_ylabel("PAI")
    ax.set_ylim(bottom=0)
    # horizontal, compact date ticks: rotated ones pushed the axis title off the figure
    locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.legend(fontsize=8, frameon=False)
    return fig
