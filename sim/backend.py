"""The golden model as an ``edgemoe.backends`` entry point."""

from __future__ import annotations

import time

import numpy as np

from edgemoe.host.backends import RunOutput, Workload
from edgemoe.host.images import to_patches

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
