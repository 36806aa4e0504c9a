"""Where alerts go: stdout, a JSON-lines file, a webhook, or the store of the service."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from placecast.clusters import Alert

__all__ = ["deliver_webhook", "save_new_alerts", "send"]


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




def send(payload: dict[str, Any], sink: dict[str, Any], *, stdout: IO[str] | None = None,
         sleep: Callable[[float], None] = time.sleep) -> tuple[bool, str]:
    """Deliver one alert (``Alert.to_dict()``) to one sink of a watch configuration.

    Parameters
    ----------
    payload : dict
        The alert as JSON-ready values.
    sink : dict
        ``{"type": "stdout"}``, ``{"type": "file", "path": ...}`` (one JSON line appended)
        or ``{"type": "webhook", "url": ..., "timeout", "retries", "backoff"}``.
    stdout : file, optional
        Stream of the ``stdout`` sink (default ``sys.stdout``).
    sleep : callable
        Used between webhook retries.

    Returns
    -------
    (bool, str)
        Whether it was delivered, and the error if not.
    """
    line = json.dumps(payload, sort_keys=True)
    kind = sink["type"]
    try:
        if kind == "stdout":
            stream = stdout if stdout is not None else sys.stdout
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
    return deliver_webhook(payload, sink["url"], timeout=float(sink.get("timeout", 5.0)),
                           retries=int(sink.get("retries", 3)),
                           backoff=float(sink.get("backoff", 1.0)), sleep=sleep)


def save_new_alerts(store: Any, alerts: Iterable[Alert], *,
                    extra: Callable[[Alert], dict[str, Any]] | None = None) -> list[str]:
    """Save the alerts a store does not hold yet; return their ids.

    An alert already in the store (same :func:`placecast.clusters.alert_id`) is left as it
    is, so an acknowledged alert stays acknowledged when the same cluster is found again.

    Parameters
    ----------
    store : Store
        Anything with ``list_alerts()`` and ``save_alert(dict)``; the caller holds any
        lock that makes the two calls one step.
    alerts : iterable of Alert
        The alerts found.
    extra : callable, optional
        More values to save with an alert (e.g. the dataset it came from).
    """
    known = {a["id"] for a in store.list_alerts()}
    new = []
    for alert in alerts:
        if alert.alert_id in known:
            continue
        known.add(alert.alert_id)
        store.save_alert({**alert.to_dict(), **(extra(alert) if extra else {})})
        new.append(alert.alert_id)
    return new
