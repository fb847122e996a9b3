"""Backends describe themselves: verify, bench, run and --help read the capabilities.

A fake backend registered here (an ``edgemoe.backends`` entry point added for the
test) shows that nothing keys on a backend's name.
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib.metadata import EntryPoint

import pytest

from edgemoe.host.app import bench
from edgemoe.host.app.cli import main
from edgemoe.host.driver import backends
from edgemoe.host.driver.backends import DATAPATH, Capabilities, backend_capabilities
from edgemoe.sim.backend import GoldenBackend
from tests.conftest import assert_one_line_error

_GOLDEN = GoldenBackend.capabilities


class ExactFake(GoldenBackend):
    """Golden under another name, declaring itself bit-exact with the datapath."""

    name = "fake-exact"
    capabilities = replace(
        _GOLDEN,
        summary="a fake that promises bit-exactness",
        timed="the fake's own timer",
        setup="the fake's set-up",
        first_call="the fake's first call",
        heap_traced=False,
    )


class LooseFake(GoldenBackend):
    """Golden again, but promising no bit-exact group: verify must use the budgets."""

    name = "fake-loose"
    capabilities = replace(_GOLDEN, summary="a fixed-point fake with a budget", exact_group=None)


FAKES = {"fake-exact": ExactFake, "fake-loose": LooseFake}


@pytest.fixture
def fakes(monkeypatch):
    real = backends.entry_points

    def with_fakes(group: str):
        eps = list(real(group=group))
        if group == backends.ENTRY_POINT_GROUP:
            eps += [EntryPoint(n, f"{__name__}:{c.__name__}", group) for n, c in FAKES.items()]
        return eps

    monkeypatch.setattr(backends, "entry_points", with_fakes)


def test_every_installed_backend_declares_capabilities():
    for name in backends.backend_names():
        caps = backend_capabilities(name)
        assert isinstance(caps, Capabilities) and caps.summary and caps.timed, name
    assert not backend_capabilities("torch").fixed_point
    for name in ("golden", "csim-direct", "csim"):
        assert backend_capabilities(name).exact_group == DATAPATH
    assert backend_capabilities("csim").drives_board
    assert not backend_capabilities("csim-direct").any_tiling


def _verify(tmp_path, names: str) -> dict:
    out = tmp_path / f"{names}.json"
    args = ["verify", "--config", "m3vit-mini", "--backends", names, "--json", str(out)]
    assert main(args) == 0
    return json.loads(out.read_text())["pairs"][names.replace(",", "-")]


def test_verify_follows_the_declared_exact_group(fakes, tmp_path, capsys):
    exact = _verify(tmp_path, "golden,fake-exact")
    assert exact["bit_exact"] and exact["first_difference"] is None
    # both fixed point, but the fake promises no bit-exactness: the budget applies
    loose = _verify(tmp_path, "golden,fake-loose")
    assert "bit_exact" not in loose and loose["within_budget"]


def test_bench_rows_follow_the_declared_notes(fakes):
    from edgemoe.host.export.deployment import WeightSource

    job = bench.BenchJob(
        "fake-exact", "m3vit-mini", "lean", "semseg", 0, 5, "/nowhere", WeightSource(None, None, 0)
    )
    raw = {
        "times_s": [0.01] * 5,
        "walls_s": [0.02] * 5,
        "warmup_s": 0.01,
        "warmup_wall_s": 0.5,
        "setup_s": 0.1,
        "rss_at_start_mb": 1.0,
        "peak_rss_mb": 2.0,
        "py_heap_peak_mb": None,
        "torch_threads": None,
        "notes": [],
    }
    row = bench._row(job, raw)
    assert row.timed == "the fake's own timer"
    assert "set-up: the fake's set-up" in row.notes
    assert "first-call extra: the fake's first call" in row.notes
    assert not bench.capabilities("fake-exact").heap_traced


@pytest.mark.parametrize("command", ["run", "verify", "bench", "eval"])
def test_help_lists_the_installed_backends_from_their_capabilities(fakes, capsys, command):
    assert main([command, "--help"]) == 0
    text = "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens
    for name in ("torch", "golden", "csim", "fake-exact"):
        want = f"{name} ({backend_capabilities(name).summary})"
        assert "".join(want.split()) in text, (command, name)


def test_run_options_follow_the_capabilities(fakes, capsys):
    # fake-exact drives no board: --timeout is refused, naming the driver backends
    code = main(["run", "--config", "m3vit-mini", "--backend", "fake-exact", "--timeout", "5"])
    assert_one_line_error(code, capsys.readouterr().err, "--timeout", "csim", "'fake-exact'")
