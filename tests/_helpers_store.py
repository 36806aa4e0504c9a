"""Fixtures shared by the store and export tests: a store per backend, synthetic events."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from placecast.events import Events, SpatialReference

POSTGIS_ENV = "PLACECAST_TEST_POSTGIS_URL"
POSTGIS_URL = os.environ.get(POSTGIS_ENV)
SKIP_POSTGIS = pytest.mark.skipif(
    POSTGIS_URL is None,
    reason=f"no PostgreSQL + PostGIS server: set {POSTGIS_ENV}=postgresql://... "
           "(.ci/run starts one and sets it)",
)

#: Parametrise a fixture over both backends; PostGIS is marked and skipped without a server.
BACKENDS = [pytest.param("duckdb", id="duckdb"),
            pytest.param("postgis", id="postgis", marks=[pytest.mark.postgis, SKIP_POSTGIS])]


def schema_url(base: str, schema: str) -> str:
    """``base`` with ``schema=NAME`` added to its query."""
    return f"{base}{'&' if '?' in base else '?'}schema={schema}"


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store per test: a DuckDB file, or its own PostgreSQL schema."""
    if request.param == "duckdb":
        yield str(tmp_path / "store.duckdb")
        return
    assert POSTGIS_URL is not None
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield schema_url(POSTGIS_URL, schema)
    with psycopg.connect(POSTGIS_URL, autocommit=True) as con:
        con.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def synthetic_events(n: int, *, seed: int = 0, ids: bool = True, start_id: int = 0,
                     crs: str = "EPSG:2913", metres_per_unit: float = 0.3048,
                     input_crs: str | None = "EPSG:4326", timezone: str | None = None
                     ) -> Events:
    """``n`` events with every field: microsecond times, feet CRS, ids, categories, marks."""
    rng = np.random.default_rng(seed)
    base = np.datetime64("2017-01-01T00:00:00", "us")
    micros = rng.integers(0, 90 * 86_400 * 10**6, n)
    categories = rng.choice(np.array(["BURGLARY", "THEFT", "Robbery"], dtype=object), n)
    categories[rng.random(n) < 0.05] = None
    return Events(
        time=(base + micros.astype("timedelta64[us]")).astype("datetime64[ns]"),
        x=rng.uniform(2.3e6, 2.35e6, n),
        y=rng.uniform(2.0e5, 2.1e5, n),
        spatial_reference=SpatialReference(crs, metres_per_unit, input_crs),
        category=categories,
        weight=rng.uniform(0.5, 2.0, n),
        incident_id=(np.array([f"INC{start_id + i:07d}" for i in range(n)], dtype=object)
                     if ids else None),
        mark=rng.normal(3.0, 1.0, n),
        timezone=timezone,
    )


def assert_same_events(a: Events, b: Events) -> None:
    """Every field, the CRS and the time zone equal (coordinates bit for bit)."""
    assert len(a) == len(b)
    np.testing.assert_array_equal(a.time, b.time)
    assert a.time.dtype == b.time.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert a.spatial_reference == b.spatial_reference
    assert a.timezone == b.timezone
    for name in ("category", "incident_id"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            assert list(va) == list(vb), name
    for name in ("weight", "mark"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            np.testing.assert_array_equal(va, vb)
