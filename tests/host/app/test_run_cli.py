"""`edgemoe run`: PNGs + report.json; every bad input a one-line error and no partial file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from edgemoe.host.app.cli import main
from edgemoe.host.export.bundle import HEADER_BYTES
from edgemoe.models.m3vit import random_model
from tests.conftest import assert_one_line_error, cfg

MINI = "m3vit-mini"
H, W = cfg(MINI).image_size


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["run", "--config", MINI, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Bundles exported by `edgemoe export`: mini/lean, mini/edge-moe, tiny/lean."""
    d = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, c, p in (
        ("lean", MINI, "lean"),
        ("edge-moe", MINI, "edge-moe"),
        ("tiny", "m3vit-tiny-128x256", "lean"),
    ):
        path = d / f"{name}.bin"
        assert main(["export", "--config", c, "--profile", p, "--random", "--out", str(path)]) == 0
        out[name] = path
    # two checkpoints and a bundle exported from the first
    for name, seed in (("ckpt_a", 1), ("ckpt_b", 2)):
        out[name] = d / f"{name[-1]}.pt"
        torch.save(random_model(cfg(MINI), seed).state_dict(), out[name])
    out["ckpt"] = d / "from-a.bin"
    argv = [
        "export",
        "--config",
        MINI,
        "--checkpoint",
        str(out["ckpt_a"]),
        "--out",
        str(out["ckpt"]),
    ]
    assert main(argv) == 0
    return out


def write_image(path, size=(W, H), mode="RGB"):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(size[1], size[0], 4), dtype=np.uint8)
    img = Image.fromarray(a, "RGBA").convert(mode)
    img.save(path)
    return path


def test_run_csim_check_writes_pngs_and_report(tmp_path, capsys, bundles):
    rgba = write_image(tmp_path / "street.png", mode="RGBA")
    gray = write_image(tmp_path / "gray.png", size=(2 * W, H + 7), mode="L")
    out = tmp_path / "out"
    code, stdout, err = run(
        capsys, "--backend", "csim", "--image", str(rgba), str(gray), "--check",
        "--bundle", str(bundles["lean"]), "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "is RGBA, converted to RGB" in err and "is L, converted to RGB" in err
    assert f"stretched to {W}x{H}" in err and "aspect ratio changed" in err
    assert "PASS" in stdout and "FAIL" not in stdout
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "csim" and report["config"] == MINI and report["profile"] == "lean"
    assert report["status"] == "OK" and report["tasks"] == ["semseg", "depth"]
    assert len(report["bundle"]["sha256"]) == 64 and report["bundle"]["host_check"]
    assert report["weights"] == "random init, seed 0 (untrained)"
    for step in ("setup", "pack", "flush", "kernel", "invalidate", "unpack", "head", "render"):
        assert report["times_s"][step] >= 0
    assert report["check"]["within_budget"]
    assert [im["name"] for im in report["images"]] == ["street", "gray"]
    for im in report["images"]:
        assert Image.open(out / im["input"]).size == (W, H)
        for task, t in im["tasks"].items():
            assert t["status"] == 0
            c = t["check"]
            for part in ("tokens", "task_output"):
                assert c[part]["rel_rms"] <= report["check"]["budgets"]["rel_rms"]
                assert c[part]["cosine"] >= report["check"]["budgets"]["cosine"]
            for kind, f in t["files"].items():
                img = Image.open(out / f)
                img.verify()
                if kind != "figure":
                    assert Image.open(out / f).size == (W, H), f
                    assert Image.open(out / f).mode == "RGB"
                assert f.startswith(f"{im['name']}_{task}")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_sample_scene_on_every_backend_gives_the_same_labels(tmp_path, capsys):
    maps = {}
    for backend in ("torch", "golden", "csim"):
        out = tmp_path / backend
        code, _, err = run(capsys, "--backend", backend, "--task", "semseg", "--out", str(out))
        assert code == 0, err
        report = json.loads((out / "report.json").read_text())
        assert report["images"][0]["source"] == "sample scene"
        maps[backend] = np.asarray(Image.open(out / "sample_semseg.png"))
    assert (maps["golden"] == maps["csim"]).all()  # bit-exact backbones, same head
    assert (maps["torch"] == maps["csim"]).mean() > 0.95


def test_images_per_call_do_not_change_the_outputs(tmp_path, capsys):
    """Three images in calls of two (expert-major, then one image alone) and of one:
    the same tokens, so the same PNGs; a call's times are shared by its images."""
    paths = []
    for k in range(3):
        rng = np.random.default_rng(10 + k)
        p = tmp_path / f"im{k}.png"
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(p)
        paths.append(str(p))
    reports = {}
    for batch in ("2", "1"):
        out = tmp_path / f"b{batch}"
        code, stdout, err = run(
            capsys, "--backend", "csim", "--image", *paths, "--batch", batch, "--check",
            "--out", str(out),
        )  # fmt: skip
        assert code == 0, err
        assert f"3 image(s) (up to {batch} per call)" in stdout and "FAIL" not in stdout
        reports[batch] = json.loads((out / "report.json").read_text())
        assert reports[batch]["batch"] == int(batch)
    assert [im["images_in_call"] for im in reports["2"]["images"]] == [2, 2, 1]
    first, second = (reports["2"]["images"][k]["tasks"]["semseg"]["times_s"] for k in (0, 1))
    assert first["kernel"] == second["kernel"] > 0
    for name in ("im0", "im1", "im2"):
        for task in ("semseg", "depth"):
            a = np.asarray(Image.open(tmp_path / "b2" / f"{name}_{task}.png"))
            b = np.asarray(Image.open(tmp_path / "b1" / f"{name}_{task}.png"))
            assert (a == b).all(), (name, task)
        c2 = reports["2"]["images"][int(name[-1])]["tasks"]["semseg"]["check"]["tokens"]
        c1 = reports["1"]["images"][int(name[-1])]["tasks"]["semseg"]["check"]["tokens"]
        # the same tokens; torch's float reference moves in the last digits with the batch
        assert c2["rel_rms"] == pytest.approx(c1["rel_rms"], rel=1e-4)


def test_out_non_empty_needs_force_and_keeps_other_files(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, _, err = run(capsys, "--backend", "golden", "--task", "depth", "--out", str(out))
    assert_one_line_error(code, err, "is not empty", "--force")
    assert leftovers(out) == ["keep.txt"]
    code, _, err = run(
        capsys, "--backend", "golden", "--task", "depth", "--out", str(out), "--force"
    )
    assert code == 0, err
    assert "keep.txt" in leftovers(out) and "report.json" in leftovers(out)


def _case(tmp_path, bundles, case):
    """argv, env and the words the one-line error must contain."""
    img = write_image(tmp_path / "in.png")
    if case == "missing image":
        return ["--image", str(tmp_path / "nope.png")], {}, ["nope.png", "no such file"]
    if case == "not an image":
        (tmp_path / "text.png").write_text("hello")
        return ["--image", str(tmp_path / "text.png")], {}, ["text.png", "not an image"]
    if case == "wrong size, --no-resize":
        small = write_image(tmp_path / "small.png", size=(W + 3, H))
        return ["--image", str(small), "--no-resize"], {}, [f"{W + 3}x{H}", "--no-resize"]
    if case == "unknown task":
        return ["--image", str(img), "--task", "normals"], {}, ["unknown task 'normals'"]
    if case == "unknown backend":
        return ["--backend", "fpga"], {}, ["unknown backend 'fpga'"]
    data = bundles["lean"].read_bytes()
    bad = tmp_path / "bad.bin"
    if case == "truncated bundle":
        bad.write_bytes(data[:-1000])
        return ["--bundle", str(bad)], {}, ["bad.bin", "truncated"]
    if case == "CRC mismatch":
        b = bytearray(data)
        b[HEADER_BYTES + 1000] ^= 0x40
        bad.write_bytes(bytes(b))
        return ["--bundle", str(bad)], {}, ["CRC32", "corrupt payload"]
    if case == "missing bundle":
        return ["--bundle", str(tmp_path / "none.bin")], {}, ["none.bin", "no such file"]
    if case == "bundle of an older format version":
        b = bytearray(data)
        b[4:6] = (1).to_bytes(2, "little")
        bad.write_bytes(bytes(b))
        return ["--bundle", str(bad)], {}, ["format version 1", "older edgemoe", "export"]
    if case == "--profile disagrees with the bundle":
        return (
            ["--bundle", str(bundles["edge-moe"]), "--profile", "lean"],
            {},
            ["--profile lean disagrees", "edge-moe"],
        )
    if case == "--config disagrees with the bundle":
        return (
            ["--bundle", str(bundles["tiny"])],
            {},
            ["--config m3vit-mini disagrees", "m3vit-tiny-128x256"],
        )
    if case == "--seed disagrees with the bundle":
        return ["--bundle", str(bundles["lean"]), "--seed", "5"], {}, ["--seed 5", "seed 0"]
    if case == "--checkpoint for a random-init bundle":
        return (
            ["--bundle", str(bundles["lean"]), "--checkpoint", str(bundles["ckpt_b"])],
            {},
            ["--checkpoint", "random init, seed 0"],
        )
    if case == "bundle from another checkpoint":
        return (
            ["--bundle", str(bundles["ckpt"]), "--checkpoint", str(bundles["ckpt_b"])],
            {},
            ["b.pt", "is not the checkpoint", "a.pt"],
        )
    if case == "another config hash, --no-host-check":
        b = bytearray(data)
        b[8:12] = bytes(4)  # the header's config hash: the kernel's check must catch it
        bad.write_bytes(bytes(b))
        return ["--bundle", str(bad), "--no-host-check"], {}, ["status 3", "BAD_CONFIG_HASH"]
    if case == "--no-host-check without a driver":
        return (
            ["--backend", "golden", "--bundle", str(bundles["lean"]), "--no-host-check"],
            {},
            ["--no-host-check", "driver backend"],
        )
    if case == "--no-host-check without --bundle":
        return ["--no-host-check"], {}, ["--no-host-check applies only with --bundle"]
    if case == "unwritable --out":
        (tmp_path / "afile").write_text("x")
        return (
            ["--out", str(tmp_path / "afile" / "out")],
            {},
            ["cannot write --out", "afile", "not a folder"],
        )
    if case == "--out is a file":
        (tmp_path / "afile").write_text("x")
        return ["--out", str(tmp_path / "afile")], {}, ["not a folder"]
    if case == "--out ''":
        return ["--out", ""], {}, ["--out ''", "empty path"]
    if case == "--batch 0":
        return ["--batch", "0"], {}, ["--batch", "1..1024"]
    if case == "--seed -1":
        return ["--seed", "-1"], {}, ["--seed", "seed -1 outside 0..4294967295"]
    if case == "--seed 1e20":
        return ["--seed", "1e20"], {}, ["--seed", "'1e20' is not a seed"]
    if case == "--timeout 0":
        return ["--timeout", "0"], {}, ["--timeout", "must be in (0, 86400]"]
    if case == "--timeout nan":
        return ["--timeout", "nan"], {}, ["--timeout", "must be in (0, 86400]"]
    if case == "--timeout with golden":
        return ["--backend", "golden", "--timeout", "5"], {}, ["--timeout applies", "golden"]
    if case == "--check with torch":
        return ["--backend", "torch", "--check"], {}, ["--check", "torch is torch"]
    if case == "a task twice":
        return ["--task", "semseg,semseg"], {}, ["names task 'semseg' twice"]
    if case == "--fit with --no-resize":
        return ["--fit", "crop", "--no-resize"], {}, ["--fit", "--no-resize"]
    if case == "--fit unknown":
        return ["--fit", "zoom"], {}, ["--fit", "invalid choice: 'zoom'"]
    if case == "board never finishes":
        # the seeded model: no checkpoint notice before the one error line
        return (
            ["--timeout", "0.3", "--random"],
            {"EDGEMOE_VBOARD_HANG": "1"},
            ["did not finish within 0.3 s"],
        )
    raise AssertionError(case)


CASES = [
    "missing image",
    "not an image",
    "wrong size, --no-resize",
    "unknown task",
    "unknown backend",
    "truncated bundle",
    "CRC mismatch",
    "missing bundle",
    "bundle of an older format version",
    "--profile disagrees with the bundle",
    "--config disagrees with the bundle",
    "--seed disagrees with the bundle",
    "--checkpoint for a random-init bundle",
    "bundle from another checkpoint",
    "another config hash, --no-host-check",
    "--no-host-check without a driver",
    "--no-host-check without --bundle",
    "unwritable --out",
    "--out is a file",
    "--out ''",
    "--batch 0",
    "--seed -1",
    "--seed 1e20",
    "--timeout 0",
    "--timeout nan",
    "--timeout with golden",
    "--check with torch",
    "a task twice",
    "--fit with --no-resize",
    "--fit unknown",
    "board never finishes",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_leaves_no_file(tmp_path, capsys, monkeypatch, bundles, case):
    argv, env, words = _case(tmp_path, bundles, case)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = set(leftovers(tmp_path))
    out = tmp_path / "out"
    if "--out" not in argv:
        argv += ["--out", str(out)]
    if "--backend" not in argv:
        argv += ["--backend", "csim"]
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, *words)
    assert code == 2
    assert set(leftovers(tmp_path)) == before  # no --out, no staging folder
    assert not out.exists()


def test_verify_csim_backend_with_plot(tmp_path, capsys):
    plot, js = tmp_path / "layers.png", tmp_path / "v.json"
    code = main(
        ["verify", "--config", MINI, "--backends", "torch,golden,csim",
         "--plot", str(plot), "--json", str(js)]
    )  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, out + err
    result = json.loads(js.read_text())
    assert result["pairs"]["golden-csim"]["bit_exact"]
    assert Image.open(plot).format == "PNG" and Image.open(plot).size[0] >= 600
    assert leftovers(tmp_path) == ["layers.png", "v.json"]


@pytest.mark.slow
def test_default_config_csim_run_check(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(["run", "--backend", "csim", "--check", "--out", str(out)])
    stdout, err = capsys.readouterr()
    assert code == 0, stdout + err
    report = json.loads((out / "report.json").read_text())
    assert report["config"] == "m3vit-tiny-128x256" and report["check"]["within_budget"]
    h, w = cfg("m3vit-tiny-128x256").image_size
    assert Image.open(out / "sample_semseg.png").size == (w, h)
    assert Image.open(out / "sample_depth_overlay.png").size == (w, h)
