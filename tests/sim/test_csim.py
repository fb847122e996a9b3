"""The HLS kernel in C-sim == golden, bit for bit (Contract A), plus its contracts."""

import functools
import subprocess

import numpy as np
import pytest

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.estimate.traffic import ddr_bytes, decoder_traffic
from edgemoe.host.export.bundle import HEADER_STRUCT, layout, pack
from edgemoe.host.export.hls_params import DEFAULT_HEADER, STATUS, debug_stop_code, generate
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.models.m3vit import random_model
from edgemoe.sim import csim
from edgemoe.sim.golden import Golden
from tests.conftest import cfg, model, one_expert_takes_all, profile, zero_gates


def state(m):
    return {k: v.detach().numpy() for k, v in m.state_dict().items()}


@functools.cache
def kernel(cname: str, pname: str, ap_types: bool = False) -> csim.CSim:
    return csim.CSim(cfg(cname), profile(pname), ap_types=ap_types)


def setup(cname, pname, seed, m=None, images=2):
    c, p = cfg(cname), profile(pname)
    qm = quantize_model(state(m if m is not None else model(cname, seed)), c, p)
    patches = to_patches(random_images(c, images, seed), c)
    return qm, pack(qm, DEFAULT_TILING), patches


def assert_every_boundary(k: csim.CSim, qm, bundle, patches, task):
    """Final output and every layer boundary (via debug_stop) equal golden's."""
    c = k.cfg
    g = Golden(qm).run(patches, task, record=True)
    tid = c.task_id(task)
    full = k.run(bundle, patches, tid)
    assert full.status == 0
    assert np.array_equal(full.output, g.tokens)
    for stage, want in g.stages.items():
        if stage.endswith(".route"):
            continue
        r = k.run(bundle, patches, tid, debug_stop=debug_stop_code(c, stage))
        assert r.status == 0, stage
        assert np.array_equal(r.output, want), f"first difference at {stage}"
    return g, full


@pytest.mark.parametrize("pname", ["edge-moe", "lean"])
@pytest.mark.parametrize("task", ["semseg", "depth"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mini_bit_exact_every_boundary(pname, task, seed):
    qm, bundle, patches = setup("m3vit-mini", pname, seed)
    assert_every_boundary(kernel("m3vit-mini", pname), qm, bundle, patches, task)


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_tiny_bit_exact_every_boundary(task):
    qm, bundle, patches = setup(DEFAULT_CONFIG, "lean", 0, images=1)
    assert_every_boundary(kernel(DEFAULT_CONFIG, "lean"), qm, bundle, patches, task)


def test_tiny_edge_moe_profile_final_output():
    qm, bundle, patches = setup(DEFAULT_CONFIG, "edge-moe", 1, images=1)
    g = Golden(qm).run(patches, "depth")
    r = kernel(DEFAULT_CONFIG, "edge-moe").run(bundle, patches, 1)
    assert r.status == 0 and np.array_equal(r.output, g.tokens)


def test_ap_types_build_equals_native_build():
    """The synthesis arithmetic (exact-width ap_int) and the fast C-sim path agree."""
    for pname in ("edge-moe", "lean"):
        qm, bundle, patches = setup("m3vit-mini", pname, 4)
        slow = kernel("m3vit-mini", pname, ap_types=True)
        assert slow.ap_types
        fast = kernel("m3vit-mini", pname)
        a = slow.run(bundle, patches, 1)
        b = fast.run(bundle, patches, 1)
        assert a.status == b.status == 0
        assert np.array_equal(a.output, b.output)
        assert a.ddr_read == b.ddr_read and a.ddr_written == b.ddr_written


def _edge_model(mutate, **changes):
    c = cfg("m3vit-mini").replace(**changes) if changes else cfg("m3vit-mini")
    m = random_model(c, 9)
    import torch

    with torch.no_grad():
        mutate(c, m)
    return c, m


@pytest.mark.parametrize(
    "mutate, changes",
    [
        (zero_gates, {}),
        (one_expert_takes_all, {}),
        (lambda c, m: None, {"top_k": 1}),
        (lambda c, m: None, {"top_k": 4}),
    ],
    ids=["all-gates-zero", "one-expert-takes-all", "k=1", "k=E"],
)
def test_edge_cases_through_csim(mutate, changes):
    c, m = _edge_model(mutate, **changes)
    p = profile("lean")
    qm = quantize_model(state(m), c, p)
    patches = to_patches(random_images(c, 2, 9), c)  # 2 images: expert-major
    g = Golden(qm).run(patches, "semseg", record=True)
    k = csim.CSim(c, p)
    r = k.run(pack(qm, DEFAULT_TILING), patches, 0)
    assert r.status == 0 and np.array_equal(r.output, g.tokens)
    if changes.get("top_k"):
        assert all((rt.sum(-1) == changes["top_k"]).all() for rt in g.routes)


def _corrupt(bundle: bytes, field: int, value: int) -> bytes:
    fields = list(HEADER_STRUCT.unpack_from(bundle))
    fields[field] = value
    return HEADER_STRUCT.pack(*fields) + bundle[HEADER_STRUCT.size :]


@pytest.mark.parametrize(
    "make, status",
    [
        (lambda b: (_corrupt(b, 0, 0x12345678), 0, None, 0), "BAD_MAGIC"),
        (lambda b: (_corrupt(b, 1, 99), 0, None, 0), "BAD_VERSION"),
        (lambda b: (_corrupt(b, 3, 0xDEADBEEF), 0, None, 0), "BAD_CONFIG_HASH"),
        (lambda b: (_corrupt(b, 7, 0x00040808), 0, None, 0), "BAD_TILING"),
        (lambda b: (b, 2, None, 0), "BAD_TASK"),
        (lambda b: (b, 0, 0, 0), "BAD_IMAGE_COUNT"),
        (lambda b: (b, 0, 5000, 0), "BAD_IMAGE_COUNT"),
        (lambda b: (b, 0, None, 10_000), "BAD_DEBUG_STOP"),
        (lambda b: (b, 0, None, 2 + 0 * 7 + 5), "BAD_DEBUG_STOP"),  # gate of a dense block
    ],
)
def test_bad_calls_return_status_and_leave_output_untouched(make, status):
    qm, bundle, patches = setup("m3vit-mini", "lean", 0)
    bund, task, n, stop = make(bundle)
    k = kernel("m3vit-mini", "lean")
    sentinel = np.full((2, cfg("m3vit-mini").num_tokens * 3 * 32), 0x5A5A5A5A, dtype=np.int32)
    out = sentinel.copy()
    r = k.run(bund, patches, task, debug_stop=stop, num_images=n, output=out)
    assert r.status == STATUS[status]
    assert np.array_equal(out, sentinel)
    assert r.ddr_written["gmem_output"] == 0


def expert_counts(g, images):
    """Per image, per MoE block: tokens routed to each expert (from golden's routes)."""
    return [[rt[b].sum(0).tolist() for rt in g.routes] for b in range(images)]


@pytest.mark.parametrize("cname", ["m3vit-mini", DEFAULT_CONFIG])
@pytest.mark.parametrize("images", [1, 3])
def test_ddr_bytes_equal_closed_form(cname, images):
    qm, bundle, patches = setup(cname, "lean", 3, images=images)
    c, p = cfg(cname), profile("lean")
    g = Golden(qm).run(patches, "depth")
    r = kernel(cname, "lean").run(bundle, patches, 1)
    assert r.status == 0 and np.array_equal(r.output, g.tokens)
    counts = expert_counts(g, images)
    assert (r.ddr_read, r.ddr_written) == ddr_bytes(c, p, DEFAULT_TILING, counts, "depth")
    if images == 1:  # image-major: every weight once per image, scratch untouched but
        # for the task decoder's maps
        dec = decoder_traffic(c, DEFAULT_TILING, "depth", False) if dp.decodes(c, 1, 0) else {}
        for port in ("gmem_scratch", "gmem_maps"):
            maps = sum(n for (_, _, b), n in dec.items() if b == port)
            assert r.ddr_read[port] + r.ddr_written[port] == maps
        assert r.ddr_read["gmem_weights"] > 0.5 * len(bundle) / (1 + c.num_experts / 4)


def test_unused_expert_is_never_read():
    c, m = _edge_model(zero_gates)
    p = profile("lean")
    qm = quantize_model(state(m), c, p)
    for images in (1, 2):  # image-major and expert-major
        patches = to_patches(random_images(c, images, 0), c)
        r = csim.CSim(c, p).run(pack(qm, DEFAULT_TILING), patches, 0)
        counts = [[[c.num_tokens] * 2 + [0] * (c.num_experts - 2)] * len(c.moe_blocks)] * images
        assert (r.ddr_read, r.ddr_written) == ddr_bytes(c, p, DEFAULT_TILING, counts)


def test_expert_major_reads_each_expert_once_per_group():
    """Tiny, 4 images: the group reads the experts of 4 images about once, not 4 times."""
    qm, bundle, patches = setup(DEFAULT_CONFIG, "lean", 5, images=4)
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    k = kernel(DEFAULT_CONFIG, "lean")
    group = k.run(bundle, patches, 0)
    single = [k.run(bundle, patches[b : b + 1], 0) for b in range(4)]
    # the same tokens, bit for bit, as four image-major calls
    assert np.array_equal(group.output, np.concatenate([s.output for s in single]))
    experts = sum(e.nbytes for e in layout(c, p, DEFAULT_TILING) if ".experts." in e.name) // len(
        c.moe_blocks
    )
    per_image = sum(s.ddr_read["gmem_weights"] for s in single)
    saved = per_image - group.ddr_read["gmem_weights"]
    # 4 x 129 x 2 / 16 = 64.5 queued tokens per expert: one chunk, so 3 of 4 reads saved
    assert saved >= 0.7 * 3 * len(c.moe_blocks) * experts
    assert group.ddr_written["gmem_scratch"] > 0


@pytest.mark.parametrize(
    "moe_blocks", [(0, 2), (2,), ()], ids=["first-and-third", "third-only", "dense-only"]
)
def test_expert_major_with_dense_blocks_after_the_last_moe(moe_blocks):
    """Images resume after the last MoE block and finish the dense blocks on chip (with
    no MoE block at all, the call is image-major: three images on the two buffer sets)."""
    c = cfg("m3vit-mini").replace(moe_blocks=moe_blocks)
    p = profile("lean")
    qm = quantize_model(state(random_model(c, 6)), c, p)
    patches = to_patches(random_images(c, 3, 6), c)
    g = Golden(qm).run(patches, "depth")
    r = csim.CSim(c, p).run(pack(qm, DEFAULT_TILING), patches, 1)
    assert r.status == 0 and np.array_equal(r.output, g.tokens)
    assert (r.ddr_read, r.ddr_written) == ddr_bytes(c, p, DEFAULT_TILING, expert_counts(g, 3))


def test_expert_major_groups_of_max_group():
    """More images than MAX_GROUP: two groups (the second of one image, alone on the two
    buffer sets), still golden bit for bit."""
    c, p = cfg("m3vit-mini"), profile("lean")
    qm = quantize_model(state(model("m3vit-mini", 4)), c, p)
    n = MAX_GROUP + 1
    patches = to_patches(random_images(c, n, 4), c)
    g = Golden(qm).run(patches, "semseg")
    r = kernel("m3vit-mini", "lean").run(pack(qm, DEFAULT_TILING), patches, 0)
    assert r.status == 0 and np.array_equal(r.output, g.tokens)
    assert (r.ddr_read, r.ddr_written) == ddr_bytes(c, p, DEFAULT_TILING, expert_counts(g, n))


def test_other_tilings_bit_exact():
    c, p = cfg("m3vit-mini"), profile("edge-moe")
    qm = quantize_model(state(model("m3vit-mini", 1)), c, p)
    patches = to_patches(random_images(c, 1, 1), c)
    want = Golden(qm).run(patches, "semseg").tokens
    for t in (Tiling(8, 16, 4), Tiling(24, 12, 3), Tiling(64, 8, 16)):
        r = csim.CSim(c, p, t).run(pack(qm, t), patches, 0)
        assert r.status == 0 and np.array_equal(r.output, want), t


def test_committed_default_header_is_fresh():
    want = generate(cfg(DEFAULT_CONFIG), profile("lean"), DEFAULT_TILING)
    assert DEFAULT_HEADER.read_text() == want, (
        "hls/include/edgemoe/params_default.h is stale: python -m edgemoe.host.export.hls_params"
    )


def test_vitis_style_top_testbench(tmp_path):
    """hls/tb/tb_top.cpp (the Vitis csim testbench) agrees with golden on files."""
    qm, bundle, patches = setup("m3vit-mini", "edge-moe", 2)
    c, p = cfg("m3vit-mini"), profile("edge-moe")
    exe = csim.build_testbench("tb_top", c, p, tmp_path, with_kernel=True)
    (tmp_path / "bundle.bin").write_bytes(bundle)
    patches.tofile(tmp_path / "images.bin")
    g = Golden(qm).run(patches, "depth")
    g.tokens.astype("<i4").tofile(tmp_path / "expected.bin")
    run = subprocess.run(
        [
            str(exe),
            str(tmp_path / "bundle.bin"),
            str(tmp_path / "images.bin"),
            str(tmp_path / "out.bin"),
            "1",
            "2",
            "0",
            str(tmp_path / "expected.bin"),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "status 0" in run.stdout and "bit-exact" in run.stdout
    bad = subprocess.run(
        [
            str(exe),
            str(tmp_path / "bundle.bin"),
            str(tmp_path / "images.bin"),
            str(tmp_path / "out.bin"),
            "0",
            "2",
            "0",
            str(tmp_path / "expected.bin"),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout  # other task, other output


def test_verify_golden_vs_csim_reports_bit_exact(tmp_path, capsys):
    import json

    from edgemoe.host.app.cli import main

    path = tmp_path / "v.json"
    code = main(
        [
            "verify",
            "--config",
            "m3vit-mini",
            "--profile",
            "edge-moe",
            "--backends",
            "golden,csim",
            "--json",
            str(path),
        ]
    )
    assert code == 0, capsys.readouterr().out
    pair = json.loads(path.read_text())["pairs"]["golden-csim"]
    assert pair["bit_exact"] is True and pair["first_difference"] is None


def test_first_difference_names_the_first_boundary():
    from edgemoe.host.app.verify import first_difference
    from edgemoe.host.driver.backends import Workload, get_backend

    wl = Workload(cfg("m3vit-mini"), profile("lean"), model("m3vit-mini", 0))
    imgs = random_images(wl.cfg, 1, 0)
    g = get_backend("golden").run(wl, imgs, "semseg", record=True)
    c = get_backend("csim").run(wl, imgs, "semseg", record=True)
    assert set(c.stages) == set(g.stages)
    assert first_difference(g, c) is None
    for later in ("block2.attn", "block2.mlp", "block3.mlp"):
        c.stages[later] = c.stages[later] + 1.0
    c.tokens = c.tokens + 1.0
    assert first_difference(g, c) == "block2.attn"


@pytest.mark.parametrize("cname", ["m3vit-mini", "m3vit-mini-pup"])
@pytest.mark.parametrize("images", [1, 3])
def test_make_hls_testbench_data_passes_the_testbench(tmp_path, images, cname):
    """The files `make hls` hands the Vitis testbench (edgemoe.sim.tbdata) pass it bit-exactly,
    in both schedules; with M3ViT's decoder (mini-pup) the logits after each image's tokens."""
    from edgemoe.sim import tbdata

    argv = tbdata.write(tmp_path / "data", cname, "lean", task=1, seed=3, images=images)
    exe = csim.build_testbench("tb_top", cfg(cname), profile("lean"), tmp_path, with_kernel=True)
    run = subprocess.run([str(exe), *argv], capture_output=True, text=True)
    assert run.returncode == 0 and "bit-exact" in run.stdout, run.stdout + run.stderr


@pytest.mark.parametrize("stage", ["embed", "block0.qkv", "block1.gate", "block1.attn"])
def test_top_testbench_compares_real_bytes_at_a_debug_stop(tmp_path, stage):
    """With a debug stop the testbench compares the stage's bytes (not the C-sim counters,
    which count nothing in co-simulation): equal to golden passes, one flipped word fails."""
    qm, bundle, patches = setup("m3vit-mini", "lean", 4)
    c = cfg("m3vit-mini")
    exe = csim.build_testbench("tb_top", c, profile("lean"), tmp_path, with_kernel=True)
    (tmp_path / "bundle.bin").write_bytes(bundle)
    patches.tofile(tmp_path / "images.bin")
    want = Golden(qm).run(patches, "semseg", record=True).stages[stage].astype("<i4")
    want.tofile(tmp_path / "expected.bin")
    argv = [
        str(exe),
        str(tmp_path / "bundle.bin"),
        str(tmp_path / "images.bin"),
        str(tmp_path / "out.bin"),
        str(c.task_id("semseg")),
        "2",
        str(debug_stop_code(c, stage)),
        str(tmp_path / "expected.bin"),
    ]
    run = subprocess.run(argv, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"bit-exact against {tmp_path / 'expected.bin'} ({want.nbytes} bytes)" in run.stdout
    assert np.array_equal(np.fromfile(tmp_path / "out.bin", "<i4"), want.ravel())
    flipped = want.copy().ravel()
    flipped[-1] ^= 1
    flipped.tofile(tmp_path / "expected.bin")
    bad = subprocess.run(argv, capture_output=True, text=True)
    assert bad.returncode == 1 and "MISMATCH" in bad.stdout
    (tmp_path / "expected.bin").write_bytes(b"")
    empty = subprocess.run(argv, capture_output=True, text=True)
    assert empty.returncode == 1 and "MISMATCH" in empty.stdout


@pytest.mark.parametrize("ap_types", [False, True])
def test_the_kernel_is_cpp14_with_the_open_ap_types_headers(ap_types):
    """UG1399 documents C/C++11/14 for what Vitis compiles: the kernel and its testbench
    build as strict C++14 (-pedantic-errors) against hls4ml's ap_types headers."""
    flags = ["-DEDGEMOE_AP_TYPES"] if ap_types else []
    for src, extra in ((HLS_TOP, ["-pedantic-errors"]), (HLS_TB, [])):
        run = subprocess.run(
            [
                csim.CXX,
                "-std=c++14",
                *extra,
                "-fsyntax-only",
                "-w",
                f"-I{csim.HLS / 'include'}",
                f"-I{csim.HLS / 'tb'}",
                f"-I{csim.ap_types_include()}",
                *flags,
                str(src),
            ],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stderr[-2000:]
    assert "-std=c++14" in csim.CXXFLAGS


HLS_TOP = csim.HLS / "src" / "edgemoe_top.cpp"
HLS_TB = csim.HLS / "tb" / "tb_top.cpp"
