"""The report gate's LUT and FF limits (scripts/check_hls_reports.py): a csynth report
over 75 % of the ZCU104's LUT or 60 % of its FF fails with one line naming the resource,
at the limit it passes; DSP, BRAM_18K and URAM keep their 85 %.

The reports are the synthetic ones of test_hls_flow (csynth.xml in the shape Vitis HLS
2023.2 writes it: ``<AreaEstimates><Resources>`` and ``<AvailableResources>``).
"""

from __future__ import annotations

import pytest

from tests.hls.test_hls_flow import CLOCK_NS, ZCU104, check_cli, miss_lines, reports, write_reports

LUT_LIMIT = 172_800  # 75 % of 230,400
FF_LIMIT = 276_480  # 60 % of 460,800


def test_the_limits_are_the_zcu104_shares():
    assert ZCU104["LUT"] * reports.MAX_LUT_PCT / 100 == LUT_LIMIT
    assert ZCU104["FF"] * reports.MAX_FF_PCT / 100 == FF_LIMIT
    assert reports.MAX_UTIL_PCT == 85.0
    gated = {label for label, _ in reports.GATED_RESOURCES}
    assert gated == {"DSP", "BRAM_18K", "URAM", "LUT", "FF"}


@pytest.mark.parametrize(("resource", "limit"), [("LUT", LUT_LIMIT), ("FF", FF_LIMIT)])
def test_one_over_the_limit_fails_with_a_clear_line(tmp_path, resource, limit):
    write_reports(tmp_path, resources={resource: limit + 1})
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1, out
    (line,) = miss_lines(out)
    pct = {"LUT": "75", "FF": "60"}[resource]
    assert line.startswith(f"{resource} use (%)"), line
    assert f"{limit + 1} of {ZCU104[resource]}" in line
    assert f"over the {pct} % limit by 1" in line
    assert "1 misses" in out


@pytest.mark.parametrize(("resource", "limit"), [("LUT", LUT_LIMIT), ("FF", FF_LIMIT)])
def test_at_the_limit_it_passes(tmp_path, resource, limit):
    write_reports(tmp_path, resources={resource: limit})
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 0, out
    (line,) = [ln for ln in out.splitlines() if ln.startswith(f"{resource} use (%)")]
    pct = {"LUT": "75", "FF": "60"}[resource]
    assert line.split()[3:6] == [f"{pct}.0", pct, "ok"], line


def test_the_reviews_predicted_build_fails_on_both(tmp_path):
    """≈ 240 k LUT and ≈ 280 k FF with DSP/BRAM/URAM inside 85 %: LUT and FF miss."""
    write_reports(
        tmp_path,
        resources={"LUT": 240_000, "FF": 280_000, "DSP": 1440, "BRAM_18K": 500, "URAM": 64},
    )
    code, out = check_cli(tmp_path, "--clock-ns", str(CLOCK_NS))
    assert code == 1
    assert [ln.split()[0] for ln in miss_lines(out)] == ["LUT", "FF"]
    assert "104.2" in out and "60.8" in out


def test_the_limits_are_options(tmp_path):
    write_reports(tmp_path, resources={"LUT": 200_000, "FF": 300_000})
    assert check_cli(tmp_path)[0] == 1
    assert check_cli(tmp_path, "--max-lut", "87")[0] == 1  # FF still over
    assert check_cli(tmp_path, "--max-lut", "87", "--max-ff", "66")[0] == 0
    # --max-util is DSP / BRAM_18K / URAM only: it neither loosens nor tightens LUT and FF
    assert check_cli(tmp_path, "--max-util", "99")[0] == 1


def test_a_report_without_lut_or_ff_fails(tmp_path):
    report = write_reports(tmp_path)
    text = (report / "csynth.xml").read_text()
    (report / "csynth.xml").write_text(text.replace("<LUT>40000</LUT>\n", ""))
    code, out = check_cli(tmp_path)
    assert code == 1
    (line,) = miss_lines(out)
    assert line.startswith("LUT use (%)") and "not in report" in line
