"""Calibration at export: the range of every quantity a profile formats, and its headroom.

The float model runs on calibration images (procedural scenes by default, a
folder of real images on request) and every quantity the datapath stores is
recorded as it will be held, constant folding included (docs/numerics.md): the
residual stream, LayerNorm outputs and their normalised ``(x - mean) * rstd``,
Q (``head_dim**-0.5 * log2(e)`` folded in), K (its softmax-invariant bias
dropped, as :func:`edgemoe.host.export.quantize.quantize_model` does), V, the base-2
attention scores, attention and projection outputs, GELU inputs, MLP and
expert outputs, base-2 gate logits, and every folded weight and bias tensor;
for a task with a ``pup`` head, its decoder as the datapath computes it
(:func:`edgemoe.models.heads.pup_front_np`, batch norms folded): the final
LayerNorm's output (``act``), every convolution's output after ReLU and every
bilinear ×2 (``dec_feat``) and the classifier's logits (``dec_out``).

Each quantity is reported per layer and per class (its format) with its
headroom ``log2(max representable / max |value|)`` in bits: below
:data:`WARN_BITS` is a warning naming it, below zero it would saturate.

Tensors of a per-tensor class (``fixed<W,*>``: the linear unit's weights and
biases) get the binary point that holds them at export, so they cannot saturate
and have no headroom to keep: they are listed apart (:attr:`Calibration.scaled`),
with the format chosen, and take no part in the headroom checks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.export.quantize import LOG2E, QuantReport, q_scale
from edgemoe.models.config import ModelConfig

#: Headroom (bits) below which export warns.
WARN_BITS = 1.0
#: Headroom (bits) the shipped profiles keep on every quantity of a trained checkpoint.
TARGET_BITS = 2.0
#: Calibration images export uses when no folder is given.
DEFAULT_CALIB_IMAGES = 4


class CalibrationError(EdgeMoeError):
    """A quantity would saturate its format, or calibration images cannot be read."""


@dataclass(frozen=True)
class Quantity:
    """The measured range of one quantity against its format.

    Attributes
    ----------
    name : str
        ``embed``, ``block{i}.{what}`` (run-time values) or a bundle tensor name.
    cls : str
        The profile format that holds it (a key of ``Profile.formats``).
    fmt : Fmt
    max_abs : float
        Largest ``|value|`` seen (run-time) or stored (weights).
    count : int
        Values measured.
    saturated : int
        Values beyond the format's range.
    """

    name: str
    cls: str
    fmt: Fmt
    max_abs: float
    count: int
    saturated: int

    @property
    def headroom_bits(self) -> float:
        """``log2(max representable / max |value|)``; ``inf`` for an all-zero quantity."""
        if self.max_abs == 0.0:
            return math.inf
        return math.log2(self.fmt.max_value / self.max_abs)

    def to_dict(self) -> dict:
        h = self.headroom_bits
        return {
            "name": self.name,
            "class": self.cls,
            "format": str(self.fmt),
            "max_abs": self.max_abs,
            "headroom_bits": None if math.isinf(h) else round(h, 3),
            "count": self.count,
            "saturated": self.saturated,
        }


@dataclass
class Calibration:
    """Every quantity's range on the calibration images, per layer and per class."""

    quantities: list[Quantity] = field(default_factory=list)
    images: int = 0
    source: str = ""
    #: Bundle tensors with a per-tensor binary point (not headroom-checked: they fit).
    scaled: list[Quantity] = field(default_factory=list)

    def by_class(self) -> dict[str, Quantity]:
        """Per format: the quantity with the least headroom (the class's binding layer)."""
        out: dict[str, Quantity] = {}
        for q in self.quantities:
            if q.cls not in out or q.headroom_bits < out[q.cls].headroom_bits:
                out[q.cls] = q
        return out

    def saturating(self) -> list[Quantity]:
        """Quantities that would saturate: beyond their format, or clamped at export (a
        per-tensor binary point the epilogue cannot shift by)."""
        fixed = [q for q in self.quantities if q.saturated or q.headroom_bits < 0]
        return fixed + [q for q in self.scaled if q.saturated]

    def low(self, bits: float = WARN_BITS) -> list[Quantity]:
        """Quantities that fit but with less than ``bits`` of headroom."""
        return [q for q in self.quantities if 0 <= q.headroom_bits < bits and not q.saturated]

    @property
    def min_headroom(self) -> float:
        return min((q.headroom_bits for q in self.quantities), default=math.inf)

    def table(self, per_layer: bool = False) -> str:
        """Readable table: one line per class (its tightest layer), or per quantity."""
        rows = self.quantities if per_layer else sorted(self.by_class().values(), key=_cls_order)
        lines = [
            f"{'class' if not per_layer else 'quantity':<30} {'tightest':<26} {'max |x|':>9} "
            f"{'format':<14} {'headroom':>9} {'saturated':>9}"
        ]
        if not per_layer:
            rows = rows + sorted(self._scaled_by_class().values(), key=_cls_order)
        for q in rows:
            h = q.headroom_bits
            head = "inf" if math.isinf(h) else f"{h:.2f}"
            if q in self.scaled:
                head = "scaled"
            lines.append(
                f"{(q.cls if not per_layer else q.name):<30} "
                f"{(q.name if not per_layer else q.cls):<26} {q.max_abs:>9.4g} {str(q.fmt):<14} "
                f"{head:>9} {q.saturated:>9}"
            )
        return "\n".join(lines)

    def _scaled_by_class(self) -> dict[str, Quantity]:
        """Per per-tensor class: its largest tensor (the binary point chosen for it)."""
        out: dict[str, Quantity] = {}
        for q in self.scaled:
            if q.cls not in out or q.max_abs > out[q.cls].max_abs:
                out[q.cls] = q
        return out

    def to_dict(self) -> dict:
        return {
            "images": self.images,
            "source": self.source,
            "scaled": [q.to_dict() for q in self.scaled],
            "min_headroom_bits": None if math.isinf(self.min_headroom) else self.min_headroom,
            "classes": {k: v.to_dict() for k, v in sorted(self.by_class().items())},
            "quantities": [q.to_dict() for q in self.quantities],
        }


def _cls_order(q: Quantity) -> int:
    order = list(_CLASS_ORDER)
    return order.index(q.cls) if q.cls in order else len(order)


_CLASS_ORDER = (
    "act",
    "ln_norm",
    "attn_qkv",
    "attn_score",
    "token_bias",
    "patch_weight",
    "weight",
    "attn_bias",
    "bias",
    "ln",
    "gate_weight",
    "dec_feat",
    "dec_out",
)


def _measure(name: str, cls: str, fmt: Fmt, x) -> Quantity:
    a = np.abs(np.asarray(x, dtype=np.float64))
    m = float(a.max()) if a.size else 0.0
    # a value saturates when it rounds beyond the largest raw value
    over = int((np.floor(a * 2.0**fmt.frac + 0.5) > fmt.max_raw).sum())
    return Quantity(name, cls, fmt, m, int(a.size), over)


def weight_quantities(report: QuantReport) -> list[Quantity]:
    """One quantity per bundle tensor, from the quantization report (exact, not sampled)."""
    out = []
    for t in report.tensors:
        fmt = Fmt.parse(t.fmt)
        cls = _tensor_class(t.name)
        out.append(Quantity(t.name, cls, fmt, t.max_abs, t.count, t.saturated))
    return out


def split_scaled(
    quantities: list[Quantity], profile: Profile
) -> tuple[list[Quantity], list[Quantity]]:
    """(compile-time, per-tensor) quantities: those of a ``fixed<W,*>`` class apart."""
    fixed = [q for q in quantities if not profile.formats[q.cls].per_tensor]
    scaled = [q for q in quantities if profile.formats[q.cls].per_tensor]
    return fixed, scaled


def _tensor_class(name: str) -> str:
    if name.startswith("decoders."):  # decoders.{task}.norm.g, .conv_{i}.w / .b
        kind = name.rsplit(".", 1)[-1]
        return "ln" if kind in ("g", "b") and ".norm." in name else _LINEAR_CLASS[kind]
    if name == "patch.w":
        return "patch_weight"
    if name == "token_bias":
        return "token_bias"
    kind = name.rsplit(".", 1)[-1]
    part = name.split(".")[2] if name.count(".") >= 2 else ""
    if part in ("ln1", "ln2"):
        return "ln"
    if part == "gate":
        return "gate_weight"
    if part in ("qkv", "proj"):
        return "weight" if kind == "w" else "attn_bias"
    return "weight" if kind == "w" else "bias"


_LINEAR_CLASS = {"w": "weight", "b": "bias"}


def runtime_quantities(model, cfg: ModelConfig, profile: Profile, images: np.ndarray, task: str):
    """Run-time quantities of one task on ``images`` (float model, folding applied)."""
    import torch

    from edgemoe.models.m3vit import normalize

    f = profile.formats
    rec: dict = {}
    with torch.no_grad():
        tokens = model.backbone(normalize(images, cfg), task, record=rec)
    out: list[Quantity] = []
    with torch.no_grad():
        _blocks(model, cfg, f, rec, out)
    if cfg.task_spec(task).head.kind == "pup":
        out += decoder_quantities(model, cfg, profile, tokens.double().numpy(), task)
    return out


def decoder_quantities(
    model, cfg: ModelConfig, profile: Profile, tokens: np.ndarray, task: str
) -> list[Quantity]:
    """The quantities of ``task``'s ``pup`` decoder on float backbone ``tokens`` (B, N, D).

    Named ``dec.{task}.{stage}`` after the datapath's stages
    (:meth:`edgemoe.sim.golden.Golden.decode_stages`): ``norm`` in ``act``,
    ``conv_{i}`` (after ReLU) and ``up_{i}`` in ``dec_feat``, ``logits`` in ``dec_out``.
    """
    from edgemoe.models.heads import fold_decoder, pup_front_np

    spec = cfg.task_spec(task).head
    state = {k: v.detach().double().numpy() for k, v in model.state_dict().items()}
    fused = fold_decoder(state, task, cfg)
    convs = [
        (fused[f"decoders.{task}.fused_{i}.weight"], fused[f"decoders.{task}.fused_{i}.bias"])
        for i in range(spec.convs)
    ]
    rec: dict[str, np.ndarray] = {}
    norm = (state[f"norms.{task}.weight"], state[f"norms.{task}.bias"])
    pup_front_np(tokens, *norm, convs, spec, cfg, rec)
    out = []
    for stage, v in rec.items():
        cls = {"dec.norm": "act", "dec.logits": "dec_out"}.get(stage, "dec_feat")
        name = stage.replace("dec.", f"dec.{task}.", 1)
        out.append(_measure(name, cls, profile.formats[cls], v))
    return out


def _blocks(model, cfg: ModelConfig, f: dict[str, Fmt], rec: dict, out: list[Quantity]) -> None:
    import torch
    import torch.nn.functional as F

    D, H, hd = cfg.embed_dim, cfg.num_heads, cfg.head_dim
    qs = q_scale(cfg)

    def put(name: str, cls: str, x) -> None:
        if hasattr(x, "numpy"):
            x = x.double().numpy()
        out.append(_measure(name, cls, f[cls], x))

    def ln_norm(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + cfg.ln_eps)

    put("embed", "act", rec["embed"])
    x_in = rec["embed"]
    for i in range(cfg.depth):
        b = f"block{i}"
        blk = model.blocks[i]
        put(f"{b}.ln1.norm", "ln_norm", ln_norm(x_in))
        put(f"{b}.ln1", "act", rec[f"{b}.ln1"])
        qkv = rec[f"{b}.qkv"].double()
        q = qkv[..., :D] * qs
        k = qkv[..., D : 2 * D]
        if cfg.qkv_bias:
            k = k - blk.attn.qkv.bias[D : 2 * D].double()
        v = qkv[..., 2 * D :]
        put(f"{b}.q", "attn_qkv", q)
        put(f"{b}.k", "attn_qkv", k)
        put(f"{b}.v", "attn_qkv", v)
        qh = q.reshape(*q.shape[:-1], H, hd).transpose(-2, -3)
        kh = k.reshape(*k.shape[:-1], H, hd).transpose(-2, -3)
        put(f"{b}.score", "attn_score", qh @ kh.transpose(-1, -2))
        put(f"{b}.attn", "act", rec[f"{b}.attn"])
        put(f"{b}.proj.out", "act", rec[f"{b}.proj"] - x_in)
        put(f"{b}.proj", "act", rec[f"{b}.proj"])
        put(f"{b}.ln2.norm", "ln_norm", ln_norm(rec[f"{b}.proj"]))
        h2 = rec[f"{b}.ln2"]
        put(f"{b}.ln2", "act", h2)
        if cfg.is_moe(i):
            put(f"{b}.gate", "attn_score", rec[f"{b}.gate"].double() * LOG2E)
            ex = blk.mlp.experts
            flat = h2.reshape(-1, D)
            mask = rec[f"{b}.route"].reshape(-1, cfg.num_experts)
            hid, y = [], []
            for e in range(cfg.num_experts):
                rows = mask[:, e].nonzero(as_tuple=True)[0]
                if rows.numel():
                    a = F.linear(flat[rows], ex.htoh4.weight[e], ex.htoh4.bias[e])
                    hid.append(a.reshape(-1))
                    y.append(F.linear(F.gelu(a), ex.h4toh.weight[e], ex.h4toh.bias[e]).reshape(-1))
            put(f"{b}.fc1", "act", torch.cat(hid))
            put(f"{b}.fc2", "act", torch.cat(y))
        else:
            a = blk.mlp.fc1(h2)
            put(f"{b}.fc1", "act", a)
            put(f"{b}.fc2", "act", blk.mlp.fc2(F.gelu(a)))
        put(f"{b}.mlp", "act", rec[f"{b}.mlp"])
        x_in = rec[f"{b}.mlp"]


def _merge(parts: Iterable[Quantity]) -> list[Quantity]:
    """One quantity per name: the largest value, counts summed (tasks merged)."""
    merged: dict[str, Quantity] = {}
    for q in parts:
        old = merged.get(q.name)
        if old is None:
            merged[q.name] = q
        else:
            merged[q.name] = Quantity(
                q.name,
                q.cls,
                q.fmt,
                max(old.max_abs, q.max_abs),
                old.count + q.count,
                old.saturated + q.saturated,
            )
    return list(merged.values())


def calibrate(
    model,
    cfg: ModelConfig,
    profile: Profile,
    images: np.ndarray,
    report: QuantReport | None = None,
    source: str = "",
) -> Calibration:
    """Calibrate ``profile`` for ``model`` on ``images`` (B, H, W, 3) uint8, every task.

    Parameters
    ----------
    model : M3ViT
        The float model (eval mode).
    cfg : ModelConfig
    profile : Profile
    images : numpy.ndarray
        Calibration images.
    report : QuantReport, optional
        The weights' quantization report; when given, every bundle tensor is a
        quantity too.
    source : str
        Where the images came from, for the report.
    """
    parts: list[Quantity] = []
    for task in cfg.task_names:
        # the gate (and everything after the first MoE block) depends on the task
        for q in runtime_quantities(model, cfg, profile, images, task):
            parts.append(q)
    quantities = _merge(parts)
    scaled: list[Quantity] = []
    if report is not None:
        fixed, scaled = split_scaled(weight_quantities(report), profile)
        quantities = fixed + quantities
    return Calibration(quantities, int(len(images)), source, scaled)
