"""Fit times of grid ETAS and SEPP on simulated events, against plain O(N^2) NumPy EM.

Run: ``PYTHONPATH=src python benchmarks/bench_selfexcite.py [--sizes 10000,100000,1000000]
[--baseline-sizes 1000,2000,4000] [--recovery-seeds 10]``

Events are simulated at a constant space-time density like the NYC vehicle thefts
(~0.03 events per km² per day, half of them triggered), so the region grows with N and
the number of candidate pairs per event stays fixed: the scaling curve shows the cost of
the algorithm, not of a denser city. Numba functions are compiled (and cached) before
timing. The baseline runs the same EM (same M-steps) with dense N x N matrices, for the
same number of EM steps the fast fit took, so the ratio compares like with like.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from placecast.models._hawkes import solve_decay, solve_spatial_scale
from placecast.models.etas import fit_grid_etas
from placecast.models.sepp import fit_sepp
from placecast.models.simulate import simulate_sepp

DAYS = 1460.0
DENSITY = 0.03 / 1e6  # events per m² per day
THETA, OMEGA, SIGMA = 0.5, 0.2, 100.0
CELL = 150.0
TIME_CUTOFF, DISTANCE_CUTOFF = 90.0, 1000.0


def simulate(n_events: int, seed: int):
    side = np.sqrt(n_events / (DENSITY * DAYS))
    rate = n_events * (1 - THETA) / DAYS
    return simulate_sepp(background_rate=rate, region=(0, 0, side, side), theta=THETA,
                         omega=OMEGA, sigma=SIGMA, days=DAYS, random_state=seed)


def cells_of(sim):
    col = np.floor((sim.x - sim.x.min()) / CELL).astype(np.int64)
    row = np.floor((sim.y - sim.y.min()) / CELL).astype(np.int64)
    _, cell = np.unique(row * (col.max() + 1) + col, return_inverse=True)
    return cell, int(cell.max()) + 1


# ---------------------------------------------------------------- O(N^2) baselines
def naive_grid_etas(t, cell, n_cells, t_end, n_steps):
    """Dense EM for grid ETAS: N x N lag matrix masked to same-cell earlier events."""
    lag = t[:, None] - t[None, :]
    mask = (lag > 0) & (cell[:, None] == cell[None, :])
    lag = np.where(mask, lag, 0.0)
    horizon = t_end - t
    theta, omega = 0.5, 0.1
    counts = np.bincount(cell, minlength=n_cells)
    mu = 0.5 * counts / t_end
    for _ in range(n_steps):
        kernel = np.where(mask, theta * omega * np.exp(-omega * lag), 0.0)
        lam = mu[cell] + kernel.sum(axis=1)
        p = kernel / lam[:, None]
        s_trig, d_trig = p.sum(), (p * lag).sum()
        mu = np.bincount(cell, weights=mu[cell] / lam, minlength=n_cells) / t_end
        omega = solve_decay(s_trig, d_trig, horizon)
        theta = s_trig / np.sum(-np.expm1(-omega * horizon))
    return theta, omega


def naive_sepp(t, x, y, t_end, h, n_steps):
    """Dense EM for SEPP (background shape ``h`` fixed): N x N lag and distance matrices."""
    lag = t[:, None] - t[None, :]
    r2 = (x[:, None] - x[None, :]) ** 2 + (y[:, None] - y[None, :]) ** 2
    mask = (lag > 0) & (lag <= TIME_CUTOFF) & (r2 <= DISTANCE_CUTOFF**2)
    horizon = np.minimum(t_end - t, TIME_CUTOFF)
    nu, theta, omega, sigma = len(t) / t_end * 0.7, 0.3, 0.1, 100.0
    for _ in range(n_steps):
        kernel = np.where(mask, theta * omega * np.exp(-omega * lag - r2 / (2 * sigma**2))
                          / (2 * np.pi * sigma**2), 0.0)
        lam = nu * h + kernel.sum(axis=1)
        p = kernel / lam[:, None]
        s_trig, d_trig, r_trig = p.sum(), (p * lag).sum(), (p * r2).sum()
        nu = np.sum(nu * h / lam) / t_end
        omega = solve_decay(s_trig, d_trig, horizon)
        sigma = solve_spatial_scale(s_trig, r_trig, DISTANCE_CUTOFF, 10.0)
        mass = -np.expm1(-DISTANCE_CUTOFF**2 / (2 * sigma**2))
        theta = s_trig / (mass * np.sum(-np.expm1(-omega * horizon)))
    return theta, omega, sigma


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--baseline-sizes", default="1000,2000,4000")
    parser.add_argument("--recovery-seeds", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    baseline_sizes = [int(s) for s in args.baseline_sizes.split(",") if s]

    warm = simulate(2000, 0)  # compile / load the numba caches outside the timings
    fit_sepp(warm.time, warm.x, warm.y, 0.0, DAYS, max_iter=5)
    cell, n_cells = cells_of(warm)
    fit_grid_etas(warm.time, cell, n_cells, 0.0, DAYS, max_iter=5)

    print(f"simulated: theta={THETA}, omega={OMEGA}/day, sigma={SIGMA} m, {DAYS:g} days, "
          f"density {DENSITY * 1e6:g}/km²/day; etas on {CELL:g} m cells; sepp cut-offs "
          f"{TIME_CUTOFF:g} d, {DISTANCE_CUTOFF:g} m")
    header = (f"{'model':<6}{'N':>10}{'pairs':>12}{'steps':>7}{'fit s':>9}"
              f"{'O(N²) s':>10}{'ratio':>9}  estimates")
    print(header)
    print("-" * len(header))
    for n in sorted(set(baseline_sizes) | set(sizes)):
        sim = simulate(n, 1)
        cell, n_cells = cells_of(sim)
        (fit, _, _), seconds = timed(fit_grid_etas, sim.time, cell, n_cells, 0.0, DAYS)
        base = ""
        if n in baseline_sizes:
            _, base_s = timed(naive_grid_etas, sim.time, cell, n_cells, DAYS, fit.iterations)
            base = f"{base_s:>10.2f}{base_s / seconds:>9.0f}"
        else:
            base = f"{'-':>10}{'-':>9}"
        print(f"{'etas':<6}{len(sim):>10,}{'-':>12}{fit.iterations:>7}{seconds:>9.2f}{base}  "
              f"theta={fit.theta:.3f}±{fit.standard_errors['theta']:.3f} "
              f"omega={fit.omega:.3f}±{fit.standard_errors['omega']:.3f}", flush=True)
        (fit, state), seconds = timed(fit_sepp, sim.time, sim.x, sim.y, 0.0, DAYS,
                                      time_cutoff=TIME_CUTOFF,
                                      distance_cutoff=DISTANCE_CUTOFF)
        if n in baseline_sizes:
            h = state.density(sim.x, sim.y)
            _, base_s = timed(naive_sepp, sim.time, sim.x, sim.y, DAYS, h, fit.iterations)
            base = f"{base_s:>10.2f}{base_s / seconds:>9.0f}"
        else:
            base = f"{'-':>10}{'-':>9}"
        se = fit.standard_errors
        print(f"{'sepp':<6}{len(sim):>10,}{fit.details['n_pairs']:>12,}{fit.iterations:>7}"
              f"{seconds:>9.2f}{base}  n={fit.branching_ratio:.3f}±{se['branching_ratio']:.3f}"
              f" omega={fit.omega:.3f}±{se['omega']:.3f} sigma={fit.sigma:.1f}"
              f"±{se['sigma']:.1f}", flush=True)

    if args.recovery_seeds:
        print(f"\nrecovery over {args.recovery_seeds} seeds (sepp, N≈4,000, 10 km x 10 km, "
              "365 days): share of seeds whose truth lies within 2 standard errors")
        hits = {"branching_ratio": 0, "omega": 0, "sigma": 0}
        truth = {"branching_ratio": THETA, "omega": OMEGA, "sigma": SIGMA}
        for seed in range(args.recovery_seeds):
            sim = simulate_sepp(background_rate=5.0, region=(0, 0, 10000, 10000), theta=THETA,
                                omega=OMEGA, sigma=SIGMA, days=365, random_state=100 + seed)
            fit, _ = fit_sepp(sim.time, sim.x, sim.y, 0.0, 365.0)
            for name in hits:
                hits[name] += abs(getattr(fit, name) - truth[name]) < 2 * fit.standard_errors[
                    name]
        print("  " + ", ".join(f"{k}: {v}/{args.recovery_seeds}" for k, v in hits.items()))


if __name__ == "__main__":
    main()
