"""The golden model and the C-sim as ``edgemoe.backends`` entry points."""

from __future__ import annotations

import time

import numpy as np

from edgemoe.host.contracts.images import to_patches
from edgemoe.host.contracts.routing import topk_mask
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.driver.backends import RunOutput, Workload
from edgemoe.host.export.hls_params import debug_boundaries, debug_stop_code
from edgemoe.host.export.quantize import stage_to_float

from .csim import CSim, CSimError
from .golden import Golden


class GoldenBackend:
    """Bit-exact integer model of the datapath (numpy)."""

    name = "golden"

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        golden = Golden(wl.quantized)
        patches = to_patches(images, wl.cfg)
        t0 = time.perf_counter()
        res = golden.run(patches, task, record=record)
        dt = time.perf_counter() - t0
        stages = {k: golden.stage_to_float(k, v) for k, v in res.stages.items()}
        tokens = wl.profile.act.to_float(res.tokens)
        return RunOutput(tokens, stages, res.routes, res.saturations, dt)


class CSimBackend:
    """The HLS kernel compiled with g++ (C-sim), called directly.

    With ``record``, every layer boundary comes from a run stopped there
    (``debug_stop``), and the routes from the gate-stage logits.
    """

    name = "csim-direct"

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        cfg, prof = wl.cfg, wl.profile
        kernel = CSim(cfg, prof, DEFAULT_TILING)
        bundle = wl.bundle
        patches = to_patches(images, cfg)
        tid = cfg.task_id(task)
        t0 = time.perf_counter()
        full = kernel.run(bundle, patches, tid)
        dt = time.perf_counter() - t0
        if full.status != 0:
            raise CSimError(f"kernel returned status {full.status}")
        stages: dict[str, np.ndarray] = {}
        routes = []
        if record:
            for name in debug_boundaries(cfg):
                r = kernel.run(bundle, patches, tid, debug_stop=debug_stop_code(cfg, name))
                stages[name] = stage_to_float(
                    cfg, prof, name, r.output.astype(np.int64), wl.quantized.k_bias
                )
                if name.endswith(".gate"):
                    mask = topk_mask(r.output.astype(np.int64), cfg.top_k)
                    stages[name.replace(".gate", ".route")] = mask
                    routes.append(mask)
        return RunOutput(prof.act.to_float(full.output.astype(np.int64)), stages, routes, {}, dt)
