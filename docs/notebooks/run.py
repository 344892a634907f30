"""Execute the notebooks (``nox -s notebooks``): every cell must run without an error."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

failed = 0
for path in sorted(Path(__file__).parent.glob("*.ipynb")):
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3").execute()
    cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    errors = [
        output
        for cell in cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    print(f"{path.name}: {len(cells)} code cells run, {len(errors)} errors")
    failed += bool(errors)
sys.exit(failed)
