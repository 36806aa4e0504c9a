"""Old home of marked ETAS, kept because earlier READMEs documented it.

The earthquake catalog code lives in :mod:`placecast.seismic`; import from there.
"""

from placecast.seismic import (
    PARAM_NAMES,
    MarkedETAS,
    MarkedETASLikelihood,
    MarkedETASResult,
    fit_marked_etas,
    simulate_marked_etas,
)

__all__ = [
    "PARAM_NAMES",
    "MarkedETAS",
    "MarkedETASLikelihood",
    "MarkedETASResult",
    "fit_marked_etas",
    "simulate_marked_etas",
]
