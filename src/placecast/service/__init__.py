"""Web service and dashboard: forecasts, backtests, audits and alerts for a team.

``create_app(store=..., settings=...)`` builds a FastAPI app over a
:class:`placecast.store.Store`; ``placecast serve`` runs it with uvicorn. Every route but
``/health``, ``/openapi.json`` and the dashboard's static shell needs a bearer token
(``placecast token create --role viewer|analyst|admin``); tokens are stored hashed,
every request is written to an append-only audit log, uploads are size- and row-limited,
and every parameter is validated. See ``docs/service.md``.
"""

from placecast.service._app import ServiceSettings, create_app
from placecast.service._auth import ROLES, Principal, TokenInfo, TokenRefused, TokenStore
from placecast.service._state import StateDB, state_path_for

__all__ = ["ROLES", "Principal", "ServiceSettings", "StateDB", "TokenInfo", "TokenRefused",
           "TokenStore", "create_app", "state_path_for"]
