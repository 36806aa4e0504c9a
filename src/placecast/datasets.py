"""Paths to the small sample data shipped with placecast."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["PORTLAND_CRS", "portland_burglary_path", "portland_region_path"]

#: CRS of the Portland sample (Oregon North, international feet).
PORTLAND_CRS = "EPSG:2913"


def _data_file(*parts: str) -> Path:
    return Path(str(resources.files("placecast").joinpath("data", *parts)))


def portland_burglary_path() -> Path:
    """The bundled Portland burglary CSV (5,364 events, 2012-03 .. 2017-05, EPSG:2913)."""
    return _data_file("portland", "burglary.csv")


def portland_region_path() -> Path:
    """The bundled Portland police-district shapefile (the NIJ forecast region)."""
    return _data_file("portland", "Portland_Police_Districts.shp")
