"""The README's results table: its estimates are what ``edgemoe estimate`` prints, and its
measured figures are the ones of the docs page it links to."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from edgemoe.host.app.cli import main
from tests.docs.docs_blocks import README, ROOT


def _estimate(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / f"e{len(list(tmp_path.iterdir()))}.json"
    assert main(["estimate", *args, "--json", str(out)]) == 0
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text()


def _cell(readme: str, starts: str) -> str:
    """The figure cell (the link text) of the results row starting ``starts``."""
    rows = [ln for ln in readme.splitlines() if ln.startswith(starts)]
    assert len(rows) == 1, f"README: no single table row starting {starts!r}"
    m = re.search(r"\| \[([^\]]+)\]\(([^)]+)\) \|$", rows[0])
    assert m, rows[0]
    return m.group(1)


def test_estimate_rows(tmp_path, readme):
    many = _estimate(tmp_path)  # the default: one expert-major group of 16 images
    one = _estimate(tmp_path, "--batch", "1")
    assert _cell(readme, "| estimated backbone ms per image at 300 MHz, 16 images per call |") == (
        f"{many['latency_ms']:.2f}"
    )
    assert _cell(readme, "| estimated backbone ms per image at 300 MHz, 1 image per call |") == (
        f"{one['latency_ms']:.2f}"
    )
    c = one["clock"]
    assert _cell(readme, "| estimated clock after place and route: backbone") == (
        f"{c['latency_ms']:.2f} ms at {c['plausible_mhz']:g} MHz"
    )
    # end to end: the backbone at that many per call plus the decoder, per task-image
    dec = many["decoder"]
    for b, label in (("16", "16 images per call"), ("1", "1 image per call")):
        row = dec["per_call"][b]
        assert many["end_to_end_ms_per_task_image"][b] == row["ms_per_task_image"]
        assert _cell(
            readme, f"| estimated ms per task-image at 300 MHz, backbone + decoder, {label} |"
        ) == (
            f"{row['backbone_ms']:.2f} + {row['decoder_ms']:.2f} = {row['ms_per_task_image']:.2f}"
        )
    assert dec["per_call"]["1"]["backbone_ms"] == one["latency_ms"]
    macs = sum(dec["macs_per_task_image"].values())
    floor = (
        f"| physical floor per task-image at 300 MHz: {macs / 1e9:.3f} GMAC over "
        f"{many['resources']['dsp48e2']:,} DSP48E2 |"
    )
    assert _cell(readme, floor) == f"{many['floor_ms_per_task_image']:.2f}"
    assert (
        _cell(readme, "| target ≤ 35 ms per task-image at 16 images per call |")
        == (dec["target"]["verdict"])
    )
    assert dec["target"]["ms_per_task_image"] == 35 and dec["target"]["batch"] == 16
    ch = dec["chosen"]
    short = {"the classifier on the last convolution's band, on chip": "the classifier on chip"}
    label = " + ".join(short.get(o, o) for o in ch["options"]) or ch["what"]
    verdict = "meets the target" if ch["meets_target"] else "MISSES the target"
    chosen = "| estimated ms per task-image at 300 MHz, 16 images per call, the chosen next build: "
    assert _cell(readme, f"{chosen}{label} |") == f"{ch['ms_per_task_image']:.2f}, {verdict}"
    slow = many["clock"]
    assert _cell(
        readme, "| estimated clock after place and route: ms per task-image end to end, 16 "
    ) == (f"{slow['end_to_end_ms_per_task_image']['16']:.2f} ms at {slow['plausible_mhz']:g} MHz")
    r, u = many["resources"], many["resources"]["utilisation"]
    assert _cell(readme, "| estimated resources with the decoder: LUT / DSP48E2 / BRAM36 |") == (
        f"{r['lut_estimate']:,} ({100 * u['lut']:.0f} %) / "
        f"{r['dsp48e2']:,} ({100 * u['dsp']:.0f} %) / "
        f"{r['bram36']:g} ({100 * u['bram36']:.0f} %)"
    )


def _results_row(starts: str) -> list[str]:
    text = (ROOT / "docs" / "results.md").read_text()
    rows = [ln for ln in text.splitlines() if ln.startswith(starts)]
    assert len(rows) == 1, f"docs/results.md: no single row starting {starts!r}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


def test_measured_rows_are_the_results_page(readme):
    """The accuracy and fidelity figures are docs/results.md's recorded ones."""
    torch = _results_row("| torch | float |")
    golden = _results_row("| golden | lean |")
    miou, abs_rel = 2, 6  # columns of the accuracy table
    assert _cell(readme, "| semseg mIoU") == f"{torch[miou]} / {golden[miou]}"
    assert _cell(readme, "| depth abs_rel") == f"{torch[abs_rel]} / {golden[abs_rel]}"
    fid = _results_row("| tiny (shipped) | lean | semseg |")
    assert _cell(readme, "| golden against PyTorch") == f"{fid[3]} / {fid[5]}"
