"""The `edgemoe` command line: verify output, and bad input as one-line errors."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from edgemoe.host.app.cli import main
from edgemoe.models.m3vit import random_model
from tests.conftest import assert_one_line_error, cfg


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_verify_writes_metrics_json(tmp_path, capsys):
    path = tmp_path / "v.json"
    code, out, _ = run_cli(
        capsys,
        "verify",
        "--config",
        "m3vit-mini",
        "--profile",
        "edge-moe",
        "--task",
        "depth",
        "--seed",
        "1",
        "--json",
        str(path),
    )
    assert code == 0, out
    data = json.loads(path.read_text())
    pair = data["pairs"]["torch-golden"]
    for key in ("max_abs", "rel_rms", "cosine", "routing_agreement", "saturations"):
        assert key in pair
    assert pair["within_budget"] is True and pair["rel_rms"] <= 0.01
    assert data["task"] == "depth" and data["config"] == "m3vit-mini"
    stages = [row["stage"] for row in data["layers"]]
    assert stages[0] == "embed" and "block3.mlp" in stages and "block1.route" in stages
    assert "block1.gate" in out and "PASS" in out


def test_verify_two_golden_runs_are_bit_exact(tmp_path, capsys):
    path = tmp_path / "v.json"
    code, _, _ = run_cli(
        capsys,
        "verify",
        "--config",
        "m3vit-mini",
        "--backends",
        "golden,golden",
        "--json",
        str(path),
    )
    assert code == 0
    assert json.loads(path.read_text())["pairs"]["golden-golden"]["bit_exact"] is True


def test_verify_with_checkpoint(tmp_path, capsys):
    c = cfg("m3vit-mini")
    ck = tmp_path / "m.pth"
    torch.save(
        {
            "state_dict": {
                f"module.{k}": v for k, v in random_model(c, 4, "trained").state_dict().items()
            }
        },
        ck,
    )
    code, out, _ = run_cli(capsys, "verify", "--config", "m3vit-mini", "--checkpoint", str(ck))
    assert code == 0, out


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--config", "m3vit-huge"], ["unknown config", "m3vit-huge"]),
        (["--profile", "fp4"], ["unknown profile", "fp4"]),
        (["--config", "m3vit-mini", "--task", "normals"], ["unknown task", "normals"]),
        (["--config", "m3vit-mini", "--backends", "torch,fpga9"], ["unknown backend", "fpga9"]),
        (["--config", "m3vit-mini", "--checkpoint", "/nonexistent/x.pth"], ["/nonexistent/x.pth"]),
    ],
)
def test_bad_arguments(capsys, argv, words):
    code, _, err = run_cli(capsys, "verify", *argv)
    assert_one_line_error(code, err, *words)


def test_bad_yaml_field(tmp_path, capsys):
    data = cfg("m3vit-mini").to_dict()
    data["num_heads"] = 3
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(capsys, "verify", "--config", str(p))
    assert_one_line_error(code, err, "num_heads")


def _bad_checkpoint(tmp_path, mutate):
    sd = dict(random_model(cfg("m3vit-mini"), 0).state_dict())
    mutate(sd)
    p = tmp_path / "bad.pth"
    torch.save(sd, p)
    return p


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda sd: sd.pop("blocks.1.attn.qkv.weight"), ["lacks", "blocks.1.attn.qkv.weight"]),
        (lambda sd: sd.__setitem__("blocks.9.foo", torch.zeros(2)), ["unexpected", "blocks.9.foo"]),
        (lambda sd: sd.__setitem__("pos_embed", torch.zeros(1, 5, 32)), ["pos_embed"]),
        (
            lambda sd: sd["blocks.0.norm1.weight"].__setitem__(3, float("nan")),
            ["blocks.0.norm1.weight"],
        ),
        (lambda sd: sd["cls_token"].__setitem__((0, 0, 1), float("inf")), ["cls_token"]),
    ],
)
def test_bad_checkpoints(tmp_path, capsys, mutate, words):
    p = _bad_checkpoint(tmp_path, mutate)
    code, _, err = run_cli(capsys, "verify", "--config", "m3vit-mini", "--checkpoint", str(p))
    assert_one_line_error(code, err, *words)


def test_console_script_exit_code(tmp_path):
    """The installed entry point: one line on stderr, exit 2, nothing written."""
    out = tmp_path / "v.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgemoe.host.app.cli",
            "verify",
            "--config",
            "nope",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown config 'nope'" in proc.stderr
    assert not out.exists()


def test_verify_images_scenes_by_default_noise_or_folder_on_request(tmp_path, capsys):
    from PIL import Image

    from edgemoe.host.contracts.images import random_images, scene_images

    base = ["verify", "--config", "m3vit-mini", "--images", "2"]
    runs = {}
    for name, extra in (("scenes", []), ("noise", ["--noise-images"])):
        path = tmp_path / f"{name}.json"
        code, out, err = run_cli(capsys, *base, *extra, "--json", str(path))
        assert code == 0, out + err
        runs[name] = (out, json.loads(path.read_text()))
    assert "procedural scenes" in runs["scenes"][0] and runs["scenes"][1]["images"] == 2
    assert runs["noise"][1]["image_kind"] == "seeded noise"
    c = cfg("m3vit-mini")
    assert not (scene_images(c, 2, 0) == random_images(c, 2, 0)).all()

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(scene_images(cfg("m3vit-mini"), 3, 5)):
        Image.fromarray(im).save(folder / f"{i}.png")
    code, out, _ = run_cli(capsys, *base, "--images-from", str(folder))
    assert code == 0 and "3 image(s): folder" in out


def test_verify_accepts_a_safetensors_checkpoint_and_a_training_state(tmp_path, capsys):
    from safetensors.torch import save_file

    model = random_model(cfg("m3vit-mini"), 4, "trained")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file({k: v.half() for k, v in sd.items()}, tmp_path / "w.safetensors")
    state = {f"model.{k}": v for k, v in sd.items()}
    state["adam.blocks.0.attn.qkv.weight.exp_avg"] = torch.zeros(3)
    save_file(state, tmp_path / "w.state.safetensors")
    for f in ("w.safetensors", "w.state.safetensors"):
        code, out, err = run_cli(
            capsys, "verify", "--config", "m3vit-mini", "--checkpoint", str(tmp_path / f)
        )
        assert "torch vs golden" in out, err
    missing = str(tmp_path / "none.safetensors")
    code, _, err = run_cli(capsys, "verify", "--config", "m3vit-mini", "--checkpoint", missing)
    assert_one_line_error(code, err, "none.safetensors")
