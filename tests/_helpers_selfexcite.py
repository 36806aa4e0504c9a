"""Slow, obviously-correct reference implementations for the self-exciting model tests."""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate


def grid_etas_loglik_reference(time, cell, mu, theta, omega, t_start, t_end):
    """Double loop over events plus adaptive quadrature of each cell's intensity."""
    time = [float(t) for t in time]
    cell = [int(c) for c in cell]

    def intensity(n, t):
        total = mu[n]
        for ti, ci in zip(time, cell, strict=True):
            if ci == n and ti < t:
                total += theta * omega * math.exp(-omega * (t - ti))
        return total

    loglik = 0.0
    for tj, cj in zip(time, cell, strict=True):
        loglik += math.log(intensity(cj, tj))
    for n in range(len(mu)):
        breaks = sorted({t_start, t_end, *[t for t, c in zip(time, cell, strict=True)
                                           if c == n]})
        for a, b in zip(breaks[:-1], breaks[1:], strict=True):
            if b > a:
                value, _ = integrate.quad(lambda t, n=n: intensity(n, t), a, b,
                                          epsabs=0, epsrel=1e-13, limit=200)
                loglik -= value
    return loglik


def sepp_loglik_reference(time, x, y, background, background_integral, theta, omega, sigma,
                          t_start, t_end, time_cutoff=math.inf, distance_cutoff=math.inf):
    """Loops over all ordered pairs; the triggering compensator by quadrature in time and
    polar quadrature of the Gaussian in space."""
    n = len(time)
    loglik = 0.0
    for j in range(n):
        lam = background[j]
        for i in range(n):
            lag = time[j] - time[i]
            r2 = (x[j] - x[i]) ** 2 + (y[j] - y[i]) ** 2
            if 0 < lag <= time_cutoff and r2 <= distance_cutoff**2:
                lam += (theta * omega * math.exp(-omega * lag)
                        * math.exp(-r2 / (2 * sigma**2)) / (2 * math.pi * sigma**2))
        loglik += math.log(lam)
    loglik -= background_integral

    def radial(r):
        return 2 * math.pi * r * math.exp(-r * r / (2 * sigma**2)) / (2 * math.pi * sigma**2)

    r_max = distance_cutoff if math.isfinite(distance_cutoff) else 40 * sigma
    space_mass, _ = integrate.quad(radial, 0, r_max, epsabs=0, epsrel=1e-13, limit=200)
    for i in range(n):
        upper = min(t_end, time[i] + time_cutoff)
        time_mass, _ = integrate.quad(lambda t, i=i: theta * omega
                                      * math.exp(-omega * (t - time[i])),
                                      time[i], upper, epsabs=0, epsrel=1e-13, limit=200)
        loglik -= time_mass * space_mass
    return loglik


def brute_force_pairs(time, x, y, time_cutoff, distance_cutoff):
    """All (i, j) pairs within the cut-offs by a double loop (events sorted by time)."""
    pairs = set()
    for j in range(len(time)):
        for i in range(len(time)):
            lag = time[j] - time[i]
            if 0 < lag <= time_cutoff and np.hypot(x[j] - x[i], y[j] - y[i]) <= distance_cutoff:
                pairs.add((i, j))
    return pairs
