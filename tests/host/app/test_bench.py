"""`edgemoe bench`: the JSON it writes, and bad input as one-line errors.

Speeds are what the benchmark reports, never what a unit test asserts.
"""

from __future__ import annotations

import json

import pytest

from edgemoe.host.app import bench
from edgemoe.host.app.cli import main
from tests.conftest import assert_one_line_error

FIELDS = ("ms_median", "ms_min", "ms_max", "runs", "ratio_to_torch", "peak_rss_mb")


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_bench_mini_writes_every_backend(tmp_path, capsys):
    path = tmp_path / "out" / "bench.json"
    code, out, _ = run_cli(
        capsys, "bench", "--config", "m3vit-mini", "--runs", "5", "--json", str(path)
    )
    assert code == 0, out
    data = json.loads(path.read_text())
    rows = data["backends"]
    assert list(rows) == list(bench.DEFAULT_BACKENDS)
    assert data["config"] == "m3vit-mini" and data["runs"] == 5
    assert data["machine"]["nproc"] >= 1 and data["machine"]["torch_threads"] >= 1
    for name, row in rows.items():
        for key in (*FIELDS, "notes"):
            assert key in row, (name, key)
        if name == "csim" and row["status"] == "skipped":
            assert row["notes"], "a skipped row says why"
            continue
        assert row["status"] == "ok", (name, row["notes"])
        assert row["runs"] == 5
        for key in FIELDS:
            assert row[key] > 0, (name, key)
        assert row["ms_min"] <= row["ms_median"] <= row["ms_max"]
        assert name in out
    assert rows["torch"]["ratio_to_torch"] == 1.0
    for name in rows:
        if bench.capabilities(name).heap_traced and rows[name]["status"] == "ok":
            assert rows[name]["py_heap_peak_mb"] > 0
    assert "peak RSS" in out and f"wrote {path}" in out


def test_unknown_backend_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "bench.json"
    code, _, err = run_cli(
        capsys, "bench", "--config", "m3vit-mini", "--backends", "torch,tpu", "--json", str(path)
    )
    assert_one_line_error(code, err, "unknown backend", "'tpu'")
    assert list(tmp_path.iterdir()) == []


def test_too_few_runs_is_a_one_line_error(capsys):
    code, _, err = run_cli(capsys, "bench", "--config", "m3vit-mini", "--runs", "4")
    assert_one_line_error(code, err, "--runs")


@pytest.mark.parametrize("where", ["under_a_file", "a_directory"])
def test_unwritable_json_fails_first_and_writes_nothing(tmp_path, capsys, where):
    blocker = tmp_path / "blocker"
    if where == "under_a_file":
        blocker.write_text("not a folder")
        path = blocker / "sub" / "bench.json"
    else:
        blocker.mkdir()
        path = blocker
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = run_cli(capsys, "bench", "--config", "m3vit-mini", "--json", str(path))
    assert_one_line_error(code, err, "cannot write")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert out == ""  # refused before any backend ran


def test_missing_optional_backend_is_a_skipped_row(monkeypatch):
    monkeypatch.setattr(bench, "backend_names", lambda: ["torch", "golden", "csim-direct"])
    result = bench.bench_backends("m3vit-mini", "lean", ["csim"], runs=5)
    row = result["backends"]["csim"]
    assert row["status"] == "skipped" and "not installed" in row["notes"][0]
    assert row["ms_median"] is None and row["ratio_to_torch"] is None
    assert "skipped" in bench.format_table(result)


def test_what_is_timed_names_the_decoder_where_the_datapath_decodes():
    from tests.conftest import cfg

    pup = bench._computed(cfg("m3vit-mini-pup"), "semseg")
    assert "decoder up to its logits" in pup and "onnxruntime: the backbone only" in pup
    assert "decoder" not in bench._computed(cfg("m3vit-mini"), "semseg")
