"""The Vitis HLS build flow: run_hls.tcl, hls_config.cfg, `make hls` and the report check.

Everything here runs without Xilinx tools (tclsh stands in for vitis_hls, synthetic
reports in the real csynth.xml shape stand in for synthesis) except the tests
marked ``vitis``, which skip when neither ``vitis_hls`` nor ``vitis-run`` is on PATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgemoe.host.contracts.kernel import TOP, VLNV
from tests.conftest import tcl_is_complete

ROOT = Path(__file__).resolve().parents[2]
RUN_HLS = ROOT / "hls" / "run_hls.tcl"
HLS_CONFIG = ROOT / "hls" / "hls_config.cfg"
PART = "xczu7ev-ffvc1156-2-e"
CLOCK_NS = 3.333

HAVE_VITIS = bool(shutil.which("vitis_hls") or shutil.which("vitis-run"))
needs_vitis = pytest.mark.skipif(not HAVE_VITIS, reason="vitis_hls / vitis-run not on PATH")
needs_tclsh = pytest.mark.skipif(shutil.which("tclsh") is None, reason="tclsh not on PATH")
needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make not on PATH")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


reports = _load("check_hls_reports")


# ---------------------------------------------------------------------------
# Synthetic reports shaped like Vitis HLS 2023.2 output: <solution>/syn/report/ holds
# csynth.xml (top) and <module>_csynth.xml/.rpt per module; pipelined loops are
# outlined into <top>_Pipeline_<loop> modules.


def module_xml(
    module: str,
    *,
    estimated: float = 2.910,
    target: float = 3.33,
    uncertainty: float = 0.90,
    loops: str = "",
    violations: str = "",
    resources: dict[str, int] | None = None,
    hierarchy: str = "",
) -> str:
    used = {"BRAM_18K": 10, "DSP": 256, "FF": 30000, "LUT": 40000, "URAM": 8, **(resources or {})}
    used_xml = "".join(f"<{k}>{v}</{k}>\n" for k, v in used.items())
    avail_xml = "".join(f"<{k}>{v}</{k}>\n" for k, v in ZCU104.items())
    return f"""<profile>
<ReportVersion>
<Version>2023.2</Version>
</ReportVersion>
<UserAssignments>
<unit>ns</unit>
<ProductFamily>zynquplus</ProductFamily>
<Part>{PART}</Part>
<TopModelName>{module}</TopModelName>
<TargetClockPeriod>{target:.2f}</TargetClockPeriod>
<ClockUncertainty>{uncertainty:.2f}</ClockUncertainty>
<FlowTarget>vivado</FlowTarget>
</UserAssignments>
<PerformanceEstimates>
<PipelineType>no</PipelineType>
<SummaryOfTimingAnalysis>
<unit>ns</unit>
<EstimatedClockPeriod>{estimated:.3f}</EstimatedClockPeriod>
</SummaryOfTimingAnalysis>
<SummaryOfOverallLatency>
<unit>clock cycles</unit>
<Best-caseLatency>undef</Best-caseLatency>
<Interval-min>undef</Interval-min>
<Interval-max>undef</Interval-max>
</SummaryOfOverallLatency>
<SummaryOfLoopLatency>
{loops}
</SummaryOfLoopLatency>
<SummaryOfViolations>
<IssueType>-</IssueType>
<ViolationType>-</ViolationType>
<SourceLocation>hls/src/edgemoe_top.cpp:88</SourceLocation>
<SummaryOfLoopViolations>
{violations}
</SummaryOfLoopViolations>
</SummaryOfViolations>
</PerformanceEstimates>
<AreaEstimates>
<Resources>
{used_xml}</Resources>
<AvailableResources>
{avail_xml}</AvailableResources>
</AreaEstimates>
{hierarchy}</profile>
"""


#: The part's resources as csynth.xml lists them (xczu7ev).
ZCU104 = {"BRAM_18K": 624, "DSP": 1728, "FF": 460800, "LUT": 230400, "URAM": 96}


def instance_xml(module: str, children: str = "", n: int = 0) -> str:
    return (
        f"<Instance>\n<InstName>grp_{module}_fu_{100 + n}</InstName>\n"
        f"<ModuleName>{module}</ModuleName>\n<BindInstances>add_ln1</BindInstances>\n"
        f"<InstancesList>\n{children}</InstancesList>\n</Instance>\n"
    )


def hierarchy_xml(linear_units: int = 1, lane_steps: int = 1) -> str:
    """The top's RTLDesignHierarchy: run_images > lane_step > lanes > the two lanes."""
    units = "".join(
        instance_xml("linear_unit" if i == 0 else f"linear_unit_{i}", n=i)
        for i in range(linear_units)
    )
    lane = instance_xml(
        "lanes",
        instance_xml("side_lane", instance_xml(f"{TOP}_Pipeline_attn_key"))
        + instance_xml("linear_lane", units),
    )
    steps = "".join(instance_xml("lane_step", lane, n=i) for i in range(lane_steps))
    return (
        f'<RTLDesignHierarchy>\n<TopModule MAX_DEPTH="6">\n<ModuleName>{TOP}</ModuleName>\n'
        f"<InstancesList>\n{instance_xml('run_images', steps)}</InstancesList>\n"
        "</TopModule>\n</RTLDesignHierarchy>\n"
    )


def pipelined_loop(name: str, ii: int | str, *, depth: int = 5, inner: str = "") -> str:
    return f"""<{name}>
<Slack>0.43</Slack>
<TripCount>129</TripCount>
<Latency>133</Latency>
<AbsoluteTimeLatency>443</AbsoluteTimeLatency>
<PipelineII>{ii}</PipelineII>
<PipelineDepth>{depth}</PipelineDepth>
<InstanceList>
</InstanceList>
{inner}</{name}>
"""


def plain_loop(name: str, inner: str = "") -> str:
    return f"""<{name}>
<Slack>0.43</Slack>
<TripCount>12</TripCount>
<Latency>undef</Latency>
<AbsoluteTimeLatency>undef</AbsoluteTimeLatency>
<IterationLatency>undef</IterationLatency>
<InstanceList/>
{inner}</{name}>
"""


def module_rpt(module: str, rows: list[tuple[str, str, str]]) -> str:
    """The loop table of a module's text report: (loop, achieved II, target II)."""
    body = "\n".join(
        f"    |- {name:<16}|      133|      133|         6|{ach:>11}|{tgt:>11}|   129|       yes|"
        for name, ach, tgt in rows
    )
    return f"""
================================================================
== Vitis HLS Report for '{module}'
================================================================
+ Latency:
    + Detail:
    * Loop:
    +------------------+---------+---------+----------+-----------+-----------+------+----------+
    |                  |  Latency (cycles) | Iteration|  Initiation Interval  | Trip |          |
    |     Loop Name    |   min   |   max   |  Latency |  achieved |   target  | Count| Pipelined|
    +------------------+---------+---------+----------+-----------+-----------+------+----------+
{body}
    +------------------+---------+---------+----------+-----------+-----------+------+----------+
"""


def write_reports(
    root: Path,
    *,
    top_estimate: float = 2.910,
    target: float = 3.33,
    key_ii: int | str = 1,
    key_rpt: tuple[str, str] | None = ("1", "1"),
    sub_estimate: float = 2.50,
    violations: str = "",
    resources: dict[str, int] | None = None,
    hierarchy: str | None = None,
) -> Path:
    """A classic-flow build folder with a top and two pipelined-loop modules."""
    report = root / TOP / "solution1" / "syn" / "report"
    report.mkdir(parents=True)
    top_loops = plain_loop("image_loop", plain_loop("layer_loop"))
    (report / "csynth.xml").write_text(
        module_xml(
            TOP,
            estimated=top_estimate,
            target=target,
            loops=top_loops,
            resources=resources,
            hierarchy=hierarchy_xml() if hierarchy is None else hierarchy,
        )
    )
    (report / f"{TOP}_csynth.xml").write_text(
        module_xml(TOP, estimated=top_estimate, target=target, loops=top_loops)
    )
    key = f"{TOP}_Pipeline_attn_key"
    (report / f"{key}_csynth.xml").write_text(
        module_xml(
            key,
            estimated=sub_estimate,
            target=target,
            loops=pipelined_loop("attn_key", key_ii),
            violations=violations,
        )
    )
    if key_rpt is not None:
        (report / f"{key}_csynth.rpt").write_text(module_rpt(key, [("attn_key", *key_rpt)]))
    lin = f"{TOP}_Pipeline_linear_tile"
    (report / f"{lin}_csynth.xml").write_text(
        module_xml(
            lin,
            estimated=2.0,
            target=target,
            loops=plain_loop("lin_rows", pipelined_loop("lin_cols", 1)),
        )
    )
    return report


def check_cli(path: Path, *args: str) -> tuple[int, str]:
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_hls_reports.py"), str(path), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return run.returncode, run.stdout + run.stderr


def miss_lines(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if " MISS " in f"{ln} "]


# ---------------------------------------------------------------------------
# Report parsing and checking.


def test_parse_csynth_xml_reads_clock_and_nested_loops(tmp_path):
    report = write_reports(tmp_path)
    top = reports.parse_csynth_xml(report / "csynth.xml")
    assert (top.module, top.part) == (TOP, PART)
    assert (top.target_clock_ns, top.uncertainty_ns, top.estimated_clock_ns) == (3.33, 0.9, 2.91)
    assert [(lp.name, lp.pipelined) for lp in top.loops] == [
        ("image_loop", False),
        ("layer_loop", False),
    ]
    lin = reports.parse_csynth_xml(report / f"{TOP}_Pipeline_linear_tile_csynth.xml")
    assert [(lp.name, lp.pipelined, lp.achieved_ii) for lp in lin.loops] == [
        ("lin_rows", False, None),
        ("lin_cols", True, 1),
    ]


def test_parse_rpt_loop_table(tmp_path):
    path = tmp_path / "m_csynth.rpt"
    path.write_text(module_rpt("m", [("attn_key", "2", "1"), ("attn_row", "1", "-")]))
    assert reports.parse_rpt_loop_targets(path) == {"attn_key": (2, 1), "attn_row": (1, None)}
    assert reports.parse_rpt_loop_targets(tmp_path / "missing.rpt") == {}


def test_all_targets_met_passes_and_prints_a_table(tmp_path):
    write_reports(tmp_path)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    assert "estimated clock (ns)" in out
    assert f"{TOP}_Pipeline_attn_key/attn_key" in out
    assert f"{TOP}_Pipeline_linear_tile/lin_cols" in out
    assert "2 pipelined loops, 0 misses" in out
    assert not miss_lines(out)


def test_estimated_clock_above_target_fails(tmp_path):
    write_reports(tmp_path, top_estimate=3.52)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert any("estimated clock" in ln and "3.520" in ln for ln in miss_lines(out)), out


def test_a_submodule_over_the_clock_fails(tmp_path):
    write_reports(tmp_path, sub_estimate=3.61)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert any(f"{TOP}_Pipeline_attn_key" in ln for ln in miss_lines(out)), out


def test_report_for_another_clock_fails(tmp_path):
    write_reports(tmp_path, target=10.0, top_estimate=7.2, sub_estimate=7.0)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert any("synthesised for another clock" in ln for ln in miss_lines(out)), out
    # Without --clock-ns the report's own target is the reference.
    assert check_cli(tmp_path)[0] == 0


def test_estimate_inside_the_uncertainty_margin_only_warns(tmp_path):
    write_reports(tmp_path, top_estimate=3.0)  # above 3.33 - 0.90, below 3.33
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    assert "inside the uncertainty margin" in out


def test_loop_missing_its_ii_target_fails(tmp_path):
    write_reports(tmp_path, key_ii=2, key_rpt=("2", "1"))
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    (line,) = miss_lines(out)
    assert "attn_key" in line and "target from rpt" in line
    assert "1 misses" in out


def test_ii_target_comes_from_the_rpt_when_relaxed_there(tmp_path):
    write_reports(tmp_path, key_ii=2, key_rpt=("2", "2"))
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out


def test_without_rpt_the_default_target_ii_is_one(tmp_path):
    write_reports(tmp_path, key_ii=2, key_rpt=None)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert "target from default" in miss_lines(out)[0]
    assert check_cli(tmp_path, "--default-target-ii", "2")[0] == 0


def test_ii_override_per_loop(tmp_path):
    write_reports(tmp_path, key_ii=3, key_rpt=("3", "1"))
    assert check_cli(tmp_path, "--ii", "attn_key=3")[0] == 0
    assert check_cli(tmp_path, "--ii", f"{TOP}_Pipeline_attn_key/attn_key=2")[0] == 1
    code, out = check_cli(tmp_path, "--ii", "attn_key")
    assert code == 2 and "LOOP=N" in out


def test_unknown_achieved_ii_fails(tmp_path):
    write_reports(tmp_path, key_ii="undef", key_rpt=None)
    code, out = check_cli(tmp_path)
    assert code == 1
    assert "achieved II unknown" in out


def test_a_loop_flagged_with_an_ii_issue_fails(tmp_path):
    violation = (
        "<attn_key>\n<Name>attn_key</Name>\n<IssueType>II</IssueType>\n"
        "<ViolationType>Memory Dependency</ViolationType>\n</attn_key>\n"
    )
    write_reports(tmp_path, violations=violation)
    code, out = check_cli(tmp_path)
    assert code == 1
    assert "report flags II" in out


def test_the_written_report_is_csynth_xml_shaped(tmp_path):
    report = write_reports(tmp_path)
    top = reports.parse_csynth_xml(report / "csynth.xml")
    assert top.resources["DSP"] == 256 and top.available["DSP"] == ZCU104["DSP"]
    assert top.instances is not None and top.instances.count("linear_unit") == 1
    assert {"run_images", "lane_step", "lanes", "side_lane", "linear_lane"} <= set(top.instances)


def test_one_instance_of_each_single_unit_passes(tmp_path):
    write_reports(tmp_path)
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    for unit in reports.SINGLE_UNITS:
        (line,) = [ln for ln in out.splitlines() if ln.startswith(f"instances {unit} ")]
        assert line.split()[2:5] == ["1", "1", "ok"], line


@pytest.mark.parametrize(
    ("hierarchy", "unit", "note"),
    [
        (lambda: hierarchy_xml(linear_units=2), "linear_unit", "built more than once"),
        (lambda: hierarchy_xml(linear_units=0), "linear_unit", "inlined or renamed"),
        (lambda: hierarchy_xml(lane_steps=2), "lane_step", "built more than once"),
        (lambda: hierarchy_xml(lane_steps=2), "side_lane", "built more than once"),
        (lambda: "", "linear_unit", "no RTLDesignHierarchy"),
    ],
)
def test_a_single_unit_built_twice_or_missing_fails(tmp_path, hierarchy, unit, note):
    write_reports(tmp_path, hierarchy=hierarchy())
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert any(f"instances {unit} " in ln and note in ln for ln in miss_lines(out)), out


def test_single_units_are_selectable(tmp_path):
    write_reports(tmp_path, hierarchy=hierarchy_xml(linear_units=2))
    assert check_cli(tmp_path, "--single", "lane_step")[0] == 0
    assert check_cli(tmp_path, "--single", "linear_unit")[0] == 1


@pytest.mark.parametrize(
    ("resource", "used"),
    [("DSP", 1470), ("BRAM_18K", 531), ("URAM", 82)],  # each just above 85 % of the part
)
def test_a_resource_above_85_percent_fails(tmp_path, resource, used):
    write_reports(tmp_path, resources={resource: used})
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    (line,) = miss_lines(out)
    assert line.startswith(f"{resource} use (%)"), out
    # at the limit it passes, and the limit is an option
    limit = 100.0 * used / ZCU104[resource]
    assert check_cli(tmp_path, "--max-util", f"{limit + 0.1:.1f}")[0] == 0


def test_resources_at_85_percent_pass_and_old_dsp_spelling_counts(tmp_path):
    report = write_reports(tmp_path, resources={"DSP": 1468, "BRAM_18K": 530, "URAM": 81})
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    text = (report / "csynth.xml").read_text().replace("<DSP>", "<DSP48E>")
    (report / "csynth.xml").write_text(text.replace("</DSP>", "</DSP48E>"))
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    assert "1468 of 1728" in out


def test_missing_reports_exit_2(tmp_path):
    code, out = check_cli(tmp_path)
    assert code == 2
    assert "run csynth first" in out


def test_find_report_dir_for_both_flows(tmp_path):
    classic = write_reports(tmp_path / "classic")
    unified = tmp_path / "unified" / TOP / "hls" / "syn" / "report"
    unified.mkdir(parents=True)
    (unified / "csynth.xml").write_text(module_xml(TOP))
    assert reports.find_report_dir(tmp_path / "classic") == classic
    assert reports.find_report_dir(classic / "csynth.xml") == classic
    assert reports.find_report_dir(tmp_path / "unified" / TOP) == unified


def test_checker_needs_only_the_standard_library():
    text = (ROOT / "scripts" / "check_hls_reports.py").read_text()
    imports = re.findall(r"^(?:from|import)\s+([\w.]+)", text, re.M)
    assert set(imports) <= {"__future__", "argparse", "re", "sys", "xml.etree.ElementTree"} | {
        "collections.abc",
        "dataclasses",
        "pathlib",
    }


# ---------------------------------------------------------------------------
# run_hls.tcl, driven by tclsh with the vitis_hls commands stubbed out.

STUB = r"""
set ::calls {}
foreach cmd {open_project set_top add_files open_solution set_part create_clock
             config_interface csim_design csynth_design cosim_design
             export_design} {
    proc $cmd {args} [format {
        lappend ::calls [list %s {*}$args]
        if {[info exists ::env(STUB_FAIL)] && $::env(STUB_FAIL) eq "%s"} {
            error "stub failure"
        }
    } $cmd $cmd]
}
rename exit _exit
proc exit {{code 0}} {
    foreach c $::calls { puts "CALL $c" }
    puts "EXIT $code"
    _exit $code
}
source [lindex $argv 0]
"""


def make_hls_tree(tmp_path: Path) -> Path:
    """A copy of hls/run_hls.tcl beside a small source tree."""
    hls = tmp_path / "hls"
    for sub in ("src", "tb", "include/edgemoe"):
        (hls / sub).mkdir(parents=True)
    shutil.copy(RUN_HLS, hls / "run_hls.tcl")
    (hls / "src" / "edgemoe_top.cpp").write_text("")
    (hls / "tb" / "tb_top.cpp").write_text("")
    return hls


def run_tcl(tmp_path: Path, **env: str) -> tuple[int, list[list[str]], str]:
    hls = make_hls_tree(tmp_path)
    stub = tmp_path / "stub.tcl"
    stub.write_text(STUB)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEMOE_")}
    full_env.update(env)
    run = subprocess.run(
        ["tclsh", str(stub), str(hls / "run_hls.tcl")],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        check=False,
    )
    calls = []
    for line in run.stdout.splitlines():
        if line.startswith("CALL "):
            calls.append(_tcl_list(line[5:]))
    return run.returncode, calls, run.stdout + run.stderr


def _tcl_list(text: str) -> list[str]:
    """Split a Tcl list of words and {braced} words (enough for these calls)."""
    words, i = [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text[i] == "{":
            depth, j = 1, i + 1
            while depth:
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            words.append(text[i + 1 : j - 1])
            i = j
        else:
            j = i
            while j < len(text) and not text[j].isspace():
                j += 1
            words.append(text[i:j])
            i = j
    return words


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


@needs_tclsh
def test_run_hls_tcl_is_complete_tcl():
    assert tcl_is_complete(RUN_HLS.read_text())


@needs_tclsh
def test_run_hls_tcl_default_flow(tmp_path):
    code, calls, out = run_tcl(tmp_path)
    assert code == 0, out
    names = [c[0] for c in calls]
    flow = [n for n in names if n.endswith("_design")]
    assert flow == ["csim_design", "csynth_design", "cosim_design", "export_design"]
    # project set-up precedes the flow, in vitis_hls order
    assert names.index("open_project") < names.index("open_solution") < names.index("set_part")
    assert names.index("create_clock") < names.index("csim_design")

    by_name = {c[0]: c for c in calls}
    assert "-reset" in by_name["open_project"] and "-reset" in by_name["open_solution"]
    assert by_name["open_project"][-1] == str(tmp_path / "build" / "hls" / TOP)
    assert by_name["set_top"] == ["set_top", TOP]
    assert _option(by_name["open_solution"], "-flow_target") == "vivado"
    assert by_name["set_part"] == ["set_part", PART]
    assert float(_option(by_name["create_clock"], "-period")) == CLOCK_NS

    iface = by_name["config_interface"]
    assert _option(iface, "-m_axi_offset") == "slave"
    assert "-m_axi_addr64" in iface
    assert int(_option(iface, "-m_axi_max_widen_bitwidth")) == 128
    assert int(_option(iface, "-m_axi_latency")) > 0

    adds = [c for c in calls if c[0] == "add_files"]
    src = [c for c in adds if "-tb" not in c]
    tb = [c for c in adds if "-tb" in c]
    assert [Path(c[1]).name for c in src] == ["edgemoe_top.cpp"]
    assert [Path(c[2]).name for c in tb] == ["tb_top.cpp"]
    for c in adds:
        flags = _option(c, "-cflags")
        assert "-std=c++14" in flags
        assert f"-I{tmp_path / 'hls' / 'include'}" in flags

    export = by_name["export_design"]
    assert _option(export, "-format") == "ip_catalog"
    assert _option(export, "-rtl") == "verilog"
    vlnv = ":".join(_option(export, o) for o in ("-vendor", "-library", "-ipname", "-version"))
    assert vlnv == VLNV
    assert _option(by_name["cosim_design"], "-rtl") == "verilog"
    assert "-argv" not in by_name["csim_design"]


@needs_tclsh
def test_run_hls_tcl_steps_are_selectable(tmp_path):
    code, calls, out = run_tcl(tmp_path, EDGEMOE_HLS_STEPS="csynth export")
    assert code == 0, out
    assert [c[0] for c in calls if c[0].endswith("_design")] == ["csynth_design", "export_design"]


@needs_tclsh
def test_run_hls_tcl_without_csynth_reuses_the_solution(tmp_path):
    code, calls, out = run_tcl(tmp_path, EDGEMOE_HLS_STEPS="cosim export")
    assert code == 0, out
    by_name = {c[0]: c for c in calls}
    assert "-reset" not in by_name["open_project"] and "-reset" not in by_name["open_solution"]
    assert [c[0] for c in calls if c[0].endswith("_design")] == ["cosim_design", "export_design"]


@needs_tclsh
def test_run_hls_tcl_settings_from_the_environment(tmp_path):
    params = tmp_path / "params_other.h"
    code, calls, out = run_tcl(
        tmp_path,
        EDGEMOE_HLS_STEPS="csim cosim",
        EDGEMOE_TB_ARGV="vectors/mini 2",
        EDGEMOE_HLS_CLOCK_NS="4.0",
        EDGEMOE_HLS_BUILD=str(tmp_path / "out"),
        EDGEMOE_PARAMS_HEADER=str(params),
    )
    assert code == 0, out
    by_name = {c[0]: c for c in calls}
    assert _option(by_name["csim_design"], "-argv") == "vectors/mini 2"
    assert _option(by_name["cosim_design"], "-argv") == "vectors/mini 2"
    assert float(_option(by_name["create_clock"], "-period")) == 4.0
    assert by_name["open_project"][-1] == str(tmp_path / "out" / TOP)
    assert f'-DEDGEMOE_PARAMS_HEADER=\\"{params}\\"' in _option(by_name["add_files"], "-cflags")


@needs_tclsh
def test_run_hls_tcl_rejects_unknown_steps(tmp_path):
    code, calls, out = run_tcl(tmp_path, EDGEMOE_HLS_STEPS="csim synth")
    assert code == 2
    assert "unknown step 'synth'" in out
    assert not any(c[0].endswith("_design") for c in calls)


@needs_tclsh
@pytest.mark.parametrize("step", ["csim_design", "csynth_design", "cosim_design", "export_design"])
def test_run_hls_tcl_failing_step_exits_nonzero(tmp_path, step):
    code, calls, out = run_tcl(tmp_path, STUB_FAIL=step)
    assert code == 1, out
    assert [c[0] for c in calls if c[0].endswith("_design")][-1] == step


def test_no_absolute_tool_paths():
    for path in (RUN_HLS, HLS_CONFIG, ROOT / "Makefile"):
        text = path.read_text()
        assert not re.search(r"/(opt|tools)/Xilinx|/Xilinx/Vitis|C:\\\\Xilinx", text), path


# ---------------------------------------------------------------------------
# hls_config.cfg (Vitis unified flow).


def read_cfg(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of key=value lines; keys may repeat (tb.file, syn.file)."""
    sections: dict[str, dict[str, list[str]]] = {"": {}}
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, {})
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {raw!r}"
        sections[current].setdefault(key.strip(), []).append(value.strip())
    return sections


def test_hls_config_cfg_matches_the_tcl_flow():
    cfg = read_cfg(HLS_CONFIG)
    assert cfg[""]["part"] == [PART]
    hls = cfg["hls"]
    one = {k: v[0] for k, v in hls.items()}
    assert one["flow_target"] == "vivado"
    assert float(one["clock"].removesuffix("ns")) == CLOCK_NS
    assert one["syn.top"] == TOP
    assert hls["syn.file"] == ["src/edgemoe_top.cpp"]
    assert hls["tb.file"] == ["tb/tb_top.cpp"]
    for key in ("syn.cflags", "tb.cflags"):
        assert "-std=c++14" in one[key] and "-Iinclude" in one[key]
    assert one["syn.interface.m_axi_offset"] == "slave"
    assert one["syn.interface.m_axi_max_widen_bitwidth"] == "128"
    assert one["package.output.format"] == "ip_catalog"
    vlnv = ":".join(one[f"package.ip.{k}"] for k in ("vendor", "library", "name", "version"))
    assert vlnv == VLNV
    # the run_hls.tcl defaults agree
    tcl = RUN_HLS.read_text()
    assert f"EDGEMOE_HLS_PART {PART}" in tcl
    assert f"EDGEMOE_HLS_CLOCK_NS {CLOCK_NS}" in tcl


# ---------------------------------------------------------------------------
# make hls.


def make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@needs_make
def test_make_n_hls_prints_the_classic_chain():
    run = make("-n", "hls")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    tool = next(i for i, ln in enumerate(lines) if "vitis_hls -f" in ln)
    check = next(i for i, ln in enumerate(lines) if "check_hls_reports.py" in ln)
    assert lines[tool].rstrip().endswith("hls/run_hls.tcl")
    # the default build: C-sim, C-synthesis, export; co-simulation in its own project
    assert 'EDGEMOE_HLS_STEPS="csim csynth export"' in lines[tool]
    assert "EDGEMOE_PARAMS_HEADER" not in lines[tool]
    assert "command -v vitis_hls" in run.stdout
    assert check > tool
    assert f"--clock-ns {CLOCK_NS}" in lines[check]
    cosim = [i for i, ln in enumerate(lines) if 'EDGEMOE_HLS_STEPS="csynth cosim"' in ln]
    assert len(cosim) == 1 and cosim[0] > check


@needs_make
def test_make_hls_cosimulates_m3vit_mini_long_with_its_own_header_by_default():
    """The long-rows config (tests/sim/test_long_rows.py), two images: expert-major."""
    lines = make("-n", "hls").stdout.splitlines()
    header = next(ln for ln in lines if "edgemoe.host.export.hls_params" in ln)
    assert "--config m3vit-mini-long " in header and "--out build/hls_cosim/params.h" in header
    data = next(ln for ln in lines if "edgemoe.sim.tbdata" in ln and "hls_cosim" in ln)
    assert "--config m3vit-mini-long " in data and data.endswith("--images 2")
    (cosim,) = [ln for ln in lines if 'EDGEMOE_HLS_STEPS="csynth cosim"' in ln]
    assert 'EDGEMOE_PARAMS_HEADER="' in cosim and "hls_cosim/params.h" in cosim
    assert "hls_cosim/tb/expected.bin" in cosim and "vitis_hls -f" in cosim
    assert "output.bin 0 2 0 " in cosim and "EDGEMOE_COSIM_IMAGES=2 " in cosim
    # the default build's own C-sim keeps its one image
    (tool,) = [ln for ln in lines if "vitis_hls -f" in ln and "hls_cosim" not in ln]
    assert "output.bin 0 1 0 " in tool and "EDGEMOE_COSIM_IMAGES=1" in tool


@needs_make
def test_make_hls_cosim_config_and_images_are_selectable():
    run = make("-n", "hls", "HLS_COSIM_CONFIG=m3vit-mini", "HLS_COSIM_IMAGES=1")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    data = next(ln for ln in lines if "edgemoe.sim.tbdata" in ln and "hls_cosim" in ln)
    assert "--config m3vit-mini " in data and data.endswith("--images 1")
    (cosim,) = [ln for ln in lines if 'EDGEMOE_HLS_STEPS="csynth cosim"' in ln]
    assert "output.bin 0 1 0 " in cosim and "EDGEMOE_COSIM_IMAGES=1 " in cosim


@needs_make
def test_make_hls_cosim_of_the_default_build_is_opt_in():
    run = make("-n", "hls", "HLS_COSIM_CONFIG=m3vit-tiny-128x256")
    assert run.returncode == 0, run.stderr
    (tool,) = [ln for ln in run.stdout.splitlines() if "vitis_hls -f" in ln]
    assert 'EDGEMOE_HLS_STEPS="csim csynth cosim export"' in tool
    assert "hls_cosim" not in run.stdout
    # and without cosim in the steps nothing co-simulates
    run = make("-n", "hls", "HLS_STEPS=csynth export")
    assert "cosim" not in run.stdout.replace("hls_cosim", "")


@needs_make
def test_make_n_hls_prints_the_unified_chain():
    run = make("-n", "hls", "HLS_FLOW=unified", "HLS_TB_ARGV=vectors")
    assert run.returncode == 0, run.stderr
    chain = [ln for ln in run.stdout.splitlines() if "vitis-run" in ln or "v++" in ln]
    chain = [ln for ln in chain if not ln.startswith("command -v")]
    *main, cosim = chain
    assert [re.search(r"--(csim|cosim|package)\b|v\+\+ -c", ln).group(0) for ln in main] == [
        "--csim",
        "v++ -c",
        "--package",
    ]
    assert all("--mode hls" in ln and "--config hls_config.cfg" in ln for ln in main)
    assert '"--hls.csim.argv=vectors"' in main[0]
    # co-simulation: m3vit-mini-long's own project, through the Tcl script (one header per
    # config)
    assert "vitis-run --mode hls --tcl" in cosim and 'EDGEMOE_HLS_STEPS="csynth cosim"' in cosim
    lines = run.stdout.splitlines()
    check = next(i for i, ln in enumerate(lines) if "check_hls_reports.py" in ln)
    assert check < lines.index(cosim)


@needs_make
def test_make_n_hls_tcl_flow_and_steps():
    run = make("-n", "hls", "HLS_FLOW=tcl", "HLS_STEPS=csim")
    assert run.returncode == 0, run.stderr
    assert "vitis-run --mode hls --tcl" in run.stdout
    assert 'EDGEMOE_HLS_STEPS="csim"' in run.stdout
    assert "check_hls_reports.py" not in run.stdout  # nothing synthesised to check


@needs_make
@pytest.mark.skipif(HAVE_VITIS, reason="the Xilinx tools are on PATH here")
@pytest.mark.parametrize(("flow", "tool"), [("classic", "vitis_hls"), ("unified", "vitis-run")])
def test_make_hls_without_the_tool_fails_with_one_line(flow, tool):
    run = make("hls", f"HLS_FLOW={flow}", path=os.environ.get("PATH", "/usr/bin:/bin"))
    assert run.returncode != 0
    ours = [ln for ln in run.stderr.splitlines() if ln.startswith("make hls:")]
    assert len(ours) == 1 and f"{tool} not found on PATH" in ours[0], run.stderr


@needs_make
def test_make_hls_rejects_an_unknown_flow():
    run = make("hls", "HLS_FLOW=quartus")
    assert run.returncode != 0
    assert "unknown HLS_FLOW=quartus" in run.stderr


# ---------------------------------------------------------------------------
# With the real tool.


@pytest.mark.vitis
@needs_vitis
@pytest.mark.skipif(
    not (ROOT / "hls" / "src" / "edgemoe_top.cpp").is_file(), reason="no top function yet"
)
def test_csynth_meets_clock_and_ii(tmp_path):
    """C-synthesis of the default deployment meets 300 MHz and every II target."""
    build = tmp_path / "hls"
    build.mkdir()
    env = dict(os.environ, EDGEMOE_HLS_STEPS="csynth", EDGEMOE_HLS_BUILD=str(build))
    if shutil.which("vitis_hls"):
        cmd = ["vitis_hls", "-f", str(RUN_HLS)]
    else:
        cmd = ["vitis-run", "--mode", "hls", "--tcl", str(RUN_HLS)]
    run = subprocess.run(cmd, cwd=build, env=env, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    code, out = check_cli(build / TOP, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
