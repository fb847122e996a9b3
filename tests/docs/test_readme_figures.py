"""The README's performance figures are the ones ``edgemoe estimate`` prints (issue 15)."""

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


def test_default_build_row_and_batch_curve(tmp_path, readme, capsys):
    d = _estimate(tmp_path)
    r, u = d["resources"], d["resources"]["utilisation"]
    row = _row(readme, "| `edgemoe` default:")
    assert f"**{d['latency_ms']:.2f}** ({d['call_ms']:.1f} per call)" in row
    assert f"{r['dsp48e2']:,} ({100 * u['dsp']:.0f} %)" in row
    assert f"{r['bram36']:g} ({100 * u['bram36']:.0f} %)" in row
    assert f"{r['uram']} ({100 * u['uram']:.0f} %)" in row
    assert r["fits"] and "| yes |" in row
    curve = ", ".join(f"{c['batch']} → {c['ms_per_image']:.2f}" for c in d["batch_curve"])
    assert curve in re.sub(r"\s+", " ", readme), curve
    units = ", ".join(f"{k} {v}" for k, v in r["dsp48e2_by_unit"].items())
    text = re.sub(r"\s+", " ", readme)
    for k, v in r["dsp48e2_by_unit"].items():
        name = {"attention units": "attention row units", "layernorm": "LayerNorm"}.get(k, k)
        assert f"{name} {v}" in text, units


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
def test_other_rows(tmp_path, readme, capsys, starts, args, fmt):
    d = _estimate(tmp_path, *args)
    assert fmt.format(lat=d["latency_ms"], call=d["call_ms"]) in _row(readme, starts)
