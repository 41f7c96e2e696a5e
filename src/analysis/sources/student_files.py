"""Read a district's student-level files and hold them to the data contract.

Each table is a CSV or Parquet file named for it (``attendance.parquet``,
``students.csv``, ...) in one folder; see :mod:`analysis.contract`. Rows that break a
rule are set aside with a reason in the :class:`~analysis.quality.QualityLedger`, or,
with ``strict=True``, stop the run with an error that names the file, line, column,
value and what was expected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from analysis.contract import (
    FLAG_COLUMNS,
    OPTIONAL_TABLES,
    REQUIRED_TABLES,
    SCHEMAS,
    all_columns,
    required_columns,
)
from analysis.log import logger
from analysis.quality import DataContractError, QualityLedger

SUFFIXES = (".parquet", ".csv", ".csv.gz")

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_BOOLEAN_COLUMNS = {"students": FLAG_COLUMNS, "calendar": ("instructional",)}


@dataclass
class StudentData:
    """The validated tables of one folder, with the ledger of what was set aside."""

    folder: Path
    tables: dict[str, pd.DataFrame]
    files: dict[str, Path]
    ledger: QualityLedger = field(default_factory=QualityLedger)

    def __getitem__(self, table: str) -> pd.DataFrame:
        return self.tables[table]


def find_table_file(folder: Path, table: str) -> Path | None:
    """Return the file holding ``table`` in ``folder``, or None when there is none.

    Raises
    ------
    DataContractError
        If the table is there in more than one format, which would be ambiguous.
    """
    found = [folder / f"{table}{suffix}" for suffix in SUFFIXES
             if (folder / f"{table}{suffix}").exists()]
    if len(found) > 1:
        raise DataContractError(
            f"{folder}: both {found[0].name} and {found[1].name} exist; keep one file "
            f"per table so it is clear which one is read."
        )
    return found[0] if found else None


def _read_raw(path: Path) -> pd.DataFrame:
    """Read a file with every column as text (CSV) or as stored (Parquet)."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except Exception as exc:  # the reader's own message is the useful part
        kind = ("Parquet" if path.suffix == ".parquet"
                else "CSV (comma-separated, UTF-8)")
        raise DataContractError(
            f"Could not read {path}: {exc}. Check that it is a valid "
            f"{kind} file."
        ) from exc


def _parse_booleans(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Turn yes/no, true/false, 1/0 text into booleans; leave anything else as text."""
    for col in columns:
        if col not in frame.columns or pd.api.types.is_bool_dtype(frame[col]):
            continue
        text = frame[col].astype("string").str.strip().str.lower()
        parsed = pd.Series(frame[col], dtype=object).copy()
        parsed[text.isin(_TRUE).fillna(False).to_numpy()] = True
        parsed[text.isin(_FALSE).fillna(False).to_numpy()] = False
        frame[col] = parsed
    return frame


def _parse_values(table: str, frame: pd.DataFrame, path: Path, ledger: QualityLedger,
                  strict: bool) -> pd.DataFrame:
    """Convert date and number columns before pandera, setting aside what will not
    parse.

    pandera checks every row one by one once a single value cannot be converted
    (a 20,000-row file with one bad date took over a minute), so conversion happens
    here, vectorised, with the same reasons and line numbers.
    """
    schema = SCHEMAS[table]
    bad_rows: list[pd.Index] = []
    for column, spec in schema.columns.items():
        if column not in frame.columns:
            continue
        dtype = str(spec.dtype)
        if dtype.startswith("datetime64"):
            parsed = pd.to_datetime(frame[column], errors="coerce", format="mixed")
            expected = _describe_check("coerce_dtype('datetime64[ns]')")
        elif dtype == "Float64":
            parsed = pd.to_numeric(frame[column], errors="coerce")
            expected = _describe_check("coerce_dtype('Float64')")
        else:
            continue
        failed = parsed.isna() & frame[column].notna()
        if failed.any():
            rows = frame.index[failed]
            if strict:
                raise DataContractError(
                    f"{path} line {rows[0]}, column {column!r}: value "
                    f"{frame.at[rows[0], column]!r}; expected {expected}. ({len(rows)} "
                    f"rows break the contract; run without --strict to set them aside.)"
                )
            examples = [{"row": int(r), "column": column,
                         "value": str(frame.at[r, column]), "expected": expected}
                        for r in rows[:5]]
            ledger.set_aside(table, f"column {column}: expected {expected}",
                             int(failed.sum()), examples)
            bad_rows.append(rows)
        frame[column] = parsed
    if bad_rows:
        frame = frame.drop(index=bad_rows[0].append(bad_rows[1:]).unique())
    return frame


def _describe_check(check: str) -> str:
    """Say in words what a pandera check expected."""
    if check.startswith("coerce_dtype") or check.startswith("dtype"):
        kind = re.search(r"'(.*)'", check)
        kind = kind.group(1) if kind else check
        return {
            "datetime64[ns]": "a date such as 2026-09-08",
            "boolean": "true or false (also yes/no, 1/0)",
            "Float64": "a number",
            "string": "text",
        }.get(kind, kind)
    if check.startswith("isin("):
        return "one of " + check[len("isin("):-1]
    if check == "not_nullable":
        return "a value (the cell is empty)"
    if check in ("field_uniqueness", "multiple_fields_uniqueness"):
        return "a value that is not repeated"
    if check.startswith("greater_than_or_equal_to"):
        return "a number >= " + check.split("(")[1].rstrip(")")
    if check.startswith("greater_than"):
        return "a number > " + check.split("(")[1].rstrip(")")
    if check.startswith("in_range"):
        return "a number in " + check.split("(", 1)[1].rstrip(")")
    if check.startswith("str_length"):
        return "a non-empty identifier"
    return check


def _failures(schema: pa.DataFrameSchema, frame: pd.DataFrame):
    """Validate; return (validated frame or None, failure cases with a row index)."""
    try:
        return schema.validate(frame, lazy=True), None
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        return None, cases[cases["index"].notna()]


def validate_table(table: str, frame: pd.DataFrame, path: Path, ledger: QualityLedger,
                   strict: bool = False) -> pd.DataFrame:
    """Validate ``frame`` against the contract for ``table``; set aside the bad rows.

    Rows are numbered as lines of the file (the header is line 1) in reasons and
    errors. A row that breaks several rules is set aside once, for its first reason.

    Raises
    ------
    DataContractError
        With ``strict=True``, on the first bad row; always, when a required column is
        missing or no row survives.
    """
    missing = [col for col in required_columns(table) if col not in frame.columns]
    if missing:
        raise DataContractError(
            f"{path}: missing column(s) {missing}. The {table} table needs "
            f"{required_columns(table)}; found {list(frame.columns)}. "
            f"See 'Bring your own data' in README.md."
        )
    extra = [col for col in frame.columns if col not in all_columns(table)]
    if extra:
        ledger.note(f"{path.name}: columns {extra} are not in the contract and "
                    f"were ignored")
        frame = frame.drop(columns=extra)

    frame = _parse_booleans(frame.copy(), _BOOLEAN_COLUMNS.get(table, ()))
    frame.index = pd.RangeIndex(2, len(frame) + 2)  # index = line number in the file
    frame = _parse_values(table, frame, path, ledger, strict)

    # Validate, drop the failing rows and validate again: a value that cannot be
    # converted hides the other checks of its column until it is gone.
    schema = SCHEMAS[table]
    for _ in range(4):
        validated, cases = _failures(schema, frame)
        if validated is not None:
            break
        cases = cases.drop_duplicates(subset=["index"])
        if strict:
            first = cases.iloc[0]
            raise DataContractError(
                f"{path} line {int(first['index'])}, column {first['column']!r}: value "
                f"{first['failure_case']!r}; expected "
                f"{_describe_check(str(first['check']))}. "
                f"({len(cases)} rows break the contract; run without --strict to set "
                f"them aside and see them all in the data-quality box.)"
            )
        for (column, check), group in cases.groupby(["column", "check"], sort=True):
            reason = f"column {column}: expected {_describe_check(str(check))}"
            examples = [{"row": int(r["index"]), "column": column,
                         "value": str(r["failure_case"]),
                         "expected": _describe_check(str(check))}
                        for _, r in group.head(5).iterrows()]
            ledger.set_aside(table, reason, len(group), examples)
        frame = frame.drop(index=cases["index"].astype(int).to_numpy())
    else:
        raise DataContractError(
            f"{path}: validation did not settle; please report this.")

    if validated.empty and len(frame.index) == 0 and ledger.entries[table].rows_read:
        raise DataContractError(
            f"{path}: every row breaks the data contract; see the reasons above. "
            f"Is this the right file for the {table} table?"
        )
    return validated.reset_index(drop=True)


def _check_references(data: dict[str, pd.DataFrame], ledger: QualityLedger) -> None:
    """Set aside enrollments that point at unknown students or schools without a
    calendar."""
    enrollments = data["enrollments"]
    known_student = enrollments["student_id"].isin(data["students"]["student_id"])
    has_calendar = enrollments["school_id"].isin(data["calendar"]["school_id"])
    for mask, reason in (
        (~known_student, "enrollment for a student who is not in the students file"),
        (known_student & ~has_calendar, "enrollment at a school with no calendar rows"),
    ):
        ledger.set_aside("enrollments", reason, int(mask.sum()))
    data["enrollments"] = (enrollments[known_student & has_calendar]
                           .reset_index(drop=True))


def read_student_files(folder: Path, strict: bool = False,
                       ledger: QualityLedger | None = None) -> StudentData:
    """Read and validate every contract table found in ``folder``.

    Parameters
    ----------
    folder : Path
        Folder holding ``students``, ``enrollments``, ``calendar`` and ``attendance``
        files (CSV or Parquet), and optionally ``schools`` and ``interventions``.
    strict : bool
        Stop at the first row that breaks the contract instead of setting it aside.
    ledger : QualityLedger, optional
        Ledger to record into; a new one by default.

    Returns
    -------
    StudentData

    Raises
    ------
    DataContractError
        When the folder or a required table is missing, a file cannot be read, or a
        required column is absent.
    """
    folder = Path(folder)
    ledger = ledger if ledger is not None else QualityLedger()
    if not folder.is_dir():
        raise DataContractError(
            f"Data folder {folder} does not exist. Run `make data` for the sample "
            f"district or pass DATA=<folder with your files>."
        )

    tables: dict[str, pd.DataFrame] = {}
    files: dict[str, Path] = {}
    for table in REQUIRED_TABLES + OPTIONAL_TABLES:
        path = find_table_file(folder, table)
        if path is None:
            if table in REQUIRED_TABLES:
                raise DataContractError(
                    f"No {table} file in {folder}: expected {table}.csv or "
                    f"{table}.parquet. See 'Bring your own data' in README.md."
                )
            logger.info("no %s file in %s; that table is optional", table, folder)
            continue
        raw = _read_raw(path)
        ledger.add_file(table, path.name, len(raw))
        tables[table] = validate_table(table, raw, path, ledger, strict=strict)
        files[table] = path

    _check_references(tables, ledger)
    return StudentData(folder=folder, tables=tables, files=files, ledger=ledger)
