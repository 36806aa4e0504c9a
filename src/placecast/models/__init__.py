"""Forecasting models behind one contract: ``fit(events)`` -> ``predict(units, window)``."""

from typing import Any

from placecast.exceptions import ParameterError
from placecast.models._base import Forecaster, check_is_fitted
from placecast.models.boost import BoostedPoisson
from placecast.models.ensemble import AutoForecast, EnsembleForecast
from placecast.models.etas import GridETAS
from placecast.models.kde import KDEHotspot
from placecast.models.naive import NaiveCounts
from placecast.models.prospective import ProspectiveHotspot
from placecast.models.sepp import SEPP

__all__ = [
    "MODELS",
    "SEPP",
    "AutoForecast",
    "BoostedPoisson",
    "EnsembleForecast",
    "Forecaster",
    "GridETAS",
    "KDEHotspot",
    "NaiveCounts",
    "ProspectiveHotspot",
    "check_is_fitted",
    "make_model",
]

#: Model name on the command line -> class.
MODELS: dict[str, type[Forecaster]] = {
    "auto": AutoForecast,
    "boost": BoostedPoisson,
    "ensemble": EnsembleForecast,
    "etas": GridETAS,
    "kde": KDEHotspot,
    "naive": NaiveCounts,
    "prospective": ProspectiveHotspot,
    "sepp": SEPP,
}


def make_model(name: str, **params: Any) -> Forecaster:
    """Build a model by its command-line name with keyword parameters.

    Raises
    ------
    ParameterError
        For an unknown model name or parameter.
    """
    cls = MODELS.get(name.strip().lower())
    if cls is None:
        raise ParameterError(
            f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}.", param="model"
        )
    return cls().set_params(**params)
