"""Definitions of chronic absence: one typed profile per file in ``params/profiles``.

A :class:`Definition` holds every rule a metric depends on (what counts as absent,
partial days, eligibility, the chronic cut point, bands, tier triggers). Nothing
else in the package hard-codes a rule; the engine reads them from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from analysis.contract import ATTENDANCE_CATEGORIES
from analysis.paths import PARAMS_DIR
from analysis.schema import GRADES

PROFILES_DIR = PARAMS_DIR / "profiles"
DEFAULT_PROFILE = "attendance-works"


class Definition(BaseModel):
    """The rules of one definition of chronic absence.

    Notes
    -----
    ``band_boundary="at_or_above"`` puts a rate exactly on a cut point in the higher
    band (Attendance Works' DATT port: exactly 5.0% is at risk); ``"above"`` puts it in
    the lower band (a Schoolzilla-style reading where ADA of exactly 95% is
    satisfactory). Both readings treat the chronic cut point the same way as the bands.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    title: str
    description: str
    source: str
    absent_categories: tuple[str, ...] = ("excused", "unexcused", "suspension")
    partial_day: Literal["minutes_else_half_day", "half_day", "fraction"] = (
        "minutes_else_half_day"
    )
    half_day_threshold: float = Field(0.5, gt=0, le=1)
    default_instructional_minutes: float = Field(360, gt=0)
    exit_date_inclusive: bool = True
    grades: tuple[str, ...] | None = None
    min_days_enrolled: int = Field(10, ge=1)
    min_days_present: int = Field(0, ge=0)
    chronic_rule: Literal["rate", "days"] = "rate"
    chronic_rate: float = Field(0.10, gt=0, lt=1)
    chronic_days: float | None = None
    band_cutoffs: tuple[float, float, float] = (0.05, 0.10, 0.20)
    band_boundary: Literal["at_or_above", "above"] = "at_or_above"
    tier2_days_per_month: float = Field(2, gt=0)
    tier2_first_month: int = Field(9, ge=1, le=12)
    tier3_rate: float = Field(0.20, gt=0, lt=1)

    @field_validator("absent_categories")
    @classmethod
    def _known_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(ATTENDANCE_CATEGORIES))
        if unknown:
            raise ValueError(
                f"absent_categories has {unknown}; "
                f"allowed: {list(ATTENDANCE_CATEGORIES)}"
            )
        return value

    @field_validator("grades")
    @classmethod
    def _known_grades(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return value
        unknown = sorted(set(value) - set(GRADES))
        if unknown:
            raise ValueError(f"grades has {unknown}; allowed: {list(GRADES)}")
        return value

    @model_validator(mode="after")
    def _rule_is_complete(self) -> Definition:
        cuts = self.band_cutoffs
        if not cuts[0] < cuts[1] < cuts[2]:
            raise ValueError(f"band_cutoffs must increase, got {list(cuts)}")
        if self.chronic_rule == "days" and self.chronic_days is None:
            raise ValueError("chronic_rule 'days' needs chronic_days "
                             "(e.g. 15 for CRDC)")
        return self

    def summary(self) -> str:
        """One paragraph for the definition box of a report."""
        return f"{self.title}. {self.description} Source: {self.source}."


def available_profiles(folder: Path = PROFILES_DIR) -> list[str]:
    """Return the names of the definition profiles in ``folder``."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_definition(name: str = DEFAULT_PROFILE,
                    folder: Path = PROFILES_DIR) -> Definition:
    """Load the definition profile ``name`` from ``params/profiles/<name>.yaml``.

    Raises
    ------
    ValueError
        If no such profile exists; the message lists the ones that do.
    """
    path = folder / f"{name}.yaml"
    if not path.exists():
        raise ValueError(
            f"No definition profile {name!r} in {folder}. Available: "
            f"{', '.join(available_profiles(folder))}."
        )
    with path.open() as handle:
        data = yaml.safe_load(handle)
    if data.get("name") != name:
        raise ValueError(f"{path}: 'name' is {data.get('name')!r}, expected {name!r}")
    return Definition(**data)
