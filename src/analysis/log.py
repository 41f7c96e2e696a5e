"""The package's one named logger.

Every module logs through ``logger`` from here. Messages never contain student
identifiers: log counts, file names and school ids only.
"""

import logging

logger = logging.getLogger("analysis")
logger.addHandler(logging.NullHandler())


def configure_logging(level: int = logging.INFO) -> None:
    """Send the package's log records to standard error, for command-line runs."""
    if any(getattr(h, "_analysis_cli", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s",
                                           "%H:%M:%S"))
    handler._analysis_cli = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
