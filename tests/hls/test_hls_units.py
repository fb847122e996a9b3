"""C++ nonlinear units (hls/tb/tb_units.cpp) == golden, bit for bit, over input sweeps."""

import functools
import subprocess

import numpy as np
import pytest

from edgemoe.host.contracts.fixedpoint import Fmt
from edgemoe.sim import csim, units
from tests.conftest import cfg, profile

PROFILES = ["edge-moe", "lean"]


@functools.cache
def tb_units(pname: str):
    """Build tb_units for (mini, profile) once; returns a runner."""
    c, p = cfg("m3vit-mini"), profile(pname)
    out = csim.CACHE / f"tb_units_{pname}"
    exe = csim.build_testbench("tb_units", c, p, out)

    def run(unit: str, values: np.ndarray) -> np.ndarray:
        src, dst = out / f"{unit}.in", out / f"{unit}.out"
        np.asarray(values, dtype="<i8").tofile(src)
        subprocess.run([str(exe), unit, str(src), str(dst)], check=True)
        return np.fromfile(dst, dtype="<i8")

    return run


@pytest.mark.parametrize("pname", PROFILES)
def test_exp2_sweep(pname):
    p = profile(pname)
    fs = p.attn_score
    x = np.arange(-(40 << fs.frac), 1, dtype=np.int64)  # every input down to 2^-40
    got = tb_units(pname)("exp2", x).reshape(-1, 3)
    mant, n = units.exp2_parts(x, fs.frac, p)
    assert (got[:, 0] == mant).all() and (got[:, 1] == n).all()
    assert (got[:, 2] == units.exp2(x, fs.frac, p)).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_reciprocal_sweep(pname):
    p = profile(pname)
    s = np.concatenate(
        [np.arange(1, 1 << 20), np.random.default_rng(0).integers(1, 2**62, 200_000)]
    )
    got = tb_units(pname)("recip", s).reshape(-1, 2)
    y, e = units.reciprocal(s, p)
    assert (got[:, 0] == y).all() and (got[:, 1] == e).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_rsqrt_sweep(pname):
    p = profile(pname)
    v = np.concatenate(
        [np.arange(1, 1 << 20), np.random.default_rng(1).integers(1, 2**62, 200_000)]
    )
    got = tb_units(pname)("rsqrt", v).reshape(-1, 2)
    y, h = units.rsqrt(v, 2 * p.ln_stat.frac, p)
    assert (got[:, 0] == y).all() and (got[:, 1] == h).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_epilogue_shift_by_the_scale_table(pname):
    """The per-call shifts (scale.h) == golden's narrowing of acc + aligned addend, over
    every binary point export may choose and sums of both signs near every rounding tie."""
    from edgemoe.host.contracts.fixedpoint import rshift_round
    from edgemoe.host.export.quantize import MAX_SHIFT

    p = profile(pname)
    rng = np.random.default_rng(0)
    rows, want = [], []
    for f_in, f_out in ((p.act.frac, p.act.frac), (p.act.frac, p.attn_qkv.frac),
                        (p.act.frac, p.attn_score.frac), (p.pixel.frac, p.act.frac)):  # fmt: skip
        for f_w in range(max(0, f_out - f_in), MAX_SHIFT - f_in + 1):
            acc_f = f_in + f_w
            for f_b in sorted({0, acc_f, acc_f // 2, max(acc_f - 20, 0)}):
                s_b, s_o = acc_f - f_b, acc_f - f_out
                lim = 1 << 40
                acc = np.concatenate([rng.integers(-lim, lim, 6), [0, -1, 1]])
                if s_o >= 1:  # exact ties, both signs
                    acc = np.concatenate([acc, [(3 << s_o) >> 1, -((3 << s_o) >> 1)]])
                b = rng.integers(-(1 << 15), 1 << 15, acc.size) >> min(s_b, 15)
                acc = np.clip(acc, -lim, lim) >> max(0, s_b - 20)
                for a, bb in zip(acc, b, strict=True):
                    rows.append([a, bb, f_w | f_b << 8, f_in, f_out])
                    want.append(rshift_round(np.int64(a) + (np.int64(bb) << s_b), s_o))
    got = tb_units(pname)("scale", np.asarray(rows, dtype=np.int64).ravel())
    assert (got == np.asarray(want, dtype=np.int64)).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_gelu_sweep(pname):
    p = profile(pname)
    fa = p.act
    step = max(1, (32 << fa.frac) // 2_000_000)
    x = np.concatenate(
        [
            np.arange(-(16 << fa.frac), 16 << fa.frac, step, dtype=np.int64),
            np.arange(-4096, 4096, dtype=np.int64),  # every value around 0
            np.linspace(fa.min_raw, fa.max_raw, 10_001).astype(np.int64),
        ]
    )
    assert (tb_units(pname)("gelu", x) == units.gelu(x, fa, p)).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_layernorm_tokens(pname):
    p = profile(pname)
    d = cfg("m3vit-mini").embed_dim
    rng = np.random.default_rng(2)
    g, _, _ = p.ln.quantize(rng.uniform(-2, 2, d))
    b, _, _ = p.ln.quantize(rng.uniform(-1, 1, d))
    toks = []
    for mu, sd in ((0, 1), (3, 0.1), (-20, 5), (0, 0.01), (0, 30), (100, 1), (0, 0)):
        x, _, _ = p.act.quantize(rng.normal(mu, sd, (200, d)))
        toks.append(x)
    x = np.concatenate(toks + [np.full((1, d), p.act.max_raw), np.full((1, d), p.act.min_raw)])
    got = tb_units(pname)("layernorm", np.concatenate([g, b, x.ravel()])).reshape(-1, d)
    assert (got == units.layernorm(x, g, b, 1e-6, p)).all()


@pytest.mark.parametrize("pname", PROFILES)
def test_softmax_rows(pname):
    """Single-pass softmax rows, including rising maxima and the format's extremes."""
    p = profile(pname)
    c = cfg("m3vit-mini")
    n, hd = c.num_tokens, c.head_dim
    fs = p.attn_score
    rng = np.random.default_rng(3)
    rows = [rng.normal(0, s, (300, n)) for s in (0.01, 1, 8, 64)]
    rows.append(np.sort(rng.normal(0, 4, (50, n)), axis=-1))
    s = np.concatenate([fs.quantize(r)[0] for r in rows])
    s = np.concatenate(
        [
            s,
            np.full((1, n), fs.min_raw),
            np.full((1, n), fs.max_raw),
            np.tile([fs.min_raw, fs.max_raw], (2, n))[:, :n],
        ]
    )
    got = tb_units(pname)("softmax", s.ravel()).reshape(-1, hd)
    v = np.zeros((n, hd), dtype=np.int64)
    v[np.arange(min(n, hd)), np.arange(min(n, hd))] = 1 << p.attn_qkv.frac
    assert (got == units.softmax_attend(s, v, p)).all()


def test_fmt_sanity():
    assert Fmt(17, 1, False).max_raw == 2**17 - 1
