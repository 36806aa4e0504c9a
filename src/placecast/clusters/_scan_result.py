"""What a scan found: clusters, their statistics, tables and GeoJSON."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from placecast.clusters._scan_data import EARTH_RADIUS_KM

__all__ = ["ScanCluster", "ScanResult"]


@dataclass(frozen=True)
class ScanCluster:
    """One reported cluster: a cylinder (circle x time window).

    Attributes
    ----------
    rank : int
        1 for the most likely cluster, then secondary clusters by test statistic.
    centre_id : str
        Location at the circle's centre.
    centre : (float, float)
        Its coordinates (``x, y`` or ``latitude, longitude``).
    radius : float
        Distance to the farthest included location (km for lat/lon).
    location_ids : tuple of str
        Included locations, nearest first.
    start_interval, end_interval : int
        First and last time interval of the window.
    time_frame : (str, str)
        First and last time of the window, as printed.
    observed : int
        Cases in the cylinder, ``n``.
    expected : float
        Expected cases under the null: ``mu = C_z * C_d / C`` (space-time permutation),
        ``C`` x the cylinder's share of population x time (Poisson), ``N C / N_total``
        for ``N`` cases and controls in the cylinder (Bernoulli).
    test_statistic : float
        Log likelihood ratio.
    p_value : float
        Monte Carlo or Gumbel p-value, as ``p_value_method`` says (``nan`` without
        replications).
    recurrence_interval : float
        Expected time between clusters this strong under the null, in time units
        (``interval_length / p_value``: one analysis per interval); ``nan`` for
        retrospective and purely spatial analyses.
    p_value_method : {"monte_carlo", "gumbel"}
        How ``p_value`` was computed.
    population : float
        Population in the circle (Poisson) or cases plus controls in the cylinder
        (Bernoulli); ``nan`` for the space-time permutation model.
    relative_risk : float
        Estimated risk inside over risk outside: ``(n / mu) / ((C - n) / (C - mu))``, or
        ``(n / N) / ((C - n) / (N_total - N))`` for Bernoulli (``inf`` when every case is
        inside; ``nan`` for the space-time permutation model).
    """

    rank: int
    centre_id: str
    centre: tuple[float, float]
    radius: float
    location_ids: tuple[str, ...]
    start_interval: int
    end_interval: int
    time_frame: tuple[str, str]
    observed: int
    expected: float
    test_statistic: float
    p_value: float
    recurrence_interval: float
    p_value_method: str = "monte_carlo"
    population: float = math.nan
    relative_risk: float = math.nan

    @property
    def observed_over_expected(self) -> float:
        """``n / mu``."""
        return self.observed / self.expected if self.expected > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "rank": self.rank,
            "centre_id": self.centre_id,
            "centre": list(self.centre),
            "radius": self.radius,
            "location_ids": list(self.location_ids),
            "n_locations": len(self.location_ids),
            "start": self.time_frame[0],
            "end": self.time_frame[1],
            "observed": self.observed,
            "expected": self.expected,
            "observed_over_expected": self.observed_over_expected,
            "test_statistic": self.test_statistic,
            "p_value": self.p_value,
            "p_value_method": self.p_value_method,
            "recurrence_interval": _finite_or_none(self.recurrence_interval),
            "population": _finite_or_none(self.population),
            "relative_risk": (None if math.isnan(self.relative_risk)
                              else self.relative_risk),
        }


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass(frozen=True)
class ScanResult:
    """What a space-time scan found.

    Attributes
    ----------
    clusters : tuple of ScanCluster
        Most likely cluster first, then secondary clusters that share no location with
        any earlier one.
    n_locations, n_cases : int
        Size of the data.
    study_period : (str, str)
        First and last time of the study period.
    n_permutations : int
        Replications run (fewer than requested when the sequential procedure stopped).
    n_permutations_requested : int
        Replications asked for.
    stopped_early : bool
        Whether the sequential Monte Carlo procedure stopped the run.
    simulated_statistics : ndarray
        Maximum log likelihood ratio of each replication.
    coordinate_system : str
        "cartesian" or "latlon".
    time_unit : str
        Name of the time unit of ``recurrence_interval``.
    parameters : dict
        The settings of the scan.
    crs : str, optional
        CRS of planar coordinates.
    model : {"space_time_permutation", "poisson", "bernoulli"}
        The probability model.
    analysis : {"prospective", "retrospective", "purely_spatial"}
        Which cylinders were scanned.
    total_population : float
        Total population (Poisson) or cases plus controls (Bernoulli); ``nan`` otherwise.
    """

    clusters: tuple[ScanCluster, ...]
    n_locations: int
    n_cases: int
    study_period: tuple[str, str]
    n_permutations: int
    n_permutations_requested: int
    stopped_early: bool
    simulated_statistics: np.ndarray = field(repr=False)
    coordinate_system: str = "cartesian"
    time_unit: str = "unit"
    parameters: dict[str, Any] = field(default_factory=dict)
    crs: str | None = None
    location_coordinates: dict[str, tuple[float, float]] = field(default_factory=dict,
                                                                 repr=False)
    metres_per_unit: float = 1.0
    location_extent: float = 0.0
    model: str = "space_time_permutation"
    analysis: str = "prospective"
    total_population: float = math.nan

    @property
    def most_likely(self) -> ScanCluster | None:
        """The most likely cluster (``None`` when no cylinder has more cases than expected)."""
        return self.clusters[0] if self.clusters else None

    def significant(self, alpha: float = 0.05) -> tuple[ScanCluster, ...]:
        """Clusters with ``p_value <= alpha``."""
        return tuple(c for c in self.clusters if c.p_value <= alpha)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (without the simulated statistics)."""
        return {
            "n_locations": self.n_locations,
            "n_cases": self.n_cases,
            "study_period": list(self.study_period),
            "n_permutations": self.n_permutations,
            "n_permutations_requested": self.n_permutations_requested,
            "stopped_early": self.stopped_early,
            "coordinate_system": self.coordinate_system,
            "time_unit": self.time_unit,
            "parameters": dict(self.parameters),
            "crs": self.crs,
            "model": self.model,
            "analysis": self.analysis,
            "total_population": _finite_or_none(self.total_population),
            "clusters": [c.to_dict() for c in self.clusters],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per cluster (location ids joined by ``;``)."""
        rows = []
        for c in self.clusters:
            row = c.to_dict()
            row["centre_x"], row["centre_y"] = row.pop("centre")
            row["location_ids"] = ";".join(c.location_ids)
            rows.append(row)
        columns = ["rank", "centre_id", "centre_x", "centre_y", "radius", "n_locations",
                   "location_ids", "start", "end", "population", "observed", "expected",
                   "observed_over_expected", "relative_risk", "test_statistic", "p_value",
                   "recurrence_interval"]
        return pd.DataFrame(rows, columns=columns)

    def cluster_geometry(self, cluster: ScanCluster, n_vertices: int = 64) -> dict[str, Any]:
        """GeoJSON polygon of the cluster's circle (lon/lat when known, else planar).

        The circle's radius is the cluster radius plus ``location_extent`` (so a cluster of
        one grid cell covers the cell).

        For lat/lon data the circle is drawn on the sphere; for planar data in a known CRS
        it is transformed to WGS 84; for local planar data it stays in data units.
        """
        angles = np.linspace(0, 2 * np.pi, n_vertices, endpoint=False)
        radius = max(cluster.radius, 0.0) + self.location_extent
        if self.coordinate_system == "latlon":
            lat0, lon0 = np.radians(cluster.centre[0]), np.radians(cluster.centre[1])
            d = max(radius, 0.05) / EARTH_RADIUS_KM
            lat = np.arcsin(np.sin(lat0) * np.cos(d) + np.cos(lat0) * np.sin(d) * np.cos(angles))
            lon = lon0 + np.arctan2(np.sin(angles) * np.sin(d) * np.cos(lat0),
                                    np.cos(d) - np.sin(lat0) * np.sin(lat))
            ring = np.column_stack([np.degrees(lon), np.degrees(lat)])
        else:
            r = radius if radius > 0 else 1.0
            ring = np.column_stack([cluster.centre[0] + r * np.cos(angles),
                                    cluster.centre[1] + r * np.sin(angles)])
            if self.crs and not self.crs.startswith("local"):
                from pyproj import Transformer

                tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
                lon, lat = tr.transform(ring[:, 0] / self.metres_per_unit,
                                        ring[:, 1] / self.metres_per_unit)
                ring = np.column_stack([lon, lat])
        ring = np.vstack([ring, ring[:1]])
        return {"type": "Polygon", "coordinates": [np.round(ring, 7).tolist()]}

    def to_geojson(self) -> dict[str, Any]:
        """Return a GeoJSON FeatureCollection: one circle per cluster with its numbers."""
        features = []
        for c in self.clusters:
            props = c.to_dict()
            props["location_ids"] = ";".join(c.location_ids)
            props["centre"] = ",".join(str(v) for v in c.centre)
            features.append({"type": "Feature", "properties": props,
                             "geometry": self.cluster_geometry(c)})
        out: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if self.coordinate_system != "latlon" and (not self.crs or self.crs.startswith("local")):
            out["properties"] = {"coordinates": "planar data units (no CRS)"}
        return out


