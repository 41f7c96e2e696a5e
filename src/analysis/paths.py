"""Project folders, built from one anchor so every module agrees where things live."""

import os
from pathlib import Path

#: The project root: the folder holding ``pyproject.toml``. ``ANALYSIS_ROOT`` overrides
#: it, for an installed package run from elsewhere.
PROJECT_ROOT = Path(
    os.environ.get("ANALYSIS_ROOT", Path(__file__).resolve().parents[2])
).resolve()

PARAMS_DIR = PROJECT_ROOT / "params"
DATA_DIR = PROJECT_ROOT / "data"
RAW_DIR = DATA_DIR / "raw"
INTERIM_DIR = DATA_DIR / "interim"
PROCESSED_DIR = DATA_DIR / "processed"
EXTERNAL_DIR = DATA_DIR / "external"
REPORTS_DIR = PROJECT_ROOT / "reports"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

#: Where the bundled sample district is generated.
SAMPLE_DIR = RAW_DIR / "sample"

#: The shared folder beside the project, holding the real public data.
SHARED_DATA_DIR = Path(
    os.environ.get("ANALYSIS_SHARED_DATA",
                   PROJECT_ROOT.parent / "shared" / "data" / "real")
)
