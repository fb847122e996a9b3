"""Shared fixtures: configs, profiles and seeded models, built once per session."""

from __future__ import annotations

import functools

import pytest

from edgemoe.host.contracts.profile import load_profile
from edgemoe.models import load_config

#: Where reference files that the repository does not ship are (the published Edge-MoE
#: design's ``.hwh`` and argument list): the folder named by ``EDGEMOE_TESTDATA``, or
#: None, and the tests that need them skip.
TESTDATA = (
    __import__("pathlib").Path(__import__("os").environ["EDGEMOE_TESTDATA"])
    if __import__("os").environ.get("EDGEMOE_TESTDATA")
    else None
)
#: The skip reason of a test that needs a file of TESTDATA.
TESTDATA_MISSING = "set EDGEMOE_TESTDATA to the folder holding Edge-MoE's edge-moe-zcu102.hwh"


@functools.cache
def cfg(name: str):
    return load_config(name)


@functools.cache
def profile(name: str):
    return load_profile(name)


@functools.cache
def model(cfg_name: str, seed: int, style: str = "m3vit"):
    from edgemoe.models.m3vit import random_model

    return random_model(cfg(cfg_name), seed, style)


@pytest.fixture
def mini():
    return cfg("m3vit-mini")


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    """A bad input: exit code 2 and exactly one line on stderr naming the problem."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("edgemoe: error: ")
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


def zero_gates(cfg, model) -> None:
    """Every gate weight 0: all logits tie, every token goes to experts 0 and 1."""
    for b in cfg.moe_blocks:
        for g in model.blocks[b].mlp.gate.values():
            g.w_gate.zero_()


def one_expert_takes_all(cfg, model, expert: int = 3) -> None:
    """LN2 outputs a constant (gamma 0, beta 1) and the gate favours one expert."""
    for b in cfg.moe_blocks:
        blk = model.blocks[b]
        blk.norm2.weight.zero_()
        blk.norm2.bias.fill_(1.0)
        for g in blk.mlp.gate.values():
            g.w_gate.zero_()
            g.w_gate[:, expert] = 0.05


def tcl_is_complete(text: str) -> bool:
    """Whether tclsh parses ``text`` as complete Tcl (balanced braces, quotes, brackets)."""
    import subprocess

    run = subprocess.run(
        ["tclsh"],
        input=f"puts [info complete {{{text}}}]\n",
        capture_output=True,
        text=True,
        check=True,
    )
    return run.stdout.strip() == "1"
