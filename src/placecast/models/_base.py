"""The one contract every forecasting model follows.

``Forecaster(**params)`` stores parameters unchanged; ``fit(events)`` validates them and
learns from the events, returning ``self``; ``predict(units, window)`` returns a
``Forecast`` of expected event counts per unit. Only events strictly before
``window.start`` inform a prediction.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Self

import numpy as np

from placecast.events import Events
from placecast.exceptions import DataError, NotFittedError, ParameterError
from placecast.forecast import Forecast, TimeWindow
from placecast.units import Units

__all__ = ["Forecaster", "check_is_fitted", "recent_rate"]


class Forecaster(ABC):
    """Base class: parameter handling and the fit/predict contract."""

    #: Short name used on the command line (``--model kde``).
    name: ClassVar[str] = ""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [p.name for p in signature.parameters.values()
                if p.name != "self" and p.kind == p.KEYWORD_ONLY]

    def get_params(self) -> dict[str, Any]:
        """The constructor parameters and their current values."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Self:
        """Set constructor parameters (unknown names raise ``ParameterError``)."""
        valid = set(self._param_names())
        for key, value in params.items():
            if key not in valid:
                raise ParameterError(
                    f"{type(self).__name__} has no parameter {key!r} "
                    f"(valid: {', '.join(sorted(valid))}).", param="model_params"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @abstractmethod
    def fit(self, events: Events) -> Self:
        """Learn from ``events``; returns ``self``."""

    @abstractmethod
    def predict(self, units: Units, window: TimeWindow) -> Forecast:
        """Expected event counts per unit over ``window``."""

    def _training_events(self, window: TimeWindow) -> Events:
        """Fitted events strictly before the window start (no look-ahead)."""
        check_is_fitted(self)
        events: Events = self.events_  # type: ignore[attr-defined]
        return events.before(window.start)

    def _make_forecast(self, units: Units, window: TimeWindow, intensity: np.ndarray,
                       **extra: Any) -> Forecast:
        params = {k: (v if isinstance(v, int | float | str | bool | type(None)) else str(v))
                  for k, v in self.get_params().items()}
        params.update(extra)
        return Forecast(units=units, window=window, intensity=intensity, model=self.name,
                        params=params)


def check_is_fitted(model: Forecaster) -> None:
    """Raise ``NotFittedError`` unless ``model.fit`` has been called.

    A model is fitted when it has an attribute ending in ``_`` (sklearn's convention).
    """
    if not any(k.endswith("_") and not k.startswith("_") for k in vars(model)):
        raise NotFittedError(
            f"this {type(model).__name__} is not fitted yet; call fit(events) before predict."
        )


def check_positive(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """Validate a positive finite number parameter."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise ParameterError(f"{name} must be a positive number, got {value!r}.",
                             param=name)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} must be a positive number, got {value!r}.",
                             param=name)
    return float(value)


def recent_rate(events: Events, window: TimeWindow, lookback_days: float) -> float:
    """Events per day over ``[window.start - lookback_days, window.start)`` (weighted).

    Raises
    ------
    DataError
        If no event falls in the lookback period.
    """
    start = window.start - np.timedelta64(int(round(lookback_days * 86400e9)), "ns")
    recent = events.between(start, window.start)
    if len(recent) == 0:
        raise DataError(
            f"no events in the {lookback_days:g} days before {window}; a forecast needs "
            "recent history. Move the forecast date or lengthen the lookback."
        )
    first = max(start, events.start)
    span = float((window.start - first) / np.timedelta64(1, "D"))
    return float(recent.weights.sum()) / max(span, 1.0)
