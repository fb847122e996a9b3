"""`edgemoe train --init/--class-balance`: the options reach the run; rank 0 alone prints."""

from __future__ import annotations

import json

from edgemoe.host.app.cli import main

ARGS = ["train", "--config", "m3vit-mini", "--steps", "2", "--batch", "2", "--quiet"]
ARGS += ["--eval-every", "2", "--eval-images", "2", "--final-eval-images", "2"]


def test_init_and_class_balance_reach_the_record(tmp_path, capsys):
    first = tmp_path / "a"
    assert main([*ARGS, "--out", str(first)]) == 0
    capsys.readouterr()
    out = tmp_path / "b"
    code = main([*ARGS, "--out", str(out), "--init", f"{first}.safetensors"])
    code2 = main([*ARGS, "--out", str(tmp_path / "c"), "--class-balance", "0.5"])
    text = capsys.readouterr().out
    assert code == 0 and code2 == 0 and "wrote" in text
    rec = json.loads((tmp_path / "b.json").read_text())
    assert rec["options"]["init"] == f"{first}.safetensors"
    rec = json.loads((tmp_path / "c.json").read_text())
    assert rec["options"]["class_balance"] == 0.5 and len(rec["class_weights"]) == 7


def test_help_names_the_options_and_defaults(capsys):
    try:
        main(["train", "--help"])
    except SystemExit:
        pass
    text = " ".join(capsys.readouterr().out.split())
    assert "--init CHECKPOINT" in text and "--class-balance" in text and "default: 0.0" in text


def test_only_rank_zero_prints(tmp_path, capsys, monkeypatch):
    import edgemoe.models.train as mt

    real = mt.train

    def as_rank_one(*a, **k):
        return {**real(*a, **k), "rank": 1}

    monkeypatch.setattr(mt, "train", as_rank_one)
    assert main([*ARGS, "--out", str(tmp_path / "r1")]) == 0
    assert capsys.readouterr().out == ""
