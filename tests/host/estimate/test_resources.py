"""Resource model (edgemoe estimate): operator lines, per-unit table, limits, clock rule."""

import dataclasses
import json
import re
from pathlib import Path

import pytest

from edgemoe.host.app.cli import main
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.estimate.perf import (
    DEVICES,
    estimate,
    our_design,
    plausible_clock,
    resources,
)
from edgemoe.host.estimate.resources import (
    LIMITS,
    RESOURCES,
    UNITS,
    mux_luts,
    operators,
)
from edgemoe.host.export.hls_params import generate
from edgemoe.models import DEFAULT_CONFIG
from tests.conftest import cfg, profile

ROOT = Path(__file__).resolve().parents[3]
HLS = [ROOT / "hls" / "include" / "edgemoe", ROOT / "hls" / "src"]
#: The tiling that meets every limit with the C++ as the review prescribes it (hls/README.md).
FITTING = Tiling(32, 24, 1)


def _res(t: Tiling = DEFAULT_TILING, **kw) -> dict:
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    return resources(c, p, our_design(p, t), DEVICES["zcu104"], **kw)


def test_default_build_json_has_the_unit_table_the_limits_and_fits(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["estimate", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    d = json.loads(out.read_text())
    r = d["resources"]
    assert r["limits"] == {"dsp": 0.80, "lut": 0.75, "ff": 0.60, "bram36": 0.85, "uram": 0.85}
    assert list(r["by_unit"]) == list(UNITS)
    for unit, row in r["by_unit"].items():
        assert set(row) == set(RESOURCES), unit
        assert unit in printed
    # the table adds up to the totals, and the totals to the utilisation and the verdict
    assert sum(row["dsp"] for row in r["by_unit"].values()) == r["dsp48e2"]
    assert sum(row["lut"] for row in r["by_unit"].values()) == pytest.approx(
        r["lut_estimate"], abs=len(UNITS)
    )
    assert sum(row["uram"] for row in r["by_unit"].values()) == r["uram"]
    over = [k for k in RESOURCES if r["utilisation"][k] > LIMITS[k]]
    assert r["over"] == over and d["fits"] is r["fits"] is (not over)
    assert r["by_unit"]["linear unit MACs"]["dsp"] == DEFAULT_TILING.lin_in * DEFAULT_TILING.lin_out
    # the clock: the target and the plausible one, with the latencies at the latter
    clock = d["clock"]
    assert clock["target_mhz"] == 300 and clock["plausible_mhz"] <= 300
    assert clock["latency_ms"] >= d["latency_ms"] and "judgement" in clock["rule"]
    assert clock["one_image_per_call_ms"] >= d["batch_curve"][0]["call_ms"]
    assert "plausible" in printed


def test_every_line_names_a_construct_that_exists_in_the_cpp():
    """'file function' on every line: the file is in hls/ and names the function. Only the
    decoder's lines may name a construct its C++ does not have yet, and say so."""
    files = {p.name: p.read_text() for d in HLS for p in d.iterdir() if p.suffix in (".h", ".cpp")}
    r = _res()
    for ln in r["lines"]:
        pairs = re.findall(r"(\w+\.(?:h|cpp)) (\w+)", ln["where"])
        assert pairs or "every loop label" in ln["where"], ln
        for f, name in pairs:
            assert f in files, ln["where"]
            assert re.search(rf"\b{name}\b", files[f]), f"{name} not in {f}: {ln['what']}"


def test_operator_table_widths_are_the_headers():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    header = generate(c, p, DEFAULT_TILING)

    def const(name: str) -> int:
        return int(re.search(rf"constexpr int {name} = (\d+);", header).group(1))

    def entries(table: str) -> int:
        return int(re.search(rf"{table}\[(\d+)\] = ", header).group(1))

    o = operators(c, p, DEFAULT_TILING)
    assert (o.lin_in, o.lin_out, o.attn_p) == (const("LIN_IN"), const("LIN_OUT"), const("ATTN_P"))
    assert (o.ln_lanes, o.attn_l) == (const("LN_LANES"), const("ATTN_L"))
    assert o.act_w == const("ACT_W") and o.attn_qkv_w == const("ATTN_QKV_W")
    assert o.attn_score_w == const("ATTN_SCORE_W")
    # the attention row state at its real widths (42 / 25 bits), not 64
    assert o.attn_acc_w == const("ACC_ATTN_ACC_BITS") < 64
    assert o.attn_sum_w == const("ACC_ATTN_SUM_BITS") < 64
    assert o.ln_sum_w == const("ACC_LN_STAT_SUM_BITS")
    assert (o.gelu_copies, o.gelu_half) == (const("GELU_COPIES"), const("GELU_HALF"))
    assert o.gelu_half == (o.gelu_entries + 1) // 2
    assert o.exp2_entries == entries("EXP2_TABLE") == entries("EXP2_TABLE_ATTN")
    assert o.exp2_half == (o.exp2_entries + 1) // 2
    assert o.recip_entries == entries("RECIP_SEED") and o.rsqrt_entries == entries("RSQRT_SEED")
    # one division per bank walk, only where the bank count is not a power of two
    assert o.div_walks and all(b & (b - 1) for _, b, _ in o.div_walks)
    assert len(o.div_walks) < 20


def test_a_build_over_a_limit_reports_fits_false_naming_the_resource(tmp_path, capsys):
    wide = _res(Tiling(32, 32, 2))
    assert not wide["fits"] and "dsp" in wide["over"]
    assert wide["utilisation"]["dsp"] > LIMITS["dsp"]
    out = tmp_path / "e.json"
    assert main(["estimate", "--tiling", "32x32", "--json", str(out)]) == 0
    assert "over the limit: " in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert d["fits"] is False and "dsp" in d["resources"]["over"]
    # the GELU halves as LUT-ROM instead of BRAM: BRAM down, LUT up
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    o = operators(c, p, FITTING)
    lean = _res(FITTING, ops=o)
    lutrom = _res(FITTING, ops=dataclasses.replace(o, gelu_rom="lutrom"))
    assert lean["fits"] and lutrom["lut_estimate"] > lean["lut_estimate"]
    # LUT alone over: the same build with a (hypothetical) 1,500-LUT control per loop
    fat = _res(FITTING, ops=dataclasses.replace(o, per_loop=(1500, 40)))
    assert fat["over"] == ["lut"] and not fat["fits"]
    assert lutrom["bram36"] == lean["bram36"] - o.gelu_copies  # a BRAM18 per half


def test_the_fitting_tiling_meets_every_limit():
    r = _res(FITTING)
    assert r["fits"] and r["over"] == []
    for k, v in LIMITS.items():
        assert r["utilisation"][k] <= v, k


def test_review_fixes_are_what_the_model_counts():
    """The forms the merged C++ builds: GELU_ROM as LIN_OUT / 2 copies of even / odd
    halves (a BRAM18 each), exp2 ROM halves per attention unit and routing lane, one
    16-bit division per bank walk that divides by 6 or 3 phases (none in the linear
    unit's side moves), the set muxes on every bank of x, h and wide."""
    r = _res()
    lines = r["lines"]
    gelu = [ln for ln in lines if "GELU_ROM" in ln["where"]]
    assert len(gelu) == 1 and gelu[0]["bram36"] == DEFAULT_TILING.lin_out / 2
    o = operators(cfg(DEFAULT_CONFIG), profile("lean"), DEFAULT_TILING)
    exp2 = [ln for ln in lines if "exp2 ROM halves" in ln["what"]]
    assert [int(ln["what"].split(": ")[1].split()[0]) for ln in exp2] == [
        2 * DEFAULT_TILING.p,
        2 * o.experts,
    ]
    divs = [ln for ln in lines if ln["what"].startswith("one division by")]
    assert len(divs) == len(o.div_walks) == 9  # 6 walks of x by 6 phases, 3 by 3
    assert sorted({b for _, b, _ in o.div_walks}) == [3, 6]
    assert not any("linear.h lin_" in w or "move_rows" in w for w, _, _ in o.div_walks)
    sets = [ln for ln in lines if ln["unit"] == "buffer-set muxes"]
    t = DEFAULT_TILING
    ports = 2 * 2 * (t.lin_out + 2 * t.lin_in)  # (x + h + wide banks) x 2 ports x 2 sets
    assert sum(int(re.search(r"(\d+) banks", ln["what"]).group(1)) * 4 for ln in sets) == ports
    # the sized count (lanes.h lane_step): 16,192 2:1 mux bits for the default build; per
    # bank 2 sets x 2 ports x (address + ce + we), the write data on the shared write port,
    # read data on 4 ports (22-bit act; addresses of 12, 10 and 11 bits)
    assert 32 * (4 * 14 + 6 * 22) + 32 * (4 * 12 + 6 * 22) + 24 * (4 * 13 + 6 * 22) == 16192
    bits = sum(
        int(re.search(r"(\d+) banks", ln["what"]).group(1))
        * sum(int(b) for b in re.findall(r"(\d+) (?:input|read-data)", ln["what"]))
        for ln in sets
    )
    assert bits == 16192
    assert r["by_unit"]["buffer-set muxes"]["lut"] == bits * mux_luts(2)
    one_set = resources(
        cfg(DEFAULT_CONFIG),
        profile("lean"),
        dataclasses.replace(our_design(profile("lean"), t), two_buffer_sets=False),
        DEVICES["zcu104"],
    )
    assert one_set["by_unit"]["buffer-set muxes"]["lut"] == 0


def test_clock_rule():
    u = dict.fromkeys(RESOURCES, 0.5)
    assert plausible_clock(u) == 300
    assert plausible_clock({**u, "lut": 0.71}) == 250
    assert plausible_clock({**u, "dsp": 0.86}) == 200
    assert plausible_clock({**u, "ff": 0.99}) == 300  # FF alone does not lower it
    assert plausible_clock({**u, "bram36": 0.9}, target_mhz=150) == 150


def test_burst_latency_is_paid_per_block_or_per_row_as_the_loops_are_written():
    """The flat row loops (park_rows, resume_image, write_rows, embed_load) pay the m_axi
    latency once per block; move_rows' merge pays it twice per row (read, then write)."""
    from edgemoe.host.estimate.perf import ROW_OVERHEAD

    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    e = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"], batch=16)
    park = [s for s in e.stages if s.name == "park"]
    # per image: park_rows' one latency, and two queue bursts per used expert
    per_image = (1 + 2 * c.num_experts) * ROW_OVERHEAD
    assert park and all(16 * per_image <= s.compute_cycles < 16 * 2 * per_image for s in park)
    assert all(s.ms == pytest.approx(s.compute_ms + s.memory_ms) for s in park)
    resume = [s for s in e.stages if s.name == "resume"]
    assert resume and all(s.compute_cycles == 2 * ROW_OVERHEAD for s in resume)
    row_words = c.embed_dim * 4 // 16
    merge = [s for s in e.stages if s.name == "merge"]
    assert merge and all(s.compute_cycles % (2 * (row_words + ROW_OVERHEAD)) == 0 for s in merge)


def test_the_loop_ii_table_drives_the_cycles(monkeypatch):
    """lin_pass at II 2 (the review's prediction before the x-port fix) doubles the
    linear unit's pass cycles; the table is in the JSON."""
    from edgemoe.host.estimate import perf

    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    at_one = estimate(c, p, d, DEVICES["zcu104"])
    assert at_one.to_dict()["loops"]["lin_pass"]["ii"] == 1
    monkeypatch.setitem(perf.LOOP_II, "lin_pass", (2, "x ports"))
    at_two = estimate(c, p, d, DEVICES["zcu104"])
    qkv = [sum(s.compute_cycles for s in e.stages if s.name == "qkv") for e in (at_one, at_two)]
    assert 1.9 * qkv[0] < qkv[1] < 2 * qkv[0]
    att = [
        sum(s.compute_cycles for s in e.stages if s.name == "attention") for e in (at_one, at_two)
    ]
    assert att[0] == att[1]
