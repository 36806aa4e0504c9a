"""Straightforward NumPy version of the marked ETAS log-likelihood (private).

Written from the model definition and the reference's rules, without the compiled
kernels' tricks: the polygon integral is the reference's full sum (``ndiv`` sub-segments
per edge, Simpson in angle) for every event, and ``lambda_j`` is a vectorised sum over the
earlier events of each target. Used by the tests as an independent check and by
``benchmarks/bench_etas_marked.py`` as the baseline. Work per evaluation:
O(n_targets * n) for the sum and O(n * edges * ndiv) for the integrals.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def polygon_rule(cx: float, cy: float, px: FloatArray, py: FloatArray,
                 ndiv: int = 1000) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Signed angles and the distances r1, r0, r2 of every sub-segment seen from (cx, cy)."""
    ths, r1s, r0s, r2s = [], [], [], []
    i = np.arange(ndiv)
    for e in range(px.size - 1):
        dx = (px[e + 1] - px[e]) / ndiv
        dy = (py[e + 1] - py[e]) / ndiv
        x1 = px[e] + dx * i - cx
        y1 = py[e] + dy * i - cy
        x2 = px[e] + dx * (i + 1) - cx
        y2 = py[e] + dy * (i + 1) - cy
        det = x1 * y2 - y1 * x2
        keep = np.abs(det) >= 1e-10
        x1, y1, x2, y2, det = x1[keep], y1[keep], x2[keep], y2[keep], det[keep]
        r1 = np.hypot(x1, y1)
        r2 = np.hypot(x2, y2)
        r12sq = (x1 - x2) ** 2 + (y1 - y2) ** 2
        cth = (r1 * r1 + r2 * r2 - r12sq) / (2 * r1 * r2)
        cth = np.where(np.abs(cth) > 1, 1 - 1e-10, cth)
        w = r1 / (r1 + r2)
        r0 = np.hypot(x1 + w * (x2 - x1), y1 + w * (y2 - y1))
        ths.append(np.where(det < 0, -1.0, 1.0) * np.arccos(cth))
        r1s.append(r1)
        r0s.append(r0)
        r2s.append(r2)
    return (np.concatenate(ths), np.concatenate(r1s), np.concatenate(r0s),
            np.concatenate(r2s))


def _simpson(th: FloatArray, f1: FloatArray, f0: FloatArray, f2: FloatArray) -> float:
    return float(np.sum(th * (f1 / 6 + 2 * f0 / 3 + f2 / 6)))


def spatial_integrals(x: FloatArray, y: FloatArray, polygon: FloatArray, sigma: FloatArray,
                      q: float, ndiv: int = 1000) -> tuple[FloatArray, FloatArray, FloatArray]:
    """S_j and dS_j/dsigma, dS_j/dq for the ETAS kernel, by the reference's full sum."""
    px, py = polygon[:, 0], polygon[:, 1]
    n = x.size
    s = np.empty(n)
    ds_sig = np.empty(n)
    ds_q = np.empty(n)
    for j in range(n):
        th, r1, r0, r2 = polygon_rule(x[j], y[j], px, py, ndiv)
        vals = []
        dsig = []
        dq = []
        for r in (r1, r0, r2):
            z = r * r / sigma[j]
            h = (1 + z) ** (1 - q)
            vals.append((1 - h) / (2 * np.pi))
            dsig.append((1 - q) * h / (1 + z) * z / sigma[j] / (2 * np.pi))
            dq.append(np.log1p(z) * h / (2 * np.pi))
        s[j] = _simpson(th, *vals)
        ds_sig[j] = _simpson(th, *dsig)
        ds_q[j] = _simpson(th, *dq)
    return s, ds_sig, ds_q


def gaussian_integrals(x: FloatArray, y: FloatArray, polygon: FloatArray, h: FloatArray,
                       ndiv: int = 1000) -> FloatArray:
    """Mass of the Gaussian(h_j) centred at each event inside the polygon (reference sum)."""
    px, py = polygon[:, 0], polygon[:, 1]
    out = np.empty(x.size)
    for j in range(x.size):
        th, r1, r0, r2 = polygon_rule(x[j], y[j], px, py, ndiv)
        f = [(1 - np.exp(-r * r / (2 * h[j] ** 2))) / (2 * np.pi) for r in (r1, r0, r2)]
        out[j] = _simpson(th, *f)
    return out


def loglik_numpy(theta: FloatArray, t: FloatArray, x: FloatArray, y: FloatArray,
                 m: FloatArray, flag: npt.NDArray[np.integer], bk: FloatArray, integ0: float,
                 polygon: FloatArray, t_start: float, t_end: float,
                 ndiv: int = 1000) -> tuple[float, FloatArray]:
    """Log-likelihood and gradient in ``theta = (mu, A, c, alpha, p, D, q, gamma)``."""
    mu, A, c, alpha, p, D, q, gamma = (float(v) for v in theta)
    ll = 0.0
    grad = np.zeros(8)
    for j in np.flatnonzero(flag == 1):
        dt = t[j] - t[:j]
        ok = dt > 0
        dt = dt[ok]
        mi = m[:j][ok]
        r2 = (x[j] - x[:j][ok]) ** 2 + (y[j] - y[:j][ok]) ** 2
        sig = D * np.exp(gamma * mi)
        g = (A * np.exp(alpha * mi) * (p - 1) / c * (1 + dt / c) ** (-p)
             * (q - 1) / (np.pi * sig) * (1 + r2 / sig) ** (-q))
        lam = mu * bk[j] + g.sum()
        if lam <= 1e-25:
            ll -= 100.0
            continue
        ll += np.log(lam)
        rho = r2 / (sig + r2)
        dlam = np.array([
            bk[j],
            g.sum() / A,
            np.sum(g * (-1 / c + p * dt / (c * (c + dt)))),
            np.sum(g * mi),
            np.sum(g * (1 / (p - 1) - np.log1p(dt / c))),
            np.sum(g * (-1 + q * rho)) / D,
            np.sum(g * (1 / (q - 1) - np.log1p(r2 / sig))),
            np.sum(g * mi * (-1 + q * rho)),
        ])
        grad += dlam / lam
    sig_all = D * np.exp(gamma * m)
    s, ds_sig, ds_q = spatial_integrals(x, y, polygon, sig_all, q, ndiv)
    kap = A * np.exp(alpha * m)

    def big_g(tt: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        e = (1 + tt / c) ** (1 - p)
        return 1 - e, -(1 - p) * e / (1 + tt / c) * (-tt / c / c), np.log1p(tt / c) * e

    g_end, gc_end, gp_end = big_g(t_end - t)
    before = t <= t_start
    g_s, gc_s, gp_s = big_g(np.where(before, t_start - t, 0.0))
    gg = g_end - np.where(before, g_s, 0.0)
    gc = gc_end - np.where(before, gc_s, 0.0)
    gp = gp_end - np.where(before, gp_s, 0.0)
    integ = np.sum(kap * gg * s)
    ll -= mu * integ0 + integ
    grad -= np.array([
        integ0,
        integ / A,
        np.sum(kap * gc * s),
        np.sum(kap * gg * s * m),
        np.sum(kap * gp * s),
        np.sum(kap * gg * ds_sig * sig_all / D),
        np.sum(kap * gg * ds_q),
        np.sum(kap * gg * ds_sig * sig_all * m),
    ])
    return float(ll), grad
