"""The kernel's top function: its name and argument list, the one source of truth.

The C++ top (``hls/src/edgemoe_top.cpp``), the s_axilite register map, the
PYNQ driver and the RTL shell's port list are all derived from :data:`ARGS`.
"""

from __future__ import annotations

from dataclasses import dataclass

TOP = "edgemoe_top"
VLNV = f"xilinx.com:hls:{TOP}:1.0"


@dataclass(frozen=True)
class Arg:
    """One top-function argument.

    Attributes
    ----------
    name : str
    kind : str
        ``"ptr"`` (m_axi pointer, 64-bit address in s_axilite) or ``"u32"``.
    bundle : str | None
        m_axi bundle (one AXI master port per bundle) for pointers.
    doc : str
    """

    name: str
    kind: str
    bundle: str | None
    doc: str


ARGS: tuple[Arg, ...] = (
    Arg("bundle", "ptr", "gmem_weights", "weight bundle (header + pre-tiled tensors), read only"),
    Arg("images", "ptr", "gmem_images", "uint8 images, patch-major [num_images][patches][3*p*p]"),
    Arg("output", "ptr", "gmem_output", "raw activations [num_images][tokens][dim], 32-bit words"),
    Arg("scratch", "ptr", "gmem_scratch", "intermediate activations (docs/design.md)"),
    Arg("task", "u32", None, "task id, 0..num_tasks-1"),
    Arg("num_images", "u32", None, "images in this call, 1..MAX_IMAGES"),
    Arg("debug_stop", "u32", None, "0: whole backbone; else stop after one stage (see hls_params)"),
    # last, so that the registers before it keep their offsets; the same buffer as scratch
    # on a master of its own, so that the decoder's band loads and stores can run in a
    # DATAFLOW process of their own (UG1448 200-992: one process per argument)
    Arg(
        "maps",
        "ptr",
        "gmem_maps",
        "the task decoder's feature maps: the scratch buffer's address again (its own AXI master)",
    ),
)
#: The return value is a u32 status code (``hls_params.STATUS``).
RETURNS = "u32"
