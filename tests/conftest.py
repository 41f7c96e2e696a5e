"""Shared fixtures.

Tests that read the real public data in ``../shared/data/real`` use ``real_data``:
it skips when the folder is missing on a developer's machine, and fails when
``CI=true``, because CI always has ``../shared``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from analysis.paths import SHARED_DATA_DIR


def _require(path: Path) -> Path:
    if path.exists():
        return path
    message = f"real data not found at {path}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must have ../shared/data/real beside the project.")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real public data; each test then names its own sub-folder."""
    return _require(SHARED_DATA_DIR)


@pytest.fixture(scope="session")
def require_real():
    """Return a function that checks a path under the real data folder exists."""
    return lambda relative: _require(SHARED_DATA_DIR / relative)
