"""Check Vitis HLS synthesis reports: clock, the II of every pipelined loop, the units that
must exist once, and the resources.

Reads the XML reports that ``csynth_design`` (or ``v++ -c --mode hls``) writes to
``<solution>/syn/report/``: ``csynth.xml`` for the top and one ``<module>_csynth.xml``
per synthesised module (pipelined loops are outlined into modules named
``<top>_Pipeline_<loop>``). Fails (exit 1) when

* the estimated clock period of any module exceeds the target period, or the
  report was synthesised for another period than the one asked for;
* a pipelined loop's achieved II (``<PipelineII>``) is above its target II;
* a unit that the design has exactly once (``--single``, default: the linear unit and
  the lane pair: ``linear_unit``, ``lane_step``, ``lanes``, ``side_lane``,
  ``linear_lane``) appears more than once -- or not at all -- among the instances of
  the top's ``<RTLDesignHierarchy>`` (a copy is a second instance of the module, or a
  module of the same name with a ``_N`` suffix; a unit that is missing was inlined or
  renamed, and what cannot be counted does not pass);
* DSP, BRAM_18K or URAM use (``<AreaEstimates><Resources>``) is above ``--max-util``
  percent (default 85) of ``<AvailableResources>``, LUT use above ``--max-lut`` (default
  75) or FF use above ``--max-ff`` (default 60): past those shares, placement and routing
  at 300 MHz are unlikely to close, whatever csynth's own clock estimate says.

The target II of a loop comes from ``--ii LOOP=N`` if given, else from the
"Initiation Interval achieved / target" columns of the module's text report
(``<module>_csynth.rpt``), else ``--default-target-ii`` (1: docs/design.md targets
II = 1 everywhere). Standard library only, so it runs without the project's venv::

    python scripts/check_hls_reports.py build/hls --clock-ns 3.333
"""

from __future__ import annotations

import argparse
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: Tolerance when comparing periods: reports print 2-3 decimals (3.333 -> "3.33").
CLOCK_TOL_NS = 0.01
#: Units the design has exactly once (hls/README.md: module hierarchy).
SINGLE_UNITS = ("linear_unit", "lane_step", "lanes", "side_lane", "linear_lane")
#: Resources gated, as csynth.xml names them (older reports say DSP48E).
GATED_RESOURCES = (
    ("DSP", ("DSP", "DSP48E")),
    ("BRAM_18K", ("BRAM_18K",)),
    ("URAM", ("URAM",)),
    ("LUT", ("LUT",)),
    ("FF", ("FF",)),
)
#: Highest share of DSP, BRAM_18K and URAM, percent.
MAX_UTIL_PCT = 85.0
#: Highest share of LUT and of FF, percent (ZCU104: 230,400 LUT, 460,800 FF).
MAX_LUT_PCT = 75.0
MAX_FF_PCT = 60.0


@dataclass(frozen=True)
class LoopReport:
    """One loop of one module, as the XML report gives it."""

    module: str
    name: str
    achieved_ii: int | None  # None: not pipelined, or II not a number ("undef")
    pipelined: bool
    issue: str = ""  # IssueType of the loop's violation summary, "" if none


@dataclass
class ModuleReport:
    """One ``*_csynth.xml``."""

    path: Path
    module: str
    part: str
    target_clock_ns: float | None
    uncertainty_ns: float | None
    estimated_clock_ns: float | None
    loops: list[LoopReport] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)  # AreaEstimates/Resources
    available: dict[str, float] = field(default_factory=dict)  # AreaEstimates/AvailableResources
    instances: list[str] | None = None  # module of every instance below the top; None: no tree


@dataclass(frozen=True)
class Row:
    """One line of the result table."""

    item: str
    achieved: str
    target: str
    ok: bool
    note: str = ""


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


_LOOP_FIELDS = {
    "Slack",
    "TripCount",
    "Latency",
    "AbsoluteTimeLatency",
    "IterationLatency",
    "PipelineII",
    "PipelineDepth",
    "PipelineType",
    "InstanceList",
    "Name",
    "unit",
}


def _loops(elem: ET.Element, module: str, issues: Mapping[str, str]) -> Iterator[LoopReport]:
    """Loops are child elements named after the loop; nested loops nest."""
    for child in elem:
        if child.tag in _LOOP_FIELDS:
            continue
        name = child.findtext("Name") or child.tag
        ii_text = child.findtext("PipelineII")
        yield LoopReport(
            module=module,
            name=name,
            achieved_ii=_int(ii_text),
            pipelined=ii_text is not None,
            issue=issues.get(name, ""),
        )
        yield from _loops(child, module, issues)


def _loop_issues(perf: ET.Element | None) -> dict[str, str]:
    issues: dict[str, str] = {}
    if perf is None:
        return issues
    for holder in perf.iter("SummaryOfLoopViolations"):
        for elem in holder.iter():
            issue = elem.findtext("IssueType")
            if elem is not holder and issue and issue.strip() not in ("", "-"):
                issues[elem.findtext("Name") or elem.tag] = issue.strip()
    return issues


def parse_csynth_xml(path: Path) -> ModuleReport:
    """Parse one ``csynth.xml`` / ``<module>_csynth.xml``."""
    root = ET.parse(path).getroot()
    ua = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    module = (ua.findtext("TopModelName") if ua is not None else None) or path.stem
    report = ModuleReport(
        path=path,
        module=module.strip(),
        part=(ua.findtext("Part") or "").strip() if ua is not None else "",
        target_clock_ns=_float(ua.findtext("TargetClockPeriod")) if ua is not None else None,
        uncertainty_ns=_float(ua.findtext("ClockUncertainty")) if ua is not None else None,
        estimated_clock_ns=_float(root.findtext(".//SummaryOfTimingAnalysis/EstimatedClockPeriod")),
    )
    latency = perf.find("SummaryOfLoopLatency") if perf is not None else None
    if latency is not None:
        report.loops = list(_loops(latency, report.module, _loop_issues(perf)))
    area = root.find("AreaEstimates")
    if area is not None:
        pairs = (("Resources", report.resources), ("AvailableResources", report.available))
        for tag, target in pairs:
            holder = area.find(tag)
            for elem in holder if holder is not None else ():
                value = _float(elem.text)
                if value is not None:
                    target[elem.tag] = value
    hierarchy = root.find("RTLDesignHierarchy/TopModule")
    if hierarchy is not None:
        report.instances = [
            (inst.findtext("ModuleName") or "").strip() for inst in hierarchy.iter("Instance")
        ]
    return report


def count_instances(instances: Sequence[str], unit: str) -> int:
    """Instances of ``unit``'s module: its own name, or a copy's (``unit_1``, ``ns_unit``)."""
    pattern = re.compile(rf"(?:\w+_)?{re.escape(unit)}(?:_\d+)?")
    return sum(1 for m in instances if pattern.fullmatch(m))


_RPT_ROW = re.compile(r"^\s*\|(.*)\|\s*$")


def parse_rpt_loop_targets(path: Path) -> dict[str, tuple[int | None, int | None]]:
    """``{loop: (achieved II, target II)}`` from a module's ``*_csynth.rpt`` loop table.

    The table header's second line names the columns (``Loop Name | min | max |
    Latency | achieved | target | Count | Pipelined``); rows start with ``- name``
    (nested loops with ``+ name`` or ``o name``).
    """
    result: dict[str, tuple[int | None, int | None]] = {}
    if not path.is_file():
        return result
    columns: list[str] | None = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = _RPT_ROW.match(line)
        if not m:
            if not line.strip().startswith("+"):
                columns = None
            continue
        cells = [c.strip() for c in m.group(1).split("|")]
        lowered = [c.lower() for c in cells]
        if "achieved" in lowered and "target" in lowered:
            columns = lowered
            continue
        if columns is None or len(cells) != len(columns):
            continue
        name = re.sub(r"^[-+o*\s]+", "", cells[0]).strip()
        if not name:
            continue
        achieved = _int(cells[columns.index("achieved")])
        target = _int(cells[columns.index("target")])
        result[name] = (achieved, target)
    return result


def find_report_dir(path: Path) -> Path:
    """The ``syn/report`` folder at or below ``path`` (the newest if several)."""
    if path.is_file():
        return path.parent
    if (path / "csynth.xml").is_file():
        return path
    found = sorted(path.glob("**/syn/report/csynth.xml"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"no syn/report/csynth.xml under {path}: run csynth first")
    return found[-1].parent


def load_reports(report_dir: Path) -> list[ModuleReport]:
    """Every module report in ``report_dir``, top (``csynth.xml``) first, de-duplicated."""
    paths = [report_dir / "csynth.xml"] + sorted(report_dir.glob("*_csynth.xml"))
    reports: list[ModuleReport] = []
    seen: set[str] = set()
    for p in paths:
        if not p.is_file():
            continue
        r = parse_csynth_xml(p)
        if r.module in seen:
            continue
        seen.add(r.module)
        reports.append(r)
    if not reports:
        raise FileNotFoundError(f"no csynth XML reports in {report_dir}")
    return reports


def _fmt(x: float | None) -> str:
    return "?" if x is None else f"{x:.3f}"


def check(
    reports: Sequence[ModuleReport],
    *,
    clock_ns: float | None = None,
    default_target_ii: int = 1,
    ii_targets: Mapping[str, int] | None = None,
    rpt_targets: Mapping[str, Mapping[str, tuple[int | None, int | None]]] | None = None,
    single: Sequence[str] = SINGLE_UNITS,
    max_util_pct: float = MAX_UTIL_PCT,
    max_lut_pct: float = MAX_LUT_PCT,
    max_ff_pct: float = MAX_FF_PCT,
) -> list[Row]:
    """Rows of the result table; a row with ``ok=False`` is a miss."""
    ii_targets = dict(ii_targets or {})
    rpt_targets = rpt_targets or {}
    top = reports[0]
    rows: list[Row] = []

    target = clock_ns if clock_ns is not None else top.target_clock_ns
    if clock_ns is not None and top.target_clock_ns is not None:
        if abs(top.target_clock_ns - clock_ns) > CLOCK_TOL_NS:
            rows.append(
                Row(
                    "clock target in report (ns)",
                    _fmt(top.target_clock_ns),
                    _fmt(clock_ns),
                    False,
                    "synthesised for another clock",
                )
            )
    for r in reports:
        if r.estimated_clock_ns is None or target is None:
            if r is top:
                rows.append(Row("estimated clock (ns)", "?", _fmt(target), False, "no estimate"))
            continue
        ok = r.estimated_clock_ns <= target + 1e-9
        if r is not top and ok:
            continue  # submodules are listed only when they miss
        note = ""
        if r.uncertainty_ns is not None:
            slack = target - r.uncertainty_ns - r.estimated_clock_ns
            note = f"uncertainty {r.uncertainty_ns:.2f}, slack {slack:+.3f}"
            if ok and slack < 0:
                note += " (inside the uncertainty margin: check Vivado timing)"
        label = "estimated clock (ns)" if r is top else f"estimated clock (ns) {r.module}"
        rows.append(Row(label, _fmt(r.estimated_clock_ns), _fmt(target), ok, note))

    for r in reports:
        from_rpt = rpt_targets.get(r.module, {})
        for loop in r.loops:
            if not loop.pipelined:
                continue
            key = f"{r.module}/{loop.name}"
            rpt_achieved, rpt_target = from_rpt.get(loop.name, (None, None))
            if loop.name in ii_targets or key in ii_targets:
                want, source = ii_targets.get(key, ii_targets.get(loop.name)), "--ii"
            elif rpt_target is not None:
                want, source = rpt_target, "rpt"
            else:
                want, source = default_target_ii, "default"
            got = loop.achieved_ii if loop.achieved_ii is not None else rpt_achieved
            ok = got is not None and got <= want
            note = f"target from {source}"
            if got is None:
                note = "achieved II unknown"
            if loop.issue and re.search(r"\bII\b", loop.issue):
                ok = False
                note += f"; report flags {loop.issue}"
            rows.append(Row(key, "?" if got is None else str(got), str(want), ok, note))

    # units that exist once: counted in the top's instance tree
    for unit in single:
        if top.instances is None:
            rows.append(Row(f"instances {unit}", "?", "1", False, "no RTLDesignHierarchy"))
            continue
        n = count_instances(top.instances, unit)
        note = "" if n == 1 else ("inlined or renamed" if n == 0 else "built more than once")
        rows.append(Row(f"instances {unit}", str(n), "1", n == 1, note))

    # resources against the part
    limits = {"LUT": max_lut_pct, "FF": max_ff_pct}
    for label, tags in GATED_RESOURCES:
        limit = limits.get(label, max_util_pct)
        used = next((top.resources[t] for t in tags if t in top.resources), None)
        avail = next((top.available[t] for t in tags if t in top.available), None)
        if used is None or not avail:
            rows.append(Row(f"{label} use (%)", "?", f"{limit:g}", False, "not in report"))
            continue
        pct = 100.0 * used / avail
        ok = pct <= limit + 1e-9
        note = f"{used:g} of {avail:g}"
        if not ok:
            note += f": over the {limit:g} % limit by {used - avail * limit / 100.0:,.0f}"
        rows.append(Row(f"{label} use (%)", f"{pct:.1f}", f"{limit:g}", ok, note))
    return rows


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table."""
    header = Row("item", "achieved", "target", True, "")
    width = max(len(r.item) for r in [header, *rows])
    lines = []
    for r in [header, *rows]:
        status = "status" if r is header else ("ok" if r.ok else "MISS")
        lines.append(
            f"{r.item:<{width}}  {r.achieved:>8}  {r.target:>8}  {status:<6}  {r.note}".rstrip()
        )
    return "\n".join(lines)


def _parse_ii(items: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        name, _, value = item.partition("=")
        if not name or not value.isdigit():
            raise argparse.ArgumentTypeError(f"--ii expects LOOP=N, got {item!r}")
        out[name] = int(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="report folder, csynth.xml, or a build folder")
    parser.add_argument(
        "--clock-ns", type=float, default=None, help="target period (default: the report's)"
    )
    parser.add_argument("--default-target-ii", type=int, default=1)
    parser.add_argument(
        "--ii", action="append", default=[], metavar="LOOP=N", help="target II of one loop"
    )
    parser.add_argument(
        "--single",
        action="append",
        default=None,
        metavar="UNIT",
        help=f"a unit that must have exactly one instance (default: {', '.join(SINGLE_UNITS)})",
    )
    parser.add_argument(
        "--max-util",
        type=float,
        default=MAX_UTIL_PCT,
        metavar="PCT",
        help="highest DSP / BRAM_18K / URAM use, percent of the part",
    )
    parser.add_argument(
        "--max-lut",
        type=float,
        default=MAX_LUT_PCT,
        metavar="PCT",
        help=f"highest LUT use, percent of the part (default {MAX_LUT_PCT:g})",
    )
    parser.add_argument(
        "--max-ff",
        type=float,
        default=MAX_FF_PCT,
        metavar="PCT",
        help=f"highest FF use, percent of the part (default {MAX_FF_PCT:g})",
    )
    ns = parser.parse_args(argv)
    try:
        ii_targets = _parse_ii(ns.ii)
        report_dir = find_report_dir(ns.path)
        reports = load_reports(report_dir)
    except (FileNotFoundError, ET.ParseError, argparse.ArgumentTypeError) as e:
        print(f"check_hls_reports: {e}", file=sys.stderr)
        return 2
    rpt = {r.module: parse_rpt_loop_targets(report_dir / f"{r.module}_csynth.rpt") for r in reports}
    rows = check(
        reports,
        clock_ns=ns.clock_ns,
        default_target_ii=ns.default_target_ii,
        ii_targets=ii_targets,
        rpt_targets=rpt,
        single=SINGLE_UNITS if ns.single is None else tuple(ns.single),
        max_util_pct=ns.max_util,
        max_lut_pct=ns.max_lut,
        max_ff_pct=ns.max_ff,
    )
    top = reports[0]
    print(f"HLS reports: {report_dir} (top {top.module}, part {top.part or '?'})")
    print(format_table(rows))
    misses = [r for r in rows if not r.ok]
    pipelined = sum(1 for r in reports for loop in r.loops if loop.pipelined)
    print(f"{pipelined} pipelined loops, {len(misses)} misses")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
