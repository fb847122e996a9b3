"""The task decoder in the estimate: stage cycles and DDR bytes against hand counts on
m3vit-mini-pup, MACs against the model's count, the end-to-end figures, floor and target."""

from __future__ import annotations

import json

import pytest

from edgemoe.errors import ConfigError
from edgemoe.host.app.cli import main
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.estimate.decoder import estimate_plan, ring_capacity
from edgemoe.host.estimate.perf import (
    DEVICES,
    backbone_macs,
    decoder_stages,
    end_to_end,
    our_design,
)
from edgemoe.host.estimate.resources import LIMITS
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.models.heads import decoder_macs
from tests.conftest import cfg, profile

PUP = "m3vit-mini-pup"
# The hand counts below read these off the default build: a weight tile is 32 x 24 16-bit
# values = 96 bus words of 128 bits; a burst costs 64 (m_axi latency) + 4 (fill) cycles; a
# call fills and drains once (64 + 8 + 6), fetches its first two tiles (2 x 96) and its
# bias (24 x 2 bytes = 3 words for one output tile) before its passes.
TILE_WORDS, BURST, FILL, BIAS_WORDS = 96, 68, 64 + 8 + 6, 3


def _plan(name: str = PUP, task: str = "semseg", **kw):
    return estimate_plan(cfg(name), task, DEFAULT_TILING, **kw)


def _stages(name: str = PUP, batch: int = 1, **kw) -> dict:
    c, p = cfg(name), profile("lean")
    plan = _plan(name, **kw)
    d = our_design(p, DEFAULT_TILING)
    st = decoder_stages(c, p, d, DEVICES["zcu104"], 300.0, batch, plan)
    return {s.name: s for s in st}


def test_mini_pup_plan_is_the_hand_count():
    """m3vit-mini-pup (grid 2 x 4, 9 tokens, 32 channels in, 16 in the decoder, 7 classes):
    a band is the most whole map rows within 9 pixels, else a part of a row."""
    plan = {s.name: s for s in _plan()}
    assert list(plan) == [
        "dec.norm",
        "dec.conv_0",
        "dec.up_1",
        "dec.conv_1",
        "dec.up_2",
        "dec.conv_2",
        "dec.up_3",
        "dec.conv_3",
        "dec.logits",
    ]
    assert plan["dec.conv_0"].band_pixels == (8,)  # both rows of the 2 x 4 map
    assert plan["dec.conv_1"].band_pixels == (8,) * 4  # a row of the 4 x 8 map each
    assert plan["dec.conv_2"].band_pixels == (9, 7) * 8  # 16 wide: two parts a row
    assert plan["dec.conv_3"].band_pixels == (9, 9, 9, 5) * 16
    assert plan["dec.logits"].band_pixels == (9, 9, 9, 5) * 16
    assert (plan["dec.conv_0"].k, plan["dec.conv_0"].o) == (9 * 32, 16)
    assert (plan["dec.conv_3"].k, plan["dec.logits"].k, plan["dec.logits"].o) == (144, 16, 7)


def test_mini_pup_stage_cycles_are_the_hand_count():
    s = _stages()
    # norm: 8 tokens x 3 lane groups of 12 x 2 phases, rsqrt 16 + 2 epilogues of 6; gamma
    # and beta (2 x 64 bytes = 8 words) in one burst
    assert s["dec.norm"].compute_cycles == 2 * 8 * 3 + 16 + 12 + 8 + BURST
    # conv_0: one band of 8 pixels, 9 x 1 tiles: 7 passes fetching (96), 2 plain (8);
    # its map stored: 8 pixels x 16 x 4 bytes = 32 words, one burst
    conv0 = 7 * TILE_WORDS + 2 * 8 + FILL + 2 * TILE_WORDS + BIAS_WORDS
    assert s["dec.conv_0"].compute_cycles == conv0 + 32 + BURST
    # up_1: reads the 2 x 4 x 16 map (32 words, a burst per low-resolution row), writes
    # 4 x 8 x 16 values 32 a cycle, drains once
    assert s["dec.up_1"].compute_cycles == 32 + 2 * BURST + 4 * 8 * 16 // 32 + 6
    # conv_1: 4 bands of 8 pixels, 5 x 1 tiles; 4 x 8 x 16 x 4 bytes = 128 words in 4 bursts
    conv1 = 3 * TILE_WORDS + 2 * 8 + FILL + 2 * TILE_WORDS + BIAS_WORDS
    assert s["dec.conv_1"].compute_cycles == 4 * conv1 + 128 + 4 * BURST
    # logits: 64 bands (9, 9, 9, 5 a row), one tile, no fetching pass: max(pixels, 8);
    # reads conv_3's 16 x 32 x 16 map (2048 words), writes per band ceil_w(pixels x 7 x 4)
    # (256 bytes for 9, 144 for 5: 57 words a row), a load and a store burst per band
    per_row = 3 * (9 + FILL + TILE_WORDS + BIAS_WORDS) + (8 + FILL + TILE_WORDS + BIAS_WORDS)
    assert s["dec.logits"].compute_cycles == 16 * per_row + 2048 + 16 * 57 + 128 * BURST


def test_mini_pup_ddr_bytes_are_the_hand_count():
    s = _stages()
    tile, bias = 32 * 24 * 2, 48  # bytes of a weight tile; one output tile's bias
    hand = {
        "dec.norm": 2 * 64,
        "dec.conv_0": 1 * (9 * tile + bias) + 2 * 4 * 16 * 4,
        "dec.up_1": 2 * 4 * 16 * 4,
        "dec.conv_1": 4 * (5 * tile + bias) + 4 * 8 * 16 * 4,
        "dec.up_2": 4 * 8 * 16 * 4,
        "dec.conv_2": 16 * (5 * tile + bias) + 8 * 16 * 16 * 4,
        "dec.up_3": 8 * 16 * 16 * 4,
        "dec.conv_3": 64 * (5 * tile + bias) + 16 * 32 * 16 * 4,
        "dec.logits": 64 * (tile + bias) + 16 * 32 * 16 * 4 + 16 * (3 * 256 + 144),
    }
    assert {k: v.ddr_bytes for k, v in s.items()} == hand
    # after an expert-major call the norm reads the final tokens back: 9 rows of 32 x 4 bytes
    many = _stages(batch=16)
    assert many["dec.norm"].ddr_bytes == hand["dec.norm"] + 9 * 32 * 4
    # the what-ifs change the bytes they name
    fused = _stages(fuse_classifier=True)
    assert fused["dec.conv_3"].ddr_bytes == 64 * (5 * tile + bias)
    assert fused["dec.logits"].ddr_bytes == 64 * (tile + bias) + 16 * (3 * 256 + 144)
    half = _stages(fmap_bytes=2)
    assert half["dec.up_3"].ddr_bytes == hand["dec.up_3"] // 2


@pytest.mark.parametrize("name", [PUP, DEFAULT_CONFIG])
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_macs_are_the_models(name, task):
    plan = estimate_plan(cfg(name), task, DEFAULT_TILING)
    counted = {s.name: s.macs for s in plan if s.kind in ("conv", "classifier")}
    model = dict(decoder_macs(cfg(name), task))
    n = len(model)
    assert counted == {
        (f"dec.conv_{i}" if i < n - 1 else "dec.logits"): model[f"conv_{i}"] for i in range(n)
    }
    assert all(s.macs == 0 for s in plan if s.kind in ("norm", "upsample"))


def test_tiny_decoder_macs_and_ring():
    """The shipped tiny: 6.41 GMAC per task-image (conv_3 4.83 G); the
    largest ring (3 rows of 128 x 256) fits one buffer set's wide banks."""
    plan = _plan(DEFAULT_CONFIG)
    by = {s.name: s for s in plan}
    assert by["dec.conv_3"].macs == 64 * 128 * 9 * 256 * 256
    assert sum(s.macs for s in plan) == pytest.approx(6.41e9, rel=1e-3)
    assert by["dec.conv_3"].ring_values == 3 * 128 * 256 <= ring_capacity(cfg(DEFAULT_CONFIG))
    assert max(by["dec.conv_3"].band_pixels) == 128


def test_end_to_end_floor_and_target():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    e = end_to_end(c, p, d, DEVICES["zcu104"])
    one, many = e["per_call"]["1"], e["per_call"]["16"]
    for r in (one, many):
        assert r["ms_per_task_image"] == pytest.approx(r["backbone_ms"] + r["decoder_ms"])
    assert sum(s["ms"] for s in e["stages"]) == pytest.approx(one["decoder_ms"])
    # the floor: every MAC over every DSP48E2 of the build at one MAC a cycle
    macs = backbone_macs(c) + sum(s["macs"] for s in e["stages"])
    dsp = int(e["floor"]["rule"].split("(")[2].split(" DSP48E2")[0])
    assert e["floor"]["ms_per_task_image"] == pytest.approx(macs / (dsp * 300e3))
    assert e["floor"]["ms_per_task_image"] < many["ms_per_task_image"]
    t = e["target"]
    assert t["meets"] == (many["ms_per_task_image"] <= 35.0)
    assert t["gap_ms"] == pytest.approx(max(0.0, many["ms_per_task_image"] - 35.0))
    # each what-if removes cost; all of them together at least as much as the best one
    built = many["ms_per_task_image"]
    opts = e["options_ms_per_task_image"]
    narrow = next(k for k in opts if "channels wide" in k)
    together = opts.pop("the four above together")
    assert opts.pop(narrow) < built  # fewer MACs: below the floor of M3ViT's head is fine
    assert len(opts) == 4
    assert all(e["floor"]["ms_per_task_image"] < v < built for v in opts.values())
    assert e["floor"]["ms_per_task_image"] < together <= min(opts.values())
    # the chosen next build: the two I/O changes together beat each alone
    ch = e["chosen"]
    io = [v for k, v in opts.items() if "beside compute" in k or "classifier" in k]
    assert len(io) == 2 and together <= ch["ms_per_task_image"] < min(io)
    assert ch["meets_target"] and ch["ms_per_task_image"] <= 35.0  # the tiny, 16 per call
    assert e["floor"]["device_ms_per_task_image"] < e["floor"]["ms_per_task_image"]
    assert "Next steps" in e["next_step"]
    rings = {s["name"]: s["ring_in"] for s in e["stages"]}
    assert rings["dec.conv_3"] == "wide banks (reused)" and rings["dec.up_3"] == ""


def test_cli_json_exposes_the_decoder(tmp_path):
    out = tmp_path / "e.json"
    assert main(["estimate", "--json", str(out)]) == 0
    d = json.loads(out.read_text())
    dec = d["decoder"]
    assert [s["name"] for s in dec["stages"]][0] == "dec.norm"
    assert set(d["end_to_end_ms_per_task_image"]) == {"1", "16"}
    assert d["floor_ms_per_task_image"] == dec["floor"]["ms_per_task_image"]
    # fits: the decoder's unit is in the resource table and every limit holds
    res = d["resources"]
    assert res["by_unit"]["decoder"]["lut"] > 0 and dec["fits"] == res["fits"]
    assert res["fits"] == all(res["utilisation"][k] <= LIMITS[k] for k in LIMITS)
    assert res["fits"]
    assert "target" in dec and isinstance(dec["target"]["meets"], bool)


def test_resources_decoder_lines():
    """The tiny's ring fits the wide banks (no BRAM); mini-pup's 3 rows of 32 x 16 exceed
    its 9 x 128 values and take a ring of their own; no pup head, no decoder lines."""
    from edgemoe.host.estimate.resources import lines, operators

    def dec(name):
        c, p = cfg(name), profile("lean")
        ls = lines(c, p, DEFAULT_TILING, operators(c, p, DEFAULT_TILING))
        return [ln for ln in ls if ln.unit == "decoder"]

    tiny = dec(DEFAULT_CONFIG)
    ring = [ln for ln in tiny if ln.what.startswith("ring")]
    assert len(ring) == 1 and ring[0].bram36 == 0 and "wide" in ring[0].what
    mini = [ln for ln in dec(PUP) if ln.what.startswith("ring")]
    assert mini[0].bram36 > 0 and "own" in mini[0].what
    assert dec("m3vit-mini") == []


def test_no_pup_head_no_decoder(tmp_path):
    c, p = cfg("m3vit-mini"), profile("lean")
    assert end_to_end(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"]) is None
    out = tmp_path / "e.json"
    assert main(["estimate", "--config", "m3vit-mini", "--json", str(out)]) == 0
    assert "decoder" not in json.loads(out.read_text())


def test_task_must_have_a_pup_head(capsys):
    with pytest.raises(ConfigError, match="pup"):
        estimate_plan(cfg("m3vit-mini"), "semseg", DEFAULT_TILING)
    assert main(["estimate", "--config", "m3vit-mini", "--task", "semseg"]) != 0
    assert "pup" in capsys.readouterr().err


def test_hls_readme_decoder_row_is_the_estimate(tmp_path):
    """hls/README.md "Resources per unit": the decoder's row and the total are the model's."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "hls" / "README.md").read_text()
    out = tmp_path / "e.json"
    assert main(["estimate", "--json", str(out)]) == 0
    r = json.loads(out.read_text())["resources"]
    row = r["by_unit"]["decoder"]
    assert (
        f"| decoder | {row['lut']:,} | {row['ff']:,} | {row['dsp']} | {row['bram36']:g} | "
        f"{row['uram']} |" in text
    )
    u = r["utilisation"]
    assert (
        f"| **total** | **{r['lut_estimate']:,}** ({100 * u['lut']:.1f} %) | "
        f"**{r['ff_estimate']:,}** ({100 * u['ff']:.1f} %) | **{r['dsp48e2']:,}** "
        f"({100 * u['dsp']:.1f} %) | **{r['bram36']:g}** ({100 * u['bram36']:.1f} %) |" in text
    )
