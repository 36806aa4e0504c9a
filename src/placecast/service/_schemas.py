"""Request bodies and parameter patterns: every text the API accepts is checked here.

Patterns allow only the characters a value of that kind needs (no quotes, semicolons or
comment markers anywhere), so a malformed or SQL-ish value is refused with 422 before any
work is done; the store only ever sees values as bound SQL parameters anyway.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

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
LENGTH = r"^[0-9]+(?:\.[0-9]+)?\s?(?:m|km|ft|mi)?$"
DURATION = r"^[0-9]+(?:\.[0-9]+)?\s?[A-Za-z]{1,7}$"
AREA = r"^[0-9]+(?:\.[0-9]+)?\s?(?:%|[A-Za-z0-9²]{1,6})$"
DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2})?)?$"
MODEL = r"^[a-z][a-z0-9_]{0,31}$"
PARAM = r"^[a-z][a-z0-9_]{0,31}$"

DatasetName = Annotated[str, Field(pattern=NAME, max_length=128,
                                   description="Dataset name: letters, digits, '_.-'.")]
Category = Annotated[str, Field(pattern=CATEGORY, max_length=100)]
ColumnName = Annotated[str, Field(pattern=COLUMN, max_length=64)]
TimeColumn = Annotated[str, Field(pattern=TIME_COLUMN, max_length=129)]
Crs = Annotated[str, Field(pattern=CRS, max_length=16, examples=["EPSG:2913"])]
TimeFormat = Annotated[str, Field(pattern=TIME_FORMAT, max_length=40)]
Timezone = Annotated[str, Field(pattern=TIMEZONE, max_length=64)]
LengthText = Annotated[str, Field(pattern=LENGTH, max_length=16, examples=["600ft", "150m"])]
DurationText = Annotated[str, Field(pattern=DURATION, max_length=16, examples=["7d", "1M"])]
Area = Annotated[str, Field(pattern=AREA, max_length=16, examples=["1%", "0.25sqmi"])]
DateText = Annotated[str, Field(pattern=DATE, max_length=19, examples=["2017-03-01"])]
ModelName = Annotated[str, Field(pattern=MODEL, max_length=32, examples=["kde"])]
ParamName = Annotated[str, Field(pattern=PARAM, max_length=32)]
ParamValue = StrictBool | StrictInt | StrictFloat
AlertId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$")]
JobId = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]


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
    model_params: dict[ParamName, ParamValue] | None = Field(default=None, max_length=10)


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
