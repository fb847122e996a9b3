"""Golden vs the real board (marker ``board``): runs on a ZCU104 running PYNQ 3.x.

Needs ``pynq`` importable and the overlay ``edgemoe.bit`` (+ ``edgemoe.hwh``) at
``EDGEMOE_BITFILE``, built for the committed parameter header (the default config,
profile ``lean``) unless ``EDGEMOE_BOARD_CONFIG`` / ``EDGEMOE_BOARD_PROFILE`` say otherwise.
See scripts/board/README.md.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edgemoe.host.contracts.images import random_images, to_patches
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.quantize import quantize_model
from edgemoe.models import DEFAULT_CONFIG
from edgemoe.sim.golden import Golden
from tests.conftest import cfg, model, profile

pytestmark = pytest.mark.board


def _bitfile() -> Path:
    if importlib.util.find_spec("pynq") is None:
        pytest.skip("no board: pynq is not installed (run this on a ZCU104 with PYNQ 3.x)")
    bit = os.environ.get("EDGEMOE_BITFILE")
    if not bit or not Path(bit).exists():
        pytest.skip("no overlay: set EDGEMOE_BITFILE to edgemoe.bit (edgemoe.hwh beside it)")
    return Path(bit)


@pytest.mark.parametrize("task", ["semseg", "depth"])
def test_board_equals_golden(task):
    bit = _bitfile()
    from edgemoe.host.driver.accelerator import Accelerator  # noqa: PLC0415
    from edgemoe.host.driver.pynq_board import PynqBoard  # noqa: PLC0415

    c = cfg(os.environ.get("EDGEMOE_BOARD_CONFIG", DEFAULT_CONFIG))
    p = profile(os.environ.get("EDGEMOE_BOARD_PROFILE", "lean"))
    state = {k: v.detach().numpy() for k, v in model(c.name, 0).state_dict().items()}
    qm = quantize_model(state, c, p)
    images = random_images(c, 2, 0)
    acc = Accelerator(PynqBoard(bit), c, p, DEFAULT_TILING)
    acc.load_bundle(pack(qm, DEFAULT_TILING))
    got = acc.run(images, task)
    want = Golden(qm).run(to_patches(images, c), task).tokens
    assert got.status == 0
    assert np.array_equal(got.raw, want)
