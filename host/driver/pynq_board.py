"""The real board: a ZCU104 running PYNQ, behind :class:`~edgemoe.host.driver.accelerator.Board`.

``pynq`` is imported inside functions only, so the host package (and its
tests) needs no pynq. On the board, :class:`PynqBoard` loads the overlay
(``edgemoe.bit`` with ``edgemoe.hwh`` beside it), binds the kernel through a
``DefaultIP`` subclass whose ``bindto`` is the kernel's VLNV, and refuses to
start when the register map computed from the argument list
(:func:`edgemoe.host.contracts.regmap.kernel_register_map`) differs from the one
Vivado recorded in the ``.hwh``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.kernel import TOP, VLNV
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.regmap import check_against_hwh, kernel_register_map
from edgemoe.host.contracts.tiling import Tiling
from edgemoe.host.driver.accelerator import DriverBackend
from edgemoe.host.driver.backends import Capabilities
from edgemoe.models.config import ModelConfig

#: Bitstream the ``pynq`` backend loads unless ``EDGEMOE_BITFILE`` names another.
DEFAULT_BITFILE = "edgemoe.bit"
BITFILE_ENV = "EDGEMOE_BITFILE"
NEEDS_BOARD = (
    "pynq backend needs a ZCU104 running PYNQ (pip install pynq; see README board workflow)"
)


class PynqBoardError(EdgeMoeError):
    """No board, no overlay, or an overlay whose registers differ from the argument list."""


class _PynqBuffer:
    """A ``pynq.allocate`` buffer seen as the driver's ``Buffer``."""

    def __init__(self, buf):
        self._buf = buf

    @property
    def array(self) -> np.ndarray:
        return np.asarray(self._buf).view(np.uint8)

    @property
    def device_address(self) -> int:
        return int(self._buf.device_address)

    def flush(self) -> None:
        self._buf.flush()

    def invalidate(self) -> None:
        self._buf.invalidate()

    def free(self) -> None:
        self._buf.freebuffer()


def _kernel_driver_class():
    """The ``DefaultIP`` subclass that PYNQ binds to our kernel (defined on first use)."""
    from pynq import DefaultIP

    class EdgeMoeIP(DefaultIP):
        """The ``edgemoe_top`` core; read/write come from ``DefaultIP`` (its MMIO)."""

        bindto = [VLNV]

        def __init__(self, description):
            super().__init__(description=description)

    return EdgeMoeIP


def _import_pynq():
    try:
        import pynq
    except Exception:
        raise PynqBoardError(NEEDS_BOARD) from None
    return pynq


class PynqBoard:
    """The overlay on a ZCU104: ``allocate``, the kernel's ``ip``, no bus-error reporting.

    Parameters
    ----------
    bitfile : str or Path
        The bitstream; its ``.hwh`` must sit beside it.
    """

    def __init__(self, bitfile: str | Path):
        pynq = _import_pynq()
        bitfile = Path(bitfile)
        hwh = bitfile.with_suffix(".hwh")
        for f in (bitfile, hwh):
            if not f.exists():
                raise PynqBoardError(f"{f}: no such file (make bitstream writes edgemoe.bit/.hwh)")
        problems = check_against_hwh(kernel_register_map(), hwh, VLNV)
        if problems:
            raise PynqBoardError(
                f"register map differs from {hwh.name} ({len(problems)} register(s)): {problems[0]}"
            )
        _kernel_driver_class()
        try:
            self.overlay = pynq.Overlay(str(bitfile))
        except Exception as e:
            raise PynqBoardError(f"{NEEDS_BOARD}: cannot load {bitfile}: {e}") from None
        names = [k for k, v in self.overlay.ip_dict.items() if v.get("type") == VLNV]
        if len(names) != 1:
            raise PynqBoardError(f"{bitfile.name}: expected one {TOP} core, found {len(names)}")
        self.ip = getattr(self.overlay, names[0])
        self._pynq = pynq

    def allocate(self, nbytes: int) -> _PynqBuffer:
        """A physically contiguous, cacheable buffer from the CMA pool."""
        return _PynqBuffer(self._pynq.allocate(shape=(int(nbytes),), dtype=np.uint8))

    def bus_errors(self) -> list[str]:
        """PYNQ does not report AXI errors to the host."""
        return []


class PynqBackend(DriverBackend):
    """The ``pynq`` backend: the driver on the real board (``EDGEMOE_BITFILE``, default
    ``edgemoe.bit``)."""

    name = "pynq"
    capabilities = Capabilities.datapath(
        "the driver on a ZCU104 running PYNQ ($EDGEMOE_BITFILE, else edgemoe.bit)",
        timed="driver run on the board: copy in, flush, start, wait, invalidate, unpack",
        drives_board=True,
        setup="backend set-up",
    )

    def __init__(self) -> None:
        super().__init__()
        _import_pynq()  # fail early and cleanly off the board

    def make_board(self, cfg: ModelConfig, profile: Profile, tiling: Tiling) -> PynqBoard:
        return PynqBoard(os.environ.get(BITFILE_ENV, DEFAULT_BITFILE))
