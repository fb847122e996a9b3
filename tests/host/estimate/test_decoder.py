"""The task decoder in the estimate: the kernel's decoder contract (v1) read for the bands,
tiles and DDR words, stage cycles and DDR bytes against hand counts on m3vit-mini-pup,
MACs against the model's count, the end-to-end figures, floor, target and chosen build."""

from __future__ import annotations

import json

import pytest

from edgemoe.errors import ConfigError
from edgemoe.host.app.cli import main
from edgemoe.host.contracts.decoder import chunks, decoder_plan, wide_cols
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.estimate.decoder import Options, band_costs, plan, pup_task, window
from edgemoe.host.estimate.perf import (
    AS_BUILT,
    DEC_STEP_CYCLES,
    DEVICES,
    TARGET_MS,
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
# values = 96 bus words of 128 bits (4 values of 32 bits a word); a burst costs 64 (m_axi
# latency) + 4 (fill) cycles; a call fills and drains once (64 + 8 + 6), fetches its
# first two tiles (2 x 96) and its bias (24 x 2 bytes = 3 words for one output tile)
# before its passes; a blend loop of the fused x2 fills in 6.
TILE_WORDS, BURST, FILL, BIAS_WORDS, BLEND_FILL = 96, 68, 64 + 8 + 6, 3, 6
# a call of 8 pixels over 9 x 1 tiles: 7 passes fetching (96), 2 plain (8)
CALL8 = 7 * TILE_WORDS + 2 * 8 + FILL + 2 * TILE_WORDS + BIAS_WORDS
# conv_1's load per window row: two bursts of 4 source pixels x 4 words, then the blend
# of 8 pixels, 8 channels a cycle (UP_LANES = gcd(24, 32)): 2 groups each, its loop's fill
CONV1_ROW = 2 * (16 + BURST) + 8 * 2 + BLEND_FILL
# a band's two steps (its linear turn and the side lane's turn after it)
STEPS = 2 * DEC_STEP_CYCLES


def _plan(name: str = PUP, task: str = "semseg"):
    return plan(cfg(name), task, DEFAULT_TILING)


def _stages(name: str = PUP, batch: int = 1, **kw) -> dict:
    c, p = cfg(name), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    st = decoder_stages(c, p, d, DEVICES["zcu104"], 300.0, batch, _plan(name), Options(**kw))
    return {s.name: s for s in st}


def test_mini_pup_bands_are_the_contracts_by_hand():
    """m3vit-mini-pup (grid 2 x 4, 9 tokens, 32 channels in, 16 in the decoder, 7
    classes; chunks of 24 channels: one per map; wide 9 x 128, slots of 32 padded
    channels): conv_0 reads the grid (one band); a band is then the most whole map rows
    within 9 pixels, narrowed until its window (the 3x3 halo) is at most 9 columns wide
    and its x2 source columns fit x."""
    p = {s.name: s for s in _plan().stages}
    assert list(p) == [
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
    geo = {n: [(b.rows, b.cols) for b in p[n].bands] for n in p}
    assert geo["dec.conv_0"] == [(2, 4)]  # the whole 2 x 4 grid
    assert geo["dec.conv_1"] == [(1, 8)] * 4  # a row of the 4 x 8 map: window 3 x 8
    # 16 wide: 9 columns give a window 11 wide, 8 one 10 wide; 7 fit (9)
    assert geo["dec.conv_2"] == [(1, 7), (1, 7), (1, 2)] * 8
    assert geo["dec.conv_3"] == ([(1, 7)] * 4 + [(1, 4)]) * 16  # 32 wide: 7, 7, 7, 7, 4
    assert geo["dec.logits"] == [(1, 9), (1, 9), (1, 9), (1, 5)] * 16  # 1x1: no halo
    # taps padded to whole input tiles: 16 channels take a 32-wide tile per tap
    tiles = {n: (p[n].k_tiles, p[n].o_tiles) for n in p if p[n].bands}
    assert tiles == {
        "dec.conv_0": (9, 1),
        "dec.conv_1": (9, 1),
        "dec.conv_2": (9, 1),
        "dec.conv_3": (9, 1),
        "dec.logits": (1, 1),
    }
    # window words: a fused x2 reads two source rows per loaded window row, 4 words a
    # pixel. conv_1: source columns 0..4 for every band; its bands span the map's width,
    # so after the first each loads only the rows below the last window: windows 0..1,
    # 0..2, 1..3, 2..3 load 2, 1, 1, 0 rows
    assert [b.load_rows for b in p["dec.conv_1"].bands] == [(0, 1), (2,), (3,), ()]
    assert [b.read_words for b in p["dec.conv_1"].bands] == [2 * r * 4 * 4 for r in (2, 1, 1, 0)]
    # conv_2, first map row (window rows 0..1): source columns 0..5, 2..8, 5..8
    assert [b.read_words for b in p["dec.conv_2"].bands[:3]] == [2 * 2 * n * 4 for n in (5, 6, 3)]
    # conv_3: source columns 0..5, 2..9, 5..12, 9..16, 12..16 a strip of 5 bands
    per_row = 2 * (5 + 7 + 7 + 7 + 4) * 4
    assert sum(b.read_words for b in p["dec.conv_3"].bands) == per_row * (2 * 2 + 14 * 3)
    assert [b.read_words for b in p["dec.logits"].bands[:4]] == [36, 36, 36, 20]
    assert [b.write_words for b in p["dec.logits"].bands[:4]] == [18, 18, 18, 10]  # 7 -> 2 words
    assert p["dec.conv_0"].bands[0].read_words == 0  # the grid in place


def test_band_costs_are_the_contracts_words():
    """The estimate's loads, stores and weights are the contract's words (as built); a
    call per band and output chunk."""
    for name in (PUP, DEFAULT_CONFIG):
        c = cfg(name)
        for s in _plan(name).stages:
            costs = band_costs(c, s, DEFAULT_TILING)
            assert len(costs) == len(s.bands)
            n_chunks = len(chunks(c, s.shape[2], DEFAULT_TILING))
            for b, k in zip(s.bands, costs, strict=True):
                assert (k.load_words, k.store_words) == (b.read_words, b.write_words)
                assert k.weight_words > b.weight_words  # plus a bias per call
                assert len(k.calls) == n_chunks and sum(k.calls) == s.shape[2]


def test_mini_pup_stage_cycles_are_the_hand_count():
    s = _stages()
    # norm: 8 tokens x 3 lane groups of 12 x 2 phases, rsqrt 16 + 2 epilogues of 6; gamma
    # and beta (2 x 64 bytes = 8 words) in one burst
    assert s["dec.norm"].compute_cycles == 2 * 8 * 3 + 16 + 12 + 8 + BURST
    # conv_0: one band, one call (16 channels: one chunk); its 2 x 4 x 16 map stored,
    # 4 words a pixel, a burst per band row
    assert s["dec.conv_0"].compute_cycles == CALL8 + 32 + 2 * BURST + STEPS
    # conv_1: 4 bands of 8 pixels, loading 2, 1, 1, 0 window rows (CONV1_ROW each); per
    # band a call and a store of 32 words in one burst
    conv1 = s["dec.conv_1"]
    assert (conv1.load_cycles, conv1.call_cycles, conv1.store_cycles) == (
        4 * CONV1_ROW,
        4 * CALL8,
        4 * (32 + BURST),
    )
    assert conv1.compute_cycles == 4 * CONV1_ROW + 4 * CALL8 + 4 * (32 + BURST) + 4 * STEPS
    assert conv1.calls == 4
    # logits: 64 bands (9, 9, 9, 5 a row), one tile, no fetching pass: max(pixels, 8);
    # a load burst (36 or 20 words) and a store burst (18 or 10 words) per band
    call = lambda px: max(px, 8) + FILL + TILE_WORDS + BIAS_WORDS  # noqa: E731
    row = 3 * (call(9) + 36 + BURST + 18 + BURST) + call(5) + 20 + BURST + 10 + BURST
    assert s["dec.logits"].compute_cycles == 16 * (row + 4 * STEPS)
    assert s["dec.up_1"].compute_cycles == 0  # fused into conv_1's load


def test_mini_pup_ddr_bytes_are_the_hand_count():
    s = _stages()
    w = 16  # bytes a bus word
    conv = 9 * TILE_WORDS + BIAS_WORDS  # weight words per band: 9 tiles and a bias
    hand = {
        "dec.norm": 2 * 64,
        "dec.conv_0": w * (conv + 32),
        "dec.up_1": 0,
        "dec.conv_1": w * (4 * conv + 2 * 4 * 4 * (2 + 1 + 1 + 0) + 4 * 32),
        "dec.up_2": 0,
        "dec.conv_2": w * (24 * conv + (2 * 224 + 6 * 336) + 8 * 16 * 4),
        "dec.up_3": 0,
        "dec.conv_3": w * (80 * conv + 240 * 46 + 16 * 32 * 4),
        "dec.logits": w * (64 * (TILE_WORDS + BIAS_WORDS) + 16 * 128 + 16 * 64),
    }
    assert {k: v.ddr_bytes for k, v in s.items()} == hand
    # after an expert-major call the norm reads the final tokens back: 9 rows of 32 x 4 bytes
    many = _stages(batch=16)
    assert many["dec.norm"].ddr_bytes == hand["dec.norm"] + 9 * 32 * 4
    # the what-ifs change the bytes they name
    fused = _stages(fuse_classifier=True)
    assert fused["dec.conv_3"].ddr_bytes == hand["dec.conv_3"] - w * 16 * 32 * 4
    assert fused["dec.logits"].ddr_bytes == w * (64 * (TILE_WORDS + BIAS_WORDS) + 16 * 64)
    half = _stages(fmap_bytes=2)  # 16 channels: 2 words a pixel; 7 logits: 1
    assert half["dec.conv_3"].ddr_bytes == w * (80 * conv + 240 * 46 // 2 + 16 * 32 * 2)
    assert half["dec.logits"].write_bytes == w * 16 * 32
    # without the ring's reuse (the kernel before it) conv_1's bands load their whole
    # windows (2, 3, 3, 2 rows); conv_2's bands are narrower than the map (no reuse)
    whole = _stages(ring_reuse=False)
    assert whole["dec.conv_1"].read_bytes == w * (64 + 96 + 96 + 64)
    assert whole["dec.conv_1"].load_cycles == 10 * CONV1_ROW
    assert whole["dec.conv_2"].read_bytes == s["dec.conv_2"].read_bytes


def test_two_images_decode_band_by_band_in_turn():
    """As built (lanes.h): two images per call decode at once, one's band on the linear
    unit beside the side lane's turn for the other (the band before's store, the next
    band's load). Per image a band costs the mean of max(its call, the side turn before
    it) and max(its call, the side turn after it); one image per call, or io_overlaps
    False, runs the turns one after the other."""
    c, t = cfg(PUP), DEFAULT_TILING
    # conv_1: loads of 2, 1, 1, 0 window rows; each band's store in the side turn after it;
    # after the last band, conv_2's first band's load (the x2 of its window's 2 rows)
    ld, st = [r * CONV1_ROW for r in (2, 1, 1, 0)], 32 + BURST
    b = band_costs(c, _plan().stage("dec.conv_2"), t)[0]
    next_ld = b.load_words + b.load_bursts * BURST + b.blend_cycles + b.blend_runs * BLEND_FILL
    before = [ld[0]] + [st + x for x in ld[1:]]  # conv_0 stores in its own turn
    after = [st + x for x in ld[1:]] + [st + next_ld]
    paired = sum(max(CALL8, u) + max(CALL8, v) for u, v in zip(before, after, strict=True)) / 2
    serial = sum(ld) + 4 * (CALL8 + st)
    two = _stages(batch=2)["dec.conv_1"].compute_cycles
    assert two == round(paired + 4 * STEPS)
    assert _stages()["dec.conv_1"].compute_cycles == serial + 4 * STEPS
    assert _stages(batch=2, io_overlaps=False)["dec.conv_1"].compute_cycles == serial + 4 * STEPS
    # three images: one pair and the odd one out
    three = _stages(batch=3)["dec.conv_1"].compute_cycles
    assert three == pytest.approx(2 / 3 * paired + 1 / 3 * serial + 4 * STEPS, abs=1)
    assert two < serial


@pytest.mark.parametrize("name", [PUP, DEFAULT_CONFIG])
@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_macs_are_the_models(name, task):
    c, p, d = cfg(name), profile("lean"), our_design(profile("lean"), DEFAULT_TILING)
    e = end_to_end(c, p, d, DEVICES["zcu104"], task=task)
    counted = {s["name"]: s["macs"] for s in e["stages"] if s["kind"] in ("conv", "logits")}
    model = dict(decoder_macs(c, task))
    n = len(model)
    assert counted == {
        (f"dec.conv_{i}" if i < n - 1 else "dec.logits"): model[f"conv_{i}"] for i in range(n)
    }
    assert all(s["macs"] == 0 for s in e["stages"] if s["kind"] in ("norm", "up"))


def test_tiny_decoder_bands_calls_and_ring():
    """The shipped tiny (grid 8 x 16, 129 tokens, 192 wide): 6.41 GMAC per task-image
    (conv_3 4.83 G); conv_3's bands are map rows of 128 pixels, two calls each (chunks
    of 192 and 64 channels); its window (3 rows of 128 x 256) fits one buffer set's
    wide banks."""
    p = _plan(DEFAULT_CONFIG)
    by = {s.name: s for s in p.stages}
    conv3 = by["dec.conv_3"]
    assert conv3.macs == 64 * 128 * 9 * 256 * 256
    assert p.macs == pytest.approx(6.41e9, rel=1e-3)
    assert [(b.rows, b.cols) for b in conv3.bands] == [(1, 128)] * 64
    st = _stages(DEFAULT_CONFIG)
    assert st["dec.conv_3"].calls == 64 * 2 and st["dec.logits"].calls == 64
    assert [len(band_costs(cfg(DEFAULT_CONFIG), conv3, DEFAULT_TILING)[0].calls)] == [2]
    rows, cols = window(conv3, conv3.bands[1])
    assert rows * cols * 256 == 3 * 128 * 256 <= 129 * wide_cols(cfg(DEFAULT_CONFIG))


def test_end_to_end_floor_target_and_chosen():
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    e = end_to_end(c, p, d, DEVICES["zcu104"])
    one, many = e["per_call"]["1"], e["per_call"]["16"]
    for r in (one, many):
        assert r["ms_per_task_image"] == pytest.approx(r["backbone_ms"] + r["decoder_ms"])
    assert sum(s["ms"] for s in e["stages"]) == pytest.approx(one["decoder_ms"])
    for s in e["stages"]:  # one image per call: the parts add up, and two steps a band
        if s["kind"] in ("conv", "logits"):
            parts = s["load_cycles"] + s["call_cycles"] + s["store_cycles"]
            # the fused classifier's bands: no turn of their own (the last convolution's)
            fused = s["kind"] == "logits" and _plan(DEFAULT_CONFIG).fused
            steps = 0 if fused else s["bands"] * STEPS
            assert s["cycles"] == pytest.approx(parts + steps, abs=2) and s["calls"] >= s["bands"]
    # the floor: every MAC over every DSP48E2 of the build at one MAC a cycle
    macs = backbone_macs(c) + sum(s["macs"] for s in e["stages"])
    dsp = int(e["floor"]["rule"].split("(")[2].split(" DSP48E2")[0])
    assert e["floor"]["ms_per_task_image"] == pytest.approx(macs / (dsp * 300e3))
    assert e["floor"]["ms_per_task_image"] < many["ms_per_task_image"]
    t = e["target"]
    assert t["meets"] == (many["ms_per_task_image"] <= 35.0)
    # the issue's acceptance: the default build meets the target as built, and fits
    assert t["meets"] and e["fits"] and e["chosen"]["what"] == AS_BUILT
    assert t["gap_ms"] == pytest.approx(max(0.0, many["ms_per_task_image"] - 35.0))
    # each what-if removes cost; all of them together at least as much as the best one
    built = many["ms_per_task_image"]
    opts = dict(e["options_ms_per_task_image"])
    narrow = next(k for k in opts if "channels wide" in k)
    # the what-ifs: the three, less the fused classifier where the plan fuses it (built)
    n = 3 - decoder_plan(c, e["task"], DEFAULT_TILING).fused
    assert n == 2  # the tiny fuses its classifier
    together = opts.pop(f"the {n} above together")
    assert opts.pop(narrow) < built  # fewer MACs: below the floor of M3ViT's head is fine
    assert len(opts) == n
    assert all(e["floor"]["ms_per_task_image"] < v < built for v in opts.values())
    assert e["floor"]["ms_per_task_image"] < together <= min(opts.values())
    # the chosen build: by its rule over every combination of the what-ifs
    every, ch = dict(e["combinations_ms_per_task_image"]), e["chosen"]
    assert len(every) == 2**n - 1
    every[AS_BUILT] = built
    assert every[ch["what"]] == ch["ms_per_task_image"]
    meeting = {k: v for k, v in every.items() if v <= TARGET_MS}
    assert ch["meets_target"] == bool(meeting) == (ch["ms_per_task_image"] <= TARGET_MS)
    if meeting:
        macs_hw = next(k for k in opts if "idle DSPs" in k)

        def key(k):
            return (macs_hw in k, 0 if k == AS_BUILT else 1 + k.count(" + "), every[k])

        assert key(ch["what"]) == min(key(k) for k in meeting)
    assert ch["new_mac_hardware"] == any("idle DSPs" in o for o in ch["options"])
    assert e["floor"]["device_ms_per_task_image"] < e["floor"]["ms_per_task_image"]
    assert "Next steps" in e["next_step"]
    assert "contracts.decoder" in e["plan"] and "v1" in e["plan"]
    ups = {s["name"]: s for s in e["stages"] if s["kind"] == "up"}
    assert ups["dec.up_3"]["fused_into"] == "dec.conv_3" and ups["dec.up_3"]["cycles"] == 0


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
    """The contract narrows every band until its window fits one buffer set's wide banks:
    the ring takes no BRAM of its own (the tiny, mini-pup); no pup head, no decoder."""
    from edgemoe.host.estimate.resources import lines, operators

    def dec(name):
        c, p = cfg(name), profile("lean")
        ls = lines(c, p, DEFAULT_TILING, operators(c, p, DEFAULT_TILING))
        return [ln for ln in ls if ln.unit == "decoder"]

    for name in (DEFAULT_CONFIG, PUP):
        ring = [ln for ln in dec(name) if ln.what.startswith("ring")]
        assert len(ring) == 1 and ring[0].bram36 == 0 and "wide" in ring[0].what
    assert "up to 864 values" in ring[0].what  # mini-pup: 3 window rows of 9 x 32 padded
    assert dec("m3vit-mini") == []


def test_no_pup_head_no_decoder(tmp_path):
    c, p = cfg("m3vit-mini"), profile("lean")
    assert end_to_end(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"]) is None
    out = tmp_path / "e.json"
    assert main(["estimate", "--config", "m3vit-mini", "--json", str(out)]) == 0
    assert "decoder" not in json.loads(out.read_text())


def test_task_must_have_a_pup_head(capsys):
    with pytest.raises(ConfigError, match="pup"):
        pup_task(cfg("m3vit-mini"), "semseg")
    assert pup_task(cfg(PUP)) == "semseg"
    assert decoder_plan(cfg(PUP), "semseg", DEFAULT_TILING).stages == _plan().stages
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


def test_chosen_says_when_nothing_meets_the_target():
    """The chosen build is not forced: with no combination under the target it is the
    fastest, marked as missing; otherwise no new MAC hardware first, then fewest."""
    from edgemoe.host.estimate.perf import _chosen

    fields = {"a": {}, "b": {}, "macs": {}}
    every = {"a": 50.0, "b": 45.0, "macs": 40.0, "a + b": 39.0, "a + macs": 37.0}
    every |= {"b + macs": 36.0, "a + b + macs": 35.5}
    ch = _chosen(60.0, every, fields, "macs")
    assert (ch["what"], ch["meets_target"], ch["new_mac_hardware"]) == ("a + b + macs", False, True)
    assert "NONE meets" in ch["rule"]
    every |= {"a + b": 34.9, "b + macs": 20.0, "a + macs": 30.0}
    ch = _chosen(60.0, every, fields, "macs")
    assert (ch["what"], ch["meets_target"], ch["new_mac_hardware"]) == ("a + b", True, False)
    every["a + b"] = 35.1  # only builds with the idle DSPs meet: the fewest changes, fastest
    assert _chosen(60.0, every, fields, "macs")["what"] == "b + macs"
    ch = _chosen(34.0, every, fields, "macs")  # the kernel as built meets it: no change
    assert (ch["what"], ch["options"], ch["ms_per_task_image"]) == (AS_BUILT, [], 34.0)


@pytest.mark.parametrize("name", [PUP, DEFAULT_CONFIG])
def test_decoder_ddr_bytes_are_the_kernels(name):
    """The estimate's decoder DDR bytes per stage equal the closed form the C-sim's counters
    are tested against (traffic.decoder_traffic; tests/sim/test_csim.py)."""
    from edgemoe.host.estimate.traffic import decoder_traffic

    c, p = cfg(name), profile("lean")
    d = our_design(p, DEFAULT_TILING)
    for task in c.task_names:
        closed = decoder_traffic(c, DEFAULT_TILING, task, resume=False)
        st = decoder_stages(c, p, d, DEVICES["zcu104"], 300.0, 1, _plan(name, task), Options())
        for s in st:
            weights = _part(closed, s.name, "conv") + _part(closed, s.name, "norm")
            assert (s.weight_bytes, s.read_bytes, s.write_bytes) == (
                weights,
                _part(closed, s.name, "window"),
                _part(closed, s.name, "write"),
            ), s.name


def _part(closed: dict, stage: str, kind: str) -> int:
    return sum(n for (n_s, k, _), n in closed.items() if n_s == stage and k == kind)


def test_fused_classifier_as_built():
    """The tiny's plan fuses the classifier into conv_3's bands: conv_3 stores nothing,
    the classifier loads nothing, and its band copy (64 channels, 8 a cycle) is counted."""
    c, p = cfg(DEFAULT_CONFIG), profile("lean")
    e = end_to_end(c, p, our_design(p, DEFAULT_TILING), DEVICES["zcu104"])
    st = {s["name"]: s for s in e["stages"]}
    assert st["dec.conv_3"]["ddr_write_bytes"] == 0 and st["dec.conv_3"]["store_cycles"] == 0
    logits = st["dec.logits"]
    assert logits["ddr_read_bytes"] == logits["ddr_weight_bytes"]
    copy = 64 * 128 * (256 - 192) // 8  # bands x pixels x groups of the second chunk
    assert copy <= logits["load_cycles"] < copy + 64 * 64
    assert not decoder_plan(cfg("m3vit-mini-pup"), 0, DEFAULT_TILING).fused
