"""The Python API: a model, its bundle, images in, per-task maps out, on any backend.

One import for notebooks and scripts::

    import edgemoe

    m = edgemoe.load("m3vit-mini", profile="lean", seed=0)    # or checkpoint="m3vit.pth"
    out = m.run("street.png", tasks=["semseg", "depth"], backend="csim")
    out["semseg"].labels                                       # (H, W) class ids
    m.export("mini.bin")

Everything here is assembled from the functions the command line uses (config
and profile loading, the float model, quantization and packing, the backend
registry, the driver, image loading, the host-side light heads); nothing is
computed a second way. Torch is imported only when a float model is needed.

Two private functions are where a bundle is read (:func:`_read_bundle`) and
where a backend's workload is made (:meth:`Model._workload`): a bundle that
describes itself (config, profile, tiling, the host's final norms and heads)
plugs in there.
"""

from __future__ import annotations

import time
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
from edgemoe.host.export.bundle import BundleError, pack, read_bundle, validate, write_bundle
from edgemoe.host.export.hls_params import MAX_IMAGES
from edgemoe.models.config import DEFAULT_CONFIG, ModelConfig, TaskSpec, load_config
from edgemoe.models.heads import HOST_PREFIXES, task_head_np

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from edgemoe.host.driver.accelerator import Accelerator, Board
    from edgemoe.host.export.quantize import QuantReport


@dataclass
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
    """

    task: str
    spec: TaskSpec
    values: np.ndarray
    tokens: np.ndarray

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

    def rgb(self) -> np.ndarray:
        """The map as colours, uint8 ([B,] H, W, 3), as ``edgemoe run`` draws it."""
        from edgemoe.host.app.plots import task_rgb

        if self.values.ndim == 3:
            return task_rgb(self.spec, self.values)
        return np.stack([task_rgb(self.spec, v) for v in self.values])


@dataclass
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
    """

    outputs: dict[str, TaskOutput]
    images: np.ndarray
    backend: str
    seconds: dict[str, float] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)

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
    """A model ready to run and export: config, profile, float weights or a bundle.

    Made by :func:`load`; the float model, the quantized model and the bundle
    are each built once, on first use.

    Attributes
    ----------
    cfg : ModelConfig
    profile : Profile
    tiling : Tiling
        The kernel build the bundle is packed for.
    checkpoint : Path or None
        The float weights' checkpoint (None: random init from ``seed``).
    seed : int
    notices : list[str]
        The checkpoint loader's notices (what was ignored, mapped, converted).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        profile: Profile,
        *,
        checkpoint: str | Path | None = None,
        seed: int = 0,
        bundle: bytes | None = None,
        tiling: Tiling = DEFAULT_TILING,
    ) -> None:
        self.cfg, self.profile, self.tiling = cfg, profile, tiling
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.seed = seed
        self.notices: list[str] = []
        self._given_bundle = bundle
        self._wl: Workload | None = None
        self._accelerators: dict[str, Accelerator] = {}

    def __repr__(self) -> str:
        weights = f"checkpoint={str(self.checkpoint)!r}" if self.checkpoint else f"seed={self.seed}"
        given = ", bundle given" if self._given_bundle is not None else ""
        return f"Model({self.cfg.name!r}, profile={self.profile.name!r}, {weights}{given})"

    # -- what the model is made of -------------------------------------------
    @property
    def tasks(self) -> tuple[str, ...]:
        """Task names in task-id order."""
        return self.cfg.task_names

    @property
    def float_model(self) -> Any:
        """The PyTorch model (:class:`edgemoe.models.m3vit.M3ViT`); imports torch."""
        return self._workload().model

    @property
    def bundle(self) -> bytes:
        """The weight bundle: the one given to :func:`load`, else packed from the model."""
        if self._given_bundle is not None:
            return self._given_bundle
        wl = self._workload()
        return wl.bundle if self.tiling == DEFAULT_TILING else pack(wl.quantized, self.tiling)

    @property
    def quant_report(self) -> QuantReport:
        """Per-tensor quantization report (format, saturations, worst error)."""
        return self._workload().quantized.report

    def _workload(self) -> Workload:
        if self._wl is None:
            from edgemoe.host.app.args import build_model

            ckpt = None if self.checkpoint is None else str(self.checkpoint)
            model, notices = build_model(self.cfg, self.seed, ckpt)
            self.notices += notices
            self._wl = Workload(self.cfg, self.profile, model)
        return self._wl

    def _host_params(self) -> dict[str, np.ndarray]:
        """Each task's final norm and light head (what the host applies after the backbone)."""
        return {k: v for k, v in self._workload().state.items() if k.startswith(HOST_PREFIXES)}

    # -- export --------------------------------------------------------------
    def export(self, path: str | Path) -> Path:
        """Write the weight bundle to ``path`` atomically (never a partial file).

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
        EdgeMoeError
            (one line) an unknown backend or task, a bad image, a bundle that
            a backend cannot use, a kernel error or timeout.
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
        driven = runner is None or runner.capabilities.drives_board
        if self._given_bundle is not None and not driven:
            raise EdgeMoeError(
                f"backend {name!r} builds its weights from the float model; a bundle needs a "
                "driver backend (csim, pynq) or a board"
            )
        pixels, notices, single = self._images(images, resize)

        wl = self._workload()
        acc = self._accelerator(name, runner, board, min(batch, len(pixels))) if driven else None
        seconds: dict[str, float] = {}
        tokens = self._backbone(wl, acc, runner, pixels, task_names, batch, timeout_s, seconds)
        outputs = self._heads(tokens, single, seconds)
        return Result(outputs, pixels[0] if single else pixels, name, seconds, notices)

    def _backbone(
        self,
        wl: Workload,
        acc: Accelerator | None,
        runner: Any,
        pixels: np.ndarray,
        task_names: list[str],
        batch: int,
        timeout_s: float,
        seconds: dict[str, float],
    ) -> dict[str, np.ndarray]:
        """Each task's backbone tokens of ``pixels``, ``batch`` images a call (on the driver
        where there is one, else the backend); each call's times added to ``seconds``."""
        tokens: dict[str, list[np.ndarray]] = {t: [] for t in task_names}
        for start in range(0, len(pixels), batch):
            part = pixels[start : start + batch]  # one kernel call
            for task in task_names:
                if acc is not None:
                    res = acc.run(part, task, timeout_s=timeout_s)
                    tokens[task].append(acc.to_float(res.raw))
                    _add(seconds, res.times)
                else:
                    ro = runner.run(wl, part, task)
                    tokens[task].append(ro.tokens)
                    _add(seconds, {"backbone": ro.seconds})
        return {t: np.concatenate(parts) for t, parts in tokens.items()}

    def _heads(
        self, tokens: dict[str, np.ndarray], single: bool, seconds: dict[str, float]
    ) -> dict[str, TaskOutput]:
        """Each task's head on the host over its tokens (one image's, when ``single``)."""
        host = self._host_params()
        outputs = {}
        t0 = time.perf_counter()
        for task, tok in tokens.items():
            values = task_head_np(tok, host, task, self.cfg)
            if single:
                tok, values = tok[0], values[0]
            outputs[task] = TaskOutput(task, self.cfg.task_spec(task), values, tok)
        _add(seconds, {"head": time.perf_counter() - t0})
        return outputs

    def _accelerator(
        self, name: str, runner: Any, board: Board | None, max_images: int
    ) -> Accelerator:
        """The driver of a backend (or on ``board``), the bundle loaded: made once, reused."""
        from edgemoe.host.driver.accelerator import Accelerator

        key = f"board {id(board)}" if board is not None else name
        acc = self._accelerators.get(key)
        if acc is None or acc.max_images < max_images:
            if board is not None:
                acc = Accelerator(board, self.cfg, self.profile, self.tiling, max_images)
            else:
                acc = runner.make_accelerator(self.cfg, self.profile, self.tiling, max_images)
            acc.load_bundle(self.bundle, host_check=False)  # checked when it was read or packed
            self._accelerators[key] = acc
        return acc


def load(
    config: str | Path = DEFAULT_CONFIG,
    *,
    profile: str | Path = DEFAULT_PROFILE,
    checkpoint: str | Path | None = None,
    seed: int = 0,
    bundle: str | Path | bytes | None = None,
    top_k: int | None = None,
) -> Model:
    """A model from a config, a precision profile and its weights.

    Parameters
    ----------
    config : str or Path
        A shipped config's name (``m3vit-mini``, ``m3vit-tiny-128x256``) or a YAML path.
    profile : str or Path
        A precision profile's name (``lean``, ``edge-moe``) or a YAML path.
    checkpoint : str or Path, optional
        An M3ViT checkpoint (file or folder of per-rank files), loaded and
        checked now; default: a random init from ``seed``.
    seed : int
        Seed of the random init (and of the parameters a checkpoint leaves out).
    bundle : str, Path or bytes, optional
        A bundle from :meth:`Model.export` or ``edgemoe export`` for this
        config and profile, checked now; the driver backends (``csim``,
        ``pynq``) run it instead of packing one. The host's final norms and
        heads still come from the float weights: pass the checkpoint or seed
        the bundle was exported from.
    top_k : int, optional
        Experts per token (default: the config's).

    Returns
    -------
    Model

    Raises
    ------
    EdgeMoeError
        (one line) an unknown or malformed config or profile, an unreadable or
        mismatched checkpoint, a corrupt bundle or one for another build.
    """
    cfg = with_top_k(load_config(config), top_k)
    prof = load_profile(profile)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise EdgeMoeError(f"seed must be an integer in 0..2**32-1, got {seed!r}")
    data = None if bundle is None else _read_bundle(bundle, cfg, prof, DEFAULT_TILING)
    model = Model(cfg, prof, checkpoint=checkpoint, seed=seed, bundle=data)
    if checkpoint is not None:
        model._workload()  # a bad checkpoint fails here, not at the first run
    return model


def backends() -> list[str]:
    """Names of every installed backend (what :meth:`Model.run` takes)."""
    return backend_names()


# ---- helpers -------------------------------------------------------------------


def _read_bundle(
    source: str | Path | bytes, cfg: ModelConfig, profile: Profile, t: Tiling
) -> bytes:
    """A bundle's bytes, checked against (config, profile, tiling)."""
    if isinstance(source, bytes | bytearray | memoryview):
        data, name = bytes(source), "bundle"
    else:
        data, name = read_bundle(source), f"bundle {source}"
    try:
        validate(data, cfg, profile, t)
    except BundleError as e:
        raise BundleError(f"{name}: {e}") from None
    return data


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
