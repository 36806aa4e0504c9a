"""Replications under the null of the discrete Poisson and Bernoulli scan models.

Each ``draw(size)`` returns ``size`` replications as padded arrays ``(locations, intervals,
counts)``: row ``b`` holds the location and study interval of its first ``counts[b]``
cases. Only the cases that can fall in a window are drawn (those in study intervals
``>= first``); how many there are is drawn first, from its exact law.

- Poisson (conditioned on the total ``C``, as SaTScan does): each case independently
  at location ``l`` in interval ``t`` with probability ``population_l x size_t /
  (P T)``. The number in the scanned intervals is Binomial(``C``, their share of time).
- Bernoulli: ``C`` of the ``N`` individuals (cases and controls) are cases, chosen
  uniformly without replacement. The number among the ``N_s`` individuals of the scanned
  intervals is hypergeometric; those cases are a uniform sample of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from placecast.clusters._scan_data import ScanData

Drawn = tuple[np.ndarray, np.ndarray, np.ndarray]


def _pad(counts: np.ndarray, loc: np.ndarray, t: np.ndarray) -> Drawn:
    """Split the concatenated draws of each replication into padded rows."""
    size = len(counts)
    width = max(int(counts.max()) if size else 0, 1)
    rows = np.repeat(np.arange(size), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    cols = np.arange(len(loc)) - np.repeat(starts, counts)
    rep_loc = np.zeros((size, width), dtype=np.int64)
    rep_t = np.zeros((size, width), dtype=np.int64)
    rep_loc[rows, cols] = loc
    rep_t[rows, cols] = t
    return rep_loc, rep_t, counts.astype(np.int64)


def _categorical(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Index ``i`` with ``cumulative[i - 1] <= u < cumulative[i]`` (zero-weight bins never)."""
    index = np.searchsorted(cumulative, u * cumulative[-1], side="right")
    return np.minimum(index, len(cumulative) - 1)


def poisson_draws(data: ScanData, first: int,
                  rng: np.random.Generator) -> Callable[[int], Drawn]:
    """Replications of the discrete Poisson model with populations constant in time."""
    population = np.asarray(data.population, dtype=float)
    loc_cum = np.cumsum(population)
    sizes = data.sizes()
    grid_cum = np.cumsum(sizes[first:])
    share = float(grid_cum[-1] / sizes.sum())
    n_cases = data.n_cases

    def draw(size: int) -> Drawn:
        counts = (np.full(size, n_cases, dtype=np.int64) if share >= 1.0
                  else rng.binomial(n_cases, share, size=size).astype(np.int64))
        n = int(counts.sum())
        loc = _categorical(loc_cum, rng.random(n))
        t = first + _categorical(grid_cum, rng.random(n))
        return _pad(counts, loc, t)

    return draw


def bernoulli_draws(data: ScanData, first: int,
                    rng: np.random.Generator) -> Callable[[int], Drawn]:
    """Replications of the Bernoulli model: ``C`` of the ``N`` individuals are cases."""
    every_loc = np.concatenate([data.case_location, data.control_location])
    every_t = np.concatenate([data.case_interval, data.control_interval])
    total = len(every_loc)
    scanned = every_t >= first
    width = data.n_intervals - first
    cell = every_loc[scanned] * width + (every_t[scanned] - first)
    cells, per_cell = np.unique(cell, return_counts=True)
    cell_cum = np.cumsum(per_cell)
    n_scanned = int(cell_cum[-1]) if len(cell_cum) else 0
    n_cases = data.n_cases

    def draw(size: int) -> Drawn:
        if n_scanned == 0:
            return _pad(np.zeros(size, dtype=np.int64), np.zeros(0, np.int64),
                        np.zeros(0, np.int64))
        counts = (np.full(size, n_cases, dtype=np.int64) if n_scanned == total
                  else rng.hypergeometric(n_scanned, total - n_scanned, n_cases,
                                          size=size).astype(np.int64))
        picked = np.concatenate([rng.choice(n_scanned, size=int(k), replace=False)
                                 for k in counts]) if counts.sum() else np.zeros(0, np.int64)
        which = cells[np.searchsorted(cell_cum, picked, side="right")]
        return _pad(counts, which // width, first + which % width)

    return draw
