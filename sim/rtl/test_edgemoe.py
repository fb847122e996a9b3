"""cocotb bench of the kernel top: the host's own bundle and register map, real AXI.

One bench for two devices under test (``edgemoe.sim.rtl.runner``): the transaction-
level shell (CI) and the Verilog Vitis HLS exports (marker ``rtl``). An
``AxiLiteMaster`` drives ``s_axi_control`` at the offsets of
:func:`edgemoe.host.contracts.regmap.kernel_register_map`; one ``AxiRam`` per m_axi bundle
holds that bundle's buffer at a 64-bit address above 4 GB (``maps``'s memory is
``scratch``'s, at the same address: one buffer on two masters). Every run packs the
bundle with :func:`edgemoe.host.export.bundle.pack`, starts the kernel, waits for the
interrupt (ap_done), and compares the output buffer with golden bit for bit.

Settings (environment, set by the runner): ``EDGEMOE_BENCH_CONFIG``,
``EDGEMOE_BENCH_PROFILE``, ``EDGEMOE_BENCH_REPORT`` (JSON file for the AXI
transaction counts).
"""

from __future__ import annotations

import functools
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from edgemoe.host.contracts import decoder as dp
from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.profile import load_profile
from edgemoe.host.contracts.regmap import (
    AP_DONE,
    AP_IDLE,
    AP_START,
    CTRL,
    GIE,
    IER,
    ISR,
    kernel_register_map,
)
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.hls_params import STATUS, debug_stop_code, output_layout
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models.config import load_config
from edgemoe.models.m3vit import random_model
from edgemoe.sim.golden import Golden

CONFIG = os.environ.get("EDGEMOE_BENCH_CONFIG", "m3vit-mini")
PROFILE = os.environ.get("EDGEMOE_BENCH_PROFILE", "lean")
REPORT = os.environ.get("EDGEMOE_BENCH_REPORT")
CLOCK_NS = 10
TIMEOUT_MS = 50
REGS = kernel_register_map()
POINTERS = [a for a in ARGS if a.kind == "ptr"]
#: Each buffer at its own address above 4 GB, so both address words are exercised; the
#: decoder's maps are the scratch buffer again (edgemoe.host.contracts.kernel).
BASE = {a.name: 0x8_0000_0000 + i * 0x1000_0000 for i, a in enumerate(POINTERS)}
BASE["maps"] = BASE["scratch"]
#: A master whose memory is another's (its buffer at the same address).
SHARES = {"maps": "scratch"}
#: Bytes each memory model spans (sparse): 64 GB holds every base above.
RAM_BYTES = 1 << 36
#: Bytes the output buffer is pre-filled with: a byte the kernel must not write keeps it.
SENTINEL = 0xA5


@functools.cache
def quantized(config: str, profile: str, seed: int = 0):
    cfg, prof = load_config(config), load_profile(profile)
    state = {k: v.detach().numpy() for k, v in random_model(cfg, seed).state_dict().items()}
    return quantize_model(state, cfg, prof)


@functools.cache
def bundle_of(config: str, profile: str) -> bytes:
    return pack(quantized(config, profile), DEFAULT_TILING)


@dataclass
class Traffic:
    """AXI transactions seen by one memory: bursts and beats, read and write."""

    read_bursts: int = 0
    read_beats: int = 0
    write_bursts: int = 0
    write_beats: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class Run:
    status: int
    output: np.ndarray  # int32 (num_images, words per image)
    traffic: dict[str, Traffic] = field(default_factory=dict)
    cycles: int = 0


def axi_bus(dut, prefix: str) -> AxiBus:
    """The AXI4 bus of one m_axi port.

    Vitis HLS declares AxLOCK two bits wide; cocotbext-axi expects one and asserts
    on the width. The memory model ignores lock, so those two signals are left out.
    """
    bus = AxiBus.from_prefix(dut, prefix)
    for ch, sig in ((bus.write.aw, "awlock"), (bus.read.ar, "arlock")):
        if sig in ch._signals and len(ch._signals[sig]) != 1:
            del ch._signals[sig]
            delattr(ch, sig)
    return bus


def random_pauses(seed: int, p: float):
    """Pause generator for a cocotbext-axi channel: pause a cycle with probability p."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < p


class Bench:
    """The kernel's surroundings: clock, reset, host control port, one memory per bundle
    (``maps`` and ``scratch`` share one)."""

    def __init__(self, dut):
        self.dut = dut
        self.clock = Clock(dut.ap_clk, CLOCK_NS, unit="ns")
        self.clock.start()
        self.ctrl = AxiLiteMaster(
            AxiLiteBus.from_prefix(dut, "s_axi_control"),
            dut.ap_clk,
            dut.ap_rst_n,
            reset_active_level=False,
        )
        self.ram: dict[str, AxiRam] = {}
        self.traffic: dict[str, Traffic] = {}
        for a in POINTERS:
            shared = self.ram[SHARES[a.name]].mem if a.name in SHARES else None
            ram = AxiRam(
                axi_bus(dut, f"m_axi_{a.bundle}"),
                dut.ap_clk,
                dut.ap_rst_n,
                reset_active_level=False,
                size=RAM_BYTES,
                mem=shared,
            )
            ram.read_if.log.setLevel("WARNING")
            ram.write_if.log.setLevel("WARNING")
            self.ram[a.name] = ram
            self.traffic[a.bundle] = Traffic()
            self._count(ram, self.traffic[a.bundle])

    @staticmethod
    def _count(ram: AxiRam, t: Traffic) -> None:
        """Count bursts (and their beats) as the memory accepts each address."""
        ar_recv, aw_recv = ram.read_if.ar_channel.recv, ram.write_if.aw_channel.recv

        async def ar():
            x = await ar_recv()
            t.read_bursts += 1
            t.read_beats += int(x.arlen) + 1
            return x

        async def aw():
            x = await aw_recv()
            t.write_bursts += 1
            t.write_beats += int(x.awlen) + 1
            return x

        ram.read_if.ar_channel.recv = ar
        ram.write_if.aw_channel.recv = aw

    async def reset(self) -> None:
        self.dut.ap_rst_n.value = 0
        await ClockCycles(self.dut.ap_clk, 8)
        self.dut.ap_rst_n.value = 1
        await ClockCycles(self.dut.ap_clk, 2)

    def back_pressure(self, p: float, seed: int = 1) -> None:
        """Random ready/valid gaps on every channel of every memory."""
        for i, ram in enumerate(self.ram.values()):
            chans = [ram.read_if.ar_channel, ram.read_if.r_channel]
            chans += [ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel]
            for j, ch in enumerate(chans):
                ch.set_pause_generator(random_pauses(seed * 100 + i * 10 + j, p))

    async def write_arg(self, name: str, value: int) -> None:
        for i, (_, off) in enumerate(REGS[name].parts):
            await self.ctrl.write_dword(off, (value >> (32 * i)) & 0xFFFFFFFF)

    async def read(self, offset: int) -> int:
        return await self.ctrl.read_dword(offset)

    async def run(
        self,
        bundle: bytes,
        patches: np.ndarray,
        task: int,
        debug_stop: int = 0,
        num_images: int | None = None,
    ) -> Run:
        """One kernel call, driven the way the PYNQ driver drives it."""
        cfg = load_config(CONFIG)
        n = len(patches) if num_images is None else num_images
        stride, _ = output_layout(cfg, debug_stop, task)  # a decoding call: tokens, stage
        out_bytes = len(patches) * stride * 4
        self.ram["bundle"].write(BASE["bundle"], bundle)
        self.ram["images"].write(BASE["images"], np.ascontiguousarray(patches).tobytes())
        self.ram["output"].write(BASE["output"], bytes([SENTINEL]) * out_bytes)
        for t in self.traffic.values():
            t.__init__()
        for a in POINTERS:
            await self.write_arg(a.name, BASE[a.name])
        await self.write_arg("task", task)
        await self.write_arg("num_images", n)
        await self.write_arg("debug_stop", debug_stop)
        await self.ctrl.write_dword(GIE, 1)
        await self.ctrl.write_dword(IER, 1)  # interrupt on ap_done
        start = cocotb.utils.get_sim_time("ns")
        await self.ctrl.write_dword(CTRL, AP_START)
        if not int(self.dut.interrupt.value):
            await with_timeout(RisingEdge(self.dut.interrupt), TIMEOUT_MS, "ms")
        cycles = int((cocotb.utils.get_sim_time("ns") - start) // CLOCK_NS)
        ctrl = await self.read(CTRL)
        assert ctrl & AP_DONE and ctrl & AP_IDLE, f"CTRL=0x{ctrl:x} after the interrupt"
        assert not (await self.read(CTRL)) & AP_DONE, "ap_done is clear-on-read"
        assert await self.read(ISR) == 1
        await self.ctrl.write_dword(ISR, 1)  # toggle-on-write clears it
        await ClockCycles(self.dut.ap_clk, 2)
        assert not int(self.dut.interrupt.value), "interrupt stays high after clearing ISR"
        status = await self.read(REGS.offset("ap_return"))
        raw = self.ram["output"].read(BASE["output"], out_bytes)
        out = np.frombuffer(raw, dtype="<i4").reshape(len(patches), stride).copy()
        traffic = {k: Traffic(**v.as_dict()) for k, v in self.traffic.items()}
        return Run(status, out, traffic, cycles)


def record(name: str, run: Run) -> None:
    """Print the AXI transactions per bundle and add them to the JSON report."""
    cocotb.log.info("%s: status %d, %d cycles", name, run.status, run.cycles)
    for bundle, t in run.traffic.items():
        cocotb.log.info(
            "  %-13s read %5d bursts %7d beats   write %5d bursts %7d beats",
            bundle,
            t.read_bursts,
            t.read_beats,
            t.write_bursts,
            t.write_beats,
        )
    if REPORT:
        path = Path(REPORT)
        data = json.loads(path.read_text()) if path.exists() else {}
        data[name] = {
            "status": run.status,
            "cycles": run.cycles,
            "axi": {k: v.as_dict() for k, v in run.traffic.items()},
        }
        path.write_text(json.dumps(data, indent=2))


def inputs(images: int, seed: int):
    cfg = load_config(CONFIG)
    qm = quantized(CONFIG, PROFILE)
    patches = to_patches(random_images(cfg, images, seed), cfg)
    return cfg, qm, patches


def tokens(run: Run, cfg, width: int) -> np.ndarray:
    n = cfg.num_tokens * width
    return run.output[:, :n].reshape(len(run.output), cfg.num_tokens, width)


async def run_bit_exact(bench, name: str, images: int, seed: int, task: str) -> None:
    """Run seeded images through the DUT; the output must equal golden bit for bit."""
    cfg, qm, patches = inputs(images, seed)
    run = await bench.run(bundle_of(CONFIG, PROFILE), patches, cfg.task_id(task))
    record(name, run)
    assert run.status == STATUS["OK"]
    want = Golden(qm).run(patches, task).tokens
    assert np.array_equal(tokens(run, cfg, cfg.embed_dim), want)


@cocotb.test()
async def one_image_bit_exact(dut):
    """One image, whole backbone: output == golden, bit for bit."""
    bench = Bench(dut)
    await bench.reset()
    await run_bit_exact(bench, "one_image", images=1, seed=0, task="semseg")


@cocotb.test()
async def back_pressure_two_images(dut):
    """Two images with random ready/valid gaps on every memory channel."""
    bench = Bench(dut)
    bench.back_pressure(0.4, seed=7)
    await bench.reset()
    await run_bit_exact(bench, "back_pressure_two_images", images=2, seed=3, task="depth")


@cocotb.test()
async def mismatched_bundle_status(dut):
    """A bundle of another profile: BAD_CONFIG_HASH read back over AXI-Lite, nothing written."""
    bench = Bench(dut)
    await bench.reset()
    other = next(p for p in ("edge-moe", "lean") if p != PROFILE)
    cfg, _, patches = inputs(1, 0)
    run = await bench.run(bundle_of(CONFIG, other), patches, cfg.task_id("semseg"))
    record("mismatched_bundle", run)
    assert run.status == STATUS["BAD_CONFIG_HASH"]
    assert (run.output.view(np.uint8) == SENTINEL).all(), "output written on a bad status"
    assert all(t.write_bursts == 0 for t in run.traffic.values())


@cocotb.test()
async def debug_stop_writes_only_the_stage(dut):
    """A debug stop at a narrow stage: the stage == golden, the rest of each slot untouched."""
    bench = Bench(dut)
    await bench.reset()
    cfg, qm, patches = inputs(2, 5)
    stage = f"block{cfg.moe_blocks[0]}.gate"
    run = await bench.run(
        bundle_of(CONFIG, PROFILE), patches, cfg.task_id("semseg"), debug_stop_code(cfg, stage)
    )
    record("debug_stop", run)
    assert run.status == STATUS["OK"]
    want = Golden(qm).run(patches, "semseg", record=True).stages[stage]
    assert np.array_equal(tokens(run, cfg, want.shape[-1]), want)
    rest = run.output[:, cfg.num_tokens * want.shape[-1] :]
    assert (rest.view(np.uint8) == SENTINEL).all(), "bytes outside the stage were written"


#: Whether the bench's config has a task the kernel decodes (M3ViT's pup head).
DECODES = any(dp.decodes(load_config(CONFIG), t, 0) for t in load_config(CONFIG).task_names)


@cocotb.test(skip=not DECODES)
async def decoder_call_bit_exact(dut):
    """Two images of a task with M3ViT's decoder (expert-major, the decoder after the last
    block): the tokens and the logits == golden, bit for bit; then a debug stop after the
    last x2 (the largest stage) on one image."""
    bench = Bench(dut)
    await bench.reset()
    cfg, qm, patches = inputs(2, 11)
    task = next(t for t in cfg.task_names if dp.decodes(cfg, t, 0))
    g = Golden(qm)
    want_tokens = g.run(patches, task).tokens
    dec = g.decode(want_tokens, task, record=True)
    run = await bench.run(bundle_of(CONFIG, PROFILE), patches, cfg.task_id(task))
    record("decoder_call", run)
    assert run.status == STATUS["OK"]
    assert np.array_equal(tokens(run, cfg, cfg.embed_dim), want_tokens)
    plan = dp.decoder_plan(cfg, task, DEFAULT_TILING)
    at = dp.tokens_words(cfg, DEFAULT_TILING)
    got = np.stack([dp.unpack_map(cfg, o[at:], plan.out_shape, DEFAULT_TILING) for o in run.output])
    assert np.array_equal(got, dec.logits)
    stage = [s for s in plan.stages if s.kind == dp.UP][-1]
    run = await bench.run(bundle_of(CONFIG, PROFILE), patches[:1], cfg.task_id(task), stage.code)
    record("decoder_debug_stop", run)
    assert run.status == STATUS["OK"]
    got = dp.unpack_map(cfg, run.output[0, at:], stage.shape, DEFAULT_TILING)
    assert np.array_equal(got, dec.stages[stage.name][0])
