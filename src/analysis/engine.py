"""The engine that runs the heavy step: an Ibis connection (embedded DuckDB by default).

Metric expressions in :mod:`analysis.metrics` are written in Ibis, so the same code
can run on another Ibis backend (PostgreSQL, Spark) when the data lives there. This
module is the only place that knows which backend is in use.
"""

from __future__ import annotations

import ibis
import pandas as pd

from analysis.log import logger
from analysis.settings import EngineSettings


def connect(settings: EngineSettings | None = None) -> ibis.BaseBackend:
    """Open the engine named in ``settings`` (an in-memory DuckDB by default)."""
    settings = settings or EngineSettings()
    database = settings.database or ":memory:"
    con = ibis.duckdb.connect(
        database, threads=settings.threads, memory_limit=settings.memory_limit
    )
    logger.info("engine: duckdb (%s), %d threads", database, settings.threads)
    return con


def load_frames(con: ibis.BaseBackend, frames: dict[str, pd.DataFrame]) -> dict[str, ibis.Table]:
    """Copy small validated pandas tables into the engine and return them as Ibis tables."""
    return {name: con.create_table(name, frame, overwrite=True)
            for name, frame in frames.items()}
