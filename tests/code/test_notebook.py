"""Execute the exploration notebook so it cannot rot when the package it imports changes."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from ipykernel.kernelspec import install as install_kernelspec
from nbclient import NotebookClient

from tests.helpers.paths import REPO

NOTEBOOK = REPO / "notebooks" / "exploration.ipynb"
KERNEL = "python3"
# e.g. "max feature PSI (test vs train reference): 0.1760 (bmi)"
PSI_VALUE = re.compile(r"\bPSI\b[^\n]*?\d+\.\d+")


@pytest.fixture()
def python3_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A 'python3' kernelspec that runs this interpreter, whatever kernels the machine has.

    JUPYTER_PATH is searched before the user and system data dirs, so the notebook always runs with
    the test's environment (where mloop is installed), also on a fresh CI machine.
    """
    install_kernelspec(kernel_name=KERNEL, prefix=str(tmp_path))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share" / "jupyter"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return KERNEL


def _texts(cell: Any) -> list[str]:
    texts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            texts.append(output.get("text", ""))
        elif "data" in output:
            texts.append(output["data"].get("text/plain", ""))
    return texts


def test_kernelspec_uses_this_interpreter(python3_kernel: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec(python3_kernel)
    assert spec.argv[0] == sys.executable


def test_notebook_is_stored_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == KERNEL
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, "clear the outputs"


def test_notebook_runs_and_reports_psi(python3_kernel: str) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook,
        kernel_name=python3_kernel,
        timeout=120,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the traceback, if any cell fails

    errors = [
        output
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, errors
    texts = [text for cell in notebook.cells for text in _texts(cell)]
    assert any(PSI_VALUE.search(text) for text in texts), "no output reports a PSI value"
