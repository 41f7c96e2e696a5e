"""The data contract for student-level inputs, written as pandera schemas.

A district brings six tables, each a CSV or Parquet file named for the table
(``students.csv`` or ``students.parquet`` and so on) in one folder:

========================  =====================================================
table                     columns (``?`` = optional)
========================  =====================================================
``schools`` (optional)    school_id, school_name, school_level?, district_id?,
                          district_name?
``students``              student_id, grade?, race_ethnicity, gender,
                          english_learner, disability, economically_disadvantaged,
                          homeless, foster
``enrollments``           student_id, school_id, grade, entry_date, exit_date?
``calendar``              school_id, date, instructional, event?,
                          instructional_minutes?
``attendance``            student_id, school_id, date, category, minutes_missed?,
                          fraction_missed?, modality?
``interventions`` (opt.)  student_id, school_id, date, intervention_type, kind
========================  =====================================================

Attendance may be exception-only (absences only) or affirmative (every day): a
day enrolled with no attendance row counts as present, in person.

Rows that break a rule are set aside with a reason (or, with ``strict``, stop the
run); missing columns or an unreadable file always stop the run with a message that
names the file and what was expected.
"""

from __future__ import annotations

import pandera.pandas as pa

from analysis.schema import GENDER_VALUES, GRADES, RACE_ETHNICITY_VALUES

#: Attendance categories. Which of them count as absent is a definition setting.
ATTENDANCE_CATEGORIES: tuple[str, ...] = (
    "present",
    "excused",
    "unexcused",
    "suspension",            # out-of-school suspension
    "in_school_suspension",  # counts as present under every profile shipped
)

#: How the student took part that day (Attendance Works' distance-learning guidance).
MODALITIES: tuple[str, ...] = ("in_person", "remote_live", "remote_async",
                               "independent_study")

INTERVENTION_KINDS: tuple[str, ...] = ("supportive", "punitive")

#: Intervention types the sample district uses; districts may log others.
INTERVENTION_TYPES: dict[str, str] = {
    "family_outreach": "supportive",
    "home_visit": "supportive",
    "mentoring": "supportive",
    "attendance_plan": "supportive",
    "truancy_letter": "punitive",
    "attendance_board_referral": "punitive",
    "court_referral": "punitive",
    "suspension": "punitive",
}

FLAG_COLUMNS: tuple[str, ...] = (
    "english_learner",
    "disability",
    "economically_disadvantaged",
    "homeless",
    "foster",
)

_ID = {"dtype": "string", "nullable": False, "coerce": True}


def _id_column(**extra) -> pa.Column:
    return pa.Column(checks=[pa.Check.str_length(min_value=1)], **_ID, **extra)


def _date_column(nullable: bool = False, required: bool = True) -> pa.Column:
    return pa.Column("datetime64[ns]", nullable=nullable, coerce=True,
                     required=required)


SCHEMAS: dict[str, pa.DataFrameSchema] = {
    "schools": pa.DataFrameSchema(
        {
            "school_id": _id_column(unique=True),
            "school_name": pa.Column("string", nullable=False, coerce=True),
            "school_level": pa.Column("string", nullable=True, coerce=True,
                                      required=False),
            "district_id": pa.Column("string", nullable=True, coerce=True,
                                     required=False),
            "district_name": pa.Column("string", nullable=True, coerce=True,
                                       required=False),
        },
        name="schools",
    ),
    "students": pa.DataFrameSchema(
        {
            "student_id": _id_column(unique=True),
            "grade": pa.Column("string", pa.Check.isin(GRADES), nullable=True,
                               coerce=True, required=False),
            "race_ethnicity": pa.Column("string", pa.Check.isin(RACE_ETHNICITY_VALUES),
                                        nullable=False, coerce=True),
            "gender": pa.Column("string", pa.Check.isin(GENDER_VALUES), nullable=False,
                                coerce=True),
            **{
                flag: pa.Column("boolean", nullable=False, coerce=True)
                for flag in FLAG_COLUMNS
            },
        },
        name="students",
    ),
    "enrollments": pa.DataFrameSchema(
        {
            "student_id": _id_column(),
            "school_id": _id_column(),
            "grade": pa.Column("string", pa.Check.isin(GRADES), nullable=False,
                               coerce=True),
            "entry_date": _date_column(),
            "exit_date": _date_column(nullable=True, required=False),
        },
        checks=[
            pa.Check(
                lambda df: (df["exit_date"].isna()
                            | (df["exit_date"] >= df["entry_date"])),
                element_wise=False,
                error="exit_date is before entry_date",
                name="exit_on_or_after_entry",
                ignore_na=False,
            )
        ],
        name="enrollments",
    ),
    "calendar": pa.DataFrameSchema(
        {
            "school_id": _id_column(),
            "date": _date_column(),
            "instructional": pa.Column("boolean", nullable=False, coerce=True),
            "event": pa.Column("string", nullable=True, coerce=True, required=False),
            "instructional_minutes": pa.Column("Float64", pa.Check.gt(0), nullable=True,
                                               coerce=True, required=False),
        },
        unique=["school_id", "date"],
        name="calendar",
    ),
    "attendance": pa.DataFrameSchema(
        {
            "student_id": _id_column(),
            "school_id": _id_column(),
            "date": _date_column(),
            "category": pa.Column("string", pa.Check.isin(ATTENDANCE_CATEGORIES),
                                  nullable=False, coerce=True),
            "minutes_missed": pa.Column("Float64", pa.Check.ge(0), nullable=True,
                                        coerce=True, required=False),
            "fraction_missed": pa.Column("Float64", pa.Check.in_range(0, 1),
                                         nullable=True, coerce=True, required=False),
            "modality": pa.Column("string", pa.Check.isin(MODALITIES), nullable=True,
                                  coerce=True, required=False),
        },
        name="attendance",
    ),
    "interventions": pa.DataFrameSchema(
        {
            "student_id": _id_column(),
            "school_id": _id_column(),
            "date": _date_column(),
            "intervention_type": pa.Column("string", nullable=False, coerce=True),
            "kind": pa.Column("string", pa.Check.isin(INTERVENTION_KINDS),
                              nullable=False, coerce=True),
        },
        name="interventions",
    ),
}

#: Tables a run cannot do without; the others are optional.
REQUIRED_TABLES: tuple[str, ...] = ("students", "enrollments", "calendar", "attendance")
OPTIONAL_TABLES: tuple[str, ...] = ("schools", "interventions")


def required_columns(table: str) -> list[str]:
    """Return the columns a ``table`` file must have, in contract order."""
    schema = SCHEMAS[table]
    return [name for name, col in schema.columns.items() if col.required]


def all_columns(table: str) -> list[str]:
    """Return every column the contract knows for ``table``, required or optional."""
    return list(SCHEMAS[table].columns)
