"""Alerting, the application layer over the core's alerts: watches, sinks and outbox.

:mod:`placecast.clusters` finds clusters and makes them :class:`~placecast.clusters.Alert`
objects with one id; this package decides when to check and where alerts go. ``placecast
watch`` runs a :class:`Watcher` (stdout, JSON-lines file and webhook sinks, a state file
and an outbox so nothing is lost); the web service saves alerts to its store with
:func:`save_new_alerts`. The core never imports this package.
"""

from placecast.alerting._config import CHECKS, WatchConfig, load_watch_config
from placecast.alerting._sinks import deliver_webhook, save_new_alerts, send
from placecast.alerting._watcher import Watcher, WatchReport

__all__ = [
    "CHECKS",
    "WatchConfig",
    "WatchReport",
    "Watcher",
    "deliver_webhook",
    "load_watch_config",
    "save_new_alerts",
    "send",
]
