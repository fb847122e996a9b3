"""Nonlinear units of the datapath on raw integers (docs/numerics.md), vectorised.

Each function is the exact integer definition that the HLS C++ implements;
inputs and outputs are int64 arrays of raw fixed-point values. Shifts round
half up (:func:`edgemoe.host.contracts.fixedpoint.rshift_round`). The tables come from
:mod:`edgemoe.host.contracts.tables`.
"""

from __future__ import annotations

import numpy as np

from edgemoe.host.contracts.fixedpoint import Fmt, rshift_round, saturate
from edgemoe.host.contracts.profile import Profile
from edgemoe.host.contracts.tables import ln_eps_raw, unit_tables


def shift_round(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per-element shift: right with rounding where ``s > 0``, left (exact) where ``s <= 0``."""
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    right = rshift_round(v, np.maximum(s, 0))
    return np.where(s > 0, right, np.left_shift(v, np.maximum(-s, 0)))


def bit_length(v: np.ndarray) -> np.ndarray:
    """Bits of positive int64 values (position of the leading one, plus one)."""
    v = np.asarray(v, dtype=np.int64)
    # frexp is exact for the leading-one position of integers below 2**53; above,
    # rounding can carry into the next power of two, so correct it.
    _, e = np.frexp(v.astype(np.float64))
    e = e.astype(np.int64)
    too_big = np.right_shift(v, np.minimum(e - 1, 62)) == 0
    return np.where(too_big, e - 1, e)


def exp2_parts(x: np.ndarray, frac: int, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """``2**x`` for raw ``x <= 0`` with ``frac`` fraction bits, as ``(mant, n)``.

    ``x = -(n + f)``; ``2**-f`` is read from the table with linear
    interpolation, giving ``mant`` with ``exp2_frac`` fraction bits;
    the value is ``mant * 2**-(exp2_frac + n)``.
    """
    t = unit_tables(profile).exp2
    lut = profile.units["exp2_lut_bits"]
    a = -np.asarray(x, dtype=np.int64)
    n = a >> frac
    f = a & ((1 << frac) - 1)
    k = f >> (frac - lut)
    r = f & ((1 << (frac - lut)) - 1)
    mant = t[k] - rshift_round((t[k] - t[k + 1]) * r, frac - lut)
    return mant, n


def exp2(x: np.ndarray, frac: int, profile: Profile) -> np.ndarray:
    """``2**x`` for raw ``x <= 0``, narrowed to the ``prob`` format."""
    fe = profile.units["exp2_frac"]
    mant, n = exp2_parts(x, frac, profile)
    shift = np.minimum(n + (fe - profile.prob.frac), fe + 2)  # beyond fe+1 the result is 0
    return saturate(rshift_round(mant, shift), profile.prob)


def reciprocal(s: np.ndarray, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """``1/s`` for integers ``s >= 1``, as ``(y, p)`` with ``1/s ~= y * 2**-(R + p)``.

    Leading-one detect gives ``s = m * 2**p`` with ``m`` in ``[1, 2)`` (truncated
    to ``R = newton_frac`` fraction bits); a table seeds ``1/m``; one Newton step
    ``y <- y * (2 - m*y)``.
    """
    R = profile.units["newton_frac"]
    L = profile.units["recip_lut_bits"]
    seed = unit_tables(profile).recip
    s = np.asarray(s, dtype=np.int64)
    p = bit_length(s) - 1
    m = shift_round_trunc(s, p - R)
    y0 = seed[(m >> (R - L)) - (1 << L)]
    t = rshift_round(m * y0, R)
    y1 = rshift_round(y0 * ((2 << R) - t), R)
    return y1, p


def rsqrt(v: np.ndarray, frac: int, profile: Profile) -> tuple[np.ndarray, np.ndarray]:
    """``1/sqrt(v * 2**-frac)`` for raw ``v >= 1``, as ``(y, h)`` meaning ``y * 2**-(R + h)``.

    ``v = m * 2**p`` with ``p - frac`` even and ``m`` in ``[1, 4)`` (truncated to
    ``R`` fraction bits); the table seeds ``1/sqrt(m)``; one Newton step
    ``y <- y * (3 - m*y*y) / 2``; ``h = (p - frac) / 2``.
    """
    R = profile.units["newton_frac"]
    L = profile.units["rsqrt_lut_bits"]
    seed = unit_tables(profile).rsqrt
    v = np.asarray(v, dtype=np.int64)
    p = bit_length(v) - 1
    p = p - ((p - frac) & 1)
    m = shift_round_trunc(v, p - R)
    y0 = seed[(m >> (R - L + 1)) - (1 << (L - 1))]
    y2 = rshift_round(y0 * y0, R)
    t = rshift_round(m * y2, R)
    y1 = rshift_round(y0 * ((3 << R) - t), R + 1)
    return y1, (p - frac) >> 1


def shift_round_trunc(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``v >> s`` truncating (floor) where ``s > 0``, ``v << -s`` otherwise."""
    s = np.asarray(s, dtype=np.int64)
    return np.where(s > 0, np.right_shift(v, np.maximum(s, 0)), np.left_shift(v, np.maximum(-s, 0)))


def gelu(x: np.ndarray, fmt: Fmt, profile: Profile) -> np.ndarray:
    """GELU on raw activations: ``ReLU(x) - delta(|x|)``, ``delta`` tabulated, 0 beyond range."""
    tab = unit_tables(profile).gelu
    G = profile.units["gelu_lut_bits"]
    fd = profile.units["gelu_frac"]
    x = np.asarray(x, dtype=np.int64)
    a = np.abs(x)
    sh = fmt.frac - G
    k = a >> sh
    r = a & ((1 << sh) - 1)
    inside = k < len(tab) - 1
    kc = np.where(inside, k, 0)
    d = tab[kc] + rshift_round((tab[kc + 1] - tab[kc]) * r, sh)
    d = np.where(inside, rshift_round(d, fd - fmt.frac), 0)
    return np.maximum(x, 0) - d


def rdiv(a: np.ndarray, d: int) -> np.ndarray:
    """``a / d`` rounded half up, for a positive constant ``d`` (exact integer arithmetic)."""
    return np.floor_divide(2 * np.asarray(a, dtype=np.int64) + d, 2 * d)


def layernorm(
    x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float, profile: Profile
) -> np.ndarray:
    """LayerNorm of raw activations over the last axis (one pass for the statistics).

    One sweep accumulates ``S1 = sum x`` (exact), and over ``xs`` = x narrowed
    to ``ln_stat``, ``T1 = sum xs`` and ``T2 = sum xs^2``. Then
    ``mean = rdiv(S1 << Gm, D)`` (act fraction bits plus ``Gm = ln_mean_guard``),
    ``var = rdiv(D*T2 - T1^2, D^2) + eps`` (``2 * ln_stat.frac`` fraction bits,
    exact up to that rounding: no cancellation in ``E[x^2] - mean^2``),
    ``rstd`` from the rsqrt unit, ``z = ((x << Gm) - mean) * rstd`` in ``ln_norm`` and
    ``out = z * g + b`` in ``act``.
    """
    fa, fs = profile.act, profile.ln_stat
    fz, fl = profile.ln_norm, profile.ln
    R = profile.units["newton_frac"]
    x = np.asarray(x, dtype=np.int64)
    D = x.shape[-1]
    xs = saturate(rshift_round(x, fa.frac - fs.frac), fs)
    s1 = x.sum(axis=-1, keepdims=True)
    t1 = xs.sum(axis=-1, keepdims=True)
    t2 = (xs * xs).sum(axis=-1, keepdims=True)
    gm = profile.units["ln_mean_guard"]
    mean = rdiv(s1 << gm, D)
    eps_raw = ln_eps_raw(eps, profile)
    var = rdiv(D * t2 - t1 * t1, D * D) + eps_raw
    y, h = rsqrt(var, 2 * fs.frac, profile)
    z = saturate(shift_round(((x << gm) - mean) * y, fa.frac + gm + R + h - fz.frac), fz)
    acc = z * g + (np.asarray(b, dtype=np.int64) << fz.frac)
    return saturate(rshift_round(acc, fz.frac + fl.frac - fa.frac), fa)


def softmax_attend(s: np.ndarray, v: np.ndarray, profile: Profile, sat=None) -> np.ndarray:
    """Single-pass softmax and weighted sum, one sweep over the keys in order.

    Parameters
    ----------
    s : int64 (..., Nq, Nk)
        Raw scores (``attn_score``), base 2.
    v : int64 (..., Nk, d)
        Raw values (``attn_qkv``).
    sat : SatCounter, optional
        Counts values saturated by the final narrowing.

    Per query row, state ``m`` (running max, starts at the format minimum),
    ``S`` (sum, ``prob`` fraction bits) and ``acc`` (``prob`` x ``attn_qkv``
    fraction bits). For key ``j``: ``e = exp2(-|s_j - m|)``; on a new max
    ``c = e, p = 1``, else ``c = 1, p = e``; then ``S = round(S*c) + p``,
    ``acc = round(acc*c) + p*v_j``, ``m = max(m, s_j)``. At the end
    ``out = acc / S`` through the reciprocal unit (keeping ``attn_guard``
    bits of ``acc``), narrowed to ``act``.

    Returns
    -------
    int64 (..., Nq, d) raw ``act``.
    """
    fs, fq, fa = profile.attn_score, profile.attn_qkv, profile.act
    fp = profile.prob.frac
    one = 1 << fp
    nk = s.shape[-1]
    m = np.full(s.shape[:-1], fs.min_raw, dtype=np.int64)
    S = np.zeros(s.shape[:-1], dtype=np.int64)
    acc = np.zeros(s.shape[:-1] + v.shape[-1:], dtype=np.int64)
    for j in range(nk):
        sj = s[..., j]
        new = sj > m
        e = exp2(-np.abs(sj - m), fs.frac, profile)
        c = np.where(new, e, one)
        pj = np.where(new, one, e)
        S = rshift_round(S * c, fp) + pj
        acc = rshift_round(acc * c[..., None], fp) + pj[..., None] * v[..., j, None, :]
        m = np.maximum(m, sj)
    y, ps = reciprocal(S, profile)
    G = profile.units["attn_guard"]
    R = profile.units["newton_frac"]
    t = shift_round(acc, (ps - G)[..., None])
    out = rshift_round(t * y[..., None], fq.frac + R + G - fa.frac)
    return saturate(out, fa) if sat is None else sat.sat(out, fa, "attn")


def upsample2x(x: np.ndarray) -> np.ndarray:
    """Bilinear ×2 (``align_corners=False``) of raw feature maps ``(B, h, w, C)``, one step.

    ``out[2i+a, 2j+b] = (9·x[i,j] + 3·x[i',j] + 3·x[i,j'] + x[i',j'] + 8) >> 4`` with
    ``i' = i-1`` for ``a = 0`` and ``i+1`` for ``a = 1``, clamped to ``0 .. h-1`` (the
    same for ``j'``): torch's half-pixel weights 3/4 and 1/4 per axis, multiplied out
    to sixteenths and rounded once, half up. A convex combination: the result lies
    between the smallest and the largest input, so it keeps the input's format and
    never saturates. Returns int64 ``(B, 2h, 2w, C)``.
    """
    x = np.asarray(x, dtype=np.int64)

    def near(v: np.ndarray, axis: int, step: int) -> np.ndarray:
        n = v.shape[axis]
        idx = np.clip(np.arange(n) + step, 0, n - 1)
        return np.take(v, idx, axis=axis)

    b, h, w, c = x.shape
    out = np.empty((b, 2 * h, 2 * w, c), dtype=np.int64)
    for a, da in ((0, -1), (1, 1)):
        xi = near(x, 1, da)  # x[i', j]
        for bb, db in ((0, -1), (1, 1)):
            s = 9 * x + 3 * xi + 3 * near(x, 2, db) + near(xi, 2, db)
            out[:, a::2, bb::2] = (s + 8) >> 4
    return out
