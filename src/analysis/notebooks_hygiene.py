"""Keep committed notebooks clean: no outputs, no execution counts, kernelspec python3.

``python -m analysis.notebooks_hygiene notebooks`` rewrites every notebook below the
folder in place; ``--check`` only reports, with a non-zero exit when one is dirty.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python",
              "name": "python3"}


def problems(notebook: nbformat.NotebookNode) -> list[str]:
    """What is wrong with a notebook that is about to be committed."""
    found = []
    if notebook.metadata.get("kernelspec", {}).get("name") != "python3":
        found.append("kernelspec name is not python3")
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count):
            found.append(f"cell {index} has outputs or an execution count")
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) > 1:
        found.append("more than one cell is tagged 'parameters'")
    return found


def clean(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Strip outputs and run metadata; set the kernelspec to python3."""
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        for key in ("execution", "ExecuteTime", "papermill"):
            cell.metadata.pop(key, None)
    notebook.metadata.pop("papermill", None)
    notebook.metadata["kernelspec"] = dict(KERNELSPEC)
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)

    dirty = 0
    for path in sorted(args.folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in path.parts:
            continue
        notebook = nbformat.read(path, as_version=4)
        issues = problems(notebook)
        if issues and args.check:
            dirty += 1
            sys.stderr.write(f"{path}: {'; '.join(issues)}\n")
        elif issues:
            nbformat.write(clean(notebook), path)
    return 1 if dirty else 0


if __name__ == "__main__":
    sys.exit(main())
