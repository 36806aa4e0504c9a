"""Early warning: space-time scans, near-repeat (Knox) analysis, emerging hot spots, alerts.

The SaTScan adapter (``.prm``/``.cas``/``.ctl``/``.pop``/``.geo`` files and the text
report) lives here, next to the scan. Clusters become :class:`Alert` objects with one id
(:func:`alert_id`); where alerts go is :mod:`placecast.alerting`'s business.
"""

from placecast.clusters._alerts import (
    ALERT_ID_LENGTH,
    ALERT_PATTERNS,
    Alert,
    alert_id,
    hotspot_alerts,
    scan_alerts,
)
from placecast.clusters._emerging import (
    PATTERNS,
    EmergingHotSpotResult,
    SpaceTimeCube,
    emerging_hot_spots,
    mann_kendall,
)
from placecast.clusters._hotspots_file import HOTSPOT_FORMATS, read_hotspots, write_hotspots
from placecast.clusters._knox import (
    KnoxResult,
    NearRepeatResult,
    band_edges,
    knox_test,
    near_repeat,
)
from placecast.clusters._satscan import (
    SatscanRun,
    format_satscan_report,
    read_satscan,
    read_satscan_parameters,
    satscan_input_files,
    write_satscan_files,
    write_satscan_report,
)
from placecast.clusters._scan import SpaceTimeScan
from placecast.clusters._scan_data import EARTH_RADIUS_KM, ScanData, scan_data_from_events
from placecast.clusters._scan_result import ScanCluster, ScanResult

__all__ = [
    "ALERT_ID_LENGTH",
    "ALERT_PATTERNS",
    "EARTH_RADIUS_KM",
    "HOTSPOT_FORMATS",
    "PATTERNS",
    "Alert",
    "EmergingHotSpotResult",
    "KnoxResult",
    "NearRepeatResult",
    "SatscanRun",
    "ScanCluster",
    "ScanData",
    "ScanResult",
    "SpaceTimeCube",
    "SpaceTimeScan",
    "alert_id",
    "band_edges",
    "emerging_hot_spots",
    "format_satscan_report",
    "hotspot_alerts",
    "knox_test",
    "mann_kendall",
    "near_repeat",
    "read_hotspots",
    "read_satscan",
    "read_satscan_parameters",
    "satscan_input_files",
    "scan_alerts",
    "scan_data_from_events",
    "write_hotspots",
    "write_satscan_files",
    "write_satscan_report",
]
