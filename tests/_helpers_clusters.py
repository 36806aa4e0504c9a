"""Shared helpers for the cluster tests: brute-force references and small synthetic data."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from placecast.clusters import ScanData


def brute_force_max_llr(data: ScanData, case_interval: np.ndarray, *, max_share: float,
                        min_len: int, max_len: int, min_cases: int = 2,
                        case_location: np.ndarray | None = None) -> float:
    """Max LLR over every cylinder by explicit loops (slow, obviously correct)."""
    pts = data.distance_space()
    loc = data.case_location if case_location is None else case_location
    total = len(loc)
    n_int = data.n_intervals
    loc_total = np.array([np.sum(data.case_location == k) for k in range(data.n_locations)],
                         dtype=float)
    best = 0.0
    for c in range(data.n_locations):
        dist = [math.dist(pts[c], pts[k]) for k in range(data.n_locations)]
        order = sorted(range(data.n_locations),
                       key=lambda k: (dist[k], *data.coordinates[k]))
        members: list[int] = []
        for k in order:
            members.append(k)
            zone = sum(loc_total[m] for m in members)
            if zone > max_share * total + 1e-9:
                break
            for length in range(min_len, max_len + 1):
                start = n_int - length
                in_window = case_interval >= start
                n = float(np.sum(in_window & np.isin(loc, members)))
                c_d = float(np.sum(in_window))
                mu = zone * c_d / total
                if n >= min_cases and n > mu:
                    llr = n * math.log(n / mu)
                    if total > n:
                        llr += (total - n) * math.log((total - n) / (total - mu))
                    best = max(best, llr)
    return best


def random_scan_data(seed: int, n_locations: int = 12, n_cases: int = 60,
                     n_intervals: int = 20) -> ScanData:
    """Small random scan data with a planted late cluster at location 0."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 100, size=(n_locations, 2))
    loc = rng.integers(0, n_locations, size=n_cases)
    t = rng.integers(0, n_intervals, size=n_cases)
    loc = np.concatenate([loc, [0, 0, 0, 0]])
    t = np.concatenate([t, [n_intervals - 1] * 4])
    return ScanData(location_ids=np.array([f"L{k}" for k in range(n_locations)]),
                    coordinates=coords, case_location=loc, case_interval=t,
                    interval_labels=[(str(k), str(k)) for k in range(n_intervals)])


def parse_satscan_report(path: Path) -> dict[str, object]:
    """The summary and the clusters of a SaTScan results file, as text fields."""
    text = path.read_text()
    out: dict[str, object] = {
        "study_period": re.search(r"Study period\.+: (.*)", text)[1].strip(),
        "n_locations": int(re.search(r"Number of locations\.+: (\d+)", text)[1]),
        "n_cases": int(re.search(r"Total number of cases\.+: (\d+)", text)[1]),
    }
    m = re.search(r"terminate the calculations after (\d+)", text)
    out["replications"] = int(m[1]) if m else None
    clusters = []
    for block in re.split(r"\n(?=\d+\.Location IDs)", text.split("CLUSTERS DETECTED")[1]):
        if not re.match(r"\d+\.Location IDs", block.strip()):
            continue
        fields = {}
        for key, value in re.findall(r"(Location IDs included|Coordinates / radius|Time frame|"
                                     r"Number of cases|Expected cases|Observed / expected|"
                                     r"Test statistic|P-value|Recurrence interval)\.*: (.*)",
                                     block):
            fields[key] = value.strip()
        clusters.append(fields)
    out["clusters"] = clusters
    return out


def planted_events_frame(seed: int = 0, n: int = 300, days: int = 60) -> pd.DataFrame:
    """Uniform burglaries over 10 km x 10 km and ``days`` days, plus a tight late cluster."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2020-01-01")
    x = rng.uniform(0, 10_000, n)
    y = rng.uniform(0, 10_000, n)
    t = start + pd.to_timedelta(rng.uniform(0, days, n), unit="D")
    k = 14
    cx = np.concatenate([x, 5_000 + rng.normal(0, 80, k)])
    cy = np.concatenate([y, 5_000 + rng.normal(0, 80, k)])
    ct = np.concatenate([t, start + pd.to_timedelta(rng.uniform(days - 3, days, k), unit="D")])
    return pd.DataFrame({"x": cx, "y": cy, "time": pd.DatetimeIndex(ct).strftime("%Y-%m-%d %H:%M")})
