"""Run code cells in a real python3 kernel (nbclient), as a notebook would: for tests of what happens across
kernels (a cassette replayed in another, spans exported when one stops)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def run_cells(sources: list[str], cwd: Path, timeout: int = 120) -> list[Any]:
    """Execute ``sources`` in a fresh kernel started in ``cwd``, which stops after the last; each cell's outputs."""
    from nbclient import NotebookClient
    from nbformat.v4 import new_code_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [new_code_cell(s) for s in sources]
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return [cell.outputs for cell in nb.cells]
