"""Constant tables of the nonlinear units (docs/numerics.md), as raw integers.

They are defined once, here: the golden model indexes these arrays and the
generated HLS config header carries the same values as literals, so the two
implementations cannot drift apart on a last-bit rounding of a float function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edgemoe.host.contracts.profile import Profile


def _round(x: float) -> int:
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class UnitTables:
    """Raw tables for one profile.

    Attributes
    ----------
    exp2 : ndarray
        ``2**(-k / 2**L) * 2**exp2_frac`` for ``k = 0..2**L`` (both ends, for interpolation).
    recip : ndarray
        Seeds of ``1/m`` for ``m`` in ``[1, 2)``, midpoint of each of ``2**L`` intervals,
        with ``newton_frac`` fraction bits.
    rsqrt : ndarray
        Seeds of ``1/sqrt(m)`` for ``m`` in ``[1, 4)``, ``3 * 2**(L-1)`` intervals of
        width ``2**-(L-1)``, midpoints, ``newton_frac`` fraction bits.
    gelu : ndarray
        ``delta(t) = t * Phi(-t)`` at ``t = k / 2**G`` for ``k = 0..range * 2**G``,
        with ``gelu_frac`` fraction bits.
    """

    exp2: np.ndarray
    recip: np.ndarray
    rsqrt: np.ndarray
    gelu: np.ndarray


def gelu_delta(t: float) -> float:
    """``t * Phi(-t)``: what exact GELU subtracts from ReLU at ``|x| = t``."""
    return t * 0.5 * math.erfc(t / math.sqrt(2.0))


@lru_cache(maxsize=16)
def _build(units_key: tuple) -> UnitTables:
    u = dict(units_key)
    le, fe = u["exp2_lut_bits"], u["exp2_frac"]
    exp2 = [_round(2.0 ** (-k / 2**le) * 2**fe) for k in range(2**le + 1)]
    lr, r = u["recip_lut_bits"], u["newton_frac"]
    recip = [_round(2**r / (1.0 + (i + 0.5) / 2**lr)) for i in range(2**lr)]
    ls = u["rsqrt_lut_bits"]
    half = 2 ** (ls - 1)
    rsqrt = [_round(2**r / math.sqrt((i + half + 0.5) / half)) for i in range(3 * half)]
    lg, fg, tg = u["gelu_lut_bits"], u["gelu_frac"], u["gelu_range"]
    gelu = [_round(gelu_delta(k / 2**lg) * 2**fg) for k in range(tg * 2**lg + 1)]
    arrays = [np.asarray(a, dtype=np.int64) for a in (exp2, recip, rsqrt, gelu)]
    for a in arrays:
        a.flags.writeable = False
    return UnitTables(*arrays)


def unit_tables(profile: Profile) -> UnitTables:
    """Tables for ``profile`` (built once per distinct set of unit widths)."""
    return _build(tuple(sorted(profile.units.items())))


def ln_eps_raw(eps: float, profile: Profile) -> int:
    """LayerNorm epsilon in the variance's format (``2 * ln_stat.frac`` fraction bits), >= 1."""
    return max(1, _round(eps * 2.0 ** (2 * profile.formats["ln_stat"].frac)))
