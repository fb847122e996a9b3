"""A virtual ZCU104: simulated DDR, the kernel's s_axilite registers, the C-sim as the core.

It offers the calls the driver makes on a real PYNQ board (``allocate`` ->
buffers with ``device_address``/``flush``/``invalidate``; ``ip.read``/``ip.write``
on the control port), so :class:`edgemoe.host.driver.accelerator.Accelerator` runs on it
unchanged. Writing ``ap_start`` latches the argument registers, resolves the
pointers in the simulated DDR (``maps`` must repeat ``scratch``: one buffer on two
masters) and runs the C-sim on those very buffers in a worker thread, while the
control register behaves as Vitis HLS's ``ap_ctrl_hs`` does: ``ap_start`` reads 1
until the core takes the call, ``ap_idle`` is clear while it runs, ``ap_done`` (and
``ap_ready``) clear on read, ``ap_return`` holds the status code.

Fault injection: ``hang=True`` makes a core that takes the call and never
finishes (the driver's timeout path). A pointer outside every allocated buffer
is recorded as an AXI decode error (:meth:`VirtualBoard.bus_errors`) and the
call ends without running the kernel, and so is a ``maps`` address other than
``scratch``'s.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.regmap import (
    AP_DONE,
    AP_IDLE,
    AP_READY,
    AP_START,
    CTRL,
    RegisterMap,
    kernel_register_map,
)
from edgemoe.host.contracts.scratch import scratch_bytes
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.accelerator import DriverBackend, stored_layout
from edgemoe.host.driver.backends import Capabilities
from edgemoe.host.export.bundle import bundle_bytes
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import ModelConfig

from .csim import CSim

#: Where the simulated DDR hands out buffers, and their alignment (one page).
DDR_BASE = 0x1000_0000
PAGE = 4096
#: Environment switch of the ``csim`` backend's hang fault (``1``: the core never finishes).
HANG_ENV = "EDGEMOE_VBOARD_HANG"


class VirtualBuffer:
    """A buffer in the simulated DDR (the shape of a ``pynq.allocate`` buffer)."""

    def __init__(self, array: np.ndarray, device_address: int):
        self._array = array
        self._addr = device_address
        self.flushes = 0
        self.invalidates = 0

    @property
    def array(self) -> np.ndarray:
        return self._array

    @property
    def device_address(self) -> int:
        return self._addr

    @property
    def physical_address(self) -> int:
        return self._addr

    @property
    def nbytes(self) -> int:
        return self._array.size

    def flush(self) -> None:
        # host and "device" share the numpy memory: there is no cache to write back
        self.flushes += 1

    def invalidate(self) -> None:
        self.invalidates += 1


class AxiError(Exception):
    """An m_axi access that no buffer answers (DECERR on a real interconnect)."""


class VirtualDDR:
    """Page-aligned buffers at increasing device addresses from :data:`DDR_BASE`."""

    def __init__(self, base: int = DDR_BASE):
        self._next = base
        self._buffers: list[VirtualBuffer] = []

    def allocate(self, nbytes: int) -> VirtualBuffer:
        nbytes = max(int(nbytes), 1)
        raw = np.zeros(nbytes + 64, dtype=np.uint8)
        off = (-raw.ctypes.data) % 64  # 64-byte aligned host memory, like the CMA pool
        buf = VirtualBuffer(raw[off : off + nbytes], self._next)
        self._buffers.append(buf)
        self._next += -(-nbytes // PAGE) * PAGE + PAGE  # a guard page between buffers
        return buf

    def resolve(self, addr: int, nbytes: int, port: str) -> np.ndarray:
        """The bytes ``[addr, addr + nbytes)`` as a view of the buffer holding them."""
        for b in self._buffers:
            lo = b.device_address
            if lo <= addr and addr + nbytes <= lo + b.nbytes:
                return b.array[addr - lo : addr - lo + nbytes]
        raise AxiError(f"{port}: {nbytes} bytes at 0x{addr:08x} are outside every buffer (DECERR)")


class VirtualIP:
    """The kernel's s_axilite port: a register file whose control register drives the core."""

    def __init__(self, board: VirtualBoard):
        self._board = board
        self._lock = threading.RLock()
        self._regs: dict[int, int] = {CTRL: AP_IDLE}
        #: Every host write, in order: ``(offset, value)``.
        self.writes: list[tuple[int, int]] = []
        #: Every value read from the control register, in order.
        self.ctrl_reads: list[int] = []

    def read(self, offset: int) -> int:
        with self._lock:
            value = self._regs.get(offset, 0)
            if offset == CTRL:
                self.ctrl_reads.append(value)
                self._regs[CTRL] = value & ~(AP_DONE | AP_READY)  # clear on read
            return value

    def write(self, offset: int, value: int) -> None:
        value &= 0xFFFFFFFF
        with self._lock:
            self.writes.append((offset, value))
            if offset == CTRL:
                ctrl = self._regs[CTRL]
                if value & AP_START and ctrl & AP_IDLE and not ctrl & AP_START:
                    self._regs[CTRL] = (ctrl | AP_START) & ~(AP_IDLE | AP_DONE)
                    args = dict(self._regs)  # the core latches its arguments at start
                    self._board._start(args)
                return
            if offset == self._board.regs.offset("ap_return"):
                return  # read only
            self._regs[offset] = value

    def _set(self, offset: int, value: int) -> None:
        with self._lock:
            self._regs[offset] = value

    def _core_accepts(self) -> None:
        with self._lock:
            self._regs[CTRL] = (self._regs[CTRL] & ~AP_START) | AP_READY

    def _core_finishes(self, status: int) -> None:
        with self._lock:
            self._regs[self._board.regs.offset("ap_return")] = status
            self._regs[CTRL] = (self._regs[CTRL] & ~AP_START) | AP_DONE | AP_IDLE


@dataclass
class CoreCall:
    """One call the virtual core executed (for tests and traffic accounting)."""

    args: dict[str, int]
    status: int | None = None
    ddr_read: dict[str, int] = field(default_factory=dict)
    ddr_written: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class VirtualBoard:
    """A board with one ``edgemoe_top`` core implemented by the C-sim.

    Parameters
    ----------
    cfg, profile, tiling
        The build the "bitstream" was made for (the C-sim library's parameters).
    hang : bool
        Fault injection: the core takes a call and never finishes.
    latency_s : float
        Minimum time a call keeps the core busy (to observe ``ap_idle`` low).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        profile: Profile,
        tiling: Tiling = DEFAULT_TILING,
        hang: bool = False,
        latency_s: float = 0.0,
    ):
        self.cfg, self.profile, self.tiling = cfg, profile, tiling
        self.hang, self.latency_s = hang, latency_s
        self.regs: RegisterMap = kernel_register_map()
        self.ddr = VirtualDDR()
        self.ip = VirtualIP(self)
        self.csim = CSim(cfg, profile, tiling)
        self.calls: list[CoreCall] = []
        self._errors: list[str] = []
        self._worker: threading.Thread | None = None

    def allocate(self, nbytes: int) -> VirtualBuffer:
        """A new zeroed buffer in the simulated DDR."""
        return self.ddr.allocate(nbytes)

    def bus_errors(self) -> list[str]:
        """AXI errors since the last call; clears them."""
        errors, self._errors = self._errors, []
        return errors

    def wait_idle(self, timeout_s: float = 60.0) -> None:
        """Join the worker of the last call (tests)."""
        if self._worker is not None:
            self._worker.join(timeout_s)

    # -- the core ------------------------------------------------------------
    def _start(self, regs: dict[int, int]) -> None:
        args = {}
        for a in ARGS:
            reg = self.regs[a.name]
            args[a.name] = sum(regs.get(off, 0) << (32 * i) for i, (_, off) in enumerate(reg.parts))
        call = CoreCall(args)
        self.calls.append(call)
        if self.hang:
            # the core takes the call (ap_start clears) and then never reports done
            self.ip._core_accepts()
            return
        self._worker = threading.Thread(target=self._execute, args=(call,), daemon=True)
        self._worker.start()

    def _execute(self, call: CoreCall) -> None:
        t0 = time.perf_counter()
        self.ip._core_accepts()
        status = 0
        try:
            status = self._kernel(call)
        except AxiError as e:
            self._errors.append(str(e))
        except Exception as e:  # a C-sim failure must not kill the board silently
            self._errors.append(f"core failed: {e}")
        call.seconds = time.perf_counter() - t0
        rest = self.latency_s - call.seconds
        if rest > 0:
            time.sleep(rest)
        call.status = status
        self.ip._core_finishes(status)

    def _kernel(self, call: CoreCall) -> int:
        cfg, a = self.cfg, call.args
        n = a["num_images"]
        image_bytes = cfg.num_patches * cfg.patch_dim
        valid_n = 1 <= n <= MAX_IMAGES
        stride = stored_layout(cfg, a["debug_stop"], a["task"], self.tiling).stride
        size = bundle_bytes(cfg, self.profile, self.tiling)
        bundle = self.ddr.resolve(a["bundle"], size, "gmem_weights")
        self.ddr.resolve(
            a["scratch"], scratch_bytes(cfg, self.tiling, n if valid_n else 1), "gmem_scratch"
        )
        if a["maps"] != a["scratch"]:
            raise AxiError(
                f"gmem_maps: address 0x{a['maps']:08x} is not the scratch buffer's "
                f"0x{a['scratch']:08x} (maps must repeat scratch's address)"
            )
        if valid_n:
            images = self.ddr.resolve(a["images"], n * image_bytes, "gmem_images")
            out = self.ddr.resolve(a["output"], n * stride * 4, "gmem_output")
            if a["output"] % 4:
                raise AxiError(f"gmem_output: unaligned address 0x{a['output']:08x}")
            patches = images.reshape(n, cfg.num_patches, cfg.patch_dim)
            output = out.view(np.int32).reshape(n, stride)
            run = self.csim.run(bundle, patches, a["task"], a["debug_stop"], n, output)
        else:  # the kernel refuses the count before touching images or output
            dummy = np.zeros((1, cfg.num_patches, cfg.patch_dim), np.uint8)
            run = self.csim.run(bundle, dummy, a["task"], a["debug_stop"], n)
        call.ddr_read, call.ddr_written = run.ddr_read, run.ddr_written
        return run.status


class CSimBackend(DriverBackend):
    """The ``csim`` backend: the driver on a virtual board running the C-sim.

    ``EDGEMOE_VBOARD_HANG=1`` in the environment makes its boards hang (fault injection).
    """

    name = "csim"
    capabilities = Capabilities.datapath(
        "the driver on the virtual board, which runs the C-sim",
        timed="driver run on the virtual board: copy in, flush, start, wait, invalidate, unpack",
        drives_board=True,
        first_call="virtual board + C-sim build + bundle pack + bundle load",
        heap_traced=True,
    )

    def make_board(self, cfg: ModelConfig, profile: Profile, tiling: Tiling) -> VirtualBoard:
        return VirtualBoard(cfg, profile, tiling, hang=os.environ.get(HANG_ENV) == "1")
