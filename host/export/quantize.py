"""Float M3ViT parameters -> raw fixed-point tensors of a precision profile.

Constant folding happens here, on the host, never on chip (docs/numerics.md):

* pixel normalisation ``(p/255 - mean_c)/std_c`` into the patch-embedding
  weights and bias (the kernel consumes raw ``uint8`` pixels);
* CLS token, position embedding and patch bias into one per-token bias table
  (row 0 is ``cls + pos[0]``; row ``t > 0`` is ``pos[t] + patch bias``);
* ``head_dim**-0.5 * log2(e)`` into ``W_q`` and ``b_q``, so scores come out in
  base 2;
* ``log2(e)`` into each task's gate, so the gate softmax uses the same exp2 unit;
* the K bias ``b_k`` is dropped: it adds ``q . b_k`` to every score of a query
  row, which the softmax cancels exactly, and trained ViTs grow large,
  bias-dominated K channels (issue 14: |k| ~ 54 against |k - b_k| <= 25) that
  would otherwise size the ``attn_qkv`` format. The dropped values are kept in
  :attr:`QuantizedModel.k_bias` so recorded K can be shown with its meaning.

Every tensor is rounded to nearest and saturated; nothing saturates silently:
:class:`QuantReport` lists each tensor with its format, saturation count, worst
overflow and worst rounding error.

Per-tensor binary points (a profile format ``fixed<W,*>``: the linear unit's
weights and biases, docs/design.md): each tensor gets the fewest integer bits
that hold it (:meth:`Fmt.fit`), so a weight tensor cannot saturate and keeps
every bit of resolution its width allows; each expert's tensors are tensors of
their own. :func:`choose_linear` adds what the kernel's epilogue relies on: the
accumulator (input fraction bits plus the weight's) is narrowed by a right
shift of 0..62 bits, and the addend (the bias, or the patch embedding's token
bias) is aligned to it by a left shift of 0..62 bits and fits the range the
products leave free (:func:`linear_slack`), so the accumulator width of
:func:`edgemoe.sim.golden.accumulator_bits` holds (a bias finer than the
accumulator's LSB is rounded to it; a weight's binary point is lowered when its
bias would outgrow the bound). The binary points travel in the bundle's scale
table (:mod:`edgemoe.host.export.bundle`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edgemoe.errors import EdgeMoeError
from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.host.contracts.profile import Profile
from edgemoe.models.config import ModelConfig
from edgemoe.models.heads import HOST_PREFIXES, fold_decoder

LOG2E = 1.0 / math.log(2.0)
#: The longest shift of the linear unit's epilogue (a 6-bit amount): the addend's
#: alignment (left) and the narrowing (right) of a 64-bit sum.
MAX_SHIFT = 62


def linear_slack(fin: Fmt, fw: Fmt, k: int) -> int:
    """The largest aligned addend a ``k``-long reduction of ``fin`` x ``fw`` raw values
    may take: what the products' worst case leaves free in the signed width it needs
    (:func:`edgemoe.sim.golden.accumulator_bits`), so the sum never needs another bit."""
    products = max(-fin.min_raw, fin.max_raw) * (1 << (fw.width - 1)) * k
    bits = products.bit_length() + 1
    return (1 << (bits - 1)) - 1 - products


def choose_linear(
    w: np.ndarray,
    fw: Fmt,
    fin: Fmt,
    fout: Fmt,
    add: np.ndarray | None = None,
    fadd: Fmt | None = None,
) -> tuple[Fmt, Fmt | None]:
    """The binary points of one linear-unit call's weights and addend (bias or token bias).

    Parameters
    ----------
    w : (out, in) float weights, as folded
    fw : the profile's weight format (``fixed<W,*>``: chosen here; else kept)
    fin, fout : formats of the call's input rows and of what it narrows to
    add, fadd : the addend (float) and its profile format, if the call adds one

    Returns
    -------
    (weight format, addend format or None), both with their binary point.

    Raises
    ------
    QuantizationError
        A compile-time format the epilogue cannot shift into (a profile error).
    """
    k = w.shape[-1]
    f_in = fin.frac
    lo = max(0, fout.frac - f_in)  # the narrowing shifts right (0..62 bits)
    if fadd is not None and not fadd.per_tensor:
        lo = max(lo, fadd.frac - f_in)  # the addend aligns by a left shift
    hi = MAX_SHIFT - max(f_in, 0)
    if fw.per_tensor:
        f_w = min(max(fw.fit(w).frac, lo), hi)
    else:
        f_w = fw.frac
        if not lo <= f_w <= hi:
            raise QuantizationError(
                f"weight format {fw} cannot be shifted by the linear unit's epilogue "
                f"(fraction bits {lo}..{hi} with inputs {fin} and outputs {fout})"
            )
    bound = linear_slack(fin, fw, k)
    while True:
        wf = fw.with_frac(f_w)
        f_acc = f_in + f_w
        if fadd is None:
            return wf, None
        if fadd.per_tensor:
            af = fadd.fit(add)
            af = fadd.with_frac(min(max(af.frac, f_acc - MAX_SHIFT, 0), f_acc))
        else:
            af = fadd
            if af.frac > f_acc:
                raise QuantizationError(f"addend format {af} is finer than the accumulator")
        raw = af.quantize(add)[0]
        aligned = int(np.abs(raw).max(initial=0)) << (f_acc - af.frac)
        if aligned <= bound or not fw.per_tensor or f_w <= lo:
            return wf, af
        f_w -= 1  # the bias outgrows the reduction: a coarser weight keeps it in bounds


def q_scale(cfg: ModelConfig) -> float:
    """Factor folded into ``W_q``/``b_q``: scores come out as ``q.k * scale * log2(e)``."""
    return cfg.head_dim**-0.5 * LOG2E


@dataclass
class TensorReport:
    name: str
    fmt: str
    count: int
    saturated: int
    worst_overflow: float
    max_abs_error: float
    max_abs: float


@dataclass
class QuantReport:
    """Per-tensor quantization report."""

    tensors: list[TensorReport] = field(default_factory=list)

    @property
    def saturated(self) -> int:
        return sum(t.saturated for t in self.tensors)

    def saturated_tensors(self) -> list[TensorReport]:
        return [t for t in self.tensors if t.saturated]

    def table(self) -> str:
        """Readable table, one line per tensor."""
        lines = [
            f"{'tensor':<34} {'format':<14} {'count':>9} {'saturated':>9} "
            f"{'worst overflow':>14} {'max |err|':>10} {'max |x|':>9}"
        ]
        for t in self.tensors:
            lines.append(
                f"{t.name:<34} {t.fmt:<14} {t.count:>9} {t.saturated:>9} "
                f"{t.worst_overflow:>14.4g} {t.max_abs_error:>10.3g} {t.max_abs:>9.4g}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "saturated": self.saturated,
            "tensors": [t.__dict__ for t in self.tensors],
        }


@dataclass
class QuantizedModel:
    """Raw integer tensors of one (config, profile), in the datapath's layout.

    Names (``i`` a block index, ``t`` a task name)::

        patch.w (D, 3*p*p)  token_bias (N, D)
        blocks.i.ln1.g / .ln1.b / .ln2.g / .ln2.b (D,)
        blocks.i.qkv.w (3D, D)  .qkv.b (3D,)  .proj.w (D, D)  .proj.b (D,)
        dense:  blocks.i.fc1.w (H, D) .fc1.b (H,) .fc2.w (D, H) .fc2.b (D,)
        MoE:    blocks.i.gate.t.w (E, D)
                blocks.i.experts.fc1.w (E, He, D) .fc1.b (E, He)
                blocks.i.experts.fc2.w (E, D, He) .fc2.b (E, D)

    Linear weights are ``(out, in)``. :attr:`formats` holds every tensor's format
    with its binary point (chosen per tensor for the profile's ``fixed<W,*>``
    classes), each expert's under its bundle name (:meth:`fmt`). The final LayerNorm
    and the task heads stay in float on the host (:attr:`host_params`); :attr:`k_bias` holds each
    block's dropped K bias (float, ``(D,)``), which the datapath never needs.

    The integer decoder of each ``pup`` task (:meth:`edgemoe.sim.golden.Golden.decode`)
    has its own tensors, :attr:`dec_tensors` and :attr:`dec_formats` (``t`` a task,
    ``i`` a convolution; the bundle carries them after the blocks' tensors, format 4)::

        decoders.t.norm.g / .norm.b (D,)              the task's final LayerNorm (ln)
        decoders.t.conv_i.w (C_out, k*k*C_in)         weight, batch norm folded in
        decoders.t.conv_i.b (C_out,)                  bias, batch norm folded in

    A convolution's weight row is laid out ``[ky][kx][c_in]``, the order of the
    im2col rows it multiplies.
    """

    cfg: ModelConfig
    profile: Profile
    tensors: dict[str, np.ndarray]
    formats: dict[str, Fmt]
    report: QuantReport
    host_params: dict[str, np.ndarray]
    k_bias: dict[int, np.ndarray] = field(default_factory=dict)
    dec_tensors: dict[str, np.ndarray] = field(default_factory=dict)
    dec_formats: dict[str, Fmt] = field(default_factory=dict)

    def dec(self, name: str) -> tuple[np.ndarray, Fmt]:
        """A decoder tensor and its format (binary point included).

        Raises
        ------
        QuantizationError
            The model has no such decoder tensor (no ``pup`` head for the task).
        """
        if name not in self.dec_tensors:
            raise QuantizationError(
                f"no decoder tensor {name!r} in the quantized model (only a pup head has a decoder)"
            )
        return self.dec_tensors[name], self.dec_formats[name]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.tensors[name]

    def fmt(self, name: str, expert: int | None = None) -> Fmt:
        """The format (binary point included) of tensor ``name``, or of one expert's.

        Expert tensors are stacked under ``blocks.i.experts.fc1.w``; each expert's
        format is kept under its bundle name ``blocks.i.experts.{e}.fc1.w``.
        """
        if expert is not None:
            pre, tail = name.split(".experts.")
            return self.formats[f"{pre}.experts.{expert}.{tail}"]
        return self.formats[name]


class QuantizationError(EdgeMoeError):
    """The float parameters cannot be quantized (NaN/Inf, wrong shape)."""


def _np(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().double().numpy()
    return np.asarray(t, dtype=np.float64)


def quantize_model(
    state: Mapping[str, object], cfg: ModelConfig, profile: Profile
) -> QuantizedModel:
    """Fold constants and quantize an M3ViT state dict (M3ViT parameter names).

    Parameters
    ----------
    state : mapping
        Parameter name -> tensor/array (``model.state_dict()``).
    cfg : ModelConfig
    profile : Profile

    Raises
    ------
    QuantizationError
        A tensor holds NaN or Inf, or is missing.
    """
    q = _Quantizer(state, profile)
    _patch_embedding(q, cfg)
    for i in range(cfg.depth):
        _attention(q, cfg, i)
        if cfg.is_moe(i):
            _moe(q, cfg, i)
        else:
            _dense_mlp(q, i)
    for spec in cfg.task_specs:
        if spec.head.kind == "pup":
            _decoder(q, cfg, spec.name)
    host = {k: _np(v) for k, v in state.items() if k.startswith(HOST_PREFIXES)}
    return QuantizedModel(
        cfg, profile, q.tensors, q.formats, q.report, host, q.k_bias, q.dec_tensors, q.dec_formats
    )


class _Quantizer:
    """The float parameters read, and the raw tensors, formats and report being built."""

    def __init__(self, state: Mapping[str, object], profile: Profile):
        self.state = state
        self.f = profile.formats
        self.tensors: dict = {}  # one expert's tensors are lists until stacked
        self.formats: dict[str, Fmt] = {}
        self.report = QuantReport()
        self.k_bias: dict[int, np.ndarray] = {}
        self.dec_tensors: dict[str, np.ndarray] = {}
        self.dec_formats: dict[str, Fmt] = {}

    def get(self, name: str) -> np.ndarray:
        """Float parameter ``name`` (M3ViT's name), checked present and finite."""
        if name not in self.state:
            raise QuantizationError(f"parameter {name!r} missing from the model")
        a = _np(self.state[name])
        bad = int((~np.isfinite(a)).sum())
        if bad:
            raise QuantizationError(f"parameter {name!r} holds {bad} NaN/Inf value(s)")
        return a

    def put(
        self, name: str, x: np.ndarray, fmt: Fmt, stack: str | None = None, dec: bool = False
    ) -> np.ndarray:
        """Quantize ``x`` as tensor ``name`` (one expert's: stacked under ``stack``; a
        decoder's: into :attr:`dec_tensors`)."""
        if fmt.per_tensor:
            fmt = fmt.fit(x)
        raw, nsat, worst = fmt.quantize(x)
        err = np.abs(fmt.to_float(raw) - x)
        if nsat:
            err = np.where(np.abs(x) > fmt.max_value, 0.0, err)
        if dec:
            self.dec_tensors[name] = raw
            self.dec_formats[name] = fmt
        elif stack is None:
            self.tensors[name] = raw
            self.formats[name] = fmt
        else:
            self.tensors.setdefault(stack, []).append(raw)
            self.formats[name] = fmt
        self.report.tensors.append(
            TensorReport(
                name,
                str(fmt),
                int(x.size),
                nsat,
                worst,
                float(err.max()) if x.size else 0.0,
                float(np.abs(x).max()) if x.size else 0.0,
            )
        )
        return raw

    def lin(
        self,
        w_name: str,
        w: np.ndarray,
        fw: Fmt,
        b_name: str | None,
        b: np.ndarray | None,
        fb: Fmt | None,
        fout: Fmt,
        stack: str | None = None,
    ) -> None:
        """One linear-unit call's weights and bias, their binary points chosen together."""
        wf, bf = choose_linear(w, fw, self.f["act"], fout, b, fb)
        self.put(w_name, w, wf, stack and f"{stack}.w")
        if b_name is not None:
            self.put(b_name, b, bf, stack and f"{stack}.b")


def _patch_embedding(q: _Quantizer, cfg: ModelConfig) -> None:
    """``patch.w`` and ``token_bias``: pixel normalisation, CLS, positions and the patch
    bias folded in."""
    f, get = q.f, q.get
    D, p2, N = cfg.embed_dim, cfg.patch_dim, cfg.num_tokens
    # A raw pixel r means r * 2^-Fpix; the reference sees (r/255 - mean_c)/std_c.
    w = get("patch_embed.proj.weight").reshape(D, cfg.in_chans, -1)
    b = get("patch_embed.proj.bias")
    mean = np.asarray(cfg.pixel_mean)[None, :, None]
    std = np.asarray(cfg.pixel_std)[None, :, None]
    pix_scale = 2.0 ** f["pixel"].frac / 255.0
    b_fold = b - (w * mean / std).sum(axis=(1, 2))
    pos = get("pos_embed").reshape(N, D)
    tb = pos.copy()
    tb[0] += get("cls_token").reshape(D)
    tb[1:] += b_fold[None, :]
    pw = (w * pix_scale / std).reshape(D, p2)
    pf, _ = choose_linear(pw, f["patch_weight"], f["pixel"], f["act"], tb[1:], f["token_bias"])
    q.put("patch.w", pw, pf)
    q.put("token_bias", tb, f["token_bias"])


def _attention(q: _Quantizer, cfg: ModelConfig, i: int) -> None:
    """Block ``i``'s attention half and its second LayerNorm: ``ln1``, ``qkv`` (the score
    scale folded into Q, the K bias dropped and kept), ``proj``, ``ln2``."""
    f, get, pre = q.f, q.get, f"blocks.{i}"
    D, qs = cfg.embed_dim, q_scale(cfg)
    q.put(f"{pre}.ln1.g", get(f"{pre}.norm1.weight"), f["ln"])
    q.put(f"{pre}.ln1.b", get(f"{pre}.norm1.bias"), f["ln"])
    wq = get(f"{pre}.attn.qkv.weight").copy()
    wq[:D] *= qs
    bq = get(f"{pre}.attn.qkv.bias").copy() if cfg.qkv_bias else np.zeros(3 * D)
    bq[:D] *= qs
    q.k_bias[i] = bq[D : 2 * D].copy()
    bq[D : 2 * D] = 0.0  # softmax-invariant: q.b_k is the same for every key
    q.lin(f"{pre}.qkv.w", wq, f["weight"], f"{pre}.qkv.b", bq, f["attn_bias"], f["attn_qkv"])
    q.lin(
        f"{pre}.proj.w",
        get(f"{pre}.attn.proj.weight"),
        f["weight"],
        f"{pre}.proj.b",
        get(f"{pre}.attn.proj.bias"),
        f["attn_bias"],
        f["act"],
    )
    q.put(f"{pre}.ln2.g", get(f"{pre}.norm2.weight"), f["ln"])
    q.put(f"{pre}.ln2.b", get(f"{pre}.norm2.bias"), f["ln"])


def _moe(q: _Quantizer, cfg: ModelConfig, i: int) -> None:
    """MoE block ``i``'s gates (``log2(e)`` folded in) and experts (each its own tensors,
    stacked ``(E, ...)``)."""
    f, get, pre = q.f, q.get, f"blocks.{i}"
    for t in cfg.task_names:
        gw = get(f"{pre}.mlp.gate.{t}.w_gate").T * LOG2E
        q.lin(f"{pre}.gate.{t}.w", gw, f["gate_weight"], None, None, None, f["attn_score"])
    w1, b1 = get(f"{pre}.mlp.experts.htoh4.weight"), get(f"{pre}.mlp.experts.htoh4.bias")
    w2, b2 = get(f"{pre}.mlp.experts.h4toh.weight"), get(f"{pre}.mlp.experts.h4toh.bias")
    for e in range(cfg.num_experts):
        for fc, we, be in (("fc1", w1[e], b1[e]), ("fc2", w2[e], b2[e])):
            ex = f"{pre}.experts.{e}.{fc}"
            stack = f"{pre}.experts.{fc}"
            q.lin(f"{ex}.w", we, f["weight"], f"{ex}.b", be, f["bias"], f["act"], stack)
    for n in ("fc1.w", "fc1.b", "fc2.w", "fc2.b"):
        name = f"{pre}.experts.{n}"
        q.tensors[name] = np.stack(q.tensors[name])
        q.formats[name] = f["weight" if n.endswith("w") else "bias"]


def _dense_mlp(q: _Quantizer, i: int) -> None:
    """Dense block ``i``'s MLP: ``fc1`` and ``fc2``."""
    f, get, pre = q.f, q.get, f"blocks.{i}"
    for fc in ("fc1", "fc2"):
        q.lin(
            f"{pre}.{fc}.w",
            get(f"{pre}.mlp.{fc}.weight"),
            f["weight"],
            f"{pre}.{fc}.b",
            get(f"{pre}.mlp.{fc}.bias"),
            f["bias"],
            f["act"],
        )


def _decoder(q: _Quantizer, cfg: ModelConfig, task: str) -> None:
    """A ``pup`` task's integer decoder: its final LayerNorm (``ln``) and each convolution
    with its batch norm folded in (scale into the weights, shift into the bias, in float64),
    as a linear-unit call on im2col rows: the weight ``(C_out, k·k·C_in)`` in
    ``[ky][kx][c_in]`` order, binary points chosen per tensor (:func:`choose_linear`) for
    its input (``act`` for ``conv_0``, which reads the LayerNorm, else ``dec_feat``) and
    its output (``dec_feat``, or ``dec_out`` for the classifier)."""
    f, spec, pre = q.f, cfg.task_spec(task).head, f"decoders.{task}"
    q.put(f"{pre}.norm.g", q.get(f"norms.{task}.weight"), f["ln"], dec=True)
    q.put(f"{pre}.norm.b", q.get(f"norms.{task}.bias"), f["ln"], dec=True)
    if f"{pre}.fused_0.weight" in q.state:  # already folded (a bundle's host section)
        fused = {
            k: q.get(k)
            for i in range(spec.convs)
            for k in (f"{pre}.fused_{i}.weight", f"{pre}.fused_{i}.bias")
        }
    else:
        names = [
            f"{pre}.{m}_{i}.{p}"
            for i in range(spec.convs)
            for m, ps in (
                ("conv", ("weight", "bias")),
                ("syncbn_fc", ("weight", "bias", "running_mean", "running_var")),
            )
            if m == "conv" or i < spec.convs - 1
            for p in ps
        ]
        fused = fold_decoder({n: q.get(n) for n in names}, task, cfg, np.float64)
    n = spec.convs
    for i in range(n):
        w = fused[f"{pre}.fused_{i}.weight"]
        w = w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)  # [ky][kx][c_in]
        b = fused[f"{pre}.fused_{i}.bias"]
        fin = f["act"] if i == 0 else f["dec_feat"]
        fout = f["dec_out"] if i == n - 1 else f["dec_feat"]
        wf, bf = choose_linear(w, f["weight"], fin, fout, b, f["bias"])
        q.put(f"{pre}.conv_{i}.w", w, wf, dec=True)
        q.put(f"{pre}.conv_{i}.b", b, bf, dec=True)


def stage_to_float(
    cfg: ModelConfig,
    profile: Profile,
    stage: str,
    raw: np.ndarray,
    k_bias: Mapping[int, np.ndarray] | None = None,
) -> np.ndarray:
    """Float meaning of a raw layer-boundary tensor (``embed``, ``block{i}.{stage}``,
    the decoder's ``dec.{stage}``).

    The folding done here is undone: Q (first ``embed_dim`` columns of ``qkv``) is
    divided by :func:`q_scale`, the dropped K bias is added back when ``k_bias``
    (:attr:`QuantizedModel.k_bias`) is given, gate logits are divided by
    ``log2(e)``; routes are returned as they are; the decoder's ``dec.conv_{i}``
    and ``dec.up_{i}`` are in ``dec_feat``, ``dec.logits`` in ``dec_out``; everything
    else is in the ``act`` format. The decoder's maps, raw channels last
    ``(B, h, w, C)`` as the datapath stores them, come back channels first
    ``(B, C, h, w)``, the host's layout (:func:`edgemoe.models.heads.pup_front_np`).
    """
    if stage.startswith("dec."):  # the decoder's stages (Golden.decode)
        cls = {"dec.norm": "act", "dec.logits": "dec_out"}.get(stage, "dec_feat")
        return profile.formats[cls].to_float(raw).transpose(0, 3, 1, 2)
    kind = stage.rsplit(".", 1)[-1]
    if kind == "route":
        return raw
    raw = np.asarray(raw, dtype=np.int64)
    if kind == "qkv":
        D = cfg.embed_dim
        v = profile.formats["attn_qkv"].to_float(raw)
        v[..., :D] /= q_scale(cfg)
        block = int(stage.split(".")[0].removeprefix("block"))
        if k_bias is not None and block in k_bias:
            v[..., D : 2 * D] += k_bias[block]
        return v
    if kind == "gate":
        return profile.formats["attn_score"].to_float(raw) / LOG2E
    return profile.formats["act"].to_float(raw)
