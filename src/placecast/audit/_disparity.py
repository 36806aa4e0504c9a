"""Disparity across area groups: which groups of areas a policy flags, against their events.

Groups are polygons the user supplies (tracts, districts, neighbourhoods) with area-level
attributes of their choosing; each area unit is assigned to one group (by its centroid or
by largest overlap). Group attributes are used only to audit, never to forecast, and
nothing here is about persons.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from placecast.audit._exposure import check_flags
from placecast.exceptions import DataError, ParameterError
from placecast.units import Units

__all__ = [
    "DisparityResult",
    "GroupAssignment",
    "assign_groups",
    "disparity_audit",
    "plot_disparity",
    "polygon_overlaps",
]

#: Label of the units that fall in no group polygon.
OUTSIDE = "(outside groups)"


@dataclass(frozen=True, eq=False)
class GroupAssignment:
    """Which area group each unit belongs to.

    Attributes
    ----------
    labels : ndarray of str
        Group labels, in table order.
    unit_group : ndarray of int, shape (n_units,)
        Index into ``labels`` of each unit's group; -1 for units in no group polygon.
    unit_population : ndarray of float, optional
        Population apportioned to each unit by area (areal weighting of the polygons'
        population); None without a population column.
    description : dict
        Source file, column, method, quantiles.
    """

    labels: np.ndarray
    unit_group: np.ndarray
    unit_population: np.ndarray | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Description and unit counts per group, JSON-ready."""
        counts = np.bincount(self.unit_group[self.unit_group >= 0], minlength=len(self.labels))
        return {**self.description,
                "groups": {str(k): int(v) for k, v in zip(self.labels, counts, strict=True)},
                "n_units_outside": int((self.unit_group < 0).sum())}


def polygon_overlaps(units: npt.ArrayLike, polygons: npt.ArrayLike
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersecting (unit, polygon) pairs and the area of each intersection.

    O((n_units + n_polygons) log n_polygons) with an STRtree, plus one intersection per
    intersecting pair.
    """
    unit_geoms = np.asarray(units, dtype=object)
    poly_geoms = np.asarray(polygons, dtype=object)
    tree = shapely.STRtree(poly_geoms)
    unit_idx, poly_idx = tree.query(unit_geoms, predicate="intersects")
    area = shapely.area(shapely.intersection(unit_geoms[unit_idx], poly_geoms[poly_idx]))
    keep = area > 0
    return unit_idx[keep], poly_idx[keep], area[keep]


def _largest_overlap(out: np.ndarray,
                     pairs: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    """Set ``out[unit]`` to the polygon each unit of ``pairs`` overlaps most."""
    unit_idx, poly_idx, area = pairs
    # largest overlap wins; ties go to the lower polygon index
    order = np.lexsort((poly_idx, -area, unit_idx))
    unit_idx, poly_idx = unit_idx[order], poly_idx[order]
    first = np.ones(len(unit_idx), dtype=bool)
    first[1:] = unit_idx[1:] != unit_idx[:-1]
    out[unit_idx[first]] = poly_idx[first]
    return out


def _assign(units: Units, polygons: np.ndarray, method: str,
            pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None
            ) -> tuple[np.ndarray, int]:
    """Polygon index of each unit (-1: none) and how many centroid misses overlap decided.

    With ``"centroid"`` a unit whose centroid lies in no polygon but which overlaps some
    (a cell on the region's edge whose centre is just outside, or a centroid in a sliver
    between neighbouring polygons) goes to the polygon it overlaps most: only units that
    overlap no group polygon at all stay outside.
    """
    n_units = len(units)
    out = np.full(n_units, -1, dtype=np.int64)
    if method == "centroid":
        tree = shapely.STRtree(polygons)
        points = shapely.points(units.centroids)
        point_idx, poly_idx = tree.query(points, predicate="intersects")
        order = np.lexsort((poly_idx, point_idx))
        point_idx, poly_idx = point_idx[order], poly_idx[order]
        first = np.ones(len(point_idx), dtype=bool)
        first[1:] = point_idx[1:] != point_idx[:-1]
        out[point_idx[first]] = poly_idx[first]
        missed = np.flatnonzero(out < 0)
        if len(missed) == 0:
            return out, 0
        m_unit, m_poly, m_area = polygon_overlaps(units.geometry[missed], polygons)
        fallback = np.full(len(missed), -1, dtype=np.int64)
        _largest_overlap(fallback, (m_unit, m_poly, m_area))
        out[missed] = fallback
        return out, int((fallback >= 0).sum())
    assert pairs is not None
    return _largest_overlap(out, pairs), 0


def assign_groups(
    units: Units,
    groups: str | os.PathLike[str] | Any,
    group_by: str,
    *,
    quantiles: int | None = None,
    method: str = "centroid",
    population: str | None = None,
) -> GroupAssignment:
    """Assign each area unit to a group of polygons from a file (or GeoDataFrame).

    Parameters
    ----------
    units : Units
        The area units of the policy.
    groups : path or GeoDataFrame
        Group polygons with area-level attributes (any vector format pyogrio reads).
    group_by : str
        Column giving each polygon's group (e.g. a district id); with ``quantiles``, a
        numeric column cut into that many quantile classes (``Q1`` lowest).
    quantiles : int, optional
        Number of quantile classes of ``group_by`` (2..20).
    method : {"centroid", "overlap"}
        A unit belongs to the polygon holding its centroid, or to the one it overlaps most.
        With ``"centroid"``, a unit whose centroid is in no polygon but which overlaps one
        (edge cells of a grid over the union of the polygons) goes to the polygon it
        overlaps most; ``description["n_units_by_overlap"]`` counts them.
    population : str, optional
        Numeric column of polygon population; apportioned to units by overlap area.

    Returns
    -------
    GroupAssignment

    Raises
    ------
    DataError
        For a missing file, no polygons, a missing column, a non-numeric column used with
        ``quantiles``/``population``, or a file without a CRS while the units have one.
    ParameterError
        For an unknown ``method`` or a bad number of ``quantiles``.
    """
    if method not in ("centroid", "overlap"):
        raise ParameterError(f"unknown group assignment `method` {method!r}; use centroid or "
                             "overlap.", param="method")
    if quantiles is not None and not 2 <= int(quantiles) <= 20:
        raise ParameterError(f"`quantiles` must be between 2 and 20, got {quantiles}.",
                             param="quantiles")
    frame, source = _read_groups(groups)
    for column, what in ((group_by, "group_by"), (population, "population")):
        if column is not None and column not in frame.columns:
            columns = ", ".join(str(c) for c in frame.columns if c != "geometry")
            raise DataError(f"{source}: no column {column!r} for `{what}` (columns: "
                            f"{columns}).", param=what)
    sref = units.spatial_reference
    geoms = shapely.make_valid(frame.geometry.to_numpy())
    crs = frame.crs.to_string() if frame.crs is not None else None
    if crs is None and not sref.is_local:
        raise DataError(f"{source}: the group polygons have no CRS (.prj missing?); add one.",
                        param="groups")
    if crs is not None and not sref.is_local:
        geoms = shapely.transform(
            geoms, lambda c: np.column_stack(sref.from_crs_coordinates(c[:, 0], c[:, 1], crs)))
    else:
        geoms = shapely.transform(geoms, lambda c: c * sref.metres_per_unit)
    values = frame[group_by]
    description: dict[str, Any] = {"source": source, "group_by": group_by, "method": method}
    if quantiles is not None:
        numeric = pd.to_numeric(values, errors="coerce")
        bad = numeric.isna() & values.notna()
        if bad.any():
            raise DataError(f"{source}: column {group_by!r} is not numeric (row "
                            f"{int(np.flatnonzero(bad.to_numpy())[0])}: {values[bad].iloc[0]!r});"
                            " quantile groups need numbers.", param=("group_by", "quantiles"))
        classes, edges = pd.qcut(numeric, int(quantiles), labels=False, retbins=True,
                                 duplicates="drop")
        names = [f"Q{i + 1} ({edges[i]:.4g}-{edges[i + 1]:.4g})" for i in range(len(edges) - 1)]
        polygon_label = np.array([names[int(c)] if pd.notna(c) else "(missing)"
                                  for c in classes], dtype=object)
        description["quantiles"] = int(quantiles)
        description["edges"] = [float(e) for e in edges]
        labels = np.array(names + (["(missing)"] if "(missing)" in polygon_label else []),
                          dtype=object)
    else:
        polygon_label = values.astype(str).to_numpy(dtype=object)
        labels = np.array(sorted(set(polygon_label), key=_natural_key), dtype=object)
    need_pairs = method == "overlap" or population is not None
    pairs = polygon_overlaps(units.geometry, geoms) if need_pairs else None
    unit_poly, n_by_overlap = _assign(units, geoms, method, pairs)
    if n_by_overlap:
        description["n_units_by_overlap"] = n_by_overlap
    label_index = {label: i for i, label in enumerate(labels)}
    poly_group = np.array([label_index[label] for label in polygon_label], dtype=np.int64)
    unit_group = np.where(unit_poly >= 0, poly_group[np.maximum(unit_poly, 0)], -1)
    unit_population = None
    if population is not None:
        pop = pd.to_numeric(frame[population], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(pop).all() or (pop < 0).any():
            row = int(np.flatnonzero(~np.isfinite(pop) | (pop < 0))[0])
            raise DataError(f"{source}: column {population!r} row {row} is not a non-negative "
                            "number; `population` must be a count per polygon.",
                            param="population")
        assert pairs is not None
        unit_idx, poly_idx, area = pairs
        share = area / shapely.area(geoms)[poly_idx]
        unit_population = np.bincount(unit_idx, weights=pop[poly_idx] * share,
                                      minlength=len(units))
        description["population"] = population
    return GroupAssignment(labels=labels, unit_group=unit_group,
                           unit_population=unit_population, description=description)


def _natural_key(text: str) -> tuple[Any, ...]:
    try:
        return (0, float(text), "")
    except ValueError:
        return (1, 0.0, text)


def _read_groups(groups: Any) -> tuple[Any, str]:
    if hasattr(groups, "geometry"):
        frame, source = groups, "groups"
    else:
        path = Path(groups)
        if not path.exists():
            raise DataError(f"{path}: no such group polygon file (`groups`).", param="groups")
        import pyogrio

        try:
            frame = pyogrio.read_dataframe(path)
        except Exception as exc:
            raise DataError(f"{path}: could not read the group polygons ({exc}).",
                            param="groups") from None
        source = str(path)
    frame = frame[frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(frame) == 0:
        raise DataError(f"{source}: holds no polygons to group the area units by.",
                        param="groups")
    return frame.reset_index(drop=True), source


@dataclass(frozen=True, eq=False)
class DisparityResult:
    """Flagged exposure of area groups against their share of events, with bootstrap CIs.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per group: ``group``, ``n_units``, ``area_km2``, ``area_share``,
        ``population`` (if given), and for each statistic ``s`` in ``event_share``,
        ``flag_share``, ``ratio`` (flag share / event share), ``exposure_per_area`` (mean
        share of the group's area flagged per period) and ``exposure_per_capita`` (mean
        share of its population living in flagged units) the estimate ``s`` and the
        percentile bootstrap interval ``s_low``, ``s_high``.
    n_periods : int
        Periods in the audit.
    n_boot : int
        Bootstrap resamples (of periods, with replacement).
    level : float
        Confidence level of the intervals.
    description : dict
        How units were grouped.
    """

    table: pd.DataFrame
    n_periods: int
    n_boot: int
    level: float
    description: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """The per-group table."""
        return self.table.copy()

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready."""
        return {"n_periods": self.n_periods, "n_boot": self.n_boot, "level": self.level,
                "description": self.description,
                "groups": self.table.replace([np.inf, -np.inf], None).to_dict(orient="records")}


def _statistics(flag_area: np.ndarray, events: np.ndarray, pop_flagged: np.ndarray | None,
                n_periods: np.ndarray, group_area: np.ndarray,
                group_pop: np.ndarray | None) -> dict[str, np.ndarray]:
    """Statistics from per-group sums; arrays (..., n_groups), ``n_periods`` (..., 1)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        flag_share = flag_area / flag_area.sum(axis=-1, keepdims=True)
        event_share = events / events.sum(axis=-1, keepdims=True)
        out = {
            "event_share": event_share,
            "flag_share": flag_share,
            "ratio": flag_share / event_share,
            "exposure_per_area": flag_area / (n_periods * group_area),
        }
        if pop_flagged is not None and group_pop is not None:
            out["exposure_per_capita"] = pop_flagged / (n_periods * group_pop)
    return out


def disparity_audit(
    flags: npt.ArrayLike,
    observed: npt.ArrayLike,
    unit_area: npt.ArrayLike,
    unit_group: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    unit_population: npt.ArrayLike | None = None,
    n_boot: int = 999,
    level: float = 0.95,
    random_state: int | None = 0,
    description: dict[str, Any] | None = None,
) -> DisparityResult:
    r"""Compare the flagged exposure of area groups with their share of events.

    For group :math:`g` over periods :math:`t = 1..T`, with flags :math:`f_{tu}`, unit
    areas :math:`a_u`, events :math:`n_{tu}` and unit population :math:`p_u`:

    .. math::

        \text{flag share}_g = \frac{\sum_t \sum_{u \in g} f_{tu} a_u}
                                    {\sum_t \sum_u f_{tu} a_u}, \quad
        \text{event share}_g = \frac{\sum_t \sum_{u \in g} n_{tu}}{\sum_t \sum_u n_{tu}},
        \quad \text{ratio}_g = \frac{\text{flag share}_g}{\text{event share}_g}

        \text{exposure per area}_g = \frac{\sum_t \sum_{u \in g} f_{tu} a_u}{T A_g},
        \quad
        \text{exposure per capita}_g = \frac{\sum_t \sum_{u \in g} f_{tu} p_u}{T P_g}

    A ratio above 1 means the group's areas are flagged more than their share of events
    would justify. Intervals are percentile bootstrap intervals from resampling the periods
    with replacement (periods are the natural independent-ish replicates of a backtest;
    this ignores serial dependence between weeks, so intervals are optimistic).

    Parameters
    ----------
    flags : array of bool, shape (n_periods, n_units)
    observed : array of float, shape (n_periods, n_units)
    unit_area : array of float, shape (n_units,)
        Area of each unit, any unit (m²).
    unit_group : array of int, shape (n_units,)
        Index into ``labels``; -1 for units in no group (reported as one more group).
    labels : array of str
        Group labels.
    unit_population : array of float, optional
        Population of each unit (area-level, e.g. apportioned from tracts).
    n_boot : int
        Bootstrap resamples; 0 for none (intervals are then nan).
    level : float
        Confidence level, in (0, 1).
    random_state : int, optional
        Seed of the bootstrap.
    description : dict, optional
        How the groups were made (kept in the result).

    Returns
    -------
    DisparityResult

    Notes
    -----
    O(n_periods x n_units + n_boot x n_periods x n_groups).
    """
    f, counts = check_flags(flags, observed)
    assert counts is not None
    n_periods, n_units = f.shape
    area = np.asarray(unit_area, dtype=float)
    group = np.asarray(unit_group, dtype=np.int64)
    names = [str(v) for v in np.asarray(labels, dtype=object)]
    if area.shape != (n_units,) or group.shape != (n_units,):
        raise ParameterError(f"`unit_area` and `unit_group` need one value per unit "
                             f"({n_units}).", param=("unit_area", "unit_group"))
    if not np.isfinite(area).all() or (area <= 0).any():
        raise ParameterError("unit areas (`unit_area`) must be positive.", param="unit_area")
    if (group >= len(names)).any() or (group < -1).any():
        raise ParameterError("`unit_group` values must index labels (the positions of "
                             "`labels`, or -1 for no group).", param=("unit_group", "labels"))
    if not 0 < level < 1:
        raise ParameterError(f"`level` must be in (0, 1), got {level}.", param="level")
    if int(n_boot) < 0:
        raise ParameterError(f"`n_boot` must be >= 0, got {n_boot}.", param="n_boot")
    if (group < 0).any():
        names = [*names, OUTSIDE]
        group = np.where(group < 0, len(names) - 1, group)
    n_groups = len(names)
    onehot = np.zeros((n_units, n_groups))
    onehot[np.arange(n_units), group] = 1.0
    flag_area = (f * area) @ onehot  # (n_periods, n_groups)
    events = counts @ onehot
    group_area = area @ onehot
    pop = None if unit_population is None else np.asarray(unit_population, dtype=float)
    if pop is not None and pop.shape != (n_units,):
        raise ParameterError(f"`unit_population` needs one value per unit ({n_units}).",
                             param="unit_population")
    pop_flagged = None if pop is None else (f * pop) @ onehot
    group_pop = None if pop is None else pop @ onehot
    point = _statistics(flag_area.sum(0), events.sum(0),
                        None if pop_flagged is None else pop_flagged.sum(0),
                        np.array(float(n_periods)), group_area, group_pop)
    table = pd.DataFrame({
        "group": names,
        "n_units": onehot.sum(0).astype(np.int64),
        "area_km2": group_area / 1e6,
        "area_share": group_area / group_area.sum(),
    })
    if group_pop is not None:
        table["population"] = group_pop
    boot: dict[str, np.ndarray] = {}
    if n_boot:
        rng = np.random.default_rng(random_state)
        draws = rng.integers(0, n_periods, size=(int(n_boot), n_periods))
        weights = np.zeros((int(n_boot), n_periods))
        np.add.at(weights, (np.arange(int(n_boot))[:, None], draws), 1.0)
        boot = _statistics(weights @ flag_area, weights @ events,
                           None if pop_flagged is None else weights @ pop_flagged,
                           np.full((int(n_boot), 1), float(n_periods)), group_area, group_pop)
    tail = (1 - level) / 2 * 100
    for name, value in point.items():
        table[name] = value
        if n_boot:
            samples = np.where(np.isfinite(boot[name]), boot[name], np.nan)
            with np.errstate(all="ignore"):
                import warnings

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
        else:
            low = high = np.full(n_groups, np.nan)
        table[f"{name}_low"] = low
        table[f"{name}_high"] = high
    table["total_events"] = events.sum(0)
    table["flagged_unit_periods"] = (f.astype(float) @ onehot).sum(0)
    return DisparityResult(table=table, n_periods=int(n_periods), n_boot=int(n_boot),
                           level=float(level), description=dict(description or {}))


def plot_disparity(result: DisparityResult, path: str | os.PathLike[str], *,
                   max_groups: int = 40) -> Path:
    """Plot each group's flag share against its event share (with intervals) to PNG/SVG.

    Groups are sorted by event share; at most ``max_groups`` (the largest by events or
    flags) are drawn. The file is written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from placecast.io._atomic import atomic_path

    table = result.table.copy()
    table["key"] = np.maximum(table["event_share"].fillna(0), table["flag_share"].fillna(0))
    table = table.nlargest(max_groups, "key").sort_values("event_share", kind="stable")
    y = np.arange(len(table))
    height = max(3.0, 0.28 * len(table) + 1.2)
    fig, axes = plt.subplots(1, 2, figsize=(10, height), sharey=True)
    pct = 100.0
    for column, offset, colour, name in (("event_share", -0.2, "#4c72b0", "share of events"),
                                         ("flag_share", 0.2, "#dd8452", "share of flagged area")):
        value = table[column].to_numpy() * pct
        low = table[f"{column}_low"].to_numpy() * pct
        high = table[f"{column}_high"].to_numpy() * pct
        err = np.vstack([np.clip(value - low, 0, None), np.clip(high - value, 0, None)])
        axes[0].barh(y + offset, value, height=0.4, color=colour, label=name,
                     xerr=np.nan_to_num(err), error_kw={"elinewidth": 0.8, "capsize": 2})
    axes[0].set_yticks(y, table["group"].astype(str))
    axes[0].set_xlabel("% of total")
    axes[0].legend(loc="lower right", fontsize="small")
    axes[0].set_title("flags vs events by area group")
    ratio = table["ratio"].to_numpy()
    finite = np.isfinite(ratio)
    low = table["ratio_low"].to_numpy()
    high = table["ratio_high"].to_numpy()
    axes[1].errorbar(np.where(finite, ratio, np.nan), y,
                     xerr=np.nan_to_num(np.vstack([np.clip(ratio - low, 0, None),
                                                   np.clip(high - ratio, 0, None)]),
                                        posinf=0.0),
                     fmt="o", color="#333333", ms=4, elinewidth=0.8, capsize=2)
    axes[1].axvline(1.0, color="#c44e52", lw=1)
    axes[1].set_xscale("symlog", linthresh=1.0)  # linear on [0, 1], logarithmic above
    axes[1].set_xlim(left=0)
    axes[1].set_xlabel("flag share / event share (1 = proportional)")
    axes[1].set_title(f"disparity ratio ({result.level:.0%} bootstrap CI)")
    fig.tight_layout()
    target = Path(path)
    with atomic_path(target) as tmp:
        fig.savefig(tmp, format=target.suffix.lstrip(".") or "png", dpi=110)
    plt.close(fig)
    return target
