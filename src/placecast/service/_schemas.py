"""Request bodies and parameter patterns: every value the API accepts is checked here.

Patterns allow only the characters a value of that kind needs (no quotes, semicolons or
comment markers anywhere), so a malformed or SQL-ish value is refused with 422 before any
work is done; the store only ever sees values as bound SQL parameters anyway.

Every number is range-checked too, so no value can reach an overflow deep inside the
work (a 500): lengths 1 m - 1000 km, durations 1 hour - 10 years, dates in 1700-2200,
areas up to 1,000,000 km², model parameters within ``MODEL_PARAM_BOUNDS``, and the whole
span a backtest, audit, scan or hot spot cube covers (steps x count + horizon) within 100
years. A refusal is a 422 whose message names the field.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    model_validator,
)

from placecast.exceptions import PlacecastError

__all__ = [
    "AREA",
    "AlertId",
    "Area",
    "AuditRequest",
    "BacktestRequest",
    "Category",
    "ColumnName",
    "Crs",
    "DatasetName",
    "DateText",
    "DurationText",
    "ForecastRequest",
    "HotSpotRequest",
    "JobId",
    "LengthText",
    "MODEL_PARAM_BOUNDS",
    "ModelName",
    "ScanRequest",
    "TimeColumn",
    "TimeFormat",
    "Timezone",
]

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
CATEGORY = r"^[A-Za-z0-9][A-Za-z0-9 _.,&()/+\-]{0,99}$"
COLUMN = r"^[A-Za-z_][A-Za-z0-9_ .\-]{0,63}$"
TIME_COLUMN = r"^[A-Za-z_][A-Za-z0-9_ .\-]{0,63}(,[A-Za-z_][A-Za-z0-9_ .\-]{0,63})?$"
CRS = r"^(?:(?:EPSG|epsg):[0-9]{3,6}|local:(?:m|km|ft))$"
TIME_FORMAT = r"^[%A-Za-z0-9 :/.,T\-]{1,40}$"
TIMEZONE = r"^(?:UTC|[A-Z][A-Za-z_]+(?:/[A-Za-z0-9_+\-]+){1,2})$"
LENGTH = r"^[0-9]+(?:\.[0-9]+)?\s?(?:m|km|ft|mi)$"  # a unit is required: 600ft, 150m
DURATION = r"^[0-9]+(?:\.[0-9]+)?\s?[A-Za-z]{1,7}$"
AREA = r"^[0-9]+(?:\.[0-9]+)?\s?(?:%|[A-Za-z0-9²]{1,6})$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?$"
MODEL = r"^[a-z][a-z0-9_]{0,31}$"
PARAM = r"^[a-z][a-z0-9_]{0,31}$"

#: Ranges the service accepts.
MIN_LENGTH_M, MAX_LENGTH_M = 1.0, 1_000_000.0
MIN_DURATION_DAYS, MAX_DURATION_DAYS = 1 / 24, 3653.0
MAX_SPAN_DAYS = 36525.0
MIN_YEAR, MAX_YEAR = 1700, 2200
MAX_AREA_M2 = 1e12
#: Model parameter name -> (low, high, integer?): low < value <= high for reals
#: (low <= value <= high for integers). Names not listed: finite, |value| <= 1e6.
MODEL_PARAM_BOUNDS: dict[str, tuple[float, float, bool]] = {
    **{name: (0.0, MAX_LENGTH_M, False) for name in (
        "bandwidth", "background_bandwidth", "distance_cutoff", "distance_unit",
        "cell_size", "sigma_min", "sigma_init")},
    **{name: (0.0, MAX_SPAN_DAYS, False) for name in (
        "lookback_days", "time_bandwidth_days", "time_unit_days", "time_cutoff")},
    "time_decay": (0.0, 1e6, False),
    "theta_init": (0.0, 1e6, False),
    "omega_init": (0.0, 1e6, False),
    "tol": (0.0, 1.0, False),
    "max_iter": (1, 1000, True),
    "background_updates": (1, 1000, True),
    "background_neighbours": (1, 1000, True),
    "random_state": (0, 2**31 - 1, True),
}


def _problem(exc: Exception) -> ValueError:
    return ValueError(str(exc))


def _check_length(text: str) -> str:
    from placecast.quantities import parse_length

    try:
        metres = parse_length(text)
    except PlacecastError as exc:
        raise _problem(exc) from None
    if not MIN_LENGTH_M <= metres <= MAX_LENGTH_M:
        raise ValueError(f"{text!r} is outside 1m - 1000km.")
    return text


def duration_days(text: str) -> float:
    """The length of a duration in days (a calendar month counts as 31 days)."""
    from placecast.quantities import parse_duration

    duration = parse_duration(text)
    return duration.amount * 31.0 if duration.unit == "M" else duration.amount


def _check_duration(text: str) -> str:
    try:
        days = duration_days(text)
    except PlacecastError as exc:
        raise _problem(exc) from None
    if not MIN_DURATION_DAYS * (1 - 1e-9) <= days <= MAX_DURATION_DAYS:
        raise ValueError(f"{text!r} is outside 1 hour - 10 years (e.g. 7d, 2w, 1M).")
    return text


def _check_area(text: str) -> str:
    from placecast.quantities import parse_area

    try:
        budget = parse_area(text)
    except PlacecastError as exc:
        raise _problem(exc) from None
    if budget.square_metres is not None and budget.square_metres > MAX_AREA_M2:
        raise ValueError(f"{text!r} is larger than 1,000,000 km²; use a share such as 1%.")
    return text


def _check_date(text: str) -> str:
    try:
        day = date.fromisoformat(text[:10])
        if len(text) > 10:
            hour, minute = int(text[11:13]), int(text[14:16])
            second = int(text[17:19]) if len(text) > 16 else 0
            if hour > 23 or minute > 59 or second > 59:
                raise ValueError
    except ValueError:
        raise ValueError(f"{text!r} is not a valid date and time (e.g. 2017-03-01 or "
                         "2017-03-01T08:00).") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"{text!r}: the year must be within {MIN_YEAR}-{MAX_YEAR}.")
    return text


def _check_params(params: dict[str, Any] | None) -> dict[str, Any] | None:
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            if name in MODEL_PARAM_BOUNDS:
                raise ValueError(f"{name}: {value!r} is not a number.")
            continue
        low, high, integer = MODEL_PARAM_BOUNDS.get(name, (-1e6, 1e6, False))
        if not math.isfinite(float(value)):
            raise ValueError(f"{name}: {value!r} is not a finite number.")
        if integer and (not isinstance(value, int) or not low <= value <= high):
            raise ValueError(f"{name}: {value!r} must be a whole number in {low}-{high}.")
        if not integer and not (low < value <= high if name in MODEL_PARAM_BOUNDS
                                else low <= value <= high):
            raise ValueError(f"{name}: {value!r} must be in ({low:g}, {high:g}].")
    return params


DatasetName = Annotated[str, Field(pattern=NAME, max_length=128,
                                   description="Dataset name: letters, digits, '_.-'.")]
Category = Annotated[str, Field(pattern=CATEGORY, max_length=100)]
ColumnName = Annotated[str, Field(pattern=COLUMN, max_length=64)]
TimeColumn = Annotated[str, Field(pattern=TIME_COLUMN, max_length=129)]
Crs = Annotated[str, Field(pattern=CRS, max_length=16, examples=["EPSG:2913"])]
TimeFormat = Annotated[str, Field(pattern=TIME_FORMAT, max_length=40)]
Timezone = Annotated[str, Field(pattern=TIMEZONE, max_length=64)]
LengthText = Annotated[str, Field(pattern=LENGTH, max_length=16, examples=["600ft", "150m"]),
                       AfterValidator(_check_length)]
DurationText = Annotated[str, Field(pattern=DURATION, max_length=16, examples=["7d", "1M"]),
                         AfterValidator(_check_duration)]
Area = Annotated[str, Field(pattern=AREA, max_length=16, examples=["1%", "0.25sqmi"]),
                 AfterValidator(_check_area)]
DateText = Annotated[str, Field(pattern=DATE, max_length=19, examples=["2017-03-01"]),
                     AfterValidator(_check_date)]
ModelName = Annotated[str, Field(pattern=MODEL, max_length=32, examples=["kde"])]
ParamName = Annotated[str, Field(pattern=PARAM, max_length=32)]
ParamValue = StrictBool | StrictInt | StrictFloat
AlertId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


def _check_span(steps: str, count: int, extra: list[str], what: str) -> None:
    days = duration_days(steps) * count + max((duration_days(e) for e in extra), default=0)
    if days > MAX_SPAN_DAYS:
        raise ValueError(f"{what} cover {days / 365.25:,.0f} years, more than 100; use a "
                         "shorter step or fewer of them.")


def _check_order(start: str | None, end: str | None) -> None:
    if start is not None and end is not None and start > end:
        raise ValueError(f"start {start!r} is after end {end!r}; swap them.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ForecastRequest(_Strict):
    """Run a forecast on a dataset and save it."""

    dataset: DatasetName
    model: ModelName = "kde"
    category: list[Category] | None = Field(default=None, max_length=20)
    cell_size: LengthText = "150m"
    horizon: DurationText = "7d"
    at: DateText | None = Field(default=None, description="Window start; default the end "
                                "of the data.")
    area: Area = Field(default="1%", description="Flagged-area budget.")
    name: DatasetName | None = None
    model_params: Annotated[dict[ParamName, ParamValue] | None,
                            AfterValidator(_check_params)] = Field(default=None, max_length=10)
    explain: bool = Field(default=False, description="Keep, per unit, the features that "
                          "raised its forecast most (models that can explain: boost); "
                          "the GeoJSON then carries reason_1..3 and effect_1..3.")


class BacktestRequest(_Strict):
    """Start a rolling-origin backtest job."""

    dataset: DatasetName
    models: list[ModelName] = Field(default=["naive", "kde"], min_length=1, max_length=4)
    category: list[Category] | None = Field(default=None, max_length=20)
    cell_size: LengthText = "150m"
    horizons: list[DurationText] = Field(default=["7d"], min_length=1, max_length=3)
    start: DateText | None = Field(default=None, description="First origin; default "
                                   "n_origins steps before the end of the data.")
    end: DateText | None = Field(default=None, description="Last possible origin; default "
                                 "the end of the data less the longest horizon.")
    step: DurationText = "7d"
    n_origins: int = Field(default=8, ge=1, le=104)
    area: Area = "1%"

    @model_validator(mode="after")
    def _span(self) -> BacktestRequest:
        _check_span(self.step, self.n_origins - 1, list(self.horizons),
                    "step x (n_origins - 1) + the longest horizon")
        _check_order(self.start, self.end)
        return self


class ScanRequest(_Strict):
    """Start a prospective space-time permutation scan job (SaTScan's model)."""

    dataset: DatasetName
    category: list[Category] | None = Field(default=None, max_length=20)
    cell_size: LengthText = Field(default="500m", description="Events are located at the "
                                  "centroids of grid cells of this size.")
    at: DateText | None = Field(default=None, description="Analysis time; default the end "
                                "of the data.")
    interval: DurationText = "1d"
    n_intervals: int = Field(default=60, ge=2, le=730)
    max_share: float = Field(default=0.5, gt=0.0, le=0.5)
    max_radius: LengthText | None = None
    n_permutations: int = Field(default=99, ge=9, le=999)
    random_state: int = Field(default=0, ge=0, le=2**31 - 1000)
    randomization: Literal["numpy", "satscan"] = Field(
        default="numpy", description="Replications: independent NumPy permutations, or "
        "SaTScan's own generator and seeds (reproduces SaTScan's p-values).")
    p_values: Literal["monte_carlo", "satscan_default", "gumbel"] = Field(
        default="monte_carlo", description="Monte Carlo ranks, SaTScan's default "
        "combination (Gumbel for clusters fewer than 9 replications beat) or Gumbel.")
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0, description="Clusters with p <= "
                         "alpha raise alerts.")

    @model_validator(mode="after")
    def _span(self) -> ScanRequest:
        _check_span(self.interval, self.n_intervals, [], "interval x n_intervals")
        return self


class HotSpotRequest(_Strict):
    """Start an emerging hot spot analysis job (Gi* + Mann-Kendall over a cube)."""

    dataset: DatasetName
    category: list[Category] | None = Field(default=None, max_length=20)
    cell_size: LengthText = "500m"
    step: DurationText = "7d"
    n_steps: int = Field(default=12, ge=2, le=104)
    distance: LengthText = Field(default="1000m", description="Neighbourhood radius.")
    time_steps: int = Field(default=1, ge=0, le=12)
    alpha: float = Field(default=0.1, gt=0.0, lt=1.0)
    fdr: bool = True

    @model_validator(mode="after")
    def _span(self) -> HotSpotRequest:
        _check_span(self.step, self.n_steps, [], "step x n_steps")
        return self


class AuditRequest(_Strict):
    """Start an exposure audit job: where one model's flags fell over a backtest."""

    dataset: DatasetName
    model: ModelName = "kde"
    category: list[Category] | None = Field(default=None, max_length=20)
    cell_size: LengthText = "150m"
    horizon: DurationText = "7d"
    start: DateText | None = None
    end: DateText | None = None
    step: DurationText = "7d"
    n_origins: int = Field(default=8, ge=2, le=104)
    area: Area = "1%"
    factor: float = Field(default=2.0, gt=1.0, le=100.0)

    @model_validator(mode="after")
    def _span(self) -> AuditRequest:
        _check_span(self.step, self.n_origins - 1, [self.horizon],
                    "step x (n_origins - 1) + horizon")
        _check_order(self.start, self.end)
        return self
