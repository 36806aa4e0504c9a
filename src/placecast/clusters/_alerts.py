"""Alerts: one type and one id for a cluster worth telling someone about.

A space-time scan cluster or an emerging hot spot becomes an :class:`Alert` here, by
:func:`scan_alerts` or :func:`hotspot_alerts`; ``placecast watch`` (through
:mod:`placecast.alerting`) and the web service both call them, so the same cluster gets
the same :func:`alert_id` from both. Where alerts go (stdout, files, webhooks, an outbox)
is application code in :mod:`placecast.alerting`, not here.

Alerts describe areas and event counts only (where, when, how many against how many
expected); they never carry anything about persons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placecast.exceptions import ParameterError

__all__ = [
    "ALERT_ID_LENGTH",
    "ALERT_PATTERNS",
    "Alert",
    "alert_id",
    "hotspot_alerts",
    "scan_alerts",
]

#: Emerging hot spot patterns that raise an alert unless the caller names others.
ALERT_PATTERNS = ("new hot spot", "consecutive hot spot", "intensifying hot spot")

#: Hex characters of an alert id (64 bits of SHA-256).
ALERT_ID_LENGTH = 16

#: Kind of an alert raised by a space-time scan.
SCAN_KIND = "space-time cluster"


@dataclass(frozen=True)
class Alert:
    """One cluster: an area, a time frame and counts.

    Attributes
    ----------
    alert_id : str
        :func:`alert_id` of the kind, the area (location ids and geometry) and the start.
    check : str
        Name of what raised it (a watch configuration, or the service's job kind).
    kind : str
        ``"space-time cluster"`` or the emerging hot spot pattern.
    detected_at : str
        ISO time the check ran.
    location_ids : tuple of str
        Locations or area units in the cluster.
    start, end : str
        Time frame (both days included).
    observed : float
        Events in the cluster.
    expected : float
        Events expected there under the null.
    p_value : float
        Significance.
    recurrence_interval : float, optional
        Expected time between such clusters by chance (time units of the data).
    geometry : dict
        GeoJSON geometry of the area (WGS 84 when the data have a CRS).
    """

    alert_id: str
    check: str
    kind: str
    detected_at: str
    location_ids: tuple[str, ...]
    start: str
    end: str
    observed: float
    expected: float
    p_value: float
    recurrence_interval: float | None
    geometry: dict[str, Any] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready values (a GeoJSON Feature's properties plus ``geometry``)."""
        return {
            "alert_id": self.alert_id, "check": self.check, "kind": self.kind,
            "detected_at": self.detected_at, "location_ids": list(self.location_ids),
            "start": self.start, "end": self.end, "observed": self.observed,
            "expected": self.expected, "p_value": self.p_value,
            "recurrence_interval": self.recurrence_interval, "geometry": self.geometry,
        }


def _bounds(geometry: dict[str, Any]) -> list[float]:
    """Bounding box of a GeoJSON geometry's coordinates, rounded to 5 decimals."""
    coords = np.asarray(_flatten(geometry.get("coordinates", [])), dtype=float).reshape(-1, 2)
    if coords.size == 0:
        return []
    return [round(float(v), 5) for v in (*coords.min(axis=0), *coords.max(axis=0))]


def _flatten(value: Any) -> list[float]:
    if isinstance(value, int | float):
        return [float(value)]
    return [v for item in value for v in _flatten(item)]


def alert_id(kind: str, location_ids: Iterable[str], start: str,
             geometry: dict[str, Any] | None = None) -> str:
    """The id of a cluster: the same kind, area and start give the same id.

    SHA-256 of the kind, the start, the sorted location ids and the bounding box of the
    geometry (5 decimals), cut to ``ALERT_ID_LENGTH`` hex characters. The geometry tells
    apart clusters of different data sets whose units share ids (grid cells ``c3_r4``).

    Examples
    --------
    >>> a = alert_id("space-time cluster", ["c1_r2", "c1_r3"], "2017/03/01")
    >>> a == alert_id("space-time cluster", ("c1_r3", "c1_r2"), "2017/03/01"), len(a)
    (True, 16)
    """
    parts = [kind, str(start), *sorted(map(str, location_ids))]
    if geometry is not None:
        parts.append(json.dumps(_bounds(geometry)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:ALERT_ID_LENGTH]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def scan_alerts(result: Any, *, check: str, p_value: float = 0.05,
                recurrence_interval: float | None = None,
                detected_at: str | None = None) -> list[Alert]:
    """Alerts for the clusters of a scan that pass the thresholds.

    Parameters
    ----------
    result : ScanResult
        What :meth:`SpaceTimeScan.run` found.
    check : str
        What raised them (recorded in :attr:`Alert.check`; not part of the id).
    p_value : float
        Clusters with a larger p-value are left out.
    recurrence_interval : float, optional
        Clusters recurring more often by chance (time units of the data) are left out.
    detected_at : str, optional
        ISO time of the check (default: now, UTC).

    Returns
    -------
    list of Alert
        In the result's order (most likely cluster first).
    """
    if not 0 <= p_value <= 1:
        raise ParameterError(f"`p_value` must be between 0 and 1, got {p_value}.",
                             param="p_value")
    now = detected_at or _now()
    out = []
    for cluster in result.clusters:
        if cluster.p_value > p_value:
            continue
        if recurrence_interval is not None and \
                not cluster.recurrence_interval >= recurrence_interval:
            continue
        start, end = (str(t) for t in cluster.time_frame)
        geometry = result.cluster_geometry(cluster)
        out.append(Alert(
            alert_id=alert_id(SCAN_KIND, cluster.location_ids, start, geometry),
            check=check, kind=SCAN_KIND, detected_at=now,
            location_ids=tuple(map(str, cluster.location_ids)), start=start, end=end,
            observed=float(cluster.observed), expected=round(float(cluster.expected), 4),
            p_value=float(cluster.p_value),
            recurrence_interval=float(cluster.recurrence_interval), geometry=geometry))
    return out


def hotspot_alerts(cube: Any, result: Any, *, check: str,
                   patterns: Sequence[str] = ALERT_PATTERNS,
                   detected_at: str | None = None) -> list[Alert]:
    """Alerts for the units whose emerging hot spot pattern is one of ``patterns``.

    Parameters
    ----------
    cube : SpaceTimeCube
        The cube the analysis ran on (made with ``SpaceTimeCube.from_events``, so that it
        has units to draw).
    result : EmergingHotSpotResult
        What :func:`emerging_hot_spots` found.
    check : str
        What raised them (recorded in :attr:`Alert.check`; not part of the id).
    patterns : sequence of str
        Patterns that raise an alert (default :data:`ALERT_PATTERNS`).
    detected_at : str, optional
        ISO time of the check (default: now, UTC).

    Returns
    -------
    list of Alert
        One per unit, in unit order: the last step as time frame, its count as observed
        and the unit's mean count per step as expected.
    """
    import shapely

    units = result.units if result.units is not None else getattr(cube, "units", None)
    if units is None:
        raise ParameterError("hot spot alerts need the units to draw; build the cube with "
                             "`SpaceTimeCube.from_events`.", param="cube")
    geoms = units.geometry if units.spatial_reference.is_local \
        else units.geometry_in("EPSG:4326")
    position = {str(u): i for i, u in enumerate(units.unit_id)}
    now = detected_at or _now()
    start = str(cube.step_edges[-2])[:10]
    end = str(cube.step_edges[-1] - 1)[:10]     # the last day of the last step
    wanted = set(patterns)
    out = []
    for u in range(cube.n_units):
        kind = str(result.pattern[u])
        if kind not in wanted:
            continue
        ids = (str(cube.unit_ids[u]),)
        geometry = json.loads(shapely.to_geojson(geoms[position[ids[0]]]))
        out.append(Alert(
            alert_id=alert_id(kind, ids, start, geometry), check=check, kind=kind,
            detected_at=now, location_ids=ids, start=start, end=end,
            observed=float(cube.counts[u, -1]),
            expected=round(float(cube.counts[u].mean()), 4),
            p_value=float(result.p_values[u, -1]), recurrence_interval=None,
            geometry=geometry))
    return out
