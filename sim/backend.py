"""The golden model and the C-sim as ``edgemoe.backends`` entry points."""

from __future__ import annotations

import time

import numpy as np

from edgemoe.host.contracts.images import to_patches
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import Capabilities, RunOutput, Workload, record_boundaries
from edgemoe.host.export.quantize import stage_to_float

from .csim import CSim, CSimError, CSimRun
from .golden import Golden


class GoldenBackend:
    """Bit-exact integer model of the datapath (numpy)."""

    name = "golden"
    capabilities = Capabilities.datapath(
        "the bit-exact integer model of the datapath, numpy",
        timed="Golden.run on patches, then Golden.decode where the datapath decodes the "
        "task (bit-exact integer model, numpy)",
        heap_traced=True,
    )

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        golden = Golden(wl.quantized)
        patches = to_patches(images, wl.cfg)
        t0 = time.perf_counter()
        res = golden.run(patches, task, record=record)
        raw_stages, saturations = res.stages, dict(res.saturations)
        dec = None
        if wl.cfg.task_spec(task).head.on_datapath:  # the decoder runs on the datapath too
            dec = golden.decode(res.tokens, task, record=record)
            raw_stages = raw_stages | dec.stages
            for k, n in dec.saturations.items():
                saturations[k] = saturations.get(k, 0) + n
        dt = time.perf_counter() - t0
        stages = {k: golden.stage_to_float(k, v) for k, v in raw_stages.items()}
        tokens = wl.profile.act.to_float(res.tokens)
        logits = None if dec is None else golden.logits_to_float(dec.logits)
        return RunOutput(tokens, stages, res.routes, saturations, dt, logits)


class CSimDirectBackend:
    """The ``csim-direct`` backend: the HLS kernel compiled with g++ (C-sim), called directly.

    With ``record``, every layer boundary comes from a run stopped there
    (``debug_stop``), and the routes from the gate-stage logits.
    """

    name = "csim-direct"
    capabilities = Capabilities.datapath(
        "the C-sim library called directly, the committed build's tiling only",
        timed="CSim.run on a prebuilt bundle (the csim-direct backend's own timer)",
        any_tiling=False,
        first_call="C-sim build (g++ compile, or cache hit in build/csim) + bundle pack",
        per_call="C-sim cache lookup + bundle pack + patching, on every call of the backend",
        heap_traced=True,
    )

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        cfg, prof = wl.cfg, wl.profile
        kernel = CSim(cfg, prof, DEFAULT_TILING)
        bundle = wl.bundle
        patches = to_patches(images, cfg)
        tid = cfg.task_id(task)

        def call(stop: int = 0) -> CSimRun:
            run = kernel.run(bundle, patches, tid, debug_stop=stop)
            if run.status != 0:
                raise CSimError(f"kernel returned status {run.status} (debug_stop {stop})")
            return run

        t0 = time.perf_counter()
        full = call()
        dt = time.perf_counter() - t0
        stages: dict[str, np.ndarray] = {}
        routes: list[np.ndarray] = []
        if record:
            stages, routes = record_boundaries(wl, lambda stop: call(stop).values, task=task)
        tokens = prof.act.to_float(full.output.astype(np.int64))
        logits = None
        if full.logits is not None:
            logits = stage_to_float(cfg, prof, "dec.logits", full.logits)
        return RunOutput(tokens, stages, routes, {}, dt, logits)
