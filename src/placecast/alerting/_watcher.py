"""The watcher: run a configured check, alert each new cluster once, keep an outbox."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from placecast.alerting._config import WatchConfig
from placecast.alerting._sinks import send
from placecast.clusters import ALERT_PATTERNS, Alert, hotspot_alerts, scan_alerts
from placecast.exceptions import DataError, ParameterError

__all__ = ["WatchReport", "Watcher"]

logger = logging.getLogger("placecast.watch")


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
            from placecast.clusters import satscan_input_files

            prm = Path(self.config.options["prm"])
            if not prm.is_file():
                return None
            targets = satscan_input_files(prm)
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
        """Run the check and return the clusters above the threshold."""
        cfg = self.config
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if cfg.check == "hotspots":
            return self._hotspot_signals(now)
        return scan_alerts(self._scan_result(), check=cfg.name,
                           p_value=cfg.threshold.get("p_value", 1.0),
                           recurrence_interval=cfg.threshold.get("recurrence_interval"),
                           detected_at=now)

    def _scan_result(self) -> Any:
        cfg = self.config
        opts = dict(cfg.options)
        if cfg.check == "satscan":
            from placecast.clusters import read_satscan

            run = read_satscan(opts["prm"], n_permutations=opts.get("permutations"),
                               random_state=opts.get("random_state"),
                               randomization=opts.get("randomization"),
                               p_values=opts.get("p_values"))
            return run.scan.run(run.data)
        from placecast.clusters import SpaceTimeScan, scan_data_from_events
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
        from placecast.clusters import SpaceTimeCube, emerging_hot_spots
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
        return hotspot_alerts(cube, result, check=self.config.name,
                              patterns=opts.get("patterns", ALERT_PATTERNS), detected_at=now)

    # ------------------------------------------------------------------ delivery
    def _send(self, alert: dict[str, Any], sink: dict[str, Any]) -> tuple[bool, str]:
        return send(alert, sink, stdout=self.stdout, sleep=self.sleep)

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
            raise ParameterError(f"max_runs must be >= 1, got {max_runs}.", param="max_runs")
        if int(max_runs) > 1 and not (interval is not None and interval >= 0):
            raise ParameterError("several runs need an `interval` (seconds) between them.",
                                 param="interval")
        reports = []
        for k in range(int(max_runs)):
            report = self.run_once(force=force and k == 0)
            reports.append(report)
            if on_report is not None:
                on_report(report)
            if k + 1 < int(max_runs):
                self.sleep(float(interval or 0))
        return reports


