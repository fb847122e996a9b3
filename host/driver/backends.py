"""Execution backends behind one call (FINN's execution levels, DESIGN.md §5).

A backend turns uint8 images of one task into backbone tokens, optionally with
every layer boundary. ``torch`` lives here; the others (``golden``, ``csim-direct``,
``csim``, ``pynq``, later ``rtl``) plug in through the ``edgemoe.backends``
entry-point group in ``pyproject.toml``, so ``host`` never imports ``sim``.

Each backend class declares its :class:`Capabilities`; the command line, ``verify``,
``bench`` and ``run`` read those (:func:`backend_capabilities`), never a backend's name.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.routing import topk_mask
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export.bundle import pack
from edgemoe.host.export.hls_params import debug_boundaries, debug_stop_code
from edgemoe.host.export.quantize import QuantizedModel, quantize_model, stage_to_float
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
    #: Tasks whose head the checkpoint lacked (left at their initial values), in config
    #: order: the checkpoint loader's, or a bundle's record of it.
    untrained_heads: tuple[str, ...] = ()

    @classmethod
    def from_bundle(
        cls,
        cfg: ModelConfig,
        profile: Profile,
        kernel_image: bytes,
        host: dict[str, np.ndarray],
        model: Any = None,
        untrained_heads: tuple[str, ...] = (),
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
        untrained_heads : tuple of str
            The tasks whose head the bundle records as untrained.
        """
        wl = cls(cfg, profile, model, bytes(kernel_image), tuple(untrained_heads))
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

        return Tiling.from_word(read_header(self.packed).tiling)

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
    logits : ndarray float64 (B, C, h, w) or None
        The task decoder's logits, where the backend ran it (a head
        :attr:`~edgemoe.models.config.HeadSpec.on_datapath`: the datapath's on a
        fixed-point backend, the float decoder's on torch); None: another head, which
        the host runs on the tokens. With ``record``, ``stages`` then holds the
        decoder's boundaries (``dec.*``) too, channels first like these.
    """

    tokens: np.ndarray
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    routes: list[np.ndarray] = field(default_factory=list)
    saturations: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    logits: np.ndarray | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a backend is, declared by its class (``capabilities``).

    Attributes
    ----------
    summary : str
        One phrase for ``--help`` (``--backend``'s generated list).
    fixed_point : bool
        Computes the accelerator's fixed-point datapath; False: the float model.
    exact_group : str or None
        Backends of one group must be bit-exact with each other (``verify`` compares
        them for identity, not against a budget); None: no such promise.
    takes_bundle : bool
        Runs a bundle's kernel image, so ``run --bundle`` needs no float model.
    drives_board : bool
        Runs the kernel through the :class:`~edgemoe.host.driver.accelerator.Accelerator`
        driver on a board (the backend has ``make_accelerator``).
    any_tiling : bool
        Builds for the tiling of the bundle; False: the default build only.
    timed : str
        What ``bench``'s timer covers (the backend's ``RunOutput.seconds``).
    setup : str
        ``bench``: the one-off set-up before the warm-up call.
    first_call, per_call : str or None
        ``bench``: wall time of the first call, of every call, outside the timer.
    heap_traced : bool
        ``bench``: its buffers are numpy's, which :mod:`tracemalloc` sees.
    """

    summary: str
    fixed_point: bool
    exact_group: str | None
    takes_bundle: bool
    drives_board: bool
    timed: str
    any_tiling: bool = True
    setup: str = "backend set-up"
    first_call: str | None = None
    per_call: str | None = None
    heap_traced: bool = False

    @classmethod
    def float_model(cls, summary: str, timed: str, setup: str) -> Capabilities:
        """A backend of the float model: no bit-exact group, no bundle, no board."""
        return cls(summary, False, None, False, False, timed, setup=setup)

    @classmethod
    def datapath(cls, summary: str, timed: str, **more: Any) -> Capabilities:
        """A backend of the fixed-point datapath: bit-exact with the others of
        :data:`DATAPATH`, runs a bundle, its bench set-up is the quantization."""
        fields = {"exact_group": DATAPATH, "takes_bundle": True, "drives_board": False}
        fields["setup"] = "model quantized"
        return cls(summary, True, timed=timed, **{**fields, **more})

    def bit_exact_with(self, other: Capabilities) -> bool:
        """Whether two backends must agree bit for bit."""
        return self.exact_group is not None and self.exact_group == other.exact_group


#: The group of the fixed-point datapath: golden, the C-sim, the board.
DATAPATH = "datapath"


class Backend(Protocol):
    name: str
    capabilities: Capabilities

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        """Run ``images`` (B, H, W, 3) uint8 for ``task``."""
        ...


class TorchBackend:
    """The float reference (PyTorch, CPU)."""

    name = "torch"
    capabilities = Capabilities.float_model(
        "the float model, PyTorch",
        timed="normalise + backbone, float32, sparse MoE (TorchBackend); where the "
        "datapath decodes the task, its decoder up to the logits too (float32, numpy)",
        setup="torch imported and the random model built in the child",
    )

    def run(self, wl: Workload, images: np.ndarray, task: str, record: bool = False) -> RunOutput:
        import torch

        from edgemoe.models.heads import decoder_front_np
        from edgemoe.models.m3vit import normalize

        rec: dict | None = {} if record else None
        dec_rec: dict | None = {} if record else None
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = wl.model.backbone(normalize(images, wl.cfg), task, record=rec)
        tokens = tokens.double().numpy()
        logits = None
        if wl.cfg.task_spec(task).head.on_datapath:  # what the datapath computes, in float
            logits = decoder_front_np(tokens, wl.state, task, wl.cfg, record=dec_rec)
        dt = time.perf_counter() - t0
        stages = {}
        routes = []
        for k, v in (rec or {}).items():
            a = v.numpy()
            stages[k] = a if a.dtype == bool else a.astype(np.float64)
            if k.endswith(".route"):
                routes.append(a)
        stages |= {k: v.astype(np.float64) for k, v in (dec_rec or {}).items()}
        return RunOutput(tokens, stages, routes, {}, dt, logits)


def record_boundaries(
    wl: Workload,
    run_stop: Callable[[int], np.ndarray],
    gates_only: bool = False,
    task: str | None = None,
) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Every layer boundary of a kernel run, each from a run stopped there (``debug_stop``).

    Parameters
    ----------
    wl : Workload
        Its config, profile and key bias scale (to turn raw words into floats).
    run_stop : callable
        ``debug_stop`` code -> the raw int values the kernel stored for that stage: the
        token rows ``(B, tokens, width)`` of a backbone stage, the map ``(B, h, w, C)`` of
        a decoder stage (:attr:`~edgemoe.host.driver.accelerator.KernelResult.values`).
    gates_only : bool
        Only the MoE gates (what the routes need: ``run --check``).
    task : str, optional
        The task run: where the kernel decodes it (a ``pup`` head), its decoder's stages
        (``dec.*``, channels first like the host's) follow the backbone's.

    Returns
    -------
    stages : dict[str, ndarray]
        Float values per boundary, in execution order; ``block{i}.route`` (bool, the top-k
        of the gate-stage logits) after each ``block{i}.gate``.
    routes : list of ndarray bool (B, N, E)
        The chosen experts, per MoE block in order.
    """
    cfg = wl.cfg
    stages: dict[str, np.ndarray] = {}
    routes: list[np.ndarray] = []
    for name in debug_boundaries(cfg, task):
        if gates_only and not name.endswith(".gate"):
            continue
        raw = np.asarray(run_stop(debug_stop_code(cfg, name, task))).astype(np.int64)
        stages[name] = stage_to_float(cfg, wl.profile, name, raw, wl.quantized.k_bias)
        if name.endswith(".gate"):
            mask = topk_mask(raw, cfg.top_k)
            stages[name.replace(".gate", ".route")] = mask
            routes.append(mask)
    return stages, routes


def backend_names() -> list[str]:
    """Names of every installed backend."""
    return sorted({"torch", *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))})


def backend_class(name: str) -> type:
    """The class of a backend by name (``torch`` or an ``edgemoe.backends`` entry point)."""
    if name == "torch":
        return TorchBackend
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    raise EdgeMoeError(f"unknown backend {name!r} (known: {', '.join(backend_names())})")


def get_backend(name: str) -> Backend:
    """Instantiate a backend by name (``torch`` or an ``edgemoe.backends`` entry point)."""
    return backend_class(name)()


def backend_capabilities(name: str) -> Capabilities:
    """What a backend declares, read from its class (nothing instantiated, no board opened)."""
    return backend_class(name).capabilities


def backends_help() -> str:
    """The installed backends and what each is, for ``--help``."""
    parts = []
    for name in backend_names():
        try:
            parts.append(f"{name} ({backend_capabilities(name).summary})")
        except Exception:  # a broken plug-in must not break --help
            parts.append(f"{name} (cannot be loaded)")
    return "; ".join(parts)
