"""Early warning: space-time permutation scan, near-repeat (Knox) analysis, emerging hot spots."""

from placecast.clusters._emerging import (
    PATTERNS,
    EmergingHotSpotResult,
    SpaceTimeCube,
    emerging_hot_spots,
    mann_kendall,
)
from placecast.clusters._knox import KnoxResult, NearRepeatResult, knox_test, near_repeat
from placecast.clusters._scan import (
    EARTH_RADIUS_KM,
    ScanCluster,
    ScanData,
    ScanResult,
    SpaceTimeScan,
    scan_data_from_events,
)

__all__ = [
    "EARTH_RADIUS_KM",
    "PATTERNS",
    "EmergingHotSpotResult",
    "KnoxResult",
    "NearRepeatResult",
    "ScanCluster",
    "ScanData",
    "ScanResult",
    "SpaceTimeCube",
    "SpaceTimeScan",
    "emerging_hot_spots",
    "knox_test",
    "mann_kendall",
    "near_repeat",
    "scan_data_from_events",
]
