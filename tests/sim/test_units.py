"""Nonlinear units vs float64 over their whole input range (their error budgets)."""

import math

import numpy as np
import pytest

from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.sim import units
from tests.conftest import profile

# Budgets, by name (the design's for the first four; the last two are ours).
EXP2_REL_BUDGET = 1e-4  # on [-24, 0], before the final narrowing to `prob`
RECIPROCAL_REL_BUDGET = 1e-4
RSQRT_REL_BUDGET = 1e-4
GELU_ABS_BUDGET = 1e-4  # all x, output rounding to `act` included
SOFTMAX_ROW_ABS_BUDGET = 1e-4  # each probability of a row, vs float64 softmax
LAYERNORM_ABS_BUDGET = 1e-3  # each output, tokens with std >= 0.05, gamma 1, beta 0
LAYERNORM_LOW_STD_ABS_BUDGET = 1e-2  # tokens with std 0.01: ~80 LSBs of `ln_stat`

PROFILES = ["edge-moe", "lean"]
worst: dict[str, float] = {}


def report(name: str, value: float) -> None:
    worst[name] = max(worst.get(name, 0.0), value)
    print(f"{name}: worst {value:.3e}")


@pytest.mark.parametrize("pname", PROFILES)
def test_exp2_relative_error(pname):
    p = profile(pname)
    fs = p.attn_score
    x = np.arange(-24 << fs.frac, 1, dtype=np.int64)  # every representable input
    mant, n = units.exp2_parts(x, fs.frac, p)
    val = mant * np.exp2(-(p.units["exp2_frac"] + n).astype(np.float64))
    err = np.abs(val / np.exp2(x / 2.0**fs.frac) - 1).max()
    report(f"exp2[{pname}]", err)
    assert err <= EXP2_REL_BUDGET
    # stored probability: within half an LSB plus the relative budget
    pr = units.exp2(x, fs.frac, p) * p.prob.lsb
    ref = np.exp2(x / 2.0**fs.frac)
    assert (np.abs(pr - ref) <= p.prob.lsb / 2 + EXP2_REL_BUDGET * ref).all()
    assert units.exp2(np.array([0]), fs.frac, p)[0] == 1 << p.prob.frac


@pytest.mark.parametrize("pname", PROFILES)
def test_reciprocal_relative_error(pname):
    p = profile(pname)
    R = p.units["newton_frac"]
    s = np.concatenate([np.arange(1, 1 << 21), np.random.default_rng(0).integers(1, 2**62, 10**6)])
    y, e = units.reciprocal(s, p)
    err = np.abs(y * np.exp2(-(R + e).astype(np.float64)) * s.astype(np.float64) - 1).max()
    report(f"reciprocal[{pname}]", err)
    assert err <= RECIPROCAL_REL_BUDGET


@pytest.mark.parametrize("pname", PROFILES)
def test_rsqrt_relative_error(pname):
    p = profile(pname)
    R = p.units["newton_frac"]
    v = np.concatenate([np.arange(1, 1 << 21), np.random.default_rng(1).integers(1, 2**62, 10**6)])
    for frac in (0, 7, 2 * p.ln_stat.frac):
        y, h = units.rsqrt(v, frac, p)
        val = y * np.exp2(-(R + h).astype(np.float64))
        err = np.abs(val * np.sqrt(v * 2.0**-frac) - 1).max()
        report(f"rsqrt[{pname}]", err)
        assert err <= RSQRT_REL_BUDGET


@pytest.mark.parametrize("pname", PROFILES)
def test_gelu_absolute_error(pname):
    p = profile(pname)
    fa = p.act
    # every input in [-12, 12] (subsampled on the wide profile), then the full range coarsely
    step = max(1, (24 << fa.frac) // 4_000_000)
    x = np.concatenate(
        [
            np.arange(-(12 << fa.frac), 12 << fa.frac, step, dtype=np.int64),
            np.linspace(fa.min_raw, fa.max_raw, 100_001).astype(np.int64),
        ]
    )
    g = units.gelu(x, fa, p) * fa.lsb
    xf = x * fa.lsb
    erf = np.vectorize(math.erf)
    err = np.abs(g - 0.5 * xf * (1 + erf(xf / math.sqrt(2)))).max()
    report(f"gelu[{pname}]", err)
    assert err <= GELU_ABS_BUDGET


@pytest.mark.parametrize("pname", PROFILES)
def test_softmax_rows(pname):
    """Single-pass softmax: attend with V = identity reads the probabilities back."""
    p = profile(pname)
    fs, fq = p.attn_score, p.attn_qkv
    rng = np.random.default_rng(2)
    nk = 64
    rows = []
    for spread in (0.01, 1.0, 4.0, 16.0, 200.0):  # base-2 units
        rows.append(rng.normal(0, spread, (40, nk)))
    rows.append(np.zeros((1, nk)))  # all equal
    rows.append(np.sort(rng.normal(0, 4, (8, nk)), axis=-1))  # max rises on every key
    s_f = np.concatenate(rows)
    s, _, _ = fs.quantize(s_f)
    v = np.eye(nk, dtype=np.int64) << fq.frac  # one-hot values of 1.0
    out = units.softmax_attend(s, v, p) * p.act.lsb
    sf = s * fs.lsb
    ref = np.exp2(sf - sf.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    err = np.abs(out - ref).max()
    report(f"softmax_row[{pname}]", err)
    assert err <= SOFTMAX_ROW_ABS_BUDGET


@pytest.mark.parametrize("pname", PROFILES)
def test_layernorm(pname):
    p = profile(pname)
    fa = p.act
    rng = np.random.default_rng(3)
    d = 192
    one, _, _ = p.ln.quantize(np.ones(d))
    zero = np.zeros(d, dtype=np.int64)

    def run(x):
        out = units.layernorm(x, one, zero, 1e-6, p) * fa.lsb
        xf = x * fa.lsb
        mu = xf.mean(-1, keepdims=True)
        ref = (xf - mu) / np.sqrt(((xf - mu) ** 2).mean(-1, keepdims=True) + 1e-6)
        return np.abs(out - ref).max(), ref

    cases = ((0, 1), (3, 0.1), (-20, 5), (0, 0.05), (0, 30), (100, 1))
    x, _, _ = fa.quantize(np.concatenate([rng.normal(mu, sd, (50, d)) for mu, sd in cases]))
    err, ref = run(x)
    report(f"layernorm[{pname}]", err)
    assert err <= LAYERNORM_ABS_BUDGET
    low, _, _ = fa.quantize(rng.normal(0, 0.01, (50, d)))
    err_low, _ = run(low)
    report(f"layernorm_std0.01[{pname}]", err_low)
    assert err_low <= LAYERNORM_LOW_STD_ABS_BUDGET
    const = np.full((2, d), 12345, dtype=np.int64)  # zero variance: eps keeps it finite
    assert (units.layernorm(const, one, zero, 1e-6, p) == 0).all()
    # gamma/beta path
    g, _, _ = p.ln.quantize(rng.uniform(-2, 2, d))
    b, _, _ = p.ln.quantize(rng.uniform(-1, 1, d))
    out2 = units.layernorm(x, g, b, 1e-6, p) * fa.lsb
    ref2 = ref * (g * p.ln.lsb) + b * p.ln.lsb
    assert np.abs(out2 - ref2).max() <= 2 * LAYERNORM_ABS_BUDGET + fa.lsb


def test_units_exact_on_small_formats():
    """Structural identities that must hold whatever the tables."""
    p = profile("lean")
    y, e = units.reciprocal(np.array([1, 2, 4, 1 << 40]), p)
    R = p.units["newton_frac"]
    assert e.tolist() == [0, 1, 2, 40]  # leading-one detect
    assert (np.abs(y - (1 << R)) <= RECIPROCAL_REL_BUDGET * (1 << R)).all()
    assert units.gelu(np.array([0]), p.act, p)[0] == 0
    big = np.array([20 << p.act.frac, -(20 << p.act.frac)])
    assert units.gelu(big, p.act, p).tolist() == [20 << p.act.frac, 0]
    assert Fmt(17, 1, False).max_raw >= 1 << 16
