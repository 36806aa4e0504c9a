"""Shared fixtures: the real data folder beside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared/data`` relative to the repository root (as laid out for CI and developers);
#: ``PLACECAST_SHARED_DATA`` overrides it (e.g. for a git worktree elsewhere).
SHARED_DATA = Path(os.environ.get("PLACECAST_SHARED_DATA")
                   or Path(__file__).resolve().parents[2] / "shared" / "data")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of ``../shared/data``; fails loudly when it is missing."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA} (expected ../shared/data)")
    return SHARED_DATA
