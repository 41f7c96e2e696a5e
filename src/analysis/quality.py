"""The data-quality ledger: rows read = rows used + rows set aside, by reason.

Every reader records what it read and what it set aside in one
:class:`QualityLedger`; the engine adds rows it sets aside (an absence outside
enrollment, a mark on a closed day, a duplicate mark). Reports print
:meth:`QualityLedger.summary`, so nothing is dropped silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from analysis.log import logger

#: At most this many example rows are kept per file and reason.
MAX_EXAMPLES = 20


class DataContractError(ValueError):
    """An input breaks the data contract in a way that stops the run.

    The message names the file, the row and column where known, the value found and
    what was expected, and says what to do next.
    """


@dataclass
class FileEntry:
    """What happened to the rows of one input file."""

    file: str
    table: str
    rows_read: int
    set_aside: Counter = field(default_factory=Counter)
    examples: list[dict] = field(default_factory=list)

    @property
    def rows_set_aside(self) -> int:
        return int(sum(self.set_aside.values()))

    @property
    def rows_used(self) -> int:
        return self.rows_read - self.rows_set_aside


@dataclass
class QualityLedger:
    """Counts of rows read, used and set aside for every input of a run."""

    entries: dict[str, FileEntry] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_file(self, table: str, file: str, rows_read: int) -> None:
        """Record that ``rows_read`` data rows of ``table`` were read from ``file``."""
        self.entries[table] = FileEntry(file=str(file), table=table,
                                        rows_read=int(rows_read))
        logger.info("read %s: %d rows from %s", table, rows_read, file)

    def set_aside(self, table: str, reason: str, count: int,
                  examples: list[dict] | None = None) -> None:
        """Record ``count`` rows of ``table`` set aside for ``reason``.

        ``examples`` are dictionaries with keys such as ``row``, ``column``, ``value``
        and ``expected``; they go to the staff data-quality box, never to logs.
        """
        if count <= 0:
            return
        entry = self.entries[table]
        entry.set_aside[reason] += int(count)
        if entry.rows_set_aside > entry.rows_read:
            raise ValueError(
                f"{table}: {entry.rows_set_aside} rows set aside but only "
                f"{entry.rows_read} were read; a reader counted a row twice."
            )
        for example in (examples or [])[: MAX_EXAMPLES]:
            entry.examples.append({"reason": reason, **example})
        logger.warning("%s (%s): %d rows set aside: %s", table, entry.file, count,
                       reason)

    def note(self, text: str) -> None:
        """Record a data-quality observation that sets no row aside."""
        self.notes.append(text)
        logger.warning(text)

    def summary(self) -> pd.DataFrame:
        """Return one row per table and reason: rows read, used and set aside.

        The table row with an empty reason carries the totals.
        """
        rows = []
        for entry in self.entries.values():
            rows.append({
                "table": entry.table, "file": entry.file, "rows_read": entry.rows_read,
                "rows_used": entry.rows_used, "rows_set_aside": entry.rows_set_aside,
                "reason": "",
            })
            for reason, count in sorted(entry.set_aside.items()):
                rows.append({
                    "table": entry.table, "file": entry.file, "rows_read": pd.NA,
                    "rows_used": pd.NA, "rows_set_aside": count, "reason": reason,
                })
        columns = ["table", "file", "rows_read", "rows_used", "rows_set_aside",
                   "reason"]
        return pd.DataFrame(rows, columns=columns)

    def examples(self) -> pd.DataFrame:
        """Return the example rows kept for each reason (student-level: staff only)."""
        rows = [{"table": e.table, "file": e.file, **ex}
                for e in self.entries.values() for ex in e.examples]
        return pd.DataFrame(rows)

    def is_balanced(self) -> bool:
        """True when every file's rows read equal rows used plus rows set aside."""
        return all(e.rows_used + e.rows_set_aside == e.rows_read and e.rows_used >= 0
                   for e in self.entries.values())

    def to_dict(self) -> dict:
        """Return the ledger as plain data, for ``manifest.json`` and the processed
        folder."""
        return {
            "files": [
                {"table": e.table, "file": e.file, "rows_read": e.rows_read,
                 "rows_used": e.rows_used, "rows_set_aside": e.rows_set_aside,
                 "set_aside_by_reason": dict(e.set_aside)}
                for e in self.entries.values()
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict) -> QualityLedger:
        """Rebuild a ledger written by :meth:`to_dict` (examples are not kept)."""
        ledger = cls(notes=list(data.get("notes", [])))
        for item in data.get("files", []):
            entry = FileEntry(file=item["file"], table=item["table"],
                              rows_read=int(item["rows_read"]),
                              set_aside=Counter(item.get("set_aside_by_reason", {})))
            ledger.entries[entry.table] = entry
        return ledger
