"""Docs that cannot rot: what the site says about the estimate and the contracts is what the
code computes.

The performance page quotes no estimate figure by hand: its tables and listing come from
``docs/_ext/edgemoe_docs.py``, which runs the command line at build time. These tests
check that the generator prints exactly what ``edgemoe estimate`` prints, that the page
holds no hand-typed latency, and that the tables of the design page (register map, status
codes, bundle header) and the stated defaults match the contracts.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from edgemoe.host.contracts import regmap
from edgemoe.host.contracts.kernel import ARGS
from edgemoe.host.contracts.scratch import MAX_GROUP
from edgemoe.host.contracts.tiling import DEFAULT_TILING
from edgemoe.host.export import bundle
from tests.docs.docs_blocks import DOCS, ROOT


@pytest.fixture(scope="module")
def ext():
    spec = importlib.util.spec_from_file_location("edgemoe_docs", DOCS / "_ext" / "edgemoe_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def page(name: str) -> str:
    return (DOCS / name).read_text()


def _table_rows(text: str, after: str) -> list[list[str]]:
    """The body rows of the first Markdown table after the line containing ``after``."""
    lines = text[text.index(after) :].splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip("|").split("|")])
    return rows


def _plain(cell: str) -> str:
    return cell.strip("`")


def test_the_generated_listing_is_what_the_command_prints(ext):
    """``{estimate-output} estimate`` is ``edgemoe estimate``'s stdout, byte for byte."""
    generated = ext.estimate_stdout(["estimate"])
    cli = ROOT / ".venv" / "bin" / "edgemoe"
    argv = [str(cli)] if cli.exists() else [sys.executable, "-m", "edgemoe.host.app.cli"]
    printed = subprocess.run(
        [*argv, "estimate"], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert generated == printed
    assert "```{estimate-output} estimate" in page("performance.md")


def test_summary_rows_are_the_estimate(ext, tmp_path):
    """A summary row's cells are the figures ``edgemoe estimate`` prints for its arguments."""
    out = tmp_path / "e.json"
    text = ext.estimate_stdout(["estimate", "--batch", "1", "--p", "1", "--json", str(out)])
    row = ext.summary_row("x", json.loads(out.read_text()))
    printed = re.search(r"latency_ms per image \(estimate\) ([\d.]+)\s+call_ms ([\d.]+)", text)
    assert row[1] == f"{float(printed.group(1)):.2f}" and row[2] == f"{float(printed.group(2)):.1f}"
    res = re.search(r"LUT~([\d,]+) \((\d+)%\)", text)
    assert row[4] == f"{res.group(1)} ({res.group(2)} %)"
    dsp = re.search(r"DSP48E2 (\d+) \((\d+)%\)", text)
    assert row[5] == f"{int(dsp.group(1)):,} ({dsp.group(2)} %)"
    assert row[8].split(":")[0] == ("yes" if "fits: True" in text else "no")


def test_every_summary_line_parses(ext):
    """Each ``label | args`` line of the performance page is valid ``estimate`` arguments."""
    text = page("performance.md")
    bodies = re.findall(r"```\{estimate-summary\}\n(.*?)```", text, re.S)
    lines = [ln for body in bodies for ln in body.splitlines() if ln.strip()]
    assert len(lines) >= 6
    from edgemoe.host.app.cli import build_parser

    for ln in lines:
        label, sep, args = ln.partition("|")
        assert sep and label.strip(), ln
        parsed = build_parser().parse_args(["estimate", *args.split()])
        stated = re.search(r"\bP = (\d+)", label)
        if stated and "--design" not in args:  # the P of this design's arguments
            p = DEFAULT_TILING.p if parsed.p is None else parsed.p
            assert int(stated.group(1)) == p, ln


def test_no_hand_typed_latency_on_the_performance_page():
    """Only the published design's measured demo time is quoted; the rest is generated."""
    text = page("performance.md")
    quoted = re.findall(r"\d+(?:\.\d+)?\s*ms\b", text)
    assert quoted == ["59 ms"], quoted


def test_fit_limits_and_clock_rule_are_the_estimates(ext):
    """The limits and the clock rule the performance page states are those the command uses."""
    out = ext.estimate_stdout(["estimate"])
    limits = re.search(r"^limit\s+(\d+)%\s+(\d+)%\s+(\d+)%\s+(\d+)%\s+(\d+)%", out, re.M).groups()
    lut, ff, dsp, bram, uram = limits
    text = re.sub(r"\s+", " ", page("performance.md"))
    assert f"DSP ≤ {dsp} %, LUT ≤ {lut} %, FF ≤ {ff} %, BRAM36 and URAM ≤ {bram} %" in text
    assert bram == uram
    rule = re.search(r"<= (\d+) % (\d+), > \d+ % (\d+), > (\d+) % (\d+) MHz", out).groups()
    keep, target, mid, high, low = rule
    assert f"at most {keep} % the {target} MHz target is kept" in text
    assert f"above {keep} % {mid} MHz" in text and f"above {high} % {low} MHz" in text


def test_register_map_table():
    rows = _table_rows(page("design.md"), "the register table below")
    fixed = {"CTRL": regmap.CTRL, "GIE": regmap.GIE, "IER": regmap.IER, "ISR": regmap.ISR}
    regs = {r.name: r for r in regmap.kernel_register_map().registers}
    assert [_plain(r[1]) for r in rows] == [*fixed, *regs]
    for offset, name, access, _ in rows:
        offset, name = _plain(offset), _plain(name)
        if name in fixed:
            assert int(offset, 16) == fixed[name], name
            continue
        r = regs[name]
        assert int(offset, 16) == r.offset, name
        assert (access == "read only") == r.readonly, name
    bits = {"ap_start": regmap.AP_START, "ap_done": regmap.AP_DONE, "ap_idle": regmap.AP_IDLE}
    bits |= {"ap_ready": regmap.AP_READY, "auto_restart": regmap.AUTO_RESTART}
    ctrl = rows[0][3]
    for name, mask in bits.items():
        assert f"bit {mask.bit_length() - 1} `{name}`" in ctrl, name


def test_argument_and_status_tables():
    text = page("design.md")
    args = _table_rows(text, "Its arguments, in declaration order")
    assert [_plain(a[0]) for a in args] == [a.name for a in ARGS]
    for row, a in zip(args, ARGS, strict=True):
        assert row[1] == ("pointer" if a.kind == "ptr" else a.kind), a.name
    status = _table_rows(text, "the status table below")
    want = [[str(s.code), s.name, s.meaning] for s in regmap.STATUS_TABLE]
    assert [[_plain(c) for c in row] for row in status] == want


def test_bundle_header_and_defaults():
    text = page("design.md")
    header = _table_rows(text, "64-byte header (little-endian)")
    offsets = [int(r[0]) for r in header]
    fields = re.findall(r"[IHQ]", bundle.HEADER_STRUCT.format)
    width = {"I": 4, "H": 2, "Q": 8}
    expect = [sum(width[f] for f in fields[:i]) for i in range(len(fields))]
    assert offsets == [*expect, bundle.HEADER_STRUCT.size]  # the fields, then reserved
    assert bundle.HEADER_BYTES == 64 and "64-byte header" in text
    assert bundle.MAGIC.to_bytes(4, "little").decode() in header[0][1]
    assert f"groups of up to {MAX_GROUP}" in re.sub(r"\s+", " ", text).replace("**", "")
    configs = re.sub(r"\s+", " ", page("configs.md"))
    t = DEFAULT_TILING
    assert f"default `{t.lin_in}x{t.lin_out}`: {t.lin_in * t.lin_out} MACs per cycle" in configs
    assert f"query rows kept on chip (default {t.p})" in configs
