"""Run settings, read from ``params/settings.yaml`` through one typed loader."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from analysis.paths import PARAMS_DIR

SETTINGS_FILE = PARAMS_DIR / "settings.yaml"
SOURCES = ("sample", "student-files", "nyc-doe", "ct-edsight")


class PrivacySettings(BaseModel):
    """How public figures are protected (see :mod:`analysis.privacy`).

    ``audit_min_range`` is the narrowest range the release audit lets a reader
    narrow a hidden small group's counts to (capped by the group's size); empty
    means ``min_group_size``.
    """

    model_config = ConfigDict(extra="forbid")
    min_group_size: int = Field(10, ge=0)
    show_counts: bool = False
    audit_min_range: int | None = Field(None, ge=1)


class EngineSettings(BaseModel):
    """Which engine runs the heavy step, and how.

    ``backend`` is ``duckdb`` (embedded; ``database`` a file or empty for memory),
    ``postgres`` (``url`` a connection string such as
    ``postgresql://user@127.0.0.1:5432/analysis``) or ``spark`` (``url`` a Spark
    master such as ``local[2]`` or ``spark://host:7077``). An empty ``url`` is read
    from ``$ANALYSIS_ENGINE_URL``, which keeps passwords out of settings files.
    ``threads`` and ``memory_limit`` apply to DuckDB (and a local Spark);
    ``temp_directory`` is where DuckDB spills when data outgrow the memory limit
    (empty: next to the database, or ``.tmp`` in the working folder).
    """

    model_config = ConfigDict(extra="forbid")
    backend: Literal["duckdb", "postgres", "spark"] = "duckdb"
    database: str = ""
    url: str = ""
    threads: int = Field(2, ge=1)
    memory_limit: str = "4GB"
    temp_directory: str = ""


class Settings(BaseModel):
    """Everything a run needs besides the definition profile."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["sample", "student-files", "nyc-doe", "ct-edsight"] = "sample"
    data_dir: str = ""
    as_of: date | None = None
    profile: str = "attendance-works"
    school_year_start_month: int = Field(7, ge=1, le=12)
    strict: bool = False
    audience: Literal["staff", "public"] = "staff"
    workers: int = Field(2, ge=1)
    execution_timeout: int = Field(600, ge=10)
    privacy: PrivacySettings = PrivacySettings()
    engine: EngineSettings = EngineSettings()

    @field_validator("as_of", mode="before")
    @classmethod
    def _empty_as_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value


def load_settings(path: Path = SETTINGS_FILE, **overrides: Any) -> Settings:
    """Read ``params/settings.yaml`` and apply ``overrides`` whose value is not None.

    Raises
    ------
    pydantic.ValidationError
        Naming the setting and the allowed values, when a setting is wrong.
    """
    return Settings(**read_yaml_settings(path, overrides))


def read_yaml_settings(path: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """The YAML file at ``path`` (empty when missing) with non-None ``overrides``."""
    data: dict[str, Any] = {}
    if Path(path).exists():
        with Path(path).open() as handle:
            data = yaml.safe_load(handle) or {}
    data.update({key: value for key, value in overrides.items() if value is not None})
    return data
