"""Earthquake catalogs: marked space-time ETAS (Ogata 1998; Zhuang, Ogata & Vere-Jones 2002).

A catalog obeys a different contract from the area-unit forecasters of
:mod:`placecast.models`: events carry a magnitude, live in the reference's flat projection
(degrees or km, not projected metres) and are split into target and complementary events
by a study period and region; the model is fitted by the R package ETAS's schedule and
reports parameter estimates rather than a :class:`~placecast.forecast.Forecast`.

* ``_catalog.py``: catalog set-up (``build_catalog``, ``catalog_from_arrays``,
  ``catalog_from_events``, ``parse_region``).
* ``_etas.py``: the likelihood, the fit (``fit_marked_etas``) and simulation
  (``simulate_marked_etas``).
* ``_kernels.py``: numba pair sums with analytic gradient and compressed polygon integrals.
* ``_likelihood_numpy.py``: a plain NumPy likelihood, the tests' oracle and the
  benchmark's baseline.
"""

from placecast.seismic._catalog import (
    MarkedCatalog,
    build_catalog,
    catalog_from_arrays,
    catalog_from_events,
    parse_region,
)
from placecast.seismic._etas import (
    PARAM_NAMES,
    MarkedETAS,
    MarkedETASLikelihood,
    MarkedETASResult,
    fit_marked_etas,
    simulate_marked_etas,
)

__all__ = [
    "PARAM_NAMES",
    "MarkedCatalog",
    "MarkedETAS",
    "MarkedETASLikelihood",
    "MarkedETASResult",
    "build_catalog",
    "catalog_from_arrays",
    "catalog_from_events",
    "fit_marked_etas",
    "parse_region",
    "simulate_marked_etas",
]
