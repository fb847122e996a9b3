"""The run path, once: weights -> workload -> bundle file; images -> batches -> backend ->
the host's task heads -> task outputs.

``edgemoe run``, ``eval``, ``verify``, ``export``, ``bench`` and the Python API
(:mod:`edgemoe.api`, which the PYNQ notebook uses) all take their weights, their
workload, their bundle file and their backend calls from here:

- :func:`weight_source`: the one default for weights (the config's shipped
  checkpoint; the seeded random model only on request), with what they were
  trained on.
- :func:`float_workload`: the float model of a weight source (torch).
- :func:`export_bundle`: the one bundle file (kernel image, scale table, host
  section), what ``Model.export`` and ``edgemoe export`` write.
- :func:`open_bundle`, :func:`bundle_weights`, :func:`bundle_workload`: a bundle
  file as a workload that needs nothing else (no float model, no torch).
- :class:`Engine`: a workload on a backend (its driver, the bundle loaded, when it
  drives a board); :meth:`Engine.calls` runs images in batches per task, the
  backbone on the backend and each task's head on the host
  (:func:`edgemoe.models.heads.task_head_np`).
- :func:`check_heads`: a task whose head the checkpoint lacks is refused unless asked
  for, and labelled ``untrained head`` when it is.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgemoe.errors import EdgeMoeError, UntrainedHeadError
from edgemoe.host.contracts.profile import Profile, config_hash, load_profile
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.backends import Backend, Workload, record_boundaries
from edgemoe.host.export.bundle import BundleError, pack, read_bundle, validate
from edgemoe.host.export.deployment import (
    Deployment,
    WeightSource,
    bundle_file,
    check_kernel_image,
    checkpoint_digest,
    host_tensors,
    read_deployment,
)
from edgemoe.models.config import ModelConfig, load_config
from edgemoe.models.heads import decoder_front_np, pup_tail_np, task_head_np

if TYPE_CHECKING:
    from edgemoe.host.driver.accelerator import Accelerator, Board, KernelResult

#: What the ``data`` of a training record means, for the outputs that name the weights.
TRAINING_DATA = {"procedural": "procedural street scenes"}


def flag(name: str, value: object = None) -> str:
    """How the command line spells an option in a message: ``--top-k``, ``--top-k 3``."""
    text = "--" + name.replace("_", "-")
    return text if value is None else f"{text} {value}"


def keyword(name: str, value: object = None) -> str:
    """How the Python API spells an argument in a message: ``top_k=``, ``top_k=3``."""
    if value is None:
        return f"{name}="
    return f"{name}={value if isinstance(value, int) else str(value)!r}"


# ---- weights -------------------------------------------------------------------


def trained_on(checkpoint: str | Path) -> str | None:
    """What a checkpoint was trained on, from the training record beside it (``None``:
    no record, e.g. a checkpoint from elsewhere)."""
    from edgemoe.models.shipped import read_record

    rec = read_record(checkpoint)
    data = rec.get("data")
    if not data:
        return None
    text = TRAINING_DATA.get(str(data), f"data {Path(str(data)).name}")
    steps = rec.get("steps")
    return f"{text}, {steps} steps" if steps else text


def weight_source(
    cfg: ModelConfig,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    random: bool = False,
    spell: Callable[..., str] = flag,
    notices: list[str] | None = None,
) -> WeightSource:
    """The weights a command or :func:`edgemoe.load` uses: ``checkpoint``, else the config's
    shipped checkpoint; the seeded random model only with ``random`` (or when the config
    ships none, with a notice in ``notices``).

    Raises
    ------
    EdgeMoeError
        ``random`` with a ``checkpoint``; a checkpoint that cannot be read.
    """
    if random:
        if checkpoint is not None:
            raise EdgeMoeError(
                f"{spell('random')} and {spell('checkpoint')} name two different models: pick one"
            )
        return WeightSource(None, None, seed)
    if checkpoint is None:
        from edgemoe.models.shipped import shipped_checkpoint

        found = shipped_checkpoint(cfg.name)
        if found is None:
            if notices is not None:
                notices.append(
                    f"config {cfg.name} ships no trained checkpoint: random init, seed {seed} "
                    f"(pass {spell('checkpoint')}, or {spell('random')} to say so)"
                )
            return WeightSource(None, None, seed)
        checkpoint = found
    from edgemoe.models.data import trained_depth_unit

    return WeightSource(
        str(checkpoint),
        checkpoint_digest(checkpoint),
        seed,
        trained_on(checkpoint),
        depth_unit=trained_depth_unit(checkpoint),
    )


def float_workload(
    cfg: ModelConfig, profile: Profile, source: WeightSource
) -> tuple[Workload, list[str]]:
    """The float model of ``source`` as a workload, and the checkpoint loader's notices.
    The workload names the tasks whose head the checkpoint lacks
    (:attr:`Workload.untrained_heads`; :func:`check_heads` refuses or labels them).

    Raises
    ------
    EdgeMoeError
        PyTorch is not installed (one line: what to install); a bad checkpoint.
    """
    from edgemoe.host.app.args import build_model
    from edgemoe.models.shipped import CHECKPOINT_DIR

    model, loaded = build_model(cfg, source.seed, source.checkpoint)
    notices = loaded.notices
    if source.checkpoint is not None and Path(source.checkpoint).parent == CHECKPOINT_DIR:
        # the shipped weights are float16 by design: their conversion is no news
        notices = [n for n in notices if not n.startswith("converted float16")]
    return Workload(cfg, profile, model, untrained_heads=loaded.untrained), notices


def kernel_image(wl: Workload, tiling: Tiling) -> bytes:
    """The kernel image (header, scale table, payload) of ``wl`` for ``tiling``."""
    if wl.packed is not None:
        return wl.packed
    return wl.bundle if tiling == DEFAULT_TILING else pack(wl.quantized, tiling)


def export_bundle(wl: Workload, tiling: Tiling, source: WeightSource) -> bytes:
    """The bundle file of a float workload: its kernel image for ``tiling`` and the host
    section (config, profile, tiling, ``source`` with the tasks whose head the checkpoint
    lacked, each task's final norm and head).

    The one bundle format: ``Model.export`` and ``edgemoe export`` write this; a function
    of the weights and ``source`` alone (two exports of one model are byte-identical).
    """
    host = host_tensors(wl.state, wl.cfg)
    source = replace(source, untrained_heads=wl.untrained_heads)
    return bundle_file(kernel_image(wl, tiling), wl.cfg, wl.profile, tiling, source, host)


# ---- a bundle file -------------------------------------------------------------


def open_bundle(
    source: str | Path | bytes | bytearray | memoryview,
    *,
    config: str | Path | None = None,
    profile: str | Path | None = None,
    top_k: int | None = None,
    host_check: bool = True,
    spell: Callable[..., str] = flag,
    name: str = "bundle",
) -> Deployment:
    """A bundle file, decoded; a ``config``, ``profile`` or ``top_k`` given must be the
    bundle's. ``host_check``: the kernel image checked as the kernel would (else the
    kernel's status code checks it). ``name``: how messages name bytes given.

    Raises
    ------
    BundleError
        Not a bundle, a corrupt one, one without a host section.
    EdgeMoeError
        A ``config``, ``profile`` or ``top_k`` that disagrees with the bundle's.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        data = source
    else:
        data, name = read_bundle(source), f"bundle {source}"
    dep = read_deployment(data, name)
    cfg, prof = dep.cfg, dep.profile
    if config is not None:
        want = load_config(config)
        if config_hash(want, prof) != config_hash(cfg, prof):
            same = " (another definition of that name)" if want.name == cfg.name else ""
            raise EdgeMoeError(
                f"{spell('config', config)} disagrees with {name}, which is for config "
                f"{cfg.name}{same}: drop {spell('config')}, the bundle names its config"
            )
    if profile is not None:
        want_p = load_profile(profile)
        if want_p.canonical() != prof.canonical():
            same = " (another definition of that name)" if want_p.name == prof.name else ""
            raise EdgeMoeError(
                f"{spell('profile', profile)} disagrees with {name}, which is for profile "
                f"{prof.name}{same}: drop {spell('profile')}, the bundle names its profile"
            )
    if top_k is not None and top_k != cfg.top_k:
        raise EdgeMoeError(
            f"{spell('top_k', top_k)} disagrees with {name}, exported with top_k "
            f"{cfg.top_k}: drop {spell('top_k')}, or export again with it"
        )
    dep.meta["name"] = name
    if host_check:
        check_bundle(dep)
    return dep


def check_bundle(dep: Deployment) -> None:
    """The host's check of a bundle's kernel image: what the kernel would refuse, and that
    the host section was written for it.

    Raises
    ------
    BundleError
    """
    name = dep.meta.get("name", "bundle")
    try:
        validate(dep.kernel_image, dep.cfg, dep.profile, dep.tiling)
    except BundleError as e:
        raise BundleError(f"{name}: {str(e).removeprefix('bundle ')}") from None
    check_kernel_image(dep, name)


def bundle_weights(
    dep: Deployment,
    checkpoint: str | Path | None = None,
    seed: int | None = None,
    random: bool = False,
    spell: Callable[..., str] = flag,
) -> WeightSource:
    """The weights of a bundle run: the bundle's; a ``checkpoint`` or ``seed`` given must be
    the ones it was exported from.

    Raises
    ------
    EdgeMoeError
        ``random``, or a ``checkpoint`` or ``seed`` that is not the bundle's.
    """
    name, src = dep.meta.get("name", "the bundle"), dep.source
    if random:
        raise EdgeMoeError(
            f"{spell('random')}: the bundle names its weights (drop {spell('random')})"
        )
    if seed is not None and seed != src.seed:
        raise EdgeMoeError(
            f"{spell('seed', seed)} disagrees with {name}, exported from {_source_text(src)}: "
            f"drop {spell('seed')}, the bundle names its weights"
        )
    if checkpoint is None:
        return src
    if src.checkpoint is None:
        raise EdgeMoeError(
            f"{spell('checkpoint', checkpoint)}: {name} was exported from "
            f"{_source_text(src)}, not from a checkpoint"
        )
    digest = checkpoint_digest(checkpoint)
    if digest != src.checkpoint_sha256:
        raise EdgeMoeError(
            f"{spell('checkpoint', checkpoint)} (SHA-256 {digest[:12]}…) is not the "
            f"checkpoint {name} was exported from ({_source_text(src)})"
        )
    return replace(src, checkpoint=str(checkpoint), checkpoint_sha256=digest)


def _source_text(src: WeightSource) -> str:
    if src.checkpoint is None:
        return src.describe()
    return f"checkpoint {src.checkpoint}, SHA-256 {(src.checkpoint_sha256 or '?')[:12]}…"


def bundle_float_model(
    dep: Deployment, source: WeightSource, why: str, spell: Callable[..., str] = flag
) -> tuple[Any, list[str]]:
    """The float model a bundle was exported from (torch), checked to be it: for the torch
    backend and comparisons against it, never for running the bundle. Returns the model
    and the checkpoint loader's notices.

    Raises
    ------
    EdgeMoeError
        The checkpoint recorded in the bundle is not here (or changed); the float model
        differs from the bundle's host tensors; PyTorch is not installed.
    """
    from edgemoe.host.app.args import build_model

    name = dep.meta.get("name", "the bundle")
    if source is dep.source and source.checkpoint is not None:
        # the path recorded at export: usable only if it is still that checkpoint
        path = Path(source.checkpoint)
        if not path.exists() or checkpoint_digest(path) != source.checkpoint_sha256:
            raise EdgeMoeError(
                f"the float model is needed ({why}) and {name} was exported from "
                f"{_source_text(source)}, which is not here: pass {spell('checkpoint')} PATH"
            )
    model, loaded = build_model(dep.cfg, source.seed, source.checkpoint)
    notices = loaded.notices
    state = model.state_dict()
    for key, want in dep.host.items():
        got = state[key].detach().cpu().numpy() if key in state else None
        if got is None or got.shape != want.shape or not np.array_equal(got, want):
            raise EdgeMoeError(
                f"the float model ({source.describe()}) is not the one {name} was exported "
                f"from: {key} differs"
            )
    return model, notices


def bundle_workload(dep: Deployment, model: Any = None) -> Workload:
    """A bundle's workload: its kernel image runs, its host tensors give the heads;
    ``model`` (:func:`bundle_float_model`) only where torch runs too."""
    return Workload.from_bundle(
        dep.cfg, dep.profile, dep.kernel_image, dep.host, model, dep.source.untrained_heads
    )


def workload(
    cfg: ModelConfig,
    profile: Profile,
    dep: Deployment | None,
    source: WeightSource,
    float_model: bool,
    spell: Callable[..., str] = flag,
) -> tuple[Workload, list[str]]:
    """What a run runs, and the checkpoint loader's notices: the bundle's workload (the
    float model too only with ``float_model``: torch, comparisons), else the float model's."""
    if dep is None:
        return float_workload(cfg, profile, source)
    if not float_model:
        return bundle_workload(dep), []
    model, notices = bundle_float_model(dep, source, "torch, a comparison with it", spell)
    return bundle_workload(dep, model), notices


def check_heads(
    source: WeightSource,
    wl: Workload,
    tasks: Iterable[str],
    allowed: bool,
    spell: Callable[..., str] = flag,
    name: str | None = None,
) -> WeightSource:
    """The weights as loaded: ``source`` naming the tasks whose head is untrained
    (:attr:`Workload.untrained_heads`, from the checkpoint loader or the bundle's record),
    for titles and reports (:meth:`WeightSource.describe`, :meth:`WeightSource.head`).

    Every caller that shows task outputs (``run``, ``eval``, :meth:`edgemoe.api.Model.run`)
    passes them through here before any output: a task of ``tasks`` whose head is untrained
    is refused unless ``allowed`` (``--untrained-heads``, ``untrained_heads=True``). The
    random init is an explicit request: it lists no untrained head and is never refused.

    Parameters
    ----------
    source : WeightSource
        The weights as chosen (:func:`weight_source`, :func:`bundle_weights`).
    wl : Workload
        Their workload, loaded: it knows the untrained heads.
    tasks : iterable of str
        The tasks whose outputs are asked for (empty: only label, never refuse).
    allowed : bool
        Untrained heads may run (``--untrained-heads``, ``untrained_heads=True``).
    spell : callable
        How messages spell an option (:func:`flag` or :func:`keyword`).
    name : str, optional
        How messages name the weights (a bundle's name); default: the checkpoint.

    Raises
    ------
    UntrainedHeadError
        One line naming the weights and the tasks, and how to run them anyway.
    """
    untrained = tuple(t for t in wl.cfg.task_names if t in wl.untrained_heads)
    asked = [t for t in wl.cfg.task_names if t in untrained and t in set(tasks)]
    if asked and not allowed:
        what = name or f"checkpoint {source.checkpoint}"
        how = spell("untrained_heads")
        how += "True to edgemoe.load" if how.endswith("=") else ""
        raise UntrainedHeadError(
            f"{what} has no trained head for task(s) {', '.join(asked)}; pass {how} to run "
            "them anyway"
        )
    return replace(source, untrained_heads=untrained)


# ---- running -------------------------------------------------------------------


@dataclass
class TaskCall:
    """One backbone call on a batch of images for one task, and the task's head on the host.

    Attributes
    ----------
    start : int
        Index of the batch's first image among the images run.
    task : str
    tokens : ndarray float64 (B, N, D)
        The backbone's output tokens (before the final norm).
    values : ndarray float32 (B, C, H, W)
        The task head's output at the image size.
    status : int
        The kernel's status code (0: a backend without a kernel).
    routes : list of ndarray bool (B, N, E)
        The chosen experts per MoE block, when asked for.
    stages : dict[str, ndarray]
        Float values at every layer boundary, when recorded (``verify``, ``eval``).
    times : dict[str, float]
        Wall time per step of this call.
    saturations : dict[str, int]
        Values saturated in the datapath per stage kind (backends that report them).
    logits : ndarray (B, C, h, w) or None
        The task decoder's logits where the task's head
        :attr:`~edgemoe.models.config.HeadSpec.on_datapath`: the backend's, where it ran
        the decoder, else the host's float decoder on the tokens; ``values`` is the host's
        resizes of them (:func:`~edgemoe.models.heads.pup_tail_np`). None: another head,
        all of it on the host.
    """

    start: int
    task: str
    tokens: np.ndarray
    values: np.ndarray
    status: int = 0
    routes: list[np.ndarray] = field(default_factory=list)
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)
    logits: np.ndarray | None = None

    @property
    def seconds(self) -> float:
        """Wall time of the backbone call (every step but the head)."""
        return sum(v for k, v in self.times.items() if k != "head")


class Engine:
    """A workload on a backend: images in, each task's tokens and head outputs out.

    A backend that drives a board (``csim``, ``pynq``), or a ``board`` given, runs through
    its :class:`~edgemoe.host.driver.accelerator.Accelerator`, made once here with the
    workload's kernel image loaded; any other backend is called directly.

    Parameters
    ----------
    wl : Workload
    tiling : Tiling
        The kernel build (the bundle's).
    backend : Backend or None
        None with a ``board``.
    board : Board, optional
        A board opened by the caller (the notebook's ``PynqBoard`` or ``VirtualBoard``).
    max_images : int
        Images per kernel call the driver's buffers hold.
    timeout_s : float
        Longest wait for one kernel call.

    Raises
    ------
    EdgeMoeError
        A backend of the float model on a workload that has none (a bundle alone).
    """

    def __init__(
        self,
        wl: Workload,
        tiling: Tiling,
        backend: Backend | None,
        *,
        board: Board | None = None,
        max_images: int = 1,
        timeout_s: float = 600.0,
    ) -> None:
        self.wl, self.tiling, self.backend, self.timeout_s = wl, tiling, backend, timeout_s
        self.acc: Accelerator | None = None
        if board is not None:
            from edgemoe.host.driver.accelerator import Accelerator

            self.acc = Accelerator(board, wl.cfg, wl.profile, tiling, max_images)
        elif backend is not None and backend.capabilities.drives_board:
            self.acc = backend.make_accelerator(wl.cfg, wl.profile, tiling, max_images=max_images)
        elif backend is not None and not backend.capabilities.takes_bundle and wl.model is None:
            raise EdgeMoeError(
                f"backend {backend.name} runs the float model, and this model is a bundle "
                "alone: load it with the checkpoint it was exported from, or use golden, csim "
                "or pynq"
            )
        if self.acc is not None:
            # checked when the bundle was read or packed (or bypassed on purpose)
            self.acc.load_bundle(kernel_image(wl, tiling), host_check=False)

    @property
    def max_images(self) -> int:
        """Images one driver call takes (any number without a driver)."""
        return self.acc.max_images if self.acc is not None else 2**31

    @property
    def bundle_sha256(self) -> str | None:
        """SHA-256 of the kernel image run (None: the float model)."""
        if self.acc is not None:
            return self.acc.bundle_sha256
        if self.backend is not None and self.backend.capabilities.takes_bundle:
            return hashlib.sha256(self.wl.bundle).hexdigest()
        return None

    def call(
        self, pixels: np.ndarray, task: str, *, routes: bool = False, record: bool = False
    ) -> TaskCall:
        """The backbone on ``pixels`` (B, H, W, 3) uint8 for ``task``, then its head.

        ``routes``: also the experts chosen; ``record``: every layer boundary too (a driver
        records them from runs stopped at each boundary, ``debug_stop``).
        """
        times: dict[str, float] = {}
        stages: dict[str, np.ndarray] = {}
        chosen: list[np.ndarray] = []
        saturations: dict[str, int] = {}
        status = 0
        if self.acc is not None:
            acc = self.acc
            res = acc.run(pixels, task, timeout_s=self.timeout_s)
            times.update(res.times)
            t = time.perf_counter()
            tokens, logits = self.kernel_outputs(res)
            times["unpack"] = times.get("unpack", 0.0) + time.perf_counter() - t
            status = res.status
            if routes or record:
                stages, chosen = record_boundaries(
                    self.wl,
                    lambda stop: acc.run(pixels, task, stop, self.timeout_s).values,
                    gates_only=not record,
                    task=task,
                )
        else:
            assert self.backend is not None
            ro = self.backend.run(self.wl, pixels, task, record=routes or record)
            tokens, chosen, stages = ro.tokens, ro.routes, ro.stages
            saturations = ro.saturations
            times["backbone"] = ro.seconds
            logits = ro.logits
        t = time.perf_counter()
        values, logits = self.task_values(tokens, logits, task, stages if record else None)
        times["head"] = time.perf_counter() - t
        return TaskCall(0, task, tokens, values, status, chosen, stages, times, saturations, logits)

    def kernel_outputs(self, res: KernelResult) -> tuple[np.ndarray, np.ndarray | None]:
        """A whole kernel call's output as floats: the backbone's tokens, and the
        decoder's logits ``(B, C, h, w)`` where the kernel decoded the task (None: a
        head the kernel does not run; :meth:`task_values` runs it on the host)."""
        assert self.acc is not None
        logits = None if res.logits is None else self.acc.logits_to_float(res.logits)
        return self.acc.to_float(res.raw), logits

    def task_values(
        self,
        tokens: np.ndarray,
        logits: np.ndarray | None,
        task: str,
        record: dict[str, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The host's part of ``task``'s head on one call's outputs: the task's values
        ``(B, C, H, W)`` and the decoder's logits (None: a head the datapath never runs).
        The values are the resizes of the backend's ``logits``; or, without them, of the
        float decoder's up to logits (its boundaries into ``record``, as the datapath
        records them); or a head the datapath never runs."""
        cfg = self.wl.cfg
        spec = cfg.task_spec(task).head
        if not spec.on_datapath:
            return task_head_np(tokens, self.wl.state, task, cfg), None
        if logits is None:
            rec: dict[str, np.ndarray] | None = {} if record is not None else None
            logits = decoder_front_np(tokens, self.wl.state, task, cfg, record=rec)
            if record is not None and rec:
                record.update({k: v.astype(np.float64) for k, v in rec.items()})
        return pup_tail_np(logits, spec, cfg), logits

    def calls(
        self, pixels: np.ndarray, tasks: list[str], batch: int, *, routes: bool = False
    ) -> Iterator[TaskCall]:
        """Every image of ``pixels`` (B, H, W, 3) for every task, ``batch`` images a call:
        batch by batch, each task in turn."""
        for start in range(0, len(pixels), batch):
            part = pixels[start : start + batch]  # one kernel call
            for task in tasks:
                c = self.call(part, task, routes=routes)
                c.start = start
                yield c
