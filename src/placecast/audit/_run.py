"""The audit stage in one call: backtest a policy, then audit exposure, disparity, feedback.

:func:`run_audit` runs a forecasting policy (model + area units + area budget) over rolling
forecast origins with :func:`placecast.evaluate.run_backtest`, audits which area units and
groups of areas it flagged against where events were recorded, optionally simulates the
recording feedback loop, and gathers everything in an :class:`AuditResult`. The command
line (``placecast audit``) and the web service (``POST /audits``) both call it;
:meth:`AuditResult.write` writes the tables, plots and model card and
:meth:`AuditResult.read` reads them back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast.audit._disparity import (
    DisparityResult,
    GroupAssignment,
    assign_groups,
    disparity_audit,
    plot_disparity,
)
from placecast.audit._exposure import ExposureResult, exposure_audit
from placecast.audit._feedback import (
    FeedbackResult,
    model_refit,
    plot_feedback,
)
from placecast.audit._feedback import simulate_feedback as run_simulation
from placecast.audit._model_card import ModelCard, build_model_card, summarise_performance
from placecast.events import Events
from placecast.exceptions import DataError, ParameterError
from placecast.units import Units

__all__ = ["AUDIT_FILES", "PERFORMANCE_METRICS", "AuditResult", "PolicyBacktest",
           "audit_origins", "backtest_policy", "check_directory", "check_plot_format",
           "model_card_text", "read_model_card", "run_audit"]

#: Per-origin scores the audit summarises with bootstrap intervals.
PERFORMANCE_METRICS = ("hit_rate", "pai", "pei_star", "log_score")

#: Files :meth:`AuditResult.write` writes (the plots end in the chosen plot format).
AUDIT_FILES = ("performance_by_origin.csv", "performance.csv", "exposure_units.csv",
               "exposure_runs.csv", "flags.csv", "disparity.csv", "disparity.<fmt>",
               "feedback.csv", "feedback_summary.csv", "feedback.<fmt>", "model_card.md",
               "model_card.html", "audit.json")

#: Past periods the feedback simulation's model starts from.
_N_HISTORY = 52


# ---------------------------------------------------------------------- the policy backtest
@dataclass(frozen=True, eq=False)
class PolicyBacktest:
    """A policy's flags and the observed events over rolling origins, as plain arrays.

    Attributes
    ----------
    origins : list of Timestamp
        Forecast origins (period starts).
    flags : ndarray of bool, shape (n_periods, n_units)
        Units flagged for each period.
    observed : ndarray of float, shape (n_periods, n_units)
        Events per unit in each period.
    per_origin : DataFrame
        ``placecast.evaluate`` scores per origin (hit rate, PAI, PEI*, log score, ...),
        with ``origin`` as an ISO date.
    period_days : float
        Length of the first period, days.
    result : BacktestResult
        The full backtest.
    """

    origins: list[pd.Timestamp]
    flags: np.ndarray
    observed: np.ndarray
    per_origin: pd.DataFrame
    period_days: float
    result: Any


def audit_origins(start: Any, end: Any, horizon: str, step: str | None = None) -> np.ndarray:
    """Forecast origins of an audit: ``start, start + step, ...`` whose window ends by ``end``.

    Origins come from :func:`placecast.evaluate.rolling_origins` (the one origin
    generator); with ``step`` equal to ``horizon`` (the default) the periods tile
    ``[start, end)`` without overlap.

    Parameters
    ----------
    start, end : date-like
        First origin; end of the audited period (the last window ends by it).
    horizon : str
        Window length (``"7d"``, ``"1M"``).
    step : str, optional
        Time between origins (default ``horizon``).

    Returns
    -------
    ndarray of datetime64[ns]

    Raises
    ------
    ParameterError
        If no whole window fits between ``start`` and ``end``.

    Examples
    --------
    >>> audit_origins("2017-01-03", "2017-01-25", "7d").astype("datetime64[D]")
    array(['2017-01-03', '2017-01-10', '2017-01-17'], dtype='datetime64[D]')
    """
    from placecast.evaluate import rolling_origins
    from placecast.events import to_datetime64
    from placecast.quantities import parse_duration

    duration = parse_duration(horizon, name="horizon")
    first = pd.Timestamp(to_datetime64(start, name="start"))
    last = pd.Timestamp(to_datetime64(end, name="end"))
    origins = (rolling_origins(first, last, step if step is not None else duration)
               if last >= first else np.array([], dtype="datetime64[ns]"))
    keep = [o for o in origins if duration.add_to(pd.Timestamp(o)) <= last]
    if not keep:
        raise ParameterError(f"`start` {start} .. `end` {end} holds no whole {horizon} window; "
                             "pass a later `end` or a shorter `horizon`.",
                             param=("end", "start", "horizon"))
    return np.asarray(keep, dtype="datetime64[ns]")


def backtest_policy(events: Events, units: Units, model: str, params: Mapping[str, Any],
                    start: Any, end: Any, horizon: str, budget_m2: float, *,
                    step: str | None = None, jobs: int = 1, dask: Any = None,
                    progress: Callable[[int, int], None] | None = None) -> PolicyBacktest:
    """Backtest the policy with :func:`placecast.evaluate.run_backtest`.

    Origins are :func:`audit_origins` (``start, start + step, ...`` while the window ends
    by ``end``); at each the model is refitted on the events before it and the top units
    within ``budget_m2`` are flagged.
    """
    from placecast.evaluate import run_backtest
    from placecast.quantities import parse_duration

    origins = audit_origins(start, end, horizon, step)
    result = run_backtest(events, units, models={model: model},
                          model_params={model: dict(params)}, origins=list(origins),
                          horizons=(horizon,), area=budget_m2, jobs=jobs, dask=dask,
                          progress=progress)
    per_origin = result.to_frame()
    per_origin["origin"] = pd.to_datetime(per_origin["origin"]).dt.date.astype(str)
    first = pd.Timestamp(origins[0])
    window_end = parse_duration(horizon, name="horizon").add_to(first)
    return PolicyBacktest(origins=[pd.Timestamp(o) for o in origins],
                          flags=result.flags(model, horizon),
                          observed=np.asarray(result.observed[horizon], dtype=float),
                          per_origin=per_origin,
                          period_days=(window_end - first) / pd.Timedelta(days=1),
                          result=result)


# ---------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything an audit of a forecasting policy found, and what produced it.

    Attributes
    ----------
    title : str
        The model card's title.
    provenance : dict of str -> str
        Data source, events, span, CRS, audited period.
    policy : dict of str -> str
        Model, parameters, units, area budget, horizon, origins.
    per_origin : DataFrame
        Backtest scores, one row per origin (``performance_by_origin.csv``).
    performance : DataFrame
        Mean of each metric with a bootstrap interval (``performance.csv``).
    exposure : ExposureResult
        Exposure of area units (``exposure_units.csv``, ``exposure_runs.csv``).
    flags : DataFrame
        Every flag: ``origin`` (ISO date), ``unit_id`` (``flags.csv``).
    disparity : DisparityResult or None
        Disparity across area groups, when groups were given (``disparity.csv``).
    feedback : FeedbackResult or None
        The feedback-loop simulation, when asked (``feedback.csv``).
    backtest : BacktestResult or None
        The policy backtest (flags and observed counts as matrices); None when the result
        was read back from files.
    """

    title: str
    provenance: dict[str, str]
    policy: dict[str, str]
    per_origin: pd.DataFrame
    performance: pd.DataFrame
    exposure: ExposureResult
    flags: pd.DataFrame
    disparity: DisparityResult | None = None
    feedback: FeedbackResult | None = None
    backtest: Any = field(default=None, repr=False)

    @property
    def n_periods(self) -> int:
        """Number of audited periods (forecast origins)."""
        return int(self.exposure.summary["n_periods"])

    def model_card(self, figures: Mapping[str, str | os.PathLike[str]] | None = None
                   ) -> ModelCard:
        """The model card; ``figures`` maps ``"disparity"``/``"feedback"`` to plot files."""
        return build_model_card(title=self.title, provenance=self.provenance,
                                policy=self.policy, performance=self.performance,
                                exposure=self.exposure, disparity=self.disparity,
                                feedback=self.feedback, figures=dict(figures or {}))

    def to_frame(self) -> pd.DataFrame:
        """The per-unit exposure table (most flagged first), as ``exposure_units.csv``."""
        return self.exposure.to_frame()

    def to_dict(self) -> dict[str, Any]:
        """The card's facts and the exposure summary, JSON-ready (``audit.json``)."""
        payload = {"card": self.model_card().to_dict(), "exposure": self.exposure.to_dict()}
        return dict(json.loads(json.dumps(payload, default=_json_default)))

    def write(self, directory: str | os.PathLike[str], *, plot_format: str = "png"
              ) -> list[Path]:
        """Write the tables, plots, model card and ``audit.json`` into ``directory``.

        Every file is written atomically (to a temporary file, then renamed).

        Parameters
        ----------
        directory : path
            Created if missing.
        plot_format : {"png", "svg"}
            Format of the disparity and feedback plots.

        Returns
        -------
        list of Path
            The files written, in order.

        Raises
        ------
        ParameterError
            For another plot format, or a ``directory`` that is an existing file.
        """
        from placecast.io._atomic import atomic_path

        check_plot_format(plot_format)
        directory = Path(directory)
        check_directory(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []

        def write_csv(frame: pd.DataFrame, name: str) -> None:
            path = directory / name
            with atomic_path(path) as tmp:
                frame.to_csv(tmp, index=False)
            written.append(path)

        write_csv(self.per_origin, "performance_by_origin.csv")
        write_csv(self.performance, "performance.csv")
        write_csv(self.exposure.units, "exposure_units.csv")
        write_csv(self.exposure.runs, "exposure_runs.csv")
        write_csv(self.flags, "flags.csv")
        figures: dict[str, str | os.PathLike[str]] = {}
        if self.disparity is not None:
            write_csv(self.disparity.table, "disparity.csv")
            figures["disparity"] = plot_disparity(self.disparity,
                                                  directory / f"disparity.{plot_format}")
            written.append(directory / f"disparity.{plot_format}")
        if self.feedback is not None:
            write_csv(self.feedback.periods, "feedback.csv")
            write_csv(self.feedback.summary(), "feedback_summary.csv")
            figures["feedback"] = plot_feedback(self.feedback,
                                                directory / f"feedback.{plot_format}")
            written.append(directory / f"feedback.{plot_format}")
        written += list(self.model_card(figures).write(directory))
        path = directory / "audit.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        written.append(path)
        return written

    @classmethod
    def read(cls, directory: str | os.PathLike[str]) -> AuditResult:
        """Read an audit written by :meth:`write` (or ``placecast audit -o DIR``).

        Parameters
        ----------
        directory : path
            The audit's folder, or any file in it (``audit.json``, ``model_card.md``, ...).

        Returns
        -------
        AuditResult
            With ``backtest`` None (the observed counts are not written).

        Raises
        ------
        DataError
            If the folder lacks a file the audit writes, or a file cannot be read.
        """
        directory = Path(directory)
        if directory.is_file():
            directory = directory.parent
        meta_path = directory / "audit.json"
        if not meta_path.exists():
            raise DataError(f"{directory}: no audit.json, so not a folder written by an "
                            "audit; give the folder `placecast audit -o DIR` wrote.",
                            param="directory")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            card, summary = meta["card"], meta["exposure"]["summary"]
            title, provenance, policy = card["title"], card["provenance"], card["policy"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{meta_path}: not an audit.json written by an audit ({exc}).",
                            param="directory") from None
        exposure = ExposureResult(
            units=_read_csv(directory, "exposure_units.csv", {"unit_id": str,
                                                               "status": str}),
            summary=dict(summary),
            runs=_read_csv(directory, "exposure_runs.csv", {"unit_id": str}))
        exposure.units["status"] = exposure.units["status"].fillna("")
        disparity = None
        if "disparity" in card:
            d = card["disparity"]
            disparity = DisparityResult(
                table=_read_csv(directory, "disparity.csv", {"group": str}),
                n_periods=int(d["n_periods"]), n_boot=int(d["n_boot"]),
                level=float(d["level"]), description=dict(d.get("description", {})))
        feedback = None
        if "feedback" in card:
            feedback = FeedbackResult(periods=_read_csv(directory, "feedback.csv", {}),
                                      params=dict(card["feedback"]["params"]))
        return cls(title=title, provenance=dict(provenance), policy=dict(policy),
                   per_origin=_read_csv(directory, "performance_by_origin.csv",
                                        {"origin": str}),
                   performance=_read_csv(directory, "performance.csv", {}),
                   exposure=exposure,
                   flags=_read_csv(directory, "flags.csv", {"origin": str, "unit_id": str}),
                   disparity=disparity, feedback=feedback)


def read_model_card(path: str | os.PathLike[str]) -> ModelCard:
    """The model card of an audit, from its folder or any file the audit wrote there.

    ``model_card.md``, ``model_card.html``, ``audit.json`` or the folder itself all give
    the same card, rebuilt from the audit's tables (figures from the plots beside them).

    Raises
    ------
    DataError
        If ``path`` does not exist or is not part of an audit's output.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model card file or audit folder.", param="path")
    result = AuditResult.read(path)
    directory = path if path.is_dir() else path.parent
    figures: dict[str, str | os.PathLike[str]] = {}
    for name in ("disparity", "feedback"):
        if getattr(result, name) is not None:
            found = [directory / f"{name}.{fmt}" for fmt in ("png", "svg")
                     if (directory / f"{name}.{fmt}").exists()]
            if found:
                figures[name] = found[0]
    return result.model_card(figures)


#: Files of an audit folder that stand for its model card.
_CARD_FILES = ("model_card.md", "model_card.html", "audit.json")


def model_card_text(path: str | os.PathLike[str]) -> str:
    """A model card as text, from an audit's output or a plain text file.

    Parameters
    ----------
    path : path
        An audit folder, or its ``model_card.md``, ``model_card.html`` or ``audit.json``
        (each gives the card's Markdown, rebuilt from the audit); or any other text file
        (``.txt``, ``.md``), returned as it is.

    Returns
    -------
    str

    Raises
    ------
    DataError
        If ``path`` does not exist, or is an HTML or JSON file that no audit wrote (it
        cannot be shown as text).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such model card file.", param="path")
    directory = path if path.is_dir() else path.parent
    if path.is_dir() or (path.name in _CARD_FILES and (directory / "audit.json").exists()):
        return read_model_card(path).to_markdown(directory)
    if path.suffix.lower() in (".html", ".htm", ".json"):
        raise DataError(f"{path}: not a model card an audit wrote (no audit.json beside it), "
                        "and a page or JSON cannot be shown as text; pass the audit folder "
                        "or a text file instead.", param="path")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: could not read the model card as UTF-8 text ({exc}).",
                        param="path") from None


def _read_csv(directory: Path, name: str, dtype: dict[str, Any]) -> pd.DataFrame:
    path = directory / name
    if not path.exists():
        raise DataError(f"{path}: missing; an audit folder holds every file the audit wrote "
                        "(run the audit again to restore it).", param="directory")
    try:
        frame = pd.read_csv(path, dtype=dtype)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: could not read the audit table ({exc}).",
                        param="directory") from None
    return frame


# ---------------------------------------------------------------------- the audit
def check_plot_format(plot_format: str) -> None:
    """Refuse a plot format other than png or svg."""
    if plot_format not in ("png", "svg"):
        raise ParameterError(f"`plot_format` {plot_format!r}: use png or svg.",
                             param="plot_format")


def check_directory(directory: str | os.PathLike[str]) -> None:
    """Refuse an output directory that is an existing file."""
    if Path(directory).exists() and not Path(directory).is_dir():
        raise ParameterError(f"{directory} exists and is not a directory; pass a folder as "
                             "`output_dir`.", param="output_dir")


def run_audit(
    events: Events,
    units: Units,
    *,
    model: str = "kde",
    params: Mapping[str, Any] | None = None,
    start: Any,
    end: Any,
    horizon: str = "7d",
    step: str | None = None,
    area: str | float = "0.25sqmi",
    groups: str | os.PathLike[str] | Any | None = None,
    group_by: str | None = None,
    quantiles: int | None = None,
    population: str | None = None,
    assign: str = "centroid",
    factor: float = 2.0,
    n_boot: int = 999,
    simulate_feedback: bool = False,
    uplift: float = 0.5,
    detection: float = 0.5,
    periods: int = 52,
    runs: int = 3,
    random_share: float = 0.2,
    truth: str = "history",
    seed: int | None = 0,
    jobs: int = 1,
    dask: Any = None,
    source: str | None = None,
    unit_spec: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> AuditResult:
    """Audit a forecasting policy: backtest it, then exposure, disparity and feedback loops.

    Everything concerns area units and groups of areas, never persons.

    Parameters
    ----------
    events : Events
        The recorded events.
    units : Units
        The area units the policy flags.
    model : str
        Model name (``placecast.models.MODELS``).
    params : dict, optional
        Model parameters.
    start, end : date-like
        First forecast origin; end of the audited period (the last window ends by it).
    horizon : str
        Window (period) length: ``"7d"``, ``"1M"``.
    step : str, optional
        Time between origins (default ``horizon``: the periods tile ``[start, end)``).
    area : str or float
        Area flagged per period: ``"0.25sqmi"``, ``"1%"`` of the region, or m².
    groups : path, GeoDataFrame or GroupAssignment, optional
        Polygons of area groups with area-level attributes (with ``group_by``), or units
        already assigned to groups (:func:`assign_groups`).
    group_by, quantiles, population, assign
        How units are grouped (:func:`assign_groups`: its ``group_by``, ``quantiles``,
        ``population`` and ``method``).
    factor : float
        A unit is over-flagged at ``factor`` times its share of events (and under at
        ``1 / factor``).
    n_boot : int
        Bootstrap resamples of the periods.
    simulate_feedback : bool
        Also run the feedback-loop simulation (:func:`simulate_feedback`).
    uplift, detection, periods, runs, random_share
        The simulation's detection uplift in flagged units, base detection probability,
        simulated periods, replicates and share of randomised flags.
    truth : {"history", "forecast"}
        The simulation's ground truth: the model fitted on all events before ``start``
        (its ``lookback_days`` stretched over them), or its forecast at ``start``.
    seed : int, optional
        Seed of the bootstrap and the simulation.
    jobs : int
        Processes for the backtest.
    dask : str or Client, optional
        Run the backtest's origins on Dask (:func:`placecast.evaluate.run_backtest`).
    source : str, optional
        Where the events came from (a file name), for the model card.
    unit_spec : UnitSpec, optional
        How ``units`` were built, for the model card (default: described from ``units``).
    progress : callable, optional
        ``progress(n_done, n_total)`` over the backtest's origins.

    Returns
    -------
    AuditResult

    Raises
    ------
    ParameterError
        For inconsistent options (``groups`` without ``group_by``, ``quantiles`` without
        ``groups``, an unknown ``truth``, ``truth="history"`` with a model that has no
        ``lookback_days``), an area budget smaller than one unit, or no whole window
        between ``start`` and ``end``.
    DataError
        For unreadable group polygons, or a feedback simulation whose ground truth is
        zero everywhere.
    """
    from placecast.evaluate import resolve_area
    from placecast.models import make_model

    params = dict(params or {})
    _check_options(groups, group_by, quantiles, population)
    if assign not in ("centroid", "overlap"):
        raise ParameterError(f"`assign` {assign!r}: use centroid or overlap.", param="assign")
    if int(n_boot) < 0:
        raise ParameterError(f"`n_boot` must be >= 0, got {n_boot}.", param="n_boot")
    if simulate_feedback:  # check before the backtest: fail early
        _check_simulation(periods=periods, runs=runs, uplift=uplift, detection=detection,
                          random_share=random_share)
        if truth not in ("history", "forecast"):
            raise ParameterError(f"`truth` {truth!r}: use history or forecast.", param="truth")
        if truth == "history" and "lookback_days" not in make_model(model,
                                                                     **params).get_params():
            raise ParameterError(f"`truth` history needs a model with a lookback_days "
                                 f"parameter ({model} has none); pass forecast as `truth`.",
                                 param="truth")
    budget = resolve_area(area, units)
    assignment = _assignment(units, groups, group_by, quantiles, population, assign)
    backtest = backtest_policy(events, units, model, params, start, end, horizon, budget,
                               step=step, jobs=jobs, dask=dask, progress=progress)
    exposure = exposure_audit(backtest.flags, backtest.observed, unit_id=units.unit_id,
                              factor=factor)
    performance = summarise_performance(backtest.per_origin, metrics=list(PERFORMANCE_METRICS),
                                        n_boot=n_boot, random_state=seed)
    disparity = None
    if assignment is not None:
        disparity = disparity_audit(backtest.flags, backtest.observed, units.area,
                                    assignment.unit_group, assignment.labels,
                                    unit_population=assignment.unit_population,
                                    n_boot=n_boot, random_state=seed,
                                    description=assignment.to_dict())
    feedback = None
    if simulate_feedback:
        feedback = _simulate(events, units, model, params, backtest, budget, truth=truth,
                             uplift=uplift, detection=detection, periods=periods, runs=runs,
                             random_share=random_share, seed=seed)
    flag_t, flag_u = np.nonzero(backtest.flags)
    flags = pd.DataFrame({"origin": [backtest.origins[t].date().isoformat() for t in flag_t],
                          "unit_id": np.asarray(units.unit_id)[flag_u]})
    title, provenance, policy = _describe(events, units, model, params, backtest, end=end,
                                          horizon=horizon, area=area, budget=budget,
                                          step=step, truth=truth if simulate_feedback else None,
                                          source=source, unit_spec=unit_spec)
    return AuditResult(title=title, provenance=provenance, policy=policy,
                       per_origin=backtest.per_origin, performance=performance,
                       exposure=exposure, flags=flags, disparity=disparity,
                       feedback=feedback, backtest=backtest.result)


def _check_options(groups: Any, group_by: str | None, quantiles: int | None,
                   population: str | None) -> None:
    if isinstance(groups, GroupAssignment):
        if group_by is not None or quantiles is not None or population is not None:
            raise ParameterError("`groups` is already an assignment of units to groups; "
                                 "drop `group_by`, `quantiles` and `population`.",
                                 param=("groups", "group_by", "quantiles", "population"))
        return
    if (groups is None) != (group_by is None):
        raise ParameterError("`groups` and `group_by` go together: give the polygon file "
                             "and the column that names each polygon's group.",
                             param=("groups", "group_by"))
    if (quantiles is not None or population is not None) and groups is None:
        raise ParameterError("`quantiles` and `population` need `groups` and `group_by`.",
                             param=("quantiles", "population", "groups", "group_by"))


def _check_simulation(**values: float) -> None:
    """The simulation's settings, checked under ``run_audit``'s names before the backtest."""
    rules = {"periods": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
             "runs": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
             "uplift": (lambda v: 0 <= v < np.inf, ">= 0"),
             "detection": (lambda v: 0 < v <= 1, "in (0, 1]"),
             "random_share": (lambda v: 0 < v < 1, "in (0, 1)")}
    for name, value in values.items():
        ok, text = rules[name]
        if not ok(value):
            raise ParameterError(f"`{name}` must be {text}, got {value}.", param=name)


def _assignment(units: Units, groups: Any, group_by: str | None, quantiles: int | None,
                population: str | None, assign: str) -> GroupAssignment | None:
    if groups is None:
        return None
    if isinstance(groups, GroupAssignment):
        if len(groups.unit_group) != len(units):
            raise ParameterError(f"`groups` assigns {len(groups.unit_group):,} units but there "
                                 f"are {len(units):,}; assign these units.", param="groups")
        return groups
    assert group_by is not None  # _check_options
    return assign_groups(units, groups, group_by, quantiles=quantiles, method=assign,
                         population=population)


def _simulate(events: Events, units: Units, model: str, params: dict[str, Any],
              backtest: PolicyBacktest, budget: float, *, truth: str, uplift: float,
              detection: float, periods: int, runs: int, random_share: float,
              seed: int | None) -> FeedbackResult:
    from placecast.models import make_model
    from placecast.units import aggregate

    first = backtest.origins[0]
    period_days = backtest.period_days
    hist_edges = [first - pd.Timedelta(days=period_days) * k
                  for k in range(_N_HISTORY, -1, -1)]
    history = aggregate(events, units, np.array([e.to_datetime64() for e in hist_edges])).T
    intensity = _ground_truth(events, units, model, params, first, period_days,
                              truth) / detection
    if intensity.sum() <= 0:
        raise DataError("the model forecasts no events at `start`; the feedback "
                        "simulation needs a non-zero ground-truth intensity: pass an "
                        "earlier or later `start`.", param="start")
    refit = model_refit(make_model(model, **params), units, first, period_days, _N_HISTORY)
    return run_simulation(intensity, units.area, budget, refit=refit, history=history,
                          n_periods=periods, uplift=uplift, detection=detection,
                          random_share=random_share, n_runs=runs, random_state=seed)


def _ground_truth(events: Events, units: Units, model: str, params: dict[str, Any],
                  first: pd.Timestamp, period_days: float, source: str) -> np.ndarray:
    """Expected recorded events per unit per period at ``first``.

    ``forecast``: the policy's own forecast; ``history``: the same model with its lookback
    stretched over all events before ``first`` (a long-run intensity that differs from the
    policy's first allocation, so the simulation shows whether the policy moves towards it
    or stays where it started).
    """
    from placecast.events import to_datetime64
    from placecast.forecast import TimeWindow
    from placecast.models import make_model

    estimator = make_model(model, **params)
    before = events.before(first)
    if source == "history":
        span = (first - pd.Timestamp(before.start)) / pd.Timedelta(days=1)
        estimator.set_params(lookback_days=float(max(span, period_days)) + 1.0)
    window = TimeWindow(to_datetime64(first),
                        to_datetime64(first + pd.Timedelta(days=period_days)))
    return np.asarray(estimator.fit(before).predict(units, window).intensity)


def _describe(events: Events, units: Units, model: str, params: dict[str, Any],
              backtest: PolicyBacktest, *, end: Any, horizon: str, area: str | float,
              budget: float, step: str | None, truth: str | None, source: str | None,
              unit_spec: Any) -> tuple[str, dict[str, str], dict[str, str]]:
    """The model card's title, provenance and policy tables."""
    n_periods = len(backtest.origins)
    summary = events.summary()
    provenance: dict[str, str] = {}
    if source is not None:
        provenance["events file"] = str(source)
    every = "" if step is None or step == horizon else f", every {step}"
    provenance.update({
        "events": f"{len(events):,}",
        "data span": f"{summary['start'][:10]} .. {summary['end'][:10]}",
        "CRS": str(events.spatial_reference.source_crs),
        "audited period": (f"{backtest.origins[0].date()} .. {_day_text(end)} ({n_periods} x "
                           f"{horizon}{every})"),
        "events in audited period": f"{int(backtest.observed.sum()):,}",
    })
    if events.report is not None:
        provenance["rows dropped"] = str(events.report.n_dropped)
    kind, size = _unit_kind_and_size(units, unit_spec)
    if kind != "polygons":
        units_text = f"{kind} {size:g} m"
    else:
        units_text = f"polygons {getattr(unit_spec, 'polygons', None) or units.description}"
    area_text = area if isinstance(area, str) else f"{area:g} m²"
    policy = {
        "model": model, "parameters": json.dumps(params) if params else "defaults",
        "units": units_text,
        "n units": f"{len(units):,}",
        "region area": f"{units.region_area / 1e6:,.2f} km²",
        "area flagged per period": f"{area_text} = {budget / 1e6:.3f} km²",
        "horizon": horizon, "forecast origins": f"{n_periods}",
        "backtest": "placecast.evaluate.run_backtest: rolling origins, refit on the events "
                    "before each",
    }
    if truth is not None:
        policy["feedback ground truth"] = (
            f"{model} fitted on all events before --start, / detection" if truth ==
            "history" else f"{model} forecast at --start, / detection")
    title = f"Model card: {model} on {size:g} m {kind}, {area_text} per {horizon}"
    return title, provenance, policy


def _unit_kind_and_size(units: Units, unit_spec: Any) -> tuple[str, float]:
    if unit_spec is not None:
        return str(unit_spec.kind), float(unit_spec.cell_size)
    if units.grid is not None:
        return units.kind, float(units.grid.cell_size)
    return units.kind, float(np.sqrt(np.median(units.area)))


def _day_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    stamp = pd.Timestamp(value)
    return str(stamp.date()) if stamp == stamp.normalize() else stamp.isoformat()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
