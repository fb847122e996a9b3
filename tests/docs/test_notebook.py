"""The PYNQ notebook, executed on the virtual board (nbclient, the venv's own Python kernel)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbclient
import nbformat

from tests.api.torchless import torchless_env

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "edgemoe_pynq.ipynb"


def kernel_manager(tmp_path: Path):
    """A kernel manager whose ``python3`` kernel is this interpreter (not whatever is on PATH)."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path / "kernels"
    write_kernel_spec(kernels / "python3")
    spec = (kernels / "python3" / "kernel.json").read_text()
    assert sys.executable in spec.replace("\\\\", "\\")
    ksm = KernelSpecManager(kernel_dirs=[str(kernels)])
    return KernelManager(kernel_name="python3", kernel_spec_manager=ksm)


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = [c for c in nb.cells if c.cell_type == "code"]
    assert cells and all(not c.outputs and c.execution_count is None for c in cells)
    assert "parameters" in cells[0].metadata.get("tags", [])


def test_notebook_runs_from_a_bundle_alone_without_torch(tmp_path):
    """The board path: an exported bundle and nothing else, torch and onnxruntime blocked,
    on the virtual board."""
    from edgemoe.host.app.cli import main

    bundle = tmp_path / "mini.bin"
    assert main(["export", "--config", "m3vit-mini", "--out", str(bundle)]) == 0
    nb = nbformat.read(NOTEBOOK, as_version=4)
    # papermill's convention: overrides go in a cell right after the tagged one
    overrides = f"BUNDLE = {str(bundle)!r}\nCONFIG = None\nBOARD = None"
    nb.cells.insert(
        next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])) + 1,
        nbformat.v4.new_code_cell(overrides),
    )
    client = nbclient.NotebookClient(
        nb,
        km=kernel_manager(tmp_path),
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    probe = nbformat.v4.new_code_cell(
        "import sys\nprint('torch loaded:', 'torch' in sys.modules)\n"
        "try:\n    import torch\nexcept ImportError:\n    print('torch blocked')"
    )
    nb.cells.append(probe)
    client.execute(env=torchless_env(tmp_path))
    text = "\n".join(
        o.get("text", "") or str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
    )
    assert "board: virtual board" in text
    assert "VirtualBoard" in text
    assert "weights: checkpoint m3vit-mini.safetensors, trained on procedural street scenes" in text
    assert "semseg: classes" in text and "depth: scalar" in text
    assert "Result(images 32x64x3" in text and len(text) < 8000  # a summary, not the arrays
    assert "tokens equal to golden: True" in text
    assert "torch loaded: False" in text and "torch blocked" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1, "the maps figure is shown inline"
