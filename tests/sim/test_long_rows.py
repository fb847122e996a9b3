"""m3vit-mini-long: the conditions m3vit-mini cannot reach, golden == C-sim bit for bit.

Its rows (101 tokens per image) outnumber a weight tile's bus words (LIN_TILE_WORDS), so
a linear-unit pass outlasts the tile fetch beside it and the tile buffer a pass reads is
refilled right after it, as in the default build; and with top-3 routing over 4 experts,
two images queue more rows for some expert than one expert chunk holds (NUM_TOKENS), so
the expert-major walk splits that expert into chunks. `make hls` co-simulates this config.
"""

from __future__ import annotations

import functools
import subprocess

import numpy as np
import pytest

from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.estimate.traffic import call_reads, ddr_bytes
from edgemoe.host.export.bundle import layout
from edgemoe.host.export.hls_params import generate
from edgemoe.sim import csim
from tests.conftest import cfg, profile
from tests.sim.test_csim import assert_every_boundary, expert_counts, setup

CONFIG = "m3vit-mini-long"


@functools.cache
def kernel(pname: str) -> csim.CSim:
    return csim.CSim(cfg(CONFIG), profile(pname))


def lin_tile_words() -> int:
    """LIN_TILE_WORDS as linear.h derives it: a tile's 16-bit weights in bus words."""
    t = DEFAULT_TILING
    return t.lin_in * t.lin_out // (t.axi_bits // 16)


def chunks(g, images: int) -> list[list[int]]:
    """Per MoE block, per expert: the expert chunks of the group's walk (experts.h
    next_expert_chunk: up to NUM_TOKENS queued rows each)."""
    n = cfg(CONFIG).num_tokens
    per_block = zip(*expert_counts(g, images), strict=True)
    return [[-(-sum(q) // n) for q in zip(*blk, strict=True)] for blk in per_block]


def test_rows_outnumber_a_tile_of_words():
    c = cfg(CONFIG)
    header = generate(c, profile("lean"), DEFAULT_TILING)
    assert f"constexpr int NUM_TOKENS = {c.num_tokens};" in header
    assert f"constexpr int LIN_IN = {DEFAULT_TILING.lin_in};" in header
    assert lin_tile_words() == 96
    assert c.num_tokens == 101 > lin_tile_words()
    assert (c.num_experts, c.top_k) == (4, 3)  # 2 images: >= 2 * 101 * 3 / 4 rows for one


@pytest.mark.parametrize("pname", ["lean", "edge-moe"])
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_image_major_bit_exact_every_boundary(pname, task):
    """One image: the image-major schedule; every call's passes are 101 rows long."""
    qm, bundle, patches = setup(CONFIG, pname, 0, images=1)
    assert_every_boundary(kernel(pname), qm, bundle, patches, task)


@pytest.mark.parametrize("pname", ["lean", "edge-moe"])
def test_expert_major_walks_more_than_one_chunk_bit_exact(pname):
    """Two images: the expert-major schedule, some expert in two or more chunks; every
    layer boundary (debug stops) equal to golden's.

    The chunk count is read back from the kernel: it fetches an expert's weights once per
    chunk, so its weight bytes exceed one fetch per used expert by the extra chunks."""
    c, p = cfg(CONFIG), profile(pname)
    qm, bundle, patches = setup(CONFIG, pname, 1, images=2)
    k = kernel(pname)
    g, group = assert_every_boundary(k, qm, bundle, patches, "semseg")
    per_block = chunks(g, 2)
    assert max(max(b) for b in per_block) >= 2, per_block
    counts = expert_counts(g, 2)
    assert (group.ddr_read, group.ddr_written) == ddr_bytes(c, p, DEFAULT_TILING, counts)
    # the same images one at a time (image-major): each used expert fetched once per image
    single = [k.run(bundle, patches[b : b + 1], 0) for b in range(2)]
    assert np.array_equal(group.output, np.concatenate([s.output for s in single]))
    size = {e.name: e.nbytes for e in layout(c, p, DEFAULT_TILING)}
    moe = [i for i in range(c.depth) if c.is_moe(i)]
    extra = 0  # expert weight bytes the group reads beyond one fetch per used expert
    saved = 0  # ... and what it saves against the images' own fetches
    for m, i in enumerate(moe):
        for e in range(c.num_experts):
            ex = sum(
                size[f"blocks.{i}.experts.{e}.{fc}.{t}"] for fc in ("fc1", "fc2") for t in "wb"
            )
            used = sum(1 for img in counts if img[m][e])
            extra += (per_block[m][e] - 1) * ex if used else 0
            saved += (used - per_block[m][e]) * ex
    assert extra > 0
    weights = [s.ddr_read["gmem_weights"] for s in single]
    # two kernel calls read the header and scale table twice, the group once
    once = call_reads(c, DEFAULT_TILING)
    assert sum(weights) - group.ddr_read["gmem_weights"] == saved + once


def test_the_cosimulation_inputs_pass_the_testbench(tmp_path):
    """What `make hls` co-simulates by default (tbdata's defaults, 2 images) passes the
    Vitis testbench (hls/tb/tb_top.cpp) built with this config's header, bit for bit."""
    from edgemoe.sim import tbdata

    argv = tbdata.write(tmp_path / "data", CONFIG, "lean", task=0, seed=0, images=2)
    exe = csim.build_testbench("tb_top", cfg(CONFIG), profile("lean"), tmp_path, with_kernel=True)
    run = subprocess.run([str(exe), *argv], capture_output=True, text=True)
    assert run.returncode == 0 and "bit-exact" in run.stdout, run.stdout + run.stderr
