"""The Accelerator driver on the virtual board: bit-exact results, registers, control, faults."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.regmap import AP_DONE, AP_IDLE, AP_START, CTRL, kernel_register_map
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.accelerator import (
    Accelerator,
    AcceleratorError,
    KernelTimeout,
)
from edgemoe.host.driver.backends import Workload, get_backend
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.hls_params import debug_boundaries, debug_stop_code
from edgemoe.host.export.quantize import quantize_model, stage_to_float
from edgemoe.sim.csim import CSim
from edgemoe.sim.golden import Golden
from edgemoe.sim.virtual_board import DDR_BASE, PAGE, VirtualBoard, VirtualBuffer
from tests.conftest import cfg, model, profile

MINI = "m3vit-mini"


@functools.cache
def workload(prof: str = "lean") -> Workload:
    return Workload(cfg(MINI), profile(prof), model(MINI, 0))


@functools.cache
def bundle(prof: str = "lean") -> bytes:
    return pack(workload(prof).quantized, DEFAULT_TILING)


def accelerator(prof: str = "lean", **board_kw) -> tuple[Accelerator, VirtualBoard]:
    board = VirtualBoard(cfg(MINI), profile(prof), **board_kw)
    acc = Accelerator(board, cfg(MINI), profile(prof), max_images=2)
    return acc, board


def test_csim_backend_equals_golden_bit_for_bit_at_every_boundary():
    wl = workload()
    images = random_images(wl.cfg, 3, seed=5)  # 3 images, 2 per call: chunking included
    for task in wl.cfg.task_names:
        sim = get_backend("csim").run(wl, images, task, record=True)
        gold = get_backend("golden").run(wl, images, task, record=True)
        assert (sim.tokens == gold.tokens).all()
        assert list(sim.stages) == list(gold.stages)
        for name, ref in gold.stages.items():
            assert (sim.stages[name] == ref).all(), name
        assert len(sim.routes) == len(gold.routes) == len(wl.cfg.moe_blocks)
        for a, b in zip(sim.routes, gold.routes, strict=True):
            assert (a == b).all()


def test_driver_equals_a_direct_csim_call():
    wl = workload()
    images = random_images(wl.cfg, 2, seed=1)
    acc, _ = accelerator()
    acc.load_bundle(bundle())
    res = acc.run(images, "depth")
    direct = CSim(wl.cfg, wl.profile).run(bundle(), to_patches(images, wl.cfg), 1)
    assert direct.status == res.status == 0
    assert res.raw.dtype == np.int32
    assert (res.raw == direct.output).all()
    gold = Golden(wl.quantized).run(to_patches(images, wl.cfg), "depth")
    assert (res.raw == gold.tokens).all()
    assert set(res.times) == {"pack", "flush", "kernel", "invalidate", "unpack"}


def test_debug_stop_through_the_driver_equals_golden_stage():
    wl = workload()
    images = random_images(wl.cfg, 1, seed=2)
    acc, _ = accelerator()
    acc.load_bundle(bundle())
    gold = Golden(wl.quantized).run(to_patches(images, wl.cfg), "semseg", record=True)
    for name in ("embed", "block0.qkv", "block1.gate", "block3.attn"):
        res = acc.run(images, "semseg", debug_stop=debug_stop_code(wl.cfg, name))
        assert res.stage == name
        assert (res.raw == gold.stages[name]).all(), name
        g = Golden(wl.quantized).stage_to_float(name, gold.stages[name])
        assert (stage_to_float(wl.cfg, wl.profile, name, res.raw, wl.quantized.k_bias) == g).all()
    assert debug_boundaries(wl.cfg) == [s for s in gold.stages if not s.endswith(".route")]


def test_registers_programmed_at_regmap_offsets():
    acc, board = accelerator()
    acc.load_bundle(bundle())
    images = random_images(cfg(MINI), 2, seed=3)
    acc.run(images, "depth", debug_stop=debug_stop_code(cfg(MINI), "embed"))
    regs = kernel_register_map()
    writes = board.ip.writes
    want = {
        "bundle": acc.bundle_buf.device_address,
        "images": acc.images_buf.device_address,
        "output": acc.output_buf.device_address,
        "scratch": acc.scratch_buf.device_address,
        "task": 1,
        "num_images": 2,
        "debug_stop": 1,
        "maps": acc.scratch_buf.device_address,  # the scratch buffer again
    }
    for name, value in want.items():
        for i, (_, off) in enumerate(regs[name].parts):
            assert (off, (value >> 32 * i) & 0xFFFFFFFF) in writes, name
    # the start comes last, after every argument
    assert writes[-1] == (CTRL, AP_START)
    assert {o for o, _ in writes[:-1]} == {off for n in want for _, off in regs[n].parts}
    # the core latched exactly those arguments
    assert board.calls[-1].args == want
    # buffers are page aligned in the simulated DDR, above its base
    for buf in (acc.bundle_buf, acc.images_buf, acc.output_buf, acc.scratch_buf):
        assert buf.device_address >= DDR_BASE and buf.device_address % PAGE == 0
    assert acc.images_buf.flushes == 1 and acc.output_buf.invalidates == 1


def test_control_register_behaves_like_ap_ctrl_hs():
    acc, board = accelerator(latency_s=0.15)
    acc.load_bundle(bundle())
    assert board.ip.read(CTRL) == AP_IDLE
    t0 = time.perf_counter()
    acc.run(random_images(cfg(MINI), 1, seed=0), "semseg")
    assert time.perf_counter() - t0 >= 0.15
    reads = board.ip.ctrl_reads
    # idle before the start, busy (ap_idle low) while running, done + idle at the end
    assert reads[0] & AP_IDLE
    assert any(not r & AP_IDLE for r in reads)
    assert reads[-1] & AP_DONE and reads[-1] & AP_IDLE
    # ap_done is clear-on-read
    assert board.ip.read(CTRL) == AP_IDLE
    assert board.ip.read(kernel_register_map().offset("ap_return")) == 0


def test_hung_core_times_out():
    acc, board = accelerator(hang=True)
    acc.load_bundle(bundle())
    t0 = time.perf_counter()
    with pytest.raises(KernelTimeout, match="did not finish within 0.2 s") as e:
        acc.run(random_images(cfg(MINI), 1, seed=0), "semseg", timeout_s=0.2)
    assert isinstance(e.value, TimeoutError) and isinstance(e.value, EdgeMoeError)
    assert 0.2 <= time.perf_counter() - t0 < 2.0
    assert "\n" not in str(e.value)
    # the core is still busy: a second start is refused, not queued
    with pytest.raises(AcceleratorError, match="busy"):
        acc.run(random_images(cfg(MINI), 1, seed=0), "semseg", timeout_s=0.2)


@pytest.mark.parametrize(
    "case, match",
    [
        ("other profile", r"status 3 \(BAD_CONFIG_HASH\)"),
        ("bad task", r"status 4 \(BAD_TASK\)"),
        ("bad magic", r"status 1 \(BAD_MAGIC\)"),
        ("bad debug stop", r"status 7 \(BAD_DEBUG_STOP\)"),
    ],
)
def test_kernel_status_codes_become_one_line_errors(case, match):
    acc, _ = accelerator()
    data = bytearray(bundle())
    task, stop = "semseg", 0
    if case == "other profile":
        data = bytearray(bundle("edge-moe"))
        data[4:8] = bundle()[4:8]  # same version and profile id: only the hash differs
    elif case == "bad task":
        task = 9
    elif case == "bad magic":
        data[0] ^= 0xFF
    elif case == "bad debug stop":
        stop = 10_000
    acc.load_bundle(bytes(data), host_check=False)
    with pytest.raises(AcceleratorError, match=match) as e:
        acc.run(random_images(cfg(MINI), 1, seed=0), task, debug_stop=stop)
    assert "\n" not in str(e.value)


def test_host_check_refuses_a_bundle_of_another_profile():
    acc, _ = accelerator()
    with pytest.raises(EdgeMoeError, match="profile"):
        acc.load_bundle(bundle("edge-moe"))
    with pytest.raises(AcceleratorError, match="no weight bundle"):
        acc.run(random_images(cfg(MINI), 1, seed=0), "semseg")


def test_bad_address_is_an_axi_error_not_a_crash():
    acc, board = accelerator()
    acc.load_bundle(bundle())
    acc.images_buf = VirtualBuffer(acc.images_buf.array, 0x7000_0000)  # outside every buffer
    with pytest.raises(AcceleratorError, match="AXI bus error: gmem_images.*DECERR"):
        acc.run(random_images(cfg(MINI), 1, seed=0), "semseg")
    assert board.ip.read(CTRL) & AP_IDLE  # the board is usable again


def test_maps_at_another_address_than_scratch_is_refused():
    """The decoder's maps are the scratch buffer on a second master: the virtual board
    refuses any other address, as a one-line bus error, without running the kernel."""
    acc, board = accelerator()
    acc.load_bundle(bundle())
    program = acc._program

    def program_maps_elsewhere(*args):
        program(*args)
        acc.regs_write("maps", acc.output_buf.device_address)  # a buffer, but not scratch

    acc._program = program_maps_elsewhere
    with pytest.raises(AcceleratorError, match="AXI bus error: gmem_maps.*not the scratch"):
        acc.run(random_images(cfg(MINI), 1, seed=0), "semseg")
    assert board.calls[-1].ddr_read == {}  # the kernel never ran
    assert board.ip.read(CTRL) & AP_IDLE


def test_pynq_backend_errors_cleanly_off_board():
    try:  # pynq is not a dependency of the host package
        import pynq  # noqa: F401
    except Exception:
        with pytest.raises(EdgeMoeError, match="pynq backend needs a ZCU104 running PYNQ"):
            get_backend("pynq")
    else:
        pytest.skip("pynq is installed here")


def test_quantized_workload_is_what_the_bundle_holds():
    # the csim backend packs the workload's own quantized model
    wl = workload()
    assert pack(quantize_model(wl.state, wl.cfg, wl.profile), DEFAULT_TILING) == bundle()
