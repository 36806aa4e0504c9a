"""Append-only log of who read or changed what, and when.

One row per API request: UTC time, the token (id, name, role; empty when the request
had none or a bad one), method, path, the action (the route template, e.g.
``GET /forecasts/{forecast_id}/geojson``), the target (the route's path parameters) and
the response status. SQLite triggers refuse every ``UPDATE`` and ``DELETE`` of the table,
so the service itself cannot rewrite history.
"""

from __future__ import annotations

import json
from typing import Any

from placecast.service._auth import Principal
from placecast.service._state import StateDB, utc_now

__all__ = ["AuditLog"]

_COLUMNS = ("seq", "time", "token_id", "token_name", "role", "method", "path", "action",
            "target", "status", "client")


class AuditLog:
    """Write and read the audit log."""

    def __init__(self, state: StateDB) -> None:
        self._state = state

    def record(self, *, principal: Principal | None, method: str, path: str, action: str,
               target: dict[str, Any] | None, status: int, client: str | None) -> None:
        """Append one entry."""
        self._state.execute(
            "INSERT INTO audit_log (time, token_id, token_name, role, method, path, action, "
            "target, status, client) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (utc_now(), principal.token_id if principal else None,
             principal.name if principal else None, principal.role if principal else None,
             method, path[:500], action[:200],
             json.dumps(target, sort_keys=True)[:500] if target else None, int(status),
             client))

    def entries(self, *, limit: int = 100, before: int | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` entries (older than sequence number ``before``)."""
        if before is None:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_log ORDER BY seq DESC LIMIT ?",
                (int(limit),))
        else:
            rows = self._state.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM audit_log WHERE seq < ? "
                "ORDER BY seq DESC LIMIT ?", (int(before), int(limit)))
        out = []
        for row in rows:
            entry = dict(zip(_COLUMNS, row, strict=True))
            entry["target"] = json.loads(entry["target"]) if entry["target"] else None
            out.append(entry)
        return out
