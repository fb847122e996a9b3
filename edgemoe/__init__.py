"""edgemoe: an FPGA accelerator for the multi-task MoE ViT M3ViT.

Subpackages: :mod:`edgemoe.models` (float reference), :mod:`edgemoe.host`
(fixed-point contracts, export, driver, CLI) and :mod:`edgemoe.sim` (golden
model, C-sim, virtual board).
"""

__version__ = "0.1.0"
