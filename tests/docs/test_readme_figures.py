"""The README's performance figures are the ones ``edgemoe estimate`` prints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgemoe.host.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _estimate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"e{len(list(tmp_path.iterdir()))}.json"
    assert main(["estimate", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def readme() -> str:
    return (ROOT / "README.md").read_text()


def _row(readme: str, starts: str) -> str:
    rows = [ln for ln in readme.splitlines() if ln.startswith(starts)]
    assert len(rows) == 1, f"README: no single table row starting {starts!r}"
    return rows[0]


def _fits(r: dict) -> str:
    return "yes" if r["fits"] else "no: " + ", ".join(k.upper() for k in r["over"])


def _resource_cells(r: dict) -> list[str]:
    u = r["utilisation"]
    return [
        f"{r['lut_estimate']:,} ({100 * u['lut']:.0f} %)",
        f"{r['ff_estimate']:,} ({100 * u['ff']:.0f} %)",
        f"{r['dsp48e2']:,} ({100 * u['dsp']:.0f} %)",
        f"{r['bram36']:g} ({100 * u['bram36']:.0f} %)",
        f"{r['uram']} ({100 * u['uram']:.0f} %)",
        f"| {_fits(r)} |",
    ]


def _clock_cell(d: dict) -> str:
    c = d["clock"]
    return f"| {c['latency_ms']:.2f} at {c['plausible_mhz']:g} MHz |"


@pytest.mark.parametrize(
    "starts, args",
    [
        ("| `edgemoe` default:", []),
        ("| lean, LIN 32×24, P = 2 (`--p 2`)", ["--p", "2"]),
    ],
)
def test_build_rows_and_unit_table(tmp_path, readme, starts, args):
    d = _estimate(tmp_path, *args)
    r = d["resources"]
    row = _row(readme, starts)
    assert f"**{d['latency_ms']:.2f}** ({d['call_ms']:.1f} per call)" in row
    assert _clock_cell(d) in row
    for cell in _resource_cells(r):
        assert cell in row, cell
    if args:
        return
    curve = ", ".join(f"{c['batch']} → {c['ms_per_image']:.2f}" for c in d["batch_curve"])
    text = re.sub(r"\s+", " ", readme)
    assert curve in text, curve
    for k, v in r["dsp48e2_by_unit"].items():
        name = {"attention units": "attention row units", "layernorm": "LayerNorm"}.get(k, k)
        assert f"{name} {v}" in text, (k, v)
    # the per-unit table, as printed
    for unit, u in r["by_unit"].items():
        cells = f"| {unit} | {u['lut']:,} | {u['ff']:,} | {u['dsp']:,} | {u['bram36']:g} | "
        assert _row(readme, f"| {unit} |").startswith(cells + f"{u['uram']} |"), unit
    total = _row(readme, "| **total** |")
    for k, v in (("lut", r["lut_estimate"]), ("ff", r["ff_estimate"]), ("dsp", r["dsp48e2"])):
        assert f"**{v:,}** ({100 * r['utilisation'][k]:.1f} %)" in total, k


@pytest.mark.parametrize(
    "starts, args, fmt",
    [
        ("| the same, 8 images per call |", ["--batch", "8"], "{lat:.2f} ({call:.1f} per call)"),
        ("| the same, 1 image per call |", ["--batch", "1"], "| {lat:.2f} |"),
        (
            "| what-if: weights over 4 HP ports",
            ["--batch", "1", "--weight-ports", "4"],
            "| {lat:.2f} |",
        ),
        (
            "| `edge-moe-published`:",
            ["--design", "edge-moe-published", "--board", "zcu102"],
            "| {lat:.1f} |",
        ),
    ],
)
def test_other_rows(tmp_path, readme, starts, args, fmt):
    d = _estimate(tmp_path, *args)
    rows = [ln for ln in readme.splitlines() if ln.startswith(starts)]
    assert rows, starts
    assert fmt.format(lat=d["latency_ms"], call=d["call_ms"]) in rows[0]


def test_one_image_rows_at_both_clocks(tmp_path, readme):
    """Each build's 1-image row: its latency at 300 MHz and at the plausible clock."""
    lines = readme.splitlines()
    for build, args in (("| `edgemoe` default:", []), ("| lean, LIN 32×24, P = 2", ["--p", "2"])):
        d = _estimate(tmp_path, "--batch", "1", *args)
        at = next(i for i, ln in enumerate(lines) if ln.startswith(build))
        row = lines[at + (2 if not args else 1)]
        assert row.startswith("| the same, 1 image per call |"), row
        assert f"| {d['latency_ms']:.2f} |" in row and _clock_cell(d) in row
