"""Performance model (edgemoe estimate): DDR bytes agree with the C-sim, labels, CLI."""

import json

import numpy as np
import pytest

from edgemoe.host.app.cli import main
from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.scratch import batched
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.estimate.perf import (
    DEVICES,
    Stage,
    _linear_cycles,
    _two_buffer_sets,
    batch_curve,
    estimate,
    our_design,
    published_design,
)
from edgemoe.host.estimate.traffic import decoder_traffic
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.sim.csim import CSim
from edgemoe.sim.golden import Golden
from tests.conftest import cfg, model, profile


@pytest.mark.parametrize("cname", ["m3vit-mini", DEFAULT_CONFIG])
@pytest.mark.parametrize("images", [1, 3])
def test_model_ddr_bytes_equal_csim_counters(cname, images):
    """Image-major (1 image) and expert-major (3 images): model bytes == C-sim counters."""
    c, p = cfg(cname), profile("lean")
    qm = quantize_model(
        {k: v.detach().numpy() for k, v in model(cname, 0).state_dict().items()}, c, p
    )
    patches = to_patches(random_images(c, images, 5), c)
    routes = Golden(qm).run(patches, "semseg").routes
    counts = [[r[b].sum(0).tolist() for r in routes] for b in range(images)]
    run = CSim(c, p).run(pack(qm, DEFAULT_TILING), patches, 0)
    est = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"], counts=counts)
    assert est.batch == images
    # the backbone's bytes: the call's, less its task decoder's (closed form, tested equal to
    # the C-sim's own counters in tests/sim/test_csim.py)
    resume = batched(c, images) and c.is_moe(c.depth - 1)
    dec = decoder_traffic(c, DEFAULT_TILING, 0, resume) if dp.decodes(c, 0, 0) else {}
    total = sum(run.ddr_read.values()) + sum(run.ddr_written.values())
    assert est.ddr_bytes == total - images * sum(dec.values())
    if images == 1:  # the per-block "used experts" shorthand gives the same bytes
        used = [int(r[0].any(0).sum()) for r in routes]
        by_used = estimate(
            c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"], used_experts=used
        )
        assert by_used.ddr_bytes == est.ddr_bytes


def test_batch_curve_reads_experts_once_per_group():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    curve = batch_curve(c, p, d, DEVICES["zcu104"], batches=(1, 8))
    one, eight = curve
    # experts are about 28 MB of the 36 MB an image reads; at 8 images they are shared
    assert eight["ddr_bytes_per_image"] < 0.5 * one["ddr_bytes_per_image"]
    assert eight["ms_per_image"] < one["ms_per_image"]
    assert eight["call_ms"] == pytest.approx(8 * eight["ms_per_image"])
    e8 = estimate(c, p, d, DEVICES["zcu104"], batch=8)
    assert {"park", "gather", "merge", "resume", "rows_moved"} <= {s.name for s in e8.stages}


def test_expert_rows_move_while_the_unit_computes():
    """Expert-major: only the first chunk's gather and the last chunk's merge of a block
    take time of their own; the other rows move inside the expert calls' cycles."""
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    e8 = estimate(c, p, d, DEVICES["zcu104"], batch=8)
    moved = [s for s in e8.stages if s.name == "rows_moved"]
    assert moved and all(s.hidden and s.ms == 0 and s.ddr_bytes > 0 for s in moved)
    row = 4 * c.embed_dim
    merge = [s for s in e8.stages if s.name == "merge"]
    assert all(s.ddr_bytes <= 2 * c.num_tokens * row for s in merge)  # one chunk each
    # a call moving more words than its passes last runs until they are moved
    plain = _linear_cycles(d, 16, c.embed_dim, c.expert_hidden)
    assert _linear_cycles(d, 16, c.embed_dim, c.expert_hidden, side=10) == plain
    assert _linear_cycles(d, 16, c.embed_dim, c.expert_hidden, side=10**6) > 10**6


def test_two_buffer_sets_hide_attention_behind_the_other_images_linear_lane():
    """The kernel's run_segment schedule on made-up phase times (ms): L0 1, A 5, L1 2,
    A 5, L2 1 for two images. Steps: L0(0) | A(0) beside L0(1) | A(1) beside L1(0) |
    A(0) beside L1(1) | A(1) beside L2(0) | L2(1): attention keeps 4, 3, 3, 4."""

    def st(name, ms):
        s = Stage("b", name, 0, 0, True)
        s.ms = s.compute_ms = ms
        return s

    images = [
        [[st("lin", 1)], [st("attention", 5)], [st("lin", 2)], [st("attention", 5)], [st("lin", 1)]]
        for _ in range(2)
    ]
    _two_buffer_sets(images)
    kept = [images[0][1][0].ms, images[1][1][0].ms, images[0][3][0].ms, images[1][3][0].ms]
    assert kept == [4, 3, 3, 4]
    assert images[0][1][0].hidden_ms == 1
    # one image has nothing to hide behind
    alone = [[[st("lin", 1)], [st("attention", 5)], [st("lin", 1)]]]
    _two_buffer_sets(alone)
    assert alone[0][1][0].ms == 5


def test_batching_shares_the_experts_and_a_lone_image_has_no_partner():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    one = estimate(c, p, d, DEVICES["zcu104"])
    e8, e16 = (estimate(c, p, d, DEVICES["zcu104"], batch=b) for b in (8, 16))
    assert e16.latency_ms < e8.latency_ms < 0.6 * one.latency_ms
    att = [s for s in one.stages if s.name == "attention"]
    assert all(s.ms == s.compute_ms for s in att)  # one image: no other to overlap


def test_default_design_fits_and_is_labelled_estimate(tmp_path, capsys):
    path = tmp_path / "e.json"
    plot = tmp_path / "e.png"
    assert main(["estimate", "--json", str(path), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE" in out
    data = json.loads(path.read_text())
    assert data["estimate"] is True and data["resources"]["estimate"] is True
    assert data["fits"] is (not data["resources"]["over"]) and data["board"] == "zcu104"
    assert data["latency_ms"] > 0 and data["fps"] == pytest.approx(1e3 / data["latency_ms"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one expert-major group, per image; one image per call beside
    assert data["batch"] == 16 and data["latency_ms"] < data["one_image_per_call_ms"]
    assert data["call_ms"] == pytest.approx(16 * data["latency_ms"])
    assert data["one_image_per_call_ms"] == data["batch_curve"][0]["call_ms"]
    assert [c["batch"] for c in data["batch_curve"]] == [1, 2, 4, 8, 16]
    assert "images per call" in out
    names = {s["name"] for s in data["stages"]}
    assert {"qkv", "attention", "expert_fc1", "ln1"} <= names


def test_published_design_on_zcu102(capsys):
    assert (
        main(
            [
                "estimate",
                "--design",
                "edge-moe-published",
                "--board",
                "zcu102",
                "--profile",
                "edge-moe",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "edge-moe-published" in out and "zcu102" in out
    assert "images per call" not in out  # no batched mode in the published design
    assert main(["estimate", "--design", "edge-moe-published", "--batch", "2"]) == 2
    assert "no expert-major batched mode" in capsys.readouterr().err
    c, p = cfg(DEFAULT_CONFIG), profile("edge-moe")
    pub = estimate(c, p, published_design(), DEVICES["zcu102"])
    ours = estimate(
        c, profile("lean"), our_design(profile("lean"), DEFAULT_TILING), DEVICES["zcu104"]
    )
    assert pub.resources["dsp48e2"] >= 16 * 16 * 2
    assert ours.latency_ms < pub.latency_ms
    # two-pass attention moves the score matrix through DDR
    att = [s for s in pub.stages if s.name == "attention"]
    assert all(s.ddr_bytes > 0 for s in att)


def test_model_tracks_its_knobs():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    from edgemoe.host.contracts.tiling import Tiling

    small = estimate(c, p, our_design(p, Tiling(8, 8, 2)), DEVICES["zcu104"])
    big = estimate(c, p, our_design(p, Tiling(32, 32, 8)), DEVICES["zcu104"])
    assert big.resources["dsp48e2"] > small.resources["dsp48e2"]
    assert sum(s.compute_ms for s in big.stages) < sum(s.compute_ms for s in small.stages)
    slow = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"], clock_mhz=150)
    fast = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"], clock_mhz=300)
    assert slow.latency_ms > fast.latency_ms
    assert np.isclose(slow.ddr_bytes, fast.ddr_bytes)


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--board", "vc707"], ["unknown board"]),
        (["--tiling", "32by32"], ["--tiling"]),
        (["--clock-mhz", "5000"], ["--clock-mhz"]),
        (["--gelu-rom", "flash"], ["--gelu-rom"]),
    ],
)
def test_bad_estimate_arguments(capsys, argv, words):
    assert main(["estimate", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words)


def test_weight_ports_what_if_is_labelled_and_bounded_by_ddr(capsys):
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    built = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"])
    four = estimate(c, p, our_design(p, DEFAULT_TILING, weight_ports=4), DEVICES["zcu104"])
    assert four.design == "edgemoe-whatif-4-weight-ports"
    assert four.latency_ms < built.latency_ms
    # four 4.8 GB/s ports exceed the 17 GB/s of PS DDR: DDR is the cap
    experts = sum(s.memory_ms for s in four.stages if s.name.startswith("expert_"))
    expert_bytes = sum(s.ddr_bytes for s in four.stages if s.name.startswith("expert_"))
    assert experts == pytest.approx(expert_bytes / 17.06e9 * 1e3)
    assert main(["estimate", "--weight-ports", "5"]) == 2
    assert "--weight-ports must be in 1..4" in capsys.readouterr().err


def test_dsp_inventory_counts_every_multiplier():
    """Beyond the MAC arrays: a 42-bit attention accumulator times a 17-bit e takes two
    DSP48E2, and LayerNorm, the epilogue, routing and Newton units take their share."""
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    r = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"]).resources
    units = r["dsp48e2_by_unit"]
    assert sum(units.values()) == r["dsp48e2"]
    t = DEFAULT_TILING
    assert units["linear unit MACs"] == t.lin_in * t.lin_out
    assert units["attention units"] == t.p * (c.head_dim * 3 + 2)
    # per expert an exp2 interpolation and p * 1/S (one DSP each), plus the reciprocal's
    # two 24 x 21-bit Newton products (two DSPs each)
    assert units["layernorm"] > 0 and units["routing"] == 2 * c.num_experts + 4
    from edgemoe.host.contracts.tiling import Tiling

    wide = estimate(c, p, our_design(p, Tiling(32, 32, 2)), DEVICES["zcu104"]).resources
    assert not wide["fits"] and wide["utilisation"]["dsp"] > 0.8 and "dsp" in wide["over"]


def test_multipliers_are_counted_at_the_widths_the_cpp_casts_them_to():
    """The inventory's operand widths are the kernel's (hls/README.md "Widths"): read the
    generated header's constants and compare."""
    from edgemoe.host.estimate.perf import _mult_dsps, multipliers
    from edgemoe.host.export.hls_params import generate

    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    header = generate(c, p, DEFAULT_TILING)

    def const(name: str) -> int:
        import re

        return int(re.search(rf"constexpr int {name} = (\d+);", header).group(1))

    inv = {
        (u, what): (n, a, b)
        for u, items in multipliers(c, p, DEFAULT_TILING).items()
        for what, n, a, b in items
    }
    t = DEFAULT_TILING
    assert inv[("linear unit", "MAC x * w")] == (t.lin_in * t.lin_out, const("ACT_W"), 16)
    qkv = const("ATTN_QKV_W")
    assert inv[("attention units", "q . k")] == (t.p * c.head_dim, qkv, qkv)
    assert inv[("attention units", "acc or v times e")] == (
        t.p * c.head_dim,
        const("ACC_ATTN_ACC_BITS"),
        const("PROB_W") + 1,
    )
    assert inv[("attention units", "S * e")][1] == const("ACC_ATTN_SUM_BITS")
    assert inv[("attention finish", "mean * 1/S")][1:] == (
        qkv + const("ATTN_GUARD") + 3,
        const("NEWTON_FRAC") + 2,
    )
    assert inv[("layernorm", "T1^2 (per token)")][1] == const("ACC_LN_STAT_SUM_BITS")
    assert _mult_dsps(42, 18) == 2 and _mult_dsps(22, 16) == 1 and _mult_dsps(18, 22) == 1


def test_bram_counts_the_m_axi_fifos_and_ff_the_register_arrays():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    r = estimate(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"]).resources
    # eight directions (weights and images read; output, scratch and maps both ways) of
    # 4 x 64 x 128-bit FIFOs at 2 BRAM36 each, and the weight stream's tile of words
    assert r["bram36_axi_fifos"] == 8 * 2 + 2
    # the three tile buffers alone: 3 x 768 weights x 16 bits of registers
    assert r["ff_estimate"] > 3 * DEFAULT_TILING.lin_in * DEFAULT_TILING.lin_out * 16
    assert r["utilisation"]["ff"] <= r["limits"]["ff"]
    assert r["utilisation"]["bram36"] <= r["limits"]["bram36"]
