"""Offline HTML reports: the forecast map, backtest plots and tables in one file.

>>> from placecast.report import build_report, write_report  # doctest: +SKIP
>>> write_report("report.html", forecast, events=events, area="0.25sqmi")  # doctest: +SKIP

``public=True`` makes a report for sharing: counts only for areas of at least ``k``
events and no event points (see :mod:`placecast.report._privacy`).
"""

from placecast.report._html import BACKTEST_COLUMNS, build_report, compare_models, write_report
from placecast.report._privacy import DEFAULT_K, PublicAreas, public_areas

__all__ = [
    "BACKTEST_COLUMNS",
    "DEFAULT_K",
    "PublicAreas",
    "build_report",
    "compare_models",
    "public_areas",
    "write_report",
]
