"""The decoder's layout contract (host/contracts/decoder.py) against golden's decoder."""

from __future__ import annotations

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
def test_bands_cover_each_map_once_with_their_window(name: str, tiling: Tiling) -> None:
    cfg = load_config(name)
    for task in cfg.task_names:
        plan = dp.decoder_plan(cfg, task, tiling)
        for s in plan.stages:
            if s.kind not in (dp.CONV, dp.LOGITS):
                continue
            h, w, c = s.shape
            covered = [p for b in s.bands for p in range(b.p0, b.p1)]
            assert covered == list(range(h * w))
            assert all(b.pixels <= cfg.num_tokens for b in s.bands)
            loaded: set[int] = set()
            for b in s.bands:
                rows = range(b.p0 // w - s.k // 2, (b.p1 - 1) // w + s.k // 2 + 1)
                need = {u for u in rows if 0 <= u < h}
                if s.fused_up:
                    need = {r for u in need for r in dp.up_source_rows(u, s.src_shape[0])}
                assert set(b.in_rows) == need
                assert set(b.new_rows) <= need and need - set(b.new_rows) <= loaded
                loaded = need
                assert b.weight_words == s.k_tiles * s.o_tiles * dp.tile_words(tiling)
            # every source row is read at least once, and the ring reads fewer than a window
            assert sum(len(b.new_rows) for b in s.bands) >= s.src_shape[0]


def test_tiny_macs_and_maps() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    plan = dp.decoder_plan(cfg, "semseg", DEFAULT_TILING)
    assert plan.macs == 6_413_090_816  # the 6.41 GMAC per task-image
    conv3 = plan.stage("dec.conv_3")
    assert conv3.shape == (64, 128, 256) and conv3.fused_up and conv3.src_shape[:2] == (32, 64)
    # the two ping-pong maps hold the largest stored map (conv_3's, 64x128x256 words)
    assert (
        plan.map_offsets == (0, 64 * 128 * 256 * 4)
        and plan.scratch_bytes == 2 * plan.map_offsets[1]
    )
    assert dp.decoder_scratch_bytes(cfg, DEFAULT_TILING) == plan.scratch_bytes


def test_linear_head_has_no_plan() -> None:
    cfg = load_config("m3vit-tiny-128x256")
    for task in cfg.task_names:
        if cfg.task_spec(task).head.kind != "pup":
            assert dp.decoder_plan(cfg, task, DEFAULT_TILING).stages == ()
