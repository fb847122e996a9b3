"""C-sim of the HLS kernel from Python (like hls4ml's compile()/predict()).

g++ builds a shared library from exactly the sources Vitis synthesises
(``hls/src``, ``hls/include``) plus a thin C entry point, with the parameter
header generated for the requested (config, profile, tiling). Libraries are
cached by a hash of the sources, the header and the flags; numpy buffers hold
the DDR images (bundle, images, output, scratch; ``maps`` is the scratch buffer
again, as on the board) and ctypes passes pointers.

``ap_types=True`` builds with exact-width ``ap_int`` arithmetic (what synthesis
computes); the default uses native 64-bit integers, which is much faster and
must be bit-exact with it (tested).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.scratch import scratch_bytes
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.accelerator import stored_layout
from edgemoe.host.export.hls_params import MAX_IMAGES, generate
from edgemoe.models.config import ModelConfig

ROOT = Path(__file__).resolve().parent.parent
HLS = ROOT / "hls"
CSRC = Path(__file__).resolve().parent / "csrc"
CACHE = Path(os.environ.get("EDGEMOE_CACHE", ROOT / "build" / "csim"))
CXX = os.environ.get("CXX", "g++")
# Every build is its own library, loaded side by side in one process: keep the
# kernel's symbols (static buffers of inline functions included) private to it.
CXXFLAGS = [
    "-std=c++14",
    "-O3",
    "-fPIC",
    "-shared",
    "-w",
    "-fvisibility=hidden",
    "-fvisibility-inlines-hidden",
    "-fno-gnu-unique",
]
BUNDLES = [a.bundle for a in ARGS if a.kind == "ptr"]


class CSimError(EdgeMoeError):
    """The C-sim library cannot be built or called."""


def ap_types_include() -> Path:
    """Folder with ``ap_int.h``: Vitis's own when ``XILINX_HLS`` is set, else hls4ml's copy.

    hls4ml is located, not imported (importing it pulls in its whole stack).
    """
    xilinx = os.environ.get("XILINX_HLS")
    if xilinx and (Path(xilinx) / "include" / "ap_int.h").exists():
        return Path(xilinx) / "include"
    spec = importlib.util.find_spec("hls4ml")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "templates" / "vivado" / "ap_types"
            if (p / "ap_int.h").exists():
                return p
    raise CSimError("ap_int.h not found: install hls4ml==1.3.0 (make venv) or set XILINX_HLS")


def kernel_sources() -> list[Path]:
    """The synthesised sources: the top and every header it includes."""
    return sorted(HLS.glob("src/*.cpp")) + sorted(HLS.glob("include/edgemoe/*.h"))


def _key(params: str, ap_types: bool, extra_sources: tuple[Path, ...] = ()) -> str:
    h = hashlib.sha256()
    for p in kernel_sources() + sorted(CSRC.glob("*.cpp")) + list(extra_sources):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(params.encode())
    h.update(" ".join(CXXFLAGS).encode())
    h.update(str(ap_types).encode())
    h.update(str(ap_types_include()).encode())
    return h.hexdigest()[:20]


def compile_command(
    params_header: Path,
    out: Path,
    ap_types: bool = False,
    extra_sources: tuple[Path, ...] = (),
) -> list[str]:
    """The g++ command that builds the C-sim shared library.

    Parameters
    ----------
    params_header : Path
        The generated parameter header (:func:`edgemoe.host.export.hls_params.generate`).
    out : Path
        The ``.so`` to write.
    ap_types : bool
        Exact-width ``ap_int`` arithmetic instead of native integers.
    extra_sources : tuple of Path
        More C++ files linked into the same library (the RTL shell's DPI-C glue).
    """
    return [
        CXX,
        *CXXFLAGS,
        f"-I{HLS / 'include'}",
        f"-I{ap_types_include()}",
        f'-DEDGEMOE_PARAMS_HEADER="{params_header}"',
        *(["-DEDGEMOE_AP_TYPES"] if ap_types else []),
        *map(str, sorted(HLS.glob("src/*.cpp"))),
        str(CSRC / "csim_api.cpp"),
        *map(str, extra_sources),
        "-o",
        str(out),
    ]


def build(
    cfg: ModelConfig, profile: Profile, tiling: Tiling = DEFAULT_TILING, ap_types: bool = False
) -> Path:
    """Build (or find in the cache) the C-sim library; returns its path."""
    return cached_library(
        CACHE,
        f"{cfg.name}_{profile.name}_{tiling.key}{'_ap' if ap_types else ''}",
        "libedgemoe_csim.so",
        generate(cfg, profile, tiling),
        ap_types=ap_types,
        # the first use of a build compiles it (seconds); say so instead of waiting silently
        notice=f"notice: building the C-sim of {cfg.name} / {profile.name} / {tiling.key} "
        f"(first use; cached in {CACHE})",
    )


def cached_library(
    cache: Path,
    prefix: str,
    lib_name: str,
    params: str,
    ap_types: bool = False,
    extra_sources: tuple[Path, ...] = (),
    notice: str | None = None,
    failed: Callable[[str], Exception] | None = None,
) -> Path:
    """The C-sim build cache (the library, and the RTL shell's library with its DPI-C glue).

    A library lives in ``cache/<prefix>_<hash>/`` where the hash covers the sources, the
    parameter header, the flags and ``extra_sources``; it is built into a temporary file
    and renamed into place, so concurrent builds and an interrupted one never leave a
    half-written library.

    Parameters
    ----------
    cache : Path
        The cache folder.
    prefix, lib_name : str
        The build's folder prefix and the library's file name.
    params : str
        The generated parameter header.
    ap_types, extra_sources
        As :func:`compile_command`.
    notice : str, optional
        Printed on stderr before a build (not on a cache hit).
    failed : callable, optional
        g++'s stderr -> the exception to raise; default :class:`CSimError` with its
        first error line.
    """
    out_dir = cache / f"{prefix}_{_key(params, ap_types, extra_sources)}"
    lib = out_dir / lib_name
    if lib.exists():
        return lib
    if shutil.which(CXX) is None:
        raise CSimError(f"C++ compiler {CXX!r} not found")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "params.h").write_text(params)
        tmp = Path(tempfile.mkstemp(dir=out_dir, suffix=".so")[1])
    except OSError as e:
        raise CSimError(
            f"cannot write the C-sim cache {cache}: {e.strerror or e} (set EDGEMOE_CACHE "
            "to a writable folder)"
        ) from None
    if notice:
        print(notice, file=sys.stderr, flush=True)
    cmd = compile_command(out_dir / "params.h", tmp, ap_types=ap_types, extra_sources=extra_sources)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        if failed is not None:
            raise failed(proc.stderr)
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr[:300])
        raise CSimError(f"C-sim build failed: {first.strip()}")
    os.replace(tmp, lib)
    return lib


def build_testbench(
    name: str,
    cfg: ModelConfig,
    profile: Profile,
    out_dir: Path,
    tiling: Tiling = DEFAULT_TILING,
    with_kernel: bool = False,
) -> Path:
    """Compile ``hls/tb/<name>.cpp`` (a Vitis-style testbench with its own main()).

    The same include paths and parameter header as the C-sim library; with
    ``with_kernel`` the top function's sources are linked in too.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    params = out_dir / "params.h"
    params.write_text(generate(cfg, profile, tiling))
    exe = out_dir / name
    cmd = [
        CXX,
        "-std=c++14",
        "-O2",
        "-w",
        f"-I{HLS / 'include'}",
        f"-I{ap_types_include()}",
        f'-DEDGEMOE_PARAMS_HEADER="{params}"',
        str(HLS / "tb" / f"{name}.cpp"),
        *(map(str, sorted(HLS.glob("src/*.cpp"))) if with_kernel else ()),
        "-o",
        str(exe),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise CSimError(f"testbench {name} failed to build: {proc.stderr.strip()[:300]}")
    return exe


@dataclass
class CSimRun:
    """Result of one kernel call.

    Attributes
    ----------
    status : int
        The kernel's return code.
    output : ndarray int32 (num_images, tokens, width)
        The token rows the kernel stored: the backbone tokens (also of a call that
        decodes), or a backbone debug stage.
    buffer : ndarray int32 (num_images, words per image)
        The whole output buffer.
    ddr_read, ddr_written : dict[str, int]
        Bytes per m_axi bundle.
    stage : str
        What the call stored last (:func:`~edgemoe.host.driver.accelerator.stored_layout`):
        ``"tokens"``, ``"dec.logits"`` for a whole run that decodes, or the debug stage.
    decoded : ndarray int64 (num_images, h, w, C) or None
        Where the call decoded (a ``pup`` task; no stop or a decoder stage's): the raw
        values of the decoder stage ``stage`` stored after the tokens.
    """

    status: int
    output: np.ndarray
    buffer: np.ndarray
    ddr_read: dict[str, int]
    ddr_written: dict[str, int]
    stage: str = "tokens"
    decoded: np.ndarray | None = None

    @property
    def logits(self) -> np.ndarray | None:
        """The decoder's raw ``dec_out`` logits ``(num_images, h, w, C)``, channels last,
        where the call decoded to the end (else None)."""
        return self.decoded if self.stage == "dec.logits" else None

    @property
    def values(self) -> np.ndarray:
        """The raw values of ``stage``: the decoded map, else the token rows."""
        return self.output if self.decoded is None else self.decoded


class CSim:
    """The kernel as a function over numpy buffers."""

    def __init__(
        self,
        cfg: ModelConfig,
        profile: Profile,
        tiling: Tiling = DEFAULT_TILING,
        ap_types: bool = False,
    ):
        self.cfg, self.profile, self.tiling = cfg, profile, tiling
        self.path = build(cfg, profile, tiling, ap_types)
        lib = ctypes.CDLL(str(self.path))
        lib.edgemoe_csim_run.restype = ctypes.c_uint32
        lib.edgemoe_csim_run.argtypes = (
            [ctypes.c_void_p] * 4 + [ctypes.c_uint32] * 3 + [ctypes.POINTER(ctypes.c_uint64)]
        )
        if lib.edgemoe_csim_word_bytes() != tiling.axi_bits // 8:
            raise CSimError("ap_uint word layout is not plain little-endian limbs")
        if lib.edgemoe_csim_ports() != len(BUNDLES):
            raise CSimError(
                f"the kernel counts {lib.edgemoe_csim_ports()} m_axi bundles, "
                f"contracts.kernel.ARGS has {len(BUNDLES)} ({', '.join(BUNDLES)})"
            )
        self.ap_types = bool(lib.edgemoe_csim_ap_types())
        self._lib = lib

    def run(
        self,
        bundle: bytes | np.ndarray,
        patches: np.ndarray,
        task: int,
        debug_stop: int = 0,
        num_images: int | None = None,
        output: np.ndarray | None = None,
    ) -> CSimRun:
        """Call the kernel once.

        Parameters
        ----------
        bundle : bytes or uint8 array
            The weight bundle.
        patches : uint8 (B, patches, 3*p*p)
            Images, patch-major.
        task : int
            Task id register (the kernel checks its range).
        debug_stop : int
            0, or :func:`edgemoe.host.export.hls_params.debug_stop_code` of a stage (of
            ``task``: a ``pup`` task's decoder stages and ``tokens`` stop too).
        num_images : int, optional
            The register value, default ``B``; 0 or more than ``B`` tests the kernel's
            checks (more than ``B`` is refused here unless the kernel rejects it).
        output : int32 (B, words per image), optional
            The output buffer; left untouched on a bad status. Words per image: the
            call's stride (:func:`~edgemoe.host.driver.accelerator.stored_layout`; a call
            that decodes stores the tokens, then the logits or a decoder stage).
        """
        cfg = self.cfg
        b = len(patches)
        n = b if num_images is None else num_images
        if 0 < n <= MAX_IMAGES and n > b:
            raise CSimError(f"num_images={n} but the image buffer holds {b}")
        # a bad stop or task: the kernel refuses it, the layout of a plain whole run
        layout = stored_layout(cfg, debug_stop, task, self.tiling)
        stride = layout.stride
        if output is None:
            output = np.zeros((max(b, 1), stride), dtype=np.int32)
        if output.shape[-1] < stride or output.dtype != np.int32:
            raise CSimError(f"output buffer needs int32 rows of {stride} words")
        bund = _aligned(
            np.frombuffer(bundle, dtype=np.uint8) if isinstance(bundle, bytes) else bundle
        )
        imgs = _aligned(np.ascontiguousarray(patches, dtype=np.uint8).reshape(-1))
        out = _aligned(output.reshape(-1))
        scratch = _aligned(np.zeros(scratch_bytes(cfg, self.tiling, n), dtype=np.uint8))
        counters = (ctypes.c_uint64 * (2 * len(BUNDLES)))()  # read, then written, per bundle
        status = self._lib.edgemoe_csim_run(
            bund.ctypes.data,
            imgs.ctypes.data,
            out.ctypes.data,
            scratch.ctypes.data,
            task,
            n,
            debug_stop,
            counters,
        )
        if not np.shares_memory(out, output):
            output[...] = out.reshape(output.shape)
        # image i at i * stride words, whatever the rows of ``output`` hold
        words = output.reshape(-1)[: len(output) * stride].reshape(len(output), stride)
        width = layout.width
        view = words[:, : cfg.num_tokens * width].reshape(len(output), cfg.num_tokens, width)
        decoded = None
        if status == 0 and layout.decoded is not None:
            decoded = layout.unpack(cfg, words)[1]
        return CSimRun(
            int(status),
            view,
            output,
            {k: int(counters[i]) for i, k in enumerate(BUNDLES)},
            {k: int(counters[len(BUNDLES) + i]) for i, k in enumerate(BUNDLES)},
            layout.stage,
            decoded,
        )


def _aligned(a: np.ndarray, align: int = 64) -> np.ndarray:
    """1-D ``a`` itself when its data is ``align``-byte aligned and contiguous, else an
    aligned copy (the kernel's bus words want aligned host memory)."""
    flat = a.reshape(-1)
    if flat.ctypes.data % align == 0 and flat.flags.c_contiguous:
        return flat
    raw = np.empty(flat.nbytes + align, dtype=np.uint8)
    off = (-raw.ctypes.data) % align
    view = raw[off : off + flat.nbytes].view(flat.dtype)
    view[...] = flat
    return view
