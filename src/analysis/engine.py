"""The engine of the heavy step: an Ibis connection to DuckDB, PostgreSQL or Spark.

Metric expressions in :mod:`analysis.metrics` are written in Ibis, so the same code
runs on embedded DuckDB (the default), inside a district's PostgreSQL warehouse or
on a Spark cluster. This module is the only place that knows which backend is in
use: :func:`connect` opens the one named in ``params/settings.yaml`` (``engine:``),
:func:`load_frames` copies small pandas tables in, and :func:`scan_parquet` /
:func:`warehouse_tables` give the contract tables where they already live, without
going through pandas.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import ibis.expr.types as ir
import pandas as pd

from analysis.log import logger
from analysis.quality import DataContractError, QualityLedger
from analysis.settings import EngineSettings

#: Environment variable holding the connection string when ``engine.url`` is empty
#: (keeps passwords out of params/settings.yaml).
URL_VARIABLE = "ANALYSIS_ENGINE_URL"

CONTRACT_TABLES = ("students", "enrollments", "calendar", "attendance", "schools")
REQUIRED = ("students", "enrollments", "calendar", "attendance")
DATE_COLUMNS = {"enrollments": ("entry_date", "exit_date"), "calendar": ("date",),
                "attendance": ("date",)}


@dataclass
class EngineTables:
    """Contract tables that already live in the engine, with their quality ledger.

    Made by :func:`scan_parquet` or :func:`warehouse_tables`; passed to
    :func:`analysis.aggregate.build_aggregate` instead of pandas tables.
    """

    tables: dict[str, ir.Table]
    ledger: QualityLedger = field(default_factory=QualityLedger)
    folder: Path | None = None

    def __getitem__(self, table: str) -> ir.Table:
        return self.tables[table]


def connection_url(settings: EngineSettings) -> str:
    """The connection string: ``settings.url``, else ``$ANALYSIS_ENGINE_URL``."""
    return settings.url or os.environ.get(URL_VARIABLE, "")


def connect(settings: EngineSettings | None = None) -> ibis.BaseBackend:
    """Open the engine named in ``settings`` (an in-memory DuckDB by default).

    Parameters
    ----------
    settings : EngineSettings, optional
        ``backend`` is ``duckdb`` (``database`` a file, or empty for memory;
        ``threads``, ``memory_limit`` and ``temp_directory`` for spilling),
        ``postgres`` (``url`` such as ``postgresql://user:password@host:5432/db``)
        or ``spark`` (``url`` a Spark master such as ``local[2]`` or
        ``spark://host:7077``; the running session is reused when there is one).

    Returns
    -------
    ibis.BaseBackend

    Raises
    ------
    ValueError
        When PostgreSQL has no connection string.
    """
    settings = settings or EngineSettings()
    if settings.backend == "postgres":
        url = connection_url(settings)
        if not url:
            raise ValueError(
                f"engine.backend is postgres but no connection string was given: set "
                f"engine.url in params/settings.yaml or ${URL_VARIABLE}, e.g. "
                f"postgresql://analysis@127.0.0.1:5432/analysis")
        con = ibis.connect(url)
        logger.info("engine: postgres (%s)", url.rsplit("@", 1)[-1])
        return con
    if settings.backend == "spark":
        return ibis.pyspark.connect(spark_session(connection_url(settings) or None,
                                                  settings))

    database = settings.database or ":memory:"
    config = {"preserve_insertion_order": False}
    if settings.temp_directory:
        config["temp_directory"] = settings.temp_directory
    con = ibis.duckdb.connect(database, threads=settings.threads,
                              memory_limit=settings.memory_limit, **config)
    logger.info("engine: duckdb (%s), %d threads, memory limit %s", database,
                settings.threads, settings.memory_limit)
    return con


def spark_session(master: str | None = None, settings: EngineSettings | None = None):
    """The active Spark session, or a new one on ``master`` (``local[2]`` by default).

    A new local session has its web UI off and few shuffle partitions, which suits
    one machine; on a cluster, settings come from ``spark-submit`` or
    ``spark-defaults.conf`` as usual.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    threads = settings.threads if settings else 2
    builder = SparkSession.builder.appName("analysis").master(
        master or f"local[{threads}]")
    if (master or "local").startswith("local"):
        builder = (builder.config("spark.ui.enabled", "false")
                   .config("spark.ui.showConsoleProgress", "false")
                   .config("spark.sql.shuffle.partitions", str(max(4, 2 * threads)))
                   .config("spark.driver.memory", settings.memory_limit.lower()
                           .replace("gb", "g") if settings else "2g"))
    # Metric expressions make long query plans; printing them for adaptive
    # execution's event log took minutes, so plans strings are cut short.
    builder = (builder.config("spark.sql.session.timeZone", "UTC")
               .config("spark.sql.maxPlanStringLength", "10000")
               .config("spark.sql.adaptive.enabled", "false"))
    logger.info("engine: spark (%s)", master or f"local[{threads}]")
    return builder.getOrCreate()


def load_frames(con: ibis.BaseBackend,
                frames: dict[str, pd.DataFrame]) -> dict[str, ir.Table]:
    """Copy small pandas tables into the engine and return them as Ibis tables.

    DuckDB gets tables, PostgreSQL temporary tables (gone when the session ends,
    so a warehouse is left as it was) and Spark temporary views.
    """
    tables = {}
    for name, frame in frames.items():
        frame = _plain_dtypes(frame)
        if con.name == "duckdb":
            tables[name] = con.create_table(name, frame, overwrite=True)
        elif con.name == "postgres":
            tables[name] = con.create_table(f"analysis_{name}", frame, temp=True,
                                            overwrite=True)
        else:
            tables[name] = con.create_view(f"analysis_{name}", ibis.memtable(frame),
                                           overwrite=True)
    return tables


def materialize(con: ibis.BaseBackend, table: ir.Table) -> ir.Table:
    """Compute ``table`` now and keep it in the engine for the next steps.

    DuckDB and PostgreSQL get a temporary table (``Table.cache``). On Spark the
    result is checkpointed locally, which also cuts its lineage: with Spark's lazy
    cache every later plan would carry every earlier one, and planning them grew
    to minutes.
    """
    if con.name != "pyspark":
        return table.cache()
    from ibis.util import gen_name

    name = gen_name("step")
    frame = con._session.sql(con.compile(table)).localCheckpoint(eager=True)
    frame.createOrReplaceTempView(name)
    return con.table(name)


def release(con: ibis.BaseBackend, *tables: ir.Table) -> None:
    """Free tables kept by :func:`materialize` that no later step reads.

    On DuckDB the kept tables count against the memory limit, and a run that keeps
    every step spills to disk long before it needs to.
    """
    for table in tables:
        if isinstance(table, ir.CachedTable):
            table.release()
        elif con.name == "pyspark":
            con._session.catalog.dropTempView(table.get_name())


def fetch(table: ir.Table) -> pd.DataFrame:
    """Bring an engine table into pandas by way of Arrow.

    The frame has the dtypes and values of ``table.to_pandas()``, which every
    backend gives, at a fraction of the memory for a large result.

    Notes
    -----
    Ibis 12's DuckDB backend turns every column holding a null into a Python list
    on the way to pandas (``to_pylist``): one Python object a cell. For a state's
    aggregate table and student rows (millions of rows) that cost gigabytes of
    memory and most of a step's time. Arrow converts each column in one go;
    ``self_destruct`` frees each Arrow column once pandas has it.
    """
    from ibis.formats.pandas import PandasData

    arrow = table.to_pyarrow()
    frame = arrow.to_pandas(split_blocks=True, self_destruct=True)
    del arrow
    return PandasData.convert_table(frame, table.schema())


def refresh_statistics(con: ibis.BaseBackend) -> None:
    """Let the planner see the sizes of tables just cached (PostgreSQL only).

    PostgreSQL never analyzes temporary tables by itself; without statistics it
    plans nested loops over them and a small district takes minutes.
    """
    if con.name == "postgres":
        con.raw_sql("ANALYZE").close()


def _plain_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Dates as datetime64, text as object: types every backend's upload accepts."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].astype("datetime64[us]")
    return out


def _find(folder: Path, table: str) -> Path | None:
    """``<table>.parquet``, a folder ``<table>/`` of Parquet files, or a CSV file."""
    for candidate in (folder / f"{table}.parquet", folder / table,
                      folder / f"{table}.csv"):
        if candidate.exists():
            return candidate
    return None


def _scan_remote(location: str, con: ibis.BaseBackend) -> EngineTables:
    """Object storage (``s3a://``, ``gs://``, ``abfss://``): one folder per table."""
    ledger = QualityLedger()
    tables: dict[str, ir.Table] = {}
    for table in CONTRACT_TABLES:
        try:
            raw = con.read_parquet(f"{location}/{table}", table_name=f"raw_{table}")
        except Exception as exc:  # the engine's own message names what is missing
            if table in REQUIRED:
                raise DataContractError(
                    f"Could not read {location}/{table}/ (Parquet files): {exc}"
                ) from exc
            continue
        tables[table] = _typed(table, raw)
        ledger.add_file(table, f"{table}/", int(raw.count().to_pandas()))
    logger.info("scanning %s in the engine (%s)", location, con.name)
    return EngineTables(tables=tables, ledger=ledger)


def scan_parquet(folder: Path | str, con: ibis.BaseBackend) -> EngineTables:
    """Open a folder of contract tables in the engine, without reading them.

    Each table is ``<table>.parquet``, a folder ``<table>/`` of Parquet files (a
    billion rows are written in parts) or ``<table>.csv``. Date columns stored as
    text are parsed in the engine; a value that is not a date becomes missing and
    its row is set aside when metrics are computed.

    Parameters
    ----------
    folder : Path or str
        A local folder, or a URL on object storage (``s3a://bucket/path``: Spark,
        or DuckDB with its ``httpfs`` extension) holding one folder per table.
    con : ibis backend
        DuckDB or Spark (PostgreSQL reads its own tables: :func:`warehouse_tables`).

    Returns
    -------
    EngineTables

    Raises
    ------
    DataContractError
        When the folder or a required table is missing.

    Notes
    -----
    Only attendance rows are checked one by one in the engine (unknown category
    codes, missing keys, then the usual reasons); the small tables are taken as
    they are, so run ``make reports SOURCE=student-files`` on a sample of the
    files first to hold them to the full contract.
    """
    if "://" in str(folder):
        return _scan_remote(str(folder).rstrip("/"), con)
    folder = Path(folder)
    if not folder.is_dir():
        raise DataContractError(f"Data folder {folder} does not exist.")
    ledger = QualityLedger()
    tables: dict[str, ir.Table] = {}
    for table in CONTRACT_TABLES:
        path = _find(folder, table)
        if path is None:
            if table in REQUIRED:
                raise DataContractError(
                    f"No {table} table in {folder}: expected {table}.parquet, a folder "
                    f"{table}/ of Parquet files or {table}.csv.")
            continue
        if path.is_dir():
            source = str(path / "*.parquet") if con.name == "duckdb" else str(path)
            raw = con.read_parquet(source, table_name=f"raw_{table}")
        elif path.suffix == ".csv":
            raw = con.read_csv(str(path), table_name=f"raw_{table}")
        else:
            raw = con.read_parquet(str(path), table_name=f"raw_{table}")
        tables[table] = _typed(table, raw)
        if table != "attendance":
            ledger.add_file(table, path.name, int(raw.count().to_pandas()))
    ledger.add_file("attendance", _find(folder, "attendance").name,
                    int(tables["attendance"].count().to_pandas()))
    logger.info("scanning %s in the engine (%s)", folder, con.name)
    return EngineTables(tables=tables, ledger=ledger, folder=folder)


def warehouse_tables(con: ibis.BaseBackend, names: dict[str, str] | None = None,
                     database: str | None = None) -> EngineTables:
    """Contract tables that are already tables or views in the engine.

    Parameters
    ----------
    con : ibis backend
    names : dict, optional
        Contract table -> table name in the warehouse (default: the same name).
    database : str, optional
        Schema (PostgreSQL) or database (Spark) holding them.
    """
    names = names or {}
    ledger = QualityLedger()
    tables = {}
    for table in CONTRACT_TABLES:
        name = names.get(table, table)
        if name not in con.list_tables(database=database):
            if table in REQUIRED:
                raise DataContractError(f"No table {name!r} for {table} in {con.name}.")
            continue
        tables[table] = _typed(table, con.table(name, database=database))
        ledger.add_file(table, name, int(tables[table].count().to_pandas()))
    return EngineTables(tables=tables, ledger=ledger)


def _typed(table: str, raw: ir.Table) -> ir.Table:
    """Parse date columns stored as text; ids as text."""
    changes = {}
    for col in DATE_COLUMNS.get(table, ()):
        if col in raw.columns and raw[col].type().is_string():
            changes[col] = raw[col].nullif("").try_cast("date")
        elif col in raw.columns and raw[col].type().is_timestamp():
            changes[col] = raw[col].date()
    for col in ("student_id", "school_id", "district_id", "grade"):
        if col in raw.columns and not raw[col].type().is_string():
            changes[col] = raw[col].cast("string")
    return raw.mutate(**changes) if changes else raw
