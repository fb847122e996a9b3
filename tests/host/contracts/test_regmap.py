"""The s_axilite register map against real Vivado output (the Edge-MoE ``.hwh``)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgemoe.host.contracts import regmap
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.regmap import (
    RegmapError,
    check_against_hwh,
    hwh_registers,
    kernel_register_map,
    register_map,
)
from tests.conftest import TESTDATA, TESTDATA_MISSING

REPO_ROOT = Path(__file__).resolve().parents[3]
HWH = TESTDATA / "edge-moe-zcu102.hwh" if TESTDATA else None
ARGS_JSON = TESTDATA / "edge-moe-zcu102.args.json" if TESTDATA else None

needs_testdata = pytest.mark.skipif(
    not (HWH and HWH.exists() and ARGS_JSON.exists()),
    reason=f"{TESTDATA_MISSING} and edge-moe-zcu102.args.json",
)


@pytest.fixture(scope="module")
def edge_moe():
    spec = json.loads(ARGS_JSON.read_text())
    return spec, register_map(spec["args"], has_return=False)


@needs_testdata
def test_edge_moe_every_offset_matches_the_hwh(edge_moe):
    spec, rmap = edge_moe
    have = hwh_registers(HWH, spec["vlnv"])
    want = rmap.hwh_offsets()
    # 4 fixed registers, 2 scalars + 1 bool, 25 pointers of two words each
    assert len(have) == 4 + 3 + 2 * 25
    assert want == have
    assert check_against_hwh(rmap, HWH, spec["vlnv"]) == []
    # the same kernel by instance name and by module type
    assert hwh_registers(HWH, "ViT_compute_0") == have
    assert hwh_registers(HWH, spec["top"]) == have


@needs_testdata
def test_edge_moe_rule_details(edge_moe):
    """What the .hwh shows: 8 bytes per scalar (bool too), 12 per pointer, no alignment."""
    _, rmap = edge_moe
    assert rmap.offset("num_images") == 0x10  # a void top: arguments start right after ISR
    assert rmap.offset("reload_one_time_weights") == 0x18  # 1-bit bool still spans 8 bytes
    assert rmap["images"].parts == (("images_1", 0x20), ("images_2", 0x24))
    assert rmap.offset("x") == 0x2C  # pointers step by 12, not realigned to 8
    assert rmap.offset("debug_id") == 0x14C
    assert "ap_return" not in hwh_registers(HWH, "ViT_compute_0")


@needs_testdata
def test_control_bits_and_address_width_match_the_hwh(edge_moe):
    _, rmap = edge_moe
    root = ET.parse(HWH).getroot()
    module = next(m for m in root.iter("MODULE") if m.get("INSTANCE") == "ViT_compute_0")
    ctrl = next(r for r in module.iter("REGISTER") if r.get("NAME") == "CTRL")
    bits = {
        f.get("NAME"): int(next(p.get("VALUE") for p in f if p.get("NAME") == "BIT_OFFSET"))
        for f in ctrl.iter("FIELD")
    }
    assert bits["AP_START"] == 0 and 1 << bits["AP_START"] == regmap.AP_START
    assert 1 << bits["AP_DONE"] == regmap.AP_DONE
    assert 1 << bits["AP_IDLE"] == regmap.AP_IDLE
    assert 1 << bits["AP_READY"] == regmap.AP_READY
    assert 1 << bits["AUTO_RESTART"] == regmap.AUTO_RESTART
    params = {p.get("NAME"): p.get("VALUE") for p in module.iter("PARAMETER")}
    assert int(params["C_S_AXI_CONTROL_ADDR_WIDTH"]) == rmap.addr_width == 9


@needs_testdata
def test_mismatches_are_reported(edge_moe):
    spec, _ = edge_moe
    args = list(spec["args"])
    args[0], args[1] = args[1], args[0]  # two scalars declared in the wrong order
    assert check_against_hwh(register_map(args, has_return=False), HWH, spec["vlnv"]) == [
        "reload_one_time_weights: at 0x10 here, at 0x18 in the .hwh",
        "num_images: at 0x18 here, at 0x10 in the .hwh",
    ]
    shifted = register_map(spec["args"], has_return=True)  # a return value moves everything
    problems = check_against_hwh(shifted, HWH, spec["vlnv"])
    assert any(p.startswith("ap_return:") and "missing from the .hwh" in p for p in problems)
    assert any(p.startswith("num_images: at 0x18 here, at 0x10") for p in problems)
    fewer = register_map(spec["args"][:-1], has_return=False)
    assert check_against_hwh(fewer, HWH, spec["vlnv"]) == [
        "debug_id: at 0x14C in the .hwh, not in the argument list"
    ]


@needs_testdata
def test_hwh_errors_are_one_line(tmp_path):
    with pytest.raises(RegmapError, match="no kernel 'nope'"):
        hwh_registers(HWH, "nope")
    bad = tmp_path / "bad.hwh"
    bad.write_text("<EDKSYSTEM><MODULE")
    with pytest.raises(RegmapError, match="not a valid .hwh"):
        hwh_registers(bad, "x")
    with pytest.raises(RegmapError, match="cannot read"):
        hwh_registers(tmp_path / "missing.hwh", "x")


def test_our_register_map():
    """Our top returns a status code: ap_return takes the first data slot.

    The Edge-MoE top is void, so its .hwh cannot show where a return value
    goes. The Vitis HLS generated drivers (``x<top>_hw.h``) of kernels that
    return a value list ``0x10 : Data signal of ap_return, bit 31~0 -
    ap_return[31:0] (Read)`` and their first argument at ``0x18``: the return
    value is the first entry after ISR and spans 8 bytes like any 32-bit
    scalar. UG1399 ("S_AXILITE Offset Option") states the span rule: as many
    32-bit words as the data type needs plus one reserved word, e.g. a 64-bit
    value at 0x020 is followed by the next at 0x02C.
    """
    rmap = kernel_register_map()
    print()
    print(rmap.table())
    assert rmap["ap_return"].offset == 0x10 and rmap["ap_return"].readonly
    assert rmap["bundle"].parts == (("bundle_1", 0x18), ("bundle_2", 0x1C))
    assert rmap.offset("images") == 0x24
    assert rmap.offset("output") == 0x30
    assert rmap.offset("scratch") == 0x3C
    assert rmap.offset("task") == 0x48
    assert rmap.offset("num_images") == 0x50
    assert rmap.offset("debug_stop") == 0x58
    assert rmap["maps"].parts == (("maps_1", 0x60), ("maps_2", 0x64))  # appended last
    assert rmap.end == 0x6C and rmap.addr_width == 7
    assert [r.name for r in rmap.registers[1:]] == [a.name for a in ARGS]
    # the same list without a return value sits 8 bytes lower
    void = register_map(ARGS, has_return=False)
    assert all(void.offset(a.name) == rmap.offset(a.name) - 8 for a in ARGS)


def test_register_map_rejects_bad_argument_lists():
    with pytest.raises(RegmapError, match="unknown kind"):
        register_map([("a", "float")])
    with pytest.raises(RegmapError, match="appears twice"):
        register_map([("a", "u32"), ("a", "ptr")])
    with pytest.raises(RegmapError, match="up to 32 bits"):
        register_map([], return_kind="u64")


# ---------------------------------------------------------------------------
# The status codes: one table (regmap.STATUS_TABLE), generated into C++, the README's
# table checked against it.


def test_status_table_codes_are_distinct_and_start_at_ok():
    codes = [s.code for s in regmap.STATUS_TABLE]
    names = [s.name for s in regmap.STATUS_TABLE]
    assert codes == sorted(set(codes)) and codes[0] == 0 and names[0] == "OK"
    assert len(set(names)) == len(names)
    assert regmap.STATUS == dict(zip(names, codes, strict=True))


def test_the_parameter_header_and_the_host_read_the_one_status_table():
    import re

    from edgemoe.host.driver import accelerator as driver
    from edgemoe.host.export import hls_params

    header = hls_params.DEFAULT_HEADER.read_text()
    found = {m[0]: int(m[1]) for m in re.findall(r"uint32_t STATUS_(\w+) = (\d+);", header)}
    assert found == regmap.STATUS
    assert hls_params.STATUS is regmap.STATUS
    assert driver.STATUS_HINTS == regmap.STATUS_HINTS  # the driver's messages do not drift


def test_the_hls_readme_status_table_is_the_status_table():
    text = (REPO_ROOT / "hls" / "README.md").read_text()
    section = text.split("## Status codes", 1)[1].split("\n## ", 1)[0]
    rows = [
        [c.strip().strip("`") for c in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| code")
    ]
    assert rows == [[str(s.code), s.name, s.meaning] for s in regmap.STATUS_TABLE]
