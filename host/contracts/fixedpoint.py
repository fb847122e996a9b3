"""Fixed-point formats and the one narrowing rule every implementation follows.

A value in format ``fixed<W,I>`` is held as its raw integer ``r`` and means
``r * 2**-(W-I)``. Products are exact; every narrowing (accumulator to a stored
format, any shift to fewer fraction bits) rounds half up -- ``floor(x + 1/2)``,
Vitis HLS ``AP_RND`` -- and saturates to the target width (``AP_SAT``). The HLS
C++ implements the same two operations on raw integers; golden and C-sim are
bit-exact because both use exactly these definitions (DESIGN.md §3.3).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgemoe.errors import ConfigError

_FMT_RE = re.compile(r"^\s*(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+)\s*>\s*$")


@dataclass(frozen=True)
class Fmt:
    """A fixed-point format, like ``ap_fixed<width, int_bits>``.

    Attributes
    ----------
    width : int
        Total bits, 1..64.
    int_bits : int
        Integer bits (the sign bit included when signed); may exceed ``width``
        or be negative, as in ``ap_fixed``.
    signed : bool
        Two's complement when true.
    """

    width: int
    int_bits: int
    signed: bool = True

    @classmethod
    def parse(cls, text: str, what: str = "format") -> Fmt:
        """Parse ``"fixed<W,I>"`` or ``"ufixed<W,I>"``."""
        m = _FMT_RE.match(str(text))
        if not m:
            raise ConfigError(f"{what}: {text!r} is not fixed<W,I> or ufixed<W,I>")
        fmt = cls(int(m.group(2)), int(m.group(3)), not m.group(1))
        if not 2 <= fmt.width <= 48:
            raise ConfigError(f"{what}: width {fmt.width} outside 2..48")
        return fmt

    @property
    def frac(self) -> int:
        """Fraction bits ``F``: one LSB is ``2**-F``."""
        return self.width - self.int_bits

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def lsb(self) -> float:
        return 2.0 ** (-self.frac)

    @property
    def max_value(self) -> float:
        return self.max_raw * self.lsb

    @property
    def magnitude_bits(self) -> int:
        """Bits of ``max |raw|``: ``width - 1`` signed, ``width`` unsigned."""
        return self.width - 1 if self.signed else self.width

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}fixed<{self.width},{self.int_bits}>"

    # -- float <-> raw ---------------------------------------------------
    def quantize(self, x: np.ndarray) -> tuple[np.ndarray, int, float]:
        """Round to nearest (half up) and saturate float values to raw integers.

        Returns
        -------
        raw : np.ndarray of int64
        saturated : int
            How many values did not fit.
        worst_overflow : float
            Largest ``|x| - max representable`` among them (0.0 if none).
        """
        x = np.asarray(x, dtype=np.float64)
        raw = np.floor(x * 2.0**self.frac + 0.5)
        lo, hi = self.min_raw, self.max_raw
        over = (raw > hi) | (raw < lo)
        n = int(over.sum())
        worst = 0.0
        if n:
            excess = np.maximum(raw - hi, lo - raw)[over] * self.lsb
            worst = float(excess.max())
        return np.clip(raw, lo, hi).astype(np.int64), n, worst

    def to_float(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64) * self.lsb


def rshift_round(v: np.ndarray, s: int | np.ndarray) -> np.ndarray:
    """``round(v / 2**s)`` with ties toward +inf, on int64; ``s <= 0`` shifts left (exact)."""
    v = np.asarray(v, dtype=np.int64)
    if np.ndim(s) == 0:
        s = int(s)
        if s <= 0:
            return v << -s
        return (v + (1 << (s - 1))) >> s
    s = np.asarray(s, dtype=np.int64)
    if (s < 0).any():
        raise ValueError("per-element shifts must be >= 0")
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return np.right_shift(v + half, s)


def saturate(v: np.ndarray, fmt: Fmt) -> np.ndarray:
    """Clip raw integers to the range of ``fmt``."""
    return np.clip(np.asarray(v, dtype=np.int64), fmt.min_raw, fmt.max_raw)


def narrow(v: np.ndarray, frac_in: int, fmt: Fmt) -> np.ndarray:
    """Narrow raw ``v`` (``frac_in`` fraction bits) into ``fmt``: round, then saturate."""
    return saturate(rshift_round(v, frac_in - fmt.frac), fmt)
