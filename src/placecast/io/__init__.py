"""Readers and writers.

Events from CSV/Parquet/vector files; forecasts to CSV/GPKG/GeoParquet/GeoJSON; exports
for GIS tools and the NIJ format. ``io`` is a leaf: it imports no other placecast stage.
SaTScan's files are read and written next to the scan, by :mod:`placecast.clusters`
(``read_satscan``, ``read_satscan_parameters``, ``write_satscan_files``,
``write_satscan_report``); the old names ``placecast.io.read_satscan`` etc. still work
but warn (``DeprecationWarning``) and are the only reference from ``io`` to another
stage, made on first use of a deprecated name.
"""

import warnings
from typing import Any

from placecast.io._events import (
    ColumnMap,
    choose_local_crs,
    read_events,
    read_table_header,
    spatial_reference_for,
)
from placecast.io._export import export_events, export_forecast
from placecast.io._forecast import FORECAST_FORMATS, write_forecast

__all__ = [
    "FORECAST_FORMATS",
    "ColumnMap",
    "choose_local_crs",
    "export_events",
    "export_forecast",
    "read_events",
    "read_table_header",
    "spatial_reference_for",
    "write_forecast",
]

#: Deprecated aliases of the SaTScan adapter, which moved to ``placecast.clusters``.
_MOVED_TO_CLUSTERS = ("read_satscan", "read_satscan_parameters", "write_satscan_files",
                      "write_satscan_report")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_CLUSTERS:
        warnings.warn(f"placecast.io.{name} moved to placecast.clusters.{name}; import it "
                      "from there (the old name will be removed).", DeprecationWarning,
                      stacklevel=2)
        import placecast.clusters

        return getattr(placecast.clusters, name)
    raise AttributeError(f"module 'placecast.io' has no attribute {name!r}")
