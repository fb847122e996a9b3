"""Fixed-point formats and the round-half-up + saturate narrowing rule."""

from fractions import Fraction
from math import floor

import numpy as np
import pytest

from edgemoe.errors import ConfigError
from edgemoe.host.contracts.fixedpoint import Fmt, narrow, rshift_round, saturate
from edgemoe.sim.golden import int_matmul
from edgemoe.sim.units import bit_length, rdiv, shift_round


def test_parse_and_ranges():
    f = Fmt.parse("fixed<32,10>")
    assert (f.width, f.int_bits, f.signed, f.frac) == (32, 10, True, 22)
    assert (f.min_raw, f.max_raw) == (-(2**31), 2**31 - 1)
    u = Fmt.parse("ufixed<8,0>")
    assert (u.min_raw, u.max_raw, u.frac) == (0, 255, 8)
    assert str(u) == "ufixed<8,0>"
    for bad in ("fixed<32>", "float", "fixed<99,3>", "fixed<1,1>"):
        with pytest.raises(ConfigError):
            Fmt.parse(bad)


def test_rshift_round_is_round_half_up():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.integers(-(2**40), 2**40, 5000), np.arange(-64, 65)])
    for s in (1, 2, 5, 17):
        got = rshift_round(v, s)
        want = [floor(Fraction(int(x), 2**s) + Fraction(1, 2)) for x in v]
        assert (got == np.array(want)).all()
    assert (rshift_round(v, 0) == v).all()
    assert (rshift_round(v, -3) == v * 8).all()
    # per-element shifts agree with scalar ones
    s = rng.integers(-4, 20, v.size)
    want = np.array([rshift_round(np.array([x]), int(k))[0] for x, k in zip(v, s, strict=True)])
    assert (shift_round(v, s) == want).all()


def test_quantize_rounds_and_saturates_with_report():
    f = Fmt(8, 2)  # lsb 1/64, range [-2, 2 - 1/64]
    raw, n, worst = f.quantize(np.array([0.5 / 64, -0.5 / 64, 1.0, 3.0, -2.5, 1.99]))
    assert raw.tolist() == [1, 0, 64, 127, -128, 127]
    assert n == 2
    assert worst == pytest.approx(1.0 + 1 / 64)
    assert (narrow(np.array([1000, -1000, 5, 6]), 8, f) == [127, -128, 1, 2]).all()
    assert (saturate(np.array([300, -300]), Fmt(8, 8, False)) == [255, 0]).all()


def test_int_matmul_exact_beyond_2_53():
    rng = np.random.default_rng(1)
    x = rng.integers(-(2**31), 2**31, (7, 1536))
    w = rng.integers(-(2**15), 2**15, (1536, 5))
    got = int_matmul(x, w)
    want = np.array(
        [[sum(int(a) * int(b) for a, b in zip(r, c, strict=True)) for c in w.T] for r in x]
    )
    assert (got == want).all()
    assert np.abs(x).max() * np.abs(w).max() * x.shape[1] > 2**53  # the split path ran
    big = np.full((2, 1536), 2**31 - 1)
    big[1] = -(2**31)
    wmax = np.full((1536, 1), 2**15 - 1)
    assert int_matmul(big, wmax)[:, 0].tolist() == [
        (2**31 - 1) * (2**15 - 1) * 1536,
        -(2**31) * (2**15 - 1) * 1536,
    ]


def test_bit_length_and_rdiv():
    v = np.array([1, 2, 3, 255, 256, 2**52 - 1, 2**53 + 1, 2**62 - 1, 2**62], dtype=np.int64)
    assert bit_length(v).tolist() == [int(x).bit_length() for x in v]
    a = np.arange(-1000, 1000)
    for d in (3, 32, 192, 384):
        want = [floor(Fraction(int(x), d) + Fraction(1, 2)) for x in a]
        assert rdiv(a, d).tolist() == want
