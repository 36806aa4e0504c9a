"""Plots of backtest results (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from placecast.evaluate._backtest import BacktestResult
from placecast.evaluate._metrics import SQUARE_MILE_M2
from placecast.exceptions import ParameterError

__all__ = ["plot_backtest"]

_FORMATS = (".png", ".svg")


def plot_backtest(result: BacktestResult, path: str | os.PathLike[str] | None = None, *,
                  horizon: str | None = None) -> Any:
    """PAI and hit rate per origin for each model (one line per model, two panels).

    Parameters
    ----------
    result : BacktestResult
        The backtest.
    path : path, optional
        ``.png`` or ``.svg`` file, written atomically. Without a path, the SVG text is
        returned.
    horizon : str, optional
        Which window length to plot (default the first).

    Returns
    -------
    Path or str
        The file written, or SVG text.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if path is not None and Path(path).suffix.lower() not in _FORMATS:
        raise ParameterError(f"{path}: plots are written as .png or .svg.")
    horizon = result.horizons[0] if horizon is None else horizon
    frame = result.to_frame()
    frame = frame[frame.horizon == horizon]
    fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    for model in result.models:
        part = frame[frame.model == model]
        mean_pai = np.nanmean(part["pai"]) if part["pai"].notna().any() else np.nan
        axes[0].plot(part["origin"], part["pai"], marker="o", markersize=3, linewidth=1,
                     label=f"{model} (mean {mean_pai:.1f})")
        axes[1].plot(part["origin"], part["hit_rate"], marker="o", markersize=3, linewidth=1,
                     label=model)
    axes[0].set_ylabel("PAI")
    axes[1].set_ylabel("hit rate")
    axes[1].set_xlabel("forecast origin")
    axes[0].legend(loc="upper left", fontsize=8)
    sqmi = SQUARE_MILE_M2
    budget = result.area if np.isfinite(result.area) else result.flagged_area
    axes[0].set_title(f"Backtest, {horizon} windows, budget {budget / sqmi:.3f} "
                      f"sq mi of {result.region_area / sqmi:.1f}")
    fig.autofmt_xdate()
    fig.tight_layout()
    try:
        if path is None:
            buffer = io.StringIO()
            fig.savefig(buffer, format="svg")
            return buffer.getvalue()
        from placecast.io._atomic import atomic_path

        target = Path(path)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=target.suffix.lower().lstrip("."), dpi=120)
        return target
    finally:
        plt.close(fig)
