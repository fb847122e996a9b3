"""The Python API: a model, its bundle, images in, per-task maps out, on any backend.

One import for notebooks and scripts (run from the repository root)::

    import edgemoe

    m = edgemoe.load("m3vit-tiny-128x256")          # the config's shipped trained weights
    out = m.run("samples/street.png", tasks=["semseg", "depth"], backend="csim")
    out["semseg"].labels                              # (H, W) class ids
    m.export("build/tiny.bin")                        # what `edgemoe export` writes

    b = edgemoe.load(bundle="build/tiny.bin")         # the bundle alone: no torch needed
    b.run("samples/street.png", backend="csim")       # (the board: backend="pynq")

The run path itself is :mod:`edgemoe.pipeline`, shared with the command line:
the weights (:func:`~edgemoe.pipeline.weight_source`: the shipped checkpoint
unless ``checkpoint=`` or ``random=True``), the bundle file
(:func:`~edgemoe.pipeline.export_bundle`, :func:`~edgemoe.pipeline.open_bundle`)
and the calls (:class:`~edgemoe.pipeline.Engine`). Torch is imported only when a
float model is needed: never for a bundle on ``golden``, ``csim`` or ``pynq``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.app.args import parse_tasks
from edgemoe.host.app.inputs import ImageError, load_image
from edgemoe.host.app.verify import with_top_k
from edgemoe.host.contracts.images import sample_scene
from edgemoe.host.contracts.profile import DEFAULT_PROFILE, Profile, load_profile
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING, Tiling
from edgemoe.host.driver.backends import Workload, backend_names, get_backend
from edgemoe.host.export.bundle import read_bundle, write_bundle
from edgemoe.host.export.deployment import Deployment, WeightSource
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, TaskSpec, load_config
from edgemoe.pipeline import (
    Engine,
    bundle_weights,
    bundle_workload,
    check_heads,
    export_bundle,
    keyword,
    open_bundle,
    weight_source,
    workload,
)

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from edgemoe.host.driver.accelerator import Board
    from edgemoe.host.export.quantize import QuantReport


@dataclass(repr=False)
class TaskOutput:
    """One task's output for the images of a run.

    Arrays carry a leading batch axis only when :meth:`Model.run` was given a
    batch (a list, or a 4-D array); for one image they do not.

    Attributes
    ----------
    task : str
    spec : TaskSpec
        The task's kind (``classes``, ``scalar``, ``vector``) and class names.
    values : ndarray float32 ([B,] C, H, W)
        The light head's output at the image size: logits of a ``classes``
        task, the values of a ``scalar`` or ``vector`` one.
    tokens : ndarray float64 ([B,] N, D)
        The backbone's output tokens (before the final norm): what the
        accelerator computed, bit-exact between fixed-point backends.
    head : str
        What the task's head is (:meth:`WeightSource.head`): ``trained``, ``untrained
        head`` (the checkpoint lacks it; run only with ``untrained_heads=True``) or
        ``random init``.
    unit : str or None
        What a scalar task's values are in: ``m`` or ``disparity``, that of the data
        the weights were trained on (:attr:`WeightSource.depth_unit`);
        ``None``: metres for a task with a ``far``.
    """

    task: str
    spec: TaskSpec
    values: np.ndarray
    tokens: np.ndarray
    head: str = "trained"
    unit: str | None = None

    def __repr__(self) -> str:
        head = "" if self.head == "trained" else f", {self.head}"
        return (
            f"TaskOutput({self.task!r}, {self.kind}, values {self.values.shape}, "
            f"tokens {self.tokens.shape}{head})"
        )

    @property
    def kind(self) -> str:
        """``classes``, ``scalar`` or ``vector`` (:attr:`TaskSpec.kind`)."""
        return self.spec.kind

    @property
    def labels(self) -> np.ndarray:
        """Class id per pixel, int64 ([B,] H, W): the argmax of the logits.

        Raises
        ------
        EdgeMoeError
            The task does not predict classes.
        """
        if self.kind != "classes":
            raise EdgeMoeError(f"task {self.task} is {self.kind}, it has no class labels")
        return self.values.argmax(axis=-3)

    @property
    def map(self) -> np.ndarray:
        """The per-pixel map: labels ([B,] H, W) of a ``classes`` task, the value
        ([B,] H, W) of a ``scalar`` one, the vector ([B,] H, W, C) of a ``vector`` one."""
        if self.kind == "classes":
            return self.labels
        if self.kind == "scalar":
            return self.values[..., 0, :, :]
        return np.moveaxis(self.values, -3, -1)

    @property
    def label(self) -> str:
        """The task's name with the unit of its values, where there is one: ``depth (m)``."""
        from edgemoe.host.app.plots import scalar_label

        return scalar_label(self.spec, self.unit) if self.kind == "scalar" else self.task

    def rgb(self) -> np.ndarray:
        """The map as colours, uint8 ([B,] H, W, 3), as ``edgemoe run`` draws it."""
        from edgemoe.host.app.plots import task_rgb

        if self.values.ndim == 3:
            return task_rgb(self.spec, self.values)
        return np.stack([task_rgb(self.spec, v) for v in self.values])


@dataclass(repr=False)
class Result(Mapping[str, TaskOutput]):
    """The outputs of one :meth:`Model.run`, by task name (``result["semseg"]``).

    Attributes
    ----------
    outputs : dict[str, TaskOutput]
    images : ndarray uint8 ([B,] H, W, 3)
        The pixels that were run (converted and resized).
    backend : str
    seconds : dict[str, float]
        Wall time per step, summed over tasks and kernel calls.
    notices : list[str]
        What was done to the inputs (mode conversions, resizes).
    weights : str
        The weights that made the outputs and what they were trained on
        (:attr:`Model.weights`).
    """

    outputs: dict[str, TaskOutput]
    images: np.ndarray
    backend: str
    seconds: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    weights: str = ""

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.images.shape)
        tasks = ", ".join(f"{t} ({o.kind})" for t, o in self.outputs.items())
        return f"Result(images {shape}, backend {self.backend!r}, tasks: {tasks}; {self.weights})"

    def __getitem__(self, task: str) -> TaskOutput:
        try:
            return self.outputs[task]
        except KeyError:
            ran = ", ".join(self.outputs)
            raise KeyError(f"task {task!r} was not run (ran: {ran})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)

    def __len__(self) -> int:
        return len(self.outputs)


class Model:
    """A model ready to run and export: config, profile, weights, and a bundle file.

    Made by :func:`load`; the float model (from a checkpoint or the seeded init) or
    the bundle's workload is built once, on first use, and so is each backend's driver.

    Attributes
    ----------
    cfg : ModelConfig
    profile : Profile
    tiling : Tiling
        The kernel build the bundle is packed for.
    source : WeightSource
        The weights: a checkpoint (path, SHA-256, what it was trained on) or the seeded
        random init.
    notices : list[str]
        What loading did (the checkpoint loader's notices, a fallback to random init).
    untrained_heads : bool
        Whether :meth:`run` runs tasks whose head the checkpoint lacks
        (``load(..., untrained_heads=True)``); their outputs say ``untrained head``.
    """

    def __init__(
        self,
        cfg: ModelConfig,
        profile: Profile,
        source: WeightSource,
        *,
        deployment: Deployment | None = None,
        bundle_file: bytes | None = None,
        tiling: Tiling = DEFAULT_TILING,
        untrained_heads: bool = False,
    ) -> None:
        self.cfg, self.profile, self.source = cfg, profile, source
        self.untrained_heads = untrained_heads
        self.tiling = deployment.tiling if deployment is not None else tiling
        self.notices: list[str] = []
        self._dep = deployment
        self._file = bundle_file
        self._wl: Workload | None = None
        self._float_wl: Workload | None = None
        self._engines: dict[str, Engine] = {}

    def __repr__(self) -> str:
        given = ", from a bundle" if self._dep is not None else ""
        return (
            f"Model({self.cfg.name!r}, profile={self.profile.name!r}, "
            f"weights={self.weights!r}{given})"
        )

    # -- what the model is made of -------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names in task-id order."""
        return self.cfg.task_names

    @property
    def weights(self) -> str:
        """What the weights are and what they were trained on (figure titles, reports)."""
        return self.source.describe()

    @property
    def checkpoint(self) -> Path | None:
        """The float weights' checkpoint (None: the seeded random init)."""
        return None if self.source.checkpoint is None else Path(self.source.checkpoint)

    @property
    def seed(self) -> int:
        """Seed of the random init (and of the parameters a checkpoint leaves out)."""
        return self.source.seed

    @property
    def float_model(self) -> Any:
        """The PyTorch model (:class:`edgemoe.models.m3vit.M3ViT`); imports torch."""
        return self._float_workload().model

    @property
    def bundle(self) -> bytes:
        """The bundle file: the one given to :func:`load`, else exported from the weights
        (what ``edgemoe export`` writes for them)."""
        if self._file is None:
            self._file = export_bundle(self._workload(), self.tiling, self.source)
        return self._file

    @property
    def quant_report(self) -> QuantReport:
        """Per-tensor quantization report (format, saturations, worst error)."""
        return self._float_workload().quantized.report

    def _workload(self) -> Workload:
        """What the fixed-point backends run: the bundle's, else the float model's."""
        if self._wl is None:
            self._wl = self._float_workload() if self._dep is None else bundle_workload(self._dep)
        return self._wl

    def _float_workload(self) -> Workload:
        """The float model's workload (torch); of a bundle, the model it was exported from."""
        if self._float_wl is None:
            self._float_wl, notices = workload(
                self.cfg, self.profile, self._dep, self.source, True, keyword
            )
            self.notices += notices
            # the tasks whose head the checkpoint lacks are known now (a bundle names them)
            self.source = check_heads(self.source, self._float_wl, (), True)
        return self._float_wl

    # -- export --------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the bundle file to ``path`` atomically (never a partial file): the same
        file ``edgemoe export`` writes for these weights, which ``edgemoe run --bundle``,
        :func:`load` and the notebook take alone.

        Returns
        -------
        Path

        Raises
        ------
        BundleError
            The file cannot be written.
        QuantizationError
            The float weights hold NaN or Inf.
        """
        path = Path(path)
        write_bundle(path, self.bundle)
        return path

    # -- images --------------------------------------------------------------
    def sample_image(self, seed: int = 0) -> np.ndarray:
        """The built-in procedural street scene at the config's size, uint8 (H, W, 3)."""
        return sample_scene(self.cfg, seed)

    def _images(self, images: Any, resize: bool = True) -> tuple[np.ndarray, list[str], bool]:
        """Read ``images`` as the pixels the model runs.

        Parameters
        ----------
        images : path, PIL image, uint8 ndarray, or a list of these
            One image: a file path, a PIL image, a uint8 array (H, W, 3). A batch:
            a list of those, or a uint8 array (B, H, W, 3).
        resize : bool
            Resize images of another size to the config's (bilinear, with a
            notice); False refuses them.

        Returns
        -------
        pixels : ndarray uint8 (B, H, W, 3)
        notices : list[str]
        single : bool
            Whether one image (not a batch) was given.

        Raises
        ------
        ImageError
            An unreadable file, a type or array shape that is no image, a
            non-uint8 array, an empty batch, a wrong size with ``resize=False``.
        """
        single = not isinstance(images, list | tuple) and not (
            isinstance(images, np.ndarray) and images.ndim == 4
        )
        items = [images] if single else list(images)
        if not items:
            raise ImageError("no images given (an empty batch)")
        notices: list[str] = []
        pixels = [_pixels(x, self.cfg, resize, notices) for x in items]
        return np.stack(pixels), notices, single

    # -- running ---------------------------------------------------------------
    def run(
        self,
        images: Any,
        tasks: str | int | Sequence[str | int] | None = None,
        backend: str | None = None,
        *,
        board: Board | None = None,
        batch: int = MAX_GROUP,
        resize: bool = True,
        timeout_s: float = 600.0,
    ) -> Result:
        """Run images through the backbone on a backend, then each task's light head.

        Parameters
        ----------
        images : path, PIL image, uint8 ndarray, or a list of these
            One image: a file path, a PIL image, a uint8 array (H, W, 3). A
            batch: a list of those, or a uint8 array (B, H, W, 3).
        tasks : task name or id, a comma-separated string of them, or a list
            Default: every task of the config (the command line's ``--task`` rule).
        backend : str
            ``torch``, ``golden``, ``csim-direct``, ``csim`` (the driver on the
            virtual board) or ``pynq`` (the driver on the ZCU104; the bitstream
            ``edgemoe.bit`` or ``$EDGEMOE_BITFILE``). Default ``csim``.
        board : Board, optional
            A board you opened yourself (``PynqBoard("edgemoe.bit")`` on the
            ZCU104, ``VirtualBoard(cfg, profile)``): the driver runs on it.
            Not with ``backend``.
        batch : int
            Images per kernel call (default: one expert-major group); every
            backend gives the same tokens either way.
        resize : bool
            Resize images of another size to the config's (bilinear, with a
            notice in :attr:`Result.notices`); False refuses them.
        timeout_s : float
            Longest wait for one kernel call (driver backends).

        Returns
        -------
        Result

        Raises
        ------
        UntrainedHeadError
            A task whose head the checkpoint (or the bundle's) lacks, without
            ``load(..., untrained_heads=True)``.
        EdgeMoeError
            (one line) an unknown backend or task, a bad image, a backend that
            needs what is not installed (torch, the HLS headers), a kernel error
            or timeout.
        """
        if board is not None and backend is not None:
            raise EdgeMoeError("give a backend name or a board, not both")
        name = "board" if board is not None else (backend or "csim")
        task_names = parse_tasks(tasks, self.cfg, what="tasks")
        if not 1 <= batch <= MAX_IMAGES:
            raise EdgeMoeError(f"batch must be in 1..{MAX_IMAGES}, got {batch}")
        if timeout_s <= 0:
            raise EdgeMoeError(f"timeout_s must be positive, got {timeout_s}")
        runner = None if board is not None else get_backend(name)
        pixels, notices, single = self._images(images, resize)

        engine = self._engine(name, runner, board, min(batch, len(pixels)))
        name_it = None if self._dep is None else self._dep.meta.get("name", "the bundle")
        self.source = check_heads(
            self.source, engine.wl, task_names, self.untrained_heads, keyword, name_it
        )
        engine.timeout_s = timeout_s
        seconds: dict[str, float] = {}
        tokens: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
        values: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
        for call in engine.calls(pixels, task_names, batch):
            tokens[call.task].append(call.tokens)
            values[call.task].append(call.values)
            _add(seconds, call.times)
        outputs = {}
        for t in task_names:
            tok, val = np.concatenate(tokens[t]), np.concatenate(values[t])
            if single:
                tok, val = tok[0], val[0]
            spec = self.cfg.task_spec(t)
            unit = self.source.depth_unit if spec.kind == "scalar" else None
            outputs[t] = TaskOutput(t, spec, val, tok, self.source.head(t), unit)
        images_run = pixels[0] if single else pixels
        return Result(outputs, images_run, name, seconds, notices, self.weights)

    def _engine(self, name: str, runner: Any, board: Board | None, max_images: int) -> Engine:
        """The engine of a backend (or of ``board``): made once, its driver reused."""
        key = f"board {id(board)}" if board is not None else name
        engine = self._engines.get(key)
        if engine is None or engine.max_images < max_images:
            float_only = runner is not None and not runner.capabilities.takes_bundle
            wl = self._float_workload() if float_only else self._workload()
            engine = Engine(wl, self.tiling, runner, board=board, max_images=max_images)
            self._engines[key] = engine
        return engine


def load(
    config: str | Path | None = None,
    *,
    profile: str | Path | None = None,
    checkpoint: str | Path | None = None,
    seed: int | None = None,
    random: bool = False,
    bundle: str | Path | bytes | None = None,
    top_k: int | None = None,
    untrained_heads: bool = False,
) -> Model:
    """A model from a config, a precision profile and its weights, or from a bundle file.

    Parameters
    ----------
    config : str or Path, optional
        A shipped config's name (``m3vit-mini``, ``m3vit-tiny-128x256``) or a YAML
        path. Default: the bundle's, else ``m3vit-tiny-128x256``.
    profile : str or Path, optional
        A precision profile's name (``lean``, ``edge-moe``) or a YAML path. Default:
        the bundle's, else ``lean``.
    checkpoint : str or Path, optional
        An M3ViT checkpoint (file or folder of per-rank files), loaded and checked
        now. Default: the config's shipped trained checkpoint.
    seed : int, optional
        Seed of the random init (and of the parameters a checkpoint leaves out);
        default 0, with a bundle the bundle's.
    random : bool
        The seeded random model instead of the shipped trained weights.
    bundle : str, Path or bytes, optional
        A bundle file from :meth:`Model.export` or ``edgemoe export``: it names its
        config, profile, tiling and weights and carries each task's head, so it
        runs on ``golden``, ``csim`` and ``pynq`` with nothing else (no torch). A
        ``config``, ``profile``, ``top_k``, ``checkpoint`` or ``seed`` given must be
        the bundle's.
    top_k : int, optional
        Experts per token (default: the config's, or the bundle's).
    untrained_heads : bool
        Let :meth:`Model.run` run tasks whose head the checkpoint (or the bundle's)
        lacks: left at their initial values, their outputs are labelled ``untrained
        head``. Without it they raise :class:`~edgemoe.errors.UntrainedHeadError`.
        ``random=True`` needs no such consent (it says ``random init``).

    Returns
    -------
    Model

    Raises
    ------
    EdgeMoeError
        (one line) an unknown or malformed config or profile, an unreadable or
        mismatched checkpoint, a corrupt bundle or one that disagrees with an
        argument.
    """
    if seed is not None and (
        isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32
    ):
        raise EdgeMoeError(f"seed must be an integer in 0..2**32-1, got {seed!r}")
    if bundle is not None:
        data = bundle if isinstance(bundle, bytes | bytearray | memoryview) else read_bundle(bundle)
        name = "bundle" if data is bundle else f"bundle {bundle}"
        dep = open_bundle(
            bytes(data), config=config, profile=profile, top_k=top_k, spell=keyword, name=name
        )
        source = bundle_weights(dep, checkpoint, seed, random, spell=keyword)
        return Model(
            dep.cfg,
            dep.profile,
            source,
            deployment=dep,
            bundle_file=bytes(data),
            untrained_heads=untrained_heads,
        )
    cfg = with_top_k(load_config(config or DEFAULT_CONFIG), top_k)
    prof = load_profile(profile or DEFAULT_PROFILE)
    notices: list[str] = []
    source = weight_source(cfg, checkpoint, seed or 0, random, keyword, notices)
    model = Model(cfg, prof, source, untrained_heads=untrained_heads)
    model.notices += notices
    if checkpoint is not None:
        model._workload()  # a bad checkpoint fails here, not at the first run
    return model


def backends() -> list[str]:
    """Names of every installed backend (what :meth:`Model.run` takes)."""
    return backend_names()


# ---- helpers -------------------------------------------------------------------


def _pixels(image: Any, cfg: ModelConfig, resize: bool, notices: list[str]) -> np.ndarray:
    """One image as uint8 (H, W, 3) at the config's size."""
    if isinstance(image, str | Path):
        im = load_image(image, cfg, resize=resize)
        notices += im.notices
        return im.pixels
    if _is_pil(image):
        return _pil_pixels(image, cfg, resize, notices)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError(
                f"image array is {image.dtype}, expected uint8 (0..255); "
                "scale and convert it first (e.g. .astype(np.uint8))"
            )
        if image.ndim != 3 or image.shape[2] != 3:
            raise ImageError(f"image array has shape {image.shape}, expected (H, W, 3) RGB")
        if image.shape[:2] == tuple(cfg.image_size):
            return np.ascontiguousarray(image)
        from PIL import Image

        return _pil_pixels(Image.fromarray(image, "RGB"), cfg, resize, notices, "array")
    raise ImageError(
        f"cannot use a {type(image).__name__} as an image: give a path, a PIL image or a "
        "uint8 array (H, W, 3)"
    )


def _is_pil(image: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # no Pillow: nothing can be a PIL image
        return False
    return isinstance(image, Image.Image)


def _pil_pixels(
    img: PILImage, cfg: ModelConfig, resize: bool, notices: list[str], what: str = "PIL image"
) -> np.ndarray:
    """An in-memory image as uint8 RGB at the config's size (the rules of ``load_image``)."""
    from edgemoe.host.app.inputs import image_pixels

    return image_pixels(
        img, cfg, what, notices, resize=resize, refuse_hint="pass resize=True to resize it"
    )


def _add(total: dict[str, float], times: Mapping[str, float]) -> None:
    for k, v in times.items():
        total[k] = total.get(k, 0.0) + v
