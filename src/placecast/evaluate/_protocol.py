"""The NIJ Real-Time Crime Forecasting Challenge protocol as a preset.

The challenge (NIJ 2017) scored forecasts made on 2017-03-01 for five windows (1 week,
2 weeks, 1 month, 2 months, 3 months) over the Portland police-district union. Entries
flagged square cells of 62,500 to 360,000 sq ft (250 to 600 ft sides), 0.25 to 0.75 sq mi
in total, and were scored by PAI and PEI*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from placecast.exceptions import ParameterError
from placecast.quantities import AreaBudget, parse_area
from placecast.units import Units

__all__ = ["NIJ", "NIJProtocol", "nij_plan", "nij_settings"]

SQFT = 0.3048**2
SQMI = 1609.344**2


@dataclass(frozen=True, slots=True)
class NIJProtocol:
    """The fixed settings of the NIJ challenge.

    Attributes
    ----------
    origin : str
        Forecast date.
    horizons : tuple of str
        The five windows.
    cell_area_m2 : (float, float)
        Allowed cell areas (62,500 and 360,000 sq ft), m².
    flagged_area_m2 : (float, float)
        Allowed total flagged area (0.25 and 0.75 sq mi), m².
    """

    origin: str = "2017-03-01"
    horizons: tuple[str, ...] = ("7d", "14d", "1M", "2M", "3M")
    cell_area_m2: tuple[float, float] = (62_500 * SQFT, 360_000 * SQFT)
    flagged_area_m2: tuple[float, float] = (0.25 * SQMI, 0.75 * SQMI)

    def to_dict(self) -> dict[str, Any]:
        """Field name -> value."""
        return {"origin": self.origin, "horizons": list(self.horizons),
                "cell_area_m2": list(self.cell_area_m2),
                "flagged_area_m2": list(self.flagged_area_m2)}


#: The challenge's settings.
NIJ = NIJProtocol()


def nij_plan(protocol: str, *, start: Any = None, end: Any = None, horizon: Any = None,
             region: Any = None) -> tuple[list[str], list[str]]:
    """Check a backtest's settings against a protocol preset; return its origins and windows.

    Parameters
    ----------
    protocol : str
        The preset's name; the only one is ``"nij"`` (case and spaces ignored).
    start, end, horizon : optional
        The backtest's own origins and windows; the preset fixes them, so each must be
        None.
    region : path, optional
        The region polygon; the NIJ challenge scored over the police-district union, so
        it is required.

    Returns
    -------
    (list of str, list of str)
        The forecast origins and the windows (``["2017-03-01"]`` and the five NIJ
        windows).

    Raises
    ------
    ParameterError
        For another preset, origins or windows given as well, or no region.

    Examples
    --------
    >>> nij_plan("NIJ", region="Portland_Police_Districts.shp")
    (['2017-03-01'], ['7d', '14d', '1M', '2M', '3M'])
    """
    if protocol.strip().lower() != "nij":
        raise ParameterError(f"`protocol` {protocol!r}: the only preset is 'nij'.",
                             param="protocol")
    given = [name for name, value in (("start", start), ("end", end), ("horizon", horizon))
             if value is not None]
    if given:
        raise ParameterError("`protocol` nij fixes the origin and windows; drop "
                             + ", ".join(f"`{name}`" for name in given) + ".",
                             param=(*given, "protocol"))
    if region is None:
        raise ParameterError("`protocol` nij scores over the police-district union; pass it "
                             "as `region` (Portland_Police_Districts.shp).",
                             param=("region", "protocol"))
    return [NIJ.origin], list(NIJ.horizons)


def nij_settings(units: Units, area: str | float | AreaBudget | None = None) -> float:
    """Check ``units`` and an area budget against the NIJ rules; return the budget in m².

    Parameters
    ----------
    units : Units
        Must be a square grid whose cell area is within 62,500-360,000 sq ft.
    area : str, float or AreaBudget, optional
        Flagged-area budget. Default: the fewest whole cells covering 0.25 sq mi (cells
        are taken without exceeding the budget, so a plain ``0.25sqmi`` with 600 ft cells
        would flag 19 cells = 0.245 sq mi, below the NIJ minimum).

    Returns
    -------
    float
        The budget in m²; the area actually flagged lies within 0.25-0.75 sq mi.

    Raises
    ------
    ParameterError
        If the units are not square cells of an allowed size, or the flagged area would
        fall outside 0.25-0.75 sq mi.
    """
    low_cell, high_cell = NIJ.cell_area_m2
    low_area, high_area = NIJ.flagged_area_m2
    if units.kind != "grid" or units.grid is None:
        raise ParameterError("`protocol` nij scores square grid cells: pass `units` as a "
                             "square grid with `cell_size` between 250ft and 600ft.",
                             param=("units", "cell_size", "protocol"))
    cell_area = units.grid.cell_size**2
    if not low_cell * (1 - 1e-6) <= cell_area <= high_cell * (1 + 1e-6):
        side_ft = units.grid.cell_size / 0.3048
        raise ParameterError(
            f"`protocol` nij allows cells of 62,500 to 360,000 sq ft (250 to 600 ft sides); "
            f"`cell_size` gives {cell_area / SQFT:,.0f} sq ft ({side_ft:.0f} ft). Pass e.g. "
            "600ft as `cell_size`.", param=("cell_size", "protocol")
        )
    if area is None:
        n_cells = int(np.ceil(low_area / cell_area - 1e-9))
        return float(n_cells * cell_area)
    budget = area if isinstance(area, AreaBudget) else parse_area(area, name="area")
    square_metres = budget.resolve(units.region_area)
    n_cells = int(np.floor(square_metres / cell_area * (1 + 1e-9)))
    flagged = n_cells * cell_area
    if not low_area * (1 - 1e-9) <= flagged <= high_area * (1 + 1e-9):
        fewest = int(np.ceil(low_area / cell_area - 1e-9))
        most = int(np.floor(high_area / cell_area + 1e-9))
        raise ParameterError(
            f"`protocol` nij needs 0.25 to 0.75 sq mi flagged; `area` {budget.text} flags "
            f"{n_cells} cells = {flagged / SQMI:.4f} sq mi. With these cells pass an `area` "
            f"between {fewest * cell_area / SQMI:.4f}sqmi ({fewest} cells) and "
            f"{most * cell_area / SQMI:.4f}sqmi ({most} cells), or leave it out.",
            param=("area", "protocol")
        )
    return float(square_metres)
