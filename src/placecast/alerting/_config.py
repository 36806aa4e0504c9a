"""Watch configurations: what to check, how often to alert, where alerts go."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from placecast.exceptions import DataError, ParameterError

__all__ = ["CHECKS", "WatchConfig", "load_watch_config"]

#: What a watch can run.
CHECKS = ("scan", "satscan", "hotspots")


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
    if check not in CHECKS:
        raise ParameterError(f"{path}: check {check!r} is unknown; use one of "
                             f"{', '.join(CHECKS)}.")
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


