"""Numba kernels of the scan statistic: cylinders by cumulative sums, replications in threads.

One kernel serves every model and analysis. Time is a grid of ``K - 1`` intervals (the
intervals any window can reach); ``cum[l, k]`` is the number of cases at location ``l`` in
grid intervals ``k, k + 1, ...`` (suffix sums, ``cum[l, K - 1] = 0``), so a window covering
grid intervals ``[s, e)`` holds ``cum[l, s] - cum[l, e]`` cases. Windows are listed in
SaTScan's evaluation order (window end ascending, then start descending: shortest
first), and a cylinder replaces the best one only when strictly larger, so ties go to the
first evaluated cylinder: the smallest circle, then the shortest window, as in SaTScan.

Expected counts come in two forms (``separable``):

- separable (space-time permutation, Poisson with populations constant in time):
  ``mu = zone_weight * window_weight / total``;
- accumulated (Bernoulli): the zone's cases-plus-controls ``N`` in the window,
  accumulated like the cases, and ``mu = N * C / N_total``.

Models (``model``): 0 Poisson-type LLR ``n ln(n/mu) + (C - n) ln((C - n)/(C - mu))``
(space-time permutation and discrete Poisson, Kulldorff 1997, 2005); 1 Bernoulli LLR
(Kulldorff 1997).
"""

from __future__ import annotations

import math

import numba
import numpy as np

POISSON_LLR = 0
BERNOULLI_LLR = 1


@numba.njit(cache=True)
def _xlogy(x: float, y: float) -> float:
    return x * math.log(y) if x > 0 else 0.0


@numba.njit(cache=True)
def poisson_llr(n: float, mu: float, total: float) -> float:
    """``n ln(n/mu) + (C - n) ln((C - n)/(C - mu))`` (high-rate cylinders, ``n > mu``)."""
    value = n * math.log(n / mu)
    if total - n > 0:
        value += (total - n) * math.log((total - n) / (total - mu))
    return value


@numba.njit(cache=True)
def bernoulli_llr(n: float, big_n: float, cases: float, population: float) -> float:
    """Bernoulli log likelihood ratio of a zone with ``n`` cases among ``big_n`` individuals.

    ``C`` cases among ``population`` individuals in all (Kulldorff 1997).
    """
    out_n = cases - n
    out_big = population - big_n
    value = (_xlogy(n, n / big_n) + _xlogy(big_n - n, (big_n - n) / big_n))
    if out_big > 0:
        value += _xlogy(out_n, out_n / out_big) + _xlogy(out_big - out_n,
                                                          (out_big - out_n) / out_big)
    null = _xlogy(cases, cases / population) + _xlogy(population - cases,
                                                      (population - cases) / population)
    return value - null


@numba.njit(cache=True)
def suffix_counts(case_loc, case_t, n_cases, n_loc, first, n_grid):  # noqa: ANN001
    """``cum[l, k]``: cases of the first ``n_cases`` at location ``l`` in grid intervals >= k.

    Grid interval ``k`` is study interval ``first + k``; earlier cases are ignored.
    """
    cum = np.zeros((n_loc, n_grid + 1))
    for i in range(n_cases):
        t = case_t[i] - first
        if t >= 0:
            cum[case_loc[i], t] += 1.0
    for loc in range(n_loc):
        for k in range(n_grid - 2, -1, -1):
            cum[loc, k] += cum[loc, k + 1]
    return cum


@numba.njit(cache=True)
def best_per_centre(nb_ptr, nb_idx, cum, measure_cum, loc_weight, win_start, win_end,  # noqa: ANN001
                    win_weight, total, total_measure, model, separable, min_cases):
    """Best cylinder per centre: O(sum over centres of n_neighbours x (K + n_windows)).

    Returns the best LLR, the neighbour count - 1 and the window index of each centre
    (-1 when no cylinder has more cases than expected). A neighbour with no case in any
    window cannot raise the LLR (it only adds expected cases or individuals), so its
    windows are not evaluated.
    """
    n_centres = nb_ptr.shape[0] - 1
    n_grid = cum.shape[1]
    n_windows = win_start.shape[0]
    lo = n_grid - 1
    hi = 0
    for w in range(n_windows):
        lo = min(lo, win_start[w])
        hi = max(hi, win_end[w])
    best = np.zeros(n_centres)
    best_k = np.full(n_centres, -1, dtype=np.int64)
    best_w = np.full(n_centres, -1, dtype=np.int64)
    zone_cum = np.zeros(n_grid)
    zone_measure = np.zeros(n_grid)
    for c in range(n_centres):
        zone_cum[:] = 0.0
        if not separable:
            zone_measure[:] = 0.0
        zone = 0.0
        for p in range(nb_ptr[c], nb_ptr[c + 1]):
            loc = nb_idx[p]
            zone += loc_weight[loc]
            if not separable:
                for k in range(n_grid):
                    zone_measure[k] += measure_cum[loc, k]
            if cum[loc, lo] - cum[loc, hi] == 0.0:
                continue
            for k in range(n_grid):
                zone_cum[k] += cum[loc, k]
            for w in range(n_windows):
                n = zone_cum[win_start[w]] - zone_cum[win_end[w]]
                if n < min_cases:
                    continue
                if model == POISSON_LLR:
                    mu = zone * win_weight[w] / total
                    if n <= mu:
                        continue
                    value = poisson_llr(n, mu, total)
                else:
                    big_n = zone_measure[win_start[w]] - zone_measure[win_end[w]]
                    if n * (total_measure - big_n) <= (total - n) * big_n:
                        continue
                    value = bernoulli_llr(n, big_n, total, total_measure)
                if value > best[c]:
                    best[c] = value
                    best_k[c] = p - nb_ptr[c]
                    best_w[c] = w
    return best, best_k, best_w


@numba.njit(parallel=True, cache=True)
def replicate_fixed_times(perm_loc, case_t, n_loc, first, n_grid, nb_ptr, nb_idx,  # noqa: ANN001
                          measure_cum, loc_weight, win_start, win_end, win_weight, total,
                          total_measure, model, separable, min_cases):
    """Maximum LLR of each replication whose cases keep their times (row of ``perm_loc``)."""
    n_rep = perm_loc.shape[0]
    out = np.zeros(n_rep)
    for b in numba.prange(n_rep):
        cum = suffix_counts(perm_loc[b], case_t, case_t.shape[0], n_loc, first, n_grid)
        best = best_per_centre(nb_ptr, nb_idx, cum, measure_cum, loc_weight, win_start,
                               win_end, win_weight, total, total_measure, model, separable,
                               min_cases)[0]
        out[b] = best.max() if best.shape[0] else 0.0
    return out


@numba.njit(parallel=True, cache=True)
def replicate_drawn(rep_loc, rep_t, rep_n, n_loc, first, n_grid, nb_ptr, nb_idx,  # noqa: ANN001
                    measure_cum, loc_weight, win_start, win_end, win_weight, total,
                    total_measure, model, separable, min_cases):
    """Maximum LLR of each replication whose ``rep_n[b]`` cases sit at ``rep_loc[b], rep_t[b]``."""
    n_rep = rep_loc.shape[0]
    out = np.zeros(n_rep)
    for b in numba.prange(n_rep):
        cum = suffix_counts(rep_loc[b], rep_t[b], rep_n[b], n_loc, first, n_grid)
        best = best_per_centre(nb_ptr, nb_idx, cum, measure_cum, loc_weight, win_start,
                               win_end, win_weight, total, total_measure, model, separable,
                               min_cases)[0]
        out[b] = best.max() if best.shape[0] else 0.0
    return out
