"""Tile sizes of a build and the pre-tiled weight order the linear unit consumes.

The unified linear unit (docs/design.md) does ``LIN_IN x LIN_OUT`` MACs per
cycle. A weight matrix ``W (out, in)`` is zero-padded to whole tiles and
stored tile by tile, output tiles outermost, input tiles inside, each tile
row-major as ``[i][o]`` (``LIN_IN`` rows of ``LIN_OUT`` weights): the order in
which the kernel reads it, so every matrix is one long burst and nothing is
re-tiled on chip.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edgemoe.errors import ConfigError


@dataclass(frozen=True)
class Tiling:
    """Build-time sizes of the datapath.

    Attributes
    ----------
    lin_in, lin_out : int
        Linear-unit tile: inputs and outputs per cycle (``LIN_IN x LIN_OUT`` MACs).
    p : int
        Attention query rows kept on chip per key sweep (``P``).
    axi_bits : int
        Width of one m_axi word.
    """

    # The default deployment (edgemoe estimate): 768 linear-unit MACs and one attention
    # row unit. With the resource model counting what the C++ builds, two row units take
    # 81.5 % of the ZCU104's DSPs (over the 80 % limit); one leaves every resource within
    # its limit with headroom (DSP 70 %, LUT 63 %) at about 9 % more latency.
    lin_in: int = 32
    lin_out: int = 24
    p: int = 1
    axi_bits: int = 128

    def __post_init__(self) -> None:
        for name in ("lin_in", "lin_out", "p"):
            v = getattr(self, name)
            if not 1 <= v <= 255:  # the bundle header holds each size in 8 bits
                raise ConfigError(f"tile size {name}={v} outside 1..255")
        if self.axi_bits not in (64, 128, 256, 512):
            raise ConfigError(f"axi_bits={self.axi_bits} must be 64, 128, 256 or 512")
        if (2 * self.lin_in * self.lin_out) % (self.axi_bits // 8):
            # the linear unit fetches a tile one bus word per cycle, tiles back to back
            raise ConfigError(
                f"a {self.lin_in}x{self.lin_out} tile of 16-bit weights is not whole "
                f"{self.axi_bits}-bit words"
            )

    @property
    def key(self) -> str:
        return f"{self.lin_in}x{self.lin_out}-p{self.p}-axi{self.axi_bits}"

    @property
    def word(self) -> int:
        """The packed tiling word, ``LIN_IN | LIN_OUT << 8 | P << 16``: the bundle header
        field and the kernel's ``TILING_WORD`` (the one place it is computed)."""
        return self.lin_in | self.lin_out << 8 | self.p << 16

    @classmethod
    def parse(cls, text: str, p: int, axi_bits: int = 128, flag: str = "--tiling") -> Tiling:
        """The tiling of ``--tiling LIN_INxLIN_OUT`` (with ``--p``): the one spelling of the
        option, for ``export``, ``estimate`` and the parameter-header generator."""
        m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
        if not m:
            raise ConfigError(f"{flag} {text!r}: expected LIN_INxLIN_OUT, e.g. 32x32")
        return cls(int(m.group(1)), int(m.group(2)), p, axi_bits)

    @classmethod
    def from_word(cls, word: int, axi_bits: int = 128) -> Tiling:
        """The tiling a packed word names (inverse of :attr:`word`)."""
        lin_in, lin_out, p = word_sizes(word)
        return cls(lin_in, lin_out, p, axi_bits)


def word_sizes(word: int) -> tuple[int, int, int]:
    """``(lin_in, lin_out, p)`` of a packed tiling word, without checking them."""
    return word & 0xFF, word >> 8 & 0xFF, word >> 16 & 0xFF


def word_text(word: int) -> str:
    """A packed tiling word as ``LIN_INxLIN_OUT pP`` (for error messages)."""
    lin_in, lin_out, p = word_sizes(word)
    return f"{lin_in}x{lin_out} p{p}"


DEFAULT_TILING = Tiling()


def tiles(n: int, t: int) -> int:
    return -(-n // t)


def tile_weight(w: np.ndarray, t: Tiling) -> np.ndarray:
    """``W (out, in)`` -> flat array in the linear unit's read order (zero padded)."""
    o, k = w.shape
    ot, it = tiles(o, t.lin_out), tiles(k, t.lin_in)
    pad = np.zeros((ot * t.lin_out, it * t.lin_in), dtype=w.dtype)
    pad[:o, :k] = w
    # (ot, LO, it, LI) -> (ot, it, LI, LO)
    blocks = pad.reshape(ot, t.lin_out, it, t.lin_in).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(blocks).reshape(-1)


def untile_weight(flat: np.ndarray, shape: tuple[int, int], t: Tiling) -> np.ndarray:
    """Inverse of :func:`tile_weight`."""
    o, k = shape
    ot, it = tiles(o, t.lin_out), tiles(k, t.lin_in)
    blocks = flat.reshape(ot, it, t.lin_in, t.lin_out).transpose(0, 3, 1, 2)
    return blocks.reshape(ot * t.lin_out, it * t.lin_in)[:o, :k]


def tile_conv_weight(w: np.ndarray, taps: int, t: Tiling) -> np.ndarray:
    """A convolution's weights ``(out, taps·C)`` (im2col order: tap-major) tiled as a
    linear tensor of ``taps·C'`` inputs, each tap's ``C`` channels zero-padded to
    ``C'`` = whole input tiles: every input tile of the unit then reads one tap."""
    o, k = w.shape
    c = k // taps
    cp = tiles(c, t.lin_in) * t.lin_in
    pad = np.zeros((o, taps, cp), dtype=w.dtype)
    pad[:, :, :c] = w.reshape(o, taps, c)
    return tile_weight(pad.reshape(o, taps * cp), t)


def untile_conv_weight(flat: np.ndarray, shape: tuple[int, int, int], t: Tiling) -> np.ndarray:
    """Inverse of :func:`tile_conv_weight` for logical ``shape`` ``(out, taps, C)``:
    ``(out, taps·C)``."""
    o, taps, c = shape
    cp = tiles(c, t.lin_in) * t.lin_in
    a = untile_weight(flat, (o, taps * cp), t).reshape(o, taps, cp)
    return a[:, :, :c].reshape(o, taps * c)


def pad_vector(b: np.ndarray, t: Tiling) -> np.ndarray:
    """A bias ``(out,)`` padded to whole output tiles."""
    out = np.zeros(tiles(len(b), t.lin_out) * t.lin_out, dtype=b.dtype)
    out[: len(b)] = b
    return out
