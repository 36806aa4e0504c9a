"""Parse lengths, areas and durations with units, as users type them on the command line.

Lengths: ``150m``, ``600ft``, ``0.5km``, ``0.25mi``, ``200`` (metres).
Areas: ``0.25sqmi``, ``62500sqft``, ``1.5km2``, ``1%`` (a share of the region).
Durations: ``7d``, ``2w``, ``12h``, ``1M`` (calendar months), ``1y``.

Everything is returned in SI base units used inside the library: metres, square metres and
days (months are kept as calendar offsets because they differ in length).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from placecast.exceptions import ParameterError

__all__ = [
    "AreaBudget",
    "Duration",
    "parse_area",
    "parse_duration",
    "parse_length",
]

METRES_PER_UNIT: dict[str, float] = {
    "m": 1.0,
    "metre": 1.0,
    "metres": 1.0,
    "meter": 1.0,
    "meters": 1.0,
    "km": 1000.0,
    "ft": 0.3048,
    "feet": 0.3048,
    "foot": 0.3048,
    "usft": 1200.0 / 3937.0,
    "yd": 0.9144,
    "mi": 1609.344,
    "mile": 1609.344,
    "miles": 1609.344,
}

SQUARE_METRES_PER_UNIT: dict[str, float] = {
    "m2": 1.0,
    "sqm": 1.0,
    "km2": 1e6,
    "sqkm": 1e6,
    "ft2": 0.3048**2,
    "sqft": 0.3048**2,
    "mi2": 1609.344**2,
    "sqmi": 1609.344**2,
    "ha": 1e4,
    "acre": 4046.8564224,
    "acres": 4046.8564224,
}

_NUMBER = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*{_NUMBER}\s*([A-Za-z%0-9²]*)\s*$")


def _split(text: str, what: str, example: str) -> tuple[float, str]:
    match = _QUANTITY.match(str(text))
    if match is None:
        raise ParameterError(
            f"{what} {text!r} is not a number with a unit (e.g. {example})."
        ) from None
    return float(match.group(1)), match.group(2).replace("²", "2")


def parse_length(text: str | float, *, name: str = "length") -> float:
    """Return a length in metres.

    Parameters
    ----------
    text : str or float
        A number with an optional unit (``m`` default, ``km``, ``ft``, ``usft``, ``yd``,
        ``mi``). Numbers without a unit are metres.
    name : str
        What the length is, for the error message.

    Returns
    -------
    float
        The length in metres, strictly positive.

    Raises
    ------
    ParameterError
        If the text is not a positive number with a known unit.

    Examples
    --------
    >>> parse_length("600ft")
    182.88
    >>> parse_length("0.5km")
    500.0
    """
    if isinstance(text, int | float):
        value, unit = float(text), "m"
    else:
        value, unit = _split(text, name, "150m, 600ft, 0.5km, 0.25mi")
    factor = METRES_PER_UNIT.get(unit.lower() if unit else "m")
    if factor is None:
        known = ", ".join(sorted({"m", "km", "ft", "usft", "yd", "mi"}))
        raise ParameterError(f"{name} {text!r}: unknown unit {unit!r} (use one of {known}).")
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be a positive length.")
    return round(value * factor, 9)


@dataclass(frozen=True, slots=True)
class AreaBudget:
    """An area either in square metres or as a fraction of the region.

    Attributes
    ----------
    square_metres : float or None
        The area in square metres, or None when given as a fraction.
    fraction : float or None
        The share of the region's area (0-1], or None when given as an area.
    text : str
        What the user typed.
    """

    square_metres: float | None
    fraction: float | None
    text: str

    def resolve(self, region_area: float) -> float:
        """Return the budget in square metres for a region of ``region_area`` m²."""
        if self.square_metres is not None:
            return self.square_metres
        assert self.fraction is not None
        return self.fraction * region_area


def parse_area(text: str | float, *, name: str = "area") -> AreaBudget:
    """Parse an area (``0.25sqmi``, ``62500sqft``, ``2km2``, ``40ha``) or a share (``1%``).

    Plain numbers are square metres.

    Examples
    --------
    >>> round(parse_area("0.25sqmi").square_metres)
    647497
    >>> parse_area("1%").fraction
    0.01
    """
    if isinstance(text, int | float):
        value, unit = float(text), "m2"
    else:
        value, unit = _split(text, name, "0.25sqmi, 62500sqft, 1%")
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be positive.")
    if unit == "%":
        if value > 100:
            raise ParameterError(f"{name} {text!r}: a share of the region cannot exceed 100%.")
        return AreaBudget(None, value / 100.0, str(text))
    factor = SQUARE_METRES_PER_UNIT.get(unit.lower() if unit else "m2")
    if factor is None:
        raise ParameterError(
            f"{name} {text!r}: unknown unit {unit!r} "
            "(use sqm, sqkm, sqft, sqmi, ha, acre or a percentage such as 1%)."
        )
    return AreaBudget(value * factor, None, str(text))


@dataclass(frozen=True, slots=True)
class Duration:
    """A time span: a fixed number of days or a number of calendar months.

    Attributes
    ----------
    amount : float
        The number of ``unit``.
    unit : str
        ``"D"`` for days (hours, weeks and years are converted to days) or ``"M"``
        for calendar months.
    text : str
        What the user typed.
    """

    amount: float
    unit: str
    text: str

    def add_to(self, start: np.datetime64 | pd.Timestamp) -> pd.Timestamp:
        """Return ``start`` plus this duration (calendar months honoured)."""
        ts = pd.Timestamp(start)
        if self.unit == "M":
            return ts + pd.DateOffset(months=int(self.amount))
        return ts + pd.to_timedelta(self.amount, unit="D")

    def subtract_from(self, end: np.datetime64 | pd.Timestamp) -> pd.Timestamp:
        """Return ``end`` minus this duration (calendar months honoured)."""
        ts = pd.Timestamp(end)
        if self.unit == "M":
            return ts - pd.DateOffset(months=int(self.amount))
        return ts - pd.to_timedelta(self.amount, unit="D")

    def __str__(self) -> str:
        return self.text


_DAYS_PER_UNIT = {"d": 1.0, "day": 1.0, "days": 1.0, "h": 1 / 24, "w": 7.0, "wk": 7.0,
                  "week": 7.0, "weeks": 7.0, "y": 365.25}


def parse_duration(text: str | float, *, name: str = "duration") -> Duration:
    """Parse ``7d``, ``2w``, ``12h``, ``1M`` (calendar month), ``1y``; plain numbers are days.

    Examples
    --------
    >>> parse_duration("2w").amount
    14.0
    >>> parse_duration("3M").unit
    'M'
    """
    if isinstance(text, int | float):
        value, unit = float(text), "d"
    else:
        value, unit = _split(text, name, "7d, 2w, 1M, 12h")
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be a positive duration.")
    if unit in ("M", "mo", "month", "months"):
        if value != int(value):
            raise ParameterError(f"{name} {text!r}: months must be a whole number.")
        return Duration(value, "M", str(text))
    days = _DAYS_PER_UNIT.get(unit.lower() if unit else "d")
    if days is None:
        raise ParameterError(
            f"{name} {text!r}: unknown unit {unit!r} (use h, d, w, M for months, or y)."
        )
    return Duration(value * days, "D", str(text))
