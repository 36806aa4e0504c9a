"""Rolling-origin backtests: refit every model at every origin, score every window.

At each origin ``t0`` each model is fitted on the events strictly before ``t0`` (the model
never receives a later event: no look-ahead) and forecasts the windows
``[t0, t0 + horizon)`` for every horizon; each forecast is scored against the events of
its window (``placecast.evaluate._metrics``). Origins are independent, so they run in
parallel processes (``jobs``) or on a Dask cluster (``dask``) with results identical to
a serial run; each finished origin is checkpointed so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast._progress import ProgressCallback
from placecast.evaluate._metrics import DEFAULT_FLOOR, _score_arrays, resolve_area
from placecast.events import Events, to_datetime64
from placecast.exceptions import ParameterError, UndefinedMetricWarning
from placecast.forecast import TimeWindow
from placecast.models import Forecaster, make_model
from placecast.quantities import AreaBudget, Duration, parse_duration
from placecast.units import Units

__all__ = [
    "COLUMNS",
    "BacktestResult",
    "PairedComparison",
    "data_end",
    "rolling_origins",
    "run_backtest",
]

#: Required columns of a backtest table read back as a result (the others are optional).
_REQUIRED = ("origin", "model", "hit_rate", "pai")
#: Key of the Parquet metadata holding what a table alone cannot (``BacktestResult.write``).
_PARQUET_KEY = b"placecast.backtest"
#: Version of that metadata (bump when its layout changes; older ones are refused).
_FORMAT_VERSION = 1

#: Columns of ``BacktestResult.to_frame()``, in order (areas in square metres).
COLUMNS = ("origin", "horizon", "model", "n_events", "n_flagged_units", "flagged_area",
           "region_area", "hits", "hit_rate", "pai", "pei_star", "log_score")
_METRICS = ("hit_rate", "pai", "pei_star", "log_score")
_DAY = np.timedelta64(1, "D")



# ---------------------------------------------------------------------- origins and checks
def rolling_origins(start: Any, end: Any, step: str | Duration = "7d") -> np.ndarray:
    """Origins ``start, start + step, ...`` up to and including ``end``.

    Examples
    --------
    >>> rolling_origins("2016-03-01", "2016-03-20", "7d").astype("datetime64[D]")
    array(['2016-03-01', '2016-03-08', '2016-03-15'], dtype='datetime64[D]')
    """
    duration = step if isinstance(step, Duration) else parse_duration(step, name="step")
    first = pd.Timestamp(to_datetime64(start, name="start"))
    last = pd.Timestamp(to_datetime64(end, name="end"))
    if last < first:
        raise ParameterError(f"`end` {last.date()} is before `start` {first.date()}; pass a "
                             "later `end` or an earlier `start`.", param=("end", "start"))
    origins = []
    current, i = first, 0
    while current <= last:  # start + i * step, so month ends do not drift (Jan 31, Feb 29,
        origins.append(current.to_datetime64())  # Mar 31, ...)
        i += 1
        current = Duration(duration.amount * i, duration.unit, duration.text).add_to(first)
    return np.asarray(origins, dtype="datetime64[ns]")


def data_end(events: Events) -> np.datetime64:
    """Return the end of the period the events cover.

    For date-only data (every time at midnight) the last day is covered in full, so the
    end is the day after the last event's date; otherwise it is just after the last event.
    """
    if len(events) == 0:
        raise ParameterError("no events to backtest on.")
    last = events.time.max()
    day = last.astype("datetime64[D]")
    if (events.time == events.time.astype("datetime64[D]")).all():
        return (day + 1).astype("datetime64[ns]")
    return last + np.timedelta64(1, "ns")


def _check_windows(events: Events, origins: np.ndarray, horizons: Sequence[Duration]) -> None:
    start, end = events.time.min(), data_end(events)
    first = origins.min()
    if first <= start:
        raise ParameterError(
            f"origin {_day(first)} is not after the data start ({_day(start)}): a model "
            "needs events before its origin. Pass a later `start`.", param="start"
        )
    if origins.max() >= end:
        raise ParameterError(
            f"origin {_day(origins.max())} is at or after the data end ({_day(end)}). Pass "
            "an earlier `end`.", param="end"
        )
    for horizon in horizons:
        last = TimeWindow.starting(origins.max(), horizon)
        if last.end > end:
            raise ParameterError(
                f"the {horizon.text} window from origin {_day(origins.max())} ends "
                f"{_day(last.end)}, past the end of the data ({_day(end)}): it could not be "
                "scored. Pass an earlier `end` or a shorter `horizons`.",
                param=("end", "horizons"))


def _day(value: Any) -> str:
    ts = pd.Timestamp(value)
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()


# ---------------------------------------------------------------------- the plan
@dataclass(frozen=True, eq=False)
class _Plan:
    """Everything a worker needs to run one origin (picklable)."""

    events: Events
    unit_index: np.ndarray
    units: Units
    area: float
    horizons: tuple[Duration, ...]
    models: tuple[tuple[str, type[Forecaster], dict[str, Any]], ...]
    ties: str
    floor: float

    def fingerprint(self) -> str:
        """Hash of the settings and data: a checkpoint is only reused for the same one."""
        digest = hashlib.sha256()
        for array in (self.events.time.view(np.int64), self.events.x, self.events.y,
                      self.events.weights, self.unit_index):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update(json.dumps({
            "units": self.units.description, "n_units": len(self.units),
            "region_area": round(self.units.region_area, 3), "area": round(self.area, 3),
            "horizons": [h.text for h in self.horizons], "ties": self.ties,
            "floor": self.floor,
            "models": [[label, f"{cls.__module__}.{cls.__qualname__}", params]
                       for label, cls, params in self.models],
        }, sort_keys=True, default=str).encode())
        return digest.hexdigest()


@dataclass(frozen=True, eq=False)
class _OriginResult:
    origin: np.datetime64
    rows: list[dict[str, Any]]
    flags: dict[tuple[str, str], np.ndarray]   # (model, horizon) -> flagged unit indices
    observed: dict[str, np.ndarray]            # horizon -> counts per unit


def _run_origin(plan: _Plan, origin: np.datetime64) -> _OriginResult:
    """Fit every model on events before ``origin`` and score every horizon (pure)."""
    training = plan.events.select(plan.events.time < origin)  # strictly before: no look-ahead
    rows: list[dict[str, Any]] = []
    flags: dict[tuple[str, str], np.ndarray] = {}
    observed_by_horizon: dict[str, np.ndarray] = {}
    windows = [TimeWindow.starting(origin, h) for h in plan.horizons]
    n_units = len(plan.units)
    for horizon, window in zip(plan.horizons, windows, strict=True):
        inside = ((plan.events.time >= window.start) & (plan.events.time < window.end)
                  & (plan.unit_index >= 0))
        observed_by_horizon[horizon.text] = np.bincount(
            plan.unit_index[inside], weights=plan.events.weights[inside], minlength=n_units)
    for label, cls, params in plan.models:
        model = cls(**params).fit(training)
        for horizon, window in zip(plan.horizons, windows, strict=True):
            forecast = model.predict(plan.units, window)
            flagged = forecast.top_units(plan.area)
            observed = observed_by_horizon[horizon.text]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UndefinedMetricWarning)
                score = _score_arrays(forecast.intensity, observed, flagged, plan.units.area,
                                      plan.units.region_area, ties=plan.ties, floor=plan.floor)
            row: dict[str, Any] = {"origin": origin, "horizon": horizon.text, "model": label}
            row.update(score.to_dict())
            # calibration: predicted and observed events by decile of predicted intensity
            deciles = np.array_split(forecast.order, 10)
            row["predicted"] = float(forecast.intensity.sum())
            row["decile_predicted"] = [float(forecast.intensity[g].sum()) for g in deciles]
            row["decile_observed"] = [float(observed[g].sum()) for g in deciles]
            rows.append(row)
            flags[(label, horizon.text)] = np.sort(flagged).astype(np.int64)
    return _OriginResult(origin, rows, flags, observed_by_horizon)


# ---------------------------------------------------------------------- checkpoints
class _Checkpoint:
    """One ``.npz`` file per finished origin plus a manifest with the plan's fingerprint."""

    def __init__(self, folder: Path, fingerprint: str, *, resume: bool) -> None:
        self.folder = folder
        manifest = folder / "manifest.json"
        if resume and manifest.exists():
            saved = json.loads(manifest.read_text()).get("fingerprint")
            if saved != fingerprint:
                raise ParameterError(
                    f"{folder}: the checkpoint was made with other data or settings; pass "
                    "`resume`=False to start again, or another `checkpoint` folder.",
                    param=("resume", "checkpoint"))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("origin-*.npz"):
                old.unlink()
            _write_text(manifest, json.dumps({"fingerprint": fingerprint}))

    def _path(self, origin: np.datetime64) -> Path:
        return self.folder / f"origin-{int(origin.astype('datetime64[ns]').view(np.int64))}.npz"

    def load(self, origin: np.datetime64) -> _OriginResult | None:
        path = self._path(origin)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            rows = meta["rows"]
            for row in rows:
                row["origin"] = origin
            flags = {(m, h): data[f"flag_{i}"] for i, (m, h) in enumerate(meta["flags"])}
            observed = {h: data[f"observed_{i}"] for i, h in enumerate(meta["observed"])}
        return _OriginResult(origin, rows, flags, observed)

    def save(self, result: _OriginResult) -> None:
        from placecast.io._atomic import atomic_path

        rows = [{k: v for k, v in row.items() if k != "origin"} for row in result.rows]
        meta = {"rows": rows, "flags": [list(k) for k in result.flags],
                "observed": list(result.observed)}
        arrays: dict[str, Any] = {f"flag_{i}": v for i, v in enumerate(result.flags.values())}
        arrays.update({f"observed_{i}": v for i, v in enumerate(result.observed.values())})
        with atomic_path(self._path(result.origin)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, meta=np.array(json.dumps(meta)), **arrays)


def _write_text(path: Path, text: str) -> None:
    from placecast.io._atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------------- executors
_WORKER_PLAN: _Plan | None = None


def _init_worker(plan: _Plan) -> None:
    global _WORKER_PLAN
    _WORKER_PLAN = plan
    # Ctrl-C reaches the whole process group: the parent stops the workers itself, so a
    # worker ignores SIGINT instead of printing its own traceback
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_in_worker(origin: np.datetime64) -> _OriginResult:
    assert _WORKER_PLAN is not None
    return _run_origin(_WORKER_PLAN, origin)


_PICKLED_PLANS: dict[str, _Plan] = {}


def _run_origin_pickled(key: str, payload: bytes, origin: np.datetime64) -> _OriginResult:
    plan = _PICKLED_PLANS.get(key)
    if plan is None:
        _PICKLED_PLANS.clear()  # keep only the current backtest's plan
        plan = _PICKLED_PLANS[key] = pickle.loads(payload)
    return _run_origin(plan, origin)


def _serial(plan: _Plan, origins: Sequence[np.datetime64]) -> Iterable[_OriginResult]:
    for origin in origins:
        yield _run_origin(plan, origin)


def _processes(plan: _Plan, origins: Sequence[np.datetime64],
               jobs: int) -> Iterable[_OriginResult]:
    """Run origins in ``jobs`` worker processes, yielding results as they finish.

    A ``multiprocessing`` pool rather than ``concurrent.futures``: on an interrupt or an
    error its ``terminate`` stops the workers at once and cleanly (a process-pool executor
    can hang at interpreter exit after its workers are killed). A worker that dies
    (killed, out of memory) is reported instead of waited for.
    """
    import multiprocessing

    pool = multiprocessing.get_context().Pool(processes=jobs, initializer=_init_worker,
                                             initargs=(plan,))
    finished = False
    workers: set[Any] = set()  # the pool replaces a dead worker: remember every one
    try:
        results = pool.imap_unordered(_run_in_worker, origins, chunksize=1)
        for _ in range(len(origins)):
            while True:
                workers.update(getattr(pool, "_pool", []))
                try:
                    yield results.next(timeout=1.0)
                    break
                except multiprocessing.TimeoutError:
                    _check_workers(workers)
        finished = True
    finally:
        if finished:
            pool.close()
        else:  # interrupted or failed: do not wait for origins still running
            pool.terminate()
        pool.join()


def _check_workers(workers: set[Any]) -> None:
    """Raise if one of the pool's ``workers`` died: its origin would never finish."""
    for worker in workers:
        code = worker.exitcode
        if code is not None and code != 0:
            raise RuntimeError(
                f"a backtest worker process died (exit code {code}; -9 is usually the "
                "system running out of memory). Use fewer worker processes (`jobs`), or "
                "resume from the checkpoint.")


def _dask(plan: _Plan, origins: Sequence[np.datetime64], address: Any,
          jobs: int) -> Iterable[_OriginResult]:
    try:
        from dask.distributed import as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ParameterError("`dask` needs dask.distributed: pip install "
                             "'placecast[dask]'.", param="dask") from None
    from placecast.regions import dask_client

    # "local": workers start with glibc's default malloc settings, as outside Dask (Dask's
    # trim threshold made per-region backtests 2-4x slower, docs/scale.md)
    with dask_client(address, jobs) as client:
        yield from _submit_origins(client, plan, origins, as_completed)


def _submit_origins(client: Any, plan: _Plan, origins: Sequence[np.datetime64],
                    as_completed: Any) -> Iterator[_OriginResult]:
    # one pickled payload (Dask's own serialisation of the plan's object arrays is
    # several times slower); each worker unpickles it once and keeps it
    key = uuid.uuid4().hex
    payload = client.scatter(pickle.dumps(plan, protocol=pickle.HIGHEST_PROTOCOL),
                             broadcast=True, hash=False)
    futures = [client.submit(_run_origin_pickled, key, payload, origin, pure=False)
               for origin in origins]
    try:
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.cancel(futures)


# ---------------------------------------------------------------------- result
@dataclass(frozen=True, slots=True)
class PairedComparison:
    """Wilcoxon signed-rank test of one model against another on per-origin scores.

    Attributes
    ----------
    model, other : str
        The reference model and the model compared with it (differences are
        ``model - other``); see :meth:`BacktestResult.compare` for how ``model`` is chosen.
    horizon : str
        The window length compared.
    metric : str
        The compared metric (e.g. ``"pai"``).
    n_pairs : int
        Origins where both scores are defined.
    mean_difference, median_difference : float
        Mean and median of ``model - other`` over the pairs.
    n_better, n_worse : int
        Origins where ``model`` scored above / below ``other``.
    statistic, p_value : float
        Two-sided ``scipy.stats.wilcoxon`` (zero differences dropped, "wilcox" method);
        ``nan`` when every difference is zero or there are fewer than two pairs.
    """

    model: str
    other: str
    horizon: str
    metric: str
    n_pairs: int
    mean_difference: float
    n_better: int
    n_worse: int
    statistic: float
    p_value: float
    median_difference: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value."""
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Scores of every model at every origin and horizon, with what produced them.

    Every statistic of a backtest (summary, winner, paired tests) is a method of this
    object, and every consumer (the ``backtest`` command, ``backtest.html``, the HTML
    report, the store, the web service and the dashboard) calls them: a backtest read back
    from a file (:meth:`read`) or a store gives the same numbers to the last digit.

    Attributes
    ----------
    records : pandas.DataFrame
        One row per origin x horizon x model with ``COLUMNS`` (areas in m²), sorted by
        origin, then horizon and model in the order given.
    origins : ndarray of datetime64[ns]
        The origins, increasing.
    horizons : tuple of str
        Window lengths as given (``"7d"``, ``"1M"``).
    models : tuple of str
        Model labels.
    units : Units or None
        The area units scored (``None`` for a result read back from a file or a store:
        :attr:`unit_ids`, :attr:`region_area` and :attr:`n_units` still tell about them).
    area : float
        The flagged-area budget, m² (``nan`` when read from a bare table).
    flag_indices : dict
        ``(model, horizon) -> list`` (one per origin) of flagged unit indices.
    observed : dict
        ``horizon -> ndarray (n_origins, n_units)`` of observed events per unit.
    settings : dict
        Model parameters, ties rule, log-score floor.
    calibration_records : DataFrame, optional
        Predicted and observed events per origin, horizon, model and intensity decile.
    meta : dict
        Where the backtest came from (``dataset``, ``name``, ...), kept by the store.
    unit_info : dict
        ``n_units``, ``region_area_m2``, ``units`` (description) and ``unit_id`` of the units
        when :attr:`units` is ``None``.
    """

    records: pd.DataFrame
    origins: np.ndarray
    horizons: tuple[str, ...]
    models: tuple[str, ...]
    units: Units | None
    area: float
    flag_indices: dict[tuple[str, str], list[np.ndarray]] = field(repr=False)
    observed: dict[str, np.ndarray] = field(repr=False)
    settings: dict[str, Any] = field(default_factory=dict)
    calibration_records: pd.DataFrame | None = field(default=None, repr=False)
    meta: dict[str, Any] = field(default_factory=dict)
    unit_info: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ about the units
    @property
    def region_area(self) -> float:
        """Area of the region scored, m² (from the units, else from the table)."""
        if self.units is not None:
            return float(self.units.region_area)
        if "region_area_m2" in self.unit_info:
            return float(self.unit_info["region_area_m2"])
        if "region_area" in self.records and len(self.records):
            return float(self.records["region_area"].iloc[0])
        return float("nan")

    @property
    def n_units(self) -> int | None:
        """Number of area units (``None`` when read from a bare table)."""
        if self.units is not None:
            return len(self.units)
        n = self.unit_info.get("n_units")
        return int(n) if n is not None else None

    @property
    def unit_ids(self) -> np.ndarray | None:
        """Unit ids in the order of :meth:`flags` columns (``None`` from a bare table)."""
        if self.units is not None:
            return np.asarray(self.units.unit_id)
        ids = self.unit_info.get("unit_id")
        return None if ids is None else np.asarray(ids)

    @property
    def flagged_area(self) -> float:
        """The largest area flagged in any window, m² (the budget as used)."""
        if "flagged_area" not in self.records or not len(self.records):
            return float(self.area)
        return float(self.records["flagged_area"].max())

    def calibration(self, horizon: str | None = None) -> pd.DataFrame:
        """Predicted vs observed events per model: totals and the ten intensity deciles.

        At every origin the units are ranked by forecast intensity and cut into ten
        groups of equal size (decile 1 = the highest forecasts); predicted and observed
        events are summed per group over all origins. ``ratio`` = observed / predicted:
        1 means the expected counts were honest on average; above 1, too low.

        Returns
        -------
        DataFrame
            ``model, decile, predicted, observed, ratio`` with a ``decile = "all"`` row
            per model (the totals).
        """
        if self.calibration_records is None:
            raise ParameterError("this backtest result holds no calibration records (it was "
                                 "read from a bare table, or made by an older placecast); "
                                 "run the backtest again, or keep it as .parquet or in a "
                                 "store.")
        horizon = self._horizon(horizon)
        part = self.calibration_records[self.calibration_records.horizon == horizon]
        rows = []
        for model in self.models:
            mine = part[part.model == model]
            predicted = np.sum(np.vstack(list(mine.decile_predicted)), axis=0)
            observed = np.sum(np.vstack(list(mine.decile_observed)), axis=0)
            for decile in range(10):
                rows.append({"model": model, "decile": str(decile + 1),
                             "predicted": predicted[decile], "observed": observed[decile]})
            rows.append({"model": model, "decile": "all", "predicted": float(mine.predicted.sum()),
                         "observed": float(observed.sum())})
        table = pd.DataFrame(rows)
        with np.errstate(divide="ignore", invalid="ignore"):
            table["ratio"] = np.where(table.predicted > 0, table.observed / table.predicted,
                                      np.nan)
        return table

    def to_frame(self) -> pd.DataFrame:
        """Return the per-origin table (a copy) with exactly ``COLUMNS``."""
        return self.records.loc[:, list(COLUMNS)].copy()

    def flags(self, model: str, horizon: str | None = None) -> np.ndarray:
        """Boolean ``(n_origins, n_units)``: which units ``model`` flagged at each origin."""
        horizon = self._horizon(horizon)
        if model not in self.models:
            raise ParameterError(f"no model {model!r} in this backtest "
                                 f"(models: {', '.join(self.models)}).", param="model")
        if (model, horizon) not in self.flag_indices or self.n_units is None:
            raise ParameterError("this backtest result holds no flagged units (it was read "
                                 "from a bare table); keep backtests as .parquet or in a "
                                 "store to audit them, or run the backtest again.")
        matrix = np.zeros((len(self.origins), self.n_units), dtype=bool)
        for row, index in enumerate(self.flag_indices[(model, horizon)]):
            matrix[row, index] = True
        return matrix

    def _horizon(self, horizon: str | None) -> str:
        if horizon is None:
            return self.horizons[0]
        if horizon not in self.horizons:
            raise ParameterError(f"no horizon {horizon!r} in this backtest "
                                 f"(horizons: {', '.join(self.horizons)}).", param="horizon")
        return horizon

    # ------------------------------------------------------------------ statistics
    def summary(self, metrics: Sequence[str] = ("pai", "hit_rate", "pei_star", "log_score")
                ) -> pd.DataFrame:
        """Summarise each metric per horizon and model.

        Columns: ``horizon, model, metric, n`` (origins scored), the ``mean, median,
        p10, p90`` of the metric over origins (undefined scores left out) and, for
        ``hit_rate`` and ``pai``, ``pooled``: the metric of all windows taken together,
        ``(sum n / sum N) / (a / A)``, steadier than the mean when windows hold few events
        (nan for the other metrics, and when the table lacks ``hits``/``n_events``).
        Metrics the table does not have are left out.
        """
        out = []
        metrics = [m for m in metrics if m in self.records]
        can_pool = {"hits", "n_events", "flagged_area"} <= set(self.records)
        for horizon in self.horizons:
            for model in self.models:
                part = self.records[(self.records.horizon == horizon)
                                    & (self.records.model == model)]
                for metric in metrics:
                    values = part[metric].to_numpy(dtype=float)
                    values = values[np.isfinite(values)]
                    stats = ((float(values.mean()), float(np.median(values)),
                              float(np.percentile(values, 10)), float(np.percentile(values, 90)))
                             if len(values) else (np.nan,) * 4)
                    pooled = float("nan")
                    total = float(part["n_events"].sum()) if can_pool else 0.0
                    if metric in ("hit_rate", "pai") and total > 0:
                        pooled = float(part["hits"].sum()) / total
                        if metric == "pai":
                            pooled /= float(part["flagged_area"].mean()) / self.region_area
                    out.append({"horizon": horizon, "model": model, "metric": metric,
                                "n": int(len(values)), "mean": stats[0], "median": stats[1],
                                "p10": stats[2], "p90": stats[3], "pooled": pooled})
        return pd.DataFrame(out, columns=["horizon", "model", "metric", "n", "mean", "median",
                                          "p10", "p90", "pooled"])

    def winner(self, metric: str = "pai", horizon: str | None = None) -> str:
        """Return the model with the highest mean ``metric`` (ties: first given)."""
        horizon = self._horizon(horizon)
        table = self.summary([metric])
        table = table[table.horizon == horizon]
        means = table.set_index("model")["mean"].reindex(list(self.models))
        if means.isna().all():
            return self.models[0]
        best = float(means.max())
        tolerance = 1e-9 * max(abs(best), 1e-12)  # equal up to rounding: first given wins
        return str(means.index[(means >= best - tolerance).to_numpy()][0])

    def compare(self, metric: str = "pai", horizon: str | None = None,
                reference: str | None = None) -> list[PairedComparison]:
        """Test the reference model against every other model (paired Wilcoxon signed-rank).

        This is placecast's only paired comparison: the ``backtest`` command, its
        ``backtest.html``, the HTML report, the web service and
        ``placecast.report.compare_models`` all call it.

        Parameters
        ----------
        metric : str
            Per-origin score compared (``"pai"``, ``"hit_rate"``, ``"pei_star"``,
            ``"log_score"``).
        horizon : str, optional
            Window length (default the first).
        reference : str, optional
            The reference model. The rule everywhere: the model the caller is about when
            there is one (the report passes its forecast's model), otherwise the
            :meth:`winner` on ``metric`` (highest mean; ties: the first model given).

        Returns
        -------
        list of PairedComparison
            One per other model, in the order given; differences are reference minus
            other.

        Notes
        -----
        Pairs are the origins of ``horizon`` where both scores are defined. Differences
        equal up to rounding (``numpy.isclose``, rtol 1e-9, atol 1e-12: areas summed in
        another order) are ties, set to zero and dropped ("wilcox" zero method); the test
        is two-sided ``scipy.stats.wilcoxon`` with its default method, and is ``nan`` with
        fewer than two pairs or no non-zero difference.
        """
        from scipy.stats import wilcoxon

        horizon = self._horizon(horizon)
        if metric not in self.records:
            raise ParameterError(f"no metric {metric!r} in this backtest (has: "
                                 f"{', '.join(m for m in _METRICS if m in self.records)}).",
                                 param="metric")
        if reference is None:
            best = self.winner(metric, horizon)
        elif reference not in self.models:
            raise ParameterError(f"reference model {reference!r} is not in the backtest "
                                 f"(models: {', '.join(self.models)}); pass one of them as "
                                 "`reference`.", param="reference")
        else:
            best = reference
        part = self.records[self.records.horizon == horizon]
        wide = part.pivot(index="origin", columns="model", values=metric)
        out = []
        for other in self.models:
            if other == best:
                continue
            pair = wide[[best, other]].astype(float).dropna()
            first, second = pair[best].to_numpy(float), pair[other].to_numpy(float)
            # scores equal up to rounding (areas summed in another order) count as ties
            diff = np.where(np.isclose(first, second, rtol=1e-9, atol=1e-12), 0.0,
                            first - second)
            statistic = p_value = float("nan")
            if len(diff) >= 2 and np.count_nonzero(diff) >= 1:
                test = wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
                statistic, p_value = float(test.statistic), float(test.pvalue)
            out.append(PairedComparison(
                best, other, horizon, metric, int(len(diff)),
                float(diff.mean()) if len(diff) else float("nan"),
                int((diff > 0).sum()), int((diff < 0).sum()), statistic, p_value,
                float(np.median(diff)) if len(diff) else float("nan")))
        return out

    def comparisons(self, metric: str = "pai", reference: str | None = None
                    ) -> pd.DataFrame:
        """:meth:`compare` for every horizon as one table (``PairedComparison`` fields)."""
        rows = [c.to_dict() for h in self.horizons
                for c in self.compare(metric, h, reference=reference)]
        return pd.DataFrame(rows, columns=list(PairedComparison.__slots__))

    def to_dict(self) -> dict[str, Any]:
        """Return settings, summary and paired comparisons, JSON-ready (no per-unit values)."""
        return {
            "origins": [_day(o) for o in self.origins],
            "horizons": list(self.horizons),
            "models": list(self.models),
            "area_m2": self.area,
            "region_area_m2": self.region_area,
            "n_units": self.n_units,
            "units": (self.units.description if self.units is not None
                      else self.unit_info.get("units")),
            "settings": self.settings,
            "summary": self.summary().to_dict(orient="records"),
            "comparisons": [c.to_dict() for h in self.horizons for c in self.compare("pai", h)],
        }

    # ------------------------------------------------------------------ files
    @classmethod
    def from_records(cls, records: pd.DataFrame, *, source: str = "the backtest table",
                     meta: Mapping[str, Any] | None = None) -> BacktestResult:
        """A result from its per-origin table alone (as ``to_frame`` gives or a CSV holds).

        Every statistic (``summary``, ``winner``, ``compare``) needs only the table; the
        flagged units, observed counts and calibration do not survive (``flags`` and
        ``calibration`` say so). Rows are sorted by origin; models and horizons keep the
        order of their first appearance.

        Raises
        ------
        DataError
            If a required column (``origin, model, hit_rate, pai``) is missing, a value
            is not a date or number, or an (origin, horizon, model) repeats.
        """
        from placecast.exceptions import DataError

        if not isinstance(records, pd.DataFrame):
            raise ParameterError(f"{source} must be a pandas DataFrame, got "
                                 f"{type(records).__name__}.")
        missing = [c for c in _REQUIRED if c not in records.columns]
        if missing:
            raise DataError(
                f"{source} lacks the column(s) {', '.join(missing)} (has: "
                f"{', '.join(map(str, records.columns)) or 'none'}); a backtest table has "
                f"{', '.join(COLUMNS)}, as written by placecast.evaluate.run_backtest."
            )
        frame = records.copy()
        if not pd.api.types.is_datetime64_any_dtype(frame["origin"]):
            try:
                frame["origin"] = pd.to_datetime(frame["origin"])
            except (ValueError, TypeError):
                raise DataError(f"{source}: column 'origin' holds values that are not "
                                "dates.") from None
        if "horizon" not in frame:
            frame["horizon"] = "-"
        for column in ("horizon", "model"):
            if frame[column].dtype != object or not all(isinstance(v, str)
                                                        for v in frame[column]):
                frame[column] = frame[column].astype(str)
        for column in (*_METRICS, "hits", "n_events", "flagged_area", "region_area",
                       "n_flagged_units"):
            if column in frame and not pd.api.types.is_numeric_dtype(frame[column]):
                values = pd.to_numeric(frame[column], errors="coerce")
                bad = values.isna() & frame[column].notna()
                if bad.any():
                    row = int(np.flatnonzero(bad.to_numpy())[0])
                    raise DataError(f"{source} row {row + 1}: column {column!r} holds "
                                    f"{frame[column].iloc[row]!r}, not a number.")
                frame[column] = values
        keys = frame[["origin", "horizon", "model"]]
        repeated = keys.duplicated()
        if repeated.any():
            row = int(np.flatnonzero(repeated.to_numpy())[0])
            raise DataError(f"{source} row {row + 1}: origin {_day(keys.origin.iloc[row])}, "
                            f"horizon {keys.horizon.iloc[row]!r}, model "
                            f"{keys.model.iloc[row]!r} appears twice; a backtest has one row "
                            "per origin, horizon and model (one area budget). Split the table "
                            "by budget.")
        models = tuple(dict.fromkeys(frame["model"]))
        horizons = tuple(dict.fromkeys(frame["horizon"]))
        if not frame["origin"].is_monotonic_increasing:
            frame = frame.sort_values("origin", kind="stable").reset_index(drop=True)
        origins = np.unique(frame["origin"].to_numpy(dtype="datetime64[ns]"))
        return cls(frame, origins, horizons, models, None, float("nan"), {}, {}, {}, None,
                   dict(meta or {}))

    def to_parquet_bytes(self) -> bytes:
        """The result as one Parquet file: the table plus, in its metadata, the rest.

        The table is ``records`` (what ``to_frame`` gives and a CSV holds); the file's
        key-value metadata ``placecast.backtest`` holds a NumPy ``.npz`` archive with the
        origins, horizons, models, area, settings, meta, unit ids and region area, the
        flagged unit indices, the observed counts and the calibration records. Read back
        with :meth:`from_parquet_bytes`; ``pandas.read_parquet`` still reads the table.
        """
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(self.records.reset_index(drop=True), preserve_index=False)
        metadata = dict(table.schema.metadata or {})
        metadata[_PARQUET_KEY] = self._extras()
        buffer = io.BytesIO()
        pq.write_table(table.replace_schema_metadata(metadata), buffer)
        return buffer.getvalue()

    def _extras(self) -> bytes:
        import io

        keys = list(self.flag_indices)
        ids = self.unit_ids
        info = {
            "version": _FORMAT_VERSION,
            "horizons": list(self.horizons), "models": list(self.models),
            "area": self.area, "settings": self.settings, "meta": self.meta,
            "n_units": self.n_units, "region_area_m2": self.region_area,
            "units": (self.units.description if self.units is not None
                      else self.unit_info.get("units")),
            "flags": [list(k) for k in keys], "observed": list(self.observed),
        }
        arrays: dict[str, np.ndarray] = {
            "origins": self.origins.astype("datetime64[ns]").view(np.int64)}
        if ids is not None:
            arrays["unit_id"] = np.asarray([str(u) for u in ids], dtype=str)
        for i, key in enumerate(keys):
            lists = self.flag_indices[key]
            arrays[f"flag_{i}"] = (np.concatenate(lists).astype(np.int64) if lists
                                   else np.zeros(0, np.int64))
            arrays[f"flag_{i}_n"] = np.array([len(x) for x in lists], dtype=np.int64)
        for i, horizon in enumerate(self.observed):
            arrays[f"observed_{i}"] = np.asarray(self.observed[horizon], dtype=float)
        cal = self.calibration_records
        if cal is not None and len(cal):
            info["calibration"] = {"horizon": [str(v) for v in cal.horizon],
                                   "model": [str(v) for v in cal.model]}
            arrays["cal_origin"] = pd.to_datetime(cal.origin).to_numpy(
                "datetime64[ns]").view(np.int64)
            arrays["cal_predicted"] = cal.predicted.to_numpy(float)
            arrays["cal_observed"] = cal.observed.to_numpy(float)
            arrays["cal_decile_predicted"] = np.vstack(list(cal.decile_predicted)).astype(float)
            arrays["cal_decile_observed"] = np.vstack(list(cal.decile_observed)).astype(float)
        buffer = io.BytesIO()
        contents: dict[str, Any] = {
            "info": np.array(json.dumps(info, default=_json_default)), **arrays}
        np.savez_compressed(buffer, **contents)
        return buffer.getvalue()

    @classmethod
    def from_parquet_bytes(cls, data: bytes, *, source: str = "the backtest file"
                           ) -> BacktestResult:
        """Read :meth:`to_parquet_bytes` back (a plain table gives :meth:`from_records`)."""
        import io

        import pyarrow.parquet as pq

        from placecast.exceptions import DataError

        try:
            table = pq.read_table(io.BytesIO(data))
        except Exception as exc:
            raise DataError(f"{source}: could not read it as Parquet ({exc}).") from None
        records = table.to_pandas()
        extras = (table.schema.metadata or {}).get(_PARQUET_KEY)
        if extras is None:
            return cls.from_records(records, source=source)
        try:
            with np.load(io.BytesIO(extras), allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
            info = json.loads(str(arrays.pop("info")))
        except Exception as exc:
            raise DataError(f"{source}: its placecast metadata is damaged ({exc}); write "
                            "the backtest again.") from None
        if info.get("version") != _FORMAT_VERSION:
            raise DataError(f"{source}: written by another placecast version (format "
                            f"{info.get('version')!r}, this one reads {_FORMAT_VERSION}); "
                            "run the backtest again.")
        base = cls.from_records(records, source=source)
        origins = arrays["origins"].view("datetime64[ns]")
        if not np.array_equal(origins, base.origins):
            raise DataError(f"{source}: its table and its metadata disagree on the origins; "
                            "the file was edited. Write the backtest again.")
        flags = {}
        for i, (model, horizon) in enumerate(info["flags"]):
            counts = arrays[f"flag_{i}_n"]
            flags[(model, horizon)] = np.split(arrays[f"flag_{i}"], np.cumsum(counts)[:-1])
        observed = {h: arrays[f"observed_{i}"] for i, h in enumerate(info["observed"])}
        calibration = None
        if "calibration" in info:
            n = len(arrays["cal_origin"])
            calibration = pd.DataFrame({
                "origin": pd.to_datetime(arrays["cal_origin"].view("datetime64[ns]")),
                "horizon": info["calibration"]["horizon"],
                "model": info["calibration"]["model"],
                "predicted": arrays["cal_predicted"], "observed": arrays["cal_observed"],
                "decile_predicted": [list(map(float, arrays["cal_decile_predicted"][i]))
                                     for i in range(n)],
                "decile_observed": [list(map(float, arrays["cal_decile_observed"][i]))
                                    for i in range(n)]})
        unit_info = {"n_units": info.get("n_units"), "region_area_m2": info["region_area_m2"],
                     "units": info.get("units")}
        if "unit_id" in arrays:
            unit_info["unit_id"] = arrays["unit_id"]
        return cls(base.records, base.origins, tuple(info["horizons"]), tuple(info["models"]),
                   None, float(info["area"]) if info["area"] is not None else float("nan"),
                   flags, observed, info["settings"], calibration, info.get("meta") or {},
                   unit_info)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the result to ``.parquet`` (everything) or ``.csv`` (the table), atomically.

        A ``.parquet`` file is :meth:`to_parquet_bytes`: the table plus every per-unit
        array, so :meth:`read` gives back a result that can also be audited. A ``.csv``
        file is the table alone (``to_frame``; dates as ``YYYY-MM-DD``, or ISO 8601 when
        an origin has a time of day); it carries every statistic, not the flagged units.

        Returns
        -------
        Path
            ``path``.
        """
        from placecast.io._atomic import atomic_path

        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ParameterError(f"{path}: a backtest is written as .csv or .parquet, not "
                                 f"{path.suffix or '(no suffix)'!r}.")
        with atomic_path(path) as tmp:
            if suffix == ".parquet":
                tmp.write_bytes(self.to_parquet_bytes())
            else:
                frame = self.to_frame()
                daily = bool((frame["origin"] == frame["origin"].dt.normalize()).all())
                frame.to_csv(tmp, index=False,
                             date_format="%Y-%m-%d" if daily else "%Y-%m-%dT%H:%M:%S.%f")
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> BacktestResult:
        """Read a backtest written by :meth:`write` or ``placecast backtest -o`` (.csv/.parquet).

        Raises
        ------
        DataError
            If the file is missing or is not a backtest table.
        """
        from placecast.exceptions import DataError

        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such backtest file.")
        suffix = path.suffix.lower()
        if suffix == ".parquet":
            return cls.from_parquet_bytes(path.read_bytes(), source=str(path))
        if suffix != ".csv":
            raise DataError(f"{path}: a backtest file is .csv or .parquet (as `placecast "
                            "backtest -o` writes).")
        try:
            frame = pd.read_csv(path)  # pandas 3 parses floats exactly (round trip)
        except Exception as exc:
            raise DataError(f"{path}: could not read the backtest table ({exc}).") from None
        if "origin" in frame:  # dates as run_backtest gives them (nanoseconds)
            try:
                frame["origin"] = pd.to_datetime(frame["origin"]).astype("datetime64[ns]")
            except (ValueError, TypeError):
                raise DataError(f"{path}: column 'origin' holds values that are not "
                                "dates.") from None
        return cls.from_records(frame, source=str(path))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


# ---------------------------------------------------------------------- the runner
def _model_specs(models: Sequence[str | Forecaster] | Mapping[str, str | Forecaster],
                 model_params: Mapping[str, Mapping[str, Any]] | None
                 ) -> tuple[tuple[str, type[Forecaster], dict[str, Any]], ...]:
    items = list(models.items()) if isinstance(models, Mapping) else [
        (m if isinstance(m, str) else (m.name or type(m).__name__), m) for m in models]
    if not items:
        raise ParameterError("no model to backtest; give at least one in `models` (e.g. "
                             "naive,kde).", param="models")
    specs = []
    for label, model in items:
        if isinstance(model, str):
            params = dict((model_params or {}).get(label, {}))
            instance = make_model(model, **params)  # checks the name and parameter names
        else:
            instance = model
        specs.append((str(label).strip(), type(instance), dict(instance.get_params())))
    labels = [s[0] for s in specs]
    if len(set(labels)) != len(labels):
        raise ParameterError(f"model names repeat ({', '.join(labels)}); give each a "
                             "distinct label.", param="models")
    unknown = set(model_params or {}) - set(labels)
    if unknown:
        raise ParameterError(f"parameters given for models not in the backtest: "
                             f"{', '.join(sorted(unknown))} (models: {', '.join(labels)}); "
                             "drop them from `model_params`.", param="model_params")
    return tuple(specs)


def run_backtest(
    events: Events,
    units: Units,
    *,
    models: Sequence[str | Forecaster] | Mapping[str, str | Forecaster] = ("naive", "kde"),
    model_params: Mapping[str, Mapping[str, Any]] | None = None,
    origins: Sequence[Any] | np.ndarray | None = None,
    start: Any = None,
    end: Any = None,
    step: str = "7d",
    horizons: Sequence[str] | str = ("7d",),
    area: str | float | AreaBudget = "1%",
    ties: str = "first",
    floor: float = DEFAULT_FLOOR,
    jobs: int = 1,
    dask: Any = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = False,
    progress: ProgressCallback | None = None,
) -> BacktestResult:
    """Rolling-origin backtest of several models over several horizons.

    Parameters
    ----------
    events : Events
        All events (training and scoring).
    units : Units
        Area units to forecast and score on.
    models : sequence or mapping
        Model names from ``placecast.models.MODELS`` or ``Forecaster`` instances (cloned
        at every origin with their parameters), or ``{label: model}``.
    model_params : mapping, optional
        ``{label: {param: value}}`` for models given by name.
    origins : sequence of dates, optional
        Explicit origins; otherwise ``rolling_origins(start, end, step)``.
    start, end, step
        First origin, last possible origin, spacing (``"7d"``, ``"1M"``).
    horizons : str or sequence of str
        Window lengths (``"7d,14d,1M"`` or a list).
    area : str, float or AreaBudget
        Flagged-area budget (``"0.25sqmi"``, ``"1%"``, m²).
    ties : {"first", "mean"}
        Tie rule at the budget edge (see ``placecast.evaluate``).
    floor : float
        Intensity floor of the log score.
    jobs : int
        Processes on this machine (1: serial). With ``dask``, the ``LocalCluster`` size.
    dask : str or distributed.Client, optional
        ``"local"`` for a ``LocalCluster``, a scheduler address ``tcp://host:port`` or a
        ``Client``.
    checkpoint : path, optional
        Folder for one file per finished origin (and a manifest).
    resume : bool
        Reuse finished origins in ``checkpoint`` (same data and settings only).
    progress : callable, optional
        ``progress(n_done, n_total)`` after each origin is finished and checkpointed.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ParameterError
        For an unknown model, an origin not inside the data, a window running past the
        end of the data, or an area budget below one unit or above the region.

    Notes
    -----
    Interrupting a run (``KeyboardInterrupt``, Ctrl-C) stops it promptly, worker
    processes included; every origin finished before is already in ``checkpoint``, so
    the same call with ``resume=True`` computes only the rest.

    Cost: origins x models x (fit + predict) plus O(n_events + n_units) scoring per
    forecast. Results do not depend on ``jobs`` or ``dask``: each origin is a pure
    function of the data and settings, and rows are sorted afterwards.
    """
    if isinstance(horizons, str):
        horizons = [h for h in horizons.split(",") if h.strip()]
    durations = tuple(parse_duration(h.strip(), name="horizons") for h in horizons)
    if not durations:
        raise ParameterError("give at least one horizon in `horizons`, e.g. '7d'.",
                             param="horizons")
    if len({d.text for d in durations}) != len(durations):
        raise ParameterError("a horizon is repeated in `horizons`; give each once.",
                             param="horizons")
    specs = _model_specs(models, model_params)
    if origins is None:
        if start is None or end is None:
            raise ParameterError("pass `origins`, or `start` and `end`.",
                                 param=("start", "end"))
        origin_array = rolling_origins(start, end, step)
    else:
        origin_array = np.asarray([to_datetime64(o, name="origin") for o in origins],
                                  dtype="datetime64[ns]")
        if len(origin_array) == 0:
            raise ParameterError("`origins` is empty: give at least one origin.",
                                 param="origins")
    origin_array = np.unique(origin_array)
    if len(events) == 0:
        raise ParameterError("no events to backtest on.")
    _check_windows(events, origin_array, durations)
    area_m2 = resolve_area(area, units)
    if ties not in ("first", "mean"):
        raise ParameterError(f"`ties` is {ties!r}; pass 'first' or 'mean'.", param="ties")
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ParameterError(f"`jobs` must be a positive whole number, got {jobs!r}.",
                             param="jobs")

    ordered = events.sorted_by_time()
    plan = _Plan(ordered, units.assign(ordered.x, ordered.y), units, area_m2, durations,
                 specs, ties, float(floor))
    store = (_Checkpoint(Path(checkpoint), plan.fingerprint(), resume=resume)
             if checkpoint is not None else None)
    results: dict[np.datetime64, _OriginResult] = {}
    todo = []
    for origin in origin_array:
        saved = store.load(origin) if (store is not None and resume) else None
        if saved is not None:
            results[origin] = saved
        else:
            todo.append(origin)
    total = len(origin_array)
    if progress is not None:
        progress(len(results), total)
    if dask is not None:
        stream = _dask(plan, todo, dask, jobs)
    elif jobs > 1 and len(todo) > 1:
        stream = _processes(plan, todo, min(jobs, len(todo)))
    else:
        stream = _serial(plan, todo)
    try:
        for result in stream:
            if store is not None:
                store.save(result)
            results[result.origin] = result
            if progress is not None:
                progress(len(results), total)
    finally:  # on an interrupt too: stop the workers now, not when garbage-collected
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    return _assemble(plan, origin_array, results, [h.text for h in durations])


def _assemble(plan: _Plan, origins: np.ndarray, results: Mapping[np.datetime64, _OriginResult],
              horizons: list[str]) -> BacktestResult:
    labels = tuple(label for label, _, _ in plan.models)
    rows = [row for origin in origins for row in results[origin].rows]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    frame["origin"] = pd.to_datetime(frame["origin"])
    frame["horizon"] = pd.Categorical(frame["horizon"], categories=horizons, ordered=True)
    frame["model"] = pd.Categorical(frame["model"], categories=list(labels), ordered=True)
    frame = frame.sort_values(["origin", "horizon", "model"], kind="stable")
    frame["horizon"] = frame["horizon"].astype(str)
    frame["model"] = frame["model"].astype(str)
    frame["n_flagged_units"] = frame["n_flagged_units"].astype(np.int64)
    frame = frame.reset_index(drop=True)
    calibration = pd.DataFrame(
        [{"origin": row["origin"], "horizon": row["horizon"], "model": row["model"],
          "predicted": row.get("predicted", np.nan), "observed": row["n_events"],
          "decile_predicted": row.get("decile_predicted"),
          "decile_observed": row.get("decile_observed")} for row in rows])
    flag_indices = {(label, h): [results[o].flags[(label, h)] for o in origins]
                    for label in labels for h in horizons}
    observed = {h: np.vstack([results[o].observed[h] for o in origins]) for h in horizons}
    n_undefined = int(frame["pai"].isna().sum())
    if n_undefined:
        warnings.warn(f"{n_undefined} of {len(frame)} scores are undefined (windows without "
                      "events); they are nan in the results and left out of the summary.",
                      UndefinedMetricWarning, stacklevel=3)
    settings = {"models": {label: params for label, _, params in plan.models},
                "ties": plan.ties, "log_score_floor": plan.floor}
    return BacktestResult(frame, np.asarray(origins, dtype="datetime64[ns]"), tuple(horizons),
                          labels, plan.units, plan.area, flag_indices, observed, settings,
                          calibration)
