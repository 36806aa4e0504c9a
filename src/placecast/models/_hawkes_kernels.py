"""Compiled inner loops of the self-exciting models (numba, cached on disk).

Everything here works on plain float/int arrays: times in days, coordinates in metres.
The callers in ``etas.py`` and ``sepp.py`` own validation, sorting and the M-step.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["cell_time_sums", "decay_sums", "near_pairs", "sepp_estep"]


@numba.njit(cache=True)
def cell_time_sums(time: np.ndarray, cell_start: np.ndarray, omega: float
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Exponential sums over earlier events of the same cell, by recursion.

    Events must be sorted by cell, then time; cell ``k`` holds the events
    ``cell_start[k] : cell_start[k + 1]``. For event ``j`` in cell ``n``, with
    ``d_ij = t_j - t_i`` over the events ``i`` of cell ``n`` with ``t_i < t_j`` (strictly),

    .. math:: S_j = \sum_i e^{-\omega d_{ij}}, \quad B_j = \sum_i d_{ij}
              e^{-\omega d_{ij}}, \quad C_j = \sum_i d_{ij}^2 e^{-\omega d_{ij}}.

    Uses :math:`S(t + \Delta) = e^{-\omega\Delta}(S(t) + k)` (``k`` events at ``t``) and
    the matching updates of ``B`` and ``C``: O(n_events), exact (no cut-off).
    """
    n = time.shape[0]
    s_out = np.zeros(n)
    b_out = np.zeros(n)
    c_out = np.zeros(n)
    for cell in range(cell_start.shape[0] - 1):
        lo, hi = cell_start[cell], cell_start[cell + 1]
        if hi <= lo:
            continue
        s = 0.0
        b = 0.0
        c = 0.0
        k = 0
        t_last = time[lo]
        for j in range(lo, hi):
            delta = time[j] - t_last
            if delta > 0.0:
                decay = np.exp(-omega * delta)
                c = decay * (c + 2.0 * delta * b + delta * delta * (s + k))
                b = decay * (b + delta * (s + k))
                s = decay * (s + k)
                k = 0
                t_last = time[j]
            s_out[j] = s
            b_out[j] = b
            c_out[j] = c
            k += 1
    return s_out, b_out, c_out


@numba.njit(cache=True)
def _count_pairs(time: np.ndarray, x: np.ndarray, y: np.ndarray, bucket_order: np.ndarray,
                 bucket_start: np.ndarray, bucket_of: np.ndarray, n_bx: int, n_by: int,
                 time_cutoff: float, distance_cutoff: float, fill: bool,
                 indptr: np.ndarray, parent: np.ndarray, lag: np.ndarray,
                 dist2: np.ndarray) -> int:
    d2max = distance_cutoff * distance_cutoff
    total = 0
    n = time.shape[0]
    for j in range(n):
        pos = indptr[j] if fill else 0
        bj = bucket_of[j]
        bx = bj % n_bx
        by = bj // n_bx
        tj = time[j]
        count = 0
        for gy in range(max(by - 1, 0), min(by + 2, n_by)):
            for gx in range(max(bx - 1, 0), min(bx + 2, n_bx)):
                g = gy * n_bx + gx
                lo, hi = bucket_start[g], bucket_start[g + 1]
                # events in a bucket are in time order: binary search the first with
                # t >= tj - time_cutoff, then walk until t >= tj
                a, b = lo, hi
                t_min = tj - time_cutoff
                while a < b:
                    mid = (a + b) // 2
                    if time[bucket_order[mid]] < t_min:
                        a = mid + 1
                    else:
                        b = mid
                for q in range(a, hi):
                    i = bucket_order[q]
                    ti = time[i]
                    if ti >= tj:
                        break
                    dx = x[j] - x[i]
                    dy = y[j] - y[i]
                    r2 = dx * dx + dy * dy
                    if r2 <= d2max:
                        if fill:
                            parent[pos] = i
                            lag[pos] = tj - ti
                            dist2[pos] = r2
                            pos += 1
                        count += 1
        if not fill:
            indptr[j + 1] = indptr[j] + count
        total += count
    return total


def near_pairs(time: np.ndarray, x: np.ndarray, y: np.ndarray, time_cutoff: float,
               distance_cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs ``(i, j)`` with ``0 < t_j - t_i <= time_cutoff`` and distance
    ``<= distance_cutoff``, as CSR by ``j``.

    Space is hashed into square buckets of side ``distance_cutoff``; within a bucket events
    are kept in time order, so each event scans its 3 x 3 bucket block from a binary-searched
    start time. Work is O(n log n + n_candidates), memory O(n + n_pairs).

    Returns
    -------
    indptr : int64 (n + 1,)
        Pairs of event ``j`` are ``indptr[j]:indptr[j + 1]``.
    parent : int64 (n_pairs,)
        Index ``i`` of the earlier event.
    lag : float64 (n_pairs,)
        ``t_j - t_i`` in days (> 0).
    dist2 : float64 (n_pairs,)
        Squared distance, m².
    """
    n = time.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0)
    if n == 0:
        return indptr, empty_i, empty_f, empty_f
    size = float(distance_cutoff)
    x0, y0 = float(x.min()), float(y.min())
    n_bx = int((x.max() - x0) // size) + 1
    n_by = int((y.max() - y0) // size) + 1
    if n_bx * n_by > 4 * n + 1024:  # sparse extent: coarsen the buckets to bound memory
        factor = np.sqrt(n_bx * n_by / (4 * n + 1024))
        size *= float(factor)
        n_bx = int((x.max() - x0) // size) + 1
        n_by = int((y.max() - y0) // size) + 1
    bx = ((x - x0) // size).astype(np.int64)
    by = ((y - y0) // size).astype(np.int64)
    bucket_of = by * n_bx + bx
    # events sorted by bucket, then time (stable on an already time-sorted input)
    bucket_order = np.lexsort((time, bucket_of)).astype(np.int64)
    counts = np.bincount(bucket_of, minlength=n_bx * n_by)
    bucket_start = np.zeros(n_bx * n_by + 1, dtype=np.int64)
    np.cumsum(counts, out=bucket_start[1:])
    args = (time, x, y, bucket_order, bucket_start, bucket_of, n_bx, n_by,
            float(time_cutoff), float(distance_cutoff))
    _count_pairs(*args, False, indptr, empty_i, empty_f, empty_f)
    n_pairs = int(indptr[-1])
    parent = np.empty(n_pairs, dtype=np.int64)
    lag = np.empty(n_pairs)
    dist2 = np.empty(n_pairs)
    _count_pairs(*args, True, indptr, parent, lag, dist2)
    return indptr, parent, lag, dist2


@numba.njit(cache=True)
def sepp_estep(indptr: np.ndarray, lag: np.ndarray, dist2: np.ndarray, mu: np.ndarray,
               theta: float, omega: float, sigma: float
               ) -> tuple[np.ndarray, float, float, float, float]:
    """Intensities at events and the expected sufficient statistics of triggering.

    For event ``j`` with background ``mu[j]`` and pairs ``i``:
    ``lambda_j = mu_j + sum_i theta omega exp(-omega lag) exp(-r²/(2 sigma²))/(2 pi sigma²)``;
    with ``p_ij`` the share of pair ``i`` in ``lambda_j`` it returns ``lambda``,
    ``sum log lambda``, ``S = sum p_ij``, ``D = sum p_ij lag_ij`` and ``R = sum p_ij r²_ij``.
    O(n_pairs).
    """
    n = mu.shape[0]
    lam = np.empty(n)
    norm = theta * omega / (2.0 * np.pi * sigma * sigma)
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    s_tot = 0.0
    d_tot = 0.0
    r_tot = 0.0
    loglik = 0.0
    for j in range(n):
        trig = 0.0
        dsum = 0.0
        rsum = 0.0
        for q in range(indptr[j], indptr[j + 1]):
            w = norm * np.exp(-omega * lag[q] - dist2[q] * inv2s2)
            trig += w
            dsum += w * lag[q]
            rsum += w * dist2[q]
        total = mu[j] + trig
        lam[j] = total
        loglik += np.log(total)
        s_tot += trig / total
        d_tot += dsum / total
        r_tot += rsum / total
    return lam, loglik, s_tot, d_tot, r_tot


@numba.njit(cache=True)
def decay_sums(omega: float, horizon: np.ndarray, count: np.ndarray
               ) -> tuple[float, float, float]:
    """``G = sum_i n_i (1 - e^{-omega c_i})`` and its first two derivatives in omega.

    ``count`` holds multiplicities of the distinct ``horizon`` values. O(len(horizon)).
    """
    g = 0.0
    g1 = 0.0
    g2 = 0.0
    for i in range(horizon.shape[0]):
        c = horizon[i]
        x = omega * c
        e = np.exp(-x)
        g += count[i] * (-np.expm1(-x) if x < 1e-3 else 1.0 - e)
        g1 += count[i] * c * e
        g2 -= count[i] * c * c * e
    return g, g1, g2
