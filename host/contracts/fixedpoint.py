"""Fixed-point formats and the one narrowing rule every implementation follows.

A value in format ``fixed<W,I>`` is held as its raw integer ``r`` and means
``r * 2**-(W-I)``. Products are exact; every narrowing (accumulator to a stored
format, any shift to fewer fraction bits) rounds half up -- ``floor(x + 1/2)``,
Vitis HLS ``AP_RND`` -- and saturates to the target width (``AP_SAT``). The HLS
C++ implements the same two operations on raw integers; golden and C-sim are
bit-exact because both use exactly these definitions (docs/numerics.md).

A profile may leave a format's binary point to export: ``fixed<W,*>`` is W bits
wide with a binary point chosen per tensor (:meth:`Fmt.fit`: the fewest integer
bits that hold the tensor), which the bundle carries beside the tensor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgemoe.errors import ConfigError

_FMT_RE = re.compile(r"^\s*(u?)fixed\s*<\s*(\d+)\s*,\s*(-?\d+|\*)\s*>\s*$")


@dataclass(frozen=True)
class Fmt:
    """A fixed-point format, like ``ap_fixed<width, int_bits>``.

    Attributes
    ----------
    width : int
        Total bits, 1..64.
    int_bits : int or None
        Integer bits (the sign bit included when signed); may exceed ``width``
        or be negative, as in ``ap_fixed``. ``None`` (written ``*``): chosen per
        tensor at export (:meth:`fit`); such a format has a width only.
    signed : bool
        Two's complement when true.
    """

    width: int
    int_bits: int | None
    signed: bool = True

    @classmethod
    def parse(cls, text: str, what: str = "format") -> Fmt:
        """Parse ``"fixed<W,I>"`` or ``"ufixed<W,I>"``."""
        m = _FMT_RE.match(str(text))
        if not m:
            raise ConfigError(f"{what}: {text!r} is not fixed<W,I> or ufixed<W,I>")
        ib = None if m.group(3) == "*" else int(m.group(3))
        fmt = cls(int(m.group(2)), ib, not m.group(1))
        if not 2 <= fmt.width <= 48:
            raise ConfigError(f"{what}: width {fmt.width} outside 2..48")
        return fmt

    @property
    def per_tensor(self) -> bool:
        """Whether the binary point is chosen per tensor (``fixed<W,*>``)."""
        return self.int_bits is None

    @property
    def frac(self) -> int:
        """Fraction bits ``F``: one LSB is ``2**-F``."""
        if self.int_bits is None:
            raise ValueError(f"{self} has no binary point of its own (chosen per tensor)")
        return self.width - self.int_bits

    def with_frac(self, frac: int) -> Fmt:
        """The same width and signedness with ``frac`` fraction bits."""
        return Fmt(self.width, self.width - frac, self.signed)

    def fit(self, x: np.ndarray, default_int_bits: int = 1) -> Fmt:
        """This width with the fewest integer bits that hold every value of ``x``.

        The power-of-two scale of a per-tensor format (docs/numerics.md: the profile
        gives the width, export the binary point): no value of ``x`` saturates
        after rounding to nearest, and one integer bit less would saturate one.
        An all-zero ``x`` gets ``default_int_bits``.
        """
        a = np.asarray(x, dtype=np.float64)
        if a.size == 0 or not np.any(a):
            return Fmt(self.width, default_int_bits, self.signed)
        hi, lo = float(a.max()), float(a.min())
        mag = max(abs(hi), abs(lo))
        ib = int(np.floor(np.log2(mag)))  # too few: one integer bit short at least
        while True:
            f = Fmt(self.width, ib, self.signed)
            if (
                np.floor(hi * 2.0**f.frac + 0.5) <= f.max_raw
                and np.floor(lo * 2.0**f.frac + 0.5) >= f.min_raw
            ):
                return f
            ib += 1

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
        ib = "*" if self.int_bits is None else self.int_bits
        return f"{'' if self.signed else 'u'}fixed<{self.width},{ib}>"

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
