"""Simulation of the self-exciting models by their branching (cluster) structure.

Background events arrive as a Poisson process; every event then has a Poisson number of
direct offspring (mean: the branching ratio) at an exponential delay and, for the
continuous model, a Gaussian displacement; offspring have offspring in turn. Each
generation is drawn at once with NumPy, so a simulation costs O(n_events).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely

from placecast.events import Events, SpatialReference, to_datetime64
from placecast.exceptions import ParameterError
from placecast.units import Units

__all__ = ["Simulation", "simulate_grid_etas", "simulate_sepp"]


@dataclass(frozen=True, slots=True)
class Simulation:
    """Events drawn from a self-exciting model, with their family tree.

    Attributes
    ----------
    time : ndarray of float
        Event times, days from the start, sorted.
    x, y : ndarray of float
        Coordinates, metres.
    parent : ndarray of int
        Index of the triggering event, -1 for background events.
    generation : ndarray of int
        0 for background events, 1 for their offspring, ...
    cell : ndarray of int or None
        Unit of each event (grid ETAS only).
    """

    time: np.ndarray
    x: np.ndarray
    y: np.ndarray
    parent: np.ndarray
    generation: np.ndarray
    cell: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.time.shape[0])

    @property
    def n_background(self) -> int:
        """Number of background (immigrant) events."""
        return int((self.parent < 0).sum())

    def to_events(self, start: Any = "2020-01-01",
                  spatial_reference: SpatialReference | None = None) -> Events:
        """The events with times counted from ``start``."""
        origin = to_datetime64(start, name="start")
        times = origin + np.round(self.time * 86400e9).astype("timedelta64[ns]")
        return Events(time=times, x=self.x, y=self.y,
                      spatial_reference=spatial_reference or SpatialReference("local:m"))

    def to_frame(self) -> pd.DataFrame:
        """Table of ``time_days, x, y, parent, generation`` (and ``cell``)."""
        frame = pd.DataFrame({"time_days": self.time, "x": self.x, "y": self.y,
                              "parent": self.parent, "generation": self.generation})
        if self.cell is not None:
            frame["cell"] = self.cell
        return frame


def _check_branching(theta: float, omega: float) -> None:
    if not 0 <= theta < 1:
        raise ParameterError(f"the branching ratio must be in [0, 1) for a stable process, "
                             f"got {theta!r}.", param="theta")
    if not omega > 0:
        raise ParameterError(f"omega must be a positive rate per day, got {omega!r}.",
                             param="omega")


def _uniform_in(region: Any, n: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in a box ``(xmin, ymin, xmax, ymax)`` or a shapely polygon."""
    if isinstance(region, tuple | list | np.ndarray):
        xmin, ymin, xmax, ymax = (float(v) for v in region)
        if not (xmax > xmin and ymax > ymin):
            raise ParameterError(f"the region box {tuple(region)} is empty; give "
                                 "(xmin, ymin, xmax, ymax) with max > min.", param="region")
        return rng.uniform(xmin, xmax, n), rng.uniform(ymin, ymax, n)
    xmin, ymin, xmax, ymax = shapely.bounds(region)
    shapely.prepare(region)
    xs, ys = np.empty(0), np.empty(0)
    while len(xs) < n:
        m = max(2 * (n - len(xs)), 16)
        cx, cy = rng.uniform(xmin, xmax, m), rng.uniform(ymin, ymax, m)
        keep = shapely.contains_xy(region, cx, cy)
        xs, ys = np.concatenate([xs, cx[keep]]), np.concatenate([ys, cy[keep]])
    return xs[:n], ys[:n]


def _cascade(time0: np.ndarray, days: float, branching: float, rng: np.random.Generator,
             draw_delay: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generations of offspring: returns times, parent index, generation (unsorted)."""
    times = [time0]
    parents = [np.full(len(time0), -1, dtype=np.int64)]
    generations = [np.zeros(len(time0), dtype=np.int64)]
    current = np.arange(len(time0))
    offset = len(time0)
    level = 0
    while len(current):
        level += 1
        n_children = rng.poisson(branching, len(current))
        parent = np.repeat(current, n_children)
        child_time = np.concatenate(times)[parent] + draw_delay(len(parent))
        keep = child_time < days
        parent, child_time = parent[keep], child_time[keep]
        times.append(child_time)
        parents.append(parent)
        generations.append(np.full(len(parent), level, dtype=np.int64))
        current = np.arange(offset, offset + len(parent))
        offset += len(parent)
    return np.concatenate(times), np.concatenate(parents), np.concatenate(generations)


def _sorted(time: np.ndarray, x: np.ndarray, y: np.ndarray, parent: np.ndarray,
            generation: np.ndarray, cell: np.ndarray | None) -> Simulation:
    order = np.argsort(time, kind="stable")
    new_index = np.empty_like(order)
    new_index[order] = np.arange(len(order))
    parent = parent[order]
    parent = np.where(parent >= 0, new_index[np.maximum(parent, 0)], -1)
    return Simulation(time[order], x[order], y[order], parent, generation[order],
                      None if cell is None else cell[order])


def simulate_sepp(*, background_rate: float, region: Any, theta: float, omega: float,
                  sigma: float, days: float, time_cutoff: float | None = None,
                  distance_cutoff: float | None = None,
                  background_xy: Any = None, random_state: Any = None) -> Simulation:
    r"""Draw a continuous space-time self-exciting process (the ``sepp`` model).

    Intensity :math:`\lambda(t, x, y) = \mu(x, y) + \sum_{t_i < t} \theta\omega
    e^{-\omega (t - t_i)} \phi_\sigma(x - x_i, y - y_i)`, restricted to
    ``t - t_i <= time_cutoff`` and distance ``<= distance_cutoff`` when given.

    Parameters
    ----------
    background_rate : float
        Background events per day over the region.
    region : (xmin, ymin, xmax, ymax) or shapely geometry
        Where background events fall (uniformly); metres. Offspring may land outside.
    theta : float
        Kernel amplitude; each event has Poisson(``theta`` x kernel mass within the
        cut-offs) direct offspring, a mean (the branching ratio) that must be below 1.
    omega : float
        Decay rate per day.
    sigma : float
        Gaussian standard deviation, metres.
    days : float
        Length of the simulated period; events in ``[0, days)``.
    time_cutoff, distance_cutoff : float, optional
        Truncation of the kernel (days, metres), as in ``SEPP``.
    background_xy : callable, optional
        ``background_xy(n, rng) -> (x, y)`` for a non-uniform background.
    random_state : int or numpy Generator, optional
        Seed.

    Returns
    -------
    Simulation
        Sorted by time.

    Examples
    --------
    >>> sim = simulate_sepp(background_rate=2.0, region=(0, 0, 5000, 5000), theta=0.4,
    ...                     omega=0.5, sigma=100.0, days=100, random_state=0)
    >>> sim.n_background, len(sim) > sim.n_background
    (206, True)
    """
    if not sigma > 0:
        raise ParameterError(f"sigma must be a positive length in metres, got {sigma!r}.",
                             param="sigma")
    if not (background_rate >= 0 and days > 0):
        raise ParameterError("background_rate must be >= 0 and days > 0.",
                             param=("background_rate", "days"))
    rng = np.random.default_rng(random_state)
    tc = np.inf if time_cutoff is None else float(time_cutoff)
    dc = np.inf if distance_cutoff is None else float(distance_cutoff)
    time_mass = -np.expm1(-omega * tc)
    space_mass = -np.expm1(-dc * dc / (2 * sigma * sigma)) if np.isfinite(dc) else 1.0
    _check_branching(theta * time_mass * space_mass, omega)
    n0 = rng.poisson(background_rate * days)
    t0 = rng.uniform(0.0, days, n0)
    x0, y0 = background_xy(n0, rng) if background_xy is not None else _uniform_in(
        region, n0, rng)

    def delay(n: int) -> np.ndarray:
        return -np.log1p(-rng.uniform(0.0, 1.0, n) * time_mass) / omega

    times, parent, generation = _cascade(t0, days, theta * time_mass * space_mass, rng, delay)
    x = np.empty(len(times))
    y = np.empty(len(times))
    x[:n0], y[:n0] = x0, y0
    # offspring positions: parents always precede children in the concatenated order
    start = n0
    while start < len(times):
        level = generation[start]
        stop = start + int(np.searchsorted(generation[start:], level + 1))
        m = stop - start
        radius = sigma * np.sqrt(-2.0 * np.log1p(-rng.uniform(0.0, 1.0, m) * space_mass))
        angle = rng.uniform(0.0, 2 * np.pi, m)
        x[start:stop] = x[parent[start:stop]] + radius * np.cos(angle)
        y[start:stop] = y[parent[start:stop]] + radius * np.sin(angle)
        start = stop
    return _sorted(times, x, y, parent, generation, None)


def simulate_grid_etas(*, mu: npt.ArrayLike, units: Units, theta: float, omega: float,
                       days: float, random_state: Any = None) -> Simulation:
    """Draw grid ETAS (the ``etas`` model): a Hawkes process in each unit.

    Parameters
    ----------
    mu : array of float, shape (n_units,)
        Background rate of each unit, events per day.
    units : Units
        The cells; positions are uniform within each cell.
    theta : float
        Branching ratio, in [0, 1).
    omega : float
        Decay rate per day.
    days : float
        Length of the period; events in ``[0, days)``.
    random_state : int or numpy Generator, optional
        Seed.

    Returns
    -------
    Simulation
        Sorted by time, with ``cell``.
    """
    _check_branching(theta, omega)
    rates = np.asarray(mu, dtype=float)
    if rates.shape != (len(units),) or (rates < 0).any() or not np.isfinite(rates).all():
        raise ParameterError(f"mu must hold {len(units)} non-negative rates (one per unit).",
                             param="mu")
    rng = np.random.default_rng(random_state)
    counts = rng.poisson(rates * days)
    cell0 = np.repeat(np.arange(len(units)), counts)
    t0 = rng.uniform(0.0, days, len(cell0))
    times, parent, generation = _cascade(
        t0, days, theta, rng, lambda n: rng.exponential(1.0 / omega, n))
    cell = np.empty(len(times), dtype=np.int64)
    cell[:len(cell0)] = cell0
    for level in range(1, int(generation.max(initial=0)) + 1):  # parents precede children
        block = generation == level
        cell[block] = cell[parent[block]]
    x, y = _uniform_in_units(units, cell, rng)
    return _sorted(times, x, y, parent, generation, cell)


def _uniform_in_units(units: Units, cell: np.ndarray, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    bounds = shapely.bounds(units.geometry)[cell]
    x = np.empty(len(cell))
    y = np.empty(len(cell))
    todo = np.arange(len(cell))
    while len(todo):
        b = bounds[todo]
        cx = rng.uniform(b[:, 0], b[:, 2])
        cy = rng.uniform(b[:, 1], b[:, 3])
        inside = shapely.contains_xy(units.geometry[cell[todo]], cx, cy)
        x[todo[inside]], y[todo[inside]] = cx[inside], cy[inside]
        todo = todo[~inside]
    return x, y
