"""Execution backends behind one call (FINN's execution levels, DESIGN.md §5).

A backend turns uint8 images of one task into backbone tokens, optionally with
every layer boundary. ``torch`` lives here; the others (``golden`` now, later
``csim``, ``sim``, ``pynq``, ``rtl``) plug in through the ``edgemoe.backends``
entry-point group in ``pyproject.toml``, so ``host`` never imports ``sim``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.quantize import QuantizedModel, quantize_model
from edgemoe.models.config import ModelConfig

ENTRY_POINT_GROUP = "edgemoe.backends"


@dataclass
class Workload:
    """What every backend runs: a config, a profile and one float model.

    The quantized model is derived once, on first use.
    """

    cfg: ModelConfig
    profile: Profile
    model: Any  # edgemoe.models.m3vit.M3ViT (torch is imported lazily); None: from a bundle
    #: A bundle's kernel image when the bundle, not ``model``, is the source of the weights.
    packed: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_bundle(
        cls,
        cfg: ModelConfig,
        profile: Profile,
        kernel_image: bytes,
        host: dict[str, np.ndarray],
        model: Any = None,
    ) -> Workload:
        """A workload whose datapath weights are a bundle's (no float model needed).

        Parameters
        ----------
        cfg, profile
            The bundle's.
        kernel_image : bytes
            Header and payload, for the default tiling (``csim-direct``) or any
            (golden unpacks it; driver backends load it themselves).
        host : dict[str, ndarray]
            The bundle's final norms and heads: :attr:`state` holds only these.
        model : M3ViT, optional
            The float model the bundle was exported from (``torch``, ``--check``).
        """
        wl = cls(cfg, profile, model, bytes(kernel_image))
        wl.__dict__["state"] = dict(host)
        return wl

    @cached_property
    def state(self) -> dict[str, np.ndarray]:
        return {k: v.detach().cpu().numpy() for k, v in self.model.state_dict().items()}

    @cached_property
    def quantized(self) -> QuantizedModel:
        if self.packed is not None:
            from edgemoe.host.export.bundle import unpack_model

            return unpack_model(self.packed, self.cfg, self.profile, self._bundle_tiling())
        return quantize_model(self.state, self.cfg, self.profile)

    def _bundle_tiling(self):
        from edgemoe.host.contracts.tiling import Tiling
        from edgemoe.host.export.bundle import read_header

        h = read_header(self.packed)
        return Tiling(h.lin_in, h.lin_out, h.p)

    @cached_property
    def bundle(self) -> bytes:
        """The weight bundle of the default kernel build (packed once), or the given one."""
        if self.packed is not None:
            return self.packed
        return pack(self.quantized, DEFAULT_TILING)


@dataclass
class RunOutput:
    """Result of one backend run on a batch of images.

    Attributes
    ----------
    tokens : ndarray float64 (B, N, D)
        Backbone output (before the final norm), as float values.
    stages : dict[str, ndarray]
        Float values at every layer boundary (``embed``, ``block{i}.{stage}``).
    routes : list of ndarray bool (B, N, E)
        Chosen experts, per MoE block in order.
    saturations : dict[str, int]
        Values saturated in the datapath, per stage kind (empty for float).
    seconds : float
        Wall time of the run.
    """

    tokens: np.ndarray
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    routes: list[np.ndarray] = field(default_factory=list)
    saturations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


class Backend(Protocol):
    name: str

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        """Run ``images`` (B, H, W, 3) uint8 for ``task``."""
        ...


class TorchBackend:
    """The float reference (PyTorch, CPU)."""

    name = "torch"

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        import torch

        from edgemoe.models.m3vit import normalize

        rec: dict | None = {} if record else None
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = wl.model.backbone(normalize(images, wl.cfg), task, record=rec)
        dt = time.perf_counter() - t0
        stages = {}
        routes = []
        for k, v in (rec or {}).items():
            a = v.numpy()
            stages[k] = a if a.dtype == bool else a.astype(np.float64)
            if k.endswith(".route"):
                routes.append(a)
        return RunOutput(tokens.double().numpy(), stages, routes, {}, dt)


def backend_names() -> list[str]:
    """Names of every installed backend."""
    return sorted({"torch", *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def get_backend(name: str) -> Backend:
    """Instantiate a backend by name (``torch`` or an ``edgemoe.backends`` entry point)."""
    if name == "torch":
        return TorchBackend()
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()()
    raise EdgeMoeError(f"unknown backend {name!r} (known: {', '.join(backend_names())})")
