"""Alerts: run a configured cluster check on new data or on a schedule; send each new cluster once.

Alerts describe areas and event counts only (where, when, how many against how many
expected); they never carry anything about persons.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from placecast.exceptions import DataError, ParameterError

__all__ = [
    "Alert",
    "WatchConfig",
    "WatchReport",
    "Watcher",
    "deliver_webhook",
    "load_watch_config",
]

logger = logging.getLogger("placecast.watch")

_CHECKS = ("scan", "satscan", "hotspots")
_DEFAULT_PATTERNS = ("new hot spot", "consecutive hot spot", "intensifying hot spot")


@dataclass(frozen=True)
class Alert:
    """One new cluster: an area, a time frame and counts.

    Attributes
    ----------
    alert_id : str
        Stable id (hash of the check name, the area's location ids and the start).
    check : str
        Name of the watch configuration that raised it.
    kind : str
        "space-time cluster" or the emerging hot spot pattern.
    detected_at : str
        ISO time the check ran.
    location_ids : tuple of str
        Locations or area units in the cluster.
    start, end : str
        Time frame.
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


@dataclass(frozen=True)
class WatchConfig:
    """A configured check and where its alerts go.

    Read from a JSON or TOML file with :func:`load_watch_config`::

        {"name": "burglary",
         "events": {"path": "burglary.csv", "crs": "EPSG:2913"},
         "check": "scan",
         "scan": {"cell": "200m", "max_radius": "1km", "max_days": 7, "study_days": 60,
                  "permutations": 999, "random_state": 1},
         "threshold": {"p_value": 0.05},
         "sinks": [{"type": "stdout"}, {"type": "file", "path": "alerts.jsonl"},
                   {"type": "webhook", "url": "https://example.org/hook",
                    "timeout": 5, "retries": 3, "backoff": 1.0}]}

    Relative paths are relative to the configuration file.
    """

    name: str
    check: str
    events: dict[str, Any]
    options: dict[str, Any]
    threshold: dict[str, float]
    sinks: tuple[dict[str, Any], ...]
    state_path: Path
    outbox_path: Path
    log_path: Path | None = None
    base: Path = Path(".")


def _resolve(base: Path, value: str | os.PathLike[str]) -> Path:
    path = Path(value)
    return path if path.is_absolute() else base / path


def load_watch_config(path: str | os.PathLike[str]) -> WatchConfig:
    """Read a watch configuration (``.json`` or ``.toml``) and check it.

    Raises
    ------
    DataError
        If the file is missing or not valid JSON/TOML.
    ParameterError
        For unknown checks, sinks or thresholds.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"watch configuration {path} does not exist.")
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DataError(f"{path}: not valid {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                        f"{exc}") from None
    base = path.parent
    name = str(raw.get("name") or path.stem)
    check = str(raw.get("check", "scan"))
    if check not in _CHECKS:
        raise ParameterError(f"{path}: check {check!r} is unknown; use one of "
                             f"{', '.join(_CHECKS)}.")
    events = dict(raw.get("events") or {})
    if check == "satscan":
        if "prm" not in raw.get("satscan", {}):
            raise ParameterError(f"{path}: a satscan check needs satscan.prm = the parameter "
                                 "file.")
    elif "path" not in events:
        raise ParameterError(f"{path}: events.path (the events file to watch) is missing.")
    if "path" in events:
        events["path"] = str(_resolve(base, events["path"]))
    options = dict(raw.get(check) or {})
    if check == "satscan":
        options["prm"] = str(_resolve(base, options["prm"]))
    threshold = {k: float(v) for k, v in (raw.get("threshold") or {"p_value": 0.05}).items()}
    unknown = set(threshold) - {"p_value", "recurrence_interval"}
    if unknown:
        raise ParameterError(f"{path}: unknown threshold(s) {sorted(unknown)}; use p_value "
                             "and/or recurrence_interval.")
    sinks = []
    for i, sink in enumerate(raw.get("sinks") or [{"type": "stdout"}]):
        kind = sink.get("type")
        if kind == "file":
            if "path" not in sink:
                raise ParameterError(f"{path}: sinks[{i}] (file) needs a path.")
            sink = {**sink, "path": str(_resolve(base, sink["path"]))}
        elif kind == "webhook":
            if not str(sink.get("url", "")).startswith(("http://", "https://")):
                raise ParameterError(f"{path}: sinks[{i}] (webhook) needs an http(s) url.")
        elif kind != "stdout":
            raise ParameterError(f"{path}: sinks[{i}] type {kind!r} is unknown; use stdout, "
                                 "file or webhook.")
        sinks.append(dict(sink))
    state = _resolve(base, raw.get("state", f".{name}.state.json"))
    outbox = _resolve(base, raw.get("outbox", f".{name}.outbox.jsonl"))
    log = _resolve(base, raw["log"]) if raw.get("log") else None
    return WatchConfig(name=name, check=check, events=events, options=options,
                       threshold=threshold, sinks=tuple(sinks), state_path=state,
                       outbox_path=outbox, log_path=log, base=base)


# ---------------------------------------------------------------------------- delivery
def deliver_webhook(payload: dict[str, Any], url: str, *, timeout: float = 5.0,
                    retries: int = 3, backoff: float = 1.0,
                    sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """POST ``payload`` as JSON; retry with exponential backoff.

    Tries ``1 + retries`` times, waiting ``backoff * 2**k`` seconds after the ``k``-th
    failure; any 2xx answer is success.

    Returns
    -------
    (bool, str)
        Whether it was delivered, and the last error.
    """
    data = json.dumps(payload).encode("utf-8")
    error = ""
    for attempt in range(int(retries) + 1):
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "placecast-watch"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                if 200 <= response.status < 300:
                    return True, ""
                error = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            error = str(getattr(exc, "reason", exc))
        if attempt < int(retries):
            sleep(backoff * 2 ** attempt)
    return False, error


@dataclass(frozen=True)
class WatchReport:
    """What one run of a watch did.

    Attributes
    ----------
    ran_check : bool
        False when the events had not changed since the last run.
    n_signals : int
        Clusters above the threshold.
    new_alerts : tuple of Alert
        Clusters not seen in the previous run (sent, or queued).
    delivered : int
        Deliveries that succeeded (one per alert and sink, including queued ones).
    queued : int
        Deliveries waiting in the outbox after this run.
    errors : tuple of str
        Failed deliveries.
    """

    ran_check: bool
    n_signals: int
    new_alerts: tuple[Alert, ...]
    delivered: int
    queued: int
    errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {"ran_check": self.ran_check, "n_signals": self.n_signals,
                "new_alerts": [a.alert_id for a in self.new_alerts],
                "delivered": self.delivered, "queued": self.queued,
                "errors": list(self.errors)}


class Watcher:
    """Run a :class:`WatchConfig` once or repeatedly.

    Each run: (1) retry deliveries waiting in the outbox; (2) if the events file changed
    since the last run (or ``force``), run the check; (3) for each cluster above the
    threshold that shares no location with a cluster already alerted and still present,
    make one :class:`Alert` and deliver it to every sink; (4) save the state (active
    clusters, events file signature). Clusters that disappear leave the state, so a later
    return alerts again. Deliveries that fail after their retries are logged and kept in
    the outbox file for the next run - nothing is lost.

    Parameters
    ----------
    config : WatchConfig
        What to check and where to send.
    stdout : file, optional
        Stream of the ``stdout`` sink (default ``sys.stdout``).
    sleep : callable
        Used between webhook retries and scheduled runs (tests pass a fake).
    """

    def __init__(self, config: WatchConfig, *, stdout: IO[str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.config = config
        self.stdout = stdout
        self.sleep = sleep

    # ------------------------------------------------------------------ state
    def _load_state(self) -> dict[str, Any]:
        path = self.config.state_path
        if not path.is_file():
            return {"active": [], "signature": None}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise DataError(f"watch state {path} is corrupt; delete it to start afresh (all "
                            "current clusters will then alert again).") from None

    def _save_json(self, path: Path, text: str) -> None:
        from placecast.io._atomic import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def _signature(self) -> list[Any] | None:
        """Path, modification time and size of every input file (``None`` if unknown)."""
        if self.config.check == "satscan":
            from placecast.io._satscan import _locate, read_satscan_parameters

            prm = Path(self.config.options["prm"])
            if not prm.is_file():
                return None
            params = read_satscan_parameters(prm)
            targets = [prm] + [_locate(params.get(key, ""), prm, key)
                               for key in ("CaseFile", "CoordinatesFile")]
        else:
            targets = [Path(self.config.events["path"])]
        signature: list[Any] = []
        for target in targets:
            if not target.exists():
                return None
            st = target.stat()
            signature += [str(target), st.st_mtime_ns, st.st_size]
        return signature

    def _log(self, message: str) -> None:
        logger.warning(message)
        if self.config.log_path is not None:
            stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            with open(self.config.log_path, "a", encoding="utf-8") as handle:
                handle.write(f"{stamp} {message}\n")

    # ------------------------------------------------------------------ checks
    def signals(self) -> list[Alert]:
        """Run the check and return the clusters above the threshold (ids not yet final)."""
        cfg = self.config
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if cfg.check == "hotspots":
            return self._hotspot_signals(now)
        result = self._scan_result()
        limit_p = cfg.threshold.get("p_value", 1.0)
        limit_ri = cfg.threshold.get("recurrence_interval")
        out = []
        for c in result.clusters:
            if c.p_value > limit_p:
                continue
            if limit_ri is not None and not c.recurrence_interval >= limit_ri:
                continue
            out.append(Alert(
                alert_id=_alert_id(cfg.name, c.location_ids, c.time_frame[0]),
                check=cfg.name, kind="space-time cluster", detected_at=now,
                location_ids=c.location_ids, start=c.time_frame[0], end=c.time_frame[1],
                observed=float(c.observed), expected=round(float(c.expected), 4),
                p_value=float(c.p_value), recurrence_interval=float(c.recurrence_interval),
                geometry=result.cluster_geometry(c)))
        return out

    def _scan_result(self) -> Any:
        cfg = self.config
        opts = dict(cfg.options)
        if cfg.check == "satscan":
            from placecast.io._satscan import read_satscan

            run = read_satscan(opts["prm"], n_permutations=opts.get("permutations"),
                               random_state=opts.get("random_state"),
                               randomization=opts.get("randomization"),
                               p_values=opts.get("p_values"))
            return run.scan.run(run.data)
        from placecast.clusters._scan import SpaceTimeScan, scan_data_from_events
        from placecast.quantities import parse_length

        events = self._events()
        units = None
        if opts.get("cell"):
            from placecast.pipeline import UnitSpec, build_units

            units = build_units(events, UnitSpec(cell_size=parse_length(opts["cell"])))
        interval_days = float(opts.get("interval_days", 1))
        study = opts.get("study_days")
        data = scan_data_from_events(
            events, interval=f"{interval_days}d", units=units,
            n_intervals=int(float(study) / interval_days) if study else None,
            round_to=parse_length(opts["round"]) if opts.get("round") else None)
        max_radius = opts.get("max_radius")
        scan = SpaceTimeScan(
            max_share=float(opts.get("max_share", 0.5)),
            max_radius=parse_length(max_radius) if max_radius is not None else None,
            max_intervals=max(1, int(float(opts.get("max_days", 7)) / interval_days)),
            n_permutations=int(opts.get("permutations", 999)),
            random_state=opts.get("random_state"),
            randomization=opts.get("randomization", "numpy"),
            p_values=opts.get("p_values", "monte_carlo"))
        return scan.run(data)

    def _events(self) -> Any:
        from placecast.io import ColumnMap, read_events

        ev = dict(self.config.events)
        path = ev.pop("path")
        columns = {k: ev.pop(k) for k in ("time", "x", "y", "lon", "lat", "category", "weight")
                   if k in ev}
        return read_events(path, columns=ColumnMap(**columns), **ev)

    def _hotspot_signals(self, now: str) -> list[Alert]:
        from placecast.clusters._emerging import SpaceTimeCube, emerging_hot_spots
        from placecast.pipeline import UnitSpec, build_units
        from placecast.quantities import parse_length

        opts = self.config.options
        events = self._events()
        units = build_units(events, UnitSpec(cell_size=parse_length(opts.get("cell", "500m"))))
        cube = SpaceTimeCube.from_events(events, units, step=opts.get("step", "7d"),
                                         n_steps=opts.get("n_steps"))
        result = emerging_hot_spots(cube, distance=parse_length(opts.get("distance", "1km")),
                                    time_steps=int(opts.get("time_steps", 1)),
                                    alpha=float(opts.get("alpha", 0.1)))
        wanted = set(opts.get("patterns", _DEFAULT_PATTERNS))
        geoms = units.geometry_in("EPSG:4326") if not units.spatial_reference.is_local \
            else units.geometry
        import shapely

        start = str(cube.step_edges[-2])[:10]
        end = str(cube.step_edges[-1] - 1)[:10]
        out = []
        for u in range(cube.n_units):
            if result.pattern[u] not in wanted:
                continue
            ids = (str(cube.unit_ids[u]),)
            out.append(Alert(
                alert_id=_alert_id(self.config.name, ids, result.pattern[u]),
                check=self.config.name, kind=str(result.pattern[u]), detected_at=now,
                location_ids=ids, start=start, end=end,
                observed=float(cube.counts[u, -1]),
                expected=round(float(cube.counts[u].mean()), 4),
                p_value=float(result.p_values[u, -1]), recurrence_interval=None,
                geometry=json.loads(shapely.to_geojson(geoms[u]))))
        return out

    # ------------------------------------------------------------------ delivery
    def _send(self, alert: dict[str, Any], sink: dict[str, Any]) -> tuple[bool, str]:
        line = json.dumps(alert, sort_keys=True)
        kind = sink["type"]
        try:
            if kind == "stdout":
                stream = self.stdout if self.stdout is not None else sys.stdout
                stream.write(line + "\n")
                stream.flush()
                return True, ""
            if kind == "file":
                target = Path(sink["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "a", encoding="utf-8") as handle:
                    handle.write(line + "\n")
                return True, ""
        except OSError as exc:
            return False, str(exc)
        return deliver_webhook(alert, sink["url"], timeout=float(sink.get("timeout", 5.0)),
                               retries=int(sink.get("retries", 3)),
                               backoff=float(sink.get("backoff", 1.0)), sleep=self.sleep)

    def _read_outbox(self) -> list[dict[str, Any]]:
        path = self.config.outbox_path
        if not path.is_file():
            return []
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError:
                    self._log(f"outbox {path} line {number} is not JSON; skipped it.")
        return items

    def run_once(self, *, force: bool = False) -> WatchReport:
        """One run: flush the outbox, check for new data, alert new clusters, save state."""
        state = self._load_state()
        pending: list[dict[str, Any]] = []
        delivered = 0
        errors: list[str] = []
        for item in self._read_outbox():
            ok, error = self._send(item["alert"], item["sink"])
            if ok:
                delivered += 1
            else:
                pending.append(item)
                errors.append(f"{item['alert']['alert_id']}: {error}")
        signature = self._signature()
        new_alerts: list[Alert] = []
        n_signals = 0
        ran = force or signature is None or signature != state.get("signature")
        if ran:
            signals = self.signals()
            n_signals = len(signals)
            active = state.get("active", [])
            still = []
            for alert in signals:
                match = next((a for a in active
                              if set(a["location_ids"]) & set(alert.location_ids)), None)
                if match is not None:
                    if match not in still:
                        match["last_seen"] = alert.detected_at
                        match["location_ids"] = sorted(set(match["location_ids"])
                                                       | set(alert.location_ids))
                        still.append(match)
                    continue
                new_alerts.append(alert)
                still.append({"alert_id": alert.alert_id,
                              "location_ids": sorted(alert.location_ids),
                              "first_seen": alert.detected_at, "last_seen": alert.detected_at})
            state["active"] = still
            state["signature"] = signature
            for alert in new_alerts:
                payload = alert.to_dict()
                for sink in self.config.sinks:
                    ok, error = self._send(payload, sink)
                    if ok:
                        delivered += 1
                    else:
                        pending.append({"sink": sink, "alert": payload})
                        errors.append(f"{alert.alert_id}: {error}")
        for message in errors:
            self._log(f"watch {self.config.name}: delivery failed, kept in outbox: {message}")
        # outbox first, then state: a crash in between re-sends rather than loses an alert
        self._save_json(self.config.outbox_path,
                        "".join(json.dumps(p, sort_keys=True) + "\n" for p in pending))
        self._save_json(self.config.state_path, json.dumps(state, indent=1, sort_keys=True))
        return WatchReport(ran_check=ran, n_signals=n_signals, new_alerts=tuple(new_alerts),
                           delivered=delivered, queued=len(pending), errors=tuple(errors))

    def run(self, *, interval: float | None = None, max_runs: int = 1,
            force: bool = False, on_report: Callable[[WatchReport], None] | None = None
            ) -> list[WatchReport]:
        """Run ``max_runs`` times, ``interval`` seconds apart (bounded; no endless loop)."""
        if int(max_runs) < 1:
            raise ParameterError(f"max_runs must be >= 1, got {max_runs}.")
        if int(max_runs) > 1 and not (interval is not None and interval >= 0):
            raise ParameterError("several runs need --interval SECONDS between them.")
        reports = []
        for k in range(int(max_runs)):
            report = self.run_once(force=force and k == 0)
            reports.append(report)
            if on_report is not None:
                on_report(report)
            if k + 1 < int(max_runs):
                self.sleep(float(interval or 0))
        return reports


def _alert_id(name: str, location_ids: tuple[str, ...], start: str) -> str:
    digest = hashlib.sha256("|".join([name, start, *sorted(location_ids)]).encode()).hexdigest()
    return digest[:16]
