"""``placecast fit --model boost``: train the learned model and write what it learned.

The learned model is trained per window length at a forecast origin, so ``fit`` trains it
at the day after the data (or ``-p at=DATE``) for ``-p horizon=7d`` over the ``--cell``
grid (and ``--region``), and writes the feature importance beside the JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from placecast.cli._app import console, load_events, print_table
from placecast.cli._fit import FitRequest, register_fit_handler

__all__ = ["fit_boost"]


@register_fit_handler("boost")
def fit_boost(request: FitRequest) -> dict[str, Any]:
    """Train the learned model at the end of the data; write its feature importance."""
    import numpy as np
    from rich.table import Table

    from placecast.evaluate import data_end
    from placecast.forecast import TimeWindow
    from placecast.io._atomic import atomic_path
    from placecast.models import make_model
    from placecast.pipeline import UnitSpec, build_units
    from placecast.quantities import parse_length

    events = load_events(request.events_path, **request.event_options)
    params = dict(request.params)
    horizon = str(params.pop("horizon", "7d"))
    at = params.pop("at", None)
    origin = np.datetime64(str(at), "ns") if at is not None else data_end(events)
    region = Path(request.region) if request.region is not None else None
    units = build_units(events, UnitSpec(cell_size=parse_length(request.cell, name="cell"),
                                         region=region))
    window = TimeWindow.starting(origin, horizon)
    model = make_model("boost", **params).fit(events.before(window.start))
    importance = model.feature_importance(units, window)  # type: ignore[attr-defined]
    side = request.output.with_name(request.output.stem + "_importance.csv")
    with atomic_path(side) as tmp:
        importance.to_csv(tmp, index=False, float_format="%.6g")
    table = Table(title=f"boost: what the forecast for {window} learned from "
                  f"(top 15 of {len(importance)} features, by gain)")
    for column in ("feature", "share of gain", "splits"):
        table.add_column(column, justify="left" if column == "feature" else "right")
    for row in importance.head(15).itertuples():
        table.add_row(str(row.feature), f"{row.share:.1%}", str(row.splits))
    print_table(table)
    console.print(f"wrote {side}")
    return {
        "model": "boost",
        "params": {k: (v if isinstance(v, int | float | str | bool | type(None)) else str(v))
                   for k, v in model.get_params().items()},
        "window": window.to_dict(),
        "n_units": len(units),
        "n_training_rows": int(model._last_rows),  # type: ignore[attr-defined]
        "feature_importance": importance.to_dict(orient="records"),
        "importance_file": str(side),
    }
