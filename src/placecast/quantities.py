"""Parse lengths, areas and durations with units, as users type them on the command line.

Lengths: ``150m``, ``600ft``, ``0.5km``, ``0.25mi``.
Areas: ``0.25sqmi``, ``62500sqft``, ``1.5km2``, ``1%`` (a share of the region).
Durations: ``7d``, ``2w``, ``12h``, ``30min``, ``1M`` (calendar months), ``1y``.

Everything is returned in SI base units used inside the library: metres, square metres and
days (months are kept as calendar offsets because they differ in length).

Text must carry its unit: ``"600"`` could be feet or metres, ``"7"`` days or weeks, so a
bare number in text is refused with a message saying how to write it. Python numbers
(``int``/``float``) are taken in the library's units by contract: metres for lengths,
square metres for areas, days for durations.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from placecast.exceptions import ParameterError, cite

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


def _number_text(value: float) -> str:
    return f"{value:g}"


def _split(text: object, what: str, example: str,
           params: tuple[str, ...] = ()) -> tuple[float, str]:
    match = _QUANTITY.match(str(text))
    if match is None:
        raise ParameterError(
            f"{what} {text!r} is not a number with a unit (e.g. {example}).", param=params
        ) from None
    return float(match.group(1)), match.group(2).replace("²", "2")


def parse_length(text: str | float, *, name: str | None = None) -> float:
    """Return a length in metres.

    Parameters
    ----------
    text : str or float
        Text with a unit (``m``, ``km``, ``ft``, ``usft``, ``yd``, ``mi``), or a Python
        number, which is metres.
    name : str, optional
        The parameter the length is given for, by Python name (``"cell_size"``): messages
        name it in backticks and the error's ``param`` is it. Default: the word "length".

    Returns
    -------
    float
        The length in metres, strictly positive.

    Raises
    ------
    ParameterError
        If the text is not a positive number with a known unit, or has no unit.

    Examples
    --------
    >>> parse_length("600ft")
    182.88
    >>> parse_length("0.5km")
    500.0
    >>> parse_length(200.0)
    200.0
    """
    name, params = cite(name, "length")
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), "m"
    else:
        value, unit = _split(text, name, "150m, 600ft, 0.5km, 0.25mi", params)
        if not unit:
            raise ParameterError(
                f"{name} {text!r} has no unit, and a bare number could be feet or metres: "
                f"write it with one, e.g. {_number_text(value)}m, {_number_text(value)}ft "
                "or 1km (units: m, km, ft, usft, yd, mi).", param=params
            )
    factor = METRES_PER_UNIT.get(unit.lower())
    if factor is None:
        known = ", ".join(sorted({"m", "km", "ft", "usft", "yd", "mi"}))
        raise ParameterError(f"{name} {text!r}: unknown unit {unit!r} (use one of {known}).",
                             param=params)
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be a positive length.", param=params)
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


def parse_area(text: str | float, *, name: str | None = None) -> AreaBudget:
    """Parse an area (``0.25sqmi``, ``62500sqft``, ``2km2``, ``40ha``) or a share (``1%``).

    Python numbers are square metres; text needs a unit. ``name`` is the parameter the area
    is given for, by Python name (messages name it in backticks; the error's ``param``).

    Examples
    --------
    >>> round(parse_area("0.25sqmi").square_metres)
    647497
    >>> parse_area("1%").fraction
    0.01
    """
    name, params = cite(name, "area")
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), "m2"
    else:
        value, unit = _split(text, name, "0.25sqmi, 62500sqft, 1%", params)
        if not unit:
            raise ParameterError(
                f"{name} {text!r} has no unit: write it with one, e.g. 0.25sqmi, "
                "62500sqft, 1km2, 40ha, or a share of the region such as 1%.", param=params
            )
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be positive.", param=params)
    if unit == "%":
        if value > 100:
            raise ParameterError(f"{name} {text!r}: a share of the region cannot exceed 100%.",
                                 param=params)
        return AreaBudget(None, value / 100.0, str(text))
    factor = SQUARE_METRES_PER_UNIT.get(unit.lower())
    if factor is None:
        raise ParameterError(
            f"{name} {text!r}: unknown unit {unit!r} "
            "(use sqm, sqkm, sqft, sqmi, ha, acre or a percentage such as 1%).", param=params
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
        ``"D"`` for days (seconds, minutes, hours, weeks and years are converted to days)
        or ``"M"`` for calendar months.
    text : str
        What the user typed.
    """

    amount: float
    unit: str
    text: str

    @property
    def days(self) -> float:
        """The length in days (a month counts as 365.25 / 12 days)."""
        return self.amount * (365.25 / 12 if self.unit == "M" else 1.0)

    def add_to(self, start: np.datetime64 | pd.Timestamp) -> pd.Timestamp:
        """Return ``start`` plus this duration (calendar months honoured).

        Raises
        ------
        ParameterError
            If the result falls outside the dates placecast can hold (1678-2261).
        """
        return self._shift(start, +1)

    def subtract_from(self, end: np.datetime64 | pd.Timestamp) -> pd.Timestamp:
        """Return ``end`` minus this duration (calendar months honoured).

        Raises
        ------
        ParameterError
            If the result falls outside the dates placecast can hold (1678-2261).
        """
        return self._shift(end, -1)

    def _shift(self, moment: np.datetime64 | pd.Timestamp, sign: int) -> pd.Timestamp:
        ts = pd.Timestamp(moment)
        try:
            if self.unit == "M":
                out = ts + sign * pd.DateOffset(months=int(self.amount))
            else:
                out = ts + sign * pd.to_timedelta(self.amount, unit="D")
        except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime,
                pd.errors.OutOfBoundsTimedelta):
            out = None
        if out is None or not (_FIRST_DATE <= out < _LAST_DATE):
            raise ParameterError(
                f"{self.text} {'after' if sign > 0 else 'before'} {ts} falls outside the "
                "dates placecast can hold (1678 to 2261); use a shorter duration."
            )
        return out

    def __str__(self) -> str:
        return self.text


#: The dates datetime64[ns] can hold, rounded inwards to whole days.
_FIRST_DATE = pd.Timestamp("1677-09-22")
_LAST_DATE = pd.Timestamp("2262-04-11")

_DAYS_PER_UNIT = {"d": 1.0, "day": 1.0, "days": 1.0, "h": 1 / 24, "hr": 1 / 24,
                  "hour": 1 / 24, "hours": 1 / 24, "min": 1 / 1440, "s": 1 / 86400,
                  "sec": 1 / 86400, "w": 7.0, "wk": 7.0, "week": 7.0, "weeks": 7.0,
                  "y": 365.25, "yr": 365.25, "year": 365.25, "years": 365.25}
_MONTHS = ("M", "mo", "month", "months")


def parse_duration(text: str | float, *, name: str | None = None,
                   bare: str | None = None) -> Duration:
    """Parse ``7d``, ``2w``, ``12h``, ``30min``, ``45s``, ``1M`` (calendar months), ``1y``.

    Parameters
    ----------
    text : str or float
        Text with a unit, or a Python number, which is days.
    name : str, optional
        The parameter the duration is given for, by Python name (``"horizon"``): messages
        name it in backticks and the error's ``param`` is it. Default: the word "duration".
    bare : str, optional
        The unit of a bare number in text (``"d"`` for an option whose name already says
        days, such as ``max_days``). Without it a bare number is refused, because ``7``
        could be days, weeks or hours.

    Returns
    -------
    Duration
        Months stay calendar months (``unit="M"``); everything else becomes days.

    Raises
    ------
    ParameterError
        If the text is not a positive number with a known unit, has no unit (and ``bare``
        is not given), gives months that are not whole, or is longer than 1,000 years.

    Examples
    --------
    >>> parse_duration("2w").amount
    14.0
    >>> parse_duration("3M").unit
    'M'
    >>> parse_duration("14", name="max_days", bare="d").amount
    14.0
    """
    name, params = cite(name, "duration")
    if isinstance(text, int | float) and not isinstance(text, bool):
        value, unit = float(text), "d"
    else:
        value, unit = _split(text, name, "7d, 2w, 1M, 12h", params)
        if not unit:
            if bare is None:
                shown = _number_text(value)
                raise ParameterError(
                    f"{name} {text!r} has no unit, and a bare number could be days, weeks "
                    f"or hours: write it with one, e.g. {shown}d, {shown}w, {shown}h or "
                    f"{shown}M for calendar months.", param=params
                )
            unit = bare
    if not np.isfinite(value) or value <= 0:
        raise ParameterError(f"{name} {text!r} must be a positive duration.", param=params)
    if unit in _MONTHS:
        if value != int(value):
            raise ParameterError(f"{name} {text!r}: months must be a whole number.", param=params)
        if value > 12_000:
            raise ParameterError(f"{name} {text!r} is longer than 1,000 years.", param=params)
        return Duration(value, "M", str(text))
    days = _DAYS_PER_UNIT.get(unit if unit == "min" else unit.lower())
    if days is None:
        hint = " ('m' is ambiguous: write min for minutes or M for months)" if unit == "m" \
            else ""
        raise ParameterError(
            f"{name} {text!r}: unknown unit {unit!r}{hint} (use s, min, h, d, w, M for "
            "months, or y).", param=params
        )
    if value * days > 365_250:
        raise ParameterError(f"{name} {text!r} is longer than 1,000 years.", param=params)
    return Duration(value * days, "D", str(text))
