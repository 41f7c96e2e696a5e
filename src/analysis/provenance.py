"""Provenance: what went into a run, so a report can be traced back and reproduced.

A run record holds the SHA-256 of every input file, the parameters, the package
version, the git commit (and whether the work tree had uncommitted changes), the
Python version and the versions of the key libraries, with a UTC timestamp.
``analysis.batch`` stores it in each report folder's ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import analysis
from analysis import paths
from analysis.log import logger

#: Distributions whose versions are recorded by :func:`code_version`.
KEY_PACKAGES = (
    "pandas",
    "ibis-framework",
    "duckdb",
    "papermill",
    "nbconvert",
    "statsmodels",
    "seaborn",
)

#: Seconds to wait for one git command before giving up on git details.
GIT_TIMEOUT = 10

_CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Return the SHA-256 hex digest of a file's bytes.

    Parameters
    ----------
    path : str or Path
        The file to hash. It is read in 1 MiB chunks, so large files are fine.

    Returns
    -------
    str
        64 lowercase hexadecimal characters.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_inputs(
    inputs: str | Path | Iterable[str | Path] | None,
    *,
    base: str | Path | None = None,
) -> dict[str, str]:
    """Return the SHA-256 of every input file, keyed by a relative name.

    Parameters
    ----------
    inputs : str, Path, iterable of them, or None
        A folder (every file below it is hashed), a single file, or a list of
        files and folders. ``None`` or an empty list gives an empty dict.
    base : str or Path, optional
        The folder that names are relative to. By default: the folder itself when
        ``inputs`` is one folder, otherwise the deepest folder that holds every
        input.

    Returns
    -------
    dict of str to str
        ``{relative/posix/name: sha256}``, sorted by name.

    Raises
    ------
    FileNotFoundError
        If an input does not exist, or is neither a file nor a folder (for example
        a broken symbolic link). Nothing is skipped silently.

    Notes
    -----
    Hidden files are included: a stray file in a data folder changes the record,
    which is the point. Symbolic links to files are hashed by their target.
    Symbolic links to folders are not followed (to avoid loops); each one is
    logged as a warning, so the skip is never silent.
    """
    if inputs is None:
        return {}
    if isinstance(inputs, str | Path):
        items = [Path(inputs)]
    else:
        items = [Path(item) for item in inputs]
    if not items:
        return {}

    # Fail on anything missing before hashing, so the error names the input.
    for item in items:
        if not item.is_file() and not item.is_dir():
            raise FileNotFoundError(
                f"input {str(item)!r} does not exist or is not a file or folder; "
                "pass existing files or folders to checksum_inputs"
            )

    files = [file for item in items for file in _list_files(item)]
    root = _names_base(items, base)

    checksums: dict[str, str] = {}
    for file in files:
        name = Path(os.path.relpath(file.absolute(), root)).as_posix()
        if name.startswith("../"):
            raise ValueError(f"input {str(file)!r} is outside base {str(root)!r}")
        checksums[name] = sha256_file(file)
    return dict(sorted(checksums.items()))


def _list_files(item: Path) -> list[Path]:
    """Every regular file at or below ``item``, not following folder links."""
    if item.is_file():
        return [item]
    files = []
    for folder, dirnames, filenames in os.walk(item):
        for dirname in list(dirnames):
            if (Path(folder) / dirname).is_symlink():
                logger.warning(
                    "checksum_inputs: not following the folder link %s",
                    Path(folder) / dirname,
                )
        for filename in filenames:
            file = Path(folder) / filename
            if not file.is_file():
                raise FileNotFoundError(
                    f"{str(file)!r} is not a regular file (a broken link?)"
                )
            files.append(file)
    return files


def _names_base(items: list[Path], base: str | Path | None) -> Path:
    """Return the folder that checksum names are relative to."""
    if base is not None:
        return Path(base).absolute()
    if len(items) == 1 and items[0].is_dir():
        return items[0].absolute()
    parents = [str(item.absolute().parent) for item in items]
    return Path(os.path.commonpath(parents))


def code_version() -> dict:
    """Describe the code that runs: package, git state, Python and key libraries.

    Returns
    -------
    dict
        ``package`` and ``version`` (``analysis.__version__``); ``git_commit``
        (the full sha) and ``git_dirty`` (True when tracked or untracked,
        non-ignored files differ from the commit), both ``None`` outside a git
        checkout or without git; ``python`` (for example ``"3.11.7"``); and
        ``packages``, the versions of :data:`KEY_PACKAGES` (``None`` when one is
        not installed).

    Notes
    -----
    git runs in ``analysis.paths.PROJECT_ROOT`` with ``--no-optional-locks``, so
    recording provenance never takes the index lock that a developer's own git
    command may need at the same moment.
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain") if commit is not None else None
    return {
        "package": "analysis",
        "version": analysis.__version__,
        "git_commit": commit,
        "git_dirty": None if status is None else bool(status),
        "python": platform.python_version(),
        "packages": {name: _package_version(name) for name in KEY_PACKAGES},
    }


def _git(*args: str) -> str | None:
    """Run one git command in the project root; ``None`` if it cannot answer."""
    command = ["git", "--no-optional-locks", *args]
    try:
        completed = subprocess.run(
            command,
            cwd=paths.PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as error:
        logger.debug("git unavailable for provenance: %s", error)
        return None
    if completed.returncode != 0:
        first_line = (completed.stderr.strip().splitlines() or [""])[0]
        logger.debug("no git details for provenance: %s", first_line)
        return None
    return completed.stdout.strip()


def _package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_record(
    parameters: dict | None = None,
    inputs: str | Path | Iterable[str | Path] | None = None,
) -> dict:
    """Build the provenance record of one run.

    Parameters
    ----------
    parameters : dict, optional
        The run's parameters, stored as given (keep them JSON-serialisable).
    inputs : str, Path, iterable of them, or None
        Input files or folders, hashed with :func:`checksum_inputs`.

    Returns
    -------
    dict
        ``created_utc`` (ISO 8601 with ``Z``), ``parameters``, ``inputs``
        (name to SHA-256) and ``code`` (from :func:`code_version`).
    """
    return {
        "created_utc": utc_now(),
        "parameters": dict(parameters or {}),
        "inputs": checksum_inputs(inputs),
        "code": code_version(),
    }


def utc_now() -> str:
    """Return the UTC time as ISO 8601 to the second, like ``...T09:30:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
