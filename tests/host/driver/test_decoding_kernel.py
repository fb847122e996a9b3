"""The kernel's task decoder (C-sim) read through every host path: ``CSimRun.logits`` and
``decoded``, the driver on the virtual board, the ``csim`` and ``csim-direct`` backends and
``verify``, each bit-exact with golden's ``Golden.decode`` (Contract A). The kernel itself,
stage by stage, is tests/sim/test_csim_decoder.py's."""

from __future__ import annotations

import functools
import json

import numpy as np

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.accelerator import Accelerator
from edgemoe.host.driver.backends import Workload, get_backend
from edgemoe.host.export import hls_params as hp
from edgemoe.sim.csim import CSim
from edgemoe.sim.golden import Golden
from edgemoe.sim.virtual_board import VirtualBoard
from tests.conftest import cfg, model, profile

PUP = "m3vit-mini-pup"


@functools.cache
def workload(name: str, pname: str = "lean") -> Workload:
    return Workload(cfg(name), profile(pname), model(name, 0))


@functools.cache
def kernel(name: str, pname: str = "lean") -> CSim:
    return CSim(cfg(name), profile(pname))


def golden(name: str, pname: str, task: str, images: int, seed: int = 3):
    wl = workload(name, pname)
    patches = to_patches(random_images(wl.cfg, images, seed), wl.cfg)
    g = Golden(wl.quantized)
    res = g.run(patches, task)
    return wl, patches, res, g.decode(res.tokens, task, record=True)


def test_csim_run_returns_the_logits_and_each_decoder_stage():
    wl, patches, res, dec = golden(PUP, "lean", "depth", 2)
    c, tid = wl.cfg, wl.cfg.task_id("depth")
    r = kernel(PUP).run(wl.bundle, patches, tid)
    assert r.status == 0 and r.stage == "dec.logits"
    assert r.buffer.shape[1] == dp.output_words(c, "depth", 0, DEFAULT_TILING)
    assert np.array_equal(r.output, res.tokens)
    assert r.logits.dtype == np.int64 and np.array_equal(r.logits, dec.logits)
    for name in dp.stage_names(c, "depth"):
        r = kernel(PUP).run(wl.bundle, patches, tid, hp.debug_stop_code(c, name, "depth"))
        assert r.status == 0 and r.stage == name
        assert (r.logits is None) == (name != "dec.logits")
        assert np.array_equal(r.values, dec.stages[name]), f"first difference at {name}"
    r = kernel(PUP).run(wl.bundle, patches, tid, hp.debug_stop_code(c, hp.TOKENS_STAGE, "depth"))
    assert r.status == 0 and (r.stage, r.decoded) == ("tokens", None)
    assert np.array_equal(r.values, res.tokens)


def test_driver_on_the_virtual_board_reads_the_kernels_logits():
    wl, _, _, _ = golden(PUP, "lean", "semseg", 1)
    c = wl.cfg
    images = random_images(c, 3, 7)
    acc = Accelerator(VirtualBoard(c, wl.profile), c, wl.profile, max_images=2)
    acc.load_bundle(wl.bundle)
    g = Golden(wl.quantized)
    for task in c.task_names:
        want = g.run(to_patches(images, c), task)
        dec = g.decode(want.tokens, task)
        res = acc.run(images, task)
        assert (res.raw == want.tokens).all() and (res.logits == dec.logits).all()


def test_csim_backend_equals_golden_at_every_boundary_and_the_logits():
    wl = workload(PUP)
    images = random_images(wl.cfg, 2, seed=5)
    for task in wl.cfg.task_names:
        sim = get_backend("csim").run(wl, images, task, record=True)
        gold = get_backend("golden").run(wl, images, task, record=True)
        assert (sim.tokens == gold.tokens).all() and (sim.logits == gold.logits).all()
        assert list(sim.stages) == list(gold.stages)
        for name, ref in gold.stages.items():
            assert (sim.stages[name] == ref).all(), name
        direct = get_backend("csim-direct").run(wl, images, task)
        assert (direct.logits == gold.logits).all()


def test_verify_golden_vs_csim_compares_the_logits(tmp_path, capsys):
    from edgemoe.host.app.cli import main

    path = tmp_path / "v.json"
    argv = ["verify", "--config", PUP, "--random", "--backends", "golden,csim"]
    code = main([*argv, "--json", str(path)])
    assert code == 0, capsys.readouterr().out
    pair = json.loads(path.read_text())["pairs"]["golden-csim"]
    assert pair["bit_exact"] is True and pair["first_difference"] is None
