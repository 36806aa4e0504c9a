"""Benchmark marked ETAS: reference fits (Iran, Japan) and per-evaluation cost vs NumPy.

Usage::

    PYTHONPATH=src python benchmarks/bench_etas_marked.py [--catalogs iran,japan] [--no-fit]

For each catalog it prints: the one-off set-up cost (bandwidths, polygon rules), one
log-likelihood + analytic gradient evaluation with the numba kernels and with the plain
NumPy implementation (``placecast.seismic._likelihood_numpy``, the same likelihood, the
reference's full polygon sum) measured in the same run, their ratio, and the full fit
(wall time, CPU time of all threads - the work, independent of other load on the
machine -, outer iterations, likelihood evaluations, wall time per evaluation).
The R package ETAS needs 1.8 s per Iran evaluation and 301 s (1 thread) / 230 s
(2 threads) per Iran fit on this kind of machine, 185 min single-threaded for Japan.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from placecast.seismic import PARAM_NAMES, MarkedETASLikelihood, build_catalog, fit_marked_etas
from placecast.seismic._likelihood_numpy import loglik_numpy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "quakes"

SETUPS = {
    "iran": dict(
        study_start="1991-01-01", study_end="2011-01-01",
        region=([52, 59, 58, 45, 43], [26, 25, 29, 38, 35]),
        initial=(0.5, 0.2, 0.05, 2.7, 1.2, 0.02, 2.3, 0.03), beta_events="target",
        published_loglik=-3888.709),
    "japan": dict(
        study_start="1953-05-26", study_end="1990-01-08",
        region=([134.0, 137.9, 143.1, 144.9, 147.8, 137.8, 137.4, 135.1, 130.6],
                [31.9, 33.0, 33.2, 35.2, 41.3, 44.2, 40.2, 38.0, 35.4]),
        initial=(0.592844590, 0.204288231, 0.022692883, 1.495169224, 1.109752319,
                 0.001175925, 1.860044210, 1.041549634), beta_events="all",
        published_loglik=-15310.96),
}


def _catalog(name: str):
    setup = SETUPS[name]
    frame = pd.read_csv(DATA / f"{name}_quakes.csv")
    when = pd.to_datetime(frame["date"] + " " + frame["time"]).to_numpy()
    lon, lat = (np.asarray(v, dtype=float) for v in setup["region"])
    return build_catalog(when, frame["long"], frame["lat"], frame["mag"], mag_threshold=4.5,
                         study_start=setup["study_start"], study_end=setup["study_end"],
                         region=(lon, lat))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogs", default="iran,japan")
    parser.add_argument("--no-fit", action="store_true", help="skip the full fits")
    args = parser.parse_args()
    import numba

    print(f"cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}, "
          f"load average: {os.getloadavg()[0]:.1f}")
    # compile once on a tiny problem so JIT time is not counted
    warm = _catalog("iran")
    MarkedETASLikelihood(warm)
    rows = []
    for name in args.catalogs.split(","):
        setup = SETUPS[name]
        cat = _catalog(name)
        start = time.perf_counter()
        lik = MarkedETASLikelihood(cat)
        setup_s = time.perf_counter() - start
        theta = np.asarray(setup["initial"], dtype=float)
        bk, integ0 = lik.background(np.ones(cat.n_events))
        lik.loglik(theta, bk, integ0)
        t_numba = _best(lambda: lik.loglik(theta, bk, integ0), 3)  # noqa: B023
        ll_nb = lik.loglik(theta, bk, integ0)[0]
        start = time.perf_counter()
        ll_np = loglik_numpy(theta, cat.t, cat.x, cat.y, cat.m, cat.flag, bk, integ0,
                             cat.polygon, cat.t_start, cat.t_end)[0]
        t_numpy = time.perf_counter() - start
        row = {"catalog": name, "events": cat.n_events, "targets": cat.n_targets,
               "setup_s": setup_s, "eval_numba_s": t_numba, "eval_numpy_s": t_numpy,
               "ratio": t_numpy / t_numba, "loglik_diff": abs(ll_nb - ll_np)}
        if not args.no_fit:
            start = time.perf_counter()
            cpu_start = time.process_time()
            res = fit_marked_etas(cat, initial=dict(zip(PARAM_NAMES, theta, strict=True)),
                                  beta_events=setup["beta_events"])
            fit_s = time.perf_counter() - start
            row.update(fit_s=fit_s, fit_cpu_s=time.process_time() - cpu_start,
                       iterations=res.n_iterations,
                       evaluations=res.n_evaluations,
                       per_eval_s=fit_s / res.n_evaluations, loglik=res.loglik,
                       published=setup["published_loglik"])
        rows.append(row)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    frame = pd.DataFrame(rows).set_index("catalog")
    with pd.option_context("display.width", 200, "display.max_columns", 30,
                           "display.float_format", "{:.4g}".format):
        print(frame.T.to_string())


if __name__ == "__main__":
    main()
