"""The ``Accelerator`` driver: one kernel, its buffers, its registers (DESIGN.md §4.5-4.6, §7).

The driver reads like the steps it performs (FINN's ``driver_base.py``):
pack the images -> copy them into the device buffer and flush -> program the
argument registers -> start -> poll ``ap_done``/``ap_idle`` with a timeout ->
read the status -> invalidate -> unpack. Buffers are allocated once, when the
driver is made, and reused by every call. Register offsets come from
:func:`edgemoe.host.contracts.regmap.kernel_register_map` only.

The driver never constructs its board: it receives an object offering the
:class:`Board` calls. Two exist: the real one (``edgemoe.host.driver.pynq_board``:
``pynq.Overlay``, ``pynq.allocate``, a ``DefaultIP``) and the virtual board
(``edgemoe.sim.virtual_board``: a simulated DDR and the C-sim).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import to_patches
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.regmap import (
    AP_DONE,
    AP_IDLE,
    AP_START,
    CTRL,
    STATUS,
    STATUS_HINTS,
    RegisterMap,
    kernel_register_map,
)
from edgemoe.host.contracts.scratch import scratch_bytes
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.backends import RunOutput, record_boundaries
from edgemoe.host.export.bundle import bundle_bytes, pack, validate
from edgemoe.host.export.hls_params import (
    MAX_IMAGES,
    debug_stage_name,
    decoded_stage,
    max_output_words,
    output_layout,
)
from edgemoe.host.export.quantize import stage_to_float
from edgemoe.models.config import ModelConfig

STATUS_NAMES = {v: k for k, v in STATUS.items()}


class AcceleratorError(EdgeMoeError):
    """The kernel refused a call (status code) or the bus reported an error."""


class KernelTimeout(AcceleratorError, TimeoutError):
    """The kernel did not finish within the timeout."""


class Buffer(Protocol):
    """A physically contiguous buffer the kernel reaches through an m_axi port."""

    @property
    def array(self) -> np.ndarray:
        """The buffer's bytes as a 1-D uint8 numpy view (host side)."""
        ...

    @property
    def device_address(self) -> int:
        """Address the kernel uses (what goes into the pointer register)."""
        ...

    def flush(self) -> None:
        """Write the host's cached copy back to DDR (before the kernel reads)."""
        ...

    def invalidate(self) -> None:
        """Drop the host's cached copy (after the kernel wrote)."""
        ...


class RegisterIO(Protocol):
    """The kernel's s_axilite port."""

    def read(self, offset: int) -> int: ...

    def write(self, offset: int, value: int) -> None: ...


class Board(Protocol):
    """What the driver needs of a board (real or virtual)."""

    ip: RegisterIO

    def allocate(self, nbytes: int) -> Buffer:
        """A new device buffer of ``nbytes`` bytes."""
        ...

    def bus_errors(self) -> list[str]:
        """AXI errors seen since the last call (and clears them); empty when none."""
        ...


@dataclass
class KernelResult:
    """One call of :meth:`Accelerator.run`.

    Attributes
    ----------
    raw : ndarray int32 (B, tokens, width)
        The token rows the kernel stored: raw ``act`` words of the backbone output (also
        of a call that decodes), or of a backbone debug stage.
    status : int
        The kernel's return code (0 here: other codes raise).
    stage : str
        What the call stored last (:func:`stored_layout`): ``"tokens"`` for a whole run
        of a task the kernel does not decode (and the ``tokens`` stop of one it does),
        ``"dec.logits"`` for a whole run of one it decodes, else the debug stage name.
    times : dict[str, float]
        Seconds per step, summed over the batches (kernel calls): ``pack``, ``flush``, ``kernel``,
        ``invalidate``, ``unpack``.
    decoded : ndarray int64 (B, h, w, C) or None
        Where the call decoded (a ``pup`` task, no stop or a decoder stage's): the raw
        values of the decoder stage ``stage`` after the tokens, pixels row-major,
        channels last (``dec.norm``: the grid's tokens, CLS dropped).
    """

    raw: np.ndarray
    status: int
    stage: str
    times: dict[str, float] = field(default_factory=dict)
    decoded: np.ndarray | None = None

    @property
    def logits(self) -> np.ndarray | None:
        """The decoder's raw ``dec_out`` logits ``(B, h, w, C)``, where the call decoded
        to the end (None: another stage, or a task the kernel does not decode)."""
        return self.decoded if self.stage == "dec.logits" else None

    @property
    def values(self) -> np.ndarray:
        """The raw values of ``stage``: the decoded map where the call decoded, else the
        token rows (what :func:`~edgemoe.host.driver.backends.record_boundaries` reads)."""
        return self.raw if self.decoded is None else self.decoded


@dataclass
class PendingCall:
    """A kernel call :meth:`Accelerator.start` began; :meth:`Accelerator.wait` finishes it.

    Attributes
    ----------
    images : int
    debug_stop : int
    task : int
        The task id register (its layout: :func:`stored_layout`).
    started : float
        ``time.perf_counter()`` when the kernel was started.
    times : dict[str, float]
        Steps done so far (``flush``).
    ended : float or None
        When its end was seen (set by :meth:`Accelerator.wait`).
    """

    images: int
    debug_stop: int
    task: int
    started: float
    times: dict[str, float] = field(default_factory=dict)
    ended: float | None = None


class Accelerator:
    """Drive the ``edgemoe_top`` kernel on a board.

    Parameters
    ----------
    board : Board
        A real or virtual board; the driver only calls its :class:`Board` methods.
    cfg, profile, tiling
        The build the bitstream (or C-sim) was made for: they size the buffers.
    max_images : int
        Images per kernel call (a batch; the kernel runs it expert-major in groups of up
        to ``MAX_GROUP``); more images run as several batches.
    poll_interval_s : float
        Longest sleep between two reads of the control register.
    """

    def __init__(
        self,
        board: Board,
        cfg: ModelConfig,
        profile: Profile,
        tiling: Tiling = DEFAULT_TILING,
        max_images: int = 4,
        poll_interval_s: float = 1e-3,
    ):
        if not 1 <= max_images <= MAX_IMAGES:
            raise AcceleratorError(f"max_images must be 1..{MAX_IMAGES}, got {max_images}")
        self.board, self.cfg, self.profile, self.tiling = board, cfg, profile, tiling
        self.max_images = max_images
        self.poll_interval_s = poll_interval_s
        self.regs: RegisterMap = kernel_register_map()
        self._image_bytes = cfg.num_patches * cfg.patch_dim
        # the largest output region of a whole run (any task, the logits after the tokens
        # where the kernel decodes) or of a backbone debug stop; a decoder stop's larger
        # maps grow the buffer when one is asked for (_ensure_output)
        self._out_words = max_output_words(cfg, tiling)
        self.bundle_buf = board.allocate(bundle_bytes(cfg, profile, tiling))
        self.images_buf = board.allocate(max_images * self._image_bytes)
        self.output_buf = board.allocate(max_images * self._out_words * 4)
        # an expert-major group parks each of its images here (edgemoe.host.contracts.scratch)
        self.scratch_buf = board.allocate(scratch_bytes(cfg, tiling, max_images))
        self.bundle_sha256: str | None = None

    # -- the weight bundle ---------------------------------------------------
    def load_bundle(self, data: bytes | bytearray | memoryview, host_check: bool = True) -> None:
        """Copy a weight bundle into its device buffer (once per model).

        Parameters
        ----------
        data : bytes-like
            The bundle (``edgemoe export``).
        host_check : bool
            Validate it first (:func:`edgemoe.host.export.bundle.validate`); with False
            the kernel's own header check is what catches a wrong bundle.

        Raises
        ------
        BundleError
            ``host_check`` and the bundle is corrupt or for another build.
        AcceleratorError
            The bundle is larger than its buffer.
        """
        if host_check:
            validate(data, self.cfg, self.profile, self.tiling)
        buf = self.bundle_buf.array
        n = len(data)
        if n > buf.size:
            raise AcceleratorError(
                f"bundle is {n} bytes, the bundle buffer of {self.cfg.name} / "
                f"{self.profile.name} holds {buf.size}"
            )
        buf[:n] = np.frombuffer(bytes(data), dtype=np.uint8)
        buf[n:] = 0
        self.bundle_buf.flush()
        self.bundle_sha256 = hashlib.sha256(data).hexdigest()

    # -- one inference -------------------------------------------------------
    def run(
        self,
        images: np.ndarray,
        task: str | int,
        debug_stop: int = 0,
        timeout_s: float = 60.0,
    ) -> KernelResult:
        """Run the backbone on uint8 images of one task.

        Parameters
        ----------
        images : uint8 (B, H, W, 3)
            At the config's resolution.
        task : str or int
            Task name, or a raw task id (passed to the kernel unchecked).
        debug_stop : int
            0, or :func:`edgemoe.host.export.hls_params.debug_stop_code` of a stage.
        timeout_s : float
            Longest wait for one kernel call.

        Raises
        ------
        KernelTimeout
            ``ap_done`` not seen within ``timeout_s``.
        AcceleratorError
            Non-zero status code, or an AXI error reported by the board.
        """
        if self.bundle_sha256 is None:
            raise AcceleratorError("no weight bundle loaded (call load_bundle first)")
        task_id = task if isinstance(task, int) else self.cfg.task_id(task)
        layout = stored_layout(self.cfg, debug_stop, task_id, self.tiling)
        times = dict.fromkeys(("pack", "flush", "kernel", "invalidate", "unpack"), 0.0)
        parts, maps = [], []
        status = 0
        for start in range(0, len(images), self.max_images):
            batch = images[start : start + self.max_images]
            t = time.perf_counter()
            patches = self.pack(batch)
            times["pack"] += _lap(t)
            res = self.wait(self.start(patches, task_id, debug_stop), timeout_s)
            for k, v in res.times.items():
                times[k] += v
            status = res.status
            parts.append(res.raw)
            maps.append(res.decoded)
        raw = (
            np.concatenate(parts)
            if parts
            else np.zeros((0, self.cfg.num_tokens, layout.width), np.int32)
        )
        decoded = None
        if layout.decoded is not None:
            decoded = (
                np.concatenate(maps) if maps else np.zeros((0, *layout.decoded.shape), np.int64)
            )
        return KernelResult(raw, status, layout.stage, times, decoded)

    # -- one kernel call in two steps: the host works while the kernel runs ----
    def pack(self, images: np.ndarray) -> np.ndarray:
        """Images (B, H, W, 3) uint8, B up to ``max_images``, in the kernel's patch layout
        (host memory only: may run while the kernel runs another call)."""
        if len(images) > self.max_images:
            raise AcceleratorError(
                f"{len(images)} images in one kernel call, the buffers hold {self.max_images}"
            )
        return to_patches(images, self.cfg)

    def start(self, patches: np.ndarray, task: str | int, debug_stop: int = 0) -> PendingCall:
        """Copy packed images (:meth:`pack`) into the device buffer and start the kernel;
        :meth:`wait` finishes the call. One call at a time: the buffers are shared.

        Raises
        ------
        AcceleratorError
            No bundle loaded, or the kernel is busy.
        """
        if self.bundle_sha256 is None:
            raise AcceleratorError("no weight bundle loaded (call load_bundle first)")
        task_id = task if isinstance(task, int) else self.cfg.task_id(task)
        n = len(patches)
        self._ensure_output(stored_layout(self.cfg, debug_stop, task_id, self.tiling).stride)
        t = time.perf_counter()
        self._copy_images(patches)
        flush = _lap(t)
        t = time.perf_counter()
        self._program(task_id, n, debug_stop)
        self._start()
        return PendingCall(n, debug_stop, task_id, t, {"flush": flush})

    def wait(self, call: PendingCall, timeout_s: float = 60.0) -> KernelResult:
        """Wait for the kernel call :meth:`start` began, check it and read its output (a
        copy: the next call may start at once). ``times["kernel"]`` runs from the start to
        the poll that saw it done.

        Raises
        ------
        KernelTimeout
            ``ap_done`` not seen within ``timeout_s``.
        AcceleratorError
            Non-zero status code, or an AXI error reported by the board.
        """
        layout = stored_layout(self.cfg, call.debug_stop, call.task, self.tiling)
        times = dict(call.times)
        self._wait(timeout_s)
        status = self.regs_read("ap_return")
        times["kernel"] = _lap(call.started)
        call.ended = call.started + times["kernel"]
        self._check(status)

        t = time.perf_counter()
        self.output_buf.invalidate()
        times["invalidate"] = _lap(t)

        t = time.perf_counter()
        words = self.output_buf.array[: call.images * layout.stride * 4].view("<i4")
        raw, decoded = layout.unpack(self.cfg, words.reshape(call.images, layout.stride))
        times["unpack"] = _lap(t)
        return KernelResult(raw, status, layout.stage, times, decoded)

    def to_float(self, raw: np.ndarray) -> np.ndarray:
        """Backbone tokens as float64 (the profile's ``act`` format)."""
        return self.profile.act.to_float(raw.astype(np.int64))

    def logits_to_float(self, logits: np.ndarray) -> np.ndarray:
        """The decoder's raw logits ``(B, h, w, C)`` (:attr:`KernelResult.logits`) as
        float64 ``(B, C, h, w)``, the host's layout (the profile's ``dec_out`` format)."""
        return stage_to_float(self.cfg, self.profile, "dec.logits", logits)

    # -- steps ---------------------------------------------------------------
    def _copy_images(self, patches: np.ndarray) -> None:
        flat = patches.reshape(-1)
        self.images_buf.array[: flat.size] = flat
        self.images_buf.flush()

    def regs_write(self, name: str, value: int) -> None:
        """Write an argument register (both words of a 64-bit one)."""
        reg = self.regs[name]
        for i, (_, off) in enumerate(reg.parts):
            self.board.ip.write(off, (value >> (32 * i)) & 0xFFFFFFFF)

    def regs_read(self, name: str) -> int:
        """Read a register (``ap_return`` or an argument)."""
        reg = self.regs[name]
        return sum(self.board.ip.read(off) << (32 * i) for i, (_, off) in enumerate(reg.parts))

    def _program(self, task_id: int, num_images: int, debug_stop: int) -> None:
        self.regs_write("bundle", self.bundle_buf.device_address)
        self.regs_write("images", self.images_buf.device_address)
        self.regs_write("output", self.output_buf.device_address)
        self.regs_write("scratch", self.scratch_buf.device_address)
        self.regs_write("task", task_id)
        self.regs_write("num_images", num_images)
        self.regs_write("debug_stop", debug_stop)
        # the task decoder's feature maps: the scratch buffer again, on a master of its own
        self.regs_write("maps", self.scratch_buf.device_address)

    def _start(self) -> None:
        ctrl = self.board.ip.read(CTRL)
        if not ctrl & AP_IDLE:
            raise AcceleratorError(f"kernel is busy (control register 0x{ctrl:02x})")
        self.board.ip.write(CTRL, AP_START)

    def _wait(self, timeout_s: float) -> None:
        """Poll the control register until the kernel is done.

        ``ap_done`` clears when read, so a finished call is also recognised by
        ``ap_idle`` set with ``ap_start`` cleared (someone else read the done).
        """
        deadline = time.perf_counter() + timeout_s
        sleep = 1e-5
        while True:
            ctrl = self.board.ip.read(CTRL)
            if ctrl & AP_DONE or (ctrl & AP_IDLE and not ctrl & AP_START):
                return
            if time.perf_counter() > deadline:
                raise KernelTimeout(
                    f"kernel did not finish within {timeout_s:g} s "
                    f"(control register 0x{ctrl:02x}: ap_done never set)"
                )
            time.sleep(sleep)
            sleep = min(2 * sleep, self.poll_interval_s)

    def _check(self, status: int) -> None:
        errors = self.board.bus_errors()
        if errors:
            raise AcceleratorError(f"AXI bus error: {errors[0]}")
        if status != 0:
            name = STATUS_NAMES.get(status, "UNKNOWN")
            hint = STATUS_HINTS.get(name, "unknown status code")
            raise AcceleratorError(f"kernel returned status {status} ({name}): {hint}")

    def _ensure_output(self, stride: int) -> None:
        """Grow the output buffer where a call stores more per image than it holds (a
        decoder stage's debug stop: its maps are the largest); once, for every later
        call."""
        if stride > self._out_words:
            self._out_words = stride
            self.output_buf = self.board.allocate(self.max_images * stride * 4)


def _lap(t0: float) -> float:
    return time.perf_counter() - t0


@dataclass(frozen=True)
class StoredLayout:
    """What the kernel stores for one call, per image (:func:`stored_layout`).

    Attributes
    ----------
    stride : int
        32-bit words per image (image ``b`` at ``b * stride``).
    width : int
        Words per token of the token rows at the start of an image's region.
    stage : str
        ``"tokens"``, a debug stage's name, or ``"debug_stop N"`` for a code the kernel
        refuses; ``"dec.logits"`` for a whole run that decodes.
    decoded : Stage or None
        Where the call decodes, the decoder stage stored after the final tokens, at
        word :func:`~edgemoe.host.contracts.decoder.tokens_words`.
    tiling : Tiling
        The build (the decoder's bus-word padding).
    """

    stride: int
    width: int
    stage: str
    decoded: dp.Stage | None = None
    tiling: Tiling = DEFAULT_TILING

    def unpack(self, cfg: ModelConfig, words: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """An output region ``(B, stride)`` of int32 words as (the token rows ``(B, tokens,
        width)`` int32, a copy; the decoded stage's raw values ``(B, h, w, C)`` int64, or
        None where the call does not decode)."""
        n, tok = len(words), cfg.num_tokens
        raw = np.array(words[:, : tok * self.width]).reshape(n, tok, self.width)
        stage = self.decoded
        if stage is None:
            return raw, None
        t = self.tiling
        at, size = dp.tokens_words(cfg, t), dp.stage_words(cfg, stage, t)
        region = np.asarray(words[:, at : at + size], dtype=np.int64)
        h, w, c = stage.shape
        if stage.kind == dp.NORM:  # the grid's token rows, each padded to whole bus words
            rows = region.reshape(n, h * w, size // (h * w))
            return raw, rows[:, :, :c].reshape(n, h, w, c).copy()
        return raw, np.stack([dp.unpack_map(cfg, r, stage.shape, t) for r in region])


def stored_layout(
    cfg: ModelConfig,
    debug_stop: int,
    task: str | int | None = None,
    tiling: Tiling = DEFAULT_TILING,
) -> StoredLayout:
    """What the kernel stores for a call of ``task`` with ``debug_stop``
    (:func:`edgemoe.host.export.hls_params.output_layout`).

    A call of a task the kernel decodes (a ``pup`` head; no stop or a decoder stage's)
    stores the final tokens, then the stage (:attr:`StoredLayout.decoded`). A code the
    kernel refuses (``BAD_DEBUG_STOP``; or a task id it refuses) gets the whole run's
    layout of a task it does not decode (the buffers stay sized and the kernel writes
    nothing) and the stage ``"debug_stop N"``: the one place of that rule, for the
    driver, the C-sim and the virtual board.
    """
    try:
        stride, width = output_layout(cfg, debug_stop, task, tiling)
        dec = decoded_stage(cfg, debug_stop, task, tiling)
        if dec is not None:
            stage = dec.name
        else:
            stage = "tokens" if debug_stop == 0 else debug_stage_name(cfg, debug_stop, task)
    except ValueError:
        stride, width = output_layout(cfg, 0)
        return StoredLayout(stride, width, f"debug_stop {debug_stop}", None, tiling)
    return StoredLayout(stride, width, stage, dec, tiling)


class DriverBackend:
    """An ``edgemoe.backends`` backend that runs the kernel through :class:`Accelerator`.

    Subclasses say how to get a board (:meth:`make_board`) and declare their
    ``capabilities``; the bundle is packed from the workload's quantized model.
    ``record=True`` records every layer boundary
    (:func:`~edgemoe.host.driver.backends.record_boundaries`).
    """

    name = "driver"
    max_images = 4
    timeout_s = 600.0

    def __init__(self) -> None:
        self._cached: tuple[object, Accelerator] | None = None

    def make_board(self, cfg: ModelConfig, profile: Profile, tiling: Tiling) -> Board:
        raise NotImplementedError

    def make_accelerator(
        self,
        cfg: ModelConfig,
        profile: Profile,
        tiling: Tiling = DEFAULT_TILING,
        max_images: int | None = None,
    ) -> Accelerator:
        """A driver on a new board of this backend (the bundle still to load)."""
        board = self.make_board(cfg, profile, tiling)
        return Accelerator(board, cfg, profile, tiling, max_images or self.max_images)

    def _accelerator(self, wl) -> Accelerator:
        if self._cached is None or self._cached[0] is not wl:
            acc = self.make_accelerator(wl.cfg, wl.profile)
            acc.load_bundle(
                wl.bundle if acc.tiling == DEFAULT_TILING else pack(wl.quantized, acc.tiling)
            )
            self._cached = (wl, acc)
        return self._cached[1]

    def run(self, wl, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        """Run ``images`` (B, H, W, 3) uint8 for ``task`` (the ``Backend`` protocol)."""
        acc = self._accelerator(wl)
        t0 = time.perf_counter()
        res = acc.run(images, task, timeout_s=self.timeout_s)
        dt = time.perf_counter() - t0
        tokens = acc.to_float(res.raw)
        logits = None if res.logits is None else acc.logits_to_float(res.logits)
        stages: dict[str, np.ndarray] = {}
        routes: list[np.ndarray] = []
        if record:
            stages, routes = record_boundaries(
                wl, lambda stop: acc.run(images, task, stop, self.timeout_s).values, task=task
            )
        return RunOutput(tokens, stages, routes, {}, dt, logits)
