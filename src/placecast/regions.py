"""Many regions at once: events partitioned by region, one task per region, one table.

A nation's events are split into regions (by a region column of the events, or by the
polygon holding each event), written as GeoParquet with hive partitions
(``<folder>/region=<name>/part-00000.parquet``) and read back one region at a time with the
filter pushed down to ``pyarrow.dataset`` (a worker touches only its own files). A job
(``backtest``, ``forecast`` or ``scan``) then runs once per region, serially in this process
or as one task per region on a Dask cluster; each task reads its region, builds its own
area units over the region (the region polygon when polygons were given, else the events'
hull), runs the ordinary library function and returns a small table. The tables are joined
into one with a ``region`` column first. Regions are independent, so nothing is shuffled
between workers and the result does not depend on where or in which order regions run.

Dask (``distributed``) is optional: ``pip install 'placecast[dask]'``.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from placecast._progress import ProgressCallback
from placecast.events import Events, SpatialReference
from placecast.exceptions import DataError, ParameterError, PlacecastError, cite
from placecast.pipeline import UnitSpec, check_events_in_units
from placecast.units import Units, default_region, hex_grid, square_grid

__all__ = [
    "JOBS",
    "WORKER_ENV",
    "PartitionInfo",
    "RegionSplit",
    "is_partitioned",
    "local_cluster",
    "partition_info",
    "read_partition",
    "region_units",
    "regions_from_labels",
    "regions_from_polygons",
    "read_store_region",
    "run_by_region",
    "split_events",
    "store_regions",
    "write_partitioned",
]

#: The jobs ``run_by_region`` runs per region.
JOBS = ("backtest", "forecast", "scan")

#: Environment for the Dask worker processes of :func:`local_cluster`. Dask's nanny sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which also turns off glibc's adaptive mmap threshold:
#: every array over 128 KiB is then mapped and unmapped afresh, and a region's backtest
#: (many per-origin temporaries) ran 2-4x slower than in a plain process. These values
#: keep arrays under 16 MiB on the heap and return memory above 256 MiB of free heap. Give
#: the same to the workers of a real cluster (``distributed.nanny.pre-spawn-environ``).
WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(2**28), "MALLOC_MMAP_THRESHOLD_": str(2**24)}

_META_FILE = "_placecast.json"
_FORMAT = "placecast-partitioned-events"
_FIELDS = ("category", "weight", "incident_id", "mark")
_ROWS_PER_FILE = 4_000_000  # keeps WKB offsets in int32 and files a few hundred MB at most


# ---------------------------------------------------------------------- splitting
@dataclass(frozen=True, slots=True)
class RegionSplit:
    """Which region each event belongs to.

    Attributes
    ----------
    labels : ndarray of str
        Region name of each event, aligned with the events.
    names : tuple of str
        The regions, sorted.
    counts : dict
        ``{region: number of events}`` (every region in ``names``, zeros included).
    geometries : dict, optional
        ``{region: polygon in internal metres}`` when the regions came from polygons.
    source : str
        Where the regions came from (a column name or a polygon file).
    """

    labels: np.ndarray
    names: tuple[str, ...]
    counts: dict[str, int]
    geometries: dict[str, Any] | None = None
    source: str = ""


def regions_from_labels(labels: Any, *, source: str = "region column") -> RegionSplit:
    """Regions from a label per event (a region column).

    Raises
    ------
    DataError
        If some events have no region (a missing or empty label): they are counted, not
        dropped.
    """
    values = pd.Series(np.asarray(labels, dtype=object))
    missing = values.isna() | (values.astype(str).str.strip() == "")
    if missing.any():
        first = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(
            f"{int(missing.sum()):,} of {len(values):,} events have no value in the "
            f"{source} (the first is event {first}); every event needs a region. Fill the "
            "column, or select only the events that have one.")
    text = values.astype(str).to_numpy(dtype=object)
    codes, uniques = pd.factorize(text)  # hashing: O(n), unlike sorting millions of strings
    counts = np.bincount(codes, minlength=len(uniques))
    order = np.argsort(np.asarray(uniques, dtype=str), kind="stable")
    return RegionSplit(text, tuple(str(uniques[i]) for i in order),
                       {str(uniques[i]): int(counts[i]) for i in order}, source=source)


def regions_from_polygons(events: Events, path: str | os.PathLike[str], *,
                          id_column: str) -> RegionSplit:
    """Regions from a polygon file: each event goes to the polygon holding it.

    A point on a boundary shared by two polygons goes to the first of them in file order.

    Parameters
    ----------
    events : Events
        The events (internal metres).
    path : path-like
        Any vector file of polygons pyogrio reads, with a CRS (unless the events are on a
        local grid).
    id_column : str
        Column naming each polygon's region; polygons sharing an id make one region
        (their union).

    Raises
    ------
    DataError
        If the file is missing or unreadable, lacks ``id_column`` or leaves an id empty, or
        if some events lie in no polygon (their number and the first one's
        coordinates are reported; nothing is dropped).
    """
    import pyogrio
    import shapely

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such polygon file. Give the region polygons as any "
                        "vector file (.gpkg, .shp, .geojson).")
    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as exc:
        raise DataError(f"{path}: could not read the region polygons ({exc}).") from None
    if id_column not in frame.columns:
        columns = ", ".join(str(c) for c in frame.columns if c != "geometry") or "(none)"
        raise DataError(f"{path}: no column {id_column!r} to name the regions; its columns "
                        f"are {columns}. Name the id column of the polygon file.")
    geoms = frame.geometry
    polygonal = geoms.geom_type.isin(["Polygon", "MultiPolygon"]).to_numpy()
    if not polygonal.all():
        row = int(np.flatnonzero(~polygonal)[0])
        kind = geoms.iloc[row].geom_type if geoms.iloc[row] is not None else "no geometry"
        raise DataError(f"{path} feature {row}: {kind} is not a polygon; every region must "
                        "be a polygon.")
    ids = frame[id_column]
    if ids.isna().any() or (ids.astype(str).str.strip() == "").any():
        raise DataError(f"{path}: column {id_column!r} is empty for some polygons; give every "
                        "region a name.")
    ids = ids.astype(str)
    # several polygons with one id (districts of a precinct) make one region, their union
    names = np.asarray(pd.unique(ids), dtype=object)
    valid = shapely.make_valid(geoms.to_numpy())
    shapes = np.array([shapely.union_all(valid[(ids == name).to_numpy()]) for name in names],
                      dtype=object)
    sref = events.spatial_reference
    source = frame.crs.to_string() if frame.crs is not None else None
    if source is None and not sref.is_local:
        raise DataError(f"{path}: the polygon file has no CRS (.prj missing?); add one.")
    if source is not None and not sref.is_local:
        def convert(coords: np.ndarray) -> np.ndarray:
            mx, my = sref.from_crs_coordinates(coords[:, 0], coords[:, 1], source)
            return np.column_stack([mx, my])

        shapes = np.array([shapely.transform(g, convert) for g in shapes], dtype=object)
    else:
        shapes = shapely.transform(shapes, lambda c: c * sref.metres_per_unit)
    tree = shapely.STRtree(shapes)
    points = shapely.points(events.x, events.y)
    hit_event, hit_polygon = tree.query(points, predicate="intersects")
    owner = np.full(len(events), len(shapes), dtype=np.int64)
    np.minimum.at(owner, hit_event, hit_polygon)  # the first polygon in file order wins
    outside = owner == len(shapes)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        x, y = sref.to_crs_coordinates(events.x[i:i + 1], events.y[i:i + 1])
        raise DataError(
            f"{int(outside.sum()):,} of {len(events):,} events lie in no polygon of {path} "
            f"(the first at x {x[0]:,.1f}, y {y[0]:,.1f} in {sref.crs}). Every event needs a "
            "region: add the missing polygons, or select only the events inside them.")
    labels = names[owner]
    counts = np.bincount(owner, minlength=len(shapes))
    order = np.argsort(names.astype(str), kind="stable")
    return RegionSplit(labels, tuple(str(names[i]) for i in order),
                       {str(names[i]): int(counts[i]) for i in order},
                       geometries={str(n): g for n, g in zip(names, shapes, strict=True)},
                       source=str(path))


def split_events(events: Events, split: RegionSplit) -> dict[str, Events]:
    """``{region: its events}`` in region order (the events keep their order)."""
    if len(split.labels) != len(events):
        raise ParameterError(f"{len(split.labels):,} region labels for {len(events):,} "
                             "events; give one label per event.")
    return {name: events.select(split.labels == name) for name in split.names}


# ---------------------------------------------------------------------- partitioned store
@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """What a partitioned events folder holds (from its ``_placecast.json``).

    Attributes
    ----------
    folder : Path
    column : str
        The partition column (the hive key).
    counts : dict
        ``{region: number of events}``.
    spatial_reference : SpatialReference
    timezone : str, optional
    fields : tuple of str
        Optional event fields stored (``category``, ``weight``, ...).
    """

    folder: Path
    column: str
    counts: dict[str, int]
    spatial_reference: SpatialReference
    timezone: str | None = None
    fields: tuple[str, ...] = field(default_factory=tuple)

    @property
    def names(self) -> tuple[str, ...]:
        """The regions, sorted."""
        return tuple(sorted(self.counts))


def _check_column_name(column: str) -> None:
    if not column or not column.isidentifier():
        raise ParameterError(f"partition column {column!r} must be a plain name (letters, "
                             "digits, underscores).", param="column")


def _wkb_points(x: np.ndarray, y: np.ndarray) -> Any:
    """Little-endian WKB points as an Arrow binary array, built arithmetically."""
    import pyarrow as pa

    n = len(x)
    record = np.empty(n, dtype=np.dtype([("order", "u1"), ("type", "<u4"), ("x", "<f8"),
                                         ("y", "<f8")]))  # packed: 21 bytes
    record["order"] = 1
    record["type"] = 1
    record["x"] = x
    record["y"] = y
    offsets = np.arange(0, 21 * (n + 1), 21, dtype=np.int32)
    return pa.Array.from_buffers(pa.binary(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(record.tobytes())])


def _geo_metadata(sref: SpatialReference, bbox: list[float]) -> bytes:
    crs: Any = None
    if not sref.is_local:
        import pyproj

        crs = pyproj.CRS.from_user_input(sref.crs).to_json_dict()
    return json.dumps({"version": "1.0.0", "primary_column": "geometry",
                       "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                                "crs": crs, "bbox": bbox}}}).encode()


def write_partitioned(events: Events, split: RegionSplit | Any, folder: str | os.PathLike[str],
                      *, column: str = "region", overwrite: bool = False,
                      append: bool = False,
                      rows_per_file: int = _ROWS_PER_FILE) -> PartitionInfo:
    """Write events as GeoParquet partitioned by region (hive layout), atomically.

    Layout: ``folder/<column>=<region>/part-00000.parquet`` (region names percent-encoded),
    each file GeoParquet 1.0 (WKB points in the CRS's own units plus ``x``, ``y`` in
    internal metres, ``time`` in nanoseconds and the optional fields), and
    ``folder/_placecast.json`` with the spatial reference, time zone and counts. The
    folder is written beside its final place and renamed when complete.

    Parameters
    ----------
    events : Events
    split : RegionSplit or array of str
        The region of each event.
    folder : path-like
        Output folder (must not exist unless ``overwrite``).
    column : str
        Name of the partition column.
    overwrite : bool
        Replace an existing partitioned folder.
    append : bool
        Add the events to an existing partitioned folder (same column, CRS, time zone and
        fields) as new files, for ingesting a catalog too large for memory in chunks. The
        description is updated last; a run that dies half-way leaves files the description
        does not count, which reading then reports.
    rows_per_file : int
        Largest number of rows in one file.

    Returns
    -------
    PartitionInfo
    """
    import pyarrow.parquet as pq

    _check_column_name(column)
    if not isinstance(split, RegionSplit):
        split = regions_from_labels(split)
    if len(split.labels) != len(events):
        raise ParameterError(f"{len(split.labels):,} region labels for {len(events):,} "
                             "events; give one label per event.")
    folder = Path(folder)
    if append:
        if overwrite:
            raise ParameterError("give append or overwrite, not both.",
                                 param=("append", "overwrite"))
        return _append(events, split, folder, column, rows_per_file)
    if folder.exists():
        if not overwrite:
            raise ParameterError(f"{folder} already exists; choose a new folder or overwrite "
                                 "it.", param=("folder", "overwrite"))
        if folder.is_dir() and not (folder / _META_FILE).exists():
            raise ParameterError(f"{folder} exists and is not a partitioned events folder; "
                                 "refusing to replace it.")
    if rows_per_file < 1:
        raise ParameterError(f"`rows_per_file` must be at least 1, got {rows_per_file}.",
                             param="rows_per_file")
    sref = events.spatial_reference
    present = [f for f in _FIELDS if getattr(events, f) is not None]
    tmp = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir(parents=True)
    try:
        for part_dir, name, take in _region_files(events, split, tmp, column, rows_per_file):
            part_dir.mkdir(exist_ok=True)
            pq.write_table(_part_table(events, take, present), part_dir / name)
        meta = {"format": _FORMAT, "version": 1, "column": column,
                "crs": sref.crs, "metres_per_unit": sref.metres_per_unit,
                "input_crs": sref.input_crs, "timezone": events.timezone,
                "fields": present, "n_events": len(events), "source": split.source,
                "regions": split.counts}
        (tmp / _META_FILE).write_text(json.dumps(meta, indent=1))
        if folder.exists():
            old = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.old"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return partition_info(folder)


def _region_files(events: Events, split: RegionSplit, folder: Path, column: str,
                  rows_per_file: int, first: Mapping[str, int] | None = None
                  ) -> Iterator[tuple[Path, str, np.ndarray]]:
    """``(region folder, file name, event indices)`` for every file to write."""
    index = {name: i for i, name in enumerate(split.names)}
    codes = pd.Series(split.labels).map(index).to_numpy(dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(split.names) + 1))
    for i, region in enumerate(split.names):
        rows = order[bounds[i]:bounds[i + 1]]
        if first is not None and len(rows) == 0:
            continue  # appending: no new file for a region without new events
        part_dir = folder / f"{column}={urllib.parse.quote(region, safe='')}"
        start_k = (first or {}).get(region, 0)
        for k, start in enumerate(range(0, max(len(rows), 1), rows_per_file), start=start_k):
            yield part_dir, f"part-{k:05d}.parquet", rows[start:start + rows_per_file]


def _part_table(events: Events, take: np.ndarray, present: Sequence[str]) -> Any:
    """One GeoParquet table: time, x, y, the optional fields and WKB points."""
    import pyarrow as pa

    sref = events.spatial_reference
    scale = sref.metres_per_unit if np.isfinite(sref.metres_per_unit) else 1.0
    x, y = events.x[take], events.y[take]
    columns: dict[str, Any] = {"time": pa.array(events.time[take]), "x": pa.array(x),
                               "y": pa.array(y)}
    for name in present:
        values = getattr(events, name)[take]
        columns[name] = pa.array(values, type=pa.string() if values.dtype == object else None)
    columns["geometry"] = _wkb_points(x / scale, y / scale)
    bbox = ([float(x.min() / scale), float(y.min() / scale), float(x.max() / scale),
             float(y.max() / scale)] if len(take) else [])
    return pa.table(columns).replace_schema_metadata({b"geo": _geo_metadata(sref, bbox)})


def _append(events: Events, split: RegionSplit, folder: Path, column: str,
            rows_per_file: int) -> PartitionInfo:
    import pyarrow.parquet as pq

    info = partition_info(folder)
    present = tuple(f for f in _FIELDS if getattr(events, f) is not None)
    differences = [what for what, same in (
        ("partition column", info.column == column),
        ("CRS", info.spatial_reference == events.spatial_reference),
        ("time zone", info.timezone == events.timezone),
        ("event fields", info.fields == present)) if not same]
    if differences:
        raise ParameterError(f"{folder}: cannot append events that differ in "
                             f"{', '.join(differences)} (folder: column {info.column!r}, "
                             f"{info.spatial_reference.crs}, fields {list(info.fields)}); "
                             "read them with the same settings, or write a new folder.")
    first = {}
    for region in split.names:
        part_dir = folder / f"{column}={urllib.parse.quote(region, safe='')}"
        first[region] = len(list(part_dir.glob("part-*.parquet"))) if part_dir.exists() else 0
    written: list[tuple[Path, Path]] = []
    try:
        for part_dir, name, take in _region_files(events, split, folder, column,
                                                  rows_per_file, first):
            part_dir.mkdir(exist_ok=True)
            hidden = part_dir / f".{name}.{uuid.uuid4().hex[:8]}"  # ignored by readers
            pq.write_table(_part_table(events, take, present), hidden)
            written.append((hidden, part_dir / name))
    except BaseException:
        for hidden, _ in written:
            hidden.unlink(missing_ok=True)
        raise
    for hidden, final in written:
        hidden.rename(final)
    meta = json.loads((folder / _META_FILE).read_text())
    counts = dict(meta["regions"])
    for region, n in split.counts.items():
        counts[region] = counts.get(region, 0) + n
    meta.update(regions=dict(sorted(counts.items())),
                n_events=int(meta["n_events"]) + len(events))
    from placecast.io._atomic import atomic_path

    with atomic_path(folder / _META_FILE) as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return partition_info(folder)


def is_partitioned(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder written by :func:`write_partitioned`."""
    return Path(path).is_dir() and (Path(path) / _META_FILE).is_file()


def partition_info(folder: str | os.PathLike[str]) -> PartitionInfo:
    """Read the description of a partitioned events folder.

    Raises
    ------
    DataError
        If ``folder`` is not a partitioned events folder.
    """
    folder = Path(folder)
    if not is_partitioned(folder):
        raise DataError(f"{folder}: not a partitioned events folder (no {_META_FILE}); write "
                        "one with placecast.regions.write_partitioned (placecast partition).")
    try:
        meta = json.loads((folder / _META_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder / _META_FILE}: unreadable ({exc}).") from None
    if meta.get("format") != _FORMAT:
        raise DataError(f"{folder / _META_FILE}: not a placecast partition description.")
    sref = SpatialReference(meta["crs"], float(meta["metres_per_unit"]), meta.get("input_crs"))
    return PartitionInfo(folder, meta["column"], {str(k): int(v) for k, v in
                                                  meta["regions"].items()},
                         sref, meta.get("timezone"), tuple(meta.get("fields", ())))


def read_partition(folder: str | os.PathLike[str], region: str) -> Events:
    """Read one region's events from a partitioned folder (only that region's files).

    The region filter is pushed down to ``pyarrow.dataset``'s hive partitioning, so files
    of other regions are never opened.

    Raises
    ------
    DataError
        If the folder is not partitioned events or has no such region.
    """
    import pyarrow as pa
    import pyarrow.dataset as ds

    info = partition_info(folder)
    if region not in info.counts:
        shown = ", ".join(list(info.names)[:10])
        raise DataError(f"{info.folder}: no region {region!r} (regions: {shown}"
                        f"{' ...' if len(info.counts) > 10 else ''}).")
    key = pa.schema([(info.column, pa.string())])
    types = {"time": pa.timestamp("ns"), "x": pa.float64(), "y": pa.float64(),
             "category": pa.string(), "weight": pa.float64(), "incident_id": pa.string(),
             "mark": pa.float64()}
    # the schema is given, so discovery opens no file; the filter then prunes by folder
    schema = pa.schema([(name, types[name]) for name in ("time", "x", "y", *info.fields)]
                       + [("geometry", pa.binary()), (info.column, pa.string())])
    dataset = ds.dataset(info.folder, format="parquet", schema=schema,
                         partitioning=ds.partitioning(key, flavor="hive"),
                         exclude_invalid_files=False, ignore_prefixes=[".", "_"])
    columns = ["time", "x", "y", *info.fields]
    table = dataset.to_table(columns=columns, filter=ds.field(info.column) == region)
    if table.num_rows != info.counts[region]:
        raise DataError(f"{info.folder}: region {region!r} holds {table.num_rows:,} events but "
                        f"its description says {info.counts[region]:,}; the folder was changed "
                        "after it was written. Write it again.")

    def column(name: str) -> np.ndarray:
        chunked = table.column(name)
        if pa.types.is_string(chunked.type) or pa.types.is_large_string(chunked.type):
            return np.asarray(chunked.to_pylist(), dtype=object)
        return chunked.to_numpy()

    optional: dict[str, Any] = {name: column(name) for name in info.fields}
    return Events(time=column("time").astype("datetime64[ns]"), x=column("x"), y=column("y"),
                  spatial_reference=info.spatial_reference,
                  timezone=info.timezone, **optional)


def _store_reference(reference: str | os.PathLike[str]) -> tuple[str, str]:
    """``(db, dataset)`` of ``"DB#DATASET"``; a ``ParameterError`` for anything else."""
    from placecast.store import split_store_reference

    parts = split_store_reference(reference)
    if parts is None:
        raise ParameterError(f"{reference!s} is not a store reference; give the `source` as "
                             "DB#DATASET.", param="source")
    return parts


def store_regions(reference: str | os.PathLike[str]) -> dict[str, int]:
    """``{region: number of events}`` of a dataset in a store, ``"DB#DATASET"``.

    The store is opened read-only and closed again.

    Raises
    ------
    DataError
        If the reference names no dataset, or the dataset is not split by region.
    """
    from placecast.store import open_store

    db, dataset = _store_reference(reference)
    with open_store(db, read_only=True) as store:
        counts = store.list_regions(dataset)
        url = store.url  # without any password
    if not counts:
        raise DataError(f"{url}: dataset {dataset!r} is not split by region; import its events "
                        "again with `by` (a region column or polygons) into a new dataset.",
                        param="by")
    return counts


def read_store_region(reference: str | os.PathLike[str], region: str) -> Events:
    """One region's events of a dataset in a store (``"DB#DATASET"``), opened read-only.

    Only that region's rows are read (``Store.load_events(dataset, region=...)``). A
    DuckDB file may be read so by any number of processes at once; on PostGIS each call
    has its own connection.
    """
    from placecast.store import open_store

    db, dataset = _store_reference(reference)
    with open_store(db, read_only=True) as store:
        return store.load_events(dataset, region=region)


# ---------------------------------------------------------------------- per-region jobs
def _check_spec(spec: UnitSpec) -> None:
    if spec.region is not None:
        raise ParameterError("a region file cannot be combined with regions: each region's "
                             "units cover that region (its polygon, or its events' hull).",
                             param="region")
    if spec.kind not in ("grid", "hex"):
        raise ParameterError(f"units {spec.kind!r} are not available per region yet; use "
                             "grid or hex units.")


def _hull_region(events: Events, buffer: float) -> Any:
    """``default_region(events, buffer)``, computed from the hull's vertices only.

    Qhull finds the vertices of the convex hull in a few milliseconds; GEOS then builds the
    same hull from them (the same ring, bit for bit) without making a point object per
    event, which was half the time of a small region's backtest.
    """
    from scipy.spatial import ConvexHull, QhullError

    if len(events) < 3:
        return default_region(events, buffer)
    try:
        vertices = np.sort(ConvexHull(events.xy).vertices)
    except (QhullError, ValueError):  # all on a line: let GEOS handle it
        return default_region(events, buffer)
    return default_region(events.select(vertices), buffer)


def region_units(events: Events, spec: UnitSpec, geometry: Any = None) -> Units:
    """Area units over one region: ``geometry`` (metres) if given, else the events' hull.

    Raises
    ------
    ParameterError
        For polygon units or a ``spec.region`` (each region's area comes from the split).
    """
    _check_spec(spec)
    if len(events) == 0:
        raise DataError("the region has no events to build its units from.")
    sref = events.spatial_reference
    area = geometry if geometry is not None else _hull_region(events, spec.cell_size)
    if spec.kind == "hex":
        units = hex_grid(area, spec.cell_size, sref)
    else:
        origin = None
        if spec.origin is not None:
            origin = (spec.origin[0] * sref.metres_per_unit, spec.origin[1] * sref.metres_per_unit)
        units = square_grid(area, spec.cell_size, sref, origin=origin, rotation=spec.rotation)
    check_events_in_units(events, units)
    return units


@dataclass(frozen=True, slots=True)
class _Task:
    job: str
    region: str
    params: Mapping[str, Any]
    unit_spec: UnitSpec | None
    geometry: Any = None
    events: Events | None = None
    folder: str | None = None
    size: int = 0  # events in the region: the largest are sent first
    store: str | None = None  # "DB#DATASET"


def _read_region(task: _Task) -> Events:
    if task.events is not None:
        return task.events
    if task.store is not None:
        return read_store_region(task.store, task.region)
    assert task.folder is not None
    return read_partition(task.folder, task.region)


def _run_task(task: _Task) -> pd.DataFrame:
    """One region: read its events, build its units, run the job, return its table."""
    try:
        events = _read_region(task)
        frame = _JOB_RUNNERS[task.job](events, task)
    except PlacecastError as exc:
        raise type(exc)(f"region {task.region!r}: {exc}", param=exc.params or None) from None
    frame.insert(0, "region", task.region)
    return frame


def _backtest(events: Events, task: _Task) -> pd.DataFrame:
    from placecast.evaluate import run_backtest

    assert task.unit_spec is not None
    units = region_units(events, task.unit_spec, task.geometry)
    params = dict(task.params)
    area = params.pop("area", "1%")
    result = run_backtest(events, units, area=area, jobs=1, **params)
    return result.to_frame()


def _forecast(events: Events, task: _Task) -> pd.DataFrame:
    from placecast.pipeline import run_forecast

    assert task.unit_spec is not None
    units = region_units(events, task.unit_spec, task.geometry)
    forecast = run_forecast(events, units=units, **task.params)
    return forecast.to_frame()


def _scan(events: Events, task: _Task) -> pd.DataFrame:
    from placecast.clusters import SpaceTimeScan, scan_data_from_events

    params = dict(task.params)
    scan = SpaceTimeScan(**params.pop("scan", {}))
    units = (region_units(events, task.unit_spec, task.geometry)
             if task.unit_spec is not None else None)
    data = scan_data_from_events(events, units=units, **params)
    return scan.run(data).to_frame()


_JOB_RUNNERS = {"backtest": _backtest, "forecast": _forecast, "scan": _scan}


def _tasks(job: str, source: Any, params: Mapping[str, Any], unit_spec: UnitSpec | None,
           geometries: Mapping[str, Any] | None, regions: Sequence[str] | None
           ) -> list[_Task]:
    from placecast.store import is_store_reference

    folder: str | None = None
    store: str | None = None
    by_region: Mapping[str, Events] = {}
    if isinstance(source, (str, os.PathLike)) and not is_partitioned(source) \
            and is_store_reference(source):
        store = os.fspath(source)
        sizes = store_regions(store)
        names = list(sizes)
    elif isinstance(source, (str, os.PathLike)):
        info = partition_info(source)
        names = list(info.names)
        folder = str(info.folder)
        sizes = info.counts
    elif isinstance(source, Mapping):
        names = sorted(str(k) for k in source)
        by_region = source
        sizes = {str(k): len(v) for k, v in source.items()}
    else:
        raise ParameterError("`source` must be a partitioned events folder, a dataset in a "
                             "store (DB#DATASET) or a mapping {region: Events}.",
                             param="source")
    if regions is not None:
        unknown = sorted(set(regions) - set(names))
        if unknown:
            raise ParameterError(f"no region {unknown[0]!r} in the events (regions: "
                                 f"{', '.join(names[:10])}{' ...' if len(names) > 10 else ''}).",
                                 param="regions")
        names = sorted(set(regions))
    if geometries is not None:
        missing = [n for n in names if n not in geometries]
        if missing:
            raise ParameterError(f"no polygon for region {missing[0]!r}.")
    return [_Task(job, name, dict(params), unit_spec,
                  geometries.get(name) if geometries is not None else None,
                  by_region.get(name), folder, sizes[name], store)
            for name in names]


def run_by_region(
    job: str,
    source: str | os.PathLike[str] | Mapping[str, Events],
    *,
    params: Mapping[str, Any] | None = None,
    unit_spec: UnitSpec | None = None,
    geometries: Mapping[str, Any] | None = None,
    regions: Sequence[str] | None = None,
    dask: Any = None,
    jobs: int = 1,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Run ``job`` once per region and join the per-region tables.

    Parameters
    ----------
    job : {"backtest", "forecast", "scan"}
        ``backtest``: :func:`placecast.evaluate.run_backtest` (``params``: its keywords, such
        as ``models``, ``start``, ``end``, ``step``, ``horizons``, ``area``); rows are
        ``BacktestResult.to_frame()``. ``forecast``: :func:`placecast.pipeline.run_forecast`
        (``model``, ``at``, ``horizon``, ``model_params``); rows are ``Forecast.to_frame()``.
        ``scan``: :func:`placecast.clusters.scan_data_from_events` keywords plus ``scan``,
        the :class:`~placecast.clusters.SpaceTimeScan` keywords; rows are the clusters.
    source : path, str or mapping
        A partitioned events folder (each task reads only its region's files), a dataset
        split by region in a store, ``"DB#DATASET"`` (each task opens the store read-only
        and reads only its region's rows: ``Store.load_events(dataset, region=...)``), or
        ``{region: Events}`` (each task is sent its events).
    params : mapping
        Keywords of the job (see ``job``).
    unit_spec : UnitSpec, optional
        Area units built per region (grid or hex); required for backtests and forecasts,
        optional for scans (locations are then event coordinates).
    geometries : mapping, optional
        ``{region: polygon in metres}``: each region's units cover its polygon (default the
        hull of its events).
    regions : sequence of str, optional
        Run only these regions.
    dask : str or distributed.Client, optional
        ``"local"`` (a ``LocalCluster`` of ``jobs`` single-threaded worker processes), a
        scheduler address ``tcp://host:port`` or a ``Client``. Default: serial, in this
        process. The results are the same either way.
    jobs : int
        Workers of the ``"local"`` cluster.
    progress : callable, optional
        ``progress(n_done, n_total)`` after each region finishes.

    Returns
    -------
    pandas.DataFrame
        The per-region tables one after the other in region order, ``region`` first.

    Raises
    ------
    ParameterError, DataError
        For bad settings or data, naming the region they came from.

    Notes
    -----
    Each region is a pure function of its events and the settings, and regions never
    exchange data, so serial and Dask runs give identical tables and the work spreads over
    any number of workers without a shuffle. With a folder as ``source`` and a cluster on
    several machines, the folder must be on storage every worker can read; with a DuckDB
    store, so must the file (and nothing may write to it during the run); with PostGIS,
    every worker must reach the server (each task opens its own connection).
    """
    if job not in JOBS:
        raise ParameterError(f"unknown job {job!r}; use one of {', '.join(JOBS)}.", param="job")
    if job in ("backtest", "forecast") and unit_spec is None:
        raise ParameterError(f"a {job} per region needs a unit_spec (grid or hex units).",
                             param="unit_spec")
    if not (isinstance(jobs, int) and jobs >= 1):
        raise ParameterError(f"`jobs` must be a positive whole number, got {jobs!r}.",
                             param="jobs")
    if unit_spec is not None:
        _check_spec(unit_spec)
    tasks = _tasks(job, source, params or {}, unit_spec, geometries, regions)
    if not tasks:
        raise DataError("no regions to run.")
    results: dict[str, pd.DataFrame] = {}
    if progress is not None:
        progress(0, len(tasks))
    stream = _dask(tasks, dask, jobs) if dask is not None else _serial(tasks)
    try:
        for name, frame in stream:
            results[name] = frame
            if progress is not None:
                progress(len(results), len(tasks))
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()
    frames = [results[t.region] for t in tasks]
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0].iloc[0:0].reset_index(drop=True)
    return pd.concat(non_empty, ignore_index=True)


def local_cluster(n_workers: int, **options: Any) -> Any:
    """A ``distributed.LocalCluster`` of single-threaded worker processes for placecast.

    The workers start with ``WORKER_ENV`` (set through Dask's
    ``distributed.nanny.pre-spawn-environ``: malloc settings only work when set before a
    process starts); ``options`` go to ``LocalCluster``.
    """
    try:
        import dask
        from dask.distributed import LocalCluster
    except ImportError:  # pragma: no cover - depends on the environment
        raise ParameterError("running regions on Dask needs dask.distributed: pip install "
                             "'placecast[dask]'.") from None
    settings = {"threads_per_worker": 1, "dashboard_address": None, "processes": True,
                **options}
    environ = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
    with dask.config.set(environ):
        return LocalCluster(n_workers=n_workers, **settings)


def _serial(tasks: Sequence[_Task]) -> Iterator[tuple[str, pd.DataFrame]]:
    for task in tasks:
        yield task.region, _run_task(task)


@contextmanager
def dask_client(address: Any, jobs: int, *, what: str = "dask") -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``, closed (with its cluster) when owned.

    ``address`` is a ``Client`` (used as is), ``"local"`` (a ``local_cluster`` of ``jobs``
    workers) or a scheduler address. ``what`` is the caller's parameter that gave
    ``address``, by Python name: error messages name it (``param``).
    """
    label, params = cite(what, "dask")
    try:
        from dask.distributed import Client
    except ImportError:  # pragma: no cover - depends on the environment
        raise ParameterError(f"{label} needs dask.distributed: pip install "
                             "'placecast[dask]'.", param=params) from None
    if isinstance(address, Client):
        yield address
        return
    cluster = local_cluster(jobs) if address == "local" else None
    try:
        try:
            client = Client(cluster) if cluster is not None else Client(str(address),
                                                                        timeout=30)
        except OSError as exc:
            raise ParameterError(f"{label} {address}: cannot reach the Dask scheduler "
                                 f"({exc}).", param=params) from None
        try:
            yield client
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def _dask(tasks: Sequence[_Task], address: Any, jobs: int
          ) -> Iterator[tuple[str, pd.DataFrame]]:
    try:
        from dask.distributed import Client, as_completed
    except ImportError:  # pragma: no cover - depends on the environment
        raise ParameterError("running regions on Dask needs dask.distributed: pip install "
                             "'placecast[dask]'.") from None
    if not isinstance(address, Client) and address != "local":
        text = str(address)
        if not text.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
            raise ParameterError(f"Dask scheduler {text!r}: give 'local' or an address such "
                                 "as tcp://host:8786.")
    with dask_client(address, jobs) as client:
        yield from _submit_regions(client, tasks, as_completed)


def _submit_regions(client: Any, tasks: Sequence[_Task], as_completed: Any
                    ) -> Iterator[tuple[str, pd.DataFrame]]:
    futures = []
    try:
        # largest regions first, so a big one does not start last and hold up the end
        ordered = sorted(tasks, key=lambda t: -t.size)
        futures = [client.submit(_run_task, task, key=f"placecast-{task.job}-{i}-"
                                 f"{uuid.uuid4().hex[:8]}", pure=False,
                                 priority=len(ordered) - i)
                   for i, task in enumerate(ordered)]
        region_of = {f.key: t.region for f, t in zip(futures, ordered, strict=True)}
        for future in as_completed(futures):
            frame = future.result()
            yield region_of[future.key], frame
            future.release()
    finally:
        for future in futures:
            future.cancel()

