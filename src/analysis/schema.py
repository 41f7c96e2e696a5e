"""The vocabulary shared by every stage: student groups, grades and the aggregate table.

The aggregate table is the single source of every published figure. It is long and
tidy: one row per (source, definition, school year, as-of date, level, unit, grade,
group type, group value). Student-level sources fill every column; published
aggregate sources (NYC DOE, Connecticut EdSight) fill what they can and leave the
rest missing, with ``note`` saying why.
"""

from __future__ import annotations

import pandas as pd

#: Student group dimensions, in the order reports show them. ``all`` is every student.
GROUP_TYPES: tuple[str, ...] = (
    "all",
    "race_ethnicity",
    "gender",
    "english_learner",
    "disability",
    "economically_disadvantaged",
    "homeless",
    "foster",
)

#: Plain-language names of the group dimensions, for tables and charts.
GROUP_TYPE_LABELS: dict[str, str] = {
    "all": "All students",
    "race_ethnicity": "Race/ethnicity",
    "gender": "Gender",
    "english_learner": "English learners",
    "disability": "Students with disabilities",
    "economically_disadvantaged": "Economically disadvantaged",
    "homeless": "Homeless / temporary housing",
    "foster": "Foster youth",
}

#: The value labels used for the yes/no group dimensions: (in the group, not in it).
FLAG_GROUP_VALUES: dict[str, tuple[str, str]] = {
    "english_learner": ("English learner", "Not English learner"),
    "disability": ("Student with disability", "Student without disability"),
    "economically_disadvantaged": ("Economically disadvantaged",
                                   "Not economically disadvantaged"),
    "homeless": ("Homeless", "Not homeless"),
    "foster": ("Foster youth", "Not foster youth"),
}

ALL_STUDENTS = "All students"
ALL_GRADES = "All"

#: Race/ethnicity values accepted in the student contract.
RACE_ETHNICITY_VALUES: tuple[str, ...] = (
    "American Indian",
    "Asian",
    "Black",
    "Hispanic",
    "Pacific Islander",
    "White",
    "Multiracial",
)

GENDER_VALUES: tuple[str, ...] = ("Female", "Male", "Nonbinary")

#: Grade labels, in school order. Sources map their own codes onto these.
GRADES: tuple[str, ...] = ("PK", "K", "1", "2", "3", "4", "5", "6", "7", "8",
                           "9", "10", "11", "12")

LEVELS: tuple[str, ...] = ("school", "district", "state")

#: Attendance bands (Attendance Works), lowest absence first.
BANDS: tuple[str, ...] = ("satisfactory", "at_risk", "moderate_chronic",
                          "severe_chronic")

BAND_LABELS: dict[str, str] = {
    "satisfactory": "Satisfactory (under 5%)",
    "at_risk": "At risk (5% to under 10%)",
    "moderate_chronic": "Moderate chronic (10% to under 20%)",
    "severe_chronic": "Severe chronic (20% or more)",
}

#: Plain names of the learning modalities (contract codes on the left).
MODALITY_LABELS: dict[str, str] = {
    "in_person": "In person",
    "remote_live": "Remote, live",
    "remote_async": "Remote, on their own time",
    "independent_study": "Independent study",
}

#: Columns of the aggregate table, with their pandas dtypes.
AGGREGATE_COLUMNS: dict[str, str] = {
    "source": "string",            # e.g. "sample", "nyc-doe", "ct-edsight", a
                                   # district's name
    "definition": "string",        # definition profile in force, e.g.
                                   # "attendance-works"
    "school_year": "string",       # "2025-26"
    "as_of_date": "datetime64[ns]",  # year-to-date figures up to and including
                                     # this date
    "level": "string",             # "school", "district" or "state"
    "district_id": "string",
    "district_name": "string",
    "school_id": "string",         # missing on district and state rows
    "school_name": "string",
    "grade": "string",             # one of GRADES, or "All"
    "group_type": "string",        # one of GROUP_TYPES
    "group_value": "string",       # e.g. "Black", "English learner", "All students"
    "students_enrolled": "Int64",  # students with at least one day enrolled
    "students": "Int64",           # eligible students: the chronic-absence denominator
    "chronically_absent": "Int64",
    "satisfactory": "Int64",
    "at_risk": "Int64",
    "moderate_chronic": "Int64",
    "severe_chronic": "Int64",
    "tier2": "Int64",              # students meeting a Tier 2 trigger (and not Tier 3)
    "tier3": "Int64",              # students meeting a Tier 3 trigger
    "days_enrolled": "Float64",    # student-days enrolled, eligible students
    "days_absent": "Float64",
    "chronic_absence_rate": "Float64",  # chronically_absent / students, 0 to 1
    "ci_low": "Float64",           # Wilson 95% interval on chronic_absence_rate
    "ci_upp": "Float64",
    "attendance_rate": "Float64",  # 1 - days_absent / days_enrolled
    "suppressed_at_source": "boolean",  # the publisher hid this cell
    "approximate": "boolean",      # counts derived from rates, not counted
    "note": "string",              # why a column is missing or approximate
}


def conform_aggregate(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` with every aggregate column, in order and with the declared
    dtypes.

    Columns the frame lacks are added as missing. Extra columns raise, so a typo in an
    adapter cannot slip a column past the readers.

    Raises
    ------
    ValueError
        If ``frame`` has columns that are not aggregate columns.
    """
    extra = sorted(set(frame.columns) - set(AGGREGATE_COLUMNS))
    if extra:
        raise ValueError(
            f"Columns {extra} are not part of the aggregate table; expected only "
            f"{list(AGGREGATE_COLUMNS)}."
        )

    out = frame.copy(deep=False)  # copy-on-write: the caller's frame is not changed
    for col, dtype in AGGREGATE_COLUMNS.items():
        if col not in out.columns:
            out[col] = pd.Series(pd.NA, index=out.index, dtype=dtype)
        elif dtype == "datetime64[ns]":
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
        else:
            out[col] = out[col].astype(dtype)
    return out[list(AGGREGATE_COLUMNS)].reset_index(drop=True)
