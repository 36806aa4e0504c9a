"""One FastAPI router per resource; ``create_app`` includes them in ``ROUTERS`` order.

Each module holds its resource's routes and nothing else: the shared context, the role
dependencies and the helpers are in ``service/_deps.py``, the work in
``service/_work.py``, the service's own tables in ``service/_state.py``.
"""

from collections.abc import Iterator
from typing import Any

from placecast.service.routers import (
    admin,
    alerts,
    audits,
    backtests,
    clusters,
    dashboard,
    datasets,
    forecasts,
    health,
    jobs,
    maps,
)

__all__ = ["ROUTERS", "dashboard", "iter_routes"]

#: The routers, in the order their routes are matched.
ROUTERS = (health.router, datasets.router, forecasts.router, backtests.router,
           audits.router, clusters.router, jobs.router, alerts.router, admin.router,
           maps.router, dashboard.router)


def iter_routes(routes: Any) -> Iterator[Any]:
    """Every route and mount of ``routes`` (an app's or router's), included routers opened.

    FastAPI may keep an included router as one entry of ``app.routes`` (resolved
    lazily); this walks into it, so callers see the same flat list of routes whatever
    the FastAPI version. Routers here are included without a prefix.
    """
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from iter_routes(inner.routes)
        else:
            yield route
