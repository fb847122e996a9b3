"""Sphinx directives that put ``edgemoe estimate``'s own output into the docs.

The performance pages quote no estimate figure by hand: each table and listing is
produced at build time by the command line itself (``edgemoe.host.app.cli.main``),
so the docs always say what ``edgemoe estimate`` prints for the same arguments.

``estimate-output``
    The argument line (``estimate --batch 1``); the body is the command's stdout.
``estimate-summary``
    One row per content line, ``label | args``: ms per image, ms per call, the
    plausible clock's latency and the resource use with the fit verdict.
"""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import tempfile
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive
from sphinx.application import Sphinx


def estimate_stdout(args: list[str]) -> str:
    """What ``edgemoe <args>`` prints on stdout (a subcommand of the CLI).

    Parameters
    ----------
    args : list of str
        The command line after ``edgemoe``, e.g. ``["estimate", "--batch", "1"]``.

    Returns
    -------
    str
        The printed text.
    """
    from edgemoe.host.app.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(args)
    if code != 0:
        raise RuntimeError(f"edgemoe {shlex.join(args)} exited {code}")
    return out.getvalue()


def estimate_json(args: list[str]) -> dict:
    """``edgemoe estimate <args> --json``, read back.

    Parameters
    ----------
    args : list of str
        Options of ``edgemoe estimate``.

    Returns
    -------
    dict
        The estimate as the command writes it.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "estimate.json"
        estimate_stdout(["estimate", *args, "--json", str(path)])
        return json.loads(path.read_text())


def summary_row(label: str, d: dict) -> list[str]:
    """The cells of one ``estimate-summary`` row.

    Parameters
    ----------
    label : str
        The row's first cell.
    d : dict
        ``edgemoe estimate --json`` of the row's arguments.

    Returns
    -------
    list of str
        label, ms per image, ms per call, the plausible clock's figure, LUT, DSP48E2,
        BRAM36, URAM and whether the build fits.
    """
    r = d["resources"]
    u = r["utilisation"]
    clock = d["clock"]
    fits = "yes" if r["fits"] else "no: " + ", ".join(k.upper() for k in r["over"])
    return [
        label,
        f"{d['latency_ms']:.2f}",
        f"{d['call_ms']:.1f}",
        f"{clock['latency_ms']:.2f} at {clock['plausible_mhz']:g} MHz",
        f"{r['lut_estimate']:,} ({100 * u['lut']:.0f} %)",
        f"{r['dsp48e2']:,} ({100 * u['dsp']:.0f} %)",
        f"{r['bram36']:g} ({100 * u['bram36']:.0f} %)",
        f"{r['uram']} ({100 * u['uram']:.0f} %)",
        fits,
    ]


SUMMARY_HEADER = [
    "build (estimate)",
    "ms per image",
    "ms per call",
    "at the plausible clock",
    "LUT",
    "DSP48E2",
    "BRAM36",
    "URAM",
    "fits",
]


def summary_rows(lines: list[str]) -> list[list[str]]:
    """The rows of an ``estimate-summary`` directive's content (``label | args``)."""
    rows = []
    for line in lines:
        if not line.strip():
            continue
        label, _, args = line.partition("|")
        rows.append(summary_row(label.strip(), estimate_json(shlex.split(args))))
    return rows


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
    table = nodes.table(classes=["estimate-table"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group.extend(nodes.colspec(colwidth=1) for _ in header)
    head = nodes.thead()
    body = nodes.tbody()
    group += head
    group += body
    for target, cells in ((head, [header]), (body, rows)):
        for cells_of_row in cells:
            row = nodes.row()
            for text in cells_of_row:
                row += nodes.entry("", nodes.paragraph(text=text))
            target += row
    return table


class EstimateOutput(Directive):
    """The stdout of ``edgemoe <arguments>``, as a literal block."""

    required_arguments = 1
    final_argument_whitespace = True

    def run(self) -> list[nodes.Node]:
        text = estimate_stdout(shlex.split(self.arguments[0])).rstrip("\n")
        return [nodes.literal_block(text, text)]


class EstimateSummary(Directive):
    """A table of ``edgemoe estimate`` runs, one per content line."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        return [_table(SUMMARY_HEADER, summary_rows(list(self.content)))]


def setup(app: Sphinx) -> dict:
    """Register the directives."""
    app.add_directive("estimate-output", EstimateOutput)
    app.add_directive("estimate-summary", EstimateSummary)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
