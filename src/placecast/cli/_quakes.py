"""``placecast fit --model etas_marked``: marked space-time ETAS on an earthquake catalog.

Reads the catalog with lon/lat kept in degrees (``date`` + ``time`` columns are joined,
``mag``/``magnitude`` is the mark), sets it up as the R package ETAS does (threshold,
study period, region polygon, flat projection), fits, and returns the estimates; the
declustering probabilities go to ``<output stem>_declustering.csv`` beside the JSON.
"""

from __future__ import annotations

from typing import Any

from placecast.cli._app import console
from placecast.cli._fit import FitRequest, register_fit_handler
from placecast.cli._progress import progress_bar
from placecast.exceptions import ParameterError

__all__ = ["fit_etas_marked"]

_OPTION_PARAMS = {"bandwidth_min", "n_neighbours", "ndiv", "max_iterations", "rel_tol",
                  "beta_events"}


@register_fit_handler("etas_marked")
def fit_etas_marked(req: FitRequest) -> dict[str, Any]:
    """Fit marked ETAS for ``placecast fit`` and write the declustering CSV."""
    from placecast.io import ColumnMap, read_events
    from placecast.io._atomic import atomic_path
    from placecast.seismic import build_catalog, fit_marked_etas, parse_region

    opts = req.event_options
    unknown = set(req.params) - _OPTION_PARAMS
    if unknown:
        raise ParameterError(f"`param` {sorted(unknown)[0]!r} is not an etas_marked option "
                             f"(known: {', '.join(sorted(_OPTION_PARAMS))}).", param="param")
    for option, hint in (("since", "`study_start`"), ("until", "`study_end`"),
                         ("categories", "a catalog filtered beforehand"),
                         ("category", "a catalog filtered beforehand"),
                         ("weight", "unweighted events"), ("crs", "lon/lat in degrees")):
        if opts.get(option):
            raise ParameterError(f"`{option}` is not used by etas_marked; use {hint}.",
                                 param=(option, "study_start", "study_end"))
    lon_col = opts.get("lon") or opts.get("x")
    lat_col = opts.get("lat") or opts.get("y")
    events = read_events(
        req.events_path,
        columns=ColumnMap(time=opts.get("time"), lon=lon_col, lat=lat_col,
                          mark=req.magnitude),
        time_format=opts.get("time_format"), timezone=opts.get("timezone"),
        skip_bad_rows=bool(opts.get("skip_bad_rows")), project=False,
    )
    if events.mark is None:
        raise ParameterError(f"{req.events_path}: no magnitude column found; name it with "
                             "`magnitude`.", param="magnitude")
    region = parse_region(req.region) if req.region else None
    catalog = build_catalog(
        events.time, events.x, events.y, events.mark, mag_threshold=req.mag_threshold,
        study_start=req.study_start, study_end=req.study_end, region=region,
        distance_unit=req.distance_unit.strip().lower(),
    )
    console.print(f"catalog: {catalog.n_events} events, {catalog.n_targets} target, "
                  f"{catalog.n_events - catalog.n_targets} complementary")
    kwargs: dict[str, Any] = {k: v for k, v in req.params.items() if k in _OPTION_PARAMS}
    for key in ("n_neighbours", "ndiv", "max_iterations"):
        if key in kwargs:
            kwargs[key] = int(kwargs[key])
    with progress_bar("etas_marked fit: iterations") as bar:
        result = fit_marked_etas(catalog, initial=req.initial or None, progress=bar,
                                 **kwargs)
    out = result.to_dict()
    csv_path = req.output.with_name(req.output.stem + "_declustering.csv")
    with atomic_path(csv_path) as tmp:
        result.to_frame().to_csv(tmp, index=False)
    out["declustering_csv"] = str(csv_path)
    console.print(f"logL {result.loglik:.3f} after {result.n_iterations} iterations; "
                  f"wrote {csv_path}")
    return out
