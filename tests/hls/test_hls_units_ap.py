"""The nonlinear units in the synthesis arithmetic == golden, bit for bit.

``hls/tb/tb_units_ap.cpp`` is the unit testbench built with exact-width ``ap_int`` types
(``EDGEMOE_AP_TYPES``): every state, adder and shifter at the width the kernel declares for
it. A width narrower than the value it holds wraps (a wrong result) or trips the C-sim's
range check (the testbench aborts); either fails here. The tiny config covers the
LayerNorm division by an odd part (D = 192 = 3 * 2^6) and the 129-key softmax sums.
"""

import functools
import subprocess

import numpy as np
import pytest

from edgemoe.sim import csim, units
from tests.conftest import cfg, profile

BUILDS = [("m3vit-mini", "lean"), ("m3vit-tiny-128x256", "edge-moe")]


@functools.cache
def tb_units_ap(cname: str, pname: str):
    """Build tb_units_ap for (config, profile) once; returns a runner."""
    out = csim.CACHE / f"tb_units_ap_{cname}_{pname}"
    exe = csim.build_testbench("tb_units_ap", cfg(cname), profile(pname), out)

    def run(unit: str, values: np.ndarray) -> np.ndarray:
        src, dst = out / f"{unit}.in", out / f"{unit}.out"
        np.asarray(values, dtype="<i8").tofile(src)
        subprocess.run([str(exe), unit, str(src), str(dst)], check=True)
        return np.fromfile(dst, dtype="<i8")

    return run


@pytest.mark.parametrize(("cname", "pname"), BUILDS)
def test_exp2_and_newton_units(cname, pname):
    p = profile(pname)
    run = tb_units_ap(cname, pname)
    fs = p.attn_score
    x = np.arange(-(40 << fs.frac), 1, 7, dtype=np.int64)
    got = run("exp2", x).reshape(-1, 3)
    mant, n = units.exp2_parts(x, fs.frac, p)
    assert (got[:, 0] == mant).all() and (got[:, 1] == n).all()
    assert (got[:, 2] == units.exp2(x, fs.frac, p)).all()
    s = np.concatenate([np.arange(1, 1 << 16), np.random.default_rng(0).integers(1, 2**62, 50_000)])
    got = run("recip", s).reshape(-1, 2)
    y, e = units.reciprocal(s, p)
    assert (got[:, 0] == y).all() and (got[:, 1] == e).all()
    got = run("rsqrt", s).reshape(-1, 2)
    y, h = units.rsqrt(s, 2 * p.ln_stat.frac, p)
    assert (got[:, 0] == y).all() and (got[:, 1] == h).all()


@pytest.mark.parametrize(("cname", "pname"), BUILDS)
def test_layernorm_tokens(cname, pname):
    p = profile(pname)
    d = cfg(cname).embed_dim
    rng = np.random.default_rng(2)
    g, _, _ = p.ln.quantize(rng.uniform(-2, 2, d))
    b, _, _ = p.ln.quantize(rng.uniform(-1, 1, d))
    toks = [
        p.act.quantize(rng.normal(mu, sd, (60, d)))[0]
        for mu, sd in ((0, 1), (3, 0.1), (-20, 5), (0, 0.01), (0, 30), (100, 1), (0, 0))
    ]
    extremes = [np.full((1, d), p.act.max_raw), np.full((1, d), p.act.min_raw)]
    alternate = np.tile([p.act.min_raw, p.act.max_raw], (1, d))[:, :d]  # the largest variance
    x = np.concatenate(toks + extremes + [alternate])
    got = tb_units_ap(cname, pname)("layernorm", np.concatenate([g, b, x.ravel()]))
    assert (got.reshape(-1, d) == units.layernorm(x, g, b, 1e-6, p)).all()


@pytest.mark.parametrize(("cname", "pname"), BUILDS)
def test_softmax_rows(cname, pname):
    """Rising maxima, flat rows at the format's extremes: the running sums at their bounds."""
    p = profile(pname)
    c = cfg(cname)
    n, hd = c.num_tokens, c.head_dim
    fs = p.attn_score
    rng = np.random.default_rng(3)
    rows = [rng.normal(0, s, (40, n)) for s in (0.01, 1, 8, 64)]
    rows.append(np.sort(rng.normal(0, 4, (20, n)), axis=-1))
    s = np.concatenate([fs.quantize(r)[0] for r in rows])
    s = np.concatenate(
        [
            s,
            np.full((1, n), fs.min_raw),
            np.full((1, n), fs.max_raw),
            np.tile([fs.min_raw, fs.max_raw], (2, n))[:, :n],
        ]
    )
    got = tb_units_ap(cname, pname)("softmax", s.ravel()).reshape(-1, hd)
    v = np.zeros((n, hd), dtype=np.int64)
    v[np.arange(min(n, hd)), np.arange(min(n, hd))] = 1 << p.attn_qkv.frac
    assert (got == units.softmax_attend(s, v, p)).all()


@pytest.mark.parametrize(("cname", "pname"), BUILDS)
def test_softmax_rows_with_extreme_values(cname, pname):
    """V at the format's extremes: the accumulators reach their declared bound."""
    p = profile(pname)
    c = cfg(cname)
    n, hd = c.num_tokens, c.head_dim
    fq, fs = p.attn_qkv, p.attn_score
    rng = np.random.default_rng(4)
    v = np.where(rng.random((n, hd)) < 0.5, fq.min_raw, fq.max_raw).astype(np.int64)
    v[:, 0], v[:, 1] = fq.min_raw, fq.max_raw  # every key at one extreme, per column
    rows = [np.zeros((1, n)), np.sort(rng.normal(0, 4, (4, n)), axis=-1), rng.normal(0, 64, (8, n))]
    s = np.concatenate([fs.quantize(r)[0] for r in rows] + [np.full((1, n), fs.max_raw)])
    got = tb_units_ap(cname, pname)("softmax_v", np.concatenate([v.ravel(), s.ravel()]))
    assert (got.reshape(-1, hd) == units.softmax_attend(s, v, p)).all()
