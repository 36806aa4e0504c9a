"""Every numba kernel caches its machine code on disk, so compiling is paid once."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
import sys

import pytest

import placecast

numba = pytest.importorskip("numba")


def _dispatchers() -> dict[str, object]:
    from numba.core.registry import CPUDispatcher

    found = {}
    for info in pkgutil.walk_packages(placecast.__path__, "placecast."):
        if info.name.startswith(("placecast.service", "placecast.cli", "placecast.__main__")):
            continue  # no kernels; the service needs its optional extra
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed
            continue
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.py_func.__module__ == info.name:
                found[f"{info.name}.{name}"] = value
    return found


def test_every_kernel_has_cache_true():
    from numba.core.caching import NullCache

    kernels = _dispatchers()
    assert len(kernels) >= 25  # scan, knox, emerging, Hawkes and marked ETAS kernels
    uncached = sorted(name for name, d in kernels.items() if isinstance(d._cache, NullCache))
    assert uncached == [], f"add cache=True to {uncached}"


_CHILD = """
import json, numpy as np
from placecast.models.etas import fit_grid_etas
from placecast.models import _hawkes_kernels as k
rng = np.random.default_rng(0)
t = np.sort(rng.uniform(0, 100, 300)); cell = rng.integers(0, 5, 300)
fit_grid_etas(t, cell, 5, 0.0, 100.0)
hits = sum(sum(d.stats.cache_hits.values()) for d in vars(k).values() if hasattr(d, 'stats'))
miss = sum(sum(d.stats.cache_misses.values()) for d in vars(k).values() if hasattr(d, 'stats'))
print(json.dumps([hits, miss]))
"""


def test_a_fresh_process_loads_the_compiled_kernels(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True,
                             text=True, check=True, timeout=300)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    (hits0, misses0), (hits1, misses1) = runs
    assert hits0 == 0 and misses0 > 0  # an empty cache: compiled and written
    assert misses1 == 0 and hits1 == misses0  # the next process compiles nothing
    assert any(p.suffix == ".nbc" for p in tmp_path.rglob("*"))
