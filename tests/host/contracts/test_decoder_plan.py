"""The decoder's layout contract (host/contracts/decoder.py) against golden's decoder."""

from __future__ import annotations

import numpy as np
import pytest

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.export import hls_params
from edgemoe.models.config import load_config

CONFIGS = ("m3vit-mini-pup", "m3vit-tiny-128x256")


@pytest.mark.parametrize("name", CONFIGS)
def test_stages_follow_golden_order_and_shapes(name: str) -> None:
    cfg = load_config(name)
    gh, gw = cfg.grid
    for task in cfg.task_names:
        plan = dp.decoder_plan(cfg, task, DEFAULT_TILING)
        spec = cfg.task_spec(task).head
        assert [s.name for s in plan.stages] == dp.stage_names(cfg, task)
        assert plan.stages[0].shape == (gh, gw, cfg.embed_dim)
        last = plan.stages[-1]
        assert last.name == "dec.logits" and last.k == 1 and not last.relu
        assert last.shape[2] == cfg.task_channels(task)
        scale = 8 if spec.num_conv == 4 else 1  # H/2 x W/2, or the grid (golden)
        assert plan.out_shape == (gh * scale, gw * scale, cfg.task_channels(task))
        codes = [s.code for s in plan.stages]
        assert codes == list(range(codes[0], codes[0] + len(codes)))
        assert codes[0] == dp.tokens_stop_code(cfg) + 1
        # the decoder's codes follow the backbone's last debug stop
        last_backbone = hls_params.debug_stop_code(cfg, f"block{cfg.depth - 1}.mlp")
        assert dp.tokens_stop_code(cfg) == last_backbone + 1


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("tiling", [DEFAULT_TILING, Tiling(8, 8, 1, 64)])
def test_bands_cover_each_map_once_and_their_windows_fit(name: str, tiling: Tiling) -> None:
    cfg = load_config(name)
    n = cfg.num_tokens
    for task in cfg.task_names:
        plan = dp.decoder_plan(cfg, task, tiling)
        for s in plan.stages:
            if s.kind not in (dp.CONV, dp.LOGITS):
                continue
            h, w, c = s.shape
            covered = sorted(
                (y, x)
                for b in s.bands
                for y in range(b.y0, b.y0 + b.rows)
                for x in range(b.x0, b.x0 + b.cols)
            )
            assert covered == [(y, x) for y in range(h) for x in range(w)]
            assert all(b.pixels <= n for b in s.bands)
            cp = dp.padded_channels(s.in_shape[2], tiling)
            assert s.k_tiles == s.k * s.k * cp // tiling.lin_in
            halo = s.k // 2
            for b in s.bands:
                rows = range(max(0, b.y0 - halo), min(h, b.y0 + b.rows + halo))
                need = set(rows)
                if s.fused_up:
                    need = {r for u in need for r in dp.up_source_rows(u, s.src_shape[0])}
                assert set(b.in_rows) == need
                assert b.weight_words == s.k_tiles * s.o_tiles * dp.tile_words(tiling)
                if s.name == "dec.conv_0":
                    continue  # read in place from the token grid in h
                # the window's rows fit the ring in wide: whole rows of WC pixels per
                # n-row column slot of cp channels
                wc = min(w, b.x0 + b.cols + halo) - max(0, b.x0 - halo)
                slots = dp.wide_cols(cfg) // cp
                assert (n // wc) * slots >= len(rows)
                assert s.ring_rows >= len(rows) and s.ring_rps * wc <= n
            if s.name != "dec.conv_0":
                # full-width bands load only the rows below the previous band's window;
                # together the bands load every input row of the map at least once
                loads = [r for b in s.bands for r in b.load_rows]
                assert set(loads) == set(range(h))
                if all(b.cols == w for b in s.bands):
                    assert sorted(loads) == list(range(h)), "each row loaded once"


@pytest.mark.parametrize("name", CONFIGS)
def test_maps_pack_chunk_planar_and_back(name: str) -> None:
    cfg = load_config(name)
    rng = np.random.default_rng(0)
    for c in (1, 7, cfg.embed_dim, 2 * cfg.embed_dim + 3):
        v = rng.integers(-(2**19), 2**19, size=(3, 5, c))
        words = dp.pack_map(cfg, v, DEFAULT_TILING)
        assert len(words) == dp.map_words(cfg, v.shape, DEFAULT_TILING)
        np.testing.assert_array_equal(dp.unpack_map(cfg, words, v.shape, DEFAULT_TILING), v)
        cw = dp.chunk_width(cfg, DEFAULT_TILING)
        # the first plane holds the first chunk's channels of every pixel, row-major
        first = min(c, cw)
        lanes = DEFAULT_TILING.axi_bits // 32
        pw = -(-first // lanes) * lanes
        np.testing.assert_array_equal(words[:pw][:first], v[0, 0, :first])
        np.testing.assert_array_equal(words[pw : pw + first], v[0, 1, :first])


def test_output_words_hold_the_tokens_and_the_stage() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    t = DEFAULT_TILING
    tokens = cfg.num_tokens * cfg.embed_dim
    plan = dp.decoder_plan(cfg, "semseg", t)
    assert dp.tokens_words(cfg, t) == tokens
    assert plan.out_words == 64 * 128 * 8
    assert dp.output_words(cfg, "semseg", 0, t) == tokens + plan.out_words
    assert dp.output_words(cfg, "semseg", plan.stage("dec.norm").code, t) == tokens + 128 * 192
    up3 = plan.stage("dec.up_3").code
    assert dp.output_words(cfg, "semseg", up3, t) == tokens + 64 * 128 * 256
    assert dp.decodes(cfg, "semseg", 0) and not dp.decodes(cfg, "semseg", dp.tokens_stop_code(cfg))


def test_tiny_macs_and_maps() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    plan = dp.decoder_plan(cfg, "semseg", DEFAULT_TILING)
    assert plan.macs == 6_413_090_816  # the 6.41 GMAC per task-image
    conv3 = plan.stage("dec.conv_3")
    assert conv3.shape == (64, 128, 256) and conv3.fused_up and conv3.src_shape[:2] == (32, 64)
    # the two ping-pong maps hold the largest stored map: conv_2's, 32x64x256 words
    # (the fused plan never stores conv_3's)
    assert plan.fused
    assert (
        plan.map_offsets == (0, 32 * 64 * 256 * 4) and plan.scratch_bytes == 2 * plan.map_offsets[1]
    )
    assert dp.decoder_set_bytes(cfg, DEFAULT_TILING) == plan.scratch_bytes
    # two images decode at once, one on each buffer set, each with its own maps
    assert dp.decoder_scratch_bytes(cfg, DEFAULT_TILING) == 2 * plan.scratch_bytes


def test_linear_head_has_no_plan() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    for task in cfg.task_names:
        if cfg.task_spec(task).head.kind != "pup":
            assert dp.decoder_plan(cfg, task, DEFAULT_TILING).stages == ()


@pytest.mark.parametrize(
    ("name", "tiling", "fused"),
    [
        ("m3vit-tiny-128x256", DEFAULT_TILING, True),  # one-row full-width conv_3 bands
        ("m3vit-tiny-128x256", Tiling(24, 12, 3), False),  # 264-column slots: 62-pixel bands
        ("m3vit-tiny-128x256", Tiling(8, 16, 4), True),
        ("m3vit-mini-pup", DEFAULT_TILING, False),  # 9 token rows: bands narrower than the map
    ],
)
def test_classifier_fuses_where_the_band_fits(name: str, tiling: Tiling, fused: bool) -> None:
    cfg = load_config(name)
    plan = dp.decoder_plan(cfg, 0, tiling)
    assert plan.fused == fused == dp.fusable(cfg, list(plan.stages), tiling)
    if fused:  # the conditions the kernel's dec_fuse_window relies on
        last = [s for s in plan.stages if s.kind == dp.CONV][-1]
        assert last.ring_rps == 1 and last.ring_rows >= 3
        assert all(b.rows == 1 and b.cols == last.shape[1] for b in last.bands)
        first, second = dp.chunks(cfg, last.shape[2], tiling)
        assert first[1] % tiling.lin_in == 0 and first[1] <= cfg.embed_dim
