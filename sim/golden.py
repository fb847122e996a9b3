"""Golden model: the accelerator datapath in exact integer arithmetic (numpy).

This is the bit-exact specification of the HLS kernel (Contract A, docs/numerics.md):
every tensor is a raw fixed-point integer array, every narrowing rounds half up and
saturates, and the order of operations is the hardware's where it
matters (the single-pass softmax sweeps keys in order; MoE experts accumulate
into the residual in ascending index).
:meth:`Golden.decode` is the same for a ``pup`` task decoder after the backbone:
its convolutions are linear-unit calls on im2col rows (docs/numerics.md, "The
task decoder's integer datapath").

Integer matmuls go through float64 BLAS, which is exact while every partial
sum stays below 2**53; wider operands are split into 16-bit halves whose
products are exact, and recombined in int64 (:func:`int_matmul`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgemoe.errors import ConfigError
from edgemoe.host.contracts import decoder as decoder_contract
from edgemoe.host.contracts.fixedpoint import Fmt, narrow, rshift_round, saturate
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.routing import topk_mask
from edgemoe.host.export.quantize import MAX_SHIFT, QuantizedModel, stage_to_float
from edgemoe.models.config import ModelConfig

from . import units

EXACT = 2**53


def int_matmul(x: np.ndarray, w_t: np.ndarray) -> np.ndarray:
    """Exact ``x @ w_t`` of int64 matrices through float64 BLAS.

    ``x`` is (rows, K), ``w_t`` is (K, out). When ``max|x| * max|w| * K`` could
    reach ``2**53``, ``x`` is split as ``hi * 2**16 + lo`` (``0 <= lo < 2**16``)
    and each half is multiplied exactly.
    """
    x = np.asarray(x, dtype=np.int64)
    w_t = np.asarray(w_t, dtype=np.int64)
    k = x.shape[-1]
    wmax = int(np.abs(w_t).max(initial=0))
    xmax = int(np.abs(x).max(initial=0))
    wf = w_t.astype(np.float64)
    if xmax * wmax * k < EXACT:
        return (x.astype(np.float64) @ wf).astype(np.int64)
    lo = x & 0xFFFF
    hi = x >> 16
    assert (1 << 16) * wmax * k < EXACT, "int_matmul: weights too wide for a 16-bit split"
    assert int(np.abs(hi).max()) * wmax * k < EXACT, "int_matmul: activations too wide"
    p_lo = (lo.astype(np.float64) @ wf).astype(np.int64)
    p_hi = (hi.astype(np.float64) @ wf).astype(np.int64)
    return (p_hi << 16) + p_lo


class SatCounter(dict):
    """Saturation events per stage name (how many values hit a format's rails)."""

    def sat(self, v: np.ndarray, fmt: Fmt, where: str) -> np.ndarray:
        n = int(((v > fmt.max_raw) | (v < fmt.min_raw)).sum())
        if n:
            self[where] = self.get(where, 0) + n
        return saturate(v, fmt)

    @property
    def total(self) -> int:
        return sum(self.values())


def linear(
    x: np.ndarray,
    fx: Fmt,
    w: np.ndarray,
    fw: Fmt,
    b: np.ndarray | None,
    fb: Fmt | None,
    out: Fmt,
    sat: SatCounter | None = None,
    where: str = "linear",
    relu: bool = False,
) -> np.ndarray:
    """The unified linear unit: ``narrow(x @ w.T + b)`` into ``out`` (``relu``: then ``max(0, ·)``).

    The accumulator holds ``fx.frac + fw.frac`` fraction bits -- ``fw`` is the
    tensor's own binary point, so the shifts are per call, as the kernel's
    epilogue reads them from the bundle's scale table -- and never overflows
    (bit growth checked by :func:`accumulator_bits`); the bias is aligned to it
    by a left shift of 0..62 bits and the sum narrowed by a right shift of 0..62
    (:func:`edgemoe.host.export.quantize.choose_linear` guarantees both).

    With ``relu`` the narrowed value goes through ``max(0, ·)``; applied to the
    rounded sum before the saturation it gives the same values, and only the upper
    rail can then count as a saturation (a negative sum is 0 however large).
    """
    fa = fx.frac + fw.frac
    assert 0 <= fa - out.frac <= MAX_SHIFT, "the epilogue narrows by a right shift"
    acc = int_matmul(x, w.T)
    if b is not None:
        assert 0 <= fa - fb.frac <= MAX_SHIFT
        acc = acc + (np.asarray(b, dtype=np.int64) << (fa - fb.frac))
    if not relu:
        if sat is None:
            return narrow(acc, fa, out)
        return sat.sat(rshift_round(acc, fa - out.frac), out, where)
    v = np.maximum(rshift_round(acc, fa - out.frac), 0)
    return saturate(v, out) if sat is None else sat.sat(v, out, where)


#: Elements of one band's im2col rows (int64): bounds golden's memory, not its result.
IM2COL_BAND = 1 << 22


def im2col(x: np.ndarray, k: int, r0: int = 0, r1: int | None = None) -> np.ndarray:
    """The im2col rows of output rows ``r0 .. r1-1`` of a stride-1 ``k×k`` convolution.

    ``x`` is one raw feature map ``(h, w, C)``, zero-padded by ``k // 2``. The row of
    output pixel ``(y, x)`` is the concatenation over ``(ky, kx)`` in raster order of
    input pixel ``(y + ky - k//2, x + kx - k//2)``'s channels (zeros outside the map):
    ``[ky][kx][c]``, the layout of the convolution's weight rows. Returns int64
    ``((r1 - r0) * w, k*k*C)``, output pixels row-major.
    """
    h, w, c = x.shape
    r1 = h if r1 is None else r1
    pad = k // 2
    xp = np.pad(x, ((pad, pad), (pad, pad), (0, 0))) if pad else x
    taps = [xp[r0 + ky : r1 + ky, kx : kx + w, :] for ky in range(k) for kx in range(k)]
    return np.concatenate(taps, axis=-1).reshape((r1 - r0) * w, k * k * c)


@dataclass
class DecodeResult:
    """Output of one golden decoder call for a batch of one task.

    Attributes
    ----------
    logits : ndarray int64 (B, h, w, C)
        Raw ``dec_out`` logits of the classifier convolution, pixels row-major,
        channels last (the kernel's output layout): ``h, w = H/2, W/2`` for the
        four-convolution head, ``H/16, W/16`` for the two-convolution heads.
    stages : dict[str, ndarray]
        Raw values after each decoder stage (:meth:`Golden.decode_stages`), when recorded.
    saturations : dict[str, int]
        Values saturated per stage.
    """

    logits: np.ndarray
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    saturations: dict[str, int] = field(default_factory=dict)


@dataclass
class GoldenResult:
    """Output of one golden run for a batch of images of one task.

    Attributes
    ----------
    tokens : ndarray int64 (B, N, D)
        Raw ``act`` values after the last block (the accelerator's output buffer).
    stages : dict[str, ndarray]
        Raw values at every layer boundary (keys as in :data:`STAGES`), when recorded.
    routes : list[ndarray bool (B, N, E)]
        Chosen experts per MoE block, in block order.
    """

    tokens: np.ndarray
    stages: dict[str, np.ndarray] = field(default_factory=dict)
    routes: list[np.ndarray] = field(default_factory=list)
    saturations: dict[str, int] = field(default_factory=dict)


#: Stage names inside a block, in execution order.
BLOCK_STAGES = ("ln1", "qkv", "attn", "proj", "ln2", "gate", "route", "mlp")


class Golden:
    """The bit-exact datapath for one quantized model."""

    def __init__(self, qm: QuantizedModel):
        self.qm = qm
        self.cfg: ModelConfig = qm.cfg
        self.p: Profile = qm.profile
        self.sat = SatCounter()

    # -- stages -----------------------------------------------------------
    def embed(self, patches: np.ndarray) -> np.ndarray:
        """Patch embedding of raw uint8 patches (B, P, 3*p*p) -> tokens (B, N, D)."""
        p, f = self.p, self.p.formats
        B = patches.shape[0]
        D = self.cfg.embed_dim
        tb = self.qm["token_bias"]
        x = patches.reshape(B * self.cfg.num_patches, -1).astype(np.int64)
        fa = f["pixel"].frac + self.qm.fmt("patch.w").frac
        acc = int_matmul(x, self.qm["patch.w"].T).reshape(B, -1, D)
        acc = acc + (tb[1:][None] << (fa - f["token_bias"].frac))
        out = np.empty((B, self.cfg.num_tokens, D), dtype=np.int64)
        out[:, 0] = self.sat.sat(
            rshift_round(tb[0], f["token_bias"].frac - p.act.frac), p.act, "embed"
        )
        out[:, 1:] = self.sat.sat(rshift_round(acc, fa - p.act.frac), p.act, "embed")
        return out

    def attention(self, qkv: np.ndarray) -> np.ndarray:
        """One-pass attention with single-pass softmax over raw Q/K/V (B, N, 3D).

        Per query row the keys are swept once in order with a running max ``m``,
        sum ``S`` and accumulator; a new max rescales both by ``2**(m_old - m_new)``.
        Returns raw ``act`` (B, N, D), heads concatenated.
        """
        p = self.p
        cfg = self.cfg
        B, N, _ = qkv.shape
        H, hd, D = cfg.num_heads, cfg.head_dim, cfg.embed_dim
        fq, fs = p.attn_qkv, p.attn_score
        q = qkv[..., :D].reshape(B, N, H, hd).transpose(0, 2, 1, 3)
        k = qkv[..., D : 2 * D].reshape(B, N, H, hd).transpose(0, 2, 1, 3)
        v = qkv[..., 2 * D :].reshape(B, N, H, hd).transpose(0, 2, 1, 3)
        # q.k is exact in float64: |q|,|k| < 2**(W-1), hd terms
        assert (1 << (2 * fq.width - 2)) * hd < EXACT
        s = (q.astype(np.float64) @ k.transpose(0, 1, 3, 2).astype(np.float64)).astype(np.int64)
        s = self.sat.sat(rshift_round(s, 2 * fq.frac - fs.frac), fs, "attn_score")  # B,H,Nq,Nk
        out = units.softmax_attend(s, v, p, self.sat)
        return out.transpose(0, 2, 1, 3).reshape(B, N, D)

    def gate(
        self, h: np.ndarray, block: int, task: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Gate of one MoE block: base-2 logits, top-k mask, gate weights (``prob``)."""
        p, cfg = self.p, self.cfg
        w = self.qm[f"blocks.{block}.gate.{task}.w"]
        fw = self.qm.fmt(f"blocks.{block}.gate.{task}.w")
        logits = linear(h, p.act, w, fw, None, None, p.attn_score, self.sat, "gate")
        mask = topk_mask(logits, cfg.top_k)
        m = logits.max(axis=-1, keepdims=True)
        e = units.exp2(logits - m, p.attn_score.frac, p)
        y, ps = units.reciprocal(e.sum(axis=-1, keepdims=True), p)
        R = p.units["newton_frac"]
        # a probability: at most 1.0 (so g * y never outgrows an activation)
        g = np.clip(units.shift_round(e * y, R + ps - p.prob.frac), 0, 1 << p.prob.frac)
        return logits, mask, g

    def mlp(
        self, h: np.ndarray, pre: str, w1: str = "fc1", w2: str = "fc2", e: int | None = None
    ) -> np.ndarray:
        p = self.p
        hid = self.linear_call(h, f"{pre}.{w1}", p.act, "fc1", e)
        hid = units.gelu(hid, p.act, p)
        return self.linear_call(hid, f"{pre}.{w2}", p.act, "fc2", e)

    def linear_call(
        self, x: np.ndarray, name: str, fout: Fmt, where: str, e: int | None = None
    ) -> np.ndarray:
        """One linear-unit call on raw ``act`` rows ``x``: tensor ``name``'s weights and bias
        (``name.w``, ``name.b``; expert ``e``'s of a stack), narrowed to ``fout``."""
        qm = self.qm

        def t(n: str) -> tuple[np.ndarray, Fmt]:
            a = qm[n]
            return (a if e is None else a[e]), qm.fmt(n, e)

        return linear(x, self.p.act, *t(f"{name}.w"), *t(f"{name}.b"), fout, self.sat, where)

    def block(self, x: np.ndarray, i: int, task: str, rec: dict | None, routes: list) -> np.ndarray:
        p, cfg, qm = self.p, self.cfg, self.qm
        pre = f"blocks.{i}"
        B, N, D = x.shape
        eps = cfg.ln_eps

        def keep(name: str, v: np.ndarray) -> None:
            if rec is not None:
                rec[f"block{i}.{name}"] = v.copy()

        h = units.layernorm(x, qm[f"{pre}.ln1.g"], qm[f"{pre}.ln1.b"], eps, p)
        keep("ln1", h)
        qkv = self.linear_call(h.reshape(B * N, D), f"{pre}.qkv", p.attn_qkv, "qkv")
        qkv = qkv.reshape(B, N, 3 * D)
        keep("qkv", qkv)
        a = self.attention(qkv)
        keep("attn", a)
        y = self.linear_call(a.reshape(B * N, D), f"{pre}.proj", p.act, "proj")
        x = self.sat.sat(x + y.reshape(B, N, D), p.act, "residual")
        keep("proj", x)
        h = units.layernorm(x, qm[f"{pre}.ln2.g"], qm[f"{pre}.ln2.b"], eps, p)
        keep("ln2", h)
        if cfg.is_moe(i):
            logits, mask, g = self.gate(h, i, task)
            keep("gate", logits)
            keep("route", mask)
            routes.append(mask)
            hf, xf = h.reshape(B * N, D), x.reshape(B * N, D).copy()
            mf, gf = mask.reshape(B * N, -1), g.reshape(B * N, -1)
            for e in range(cfg.num_experts):  # ascending: the hardware's order
                rows = np.flatnonzero(mf[:, e])
                if rows.size == 0:
                    continue
                ye = self.mlp(hf[rows], f"{pre}.experts", e=e)
                xf[rows] = self.sat.sat(
                    xf[rows] + rshift_round(gf[rows, e, None] * ye, p.prob.frac), p.act, "residual"
                )
            x = xf.reshape(B, N, D)
        else:
            y = self.mlp(h.reshape(B * N, D), pre).reshape(B, N, D)
            x = self.sat.sat(x + y, p.act, "residual")
        keep("mlp", x)
        return x

    def run(self, patches: np.ndarray, task: str | int, record: bool = False) -> GoldenResult:
        """Run the backbone on raw uint8 patches (B, P, 3*p*p) for one task."""
        task = self.cfg.task_names[self.cfg.task_id(task)]
        rec: dict | None = {} if record else None
        self.sat = SatCounter()
        routes: list = []
        x = self.embed(np.asarray(patches))
        if rec is not None:
            rec["embed"] = x.copy()
        for i in range(self.cfg.depth):
            x = self.block(x, i, task, rec, routes)
        return GoldenResult(x, rec or {}, routes, dict(self.sat))

    # -- the task decoder (a pup head) ----------------------------------------
    def decode_stages(self, task: str | int) -> list[str]:
        """The decoder's stage names for ``task``, in execution order.

        ``dec.norm`` (the final LayerNorm on the token grid, CLS dropped, ``act``),
        ``dec.conv_{i}`` (convolution ``i`` with ReLU, ``dec_feat``), ``dec.up_{i}`` (the
        bilinear ×2 feeding convolution ``i``, ``dec_feat``), ``dec.logits`` (the
        classifier, ``dec_out``). The list is the decoder contract's
        (:func:`edgemoe.host.contracts.decoder.stage_names`), whose debug stops the
        kernel numbers in this order.
        """
        return decoder_contract.stage_names(self.cfg, task)

    def conv(
        self,
        x: np.ndarray,
        fx: Fmt,
        name: str,
        k: int,
        out: Fmt,
        relu: bool,
        sat: SatCounter,
        where: str,
    ) -> np.ndarray:
        """A stride-1 ``k×k`` convolution of raw maps ``(B, h, w, C_in)``: linear-unit calls
        on im2col rows (:func:`im2col`), band by band, tensor ``name``'s weights and bias.

        The band split only bounds golden's memory: each output pixel is one row of
        the linear unit, whatever the band. Returns int64 ``(B, h, w, C_out)``.
        """
        w, fw = self.qm.dec(f"{name}.w")
        b, fb = self.qm.dec(f"{name}.b")
        B, h, wd, c = x.shape
        if w.shape[1] != k * k * c:
            raise ConfigError(
                f"{name}: weights {w.shape} do not fit a {k}x{k} kernel on {c} channels"
            )
        y = np.empty((B, h, wd, w.shape[0]), dtype=np.int64)
        band = max(1, IM2COL_BAND // (wd * k * k * c))
        for n in range(B):
            for r0 in range(0, h, band):
                r1 = min(h, r0 + band)
                rows = im2col(x[n], k, r0, r1)
                y[n, r0:r1] = linear(rows, fx, w, fw, b, fb, out, sat, where, relu).reshape(
                    r1 - r0, wd, -1
                )
        return y

    def decode(self, tokens: np.ndarray, task: str | int, record: bool = False) -> DecodeResult:
        """The integer decoder of ``task``'s ``pup`` head on raw backbone tokens ``(B, N, D)``.

        The final LayerNorm (the blocks' integer LayerNorm), the CLS token dropped, the
        patch tokens on the grid row-major ``(B, H/16, W/16, D)``; then each convolution
        with its batch norm folded (:meth:`conv`; ReLU but for the classifier) and, in
        the four-convolution head, a bilinear ×2 (:func:`units.upsample2x`) before
        convolutions 1, 2 and 3. The host finishes with resizes only
        (:func:`edgemoe.models.heads.pup_tail_np`).

        Raises
        ------
        ConfigError
            The task's head is not ``pup``, or upsamples with ``align_corners`` true
            (not a fixed ×2 stencil).
        """
        cfg, p = self.cfg, self.p
        name = cfg.task_names[cfg.task_id(task)]
        spec = cfg.task_spec(name).head
        if spec.kind != "pup":
            raise ConfigError(
                f"task {name}: the datapath decodes pup heads only (its head is {spec.kind})"
            )
        if spec.num_conv == 4 and spec.align_corners:
            raise ConfigError(
                f"task {name}: the datapath's bilinear x2 is align_corners false "
                "(the head's align_corners is true)"
            )
        pre = f"decoders.{name}"
        rec: dict | None = {} if record else None
        sat = SatCounter()

        def keep(stage: str, v: np.ndarray) -> None:
            if rec is not None:
                rec[stage] = v.copy()

        tokens = np.asarray(tokens, dtype=np.int64)
        B, N, D = tokens.shape
        if N != cfg.num_tokens or D != cfg.embed_dim:
            raise ValueError(
                f"expected tokens (B, {cfg.num_tokens}, {cfg.embed_dim}), got {tokens.shape}"
            )
        g, _ = self.qm.dec(f"{pre}.norm.g")
        beta, _ = self.qm.dec(f"{pre}.norm.b")
        x = units.layernorm(tokens[:, 1:], g, beta, cfg.ln_eps, p)
        rows, cols = cfg.grid
        x = x.reshape(B, rows, cols, D)
        keep("dec.norm", x)
        n, fin = spec.convs, p.act
        for i in range(n - 1):
            if i > 0:
                x = units.upsample2x(x)
                keep(f"dec.up_{i}", x)
            x = self.conv(
                x,
                fin,
                f"{pre}.conv_{i}",
                spec.conv_kernel(i),
                p.dec_feat,
                True,
                sat,
                f"dec.conv_{i}",
            )
            fin = p.dec_feat
            keep(f"dec.conv_{i}", x)
        x = self.conv(x, fin, f"{pre}.conv_{n - 1}", 1, p.dec_out, False, sat, "dec.logits")
        keep("dec.logits", x)
        return DecodeResult(x, rec or {}, dict(sat))

    def logits_to_float(self, logits: np.ndarray) -> np.ndarray:
        """Raw ``dec_out`` logits ``(B, h, w, C)`` as float ``(B, C, h, w)`` (the host's layout)."""
        return self.stage_to_float("dec.logits", logits)

    def stage_to_float(self, name: str, raw: np.ndarray) -> np.ndarray:
        """The float value a recorded raw stage stands for, folding undone."""
        return stage_to_float(self.cfg, self.p, name, raw, self.qm.k_bias)
