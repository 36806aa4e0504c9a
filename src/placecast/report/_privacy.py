"""Small-cell suppression for reports shared outside the team (``--public``).

A public report shows counts only for areas holding at least ``k`` events. Cells below
``k`` are merged with their small neighbours into coarser blocks (square grids: the
2 x 2, 4 x 4, ... block holding them) until the block holds ``k`` events, and are left
out of the map when even the coarsest block stays below ``k``. Individual event points
are never drawn in a public report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from placecast.exceptions import ParameterError
from placecast.units import Units

__all__ = ["DEFAULT_K", "PublicAreas", "check_k", "public_areas"]

#: Default minimum number of events an area must hold before its count is shown.
DEFAULT_K = 5


def check_k(k: Any) -> int:
    """Validate the suppression threshold ``k`` (an integer >= 1)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ParameterError(f"`k` must be a whole number of events >= 1, got {k!r}.",
                             param="k")
    return int(k)


@dataclass(frozen=True)
class PublicAreas:
    """Which units a public report may show, and the merged blocks of small units.

    Attributes
    ----------
    k : int
        Minimum events an area must hold to be shown.
    counts : ndarray of float, shape (n_units,)
        Events per unit (the counts that decide suppression).
    shown : ndarray of bool, shape (n_units,)
        Units shown individually (``counts >= k``).
    blocks : list of dict
        Merged blocks, each ``{"members": int array, "geometry": shapely geometry (metres),
        "count": float, "level": int}`` with ``count >= k``; ``level`` L means blocks of
        ``2**L x 2**L`` grid cells.
    suppressed : ndarray of int
        Units neither shown nor in a block (their block stayed below ``k``).
    """

    k: int
    counts: np.ndarray
    shown: np.ndarray
    blocks: list[dict[str, Any]] = field(default_factory=list)
    suppressed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n_small(self) -> int:
        """Units holding fewer than ``k`` events."""
        return int((~self.shown).sum())

    def to_dict(self) -> dict[str, Any]:
        """Summary of the suppression, JSON-ready."""
        return {
            "k": self.k,
            "n_units": int(len(self.counts)),
            "n_shown": int(self.shown.sum()),
            "n_small": self.n_small,
            "n_blocks": len(self.blocks),
            "n_units_in_blocks": int(sum(len(b["members"]) for b in self.blocks)),
            "n_suppressed": int(len(self.suppressed)),
        }


def public_areas(units: Units, counts: np.ndarray, k: int = DEFAULT_K, *,
                 max_level: int = 4) -> PublicAreas:
    """Decide which units a public report shows, merging small grid cells into blocks.

    Parameters
    ----------
    units : Units
        The area units.
    counts : ndarray, shape (n_units,)
        Events per unit.
    k : int
        Minimum events an area must hold to be shown (default 5).
    max_level : int
        Coarsest block tried for square grids: ``2**max_level`` cells a side.

    Returns
    -------
    PublicAreas

    Notes
    -----
    At level L = 1 .. ``max_level`` the still-unresolved small cells are grouped by
    ``(col >> L, row >> L)``; a group whose events add up to at least ``k`` becomes one
    block (the union of its small cells) and leaves the pool. Cells of hexagon and
    polygon units are not merged, only suppressed. O(n_units x max_level) plus the
    unions of the merged cells.
    """
    k = check_k(k)
    counts = np.asarray(counts, dtype=float)
    if counts.shape != (len(units),):
        raise ParameterError(f"counts have shape {counts.shape}, expected ({len(units)},).")
    shown = counts >= k
    pool = np.flatnonzero(~shown)
    blocks: list[dict[str, Any]] = []
    if units.grid_cells is not None and len(pool):
        cells = np.asarray(units.grid_cells, dtype=np.int64)
        for level in range(1, max_level + 1):
            if not len(pool):
                break
            keys = (cells[pool, 0] >> level) * (1 << 40) + (cells[pool, 1] >> level)
            uniq, inverse = np.unique(keys, return_inverse=True)
            totals = np.bincount(inverse, weights=counts[pool], minlength=len(uniq))
            big = totals >= k
            if big.any():
                order = np.argsort(inverse, kind="stable")
                bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
                for group in np.flatnonzero(big):
                    members = pool[order[bounds[group]:bounds[group + 1]]]
                    blocks.append({
                        "members": members,
                        "geometry": shapely.union_all(units.geometry[members]),
                        "count": float(counts[members].sum()),
                        "level": level,
                    })
                pool = pool[~big[inverse]]
    return PublicAreas(k=k, counts=counts, shown=shown, blocks=blocks,
                       suppressed=np.sort(pool))
