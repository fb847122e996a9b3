"""scripts/vivado/build_overlay.tcl, driven by tclsh with the Vivado commands stubbed out."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from edgemoe.host.contracts.kernel import ARGS, VLNV
from tests.conftest import tcl_is_complete

ROOT = Path(__file__).resolve().parents[2]
TCL = ROOT / "scripts" / "vivado" / "build_overlay.tcl"
needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not on PATH")

# Every Vivado command the script calls records itself; get_* return their argument
# so that calls read like the script; the run properties report a met timing.
STUB = r"""
set ::calls {}
foreach cmd {create_project set_property update_ip_catalog create_bd_design create_bd_cell
             apply_bd_automation connect_bd_net connect_bd_intf_net assign_bd_address
             validate_bd_design save_bd_design generate_target make_wrapper add_files
             update_compile_order launch_runs wait_on_runs open_run report_timing_summary
             close_design current_project current_fileset get_bd_pins get_bd_intf_pins
             get_bd_cells get_files get_runs} {
    proc $cmd {args} [format {
        lappend ::calls [list %s {*}$args]
        return [lindex $args end]
    } $cmd]
}
proc get_board_parts {args} {
    lappend ::calls [list get_board_parts {*}$args]
    return $::env(STUB_BOARDS)
}
proc report_utilization {args} {
    lappend ::calls [list report_utilization {*}$args]
    if {"-return_string" in $args} { return $::env(STUB_UTIL) }
    return ""
}
proc get_property {name obj} {
    lappend ::calls [list get_property $name $obj]
    switch -- $name {
        CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ { return $::env(STUB_PL_MHZ) }
        PROGRESS { return "100%" }
        STATUS { return "write_bitstream Complete!" }
        STATS.WNS { return $::env(STUB_WNS) }
        STATS.WHS { return $::env(STUB_WHS) }
    }
    return ""
}
rename exit _exit
proc exit {{code 0}} {
    foreach c $::calls { puts "CALL $c" }
    puts "EXIT $code"
    _exit $code
}
source [lindex $argv 0]
"""


# report_utilization's table, as Vivado prints it after synthesis (xczu7ev).
UTIL = """
+----------------------------+--------+-------+------------+-----------+-------+
|          Site Type         |  Used  | Fixed | Prohibited | Available | Util% |
+----------------------------+--------+-------+------------+-----------+-------+
| CLB LUTs*                  | 120211 |     0 |          0 |    230400 | 52.17 |
| Block RAM Tile             |    219 |     0 |          0 |       312 | {bram} |
| URAM                       |     48 |     0 |          0 |        96 | 50.00 |
| DSPs                       |   1364 |     0 |          0 |      1728 | {dsp} |
+----------------------------+--------+-------+------------+-----------+-------+
"""
BOARDS = "xilinx.com:zcu104:part0:1.0 xilinx.com:zcu104:part0:1.1"


def run_tcl(
    tmp_path: Path,
    wns="0.12",
    whs="0.01",
    ip=True,
    boards=BOARDS,
    dsp="78.94",
    bram="70.19",
    pl_mhz="299.997",
) -> tuple[int, list[str], str]:
    repo = tmp_path / "ip"
    repo.mkdir()
    if ip:
        (repo / "component.xml").write_text("<component/>")
    build = tmp_path / "vivado"
    # the files Vivado would have written
    (build / "edgemoe.runs" / "impl_1").mkdir(parents=True)
    (build / "edgemoe.runs" / "impl_1" / "edgemoe_wrapper.bit").write_text("bit")
    hw = build / "edgemoe.gen" / "sources_1" / "bd" / "edgemoe" / "hw_handoff"
    hw.mkdir(parents=True)
    (hw / "edgemoe.hwh").write_text("<hwh/>")
    stub = tmp_path / "stub.tcl"
    stub.write_text(STUB)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMOE_")}
    env.update(
        EDGEMOE_IP_REPO=str(repo),
        EDGEMOE_VIVADO_BUILD=str(build),
        EDGEMOE_OVERLAY_DIR=str(tmp_path / "overlay"),
        STUB_WNS=wns,
        STUB_WHS=whs,
        STUB_BOARDS=boards,
        STUB_UTIL=UTIL.format(dsp=dsp, bram=bram),
        STUB_PL_MHZ=pl_mhz,
    )
    run = subprocess.run(
        ["tclsh", str(stub), str(TCL)], capture_output=True, text=True, env=env, check=False
    )
    calls = [ln[5:] for ln in run.stdout.splitlines() if ln.startswith("CALL ")]
    return run.returncode, calls, run.stdout + run.stderr


@needs_tclsh
def test_build_overlay_tcl_is_complete_tcl():
    assert tcl_is_complete(TCL.read_text())


@needs_tclsh
def test_block_design_for_the_zcu104(tmp_path):
    code, calls, out = run_tcl(tmp_path)
    assert code == 0, out
    text = "\n".join(calls)
    assert "create_project -force edgemoe" in text and "-part xczu7ev-ffvc1156-2-e" in text
    assert "set_property board_part xilinx.com:zcu104:part0:1.1" in text
    assert 'apply_board_preset "1"' in text or "apply_board_preset 1" in text
    assert f"-vlnv {VLNV} edgemoe_top_0" in text
    assert "CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ 300" in text
    assert "CONFIG.PSU__USE__M_AXI_GP0 1" in text
    assert "zynq_ultra_ps_e_0/M_AXI_HPM0_FPD" in text
    assert "edgemoe_top_0/s_axi_control" in text
    bundles = [a.bundle for a in ARGS if a.kind == "ptr"]
    own = [b for b in bundles if b != "gmem_maps"]
    for hp, bundle in enumerate(own):
        # its own SmartConnect, its own HP port
        assert f"-vlnv xilinx.com:ip:smartconnect sc_{bundle}" in text
        assert f"edgemoe_top_0/m_axi_{bundle} sc_{bundle}/S00_AXI" in text
        assert f"sc_{bundle}/M00_AXI zynq_ultra_ps_e_0/S_AXI_HP{hp}_FPD" in text
        assert f"CONFIG.PSU__USE__S_AXI_GP{hp + 2} 1" in text
    # the decoder's maps are the scratch buffer again: a second slave of its SmartConnect
    assert "edgemoe_top_0/m_axi_gmem_maps sc_gmem_scratch/S01_AXI" in text
    assert "{CONFIG.NUM_SI 2 CONFIG.NUM_MI 1} sc_gmem_scratch" in text
    assert "sc_gmem_maps" not in text and f"S_AXI_HP{len(own)}_FPD" not in text
    assert "launch_runs impl_1 -to_step write_bitstream" in text
    overlay = tmp_path / "overlay"
    assert (overlay / "edgemoe.bit").exists() and (overlay / "edgemoe.hwh").exists()


@needs_tclsh
def test_flow_looks_up_the_board_checks_utilisation_then_implements(tmp_path):
    code, calls, out = run_tcl(tmp_path)
    assert code == 0, out
    names = [c.split()[0] for c in calls]
    assert "get_board_parts -quiet -latest_file_version xilinx.com:zcu104:*" in calls
    assert "wait_on_run" not in names  # deprecated: wait_on_runs
    order = [
        calls.index("launch_runs synth_1 -jobs 4"),
        calls.index("wait_on_runs synth_1"),
        calls.index("report_utilization -return_string"),
        calls.index("set_property strategy Performance_ExplorePostRoutePhysOpt impl_1"),
        calls.index("launch_runs impl_1 -to_step write_bitstream -jobs 4"),
        calls.index("wait_on_runs impl_1"),
    ]
    assert order == sorted(order)
    assert "DSPs 78.94 % after synthesis" in out
    assert "PL clock 299.997 MHz (asked for 300 MHz)" in out
    assert (tmp_path / "overlay" / "pl_clock_mhz.txt").read_text().strip() == "299.997"


@needs_tclsh
def test_without_zcu104_board_files_it_fails_with_a_hint(tmp_path):
    code, calls, out = run_tcl(tmp_path, boards="")
    assert code == 1 and "no ZCU104 board files" in out
    assert not any(c.startswith("launch_runs") for c in calls)


@needs_tclsh
@pytest.mark.parametrize(("dsp", "bram"), [("88.60", "70.19"), ("78.94", "91.03")])
def test_utilisation_over_the_limit_fails_before_placement(tmp_path, dsp, bram):
    code, calls, out = run_tcl(tmp_path, dsp=dsp, bram=bram)
    assert code == 1 and "after synthesis (limit 85 %)" in out
    assert not any(c.startswith("launch_runs impl_1") for c in calls)


@needs_tclsh
def test_a_pl_clock_far_from_the_request_fails(tmp_path):
    code, _, out = run_tcl(tmp_path, pl_mhz="250.000")
    assert code == 1 and "more than 1 % off" in out


@needs_tclsh
@pytest.mark.parametrize("wns, whs", [("-0.051", "0.02"), ("0.3", "-0.001")])
def test_negative_slack_fails(tmp_path, wns, whs):
    code, _, out = run_tcl(tmp_path, wns=wns, whs=whs)
    assert code == 1 and "timing missed" in out
    assert not (tmp_path / "overlay" / "edgemoe.bit").exists()


@needs_tclsh
def test_missing_ip_fails_with_a_hint(tmp_path):
    code, calls, out = run_tcl(tmp_path, ip=False)
    assert code == 1 and "make hls" in out
    assert not any(c.startswith("create_project") for c in calls)


def test_make_n_bitstream_shows_the_chain():
    if shutil.which("make") is None:
        pytest.skip("make not on PATH")
    run = subprocess.run(
        ["make", "-n", "bitstream", "BIN=.venv/bin"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "vitis_hls -f" in run.stdout  # make hls, when the IP is not there yet
    # ... C-synthesis and export only: a bitstream never waits on a co-simulation
    (hls,) = [ln for ln in run.stdout.splitlines() if "vitis_hls -f" in ln]
    assert 'EDGEMOE_HLS_STEPS="csynth export"' in hls
    assert "cosim" not in run.stdout
    assert "vivado -mode batch" in run.stdout and "build_overlay.tcl" in run.stdout
