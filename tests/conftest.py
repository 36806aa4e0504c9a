"""Shared fixtures: the real data folder beside the repository."""

from __future__ import annotations

from pathlib import Path

import pytest

#: ``../shared/data`` relative to the repository root (as laid out for CI and developers).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; fails loudly when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA} (expected ../shared/data)")
    return SHARED_DATA
