"""What a call of a task the kernel decodes stores (host/contracts/decoder.py), and how the
host reads it back: layouts, debug-stop names, the driver's unpack on an output region
written by the contract's packer, the Engine using the kernel's logits, and the golden and
torch backends' logits.

The kernel does not decode in these tests: a scripted core writes golden's values where
the contract says the kernel stores them (tokens, then the logits or a stage's map,
chunk-planar via ``pack_map``), so the host side is checked on its own.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.regmap import RegisterMap, kernel_register_map
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.accelerator import Accelerator, stored_layout
from edgemoe.host.driver.backends import RunOutput, Workload, get_backend
from edgemoe.host.export import hls_params as hp
from edgemoe.host.export.quantize import stage_to_float
from edgemoe.models.heads import decoder_front_np, pup_tail_np
from edgemoe.pipeline import Engine
from edgemoe.sim.golden import Golden
from edgemoe.sim.virtual_board import VirtualDDR, VirtualIP
from tests.conftest import cfg, model, profile

PUP = "m3vit-mini-pup"
MINI = "m3vit-mini"
TINY = "m3vit-tiny-128x256"


@functools.cache
def workload(name: str = PUP) -> Workload:
    return Workload(cfg(name), profile("lean"), model(name, 0))


def lanes(t: Tiling) -> int:
    return t.axi_bits // 32


# ---- layouts and names ---------------------------------------------------------------


@pytest.mark.parametrize("name", [PUP, TINY])
def test_a_pup_tasks_calls_store_tokens_then_the_stage(name):
    c, t = cfg(name), DEFAULT_TILING
    n, d = c.num_tokens, c.embed_dim
    plain = (n * d, d)
    tokens_stop = dp.tokens_stop_code(c)
    for task in c.task_names:
        plan = dp.decoder_plan(c, task, t)
        # a whole run: the tokens, then the logits (chunk-planar)
        assert hp.output_layout(c, 0, task) == (dp.output_words(c, task, 0, t), d)
        assert dp.output_words(c, task, 0, t) == dp.tokens_words(c, t) + plan.out_words
        lay = stored_layout(c, 0, task)
        assert lay.stage == "dec.logits" and lay.decoded.shape == plan.out_shape
        # the tokens stop: what a whole run of a task without a decoder stores
        assert hp.output_layout(c, tokens_stop, task) == plain
        lay = stored_layout(c, tokens_stop, task)
        assert (lay.stride, lay.stage, lay.decoded) == (n * d, "tokens", None)
        # every decoder stage's stop: the tokens, then that stage
        for s in plan.stages:
            lay = stored_layout(c, s.code, c.task_id(task))
            assert lay.stride == dp.tokens_words(c, t) + dp.stage_words(c, s, t)
            assert (lay.stage, lay.decoded) == (s.name, s)
        # backbone stops do not decode
        for stop in (1, hp.debug_stop_code(c, f"block{c.depth - 1}.mlp")):
            assert hp.output_layout(c, stop, task) == hp.output_layout(c, stop)
            assert stored_layout(c, stop, task).decoded is None
        # past the last stage: refused by the kernel, the plain layout
        bad = plan.stages[-1].code + 1
        with pytest.raises(ValueError, match="out of range"):
            hp.output_layout(c, bad, task)
        lay = stored_layout(c, bad, task)
        assert (lay.stride, lay.stage, lay.decoded) == (n * d, f"debug_stop {bad}", None)


def test_tasks_without_a_decoder_and_refused_task_ids_keep_the_old_layout():
    c = cfg(MINI)
    for task in (*c.task_names, None, 9):
        assert hp.output_layout(c, 0, task) == (c.num_tokens * c.embed_dim, c.embed_dim)
        assert stored_layout(c, 0, task).stage == "tokens"
        assert stored_layout(c, 0, task).decoded is None
    # a pup config's task id the kernel refuses: no decoder, the plain layout
    p = cfg(PUP)
    assert stored_layout(p, 0, 9).decoded is None
    assert stored_layout(p, 0, 9).stride == p.num_tokens * p.embed_dim
    # the decoder's codes are past every stop of a task without one
    with pytest.raises(ValueError):
        hp.output_layout(c, dp.tokens_stop_code(c), "semseg")


@pytest.mark.parametrize("name", [PUP, TINY])
def test_decoder_stops_are_named_and_round_trip(name):
    c = cfg(name)
    for task in c.task_names:
        names = hp.debug_boundaries(c, task)
        assert names[: len(hp.debug_boundaries(c))] == hp.debug_boundaries(c)
        assert names[len(hp.debug_boundaries(c)) :] == dp.stage_names(c, task)
        for stage in [*names, hp.TOKENS_STAGE]:
            code = hp.debug_stop_code(c, stage, task)
            assert hp.debug_stage_name(c, code, task) == stage
            assert hp.debug_stage_name(c, code, c.task_id(task)) == stage
        assert hp.debug_stop_code(c, hp.TOKENS_STAGE, task) == dp.tokens_stop_code(c)
        assert hp.debug_stop_code(c, "dec.logits", task) == dp.stop_code(c, task, "dec.logits")
    # a decoder stage needs a task that has it
    for stage in ("dec.norm", hp.TOKENS_STAGE):
        with pytest.raises(ValueError, match="pup head"):
            hp.debug_stop_code(c, stage)
    with pytest.raises(ValueError, match="no stage 'dec.conv_9'"):
        hp.debug_stop_code(c, "dec.conv_9", c.task_names[0])
    with pytest.raises(ValueError, match="pup head"):
        hp.debug_stop_code(cfg(MINI), "dec.norm", "semseg")
    with pytest.raises(ValueError, match="no stage"):
        hp.debug_stop_code(c, "blockx.qkv")


def test_the_output_buffer_holds_a_whole_run_of_every_task():
    for name in (MINI, PUP, TINY):
        c, t = cfg(name), DEFAULT_TILING
        want = max(
            [hp.output_layout(c, 0)[0], hp.output_layout(c, 1)[0]]
            + [dp.output_words(c, task, 0, t) for task in c.task_names if dp.stage_names(c, task)]
        )
        assert hp.max_output_words(c, t) == want
        stops = [
            dp.output_words(c, task, s.code, t)
            for task in c.task_names
            for s in dp.decoder_plan(c, task, t).stages
        ]
        assert hp.max_output_words(c, t, decoder_stops=True) == max([want, *stops])


# ---- a region written as the contract says, read back ----------------------------------


def pack_region(c, t, task: str, stop: int, tokens: np.ndarray, dec) -> np.ndarray:
    """One image's output region as the contract lays it out (not the host's unpacker):
    ``tokens`` ``(N, D)`` raw, then the logits (``stop`` 0) or the decoder stage of ``stop``
    from ``dec`` (Golden.decode's stages of this image, recorded)."""
    stride = dp.output_words(c, task, stop, t)
    out = np.zeros(stride, np.int64)
    out[: tokens.size] = tokens.reshape(-1)
    at = dp.tokens_words(c, t)
    names = dp.stage_names(c, task)
    name = "dec.logits" if stop == 0 else names[stop - dp.tokens_stop_code(c) - 1]
    values = dec[name]
    h, w, ch = values.shape
    if name == "dec.norm":  # the grid's tokens as rows, padded to whole bus words
        row = -(-ch // lanes(t)) * lanes(t)
        rows = np.zeros((h * w, row), np.int64)
        rows[:, :ch] = values.reshape(h * w, ch)
        packed = rows.reshape(-1)
    else:
        packed = dp.pack_map(c, values, t)
    out[at : at + packed.size] = packed
    assert at + packed.size == stride
    return out.astype(np.int32)


@functools.cache
def golden_pup(images: int = 3, seed: int = 4):
    wl = workload()
    g = Golden(wl.quantized)
    px = random_images(wl.cfg, images, seed)
    from edgemoe.host.contracts.images import to_patches

    out = {}
    for task in wl.cfg.task_names:
        res = g.run(to_patches(px, wl.cfg), task, record=True)
        out[task] = (res, g.decode(res.tokens, task, record=True))
    return px, out


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_stored_layout_unpacks_what_the_contract_packs(task):
    c, t = cfg(PUP), DEFAULT_TILING
    _, runs = golden_pup()
    res, dec = runs[task]
    b = len(res.tokens)
    for stop in [0] + [s.code for s in dp.decoder_plan(c, task, t).stages]:
        words = np.stack(
            [
                pack_region(
                    c, t, task, stop, res.tokens[i], {k: v[i] for k, v in dec.stages.items()}
                )
                for i in range(b)
            ]
        )
        lay = stored_layout(c, stop, task, t)
        assert words.shape[1] == lay.stride
        raw, values = lay.unpack(c, words)
        assert raw.dtype == np.int32 and (raw == res.tokens).all()
        want = dec.logits if stop == 0 else dec.stages[lay.stage]
        assert values.dtype == np.int64 and values.shape == want.shape
        assert (values == want).all(), lay.stage


def test_stored_layout_unpacks_several_channel_chunks():
    """The tiny's maps are wider than a chunk (chunk-planar planes back to back)."""
    c, t = cfg(TINY), DEFAULT_TILING
    rng = np.random.default_rng(0)
    task = "semseg"
    tokens = rng.integers(-(2**20), 2**20, (c.num_tokens, c.embed_dim))
    for s in dp.decoder_plan(c, task, t).stages:
        if s.kind == dp.UP:
            continue  # as its convolution's, cheaper
        values = rng.integers(-(2**15), 2**15, s.shape)
        words = pack_region(c, t, task, s.code, tokens, {s.name: values})[None]
        raw, got = stored_layout(c, s.code, task, t).unpack(c, words)
        assert (raw[0] == tokens).all() and (got[0] == values).all(), s.name
    assert len(dp.chunks(c, dp.decoder_plan(c, task, t).stage("dec.conv_0").shape[2], t)) > 1


class ScriptedBoard:
    """A board whose core runs golden on the images it reads and writes what the contract
    says the kernel stores (:func:`pack_region`; backbone stops as the kernel does today):
    the driver is exercised end to end without a kernel that decodes."""

    def __init__(self, c, wl: Workload, t: Tiling = DEFAULT_TILING):
        self.cfg, self.t = c, t
        self.golden = Golden(wl.quantized)
        self.regs: RegisterMap = kernel_register_map()
        self.ddr = VirtualDDR()
        self.ip = VirtualIP(self)
        self.calls: list[dict[str, int]] = []

    def allocate(self, nbytes: int):
        return self.ddr.allocate(nbytes)

    def bus_errors(self) -> list[str]:
        return []

    def _start(self, regs: dict[int, int]) -> None:
        a = {
            arg.name: sum(regs.get(off, 0) << (32 * i) for i, (_, off) in enumerate(reg.parts))
            for arg in ARGS
            for reg in [self.regs[arg.name]]
        }
        self.calls.append(a)
        self.ip._core_accepts()
        c, t = self.cfg, self.t
        n, stop, task = a["num_images"], a["debug_stop"], c.task_names[a["task"]]
        px = self.ddr.resolve(a["images"], n * c.num_patches * c.patch_dim, "gmem_images")
        res = self.golden.run(px.reshape(n, c.num_patches, c.patch_dim), task, record=True)
        if dp.decodes(c, task, stop):
            dec = self.golden.decode(res.tokens, task, record=True)
            stride = dp.output_words(c, task, stop, t)
            rows = [
                pack_region(
                    c, t, task, stop, res.tokens[i], {k: v[i] for k, v in dec.stages.items()}
                )
                for i in range(n)
            ]
        elif stop in (0, dp.tokens_stop_code(c)):
            stride = c.num_tokens * c.embed_dim
            rows = [res.tokens[i].reshape(-1) for i in range(n)]
        else:  # a backbone stage, its rows at the widest stage's stride
            raw = res.stages[hp.debug_stage_name(c, stop)]
            stride = c.num_tokens * max(3 * c.embed_dim, c.num_experts)
            rows = [raw[i].reshape(-1) for i in range(n)]
        out = self.ddr.resolve(a["output"], n * stride * 4, "gmem_output").view(np.int32)
        for i, r in enumerate(rows):
            out[i * stride : i * stride + r.size] = r
        self.ip._core_finishes(0)


def test_driver_reads_tokens_and_logits_of_a_decoding_call():
    wl, t = workload(), DEFAULT_TILING
    c = wl.cfg
    px, runs = golden_pup()
    board = ScriptedBoard(c, wl)
    acc = Accelerator(board, c, wl.profile, t, max_images=2)  # 3 images: two calls
    acc.load_bundle(wl.bundle)
    whole = acc.output_buf.array.size
    assert whole == 2 * 4 * hp.max_output_words(c, t)
    for task in c.task_names:
        res_g, dec = runs[task]
        res = acc.run(px, task)
        assert [k["num_images"] for k in board.calls[-2:]] == [2, 1]
        assert res.stage == "dec.logits" and res.raw.dtype == np.int32
        assert (res.raw == res_g.tokens).all()
        assert res.logits.shape == dec.logits.shape and (res.logits == dec.logits).all()
        assert (
            acc.logits_to_float(res.logits) == Golden(wl.quantized).logits_to_float(dec.logits)
        ).all()
        # the tokens stop: the tokens alone, no decoder
        res = acc.run(px, task, hp.debug_stop_code(c, hp.TOKENS_STAGE, task))
        assert (res.stage, res.decoded, res.logits) == ("tokens", None, None)
        assert (res.raw == res_g.tokens).all()
    # a decoder stage's stop grows the buffer to its maps (once), and reads the stage
    task = "semseg"
    res_g, dec = runs[task]
    for name in dp.stage_names(c, task):
        res = acc.run(px, task, hp.debug_stop_code(c, name, task))
        assert res.stage == name and (res.raw == res_g.tokens).all()
        assert (res.logits is None) == (name != "dec.logits")
        assert (res.values == dec.stages[name]).all(), name
    assert acc.output_buf.array.size == 2 * 4 * hp.max_output_words(c, t, decoder_stops=True)
    assert acc.output_buf.array.size > whole


def test_engine_finishes_the_kernels_logits_and_records_its_decoder():
    wl = workload()
    c = wl.cfg
    px, _ = golden_pup()
    eng = Engine(wl, DEFAULT_TILING, None, board=ScriptedBoard(c, wl), max_images=2)
    gold = get_backend("golden").run(wl, px, "depth", record=True)
    call = eng.call(px, "depth", record=True)
    assert call.logits is not None and (call.logits == gold.logits).all()
    spec = c.task_spec("depth").head
    assert (call.values == pup_tail_np(gold.logits, spec, c)).all()
    assert (call.tokens == gold.tokens).all()
    # the driver records the decoder's stages from its stops, channels first, as golden
    assert list(call.stages) == list(gold.stages)
    for name, ref in gold.stages.items():
        assert (call.stages[name] == ref).all(), name
    assert call.stages["dec.norm"].shape[1] == c.embed_dim


# ---- the backends' logits -------------------------------------------------------------


def test_golden_backend_returns_golden_decode_logits():
    wl = workload()
    px, runs = golden_pup()
    g = Golden(wl.quantized)
    for task in wl.cfg.task_names:
        res, dec = runs[task]
        out = get_backend("golden").run(wl, px, task, record=True)
        assert (out.logits == g.logits_to_float(dec.logits)).all()
        assert out.logits.shape[1] == wl.cfg.task_channels(task)  # channels first
        for name in dp.stage_names(wl.cfg, task):
            want = stage_to_float(wl.cfg, wl.profile, name, dec.stages[name], wl.quantized.k_bias)
            assert (out.stages[name] == want).all(), name
        for k, v in dec.saturations.items():
            assert out.saturations[k] >= v
    plain = workload(MINI)
    out = get_backend("golden").run(plain, random_images(plain.cfg, 1, 0), "semseg")
    assert out.logits is None


def test_torch_backend_returns_the_float_decoders_logits():
    wl = workload()
    px, _ = golden_pup(1)
    out = get_backend("torch").run(wl, px, "semseg", record=True)
    rec: dict = {}
    want = decoder_front_np(out.tokens, wl.state, "semseg", wl.cfg, record=rec)
    assert out.logits is not None and (out.logits == want).all()
    assert set(rec) <= set(out.stages)
    plain = workload(MINI)
    assert get_backend("torch").run(plain, random_images(plain.cfg, 1, 0), "depth").logits is None


def test_verify_names_the_logits_when_only_they_differ():
    from edgemoe.host.app.verify import _compare_pair, first_difference, same_logits

    wl = workload()
    px, _ = golden_pup(1)
    a = get_backend("golden").run(wl, px, "semseg", record=True)
    b = RunOutput(a.tokens, dict(a.stages), a.routes, a.saturations, 0.0, a.logits.copy())
    assert same_logits(a, b) and first_difference(a, b) is None
    b.logits[0, 0, 0, 0] += 1.0
    assert not same_logits(a, b) and first_difference(a, b) == "dec.logits"
    entry = _compare_pair("golden", "csim", {"golden": a, "csim": b}, True, {})
    assert entry["bit_exact"] is False and entry["first_difference"] == "dec.logits"
    assert entry["within_budget"] is False
    b.logits = None  # one decoded, the other did not
    assert not same_logits(a, b)
