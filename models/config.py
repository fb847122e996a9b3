"""Model configurations: one YAML file per config, loaded into a frozen dataclass."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from edgemoe.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = "m3vit-tiny-128x256"


TaskKind = Literal["classes", "scalar", "vector"]
_TASK_KINDS = ("classes", "scalar", "vector")
HeadKind = Literal["linear", "pup"]
_HEAD_KINDS = ("linear", "pup")
#: The (num_conv, num_upsample_layer) pairs M3ViT's ``VisionTransformerUpHead`` computes.
PUP_VARIANTS = ((2, 1), (2, 2), (4, 4))
_PUP_FIELDS = ("num_conv", "num_upsample_layer", "conv3x3_conv1x1", "channels", "align_corners")


@dataclass(frozen=True)
class HeadSpec:
    """The decoder of one task: what the host computes after the backbone's tokens.

    Attributes
    ----------
    kind : {'linear', 'pup'}
        ``linear``: the project's light head (final LayerNorm, per-token linear,
        bilinear to the image). ``pup``: M3ViT's ``VisionTransformerUpHead``
        (SETR-PUP): final LayerNorm, convolutions with batch norm and ReLU between
        bilinear upsamplings, then a bilinear resize to the image
        (:mod:`edgemoe.models.heads`).
    num_conv : int
        ``pup``: 2 or 4 convolutions (M3ViT's ``num_conv``).
    num_upsample_layer : int
        ``pup``: bilinear upsamplings (M3ViT's ``num_upsampe_layer``): 1 or 2 with
        two convolutions, 4 with four.
    conv3x3_conv1x1 : bool
        ``pup`` with two convolutions: ``conv_0`` is 3×3 (true) or 1×1 (false).
    channels : int
        ``pup``: width of the hidden convolutions (256 in M3ViT).
    align_corners : bool
        ``pup``: ``align_corners`` of the decoder's own bilinear resizes (M3ViT's
        configs: false). The final resize to the image never aligns corners.
    """

    kind: HeadKind = "linear"
    num_conv: int = 4
    num_upsample_layer: int = 4
    conv3x3_conv1x1: bool = True
    channels: int = 256
    align_corners: bool = False

    @property
    def convs(self) -> int:
        """Number of convolutions (``conv_0 … conv_{n-1}``, the last one the classifier).

        M3ViT's two-conv head has ``conv_0`` and the classifier ``conv_1``; its
        four-conv head has ``conv_0 … conv_3`` and the classifier ``conv_4``. 0 for
        ``linear``.
        """
        if self.kind != "pup":
            return 0
        return self.num_conv + 1 if self.num_conv == 4 else self.num_conv

    @property
    def on_datapath(self) -> bool:
        """Whether the datapath's integer decoder covers this head (its specification,
        ``Golden.decode``): a ``pup`` head, whose four-convolution variant upsamples with
        ``align_corners`` false (the fixed ×2 stencil). The kernel runs this decoder up to
        the logits (hls/include/edgemoe/decoder.h); the host finishes with the resizes. A
        backend without it (torch) runs the float counterpart up to the logits."""
        return self.kind == "pup" and not (self.num_conv == 4 and self.align_corners)

    def conv_kernel(self, i: int) -> int:
        """Kernel side of ``conv_{i}`` (3 or 1)."""
        if i == self.convs - 1:
            return 1  # the classifier
        if i == 0 and self.num_conv == 2 and not self.conv3x3_conv1x1:
            return 1
        return 3


@dataclass(frozen=True)
class TaskSpec:
    """What one task predicts, as declared in the config (figures and metrics read it).

    Attributes
    ----------
    name : str
        Task name (an identifier), e.g. ``semseg``.
    channels : int
        Output channels of the task's head.
    kind : {'classes', 'scalar', 'vector'}
        ``classes``: one logit per class, the map is the argmax; ``scalar``: one
        value per pixel (depth, saliency, edges); ``vector``: a per-pixel vector
        (surface normals), drawn as RGB.
    classes : tuple[str, ...]
        Class names, one per channel (``classes`` tasks only).
    far : float or None
        For a depth task: the value that stands for "very far" (sky), in metres.
    head : HeadSpec
        The task's decoder (default: the light ``linear`` head).
    """

    name: str
    channels: int
    kind: TaskKind
    classes: tuple[str, ...] = ()
    far: float | None = None
    head: HeadSpec = HeadSpec()


@dataclass(frozen=True)
class ModelConfig:
    """Shape of one M3ViT backbone (docs/configs.md).

    Attributes
    ----------
    name : str
        Config name (file stem).
    image_size : tuple[int, int]
        Input height and width in pixels; both multiples of ``patch_size``.
    patch_size : int
        Side of a square patch in pixels.
    in_chans : int
        Input channels (3: RGB).
    embed_dim : int
        Token width ``D``.
    depth : int
        Number of transformer blocks.
    num_heads : int
        Attention heads; ``embed_dim`` must be a multiple.
    mlp_hidden : int
        Hidden width of the dense MLP (even blocks).
    moe_blocks : tuple[int, ...]
        Indices of the blocks whose MLP is a mixture of experts.
    num_experts : int
        Experts per MoE block ``E``.
    expert_hidden : int
        Hidden width of one expert.
    top_k : int
        Experts chosen per token, ``1 <= top_k <= num_experts``.
    qkv_bias : bool
        Whether the QKV projection has a bias.
    ln_eps : float
        LayerNorm epsilon.
    pixel_mean, pixel_std : tuple[float, float, float]
        Normalisation of pixels in [0, 1], per channel.
    tasks : tuple[tuple[str, int], ...]
        Task names and their output channels, in task-id order.
    task_specs : tuple[TaskSpec, ...]
        Each task's kind, class names and depth range, in task-id order. In YAML a
        task is either ``name: channels`` (kind ``scalar`` for one channel, else
        ``classes`` with names ``class 0 …``) or a mapping ``{channels, kind,
        classes, far, head}``; ``head`` is ``linear`` or a mapping ``{kind: pup,
        num_conv, num_upsample_layer, conv3x3_conv1x1, channels, align_corners}``.
    gate_order : tuple[str, ...] or None
        Task names in the order an M3ViT checkpoint indexes its per-task gates
        (``mlp.gate.{k}``). ``None``: M3ViT's fixed order (semseg, human_parts,
        sal, normals, edge, depth) restricted to this config's tasks.
    """

    name: str
    image_size: tuple[int, int]
    patch_size: int
    in_chans: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    moe_blocks: tuple[int, ...]
    num_experts: int
    expert_hidden: int
    top_k: int
    qkv_bias: bool
    ln_eps: float
    pixel_mean: tuple[float, ...]
    pixel_std: tuple[float, ...]
    tasks: tuple[tuple[str, int], ...]
    task_specs: tuple[TaskSpec, ...] = ()
    gate_order: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Specs that do not describe ``tasks`` (built without them, or ``replace``d
        # tasks) are derived from it: kept where name and channels still agree.
        if tuple((t.name, t.channels) for t in self.task_specs) != tuple(self.tasks):
            old = {(t.name, t.channels): t for t in self.task_specs}
            specs = tuple(old.get((n, c)) or _task_spec(n, c, self.name) for n, c in self.tasks)
            object.__setattr__(self, "task_specs", specs)

    # -- derived shapes -------------------------------------------------
    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid (rows, cols)."""
        return (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def num_tokens(self) -> int:
        """Patches plus the CLS token (row 0)."""
        return self.num_patches + 1

    @property
    def patch_dim(self) -> int:
        """Length of one flattened patch, ``in_chans * patch_size**2``."""
        return self.in_chans * self.patch_size**2

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(t for t, _ in self.tasks)

    def task_id(self, task: str | int) -> int:
        """Index of ``task`` (a name or an id), with a clear error if unknown."""
        names = self.task_names
        if isinstance(task, int) and not isinstance(task, bool):
            if 0 <= task < len(names):
                return task
        elif task in names:
            return names.index(task)
        raise ConfigError(
            f"unknown task {task!r} for config {self.name} (tasks: {', '.join(names)})"
        )

    def task_channels(self, task: str | int) -> int:
        return self.tasks[self.task_id(task)][1]

    def task_spec(self, task: str | int) -> TaskSpec:
        """The declared kind, class names and range of ``task``."""
        return self.task_specs[self.task_id(task)]

    def is_moe(self, block: int) -> bool:
        return block in self.moe_blocks

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with fields changed, validated again."""
        return _validated(dataclasses.replace(self, **changes))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = {t.name: _spec_dict(t) for t in self.task_specs}
        del d["task_specs"]
        if self.gate_order is None:
            del d["gate_order"]
        else:
            d["gate_order"] = list(self.gate_order)
        d["image_size"] = list(self.image_size)
        d["moe_blocks"] = list(self.moe_blocks)
        d["pixel_mean"] = list(self.pixel_mean)
        d["pixel_std"] = list(self.pixel_std)
        return d


_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {"task_specs"}
_OPTIONAL = {"gate_order"}


def _spec_dict(t: TaskSpec) -> dict[str, Any]:
    d: dict[str, Any] = {"channels": t.channels, "kind": t.kind}
    if t.classes:
        d["classes"] = list(t.classes)
    if t.far is not None:
        d["far"] = t.far
    if t.head.kind != "linear":
        d["head"] = dataclasses.asdict(t.head)
    return d


def _bool(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"field {name!r} must be true or false, got {v!r}")
    return v


def _head_spec(name: str, v: Any, source: str) -> HeadSpec:
    """A task's ``head``: ``linear``, ``pup`` or a mapping ``{kind, …}`` (see HeadSpec)."""
    where = f"{source}: tasks.{name}.head"
    if isinstance(v, str):
        v = {"kind": v}
    if not isinstance(v, dict):
        raise ConfigError(f"{where} must be 'linear', 'pup' or a mapping with 'kind'")
    kind = v.get("kind", "linear")
    if kind not in _HEAD_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(_HEAD_KINDS)}, got {kind!r}")
    unknown = sorted(set(v) - {"kind", *(_PUP_FIELDS if kind == "pup" else ())})
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)} for kind {kind!r}")
    if kind == "linear":
        return HeadSpec()
    try:
        spec = HeadSpec(
            kind="pup",
            num_conv=_int(f"tasks.{name}.head.num_conv", v.get("num_conv", 4)),
            num_upsample_layer=_int(
                f"tasks.{name}.head.num_upsample_layer", v.get("num_upsample_layer", 4)
            ),
            conv3x3_conv1x1=_bool(
                f"tasks.{name}.head.conv3x3_conv1x1", v.get("conv3x3_conv1x1", True)
            ),
            channels=_int(f"tasks.{name}.head.channels", v.get("channels", 256)),
            align_corners=_bool(f"tasks.{name}.head.align_corners", v.get("align_corners", False)),
        )
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    if (spec.num_conv, spec.num_upsample_layer) not in PUP_VARIANTS:
        known = ", ".join(f"{c}/{u}" for c, u in PUP_VARIANTS)
        raise ConfigError(
            f"{where}: num_conv {spec.num_conv} with num_upsample_layer "
            f"{spec.num_upsample_layer} is not an M3ViT decoder (num_conv/num_upsample_layer: "
            f"{known})"
        )
    if spec.num_conv == 4 and not spec.conv3x3_conv1x1:
        raise ConfigError(
            f"{where}: conv3x3_conv1x1 false needs num_conv 2 (M3ViT's four-conv head is "
            "3x3 throughout)"
        )
    return spec


def _task_spec(name: str, v: Any, source: str) -> TaskSpec:
    """One entry of ``tasks``: ``channels`` or ``{channels, kind, classes, far, head}``."""
    if not isinstance(v, dict):
        ch = _int(f"tasks.{name}", v)
        if ch == 1:
            return TaskSpec(name, ch, "scalar")
        return TaskSpec(name, ch, "classes", tuple(f"class {i}" for i in range(ch)))
    unknown = sorted(set(v) - {"channels", "kind", "classes", "far", "head"})
    if unknown:
        raise ConfigError(f"{source}: tasks.{name}: unknown field(s) {', '.join(unknown)}")
    if "channels" not in v:
        raise ConfigError(f"{source}: tasks.{name}: missing field 'channels'")
    ch = _int(f"tasks.{name}.channels", v["channels"])
    kind = v.get("kind", "scalar" if ch == 1 else "classes")
    if kind not in _TASK_KINDS:
        raise ConfigError(
            f"{source}: tasks.{name}.kind must be one of {', '.join(_TASK_KINDS)}, got {kind!r}"
        )
    classes: tuple[str, ...] = ()
    if kind == "classes":
        names = v.get("classes", [f"class {i}" for i in range(ch)])
        if (
            not isinstance(names, list)
            or len(names) != ch
            or not all(isinstance(n, str) and n for n in names)
            or len(set(names)) != ch
        ):
            raise ConfigError(f"{source}: tasks.{name}.classes must list {ch} distinct class names")
        classes = tuple(names)
    elif "classes" in v:
        raise ConfigError(f"{source}: tasks.{name}: 'classes' needs kind 'classes'")
    far = v.get("far")
    if far is not None:
        if isinstance(far, bool) or not isinstance(far, int | float) or not 0 < far < 1e6:
            raise ConfigError(f"{source}: tasks.{name}.far must be a positive number")
        far = float(far)
    head = _head_spec(name, v["head"], source) if "head" in v else HeadSpec()
    return TaskSpec(name, ch, kind, classes, far, head)


def _int(name: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ConfigError(f"field {name!r} must be an integer, got {v!r}")
    if v < lo:
        raise ConfigError(f"field {name!r} must be >= {lo}, got {v}")
    return v


def _floats(name: str, v: Any, n: int) -> tuple[float, ...]:
    if not isinstance(v, list | tuple) or len(v) != n:
        raise ConfigError(f"field {name!r} must be a list of {n} numbers, got {v!r}")
    out = []
    for x in v:
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            raise ConfigError(f"field {name!r} must hold finite numbers, got {v!r}")
        out.append(float(x))
    return tuple(out)


def _from_dict(d: Any, source: str) -> ModelConfig:
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: a config must be a YAML mapping")
    unknown = sorted(set(d) - _FIELDS)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = sorted(_FIELDS - _OPTIONAL - set(d))
    if missing:
        raise ConfigError(f"{source}: missing field(s) {', '.join(map(repr, missing))}")
    if not isinstance(d["name"], str) or not d["name"]:
        raise ConfigError(f"{source}: field 'name' must be a non-empty string")
    size = d["image_size"]
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise ConfigError(f"{source}: field 'image_size' must be [height, width], got {size!r}")
    tasks = d["tasks"]
    if not isinstance(tasks, dict) or not tasks:
        raise ConfigError(f"{source}: field 'tasks' must map task names to channel counts")
    specs = []
    for t, c in tasks.items():
        if not isinstance(t, str) or not t.isidentifier():
            raise ConfigError(f"{source}: task name {t!r} must be an identifier")
        specs.append(_task_spec(t, c, source))
    gate_order = d.get("gate_order")
    if gate_order is not None:
        if (
            not isinstance(gate_order, list)
            or sorted(gate_order) != sorted(tasks)
            or len(set(gate_order)) != len(gate_order)
        ):
            raise ConfigError(
                f"{source}: field 'gate_order' must list each task once, got {gate_order!r}"
            )
        gate_order = tuple(gate_order)
    moe = d["moe_blocks"]
    if not isinstance(moe, list | tuple):
        raise ConfigError(f"{source}: field 'moe_blocks' must be a list of block indices")
    if not isinstance(d["qkv_bias"], bool):
        raise ConfigError(f"{source}: field 'qkv_bias' must be true or false")
    eps = d["ln_eps"]
    if isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < 1:
        raise ConfigError(f"{source}: field 'ln_eps' must be a number in (0, 1), got {eps!r}")
    cfg = ModelConfig(
        name=d["name"],
        image_size=(_int("image_size[0]", size[0]), _int("image_size[1]", size[1])),
        patch_size=_int("patch_size", d["patch_size"]),
        in_chans=_int("in_chans", d["in_chans"]),
        embed_dim=_int("embed_dim", d["embed_dim"]),
        depth=_int("depth", d["depth"]),
        num_heads=_int("num_heads", d["num_heads"]),
        mlp_hidden=_int("mlp_hidden", d["mlp_hidden"]),
        moe_blocks=tuple(_int("moe_blocks[]", b, lo=0) for b in moe),
        num_experts=_int("num_experts", d["num_experts"]),
        expert_hidden=_int("expert_hidden", d["expert_hidden"]),
        top_k=_int("top_k", d["top_k"]),
        qkv_bias=d["qkv_bias"],
        ln_eps=float(eps),
        pixel_mean=_floats("pixel_mean", d["pixel_mean"], _int("in_chans", d["in_chans"])),
        pixel_std=_floats("pixel_std", d["pixel_std"], d["in_chans"]),
        tasks=tuple((t.name, t.channels) for t in specs),
        task_specs=tuple(specs),
        gate_order=gate_order,
    )
    try:
        return _validated(cfg)
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _validated(cfg: ModelConfig) -> ModelConfig:
    h, w = cfg.image_size
    if h % cfg.patch_size or w % cfg.patch_size:
        raise ConfigError(
            f"field 'image_size' {h}x{w} is not a multiple of patch_size {cfg.patch_size}"
        )
    if cfg.embed_dim % cfg.num_heads:
        raise ConfigError(
            f"field 'num_heads' ({cfg.num_heads}) must divide embed_dim ({cfg.embed_dim})"
        )
    if not 1 <= cfg.top_k <= cfg.num_experts:
        raise ConfigError(f"field 'top_k' must be in 1..num_experts={cfg.num_experts}")
    bad = [b for b in cfg.moe_blocks if b >= cfg.depth]
    if bad or len(set(cfg.moe_blocks)) != len(cfg.moe_blocks):
        raise ConfigError(
            f"field 'moe_blocks' must hold distinct indices below depth={cfg.depth}, "
            f"got {list(cfg.moe_blocks)}"
        )
    if cfg.gate_order is not None and sorted(cfg.gate_order) != sorted(cfg.task_names):
        raise ConfigError(f"field 'gate_order' must list each task once, got {cfg.gate_order}")
    if any(s <= 0 for s in cfg.pixel_std):
        raise ConfigError("field 'pixel_std' must be positive")
    return cfg


def list_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def read_named_yaml(
    name_or_path: str | Path, folder: Path, what: str, known: Callable[[], list[str]]
) -> tuple[Any, str]:
    """The parsed YAML of a file named by path, or by name in ``folder``; and its source.

    Shared by configs and precision profiles. ``what`` names the kind in messages.

    Raises
    ------
    ConfigError
        Unknown name (the ``known`` ones listed), unreadable file, invalid YAML.
    """
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        source = str(p)
    else:
        p = folder / f"{name_or_path}.yaml"
        source = str(name_or_path)
        if not p.exists():
            raise ConfigError(f"unknown {what} {name_or_path!r} (known: {', '.join(known())})")
    try:
        text = p.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {source}: {e.strerror}") from None
    try:
        return yaml.safe_load(text), source
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_config(name_or_path: str | Path = DEFAULT_CONFIG) -> ModelConfig:
    """Load a config by name (``m3vit-mini``) or by path to a YAML file.

    Raises
    ------
    ConfigError
        The name is unknown, the file unreadable, or a field is missing or bad.
    """
    data, source = read_named_yaml(name_or_path, CONFIG_DIR, "config", list_configs)
    return _from_dict(data, source)
