"""The same metric expressions on PostgreSQL and Spark give DuckDB's results.

One small sample district (1,500 students, with its injected bad rows) is computed
on embedded DuckDB, then on a real PostgreSQL server and on Spark in local mode
(one session for the whole test run); every column of the aggregate table, the
student facts, the modality table and the quality ledger must agree.

Servers: PostgreSQL from ``$ANALYSIS_TEST_POSTGRES_URL`` (``.ci/run`` installs
Debian's package, starts it on loopback and sets it); Spark needs ``pyspark`` (the
``[spark]`` extra) and Java 17. Locally a missing engine skips its tests with the
reason; with ``CI=true`` it fails them.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pandas as pd
import pytest

from analysis.aggregate import build_aggregate
from analysis.definitions import load_definition
from analysis.engine import connect
from analysis.settings import EngineSettings, load_settings
from analysis.sources.student_files import read_student_files

AS_OF = dt.date(2026, 11, 30)
POSTGRES_URL = "ANALYSIS_TEST_POSTGRES_URL"

AGGREGATE_KEYS = ["level", "district_id", "school_id", "as_of_date", "grade",
                  "group_type", "group_value"]
STUDENT_KEYS = ["level", "unit_id", "student_id"]
MODALITY_KEYS = ["level", "unit_id", "modality"]


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI must provide this engine (see .ci/run).")
    pytest.skip(message)


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    """A seeded 1,500-student sample district, read and validated once."""
    from analysis.sample import generate_sample_district

    folder = tmp_path_factory.mktemp("parity")
    generate_sample_district(folder, n_students=1500, seed=7, as_of=AS_OF.isoformat())
    return read_student_files(folder)


def _run(district, con):
    return build_aggregate(district, load_settings(), load_definition(), as_of=AS_OF,
                           source="sample", con=con)


@pytest.fixture(scope="module")
def reference(district):
    """The run on embedded DuckDB."""
    return _run(district, connect(EngineSettings()))


@pytest.fixture(scope="module")
def postgres_con():
    url = os.environ.get(POSTGRES_URL, "")
    if not url:
        _unavailable(f"${POSTGRES_URL} is not set (no PostgreSQL server to test on)")
    try:
        return connect(EngineSettings(backend="postgres", url=url))
    except Exception as exc:  # a refused connection or a missing driver
        _unavailable(f"cannot connect to PostgreSQL at ${POSTGRES_URL}: {exc}")


@pytest.fixture(scope="session")
def spark_con():
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _unavailable("pyspark is not installed (pip install -e '.[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("Java is not installed (Spark needs Java 17)")
    return connect(EngineSettings(backend="spark", url="local[2]"))


def _sorted(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in key order, with types every engine returns alike."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = pd.to_datetime(out[col]).astype("datetime64[ns]")
        elif pd.api.types.is_bool_dtype(out[col]) or out[col].dtype == object and \
                out[col].dropna().map(type).eq(bool).all() and out[col].notna().any():
            out[col] = out[col].astype("boolean")
        elif pd.api.types.is_numeric_dtype(out[col]):
            out[col] = out[col].astype("Float64")
        else:
            out[col] = out[col].astype("string")
    return out.sort_values(keys, kind="stable").reset_index(drop=True)


def assert_same_run(got, expected) -> None:
    """Every column of every output equal (floats to 1e-9, relative)."""
    for name, keys in (("aggregate", AGGREGATE_KEYS), ("students", STUDENT_KEYS),
                       ("modality", MODALITY_KEYS)):
        left = _sorted(getattr(got, name), keys)
        right = _sorted(getattr(expected, name)[list(getattr(got, name).columns)], keys)
        assert len(left) == len(right), (
            f"{name}: {len(left)} rows, expected {len(right)}")
        pd.testing.assert_frame_equal(left, right, check_exact=False, rtol=1e-9,
                                      atol=1e-9, obj=name)
    assert got.ledger.to_dict() == expected.ledger.to_dict()
    assert got.conflicts == expected.conflicts


def test_reference_run_is_not_empty(reference):
    # A parity test over empty tables would prove nothing.
    assert len(reference.aggregate) > 1000 and len(reference.students) > 1000
    assert reference.conflicts > 0
    assert reference.aggregate["chronically_absent"].sum() > 0


def test_postgres_matches_duckdb(district, reference, postgres_con):
    assert_same_run(_run(district, postgres_con), reference)


def test_spark_matches_duckdb(district, reference, spark_con):
    assert_same_run(_run(district, spark_con), reference)


def test_fetch_gives_what_to_pandas_gives_with_nulls_in_every_type():
    # engine.fetch replaces Ibis's to_pandas for large results: same dtypes, same
    # values, nulls included, or every reader downstream would see a change.
    import pyarrow as pa

    from analysis.engine import fetch

    con = connect(EngineSettings())
    table = con.create_table("mixed", pa.table({
        "count": pa.array([1, None, 3], pa.int64()),
        "whole": pa.array([1, 2, 3], pa.int64()),
        "small": pa.array([1, None, 3], pa.int32()),
        "flag": pa.array([True, None, False]),
        "full_flag": pa.array([True, True, False]),
        "name": pa.array(["a", None, "c"]),
        "rate": pa.array([0.5, None, 0.25]),
        "day": pa.array([dt.date(2026, 9, 1), None, dt.date(2026, 9, 2)]),
        "at": pa.array([dt.datetime(2026, 9, 1), None, dt.datetime(2026, 9, 2)]),
    }))

    got, expected = fetch(table), table.to_pandas()

    assert list(got.dtypes) == list(expected.dtypes)
    pd.testing.assert_frame_equal(got, expected)
    assert got["count"].isna().tolist() == [False, True, False]
