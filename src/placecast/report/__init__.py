"""Offline HTML reports: the forecast map, backtest plots and tables in one file.

>>> import pathlib, tempfile
>>> from placecast import UnitSpec, read_events, run_forecast
>>> from placecast.datasets import portland_burglary_path, portland_region_path
>>> from placecast.report import write_report
>>> events = read_events(portland_burglary_path(), crs="EPSG:2913")
>>> forecast = run_forecast(events, model="kde", at="2017-03-01", horizon="7d",
...                         unit_spec=UnitSpec(cell_size=182.88, region=portland_region_path()))
>>> path = write_report(pathlib.Path(tempfile.mkdtemp()) / "report.html", forecast,
...                     events=events, area="0.25sqmi")
>>> "leaflet" in path.read_text().lower()
True

``public=True`` makes a report for sharing: counts only for areas of at least ``k``
events and no event points (see :mod:`placecast.report._privacy`).
"""

from placecast.report._backtest import (
    backtest_tables,
    format_difference,
    format_p,
    format_value,
    render_backtest_html,
)
from placecast.report._html import (
    BACKTEST_COLUMNS,
    build_report,
    compare_models,
    render_markdown,
    write_report,
)
from placecast.report._maplayers import (
    Basemap,
    ReferenceLayer,
    read_basemap,
    read_reference_layer,
)
from placecast.report._privacy import DEFAULT_K, PublicAreas, check_k, public_areas

__all__ = [
    "BACKTEST_COLUMNS",
    "Basemap",
    "DEFAULT_K",
    "PublicAreas",
    "ReferenceLayer",
    "backtest_tables",
    "build_report",
    "check_k",
    "compare_models",
    "format_difference",
    "format_p",
    "format_value",
    "public_areas",
    "read_basemap",
    "read_reference_layer",
    "render_backtest_html",
    "render_markdown",
    "write_report",
]
