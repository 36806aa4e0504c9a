"""SaTScan's random number generator and its permutation of case times.

With ``randomization="satscan"`` the permutation scan replicates SaTScan's own streams:
replication ``r`` (1, 2, ...) starts from seed ``SATSCAN_DEFAULT_SEED + r`` of the
Park & Miller (1988) "minimal standard" Lehmer generator (multiplier 48271, modulus
2**31 - 1), and cases are listed as SaTScan lists them (:func:`case_listing`).
"""

from __future__ import annotations

import numba
import numpy as np

from placecast.clusters._scan_data import ScanData

__all__ = ["LEHMER_MODULUS", "LEHMER_MULTIPLIER", "SATSCAN_DEFAULT_SEED", "case_listing",
           "lehmer_uniforms"]

#: SaTScan's random number generator: the Park & Miller (1988) "minimal standard" Lehmer
#: generator with multiplier 48271, modulus 2**31 - 1, and SaTScan's default initial seed.
#: Replication ``r`` (1, 2, ...) starts from seed ``SATSCAN_DEFAULT_SEED + r``.
LEHMER_MODULUS = 2_147_483_647
LEHMER_MULTIPLIER = 48_271
SATSCAN_DEFAULT_SEED = 12_345_678


def case_listing(data: ScanData, *, latest_first: bool = False) -> np.ndarray:
    """Order of the cases by time interval, then by location id (UTF-8 byte order).

    SaTScan indexes locations by their ids in byte order and lists cases latest interval
    first (``latest_first=True``); the NumPy replications use the ascending listing so
    that results do not depend on the order of the input rows.
    """
    ids = [str(v).encode("utf-8") for v in data.location_ids]
    location_rank = np.empty(len(ids), dtype=np.int64)
    location_rank[sorted(range(len(ids)), key=ids.__getitem__)] = np.arange(len(ids))
    interval = -data.case_interval if latest_first else data.case_interval
    return np.lexsort((location_rank[data.case_location], interval))



@numba.njit(cache=True)
def lehmer_uniforms(seed: int, n: int) -> np.ndarray:
    """Draw ``n`` single-precision uniforms as SaTScan's generator does from ``seed``.

    Each draw advances ``seed <- 48271 * seed mod (2**31 - 1)`` and returns
    ``float32(seed) / float32(2**31 - 1)`` (SaTScan's ``GetRandomFloat``).

    Parameters
    ----------
    seed : int
        Starting seed, ``0 < seed < 2**31 - 1``.
    n : int
        Number of draws.

    Returns
    -------
    ndarray of float32
        The draws, in (0, 1].

    References
    ----------
    Park S.K. & Miller K.W. (1988). Random number generators: good ones are hard to find.
    Communications of the ACM 31(10), 1192-1201.
    """
    out = np.empty(n, dtype=np.float32)
    modulus = np.float32(LEHMER_MODULUS)
    state = np.int64(seed)
    for k in range(n):
        state = (LEHMER_MULTIPLIER * state) % LEHMER_MODULUS
        out[k] = np.float32(state) / modulus
    return out


@numba.njit(parallel=True, cache=True)
def _satscan_permutations(stationary_loc, recent, seeds):  # noqa: ANN001
    """Locations of the cases in ``recent`` in each replication, as SaTScan permutes them.

    SaTScan lists the cases by time interval (latest first), then location; gives each
    case's time a uniform draw from the replication's own stream; sorts the times by draw
    and hands them back to the list in order. The case at list position ``j`` keeps its
    time in the replication when its draw ranks ``k``-th, and then sits at the location of
    position ``k``. O(C log C) per replication for ``C`` cases; replications in parallel.
    Equal draws (possible in single precision) keep list order; SaTScan's unstable sort
    may order them differently.
    """
    n_cases = stationary_loc.shape[0]
    out = np.empty((seeds.shape[0], recent.shape[0]), dtype=np.int64)
    for b in numba.prange(seeds.shape[0]):
        draws = lehmer_uniforms(seeds[b], n_cases)
        order = np.argsort(draws, kind="mergesort")
        rank = np.empty(n_cases, dtype=np.int64)
        for k in range(n_cases):
            rank[order[k]] = k
        for i in range(recent.shape[0]):
            out[b, i] = stationary_loc[rank[recent[i]]]
    return out


